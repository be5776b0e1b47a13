//! TLS interception after `CONNECT`: a real rustls client and real rustls origins around the
//! core, driven in memory by a [`Pump`], all on the deterministic test provider
//! (`playbooks::crypto`), so every scenario is repeatable to the byte.

use std::time::Instant;

use playbooks::pump::*;
use playbooks::tls::*;
use proxy_core::tls::{Remedies, TlsCause, TlsPeer};
use proxy_core::{ConnId, Hook, HookKind, HookReply};

const S1: ConnId = ConnId(1);
const CONNECT: &[u8] = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n";
const GET: &[u8] = b"GET /path HTTP/1.1\r\nHost: example.test\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";


fn origin(w: &World, names: &[&str]) -> Origins {
    let cert = w.origin_ca.leaf(names);
    Box::new(move |_addr| Some(Peer::tls(tls_origin(cert.clone(), &[b"http/1.1"]))))
}

/// CONNECT, 200, then the client's TLS handshake with SNI `example.test`.
fn connected(w: &World, config: proxy_core::Config, origins: Origins, client_roots: rustls::RootCertStore) -> Pump {
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(CONNECT);
    assert_eq!(pump.client.received(), b"HTTP/1.1 200 Connection established\r\n\r\n");
    let _ = w;
    pump.client_starts_tls(tls_client(client_roots, "example.test", &[b"http/1.1"]));
    pump
}

#[test]
fn intercepts_a_get_with_a_minted_certificate() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots());
    let client_tls = pump.client.rustls().unwrap();
    assert!(!client_tls.is_handshaking(), "client handshake done; logs: {:?}", pump.logs);
    assert_eq!(client_tls.alpn_protocol(), Some(&b"http/1.1"[..]), "what the client offered");
    pump.client_sends(GET);
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /path HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("Host: example.test\r\n") || request.contains("host: example.test\r\n"), "{request}");
    pump.server_sends(S1, RESPONSE);
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(seen.ends_with("\r\n\r\nhello"), "{seen:?}");

    // The hooks saw the ClientHello and both handshakes.
    let hello = pump.hooks.iter().find_map(|h| match h {
        Hook::TlsClientHello { hello, .. } => Some(hello.clone()),
        _ => None,
    });
    let hello = hello.expect("tls_clienthello raised");
    assert_eq!(hello.server_name.as_deref(), Some("example.test"));
    assert_eq!(hello.alpn, vec![b"http/1.1".to_vec()]);
    let sides: Vec<TlsPeer> = pump
        .hooks
        .iter()
        .filter_map(|h| match h {
            Hook::TlsEstablished(info) => Some(info.peer),
            _ => None,
        })
        .collect();
    assert_eq!(sides, vec![TlsPeer::Server, TlsPeer::Client]);
    // The certificate was minted after the upstream answered, with its certificate in hand.
    let requests = w.issuer.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].server_name.as_deref(), Some("example.test"));
    assert!(requests[0].upstream_cert.is_some());
    // The flow is https.
    let flow = pump.hooks.iter().find_map(|h| match h {
        Hook::Request(f) => Some(f.request.url()),
        _ => None,
    });
    assert_eq!(flow.as_deref(), Some("https://example.test/path"));
}

/// What one intercepted GET put on the wire, and what each end decrypted.
struct Recorded {
    transcript: Vec<String>,
    client: Vec<u8>,
    origin: Vec<u8>,
}

/// CONNECT, both handshakes, a GET and its response, recorded, with the clock starting at
/// `start`.
fn recorded_get(start: Instant) -> Recorded {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["example.test"]))
        .at(start)
        .recording();
    pump.run();
    pump.client_sends(CONNECT);
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"http/1.1"]));
    pump.client_sends(GET);
    pump.server_sends(S1, RESPONSE);
    Recorded {
        transcript: pump.transcript().to_vec(),
        client: pump.client.received().to_vec(),
        origin: pump.server(S1).received().to_vec(),
    }
}

#[test]
fn the_same_tls_scenario_puts_the_same_bytes_on_the_wire() {
    let start = Instant::now();
    let first = recorded_get(start);
    assert!(first.client.ends_with(b"\r\n\r\nhello"), "{:?}", String::from_utf8_lossy(&first.client));
    assert!(first.origin.starts_with(b"GET /path HTTP/1.1\r\n"), "{:?}", String::from_utf8_lossy(&first.origin));
    // The bytes compared are ciphertext: records of application data went both ways, and the
    // body, which the client decrypted, never crossed the core in clear.
    let wire: Vec<&String> =
        first.transcript.iter().filter(|l| l.contains("SendData") || l.contains("DataReceived")).collect();
    let records = |conn: &str| wire.iter().filter(|l| l.contains(conn) && l.contains(r#"data: b"\x17\x03\x03"#)).count();
    assert!(records("ConnId(0)") >= 2 && records("ConnId(1)") >= 2, "{wire:#?}");
    assert!(!wire.iter().any(|l| l.contains("hello")), "{wire:#?}");

    let second = recorded_get(start);
    let lines = first.transcript.len().max(second.transcript.len());
    if let Some(i) = (0..lines).find(|&i| first.transcript.get(i) != second.transcript.get(i)) {
        panic!(
            "the runs part at line {i} of the transcript:\nfirst:  {:?}\nsecond: {:?}",
            first.transcript.get(i),
            second.transcript.get(i)
        );
    }
    assert_eq!(first.client, second.client, "what the client decrypted");
    assert_eq!(first.origin, second.origin, "what the origin decrypted");
}

#[test]
fn a_second_request_reuses_the_intercepted_upstream() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots());
    pump.client_sends(GET);
    pump.server_sends(S1, RESPONSE);
    pump.client_sends(GET);
    pump.server_sends(S1, RESPONSE);
    assert_eq!(pump.servers.len(), 1, "one upstream connection");
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert_eq!(seen.matches("hello").count(), 2, "{seen}");
}

#[test]
fn upstream_name_mismatch_is_a_502_naming_the_cause() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["wrong.example"]), w.proxy_ca.roots());
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "the client's handshake still completes");
    pump.client_sends(GET);
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(seen.starts_with("HTTP/1.1 502 "), "{seen}");
    assert!(seen.contains("example.test:443"), "{seen}");
    assert!(seen.contains("name mismatch: it is for wrong.example"), "{seen}");
    assert!(seen.contains("use a name the certificate is for, or skip verification"), "{seen}");
    assert!(pump.hook_kinds().contains(&HookKind::TlsFailed));
    assert_eq!(pump.servers.len(), 1, "the failed upstream is not contacted again");
}

#[test]
fn unknown_upstream_issuer_is_a_502() {
    let w = world();
    let stranger = TestCa::new("stranger");
    let cert = stranger.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[]))));
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    // The remedy names the settings as whoever runs the proxy calls them.
    config.tls.as_mut().unwrap().remedies = flags();
    let mut pump = connected(&w, config, origins, w.proxy_ca.roots());
    pump.client_sends(GET);
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(seen.starts_with("HTTP/1.1 502 "), "{seen}");
    assert!(
        seen.ends_with(
            "\r\n\r\nbad gateway: cannot connect to example.test:443: TLS handshake failed: certificate \
             signed by an unknown issuer (a CA the proxy does not trust); trust the CA certificate that \
             signed it (--upstream-ca FILE) or skip verification (--insecure-upstream)\n"
        ),
        "{seen}"
    );
    let failed = tls_failures(&pump);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!((failed[0].peer, &failed[0].cause), (TlsPeer::Server, &TlsCause::UnknownIssuer));
    assert!(failed[0].remedy.as_ref().is_some_and(|r| r.contains("--upstream-ca FILE")), "{failed:?}");
}

/// Remedies in the words of a command line.
fn flags() -> Remedies {
    Remedies {
        upstream_ca: "--upstream-ca FILE".into(),
        insecure_upstream: "--insecure-upstream".into(),
        ignore_hosts: "--ignore-hosts REGEX".into(),
        trust_ca: "/ca.pem".into(),
    }
}

/// The failures the `TlsFailed` hook told of.
fn tls_failures(pump: &Pump) -> Vec<proxy_core::tls::TlsFailure> {
    pump.hooks
        .iter()
        .filter_map(|h| match h {
            Hook::TlsFailed(f) => Some((**f).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_upstream_that_answers_in_plain_http_is_a_502_saying_so() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(CONNECT);
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "example.test", &[]));
    assert_eq!(pump.server(S1).received()[0], 0x16, "the proxy's ClientHello");
    pump.server_sends(S1, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "the client's handshake still completes");
    pump.client_sends(GET);
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(seen.starts_with("HTTP/1.1 502 "), "{seen}");
    let said = "TLS handshake failed: not TLS: the other side sent plain HTTP; it speaks plain HTTP on this \
                port: use http:// for it";
    assert!(seen.contains(said), "{seen}");
}

#[test]
fn ignore_hosts_passes_the_handshake_through() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[r"^example\.test:443$"]);
    let cert = w.origin_ca.leaf(&["example.test"]);
    // Passthrough: the origin terminates the client's TLS itself, and the client trusts it.
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = connected(&w, config, origins, w.origin_ca.roots());
    let hello = pump.server(S1).received().to_vec();
    assert_eq!(hello[0], 0x16, "the raw ClientHello reached the server");
    assert!(w.issuer.requests.lock().unwrap().is_empty(), "nothing minted");
    assert!(!pump.hook_kinds().contains(&HookKind::TlsClientHello));
    // A real origin answers the raw bytes, and the client's handshake completes with it.
    let mut origin = Peer::tls(tls_origin(cert.clone(), &[]));
    origin.deliver(&hello);
    pump.servers.insert(S1, origin);
    pump.server_sends(S1, b"");
    let client = pump.client.rustls().unwrap();
    assert!(!client.is_handshaking(), "{:?}", pump.client.error());
    assert_eq!(client.peer_certificates().unwrap()[0], cert.0, "the origin's own certificate");
    pump.client_sends(GET);
    assert_eq!(pump.server(S1).received(), GET);
}

#[test]
fn the_clienthello_hook_can_choose_passthrough() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins).replies(|hook| match hook {
        Hook::TlsClientHello { .. } => HookReply::Passthrough,
        _ => HookReply::Continue,
    });
    pump.run();
    pump.client_sends(CONNECT);
    pump.client_starts_tls(tls_client(w.origin_ca.roots(), "example.test", &[]));
    assert_eq!(pump.server(S1).received()[0], 0x16);
    assert!(w.issuer.requests.lock().unwrap().is_empty());
}

#[test]
fn plain_http_inside_a_connect_is_proxied() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(b"CONNECT example.test:80 HTTP/1.1\r\n\r\n");
    pump.client_sends(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /x HTTP/1.1\r\n"), "{request}");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
    let url = pump.hooks.iter().find_map(|h| match h {
        Hook::Request(f) => Some(f.request.url()),
        _ => None,
    });
    assert_eq!(url.as_deref(), Some("http://example.test/x"));
}

#[test]
fn other_protocols_inside_a_connect_are_tunnelled() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(b"CONNECT example.test:22 HTTP/1.1\r\n\r\n");
    pump.client_sends(b"SSH-2.0-OpenSSH_9.2\r\n");
    assert_eq!(pump.server(S1).received(), b"SSH-2.0-OpenSSH_9.2\r\n");
    pump.server_sends(S1, b"SSH-2.0-other\r\n");
    assert!(pump.client.received().ends_with(b"SSH-2.0-other\r\n"));
}

#[test]
fn a_server_that_speaks_first_gets_a_tunnel() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let origins: Origins = Box::new(move |_| Some(Peer::Plain { received: Vec::new() }));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(b"CONNECT mail.test:25 HTTP/1.1\r\n\r\n");
    pump.server_sends(S1, b"220 mail.test ESMTP\r\n");
    assert!(pump.client.received().ends_with(b"220 mail.test ESMTP\r\n"));
    pump.client_sends(b"EHLO me\r\n");
    assert_eq!(pump.server(S1).received(), b"EHLO me\r\n");
}

#[test]
fn a_client_that_rejects_the_minted_certificate_is_closed_and_reported() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    // The client trusts only the origin's CA, so the proxy's certificate is unknown to it.
    let pump = connected(&w, config, origin(&w, &["example.test"]), w.origin_ca.roots());
    assert!(pump.client.error().is_some_and(|e| e.contains("UnknownIssuer")), "{:?}", pump.client.error());
    let failed = pump.hooks.iter().find_map(|h| match h {
        Hook::TlsFailed(f) => Some(f.clone()),
        _ => None,
    });
    let failed = failed.expect("tls_failed raised");
    assert_eq!(failed.peer, TlsPeer::Client);
    assert_eq!(failed.cause, TlsCause::CertificateRefused(rustls::AlertDescription::UnknownCA));
    assert!(pump.closed.contains(&ConnId::CLIENT));
    let line = pump.logs.iter().find(|l| l.contains("TLS handshake with client")).expect("a log line");
    assert!(
        line.ends_with(
            "failed: the client refused the proxy's certificate (alert unknown_ca); the client does not \
             trust the proxy's CA: make the client trust the CA certificate that TlsConfig::issuer signs \
             with, or leave this host uninspected (TlsConfig::ignore_hosts)"
        ),
        "{line}"
    );
}

#[test]
fn a_client_that_leaves_right_after_the_handshake_is_reported_as_refusing_it() {
    // GnuTLS clients check the certificate once the handshake is over, then send close_notify.
    let w = world();
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    config.tls.as_mut().unwrap().remedies = flags();
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots());
    assert!(!pump.client.rustls().unwrap().is_handshaking());
    if let Peer::Tls { tls, .. } = &mut pump.client {
        tls.send_close_notify();
    }
    pump.client_sends(b"");
    pump.closes(ConnId::CLIENT);
    let failed = tls_failures(&pump);
    assert_eq!(failed.len(), 1, "one report, for the close_notify and the TCP end together: {failed:?}");
    assert_eq!((failed[0].peer, &failed[0].cause), (TlsPeer::Client, &TlsCause::ClosedAfterHandshake));
    assert_eq!(
        failed[0].to_string(),
        "the client closed the connection right after the handshake, before sending a request; it probably \
         does not trust the proxy's CA (GnuTLS clients, git among them, check the certificate only after \
         the handshake): make the client trust /ca.pem, or leave this host uninspected (--ignore-hosts \
         REGEX)"
    );
    let kinds = pump.hook_kinds();
    let established = kinds.iter().position(|k| *k == HookKind::TlsEstablished);
    assert!(established < kinds.iter().position(|k| *k == HookKind::TlsFailed), "{kinds:?}");

    // Without a close_notify, the TCP end alone says the same.
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots());
    pump.closes(ConnId::CLIENT);
    let failed = tls_failures(&pump);
    assert_eq!(failed.iter().map(|f| &f.cause).collect::<Vec<_>>(), [&TlsCause::ClosedAfterHandshake]);
}

#[test]
fn a_client_that_leaves_after_a_request_or_much_later_refused_nothing() {
    let w = world();
    let config = || tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config(), origin(&w, &["example.test"]), w.proxy_ca.roots());
    pump.client_sends(GET);
    pump.server_sends(S1, RESPONSE);
    pump.closes(ConnId::CLIENT);
    assert_eq!(tls_failures(&pump), []);

    // A connection opened ahead of need and left unused.
    let mut pump = connected(&w, config(), origin(&w, &["example.test"]), w.proxy_ca.roots());
    pump.advance(std::time::Duration::from_secs(3));
    pump.closes(ConnId::CLIENT);
    assert_eq!(tls_failures(&pump), []);
}

#[test]
fn a_client_without_sni_gets_a_certificate_for_the_ip() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let cert = w.origin_ca.leaf(&["127.0.0.1"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), &[]))));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(b"CONNECT 127.0.0.1:8443 HTTP/1.1\r\n\r\n");
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "127.0.0.1", &[]));
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "{:?} {:?}", pump.client.error(), pump.logs);
    let requests = w.issuer.requests.lock().unwrap();
    assert_eq!(requests[0].server_name, None);
    assert_eq!(requests[0].target_host, "127.0.0.1");
}

fn reverse_config(w: &World, scheme: proxy_core::Scheme, client_tls: bool) -> proxy_core::Config {
    let target = proxy_core::ServerAddr::new("origin.test", 8443);
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    proxy_core::Config { mode: proxy_core::Mode::Reverse { scheme, target, client_tls }, ..config }
}

#[test]
fn reverse_mode_terminates_client_tls_and_speaks_tls_upstream() {
    let w = world();
    let config = reverse_config(&w, proxy_core::Scheme::Https, true);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["origin.test"]));
    pump.run();
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "proxy.test", &[b"http/1.1"]));
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "{:?} {:?}", pump.client.error(), pump.logs);
    assert!(pump.servers.is_empty(), "no upstream before the first request");
    pump.client_sends(b"GET /r HTTP/1.1\r\nHost: proxy.test\r\n\r\n");
    assert_eq!(pump.addrs[&S1].to_string(), "origin.test:8443");
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /r HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains("host: origin.test:8443\r\n"), "Host is the upstream's: {request}");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
    let requests = w.issuer.requests.lock().unwrap();
    assert_eq!(requests[0].server_name.as_deref(), Some("proxy.test"));
}

#[test]
fn a_reverse_tls_listener_serves_every_request_from_its_upstream() {
    let w = world();
    let config = reverse_config(&w, proxy_core::Scheme::Https, true);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["origin.test"]));
    pump.run();
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "internal.test", &[b"http/1.1"]));
    assert!(!pump.client.rustls().unwrap().is_handshaking(), "{:?} {:?}", pump.client.error(), pump.logs);
    // Neither the SNI, nor an absolute-form target, nor Host picks the server.
    pump.client_sends(b"GET http://127.0.0.1:9999/abs HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n");
    let addrs: Vec<String> = pump.addrs.values().map(ToString::to_string).collect();
    assert_eq!(addrs, ["origin.test:8443"], "logs: {:?}", pump.logs);
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /abs HTTP/1.1\r\nHost: origin.test:8443\r\n"), "{request}");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
    // A CONNECT inside the TLS connection (a client taking us for an HTTPS proxy) is refused.
    pump.client_sends(b"CONNECT 127.0.0.1:9999 HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n\r\n");
    let answer = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(answer.contains("HTTP/1.1 405 Method Not Allowed\r\n"), "{answer}");
    assert_eq!(pump.addrs.len(), 1, "opened {:?}", pump.addrs);
}

#[test]
fn reverse_mode_without_client_tls() {
    let w = world();
    let config = reverse_config(&w, proxy_core::Scheme::Https, false);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["origin.test"]));
    pump.run();
    pump.client_sends(b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /plain HTTP/1.1\r\n"), "{request}");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
}

#[test]
fn https_urls_in_absolute_form_are_fetched_over_tls() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["example.test"]));
    pump.run();
    pump.client_sends(b"GET https://example.test/abs HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /abs HTTP/1.1\r\n"), "{request}");
    assert_eq!(pump.addrs[&S1].to_string(), "example.test:443");
    pump.server_sends(S1, RESPONSE);
    assert!(pump.client.received().ends_with(b"hello"));
}

#[test]
fn reverse_client_tls_without_a_tls_configuration_closes_with_a_reason() {
    let target = proxy_core::ServerAddr::new("origin.test", 443);
    let mode = proxy_core::Mode::Reverse { scheme: proxy_core::Scheme::Https, target, client_tls: true };
    let config = proxy_core::Config { mode, tls: None, ..proxy_core::Config::default() };
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, Box::new(|_| None));
    pump.run();
    assert!(pump.closed.contains(&ConnId::CLIENT));
    assert!(pump.logs.iter().any(|l| l.contains("needs Config::tls")), "{:?}", pump.logs);
    assert!(pump.core.is_closed());
}

#[test]
fn a_client_that_hangs_up_mid_handshake_is_reported() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origin(&w, &["example.test"]));
    pump.run();
    pump.client_sends(CONNECT);
    // The ClientHello goes in as raw bytes; the client never answers the proxy's flight.
    let mut client = tls_client(w.proxy_ca.roots(), "example.test", &[]);
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    pump.client_sends(&hello);
    assert!(pump.client.received().len() > 100, "the proxy sent its handshake flight");
    pump.closes(ConnId::CLIENT);
    let failed = pump.hooks.iter().find_map(|h| match h {
        Hook::TlsFailed(f) => Some(f.clone()),
        _ => None,
    });
    let failed = failed.expect("tls_failed raised");
    assert_eq!(failed.peer, TlsPeer::Client);
    // The client had the proxy's certificate when it hung up: it most likely refused it.
    assert_eq!(failed.cause, TlsCause::ClosedAfterCertificate);
    assert_eq!(
        failed.to_string(),
        "the client closed the connection after receiving the proxy's certificate, without an alert; it \
         probably does not trust the proxy's CA: make the client trust the CA certificate that \
         TlsConfig::issuer signs with, or leave this host uninspected (TlsConfig::ignore_hosts)"
    );
    assert!(pump.core.is_closed(), "everything closed: {:?}", pump.closed);
}

#[test]
fn a_client_gone_after_its_close_notify_aborts_the_download() {
    // The client says close_notify mid-download, then its TCP end comes, then a write to it
    // fails: the last is news, and ends the flow rather than reading the server to the end.
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots());
    pump.client_sends(GET);
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc");
    if let Peer::Tls { tls, .. } = &mut pump.client {
        tls.send_close_notify();
    }
    pump.client_sends(b"");
    // The TCP end that goes with the close_notify.
    pump.closes(ConnId::CLIENT);
    assert!(!pump.hook_kinds().contains(&HookKind::Error), "{:?}", pump.hook_kinds());
    pump.server_sends(S1, b"def");
    // A write failed: the client is gone.
    pump.closes(ConnId::CLIENT);
    let errors: Vec<_> = pump
        .hooks
        .iter()
        .filter_map(|h| match h {
            Hook::Error(f) => f.error.as_ref().map(|e| e.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, ["client disconnected"]);
    assert!(pump.closed.contains(&S1), "the server connection stays open: {:?}", pump.closed);
}

/// The protocol the client ends up with when it offers `client` and the origin accepts
/// `origin`, with HTTP/2 on or off in the proxy.
fn negotiated(client: &[&[u8]], origin: &'static [&'static [u8]], http2: bool) -> Option<Vec<u8>> {
    let w = world();
    let mut config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    config.http2 = http2;
    let cert = w.origin_ca.leaf(&["example.test"]);
    let origins: Origins = Box::new(move |_| Some(Peer::tls(tls_origin(cert.clone(), origin))));
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, origins);
    pump.run();
    pump.client_sends(CONNECT);
    pump.client_starts_tls(tls_client(w.proxy_ca.roots(), "example.test", client));
    let tls = pump.client.rustls().unwrap();
    assert!(!tls.is_handshaking(), "client handshake done; logs: {:?}", pump.logs);
    tls.alpn_protocol().map(<[u8]>::to_vec)
}

#[test]
fn the_client_gets_the_protocol_the_server_chose_when_it_offered_it() {
    const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];
    assert_eq!(negotiated(BOTH, &[b"http/1.1"], true).as_deref(), Some(&b"http/1.1"[..]), "an HTTP/1.1 server");
    assert_eq!(negotiated(BOTH, &[b"h2", b"http/1.1"], true).as_deref(), Some(&b"h2"[..]), "an HTTP/2 server");
    // No ALPN from the server means HTTP/1.1.
    assert_eq!(negotiated(BOTH, &[], true).as_deref(), Some(&b"http/1.1"[..]), "a server without ALPN");
    // The client's own order of preference does not override the server's choice.
    let h1_first: &[&[u8]] = &[b"http/1.1", b"h2"];
    assert_eq!(negotiated(h1_first, &[b"h2"], true).as_deref(), Some(&b"h2"[..]));
}

#[test]
fn the_client_gets_its_best_offer_when_the_server_chose_something_else() {
    // An HTTP/2-only client (gRPC) to an HTTP/1.1 server: the HTTP layer translates.
    assert_eq!(negotiated(&[b"h2"], &[b"http/1.1"], true).as_deref(), Some(&b"h2"[..]));
    // An HTTP/1.1-only client to an HTTP/2 server: likewise.
    assert_eq!(negotiated(&[b"http/1.1"], &[b"h2"], true).as_deref(), Some(&b"http/1.1"[..]));
    // With HTTP/2 off, h2 is neither offered to the server nor given to the client.
    assert_eq!(negotiated(&[b"h2", b"http/1.1"], &[b"h2", b"http/1.1"], false).as_deref(), Some(&b"http/1.1"[..]));
    // A client that offers no ALPN gets none.
    assert_eq!(negotiated(&[], &[b"h2", b"http/1.1"], true), None);
}

#[test]
fn a_secure_web_proxy_client_and_tls_inside_its_connect() {
    // The client speaks TLS to the proxy itself (a regular listener with interception on),
    // sends its CONNECT inside, then a second TLS session inside that: TLS inside TLS, both
    // in the core's buffers.
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let client = Peer::tls(tls_client(w.proxy_ca.roots(), "proxy.test", &[b"http/1.1"]));
    let mut pump = Pump::new(config, client, origin(&w, &["example.test"]));
    pump.run();
    pump.client_sends(b"");
    let outer = pump.client.rustls().expect("TLS");
    assert!(!outer.is_handshaking(), "the proxy's own handshake; logs {:?}", pump.logs);
    assert_eq!(outer.alpn_protocol(), Some(&b"http/1.1"[..]));
    pump.client_sends(CONNECT);
    assert_eq!(pump.client.received(), b"HTTP/1.1 200 Connection established\r\n\r\n");
    pump.client_nests_tls(tls_client(w.proxy_ca.roots(), "example.test", &[b"http/1.1"]));
    let inner = pump.client.rustls().expect("TLS inside");
    assert!(!inner.is_handshaking(), "the intercepted handshake inside; logs {:?}", pump.logs);
    pump.client_sends(GET);
    let request = String::from_utf8_lossy(pump.server(S1).received()).to_string();
    assert!(request.starts_with("GET /path HTTP/1.1\r\n"), "{request}");
    pump.server_sends(S1, RESPONSE);
    let seen = String::from_utf8_lossy(pump.client.received()).to_string();
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n") && seen.ends_with("\r\n\r\nhello"), "{seen:?}");
    // Certificates: one for the proxy's name, one for the origin's.
    let names: Vec<Option<String>> = w.issuer.requests.lock().unwrap().iter().map(|r| r.server_name.clone()).collect();
    assert_eq!(names, [Some("proxy.test".to_owned()), Some("example.test".to_owned())]);
}

#[test]
fn a_plain_client_of_an_intercepting_regular_listener_is_unchanged() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = Pump::new(config, Peer::Plain { received: Vec::new() }, Box::new(|_| Some(Peer::Plain { received: Vec::new() })));
    pump.run();
    pump.client_sends(b"GET http://example.test/path HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(pump.server(S1).received(), b"GET /path HTTP/1.1\r\nHost: example.test\r\n\r\n");
}

/// The body of a chunked message (`message` from its head on), decoded.
fn dechunk(message: &[u8]) -> Vec<u8> {
    let text = message;
    let start = text.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let (mut rest, mut body) = (&text[start..], Vec::new());
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").expect("a size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
}

/// The SendData commands to the client in `lines` of a transcript.
fn sends_to_client(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.starts_with("<< SendData { conn: ConnId(0)")).count()
}

/// Small pieces the proxy sends the client in one turn share a record: a chunked response's
/// head, each chunk's size line, data and CRLF, and the last chunk (eight pieces) leave in one
/// write of one record, where each used to be a record and a write of its own. A large piece
/// is sealed on its own, right after what waited before it, so the bytes keep their order.
#[test]
fn small_pieces_of_a_turn_share_a_record_and_keep_their_order() {
    let w = world();
    let config = tls_proxy(w.issuer.clone(), w.origin_ca.roots(), &[]);
    let mut pump = connected(&w, config, origin(&w, &["example.test"]), w.proxy_ca.roots()).recording();
    pump.client_sends(GET);
    let before = pump.transcript().len();
    pump.server_sends(S1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let seen = pump.client.received().to_vec();
    assert!(seen.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&seen));
    assert_eq!(dechunk(&seen), b"hello world");
    assert_eq!(sends_to_client(&pump.transcript()[before..]), 1, "{:#?}", &pump.transcript()[before..]);

    // A second response: a small chunk, a large one, a small one.
    let large: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n".to_vec();
    response.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
    response.extend_from_slice(&large);
    response.extend_from_slice(b"\r\n3\r\nxyz\r\n0\r\n\r\n");
    let received = pump.client.received().len();
    pump.client_sends(GET);
    let before = pump.transcript().len();
    pump.server_sends(S1, &response);
    let second = pump.client.received()[received..].to_vec();
    let mut expected = b"abc".to_vec();
    expected.extend_from_slice(&large);
    expected.extend_from_slice(b"xyz");
    assert_eq!(dechunk(&second), expected);
    // What waited before the large piece and the large piece (a record each, in one write),
    // then what followed it.
    assert_eq!(sends_to_client(&pump.transcript()[before..]), 2, "{:#?}", &pump.transcript()[before..]);
}
