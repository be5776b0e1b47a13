//! WebSocket through the proxy with real peers: Python's `websockets` and Node's `ws`, as
//! clients and origins (`support/ws`), over loopback. ws:// in the explicit proxy's own form
//! and through CONNECT, wss:// intercepted, reverse mode to a ws origin; byte-exact echo,
//! close codes that reach the origin, messages not batched, a 64 MiB message and a slow
//! reader with the proxy's memory bounded.

use crate::support;

use std::time::Duration;

use support::pki::ORIGIN_HOST;
use support::resources::rss_kib;
use support::ws::{node_client, python_client, WsServer};
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// The proxy's peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Run a Python client check and require `ok`.
fn python_ok(args: &[&str]) -> String {
    let (run, out) = python_client(args, LIMIT, &mut |_| {});
    assert_eq!(run.code, Some(0), "client {args:?} failed: {out}\n{}", run.stderr);
    assert!(out.contains("ok"), "client {args:?}: {out}");
    out
}

/// The origin saw the client's close frame: code 4001 and the client's reason.
fn origin_saw_close(origin: &WsServer, reason: &str) -> String {
    let line = origin.wait_line("4001", Duration::from_secs(10));
    let line = line.unwrap_or_else(|| panic!("the origin saw no close 4001; it printed {:?}", origin.lines()));
    assert!(line.contains(reason), "{line}");
    line
}

/// Python's `websockets` offers `permessage-deflate` and accepts it: the proxy passes the
/// offer on, and each side compresses with the proxy.
fn compressed(origin_line: &str) {
    assert!(origin_line.contains("permessage-deflate"), "not negotiated: {origin_line}");
}

/// The proxy parsed the WebSocket (rather than tunnelling it): its flow log has the 101 and the
/// end line with the close code and message counts.
fn proxy_logged(proxy: &Proxy, counts: &str) {
    let end = proxy.wait_stdout(Duration::from_secs(10), |l| l.contains("websocket #") && l.contains("closed by client: 4001"));
    let end = end.unwrap_or_else(|| panic!("no WebSocket end line; stdout: {:?}", proxy.stdout_lines()));
    assert!(end.contains(counts), "{end}");
    assert!(proxy.stdout_lines().iter().any(|l| l.contains("-> 101 websocket #")), "{:?}", proxy.stdout_lines());
}

#[test]
fn python_echo_in_the_explicit_proxy_form() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    python_ok(&["explicit", &url, &proxy.url(), "-"]);
    let line = origin_saw_close(&origin, "client says bye");
    assert!(line.contains("\"extensions\": []"), "the explicit client offers no extension: {line}");
    proxy_logged(&proxy, "messages 12 -> 12 <-");
}

#[test]
fn python_echo_through_connect() {
    // With interception on, the plain HTTP inside the CONNECT is parsed, and the upgrade in it
    // becomes the WebSocket layer.
    let origin = WsServer::python(None);
    let proxy = Proxy::start_tls(&[]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    python_ok(&["echo", &url, &proxy.url(), "-"]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn python_wss_intercepted() {
    let pki = Pki::new();
    let origin = WsServer::python(Some((&pki.valid.cert_pem, &pki.valid.key_pem)));
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let url = format!("wss://{ORIGIN_HOST}:{}", origin.port());
    let ca = proxy.ca_cert_arg();
    python_ok(&["echo", &url, &proxy.url(), &ca]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn python_reverse_mode_to_a_ws_origin() {
    let origin = WsServer::python(None);
    let target = format!("http://127.0.0.1:{}", origin.port());
    let proxy = Proxy::start(&["--mode", &format!("reverse:{target}"), "--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", proxy.port());
    python_ok(&["echo", &url, "-", "-"]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn node_echo_through_connect_intercepted() {
    let origin = WsServer::node();
    let proxy = Proxy::start_tls(&[]);
    let url = format!("ws://127.0.0.1:{}/chat", origin.port());
    let (run, out) = node_client(&[&url, &proxy.url()], LIMIT);
    assert_eq!(run.code, Some(0), "node client failed: {out}\n{}", run.stderr);
    assert!(out.contains("ok"), "{out}");
    origin_saw_close(&origin, "node says bye");
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn messages_sent_apart_arrive_apart() {
    let origin = WsServer::python(None);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    // Streaming, and held whole for the per-message log of -v.
    for args in [&["--no-intercept"][..], &["--no-intercept", "-v"]] {
        let proxy = Proxy::start(args);
        let out = python_ok(&["spread", &url, &proxy.url(), "-"]);
        eprintln!("{args:?}: {out}");
    }
}

#[test]
fn a_64_mib_message_passes_with_bounded_memory() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    let out = python_ok(&["big", &url, &proxy.url(), "-", "64"]);
    let peak = peak_rss_kib(proxy.pid());
    eprintln!("{out} proxy peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "the proxy's peak RSS was {peak} KiB for a 64 MiB message");
}

#[test]
fn a_slow_reader_holds_back_a_fast_writer() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    let pid = proxy.pid();
    let mut during = Vec::new();
    let (run, out) = python_client(&["slow", &url, &proxy.url(), "-", "256"], LIMIT, &mut |line| {
        if line == "stalled" {
            // The client reads nothing for 3 s while the origin tries to send 256 MiB.
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(500));
                during.push(rss_kib(pid));
            }
        }
    });
    assert_eq!(run.code, Some(0), "slow client failed: {out}\n{}", run.stderr);
    let peak = peak_rss_kib(pid);
    eprintln!("{out} proxy RSS while stalled {during:?} KiB, peak {peak} KiB");
    assert_eq!(during.len(), 5, "{out}");
    // Once the buffers between are full, the stalled proxy does not grow.
    assert!(during[4] <= during[1] + 1024, "the proxy grew while its reader stalled: {during:?} KiB");
    assert!(peak < 64 * 1024, "the proxy's peak RSS was {peak} KiB");
}

/// A frame for the h2 test: FIN, opcode, masked with a fixed key (the client's role).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A server's unmasked frames, read from an HTTP/2 stream message by message.
struct ServerFrames {
    recv: h2::RecvStream,
    buf: Vec<u8>,
    /// A fragmented message begun: its opcode and payload so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl ServerFrames {
    /// The next whole message (fragments joined; a control frame as it is).
    async fn next(&mut self, what: &str) -> (u8, Vec<u8>) {
        loop {
            if let Some(message) = self.parse() {
                return message;
            }
            let data = tokio::time::timeout(Duration::from_secs(20), self.recv.data()).await;
            let data = data.unwrap_or_else(|_| panic!("{what} in time")).expect("the stream is open").expect("data");
            let _ = self.recv.flow_control().release_capacity(data.len());
            self.buf.extend_from_slice(&data);
        }
    }

    /// One message from `buf`, if one is whole there.
    fn parse(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let buf = &self.buf;
            if buf.len() < 2 {
                return None;
            }
            let (len, head) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => return None,
                n => (n as usize, 2),
            };
            assert_eq!(buf[1] & 0x80, 0, "a server's frame is unmasked");
            if buf.len() < head + len {
                return None;
            }
            let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
            let payload = buf[head..head + len].to_vec();
            self.buf.drain(..head + len);
            if opcode >= 0x8 {
                return Some((opcode, payload));
            }
            let message = self.partial.get_or_insert_with(|| (opcode, Vec::new()));
            message.1.extend(payload);
            if fin {
                return self.partial.take();
            }
        }
    }
}

#[test]
fn an_h2_client_websocket_over_rfc_8441_to_an_http1_origin() {
    use support::h2client::{runtime, H2Conn};
    let pki = Pki::new();
    let origin = WsServer::python(Some((&pki.valid.cert_pem, &pki.valid.key_pem)));
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let authority = format!("{ORIGIN_HOST}:{}", origin.port());
    let ca = proxy.ca_cert();
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &authority, &ca).await.expect("HTTP/2 to the proxy");
        let (status, mut send, recv) = conn.websocket("/echo").await.expect("an answer to the extended CONNECT");
        assert_eq!(status, 200, "RFC 8441: the proxy's 200 for the origin's 101");
        let mut frames = ServerFrames { recv, buf: Vec::new(), partial: None };
        let text = "über HTTP/2 ✓".repeat(20);
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (opcode, payload) in [(0x1u8, text.as_bytes().to_vec()), (0x2, binary)] {
            send.send_data(client_frame(opcode, &payload).into(), false).expect("send a frame");
            assert_eq!(frames.next("an echo").await, (opcode, payload), "the echo is byte-exact");
        }
        let mut close = 4001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"h2 client says bye");
        send.send_data(client_frame(0x8, &close).into(), false).expect("send the close");
        assert_eq!(frames.next("a close").await.0, 0x8, "the origin's close frame");
        // Then the proxy ends the stream.
        let end = tokio::time::timeout(Duration::from_secs(10), frames.recv.data()).await.expect("the stream ends");
        assert!(end.is_none(), "{end:?}");
    });
    let line = origin_saw_close(&origin, "h2 client says bye");
    assert!(line.contains("\"extensions\": []"), "{line}");
    proxy_logged(&proxy, "messages 2 -> 2 <-");
    assert!(proxy.stdout_lines().iter().any(|l| l.contains("-> 101 websocket #") && l.contains("client HTTP/2, server HTTP/1.1")), "{:?}", proxy.stdout_lines());
}

/// The HTTP/2 origin's log, once it has seen the client's close (4001 with `reason`).
fn h2_origin_closed(origin: &support::h2origin::H2Origin, reason: &str) -> Vec<String> {
    let expected = format!("websocket close 4001 {reason}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !origin.requests().contains(&expected) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = origin.requests();
    assert!(log.contains(&expected), "the origin saw no close 4001: {log:?}; failures {:?}", origin.failures());
    log
}

#[test]
fn an_h2_client_websocket_over_rfc_8441_to_an_h2_origin() {
    use support::h2client::{runtime, H2Conn};
    use support::h2origin::H2Origin;
    let pki = Pki::new();
    let origin = H2Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let ca = proxy.ca_cert();
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &ca).await.expect("HTTP/2 to the proxy");
        // A page first, as a browser loads one: the proxy's HTTP/2 connection to the origin is
        // open when the WebSocket comes, and carries it as a stream (RFC 8441 on both sides).
        let page = conn.get("/hello").await.expect("the page");
        assert_eq!(page.status, 200);
        let (status, mut send, recv) = conn.websocket("/echo").await.expect("an answer to the extended CONNECT");
        assert_eq!(status, 200);
        let mut frames = ServerFrames { recv, buf: Vec::new(), partial: None };
        let text = "h2 ⇄ h2 ".repeat(50);
        let binary: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
        for (opcode, payload) in [(0x1u8, text.as_bytes().to_vec()), (0x2, binary)] {
            send.send_data(client_frame(opcode, &payload).into(), false).expect("send a frame");
            assert_eq!(frames.next("an echo").await, (opcode, payload), "the echo is byte-exact");
        }
        let mut close = 4001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"h2 both sides");
        send.send_data(client_frame(0x8, &close).into(), false).expect("send the close");
        assert_eq!(frames.next("a close").await, (0x8, close), "the origin's close frame");
        let end = tokio::time::timeout(Duration::from_secs(10), frames.recv.data()).await.expect("the stream ends");
        assert!(end.is_none(), "{end:?}");
    });
    let log = h2_origin_closed(&origin, "h2 both sides");
    assert_eq!(log[..2], ["GET /hello".to_owned(), "CONNECT /echo".to_owned()]);
    assert_eq!(origin.connections(), 1, "the page and the WebSocket share one connection");
    proxy_logged(&proxy, "messages 2 -> 2 <-");
    let switched = proxy.stdout_lines().into_iter().find(|l| l.contains("-> 101 websocket #"));
    assert!(switched.as_ref().is_some_and(|l| l.contains("client HTTP/2, server HTTP/2")), "{switched:?}");
}

#[test]
fn python_client_to_an_h2c_origin_in_reverse_mode() {
    use support::h2origin::H2Origin;
    // The client's HTTP/1.1 upgrade becomes an extended CONNECT, the origin's 200 a 101 with
    // the accept value for the client's key (Python checks it).
    let origin = H2Origin::start_h2c();
    let proxy = Proxy::start(&["--mode", &format!("reverse:h2c://{}", origin.authority()), "--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", proxy.port());
    python_ok(&["echo", &url, "-", "-"]);
    let log = h2_origin_closed(&origin, "client says bye");
    assert_eq!(log[0], "CONNECT /echo");
    proxy_logged(&proxy, "messages 110 -> 110 <-");
    let switched = proxy.stdout_lines().into_iter().find(|l| l.contains("-> 101 websocket #"));
    assert!(switched.as_ref().is_some_and(|l| l.contains("client HTTP/1.1, server HTTP/2")), "{switched:?}");
}
