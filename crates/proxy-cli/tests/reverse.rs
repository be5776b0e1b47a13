//! Reverse mode through the binary: the proxy stands in for an origin, with or without TLS on
//! either side, and curl talks to it as to that origin.

use crate::support;

use support::*;

/// `https://localhost:PORT` for the TLS origin, the form `--reverse` takes.
fn origin_url(origin: &Origin) -> String {
    origin.url("")
}

#[test]
fn plain_listener_to_a_plain_origin() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--mode", &format!("reverse:{}", origin.url("")), "--no-intercept"]);
    let out = Curl::new().arg(format!("http://127.0.0.1:{}/hello", proxy.port())).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    assert_eq!(origin.requests(), ["GET /hello"]);
}

#[test]
fn plain_listener_to_a_tls_origin() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--reverse", &origin_url(&origin), "--upstream-ca", pki.origin_ca_arg()]);
    let out = Curl::new().arg(format!("http://127.0.0.1:{}/hello", proxy.port())).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    let line = proxy
        .wait_stdout(std::time::Duration::from_secs(5), |l| l.contains("/hello -> 200"))
        .expect("a flow line");
    assert!(line.contains("https://localhost:"), "the flow names the upstream: {line}");
}

#[test]
fn tls_listener_to_a_tls_origin() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&[
        "--reverse",
        &origin_url(&origin),
        "--listen-tls",
        "--upstream-ca",
        pki.origin_ca_arg(),
    ]);
    let ca = proxy.ca_cert_arg();
    // By IP: the minted certificate carries the listen address.
    let out = Curl::new().args(["--cacert", &ca]).arg(format!("https://127.0.0.1:{}/hello", proxy.port())).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // By name: the SNI is what the certificate is for.
    let url = format!("https://proxy.test:{}/hello", proxy.port());
    let resolve = format!("proxy.test:{}:127.0.0.1", proxy.port());
    let out = Curl::new().args(["--cacert", &ca, "--resolve", &resolve]).arg(url).run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    // An untrusting client refuses the proxy.
    let out = Curl::new().arg(format!("https://127.0.0.1:{}/hello", proxy.port())).run();
    assert_eq!(out.code, Some(60), "{out}");
}

#[test]
fn tls_listener_with_a_certificate_of_its_own() {
    let pki = Pki::new();
    let origin = Origin::start();
    // The origin's valid certificate (for localhost and 127.0.0.1), key and chain in one file.
    let both = pki.dir().join("reverse-cert.pem");
    let pem = [std::fs::read(&pki.valid.cert_pem).unwrap(), std::fs::read(&pki.valid.key_pem).unwrap()].concat();
    std::fs::write(&both, pem).unwrap();
    let proxy = Proxy::start_tls(&[
        "--reverse",
        &origin.url(""),
        "--listen-tls",
        "--cert",
        both.to_str().unwrap(),
    ]);
    assert!(!proxy.ca_cert_path().exists(), "a CA was made though --cert replaces it");
    assert!(!proxy.stderr_text().contains("trust the CA"), "a CA notice for no CA");
    let out = Curl::new()
        .args(["--cacert", pki.origin_ca_arg()])
        .arg(format!("https://localhost:{}/hello", proxy.port()))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
}

/// curl's messages and exit code, for assertion messages.
fn refused_connect(out: &CurlOutput) -> bool {
    // curl 7.x: "Received HTTP code 405 from proxy after CONNECT"; 8.x: "CONNECT tunnel
    // failed, response 405".
    out.code == Some(56) && out.messages.contains("405")
}

#[test]
fn a_plain_listener_never_connects_where_the_client_says() {
    // The canary is what a client at the edge would like to reach behind the proxy.
    let origin = Origin::start();
    let canary = Origin::start();
    let proxy = Proxy::start(&["--reverse", &origin.url(""), "--no-intercept"]);
    let base = format!("http://127.0.0.1:{}/", proxy.port());
    // Absolute-form naming the canary, or a name whose lookup would fail (a 502 if tried).
    for target in [canary.url("/hello"), "http://canary.invalid/hello".into()] {
        let out = Curl::new().args(["--request-target", &target]).arg(&base).run();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{target}: {out}");
    }
    // Host naming the canary.
    let out = Curl::new().args(["-H", &format!("Host: {}", canary.authority())]).arg(format!("{base}hello")).run();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // HTTP/2 with prior knowledge, :authority naming the canary's name.
    let connect_to = format!("canary.invalid:80:127.0.0.1:{}", proxy.port());
    let out = Curl::new()
        .args(["--http2-prior-knowledge", "--connect-to", &connect_to, "http://canary.invalid/hello"])
        .run();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // A CONNECT tunnel to the canary.
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port());
    let out = Curl::new().args(["-p", "-x", &proxy_url]).arg(canary.url("/hello")).run();
    assert!(refused_connect(&out), "{out}");
    assert_eq!(canary.connections(), 0, "the canary was reached");
    assert_eq!(origin.requests(), ["GET /hello"; 4]);
}

#[test]
fn a_tls_listener_never_connects_where_the_client_says() {
    let origin = Origin::start();
    let canary = Origin::start();
    let proxy = Proxy::start_tls(&["--reverse", &origin.url(""), "--listen-tls"]);
    let ca = proxy.ca_cert_arg();
    let base = format!("https://127.0.0.1:{}/", proxy.port());
    // Absolute-form inside TLS.
    let out = Curl::new().args(["--http1.1", "--cacert", &ca, "--request-target", &canary.url("/hello")]).arg(&base).run();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // HTTP/2 has no absolute-form: a URL in :path is a malformed request, and its stream is
    // reset (curl: "stream 1 was not closed cleanly: PROTOCOL_ERROR").
    let out = Curl::new().args(["--http2", "--cacert", &ca, "--request-target", &canary.url("/hello")]).arg(&base).run();
    assert_eq!(out.code, Some(92), "{out}");
    // SNI and :authority naming another host.
    let connect_to = format!("canary.invalid:443:127.0.0.1:{}", proxy.port());
    let out = Curl::new()
        .args(["--http2", "--cacert", &ca, "--connect-to", &connect_to, "https://canary.invalid/hello"])
        .run();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // The listener taken for an HTTPS proxy: CONNECT inside TLS.
    let proxy_url = format!("https://127.0.0.1:{}", proxy.port());
    let out = Curl::new().args(["-p", "-x", &proxy_url, "--proxy-cacert", &ca]).arg(canary.url("/hello")).run();
    assert!(refused_connect(&out), "{out}");
    assert_eq!(canary.connections(), 0, "the canary was reached");
    assert_eq!(origin.requests(), ["GET /hello"; 2]);
}

#[test]
fn underscored_header_names_are_dropped_in_reverse_mode_unless_kept() {
    let origin = Origin::start();
    let headers = |args: &[&str]| {
        let proxy = Proxy::start(&[&["--reverse", &origin.url(""), "--no-intercept"], args].concat());
        let url = format!("http://127.0.0.1:{}/headers", proxy.port());
        let out = Curl::new().args(["-H", "X_User: mallory", "-H", "X-User: alice"]).arg(url).run();
        assert_eq!(out.status(), 200, "{out}");
        out.text()
    };
    let dropped = headers(&[]);
    assert!(dropped.contains("X-User: alice\n") && !dropped.contains("X_User"), "{dropped}");
    let kept = headers(&["--underscores-in-headers", "keep"]);
    assert!(kept.contains("X_User: mallory\n"), "{kept}");

    // A framing look-alike is refused whatever the policy, before any upstream is contacted.
    let proxy = Proxy::start(&["--reverse", &origin.url(""), "--no-intercept", "--underscores-in-headers", "keep"]);
    let before = origin.connections();
    let url = format!("http://127.0.0.1:{}/echo", proxy.port());
    let out = Curl::new().args(["-H", "Transfer_Encoding: chunked", "--data-binary", "hello"]).arg(url).run();
    assert_eq!(out.status(), 400, "{out}");
    assert!(out.text().contains("Transfer_Encoding reads as transfer-encoding"), "{out}");
    assert_eq!(origin.connections(), before);
}
