//! Upstream-proxy mode through the binary: one sansproxy sends everything on through another.

mod support;

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
