//! The modes before HTTP: SOCKS5's handshake (RFC 1928, RFC 1929) and transparent mode's
//! original destination, each ending where an HTTP `CONNECT` ends (TLS interception, HTTP, or
//! a tunnel); and proxy authentication for HTTP proxy clients (`407`).

use playbooks::*;
use proxy_core::ProxyAuth;

fn socks5(config: Config) -> Config {
    Config { mode: Mode::Socks5, ..config }
}

fn with_auth(config: Config) -> Config {
    Config { proxy_auth: Some(ProxyAuth::single("alice", "secret")), ..config }
}

const NO_AUTH: &[u8] = &[5, 1, 0];
const CHOSE_NO_AUTH: &[u8] = &[5, 0];
/// CONNECT to the domain a.test, port 443.
const CONNECT_A: &[u8] = b"\x05\x01\x00\x03\x06a.test\x01\xbb";
const SUCCEEDED: &[u8] = &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0];

const NOT_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 45\r\n\
connection: close\r\n\r\nThis is a SOCKS5 proxy, not an HTTP proxy.\r\n\r\n";

fn reply(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[test]
fn socks5_connect_by_name_becomes_a_tunnel() {
    Playbook::new(socks5(no_hooks()))
        .recv(CLIENT, NO_AUTH)
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .recv(CLIENT, CONNECT_A)
        .expect(pause(CLIENT))
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, SUCCEEDED))
        .expect(resume(CLIENT))
        .recv(CLIENT, "\x16\x03\x01 hello")
        .expect(send(S1, "\x16\x03\x01 hello"))
        .recv(S1, "answer")
        .expect(send(CLIENT, "answer"))
        .closed(CLIENT)
        .expect(half_close(S1))
        .closed(S1)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run_split();
}

#[test]
fn socks5_ipv4_and_ipv6_targets() {
    for (request, target) in [
        (&b"\x05\x01\x00\x01\x0a\x00\x00\x07\x1f\x90"[..], "10.0.0.7:8080"),
        (&b"\x05\x01\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50"[..], "[2001:db8::1]:80"),
    ] {
        Playbook::new(socks5(no_hooks()))
            .recv(CLIENT, NO_AUTH)
            .expect(send(CLIENT, CHOSE_NO_AUTH))
            .recv(CLIENT, request)
            .ignore_pauses()
            .expect(open(S1, target))
            .opened(S1)
            .expect(send(CLIENT, SUCCEEDED))
            .run_split();
    }
}

#[test]
fn socks5_the_whole_handshake_in_one_read_and_early_data() {
    // A client may send greeting, request and its first bytes at once.
    let mut all = NO_AUTH.to_vec();
    all.extend_from_slice(CONNECT_A);
    all.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    Playbook::new(socks5(no_hooks()))
        .recv(CLIENT, all)
        .ignore_pauses()
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, SUCCEEDED))
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .run();
}

#[test]
fn socks5_username_and_password() {
    let greeting = [5, 2, 0, 2];
    Playbook::new(socks5(with_auth(no_hooks())))
        .recv(CLIENT, greeting)
        .expect(send(CLIENT, [5, 2]))
        .recv(CLIENT, b"\x01\x05alice\x06secret")
        .expect(send(CLIENT, [1, 0]))
        .recv(CLIENT, CONNECT_A)
        .ignore_pauses()
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, SUCCEEDED))
        .run_split();
}

#[test]
fn socks5_wrong_password_is_refused_and_logged() {
    Playbook::new(socks5(with_auth(no_hooks())))
        .recv(CLIENT, [5, 1, 2])
        .expect(send(CLIENT, [5, 2]))
        .recv(CLIENT, b"\x01\x05alice\x05guess")
        .expect(log_at(LogLevel::Warn, "wrong username or password (user \"alice\")"))
        .expect(send(CLIENT, [1, 1]))
        .expect(close(CLIENT))
        .strict_logs()
        .run_split();
}

#[test]
fn socks5_a_client_without_the_method_the_proxy_needs() {
    // The proxy needs a password; the client offers none.
    Playbook::new(socks5(with_auth(no_hooks())))
        .recv(CLIENT, NO_AUTH)
        .expect(log("it does not offer username/password authentication"))
        .expect(send(CLIENT, [5, 0xff]))
        .expect(close(CLIENT))
        .run();
    // The proxy needs none; the client offers only a password.
    Playbook::new(socks5(no_hooks()))
        .recv(CLIENT, [5, 1, 2])
        .expect(log("it does not offer no authentication"))
        .expect(send(CLIENT, [5, 0xff]))
        .expect(close(CLIENT))
        .run();
}

#[test]
fn socks5_malformed_greetings() {
    let cases: [(&[u8], &[u8], &str); 4] = [
        (&[5, 0], &[5, 0xff], "offers no authentication method"),
        (&[4, 1, 0, 80, 10, 0, 0, 1, 0], &[0, 0x5b, 0, 0, 0, 0, 0, 0], "SOCKS4 is not supported"),
        (&[6, 1, 0], &[], "not SOCKS5: the first byte is 0x06"),
        (b"GET http://a.test/ HTTP/1.1\r\n\r\n", NOT_HTTP, "the client speaks HTTP"),
    ];
    for (greeting, answer, why) in cases {
        let playbook = Playbook::new(socks5(no_hooks())).recv(CLIENT, greeting).expect(log(why));
        let playbook = if answer.is_empty() { playbook } else { playbook.expect(send(CLIENT, answer)) };
        playbook.expect(close(CLIENT)).run();
    }
}

#[test]
fn socks5_malformed_requests_get_the_reply_they_earn() {
    let cases: [(&[u8], u8, &str); 7] = [
        (b"\x05\x02\x00\x01\x0a\x00\x00\x01\x00\x50", 7, "command 2 (BIND) is not supported"),
        (b"\x05\x03\x00\x01\x0a\x00\x00\x01\x00\x50", 7, "command 3 (UDP ASSOCIATE) is not supported"),
        (b"\x05\x01\x00\x05\x0a\x00\x00\x01\x00\x50", 8, "address type 0x05 is not supported"),
        (b"\x05\x01\x00\x03\x00\x00\x50", 1, "the domain name is empty"),
        (b"\x05\x01\x00\x03\x03a b\x00\x50", 1, "the domain name is empty or not a host name"),
        (b"\x04\x01\x00\x01\x0a\x00\x00\x01\x00\x50", 1, "request version 0x04, not 5"),
        (b"\x05\x01\x07\x01\x0a\x00\x00\x01\x00\x50", 1, "reserved byte 0x07, not 0"),
    ];
    for (request, code, why) in cases {
        Playbook::new(socks5(no_hooks()))
            .recv(CLIENT, NO_AUTH)
            .expect(send(CLIENT, CHOSE_NO_AUTH))
            .recv(CLIENT, request)
            .expect(log(why))
            .expect(send(CLIENT, reply(code)))
            .expect(close(CLIENT))
            .run();
    }
}

#[test]
fn socks5_connection_failures_get_their_replies() {
    for (error, code) in [
        (OpenError::Refused, 5),
        (OpenError::Dns("no such host".into()), 4),
        (OpenError::Timeout, 6),
        (OpenError::Other("network is unreachable".into()), 3),
    ] {
        let message = format!("cannot connect to a.test:443: {error}");
        Playbook::new(socks5(with_hooks([HookKind::Error])))
            .recv(CLIENT, NO_AUTH)
            .expect(send(CLIENT, CHOSE_NO_AUTH))
            .recv(CLIENT, CONNECT_A)
            .ignore_pauses()
            .expect(open(S1, "a.test:443"))
            .open_failed(S1, error)
            .expect(log(&message))
            .expect(send(CLIENT, reply(code)))
            .expect(hook(F1, HookKind::Error).inspect(move |f| {
                assert_eq!(f.request.version, Version::Socks5);
                assert!(f.error.as_ref().unwrap().message.contains("cannot connect to a.test:443"));
            }))
            .expect(close(CLIENT))
            .run();
    }
}

#[test]
fn socks5_requests_meet_the_connect_hook() {
    // Refused by the hook: "not allowed by ruleset".
    Playbook::new(socks5(with_hooks([HookKind::HttpConnect])))
        .recv(CLIENT, NO_AUTH)
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .recv(CLIENT, CONNECT_A)
        .ignore_pauses()
        .expect(hook(F1, HookKind::HttpConnect).inspect(|f| {
            assert_eq!((f.request.method.as_str(), f.request.url()), ("CONNECT", "a.test:443".to_owned()));
            assert_eq!(f.request.version, Version::Socks5);
        }))
        .reply(F1, HookReply::Kill)
        .expect(log("tunnel to a.test:443 refused by hook"))
        .expect(send(CLIENT, reply(2)))
        .expect(close(CLIENT))
        .run();
    // Sent elsewhere by the hook, and shown established.
    Playbook::new(socks5(with_hooks([HookKind::HttpConnect, HookKind::Response])))
        .recv(CLIENT, NO_AUTH)
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .recv(CLIENT, CONNECT_A)
        .ignore_pauses()
        .expect(hook(F1, HookKind::HttpConnect))
        .update(F1, |f| f.request.port = 8443)
        .expect(open(S1, "a.test:8443"))
        .opened(S1)
        .expect(send(CLIENT, SUCCEEDED))
        .expect(hook(F1, HookKind::Response).inspect(|f| assert_eq!(f.response.as_ref().unwrap().status, 200)))
        .run();
}

#[test]
fn socks5_refuses_a_tunnel_to_its_own_listener() {
    // The playbook's listener is 127.0.0.1:8080.
    Playbook::new(socks5(no_hooks()))
        .recv(CLIENT, NO_AUTH)
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .recv(CLIENT, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90")
        .expect(log("refusing a tunnel to the proxy's own listener 127.0.0.1:8080"))
        .expect(send(CLIENT, reply(2)))
        .expect(close(CLIENT))
        .run();
}

#[test]
fn socks5_handshake_timeout() {
    Playbook::new(socks5(no_hooks()))
        .recv(CLIENT, [5, 1])
        .expect_timeout(Some(Config::default().head_timeout))
        .advance(Config::default().head_timeout)
        .wakeup()
        .expect(log("no request within 30s"))
        .expect(close(CLIENT))
        .run();
}

#[test]
fn socks5_plain_http_inside_is_parsed_when_intercepting() {
    let w = playbooks::tls::world();
    let config = socks5(Config { hooks: http_proxy().hooks, ..playbooks::tls::tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]) });
    Playbook::new(config)
        .recv(CLIENT, NO_AUTH)
        .expect(send(CLIENT, CHOSE_NO_AUTH))
        .recv(CLIENT, b"\x05\x01\x00\x03\x06a.test\x00\x50")
        .ignore_pauses()
        .expect(hook(F1, HookKind::HttpConnect))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(CLIENT, SUCCEEDED))
        .expect(hook(F1, HookKind::Response))
        .recv(CLIENT, "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(hook(F2, HookKind::RequestHeaders).inspect(|f| assert_eq!(f.request.url(), "http://a.test/x")))
        .run();
}

fn transparent(dst: &str) -> ClientInfo {
    let mut client = client_info();
    client.original_dst = Some(dst.parse().unwrap());
    client
}

#[test]
fn transparent_mode_connects_to_the_original_destination() {
    Playbook::new(Config { mode: Mode::Transparent, ..no_hooks() })
        .client(transparent("192.0.2.7:443"))
        .expect(open(S1, "192.0.2.7:443"))
        .recv(CLIENT, "\x16\x03\x01 early")
        .ignore_pauses()
        .opened(S1)
        .expect(send(S1, "\x16\x03\x01 early"))
        .recv(S1, "back")
        .expect(send(CLIENT, "back"))
        .run();
}

#[test]
fn transparent_mode_refuses_to_loop_or_guess() {
    Playbook::new(Config { mode: Mode::Transparent, ..no_hooks() })
        .client(transparent("127.0.0.1:8080"))
        .expect(log("is the proxy's own listener: closing (a redirect loop?)"))
        .expect(close(CLIENT))
        .run();
    Playbook::new(Config { mode: Mode::Transparent, ..no_hooks() })
        .expect(log("no original destination (was the connection redirected to the proxy?)"))
        .expect(close(CLIENT))
        .run();
}

#[test]
fn transparent_https_is_intercepted_for_the_sni() {
    let w = playbooks::tls::world();
    let tls = playbooks::tls::tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let config = Config { mode: Mode::Transparent, hooks: [HookKind::TlsClientHello].into_iter().collect(), ..tls };
    let mut client = playbooks::tls::tls_client(w.proxy_ca.roots(), "a.test", &[]);
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    Playbook::new(config)
        .client(transparent("192.0.2.7:443"))
        .expect(open(S1, "192.0.2.7:443"))
        .opened(S1)
        .recv(CLIENT, hello)
        .ignore_pauses()
        .expect(hook(F1, HookKind::TlsClientHello).inspect_hook(|h| match h {
            Hook::TlsClientHello { hello, .. } => assert_eq!(hello.server_name.as_deref(), Some("a.test")),
            other => panic!("{other:?}"),
        }))
        .run();
}

#[test]
fn proxy_auth_407_then_the_credentials_go_nowhere() {
    let config = with_auth(no_hooks());
    let body = "proxy authentication required: the proxy needs a username and password (Proxy-Authorization: Basic)\n";
    let required = format!(
        "HTTP/1.1 407 Proxy Authentication Required\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nproxy-authenticate: Basic realm=\"sansproxy\"\r\n\r\n{body}",
        body.len()
    );
    Playbook::new(config.clone())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(log("proxy authentication failed: no Proxy-Authorization"))
        .expect(send(CLIENT, &required))
        // The same connection, now with credentials ("alice:secret"), which stay here.
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .run();
    Playbook::new(config)
        .recv(CLIENT, "CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n")
        .expect(log_at(LogLevel::Warn, "proxy authentication failed: wrong username or password (user \"alice\")"))
        .expect(send(CLIENT, &required))
        .run();
}
