//! Self-checks of the test support, without the proxy: the origin's routes, the client checks
//! the proxy tests reuse, the misbehaving origins and the helpers.

use crate::support;

use std::io::Write;
use std::time::Duration;

use support::checks::{self, Via};
use support::*;

#[test]
fn origin_self_check() {
    let origin = Origin::start();
    checks::get_hello(Via::Direct, &origin);
    checks::head_hello(Via::Direct, &origin);
    checks::echo(Via::Direct, &origin, 5000);
    checks::chunked_echo(Via::Direct, &origin);
    checks::expect_continue(Via::Direct, &origin);
    checks::headers_reach_origin(Via::Direct, &origin);

    let out = Curl::new().arg(origin.url("/nowhere")).run();
    assert_eq!(out.status(), 404, "{out}");
}

#[test]
fn origin_self_check_keep_alive() {
    let origin = Origin::start();
    checks::keep_alive(Via::Direct, &origin);

    // Several requests on one raw connection: Content-Length and chunked bodies, then close.
    let origin = Origin::start();
    let a = origin.authority();
    let mut w = Wire::connect(origin.port());
    w.send(format!(
        "POST /echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n\r\nhello"
    ));
    let r = w.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    w.send(format!(
        "POST /echo HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
    ));
    let r = w.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "abcde"));
    w.send(format!(
        "POST /sink HTTP/1.1\r\nHost: {a}\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    ));
    let r = w.read_response("POST").unwrap();
    assert_eq!(r.status, 100, "{r:?}");
    w.send("abc");
    let r = w.read_response("POST").unwrap();
    assert_eq!(r.text(), sink_reply(3, fnv1a64(b"abc")));
    w.send(format!(
        "GET /hello HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
    ));
    let r = w.read_response("GET").unwrap();
    assert_eq!(r.text(), HELLO);
    w.expect_closed(Duration::from_secs(5));
    assert_eq!(origin.connections(), 1);
    assert_eq!(
        origin.requests(),
        ["POST /echo", "POST /echo", "POST /sink", "GET /hello"]
    );
}

#[test]
fn origin_self_check_big_bodies() {
    let origin = Origin::start();
    let limit = Duration::from_secs(30);
    checks::download(Via::Direct, &origin, 16 << 20, limit);
    checks::upload_file(Via::Direct, &origin, 16 << 20, limit);
    checks::upload_chunked(Via::Direct, &origin, 4 << 20, limit);
}

#[test]
fn origin_self_check_streaming() {
    let origin = Origin::start();
    checks::slow_chunks(Via::Direct, &origin);
}

#[test]
fn origin_self_check_python() {
    let origin = Origin::start();
    checks::python(Via::Direct, &origin);
}

#[test]
fn misbehaving_origins_self_check() {
    // Closing mid-body: curl reports a partial file quickly.
    let server = TcpServer::start(support::origin::close_mid_body);
    let out = Curl::new().arg(server.url("/")).run();
    assert_eq!(out.code, Some(18), "{out}");
    assert!(out.elapsed < Duration::from_secs(3), "{out}");
    assert_eq!(out.body.len(), 1000, "{out}");

    // Silent: reads the request, never answers.
    let server = TcpServer::start(support::origin::never_answer);
    let mut w = Wire::connect(server.port());
    w.send(format!(
        "GET / HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.authority()
    ));
    w.stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = w
        .read_response("GET")
        .expect_err("the silent origin answered");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn helpers_self_check() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);

    let p = pattern(0, 600_000);
    assert!(p
        .iter()
        .enumerate()
        .all(|(i, &b)| b as u64 == (i as u64 * 31 + 7) % 251));
    let mut check = PatternCheck::new();
    check.feed(&p[..70_000]);
    check.feed(&p[70_000..]);
    assert_eq!((check.len(), check.mismatch()), (600_000, None));
    let mut bad = p.clone();
    bad[123_456] ^= 1;
    let mut check = PatternCheck::new();
    check.feed(&bad);
    assert_eq!(check.mismatch(), Some(123_456));

    let port = unused_port();
    let e = std::net::TcpStream::connect(("127.0.0.1", port)).expect_err("something listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);

    // A closed peer is seen as closed; a reset one too.
    let server = TcpServer::start(drop);
    let mut w = Wire::connect(server.port());
    w.expect_closed(Duration::from_secs(5));
    let server = TcpServer::start(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let mut w = Wire::connect(server.port());
    let r = w.read_response("GET").unwrap();
    assert_eq!(r.text(), "ok");
    w.expect_closed(Duration::from_secs(5));
}
