//! The modes before HTTP, through the binary with real clients on loopback: SOCKS5 (curl's
//! `--socks5-hostname` and `--socks5`, with and without a password), `--proxyauth` for HTTP
//! proxy clients (curl `-U`), several `--mode`s in one process, and transparent mode for
//! real, in a network namespace of the test's own with an nftables redirect.

mod support;

use std::time::Duration;

use support::*;

/// 3 MB, checked byte for byte as it streams.
fn fetch_big(curl: Curl, url: &str) {
    support::checks::fetch_pattern(curl, url, 3_000_000);
}

#[test]
fn curl_through_socks5_to_http_and_intercepted_https() {
    let pki = Pki::new();
    let plain = Origin::start();
    let tls = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--mode", "socks5", "--upstream-ca", pki.origin_ca_arg()]);
    let ca = proxy.ca_cert_arg();
    for flag in ["--socks5-hostname", "--socks5"] {
        let socks = format!("127.0.0.1:{}", proxy.port());
        fetch_big(Curl::new().args([flag, &socks]), &plain.url("/big?n=3000000"));
        // HTTPS inside the SOCKS5 tunnel is intercepted: curl trusts only the proxy's CA.
        fetch_big(Curl::new().args([flag, &socks, "--cacert", &ca]), &tls.url("/big?n=3000000"));
    }
    let lines = proxy.stdout_lines();
    // The request inside the tunnel is a flow of its own, as after an HTTP CONNECT.
    assert!(lines.iter().any(|l| l.contains(&format!("GET {}", tls.url("/big?n=3000000")))), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("CONNECT localhost:") && l.contains("client SOCKS5")), "{lines:?}");
    // curl's --socks5 resolves the name itself and sends the address.
    assert!(lines.iter().any(|l| l.contains("CONNECT 127.0.0.1:")), "{lines:?}");
}

#[test]
fn socks5_with_a_password_right_and_wrong() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--mode", "socks5", "--proxyauth", "alice:s3cret", "--no-intercept"]);
    let right = format!("socks5h://alice:s3cret@127.0.0.1:{}", proxy.port());
    let out = Curl::new().args(["--proxy", &right]).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.text(), HELLO);
    let wrong = format!("socks5h://alice:guess@127.0.0.1:{}", proxy.port());
    let out = Curl::new().args(["--proxy", &wrong]).arg(origin.url("/hello")).run();
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.messages.contains("authentication failed") || out.messages.contains("User was rejected"), "{out}");
    let logged = proxy.stderr_text();
    assert!(logged.contains("wrong username or password (user \"alice\")"), "{logged}");
    // No password at all: the proxy accepts no method the client offers.
    let none = format!("socks5h://127.0.0.1:{}", proxy.port());
    let out = Curl::new().args(["--proxy", &none]).arg(origin.url("/hello")).run();
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(origin.requests().len(), 1, "only the authenticated request reached the origin");
}

#[test]
fn socks5_failures_reach_curl_as_socks_replies() {
    let proxy = Proxy::start(&["--mode", "socks5", "--no-intercept"]);
    let socks = format!("127.0.0.1:{}", proxy.port());
    // Nothing listens there: reply 5, connection refused.
    let closed = format!("http://127.0.0.1:{}/", unused_port());
    let out = Curl::new().args(["--socks5-hostname", &socks, &closed]).run();
    assert_eq!(out.code, Some(97), "{out}");
    assert!(out.messages.contains("SOCKS5 connection to 127.0.0.1. (5)"), "reply 5, connection refused: {out}");
    // An HTTP client sent to the SOCKS5 port is told what it reached.
    let out = Curl::new().args(["-x", &format!("http://{socks}"), "http://127.0.0.1:1/"]).run();
    assert_eq!(out.status(), 400, "{out}");
    assert!(out.text().contains("This is a SOCKS5 proxy"), "{out}");
}

#[test]
fn proxyauth_for_http_proxy_clients() {
    let pki = Pki::new();
    let origin = Origin::start();
    let tls = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--proxyauth", "bob:pa55", "--upstream-ca", pki.origin_ca_arg()]);
    let out = proxy.curl().arg(origin.url("/hello")).run();
    assert_eq!(out.status(), 407, "{out}");
    assert!(out.messages.is_empty() || !out.messages.contains("Failed"), "{out}");
    let out = proxy.curl().args(["-U", "bob:pa55"]).arg(origin.url("/headers")).run();
    out.assert_success();
    assert!(!out.text().to_ascii_lowercase().contains("proxy-authorization"), "the credentials went upstream: {out}");
    let out = proxy.curl().args(["-U", "bob:wrong"]).arg(origin.url("/hello")).run();
    assert_eq!(out.status(), 407, "{out}");
    // A CONNECT needs them too; the requests inside it were authorised with it.
    let ca = proxy.ca_cert_arg();
    let out = proxy.curl().args(["-U", "bob:pa55", "--cacert", &ca]).arg(tls.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.text(), HELLO);
    let out = proxy.curl().args(["--cacert", &ca]).arg(tls.url("/hello")).run();
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.messages.contains("407"), "{out}");
    let logged = proxy.stderr_text();
    assert!(logged.contains("proxy authentication failed: wrong username or password (user \"bob\")"), "{logged}");
}

#[test]
fn proxyauth_from_an_htpasswd_file() {
    let dir = TempDir::new("htpasswd");
    let file = dir.join("users");
    // `htpasswd -nbs carol s3cret`.
    std::fs::write(&file, "carol:{SHA}8YtUVxAK8dg6UGDDcFJHC+o+NzQ=\n").unwrap();
    let origin = Origin::start();
    let arg = format!("@{}", file.display());
    let proxy = Proxy::start(&["--proxyauth", &arg, "--no-intercept"]);
    let out = proxy.curl().args(["-U", "carol:s3cret"]).arg(origin.url("/hello")).run();
    out.assert_success();
    let out = proxy.curl().args(["-U", "carol:other"]).arg(origin.url("/hello")).run();
    assert_eq!(out.status(), 407, "{out}");
}

#[test]
fn several_modes_in_one_process() {
    let origin = Origin::start();
    let target = format!("reverse:http://{}", origin.authority());
    let proxy = Proxy::start(&["--no-intercept", "--mode", "regular@0", "--mode", "socks5@0", "--mode", &format!("{target}@0")]);
    let (regular, socks, reverse) = (proxy.listener("regular"), proxy.listener("socks5"), proxy.listener("reverse"));
    let out = Curl::new().args(["-x", &format!("http://127.0.0.1:{regular}")]).arg(origin.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    let out = Curl::new().args(["--socks5-hostname", &format!("127.0.0.1:{socks}")]).arg(origin.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    let out = Curl::new().arg(format!("http://127.0.0.1:{reverse}/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    // Each flow line names the listener it came through.
    let line = proxy.wait_stdout(Duration::from_secs(5), |l| l.starts_with(&format!("[reverse@{reverse}] ")));
    assert!(line.is_some(), "{:?}", proxy.stdout_lines());
    let lines = proxy.stdout_lines();
    assert!(lines.iter().any(|l| l.starts_with(&format!("[regular@{regular}] "))), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("[socks5@{socks}] ")) && l.contains("CONNECT")), "{lines:?}");
}

#[test]
fn secure_web_proxy_and_tls_inside_tls() {
    let pki = Pki::new();
    let plain = Origin::start();
    let tls = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let ca = proxy.ca_cert_arg();
    let https_proxy = format!("https://127.0.0.1:{}", proxy.port());
    let secure = || Curl::new().args(["--proxy", &https_proxy, "--proxy-cacert", &ca]);
    // TLS to the proxy, plain HTTP to the origin.
    fetch_big(secure(), &plain.url("/big?n=3000000"));
    // TLS to the proxy, and inside its CONNECT TLS to the origin, intercepted: TLS inside TLS.
    fetch_big(secure().args(["--cacert", &ca]), &tls.url("/big?n=3000000"));
    let out = secure().args(["--cacert", &ca, "-d", "posted"]).arg(tls.url("/echo")).run();
    assert_eq!(out.text(), "posted", "{out}");
    // Plain clients of the same listener are served as before.
    let out = proxy.curl().arg(plain.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    let out = proxy.curl().args(["--cacert", &ca]).arg(tls.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    let lines = proxy.stdout_lines();
    assert!(lines.iter().any(|l| l.contains(&format!("POST {}", tls.url("/echo")))), "the request inside both TLS sessions is a flow: {lines:?}");
    // A client that does not trust the proxy's certificate fails its handshake, logged.
    let out = Curl::new().args(["--proxy", &https_proxy]).arg(plain.url("/hello")).run();
    assert_ne!(out.code, Some(0), "{out}");
}

#[test]
fn python_websockets_client_through_socks5() {
    use support::ws::{python_client, WsServer};
    // Python's `websockets` with python-socks, as a SOCKS5 client (socks5h: the proxy resolves).
    // Interception is on, so the WebSocket inside the tunnel is parsed like any other.
    let origin = WsServer::python(None);
    let proxy = Proxy::start_tls(&["--mode", "socks5"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    let socks = format!("socks5h://127.0.0.1:{}", proxy.port());
    let (run, out) = python_client(&["echo", &url, &socks, "-"], Duration::from_secs(120), &mut |_| {});
    assert_eq!(run.code, Some(0), "client failed: {out}\n{}", run.stderr);
    assert!(out.contains("ok"), "{out}");
    let end = proxy.wait_stdout(Duration::from_secs(10), |l| l.contains("websocket #") && l.contains("closed by client: 4001"));
    assert!(end.is_some_and(|l| l.contains("messages 110 -> 110 <-")), "{:?}", proxy.stdout_lines());
    let lines = proxy.stdout_lines();
    assert!(lines.iter().any(|l| l.contains("CONNECT 127.0.0.1:") && l.contains("client SOCKS5")), "{lines:?}");
}
