//! Upstream connections shared across client connections: a client connection that ends
//! parks its idle upstream connections, and the next one to the same destination adopts one
//! instead of opening (`proxy_core::upstreams`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use playbooks::h2::H2Peer;
use playbooks::pump::{CarrierPump, Origins, Peer, Pump};
use playbooks::tls::*;
use playbooks::*;
use proxy_core::{Config, ConnId, HookSet};

const GET_A: &str = "GET http://a.test/one HTTP/1.1\r\nHost: a.test\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn sharing() -> Config {
    Config { share_upstreams: true, hooks: HookSet::NONE, ..Config::default() }
}

#[test]
fn a_client_that_leaves_parks_its_idle_connection() {
    Playbook::new(sharing())
        .recv(CLIENT, GET_A)
        .expect(reuse(S1, "http://a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, OK)
        .expect(send(CLIENT, OK))
        .closed(CLIENT)
        .expect(park(S1, "http://a.test:80"))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn a_connection_the_server_will_close_is_not_parked() {
    Playbook::new(sharing())
        .recv(CLIENT, GET_A)
        .expect(reuse(S1, "http://a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .expect(send(CLIENT, OK))
        .expect(close(S1))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn a_connection_busy_when_the_client_leaves_is_closed() {
    Playbook::new(sharing())
        .recv(CLIENT, GET_A)
        .expect(reuse(S1, "http://a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        // The client is gone (its end, then a failed write) while the answer is owed.
        .closed(CLIENT)
        .expect(pause(CLIENT))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

fn plain_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

#[test]
fn the_next_client_adopts_the_parked_connection() {
    let mut first = Pump::new(sharing(), Peer::Plain { received: Vec::new() }, plain_origin());
    first.run();
    first.client_sends(GET_A.as_bytes());
    first.server_sends(S1, OK.as_bytes());
    first.closes(ConnId::CLIENT);
    assert_eq!(first.parked, [S1]);
    // A second client connection, its own core: the parked connection (and its peer) move to it.
    let mut second = Pump::new(sharing(), Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    second.pool = std::mem::take(&mut first.pool);
    second.run();
    second.client_sends(b"GET http://a.test/two HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let received = String::from_utf8_lossy(second.server(S1).received()).into_owned();
    assert_eq!(received, "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\nGET /two HTTP/1.1\r\nHost: a.test\r\n\r\n", "one connection, both requests; logs {:?}", second.logs);
    second.server_sends(S1, OK.as_bytes());
    assert_eq!(second.client.received(), OK.as_bytes());
    // Another destination finds nothing parked: its open fails here (no origin), as any open.
    second.client_sends(b"GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert!(String::from_utf8_lossy(second.client.received()).contains("502"));
}

#[test]
fn a_parked_tls_connection_goes_on_with_its_session() {
    // Reverse mode to an HTTPS upstream: the TLS session moves with the connection, and the
    // second client's request goes over it without a new handshake.
    use proxy_core::{Mode, Scheme, ServerAddr};
    let w = world();
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    config.share_upstreams = true;
    config.mode = Mode::Reverse { scheme: Scheme::Https, target: ServerAddr::new("example.test", 443), client_tls: false };
    let cert = w.origin_ca.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"]))));
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    first.run();
    first.client_sends(b"GET /one HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    first.server_sends(S1, OK.as_bytes());
    assert_eq!(first.client.received(), OK.as_bytes(), "logs {:?}", first.logs);
    first.closes(ConnId::CLIENT);
    assert_eq!(first.parked, [S1], "logs {:?}", first.logs);
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    second.pool = std::mem::take(&mut first.pool);
    second.run();
    second.client_sends(b"GET /two HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let received = String::from_utf8_lossy(second.server(S1).received()).into_owned();
    // The same TLS session carries both requests, one after the other.
    assert!(received.starts_with("GET /one HTTP/1.1\r\n"), "{received:?}; logs {:?}", second.logs);
    assert!(received.contains("\r\n\r\nGET /two HTTP/1.1\r\n") && received.ends_with("\r\n\r\n"), "{received:?}");
    second.server_sends(S1, OK.as_bytes());
    assert_eq!(second.client.received(), OK.as_bytes());
}

#[test]
fn a_parked_http2_connection_takes_the_next_clients_streams() {
    use playbooks::h2::H2Peer;
    let config = Config { upstream_h2c: true, ..sharing() };
    let origins: Origins = Box::new(|_| Some(Peer::H2(Box::new(H2Peer::server()))));
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    first.run();
    first.client_sends(GET_A.as_bytes());
    // A new HTTP/2 connection is parked at once, to be shared (a driver runs it as a
    // carrier); without one, the client connection adopts it back, as S2.
    assert_eq!(first.parked, [S1], "logs {:?}", first.logs);
    let stream = first.server_h2(S2).requests()[0].0;
    first.server_h2(S2).respond(stream, 200, b"ok", None);
    first.server_sends(S2, b"");
    let answer = String::from_utf8_lossy(first.client.received()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.contains("\r\nok\r\n"), "{answer:?}; logs {:?}", first.logs);
    first.closes(ConnId::CLIENT);
    assert_eq!(first.parked, [S1, S2], "an idle HTTP/2 connection is parked; logs {:?}", first.logs);
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    second.pool = std::mem::take(&mut first.pool);
    second.run();
    second.client_sends(b"GET http://a.test/two HTTP/1.1\r\nHost: a.test\r\n\r\n");
    let requests = second.server_h2(S1).requests();
    let paths: Vec<String> = requests.iter().map(|(_, head)| head.uri.path().to_owned()).collect();
    assert_eq!(paths, ["/one", "/two"], "a second stream on the same connection; logs {:?}", second.logs);
    let stream = requests[1].0;
    second.server_h2(S1).respond(stream, 200, b"ok", None);
    second.server_sends(S1, b"");
    let answer = String::from_utf8_lossy(second.client.received()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.contains("\r\nok\r\n"), "{answer:?}");
}

const CONNECT: &[u8] = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n";
const GET_PATH: &[u8] = b"GET /path HTTP/1.1\r\nHost: example.test\r\n\r\n";
const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// Forward mode intercepting TLS, upstream connections shared; origins for `example.test`
/// (and `other.test`) that count how many connections were opened to them.
fn intercepting() -> (World, Config, std::rc::Rc<std::cell::Cell<usize>>, Origins) {
    let w = world();
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    config.share_upstreams = true;
    // A `TlsClientHello` subscriber may ask for passthrough, which a pooled TLS connection
    // could not give: none here.
    config.hooks = HookSet::NONE;
    let cert = w.origin_ca.leaf(&["example.test", "other.test"]);
    let opened = std::rc::Rc::new(std::cell::Cell::new(0));
    let count = opened.clone();
    let origins: Origins = Box::new(move |_| {
        count.set(count.get() + 1);
        Some(Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"])))
    });
    (w, config, opened, origins)
}

/// A client connection: CONNECT, its TLS for `sni`, one GET answered; then it leaves. The
/// server connection that carried it, and what its origin received.
fn one_client(w: &World, pump: &mut Pump, sni: &str) -> (ConnId, String) {
    pump.run();
    pump.client_sends(CONNECT);
    assert_eq!(pump.client.received(), b"HTTP/1.1 200 Connection established\r\n\r\n", "logs {:?}", pump.logs);
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), sni, &[b"http/1.1"]));
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "client handshake done; logs {:?}", pump.logs);
    pump.client_sends(GET_PATH);
    let server = *pump.servers.keys().last().expect("a server connection");
    pump.server_sends(server, HELLO);
    assert!(pump.client.received().ends_with(b"\r\n\r\nhello"), "logs {:?}", pump.logs);
    let origin_saw = String::from_utf8_lossy(pump.server(server).received()).into_owned();
    pump.closes(ConnId::CLIENT);
    (server, origin_saw)
}

#[test]
fn an_intercepted_connect_takes_the_tls_connection_a_client_before_left() {
    let (w, config, opened, origins) = intercepting();
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    let (server, _) = one_client(&w, &mut first, "example.test");
    assert_eq!(first.parked, [server], "logs {:?}", first.logs);
    assert_eq!(opened.get(), 1);

    // The next client's CONNECT adopts it: its TLS with the client completes from what the
    // parked session knows, and its request goes on the same session, no handshake upstream.
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    second.pool = std::mem::take(&mut first.pool);
    let (adopted, origin_saw) = one_client(&w, &mut second, "example.test");
    assert_eq!(opened.get(), 1, "no connection opened for the second client");
    assert_eq!(origin_saw.matches("GET /path HTTP/1.1\r\n").count(), 2, "both requests on one session: {origin_saw:?}");
    assert_eq!(second.parked, [adopted], "parked again for the next");
}

#[test]
fn a_client_naming_another_server_gets_a_connection_of_its_own() {
    let (w, config, opened, origins) = intercepting();
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    one_client(&w, &mut first, "example.test");
    // Same CONNECT target, but the client's SNI names another server: the pooled session was
    // verified for example.test, so it is closed and a new connection made for other.test.
    let (_, _, reopened, origins) = intercepting();
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    second.pool = std::mem::take(&mut first.pool);
    let (fresh, origin_saw) = one_client(&w, &mut second, "other.test");
    assert_eq!((opened.get(), reopened.get()), (1, 1));
    assert!(second.closed.iter().any(|c| *c != fresh && *c != ConnId::CLIENT), "the pooled one was closed: {:?}", second.closed);
    assert_eq!(origin_saw.matches("GET /path").count(), 1, "{origin_saw:?}");
    assert!(second.logs.iter().any(|l| l.contains("a new connection to example.test:443 instead of a pooled one")), "{:?}", second.logs);
}

#[test]
fn plain_http_in_a_tunnel_to_a_pooled_server_gets_a_connection_of_its_own() {
    let (w, config, _, origins) = intercepting();
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    one_client(&w, &mut first, "example.test");
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, plain_origin());
    second.pool = std::mem::take(&mut first.pool);
    second.run();
    second.client_sends(CONNECT);
    // Not TLS: the pooled session cannot carry it. What the client sent is read again over a
    // new connection, as plain HTTP inside the tunnel.
    second.client_sends(GET_PATH);
    let fresh = *second.servers.keys().last().expect("a new server connection");
    assert_eq!(second.server(fresh).received(), GET_PATH, "logs {:?}", second.logs);
    second.server_sends(fresh, HELLO);
    assert!(second.client.received().ends_with(b"\r\n\r\nhello"), "{:?}", String::from_utf8_lossy(second.client.received()));
    assert!(second.closed.len() == 1 && second.closed[0] != fresh, "the pooled one closed: {:?}", second.closed);
}

#[test]
fn a_client_that_leaves_before_saying_what_it_speaks_does_not_keep_a_pooled_connection() {
    let (w, config, _, origins) = intercepting();
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins);
    one_client(&w, &mut first, "example.test");
    let pool = std::mem::take(&mut first.pool);
    // Nothing said: the pooled connection is closed with the client, nothing opened.
    let mut silent = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    silent.pool = pool;
    silent.run();
    silent.client_sends(CONNECT);
    let pooled = *silent.servers.keys().next().expect("the pooled connection was adopted");
    silent.closes(ConnId::CLIENT);
    assert!(silent.closed.contains(&pooled) && silent.addrs.len() == 1, "closed {:?}, opened {:?}", silent.closed, silent.addrs);

    // Two bytes, then the end: they go to the server as through any tunnel, over a new
    // connection (the pooled one speaks TLS).
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, {
        let (_, _, _, origins) = intercepting();
        origins
    });
    one_client(&w, &mut first, "example.test");
    let mut brief = Pump::new(config, Peer::Plain { received: Vec::new() }, plain_origin());
    brief.pool = std::mem::take(&mut first.pool);
    brief.run();
    brief.client_sends(CONNECT);
    brief.client_sends(b"GE");
    brief.closes(ConnId::CLIENT);
    let fresh = *brief.servers.keys().last().expect("a new connection");
    assert_eq!(brief.server(fresh).received(), b"GE", "logs {:?}", brief.logs);
}

/// As [`intercepting`], `example.test` being an HTTP/2 server over TLS.
fn intercepting_h2() -> (World, Config, Rc<Cell<usize>>, Origins) {
    let (w, config, opened, _) = intercepting();
    let cert = w.origin_ca.leaf(&["example.test", "other.test"]);
    let count = opened.clone();
    let origins: Origins = Box::new(move |_| {
        count.set(count.get() + 1);
        let outer = Box::new(rustls::Connection::from(tls_origin(cert.clone(), &[b"h2"])));
        Some(Peer::Nested { outer, inner: Box::new(Peer::H2(Box::new(H2Peer::server()))) })
    });
    (w, config, opened, origins)
}

/// The client's `CONNECT` to `example.test`, then its TLS for `sni`, offering `alpn`.
fn tunnel(w: &World, pump: &mut Pump, sni: &str, alpn: &[&[u8]]) {
    pump.run();
    pump.client_sends(CONNECT);
    assert_eq!(pump.client.received(), b"HTTP/1.1 200 Connection established\r\n\r\n", "logs {:?}", pump.logs);
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), sni, alpn));
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "client handshake done; logs {:?}", pump.logs);
}

/// HTTP/1.1 clients intercepted on their way to one HTTP/2 server share its connections, as a
/// reverse proxy's clients do: the connection each `CONNECT` made is parked once its settings
/// are exchanged (the first becomes a carrier; a driver keeps the others whole for the next
/// `CONNECT`), and each client's requests join the carrier.
#[test]
fn intercepted_http1_clients_of_an_http2_server_share_its_connection() {
    const IDLE: Duration = Duration::from_secs(4);
    let now = Instant::now();
    let (w, config, opened, origins) = intercepting_h2();
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins).at(now);
    tunnel(&w, &mut first, "example.test", &[b"http/1.1"]);
    // Parked before any request went on it, but only once the server's SETTINGS and its
    // acknowledgement of ours were in: parked earlier, they would reach a connection nobody
    // reads (here the pump drops them, and the carrier below fails on a server that never
    // sent its SETTINGS).
    assert_eq!(first.parked, [S1], "logs {:?}", first.logs);
    let (parked, peer) = first.pool.pop().expect("parked");
    assert!(parked.carries_streams(), "{parked:?}");
    let carrier = CarrierPump::new(config.clone(), parked, peer, IDLE, now);
    let mut first = first.with_carrier(carrier.clone());
    first.client_sends(GET_PATH);

    let (_, _, reopened, origins) = intercepting_h2();
    let mut second = Pump::new(config, Peer::Plain { received: Vec::new() }, origins).at(now).with_carrier(carrier.clone());
    tunnel(&w, &mut second, "example.test", &[b"http/1.1"]);
    assert_eq!(second.parked, [S1], "its own connection parked in turn; logs {:?}", second.logs);
    second.client_sends(GET_PATH);

    let requests = carrier.borrow_mut().server_h2().requests();
    let paths: Vec<String> = requests.iter().map(|(_, head)| head.uri.to_string()).collect();
    assert_eq!(paths, ["https://example.test/path", "https://example.test/path"], "both clients' requests on the first one's connection");
    carrier.borrow_mut().server_h2().respond(requests[1].0, 200, b"for the second", None);
    carrier.borrow_mut().server_h2().respond(requests[0].0, 200, b"for the first", None);
    carrier.borrow_mut().server_sends(b"");
    first.run();
    second.run();
    let answer = |pump: &Pump| String::from_utf8_lossy(pump.client.received()).into_owned();
    let (first, second) = (answer(&first), answer(&second));
    assert!(first.starts_with("HTTP/1.1 200 ") && first.contains("\r\nfor the first\r\n"), "{first:?}");
    assert!(second.starts_with("HTTP/1.1 200 ") && second.contains("\r\nfor the second\r\n"), "{second:?}");
    assert_eq!((opened.get(), reopened.get()), (1, 1), "one connection per CONNECT, none per request");
}

/// An HTTP/2 client's requests share one connection already: the connection its `CONNECT`
/// made stays its own, its streams go on it, and it is parked whole only when the client
/// leaves.
#[test]
fn an_intercepted_http2_clients_connection_stays_its_own() {
    let (w, config, opened, origins) = intercepting_h2();
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    tunnel(&w, &mut pump, "example.test", &[b"h2"]);
    assert!(pump.parked.is_empty(), "logs {:?}", pump.logs);
    pump.client_speaks_h2();
    pump.client_h2().get(1, "https://example.test/path");
    pump.client_sends(b"");
    let requests = pump.server_h2(S1).requests();
    assert_eq!(requests.len(), 1, "on the tunnel's own connection; logs {:?}", pump.logs);
    pump.server_h2(S1).respond(requests[0].0, 200, b"hello", None);
    pump.server_sends(S1, b"");
    assert_eq!(pump.client_h2().body(1), b"hello");
    pump.closes(ConnId::CLIENT);
    assert_eq!(pump.parked, [S1], "parked whole as the client left; logs {:?}", pump.logs);
    assert_eq!(opened.get(), 1);
}

/// A client whose SNI names another server than its `CONNECT` had the tunnel's connection made
/// for that name: the carrier it becomes is found under that name, and the client's requests
/// join it there rather than open a connection made for the `CONNECT`'s host.
#[test]
fn an_intercepted_clients_requests_join_the_connection_made_for_its_sni() {
    let now = Instant::now();
    let (w, config, opened, origins) = intercepting_h2();
    let mut pump = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, origins).at(now);
    tunnel(&w, &mut pump, "other.test", &[b"http/1.1"]);
    let (parked, peer) = pump.pool.pop().expect("parked");
    assert_eq!(parked.key().to_string(), "https://example.test:443 as other.test");
    let carrier = CarrierPump::new(config, parked, peer, Duration::from_secs(4), now);
    let mut pump = pump.with_carrier(carrier.clone());
    pump.client_sends(GET_PATH);
    let requests = carrier.borrow_mut().server_h2().requests();
    assert_eq!(requests.len(), 1, "joined; logs {:?}", pump.logs);
    assert_eq!(opened.get(), 1, "no connection made for example.test");
}

/// A tunnel's HTTP/2 connection whose server sends its SETTINGS but never acknowledges ours is
/// not shared: the request that waited for it goes on it once the server's deadline passed,
/// rather than fail.
#[test]
fn a_tunnel_whose_server_never_acknowledges_our_settings_keeps_its_connection() {
    use playbooks::h2::{block, frame, frames, END_HEADERS, END_STREAM, HEADERS, SETTINGS};
    const MAGIC: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let w = world();
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    config.share_upstreams = true;
    config.upstream_h2c = true;
    config.hooks = HookSet::NONE;
    let deadline = config.server_idle_timeout;
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, plain_origin());
    pump.run();
    pump.client_sends(b"CONNECT a.test:80 HTTP/1.1\r\nHost: a.test:80\r\n\r\n");
    // Plain HTTP inside: the tunnel's connection speaks HTTP/2 with prior knowledge.
    pump.client_sends(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    pump.server_sends(S1, &frame(SETTINGS, 0, 0, &[]));
    let sent = |pump: &Pump| {
        let received = pump.server(S1).received();
        assert!(received.starts_with(MAGIC), "{received:?}");
        frames(&received[MAGIC.len()..]).into_iter().filter(|f| f.kind == HEADERS).count()
    };
    assert_eq!(sent(&pump), 0, "the request waits for the settings to be exchanged; logs {:?}", pump.logs);
    assert!(pump.parked.is_empty());
    pump.advance(deadline + Duration::from_secs(1));
    assert_eq!(sent(&pump), 1, "on the tunnel's connection; logs {:?}", pump.logs);
    assert!(pump.parked.is_empty(), "not shared");
    pump.server_sends(S1, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &block(&[(":status", "200")])));
    let answer = String::from_utf8_lossy(pump.client.received()).into_owned();
    assert!(answer.contains("HTTP/1.1 200 "), "{answer:?}; logs {:?}", pump.logs);
}
