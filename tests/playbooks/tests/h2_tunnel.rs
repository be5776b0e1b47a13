//! CONNECT over HTTP/2 (RFC 9113 section 8.5): an HTTP/2 client of the proxy opens tunnels
//! as streams, each what a connection's `CONNECT` would have been (a raw tunnel, or
//! intercepted TLS with HTTP inside), while its other streams go on as requests.

use playbooks::h2::*;
use playbooks::pump::{Origins, Peer, Pump};
use playbooks::tls::*;
use proxy_core::{Config, ConnId, Hook, HookKind};

const S1: ConnId = ConnId(1);
const S2: ConnId = ConnId(2);

fn plain_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

fn h2_client(config: Config, origins: Origins) -> Pump {
    let mut pump = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), origins);
    pump.run();
    pump
}

fn status(pump: &mut Pump, stream: u64) -> Option<u16> {
    pump.client_h2().response(stream).map(|r| r.status.as_u16())
}

#[test]
fn a_connect_stream_is_a_tunnel_beside_other_streams() {
    let mut pump = h2_client(Config::default(), plain_origin());
    pump.client_h2().connect(1, "a.test:443");
    pump.client_sends(b"");
    assert_eq!(pump.addrs[&S1].to_string(), "a.test:443");
    assert_eq!(status(&mut pump, 1), Some(200), "logs {:?}", pump.logs);
    let response = pump.client_h2().response(1).expect("response");
    assert!(response.headers.get("content-length").is_none(), "a tunnel's 2xx has no content");
    assert_eq!(pump.client_h2().ended(1), None, "the stream stays open for the tunnel");
    // Bytes both ways, as they are.
    pump.client_h2().send(1, b"\x16\x03\x01 not parsed");
    pump.client_sends(b"");
    assert_eq!(pump.server(S1).received(), b"\x16\x03\x01 not parsed");
    pump.server_sends(S1, b"server bytes");
    assert_eq!(pump.client_h2().body(1), b"server bytes");
    // Another stream meanwhile is a request, on a connection of its own.
    pump.client_h2().get(3, "http://b.test/page");
    pump.client_sends(b"");
    assert_eq!(pump.server(S2).received(), b"GET /page HTTP/1.1\r\nhost: b.test\r\n\r\n");
    pump.server_sends(S2, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npage");
    assert_eq!(pump.client_h2().body(3), b"page");
    // The server closes: the stream ends; the client ends its side: the server connection goes.
    pump.closes(S1);
    assert_eq!(pump.client_h2().ended(1), Some(None));
    assert!(!pump.closed.contains(&S1), "the client may still send");
    pump.client_h2().engine.finish(1, None);
    pump.client_sends(b"");
    assert!(pump.closed.contains(&S1), "closed {:?}; logs {:?}", pump.closed, pump.logs);
    assert_eq!(pump.client_h2().reset_reason(1), None, "a tunnel that ended cleanly is not reset");
    // The connection goes on serving the client.
    pump.client_h2().get(5, "http://b.test/again");
    pump.client_sends(b"");
    let received = String::from_utf8_lossy(pump.server(S2).received()).into_owned();
    assert!(received.ends_with("GET /again HTTP/1.1\r\nhost: b.test\r\n\r\n"), "{received:?}");
    // The tunnel is a CONNECT flow, through the hooks of one.
    let kinds = pump.hook_kinds();
    assert!(kinds.contains(&HookKind::HttpConnect), "{kinds:?}");
    let connect = pump.hooks.iter().find_map(|h| match h {
        Hook::HttpConnect(flow) => Some(flow.request.clone()),
        _ => None,
    });
    let connect = connect.expect("the HttpConnect hook");
    assert_eq!((connect.method.as_str(), connect.host.as_str(), connect.port), ("CONNECT", "a.test", 443));
    assert_eq!(connect.version, proxy_core::Version::Http2);
}

#[test]
fn bytes_sent_before_the_answer_reach_the_server() {
    let mut pump = h2_client(Config::default(), plain_origin());
    pump.client_h2().connect(1, "a.test:443");
    pump.client_h2().send(1, b"too early");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(200));
    assert_eq!(pump.server(S1).received(), b"too early");
}

#[test]
fn a_connect_that_cannot_connect_is_502_and_the_connection_goes_on() {
    let origins: Origins = Box::new(|addr| (addr.host != "down.test").then(|| Peer::Plain { received: Vec::new() }));
    let mut pump = h2_client(Config::default(), origins);
    pump.client_h2().connect(1, "down.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(502), "logs {:?}", pump.logs);
    let body = String::from_utf8_lossy(&pump.client_h2().body(1)).into_owned();
    assert!(body.contains("down.test:443"), "{body}");
    pump.client_h2().connect(3, "up.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 3), Some(200));
}

#[test]
fn a_reset_stream_closes_its_server_connection() {
    let mut pump = h2_client(Config::default(), plain_origin());
    pump.client_h2().connect(1, "a.test:443");
    pump.client_sends(b"");
    pump.client_h2().engine.reset(1, Reason::CANCEL);
    pump.client_sends(b"");
    // The tunnel's client side is over: the server hears the end, and the tunnel closes once
    // the server has nothing more to say.
    pump.closes(S1);
    assert!(pump.closed.contains(&S1), "closed {:?}", pump.closed);
}

#[test]
fn a_client_that_stops_reading_stops_the_server_being_read() {
    let config = Config { hooks: proxy_core::HookSet::NONE, ..Config::default() };
    let high_water = config.high_water;
    let mut pump = h2_client(config, plain_origin()).recording();
    pump.client_h2().connect(1, "a.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(200));
    // The client reads nothing more: no window update reaches the proxy.
    pump.client_h2().holding = true;
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut sent = Vec::new();
    for _ in 0..(high_water / chunk.len() + 4) * 2 {
        pump.server_sends(S1, &chunk);
        sent.extend_from_slice(&chunk);
    }
    let paused = pump.transcript().iter().any(|line| line.contains("PauseReading { conn: ConnId(1) }"));
    assert!(paused, "the server connection is paused while the stream's data waits");
    // The client catches up: every byte arrives, in order, and the server is read again.
    pump.client_h2().release();
    pump.client_sends(b"");
    for _ in 0..64 {
        if pump.client_h2().body(1).len() >= sent.len() {
            break;
        }
        pump.client_h2().release();
        pump.client_sends(b"");
    }
    assert_eq!(pump.client_h2().body(1), sent);
    let resumed = pump.transcript().iter().any(|line| line.contains("ResumeReading { conn: ConnId(1) }"));
    assert!(resumed, "the server connection is read again");
}

#[test]
fn an_intercepted_tunnel_in_a_stream() {
    // With interception on, the stream's bytes are TLS: the proxy mints a certificate for the
    // SNI and reads the HTTP inside, as after a connection's CONNECT.
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let cert = w.origin_ca.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"]))));
    let mut pump = h2_client(config, origins);
    pump.client_h2().connect(1, "example.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(200), "logs {:?}", pump.logs);
    pump.client_tunnels(1, Peer::tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"http/1.1"])));
    let inner = pump.client.rustls().expect("TLS in the stream");
    assert!(!inner.is_handshaking(), "the intercepted handshake; logs {:?}", pump.logs);
    pump.client_sends(b"GET /inside HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let request = String::from_utf8_lossy(pump.server(S1).received()).into_owned();
    assert!(request.starts_with("GET /inside HTTP/1.1\r\n"), "{request:?}; logs {:?}", pump.logs);
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let seen = String::from_utf8_lossy(pump.client.received()).into_owned();
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n") && seen.ends_with("\r\n\r\nhello"), "{seen:?}");
    // The request inside is a flow of its own, after the CONNECT's.
    let paths: Vec<String> = pump
        .hooks
        .iter()
        .filter_map(|h| match h {
            Hook::Response(flow) => Some(format!("{} {}", flow.request.method, flow.request.path)),
            _ => None,
        })
        .collect();
    assert_eq!(paths, ["CONNECT ", "GET /inside"]);
}

#[test]
fn a_secure_web_proxy_client_speaking_http2_opens_an_intercepted_tunnel() {
    // Chrome with an HTTPS proxy: TLS to the proxy with ALPN h2, a CONNECT stream, and TLS
    // inside the stream: three layers of framing in the core's buffers.
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let cert = w.origin_ca.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"]))));
    let client = Peer::tls(tls_client(w.proxy_ca.roots(), "proxy.test", &[b"h2", b"http/1.1"]));
    let mut pump = Pump::new(config, client, origins);
    pump.run();
    pump.client_sends(b"");
    let outer = pump.client.rustls().expect("TLS");
    assert!(!outer.is_handshaking(), "the proxy's own handshake; logs {:?}", pump.logs);
    assert_eq!(outer.alpn_protocol(), Some(&b"h2"[..]), "an HTTPS proxy speaks HTTP/2");
    pump.client_speaks_h2();
    pump.client_h2().connect(1, "example.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(200), "logs {:?}", pump.logs);
    pump.client_tunnels(1, Peer::tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"http/1.1"])));
    pump.client_sends(b"GET /deep HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let request = String::from_utf8_lossy(pump.server(S1).received()).into_owned();
    assert!(request.starts_with("GET /deep HTTP/1.1\r\n"), "{request:?}; logs {:?}", pump.logs);
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndeep");
    let seen = String::from_utf8_lossy(pump.client.received()).into_owned();
    assert!(seen.ends_with("\r\n\r\ndeep"), "{seen:?}");
    let names: Vec<Option<String>> = w.issuer.requests.lock().unwrap().iter().map(|r| r.server_name.clone()).collect();
    assert_eq!(names, [Some("proxy.test".to_owned()), Some("example.test".to_owned())]);
}

#[test]
fn proxy_authentication_covers_connect_streams() {
    let auth = proxy_core::ProxyAuth::single("user", "pass");
    let config = Config { proxy_auth: Some(auth), ..Config::default() };
    let mut pump = h2_client(config, plain_origin());
    pump.client_h2().connect(1, "a.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(407));
    assert!(pump.addrs.is_empty());
    let credentials = "Basic dXNlcjpwYXNz";
    let request = Request::connect("a.test:443").header("proxy-authorization", credentials).body(()).unwrap();
    pump.client_h2().open(3, request, false);
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 3), Some(200));
}

#[test]
fn a_connect_stream_inside_an_intercepted_connection_is_501() {
    // Inside a connection to one origin a CONNECT is no proxy request: the stream is refused
    // with a reason, and the connection goes on.
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let cert = w.origin_ca.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[b"h2"]))));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n");
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"h2"]));
    assert_eq!(pump.client.rustls().and_then(|t| t.alpn_protocol()), Some(&b"h2"[..]));
    pump.client_speaks_h2();
    pump.client_h2().connect(1, "elsewhere.test:443");
    pump.client_sends(b"");
    assert_eq!(status(&mut pump, 1), Some(501), "logs {:?}", pump.logs);
    let body = String::from_utf8_lossy(&pump.client_h2().body(1)).into_owned();
    assert!(body.contains("not inside a connection it intercepts"), "{body}");
    assert_eq!(pump.addrs.len(), 1, "nothing opened for it: {:?}", pump.addrs);
}
