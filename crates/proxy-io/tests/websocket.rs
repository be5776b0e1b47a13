//! The embedding API for WebSocket, end to end on loopback: a handler that rewrites the
//! server's text messages and drops the client's binary ones (as `examples/websocket_rewrite.rs`
//! does), an `Injector` greeting the client and talking to the server from outside the hook,
//! and the end hook's account. The client and the origin speak raw RFC 6455 frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_core::websocket::{MessageKind, Peer, WebSocketEnd};
use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet};
use proxy_io::{Handler, Injector, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);

/// A whole frame (FIN set), masked with `key` when given.
fn frame(opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    playbooks::ws::frame(true, opcode, payload, key)
}

/// Read one whole message (joining fragments; control frames other than close are skipped):
/// its opcode and unmasked payload.
async fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut opcode = None;
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(STEP, stream.read_exact(&mut head)).await.expect("a frame in time").expect("read");
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).await.unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let key = if head[1] & 0x80 != 0 {
            let mut k = [0u8; 4];
            stream.read_exact(&mut k).await.unwrap();
            Some(k)
        } else {
            None
        };
        let mut data = vec![0u8; len as usize];
        stream.read_exact(&mut data).await.unwrap();
        if let Some(k) = key {
            data.iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
        }
        let op = head[0] & 0x0f;
        if op >= 0x8 {
            if op == 0x8 {
                return (op, data);
            }
            continue;
        }
        opcode.get_or_insert(op);
        payload.extend(data);
        if head[0] & 0x80 != 0 {
            return (opcode.expect("set"), payload);
        }
    }
}

/// Read an HTTP head (up to the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(STEP, stream.read_exact(&mut b)).await.expect("a head in time").expect("read");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// An origin that accepts one upgrade, then reports each message it gets and echoes text.
async fn origin() -> (SocketAddr, mpsc::UnboundedReceiver<(u8, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await.unwrap();
        loop {
            let (op, data) = read_message(&mut s).await;
            let _ = tx.send((op, data.clone()));
            match op {
                0x1 => s.write_all(&frame(0x1, &data, None)).await.unwrap(),
                0x8 => {
                    s.write_all(&frame(0x8, &data, None)).await.unwrap();
                    return;
                }
                _ => {}
            }
        }
    });
    (addr, rx)
}

struct Rewrite {
    injector: Injector,
    started: mpsc::UnboundedSender<(SocketAddr, FlowId)>,
    ended: Arc<Mutex<Option<WebSocketEnd>>>,
}

impl Handler for Rewrite {
    fn hooks(&self) -> HookSet {
        [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketEnd].into_iter().collect()
    }

    async fn hook(&self, flow: FlowId, hook: Hook) -> HookReply {
        match hook {
            Hook::WebSocketStart(f) => {
                self.injector.inject(f.client.peer, flow, Peer::Client, MessageKind::Text, "welcome").unwrap();
                let _ = self.started.send((f.client.peer, flow));
                HookReply::Continue
            }
            Hook::WebSocketMessage(mut m) => match (m.from, m.kind) {
                (Peer::Server, MessageKind::Text) => {
                    m.payload = m.text().unwrap().replace("hello", "HELLO").into();
                    HookReply::Message(m)
                }
                (Peer::Client, MessageKind::Binary) => HookReply::Drop,
                _ => HookReply::Continue,
            },
            Hook::WebSocketEnd(end) => {
                *self.ended.lock().unwrap() = Some(*end);
                HookReply::Continue
            }
            _ => HookReply::Continue,
        }
    }
}

#[tokio::test]
async fn hooks_rewrite_and_drop_and_the_injector_talks_both_ways() {
    let (origin, mut at_origin) = origin().await;
    let injector = Injector::default();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let ended = Arc::new(Mutex::new(None));
    let handler = Rewrite { injector: injector.clone(), started: started_tx, ended: ended.clone() };
    let proxy = Proxy::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .no_intercept()
        .handler(handler)
        .injector(injector.clone())
        .build()
        .await
        .unwrap();
    let proxy_addr = proxy.local_addr();
    let shutdown = proxy.shutdown_handle();
    let running = tokio::spawn(proxy.run());

    let key = [0x11, 0x22, 0x33, 0x44];
    let mut client = TcpStream::connect(proxy_addr).await.unwrap();
    let upgrade = format!(
        "GET http://{origin}/chat HTTP/1.1\r\nHost: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    client.write_all(upgrade.as_bytes()).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Injected from the start hook: the first thing the client hears.
    assert_eq!(read_message(&mut client).await, (0x1, b"welcome".to_vec()));

    // The origin echoes text; the hook rewrites what comes back.
    client.write_all(&frame(0x1, b"hello there", Some(key))).await.unwrap();
    assert_eq!(at_origin.recv().await.unwrap(), (0x1, b"hello there".to_vec()));
    assert_eq!(read_message(&mut client).await, (0x1, b"HELLO there".to_vec()));

    // The client's binary message is dropped: the origin next hears the injected one.
    client.write_all(&frame(0x2, &[1, 2, 3], Some(key))).await.unwrap();
    let (peer, flow) = started.recv().await.unwrap();
    injector.inject(peer, flow, Peer::Server, MessageKind::Binary, vec![9u8; 300]).unwrap();
    assert_eq!(at_origin.recv().await.unwrap(), (0x2, vec![9u8; 300]));

    // Close from the client: the origin hears code and reason, the client its answer.
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    client.write_all(&frame(0x8, &close, Some(key))).await.unwrap();
    assert_eq!(at_origin.recv().await.unwrap(), (0x8, close.clone()));
    assert_eq!(read_message(&mut client).await, (0x8, close));
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, client.read_to_end(&mut rest)).await.expect("the proxy closes").unwrap();

    let end = tokio::time::timeout(STEP, async {
        loop {
            if let Some(end) = ended.lock().unwrap().take() {
                return end;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the end hook ran");
    assert_eq!((end.code, end.reason.as_str(), end.closed_by), (Some(4001), "bye", Some(Peer::Client)));
    assert_eq!(end.messages, [2, 1], "client: text and binary; server: the echo");
    // The flow is over: nothing more can be injected.
    assert!(injector.inject(peer, flow, Peer::Client, MessageKind::Text, "late").is_err());

    shutdown.shutdown_now();
    running.await.unwrap();
}
