//! Reverse mode through the binary: the proxy stands in for an origin, with or without TLS on
//! either side, and curl talks to it as to that origin.

mod support;

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
