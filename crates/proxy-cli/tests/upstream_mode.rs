//! Upstream-proxy mode through the binary: one sansproxy sends everything on through another.

use crate::support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use support::*;

/// The second proxy in the chain: a plain explicit proxy that tunnels CONNECTs untouched.
fn next_hop() -> Proxy {
    Proxy::start(&["--no-intercept"])
}

#[test]
fn plain_requests_go_through_the_upstream_proxy() {
    let origin = Origin::start();
    let hop = next_hop();
    let proxy = Proxy::start(&["--no-intercept", "--mode", &format!("upstream:{}", hop.url())]);
    for _ in 0..2 {
        let out = proxy.curl().arg(origin.url("/hello")).run();
        out.assert_success();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    }
    // The next hop saw absolute-form requests: it logged them as flows of its own.
    let line = hop.wait_stdout(Duration::from_secs(5), |l| l.contains("/hello -> 200"));
    assert!(line.is_some(), "the upstream proxy logged no flow: {:?}", hop.stdout_lines());
}

#[test]
fn intercepted_https_goes_through_the_upstream_proxy() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let hop = next_hop();
    let mode = format!("upstream:{}", hop.url());
    let proxy = Proxy::start_tls(&["--mode", &mode, "--upstream-ca", pki.origin_ca_arg()]);
    let out = proxy.curl().args(["--cacert", &proxy.ca_cert_arg()]).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // We intercepted (the flow is ours, in https) and the hop only tunnelled.
    let ours = proxy.wait_stdout(Duration::from_secs(5), |l| l.contains("https://localhost:"));
    assert!(ours.is_some(), "{:?}", proxy.stdout_lines());
    let hops = hop.wait_stdout(Duration::from_secs(5), |l| l.contains("CONNECT"));
    assert!(hops.is_some(), "the hop saw a CONNECT: {:?}", hop.stdout_lines());
}

#[test]
fn an_unreachable_upstream_proxy_is_a_502_naming_it() {
    let port = unused_port();
    let proxy = Proxy::start(&["--no-intercept", "--mode", &format!("upstream:http://127.0.0.1:{port}")]);
    let out = proxy.curl().arg("http://example.test/").run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    assert!(out.text().contains(&format!("127.0.0.1:{port}")), "{out}");
}

/// 3 MB, checked byte for byte as it streams.
fn fetch_big(curl: Curl, url: &str) {
    support::checks::fetch_pattern(curl, url, 3_000_000);
}

#[test]
fn an_https_upstream_proxy_with_credentials() {
    // Two sansproxy processes: the hop is a secure web proxy (TLS on its regular listener)
    // that wants a password; the front speaks TLS to it and gives the password.
    let pki = Pki::new();
    let plain = Origin::start();
    let tls = Origin::start_tls(&pki.valid);
    let hop = Proxy::start_tls(&["--proxyauth", "hop:s3cret", "--upstream-ca", pki.origin_ca_arg()]);
    let upstream = format!("upstream:https://127.0.0.1:{}", hop.port());
    let hop_ca = hop.ca_cert_arg();
    let front = Proxy::start_tls(&["--mode", &upstream, "--upstream-auth", "hop:s3cret", "--upstream-ca", &hop_ca]);
    let ca = front.ca_cert_arg();
    // Plain HTTP: absolute-form over TLS to the hop, with the hop's credentials.
    fetch_big(front.curl(), &plain.url("/big?n=3000000"));
    // HTTPS: the front intercepts, asks the hop for a tunnel over TLS, and speaks TLS inside
    // it (which the hop intercepts in turn: TLS inside TLS at both).
    fetch_big(front.curl().args(["--cacert", &ca]), &tls.url("/big?n=3000000"));
    let hop_lines = hop.stdout_lines();
    assert!(hop_lines.iter().any(|l| l.contains(&format!("GET {}", plain.url("/big")))), "{hop_lines:?}");
    assert!(hop_lines.iter().any(|l| l.contains("CONNECT localhost:")), "{hop_lines:?}");
    // Without the credentials the hop refuses: its 407 for a plain request, and a 502 naming
    // the refusal for a tunnel.
    let bare = Proxy::start_tls(&["--mode", &upstream, "--upstream-ca", &hop_ca]);
    let out = bare.curl().arg(plain.url("/hello")).run();
    assert_eq!(out.status(), 407, "{out}");
    let out = bare.curl().args(["--cacert", &bare.ca_cert_arg()]).arg(tls.url("/hello")).run();
    assert_eq!(out.transfer().connect_status, 502, "the client's CONNECT is refused: {out}");
    let line = bare.wait_stdout(Duration::from_secs(5), |l| l.contains("refused CONNECT"));
    assert!(line.as_ref().is_some_and(|l| l.contains("407")), "{:?}", bare.stdout_lines());
    // An https upstream that is not trusted fails the TLS handshake, named.
    let untrusting = Proxy::start_tls(&["--mode", &upstream]);
    let out = untrusting.curl().arg(plain.url("/hello")).run();
    assert_eq!(out.status(), 502, "{out}");
    assert!(out.text().contains(&format!("upstream proxy 127.0.0.1:{}", hop.port())), "{out}");
    let remedy = "unknown issuer (a CA the proxy does not trust); trust the CA certificate that signed it \
                  (--upstream-ca FILE)";
    assert!(out.text().contains(remedy), "{out}");
}

/// A relay in front of `port` that counts the connections it carries.
fn counting_relay(port: u16) -> TcpServer {
    TcpServer::start(move |client: TcpStream| {
        let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { return };
        let pipe = |mut from: TcpStream, mut to: TcpStream| {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        };
        let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = std::thread::spawn(move || pipe(c, s));
        pipe(server, client);
        let _ = up.join();
    })
}

#[test]
fn short_clients_share_connections_to_the_upstream_proxy() {
    let pki = Pki::new();
    let (origin, tls_origin) = (Origin::start(), Origin::start_tls(&pki.valid));
    let hop = next_hop();
    let relay = counting_relay(hop.port());
    let mode = format!("upstream:http://127.0.0.1:{}", relay.port());
    let proxy = Proxy::start_tls(&["--mode", &mode, "--upstream-ca", pki.origin_ca_arg()]);
    // Plain requests, in absolute-form to the upstream proxy: one client connection each.
    for i in 0..30 {
        let out = proxy.curl().args(["-H", "Connection: close"]).arg(origin.url("/hello")).run();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "client {i}: {out}");
    }
    let plain = relay.connections();
    assert!(plain <= 3, "30 short clients took {plain} connections to the upstream proxy");
    // Intercepted HTTPS: each client's request goes through a tunnel of the upstream proxy,
    // which outlives it too.
    for i in 0..10 {
        let out = proxy.curl().args(["--cacert", &proxy.ca_cert_arg()]).arg(tls_origin.url("/hello")).run();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "client {i}: {out}");
    }
    assert_eq!(tls_origin.requests().len(), 10);
    let tunnels = relay.connections() - plain;
    assert!(tunnels <= 2, "10 intercepted clients took {tunnels} tunnels through the upstream proxy");
    assert!(tls_origin.connections() <= 2, "{} TLS connections to the origin", tls_origin.connections());
}
