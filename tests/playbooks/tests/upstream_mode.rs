//! Upstream-proxy mode: clients see a regular proxy, and everything goes on through another
//! proxy ([`UPSTREAM`]): plain requests in absolute-form, everything else through a `CONNECT`
//! tunnel of the upstream proxy's.

use std::time::Duration;

use playbooks::pump::*;
use playbooks::tls::*;
use playbooks::*;

const GET_A: &str = "GET http://a.test/path?q=1 HTTP/1.1\r\nHost: a.test\r\nProxy-Connection: keep-alive\r\n\r\n";
/// `GET_A` as the upstream proxy sees it: still absolute-form, `Host` kept, hop-by-hop fields
/// gone.
const GET_A_UP: &str = "GET http://a.test/path?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n";
const OK_HI: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const CONNECT_A: &str = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
/// What we ask the upstream proxy for a tunnel to `a.test:443`.
const CONNECT_A_UP: &str = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
const ESTABLISHED: &str = "HTTP/1.1 200 Connection established\r\n\r\n";

#[test]
fn get_goes_to_the_upstream_proxy_in_absolute_form() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

#[test]
fn hooks_see_the_origin_not_the_proxy() {
    Playbook::new(upstream_mode(with_hooks([HookKind::Request])))
        .recv(CLIENT, "GET http://b.test:8080/x HTTP/1.1\r\nHost: b.test:8080\r\n\r\n")
        .expect(hook(F1, HookKind::Request).inspect(|f| assert_eq!(f.request.url(), "http://b.test:8080/x")))
        .expect(pause(CLIENT))
        .update(F1, |f| f.request.path = "/changed".into())
        .expect(open(S1, UPSTREAM))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, "GET http://b.test:8080/changed HTTP/1.1\r\nHost: b.test:8080\r\n\r\n"))
        .run();
}

#[test]
fn requests_for_different_origins_share_one_upstream_connection() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        // Another origin, same proxy: S1 is idle and reusable.
        .recv(CLIENT, "POST http://b.test:8080/up HTTP/1.1\r\nHost: b.test:8080\r\nContent-Length: 3\r\n\r\nabc")
        .expect(send(S1, "POST http://b.test:8080/up HTTP/1.1\r\nHost: b.test:8080\r\nContent-Length: 3\r\n\r\nabc"))
        .recv(S1, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .expect(send(CLIENT, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
        .run_split();
}

#[test]
fn an_upstream_connection_that_closes_is_replaced() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, OK_HI))
        .expect(close(S1))
        .recv(CLIENT, "GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n")
        .expect(open(S2, UPSTREAM))
        .opened(S2)
        .expect(send(S2, "GET http://b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n"))
        .run();
}

#[test]
fn connect_goes_through_the_upstream_proxy() {
    Playbook::new(upstream_mode(no_hooks()))
        // The client pipelines its first bytes behind the CONNECT.
        .recv(CLIENT, format!("{CONNECT_A}early"))
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        // The client hears nothing before the upstream proxy agreed.
        .expect(send(S1, CONNECT_A_UP))
        .expect_timeout(Some(Duration::from_secs(60)))
        // The upstream's answer comes with the server's first bytes behind it.
        .recv(S1, "HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\nserver first")
        .expect(send(CLIENT, ESTABLISHED))
        .expect(send(S1, "early"))
        .expect(send(CLIENT, "server first"))
        .recv(CLIENT, "\x16\x03\x01 client hello")
        .expect(send(S1, "\x16\x03\x01 client hello"))
        .recv(S1, "\x16\x03\x03 server hello")
        .expect(send(CLIENT, "\x16\x03\x03 server hello"))
        .closed(CLIENT)
        .expect(half_close(S1))
        .closed(S1)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run_split();
}

#[test]
fn connect_with_hooks_answers_the_client_after_the_upstream() {
    Playbook::new(upstream_mode(http_proxy()))
        .recv(CLIENT, CONNECT_A)
        .expect(hook(F1, HookKind::HttpConnect).inspect(|f| assert_eq!(f.request.url(), "a.test:443")))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, UPSTREAM))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(send(S1, CONNECT_A_UP))
        // An interim answer changes nothing.
        .recv(S1, "HTTP/1.1 100 Continue\r\n\r\n")
        .recv(S1, "HTTP/1.1 200 OK\r\n\r\n")
        .expect(hook(F1, HookKind::Response).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 200)))
        .expect(send(CLIENT, ESTABLISHED))
        .recv(CLIENT, "hello")
        .expect(send(S1, "hello"))
        .run();
}

#[test]
fn connect_refused_by_the_upstream_proxy_is_502_naming_it() {
    let message = "upstream proxy 127.0.0.1:3128 refused CONNECT a.test:443: 407 Proxy Authentication Required";
    Playbook::new(upstream_mode(with_hooks([HookKind::Error])))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, CONNECT_A_UP))
        .recv(
            S1,
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"up\"\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .expect(log(message))
        .expect(close(S1))
        .expect(hook(F1, HookKind::Error).inspect(move |f| {
            let error = f.error.as_ref().unwrap();
            assert_eq!((error.message.as_str(), error.status), (message, Some(502)));
        }))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", message, false)))
        .expect(resume(CLIENT))
        // The client connection is still good for another request.
        .recv(CLIENT, GET_A)
        .expect(open(S2, UPSTREAM))
        .run_split();
}

#[test]
fn garbage_from_the_upstream_proxy_is_502() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, CONNECT_A_UP))
        .recv(S1, "SSH-2.0-OpenSSH\r\n\r\n")
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(
                502,
                "Bad Gateway",
                "upstream proxy 127.0.0.1:3128 sent an invalid answer to CONNECT a.test:443: malformed status line",
                false,
            ),
        ))
        .run();
}

#[test]
fn upstream_proxy_closing_before_its_answer_is_502() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, CONNECT_A_UP))
        .recv(S1, "HTTP/1.1 200")
        .closed(S1)
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(
                502,
                "Bad Gateway",
                "upstream proxy 127.0.0.1:3128 closed the connection before answering CONNECT a.test:443",
                false,
            ),
        ))
        .run();
}

#[test]
fn silent_upstream_proxy_is_504() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, CONNECT_A_UP))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(close(S1))
        .expect(send(
            CLIENT,
            proxy_error(
                504,
                "Gateway Timeout",
                "upstream proxy 127.0.0.1:3128 did not answer CONNECT a.test:443 within 60 s",
                false,
            ),
        ))
        .run();
}

#[test]
fn unreachable_upstream_proxy_is_502_naming_it() {
    let message = "cannot connect to upstream proxy 127.0.0.1:3128: connection refused";
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .open_failed(S1, OpenError::Refused)
        .expect(log(message))
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", message, false)))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S2, UPSTREAM))
        .open_failed(S2, OpenError::Refused)
        .expect(log(message))
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", message, false)))
        .run();
}

#[test]
fn upstream_proxy_connect_timeout_is_504() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .open_failed(S1, OpenError::Timeout)
        .expect(send(
            CLIENT,
            proxy_error(
                504,
                "Gateway Timeout",
                "cannot connect to upstream proxy 127.0.0.1:3128: connect timed out",
                false,
            ),
        ))
        .run();
}

#[test]
fn silent_upstream_proxy_on_a_plain_request_is_504() {
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, GET_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .advance(Duration::from_secs(60))
        .wakeup()
        .expect(close(S1))
        .expect(send(CLIENT, proxy_error(504, "Gateway Timeout", "a.test:80 sent nothing for 60 s", false)))
        .run();
}

#[test]
fn https_request_refused_by_the_upstream_proxy_is_502() {
    let w = world();
    let config = upstream_mode(tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]));
    let message = "upstream proxy 127.0.0.1:3128 refused CONNECT example.test:443: 403 Forbidden";
    Playbook::new(Config { hooks: HookSet::NONE, ..config })
        .recv(CLIENT, "GET https://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"))
        .recv(S1, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        .expect(close(S1))
        .expect(send(CLIENT, proxy_error(502, "Bad Gateway", message, false)))
        .run();
}

#[test]
fn https_urls_without_tls_interception_are_refused_as_in_regular_mode() {
    let message = "https:// URLs in proxy requests need TLS interception, which is off; use CONNECT";
    Playbook::new(upstream_mode(no_hooks()))
        .recv(CLIENT, "GET https://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .expect(send(CLIENT, proxy_error(501, "Not Implemented", message, true)))
        .expect(half_close(CLIENT))
        .run();
}

// ---------------------------------------------------------------------------------------------
// TLS through the upstream proxy, with real rustls ends.

const CONNECT: &[u8] = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n";
const GET: &[u8] = b"GET /path HTTP/1.1\r\nHost: example.test\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";


/// Every connection goes to the upstream proxy, which says yes and tunnels to a TLS origin
/// for `example.test`.
fn upstream_to_origin(w: &World) -> Origins {
    let cert = w.origin_ca.leaf(&["example.test"]);
    Box::new(move |addr| {
        assert_eq!(addr.to_string(), UPSTREAM, "every connection goes to the upstream proxy");
        let origin = Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"]));
        Some(Peer::proxy(b"HTTP/1.1 200 Connection established\r\n\r\n", origin))
    })
}

fn plain() -> Peer {
    Peer::Plain { received: Vec::new() }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn tls_interception_through_the_upstream_proxy() {
    let w = world();
    let config = upstream_mode(tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]));
    let mut pump = Pump::new(config, plain(), upstream_to_origin(&w));
    pump.run();
    pump.client_sends(CONNECT);
    assert_eq!(text(pump.server(S1).proxy_request().unwrap()), text(CONNECT));
    assert_eq!(text(pump.client.received()), "HTTP/1.1 200 Connection established\r\n\r\n");
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"http/1.1"]));
    let client = pump.client.rustls().unwrap();
    assert!(!client.is_handshaking(), "{:?} {:?}", pump.client.error(), pump.logs);
    assert!(!pump.server(S1).rustls().unwrap().is_handshaking(), "the origin's handshake ran through the tunnel");
    // The minted certificate copies the origin's, which was reached through the proxy.
    assert!(w.issuer.requests.lock().unwrap()[0].upstream_cert.is_some());

    pump.client_sends(GET);
    assert_eq!(text(pump.server(S1).received()), text(GET));
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"), "{}", text(pump.client.received()));

    // The origin goes away; the next request needs a new tunnel, and TLS through it.
    pump.closes(S1);
    pump.client_sends(GET);
    assert_eq!(pump.addrs[&S2].to_string(), UPSTREAM);
    assert_eq!(text(pump.server(S2).proxy_request().unwrap()), text(CONNECT));
    assert_eq!(text(pump.server(S2).received()), text(GET));
    pump.server_sends(S2, RESPONSE);
    assert_eq!(text(pump.client.received()).matches("hello").count(), 2);
}

#[test]
fn https_urls_in_absolute_form_go_through_a_tunnel() {
    let w = world();
    let config = upstream_mode(tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]));
    let mut pump = Pump::new(config, plain(), upstream_to_origin(&w));
    pump.run();
    pump.client_sends(b"GET https://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(text(pump.server(S1).proxy_request().unwrap()), text(CONNECT));
    assert_eq!(text(pump.server(S1).received()), "GET /abs HTTP/1.1\r\nHost: example.test\r\n\r\n");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
    // The tunnel to that origin is kept for its next request.
    pump.client_sends(b"GET https://example.test/again HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(pump.servers.len(), 1);
    assert!(text(pump.server(S1).received()).ends_with("GET /again HTTP/1.1\r\nHost: example.test\r\n\r\n"));
    let connected: Vec<String> = pump
        .hooks
        .iter()
        .filter_map(|h| match h {
            Hook::ServerConnected { server, .. } => Some(server.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(connected, ["example.test:443"]);
}

#[test]
fn a_bad_origin_certificate_through_the_upstream_proxy_is_502() {
    let w = world();
    let config = upstream_mode(tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]));
    let cert = w.origin_ca.leaf(&["wrong.example"]);
    let origins: Origins = Box::new(move |_| {
        let origin = Peer::tls(tls_origin(cert.clone(), &[]));
        Some(Peer::proxy(b"HTTP/1.1 200 OK\r\n\r\n", origin))
    });
    let mut pump = Pump::new(config, plain(), origins);
    pump.run();
    pump.client_sends(b"GET https://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let seen = text(pump.client.received());
    assert!(seen.starts_with("HTTP/1.1 502 "), "{seen}");
    assert!(seen.contains("cannot connect to example.test:443: TLS handshake failed"), "{seen}");
    assert!(seen.contains("name mismatch"), "{seen}");
}

fn with_upstream_auth(config: Config) -> Config {
    let mode = match config.mode {
        Mode::Upstream { proxy, tls, .. } => Mode::Upstream { proxy, tls, auth: Some("up:pw".into()) },
        other => other,
    };
    Config { mode, ..config }
}

#[test]
fn upstream_credentials_go_on_requests_and_connects_to_it_only() {
    // "up:pw" in base64; the client's own Proxy-Authorization (for us) never goes on.
    let credentials = "Proxy-Authorization: Basic dXA6cHc=\r\n";
    Playbook::new(with_upstream_auth(upstream_mode(no_hooks())))
        .recv(CLIENT, "GET http://a.test/path?q=1 HTTP/1.1\r\nHost: a.test\r\nProxy-Authorization: Basic Y2xpZW50Og==\r\n\r\n")
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, format!("GET http://a.test/path?q=1 HTTP/1.1\r\nHost: a.test\r\n{credentials}\r\n").replace("Proxy-Authorization", "proxy-authorization")))
        .run();
    Playbook::new(with_upstream_auth(upstream_mode(no_hooks())))
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, UPSTREAM))
        .opened(S1)
        .expect(send(S1, format!("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n{credentials}\r\n")))
        .run();
}
