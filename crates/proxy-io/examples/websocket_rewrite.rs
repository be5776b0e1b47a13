//! Embedding sansproxy for WebSocket: greet every client on connect, rewrite a word in every
//! text message the server sends, and drop binary messages from the client.
//!
//! ```text
//! cargo run -p proxy-io --example websocket_rewrite -- [FROM] [TO] [LISTEN_ADDR]
//! # then point a WebSocket client at it, e.g. with Python's websockets:
//! python3 -c 'from websockets.sync.client import connect
//! with connect("ws://echo.example/", proxy="http://127.0.0.1:8080") as ws: ws.send("hello"); print(ws.recv(), ws.recv())'
//! ```
//!
//! Listens on 127.0.0.1:8080 unless told otherwise; stops on Ctrl-C. TLS is intercepted as
//! `Proxy::builder` does by default, so wss:// messages are rewritten too once the client
//! trusts the CA whose certificate the proxy names when it starts.

use std::net::SocketAddr;

use proxy_core::websocket::{MessageKind, Peer};
use proxy_core::{FlowId, Hook, HookKind, HookReply, HookSet};
use proxy_io::{Handler, Injector, Proxy};

struct Rewrite {
    from: String,
    to: String,
    injector: Injector,
}

impl Handler for Rewrite {
    fn hooks(&self) -> HookSet {
        [HookKind::WebSocketStart, HookKind::WebSocketMessage, HookKind::WebSocketEnd].into_iter().collect()
    }

    async fn hook(&self, flow: FlowId, hook: Hook) -> HookReply {
        match hook {
            Hook::WebSocketStart(f) => {
                eprintln!("websocket {} {}", f.client.peer, f.request.url());
                let hello = format!("sansproxy rewrites {:?} to {:?} here", self.from, self.to);
                if let Err(e) = self.injector.inject(f.client.peer, flow, Peer::Client, MessageKind::Text, hello) {
                    eprintln!("cannot greet: {e}");
                }
                HookReply::Continue
            }
            Hook::WebSocketMessage(mut message) => match (message.from, message.kind) {
                (Peer::Server, MessageKind::Text) => {
                    let Some(text) = message.text() else { return HookReply::Continue };
                    message.payload = text.replace(&self.from, &self.to).into();
                    HookReply::Message(message)
                }
                (Peer::Client, MessageKind::Binary) => HookReply::Drop,
                _ => HookReply::Continue,
            },
            Hook::WebSocketEnd(end) => {
                eprintln!("websocket {} ended: {:?} {:?}, {:?} messages", end.upgrade.request.url(), end.code, end.reason, end.messages);
                HookReply::Continue
            }
            _ => HookReply::Continue,
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let from = args.next().unwrap_or_else(|| "hello".into());
    let to = args.next().unwrap_or_else(|| "HELLO".into());
    let listen: SocketAddr = match args.next() {
        Some(addr) => addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };

    let injector = Injector::default();
    let handler = Rewrite { from, to, injector: injector.clone() };
    let proxy = Proxy::builder().listen(listen).handler(handler).injector(injector).build().await?;
    if let Some(ca) = proxy.ca() {
        eprintln!("intercepting TLS: clients must trust {}", ca.cert_path.display());
    }
    proxy_io::shutdown_on_signals(proxy.shutdown_handle())?;
    eprintln!("listening on {}", proxy.local_addr());
    proxy.run().await;
    Ok(())
}
