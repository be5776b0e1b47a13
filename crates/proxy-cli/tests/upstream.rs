//! Origins that fail: refusing connections, never answering, closing mid-body.

use crate::support;

use std::time::Duration;

use support::checks::{self, Via};
use support::*;

#[test]
fn refused_origin_gives_502_naming_target_and_cause() {
    let proxy = Proxy::start(&["-q"]);
    let port = unused_port();
    let out = proxy
        .curl()
        .arg(format!("http://127.0.0.1:{port}/hello"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    let text = out.text();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "502 body does not name the target: {out}"
    );
    assert!(
        text.to_lowercase().contains("refused"),
        "502 body does not name the cause: {out}"
    );
}

#[test]
fn silent_origin_gives_504_after_idle_timeout() {
    let server = TcpServer::start(support::origin::never_answer);
    let proxy = Proxy::start(&["-q", "--server-idle-timeout", "1"]);
    let out = proxy
        .curl()
        .max_time(Duration::from_secs(6))
        .arg(server.url("/hello"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 504, "{out}");
    let total = out.transfer().total;
    assert!(
        total >= Duration::from_millis(900),
        "504 before the idle timeout: {out}"
    );
    assert!(total < Duration::from_secs(3), "504 came late: {out}");
    assert_eq!(server.connections(), 1);
}

#[test]
fn origin_closing_mid_body_fails_the_client_quickly() {
    let server = TcpServer::start(support::origin::close_mid_body);
    let proxy = Proxy::start(&["-q"]);
    let out = proxy
        .curl()
        .max_time(Duration::from_secs(15))
        .arg(server.url("/big"))
        .run();
    assert!(
        !out.timed_out && out.elapsed < Duration::from_secs(5),
        "curl hung: {out}"
    );
    assert!(
        !matches!(out.code, Some(0) | Some(28)),
        "expected a transfer error: {out}"
    );
    assert!(out.body.len() <= 1000, "{out}");
    assert!(out.body == pattern(0, out.body.len()), "{out}");

    // The proxy survives and serves the next client.
    let origin = Origin::start();
    checks::get_hello(Via::Proxy(&proxy), &origin);
}
