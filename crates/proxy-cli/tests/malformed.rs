//! Malformed requests sent raw: each gets a specific error status with a short text body naming
//! the cause, the connection is closed, nothing smuggled reaches the origin, and the proxy goes
//! on serving.

use crate::support;

use std::time::Duration;

use support::checks::{self, Via};
use support::*;

/// Sends `request(origin authority)` to a proxy started with `--max-head-bytes 1024` and checks
/// the answer. `forwarded`: the one request head the origin may have seen (a body error can
/// only be found after the head went upstream).
fn rejects(request: impl Fn(&str) -> Vec<u8>, status: u16, forwarded: Option<&str>) {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q", "--max-head-bytes", "1024"]);
    let mut w = proxy.connect();
    w.send(request(&origin.authority()));
    let r = w
        .read_response("POST")
        .unwrap_or_else(|e| panic!("no error response: {e}"));
    assert!(
        r.head.start.starts_with(&format!("HTTP/1.1 {status} ")),
        "expected {status}, got {r:?}"
    );
    let text =
        std::str::from_utf8(&r.body).unwrap_or_else(|_| panic!("error body is not text: {r:?}"));
    assert!(
        !text.trim().is_empty() && text.len() < 1024,
        "error body should be short text: {text:?}"
    );
    w.expect_closed(Duration::from_secs(5));

    checks::get_hello(Via::Proxy(&proxy), &origin);
    let log = origin.requests();
    let (hello, other): (Vec<_>, Vec<_>) = log.iter().partition(|l| *l == "GET /hello");
    assert_eq!(hello.len(), 1, "origin log {log:?}");
    assert!(
        other.iter().all(|l| Some(l.as_str()) == forwarded),
        "origin received {log:?}"
    );
    assert!(
        log.iter().all(|l| !l.contains("smuggled")),
        "a smuggled request got through: {log:?}"
    );
}

#[test]
fn garbage_request_line_is_400() {
    rejects(|_| b"GARBAGE\r\n\r\n".to_vec(), 400, None);
}

#[test]
fn oversized_head_is_431() {
    rejects(
        |a| {
            format!(
                "GET http://{a}/big-head HTTP/1.1\r\nHost: {a}\r\nX-Big: {}\r\n\r\n",
                "a".repeat(3000)
            )
            .into()
        },
        431,
        None,
    );
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejects(
        |a| {
            format!(
                "POST http://{a}/echo?m=cl-te HTTP/1.1\r\nHost: {a}\r\nContent-Length: 37\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-cl-te HTTP/1.1\r\nHost: {a}\r\n\r\n"
            )
            .into()
        },
        400,
        None,
    );
}

#[test]
fn differing_content_lengths_are_400() {
    rejects(
        |a| {
            format!(
                "POST http://{a}/echo?m=two-cl HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n\
                 Content-Length: 6\r\n\r\nhello\nGET /smuggled-two-cl HTTP/1.1\r\nHost: {a}\r\n\r\n"
            )
            .into()
        },
        400,
        None,
    );
}

#[test]
fn bad_chunk_size_is_400() {
    rejects(
        |a| {
            format!(
                "POST http://{a}/echo?m=bad-chunk HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n\
                 zz\r\nhello\r\n0\r\n\r\nGET http://{a}/smuggled-bad-chunk HTTP/1.1\r\nHost: {a}\r\n\r\n"
            )
            .into()
        },
        400,
        Some("POST /echo?m=bad-chunk"),
    );
}

#[test]
fn obs_fold_is_400() {
    rejects(
        |a| {
            format!("GET http://{a}/hello?m=obs-fold HTTP/1.1\r\nHost: {a}\r\nX-A: 1\r\n  folded\r\n\r\n").into()
        },
        400,
        None,
    );
}

#[test]
fn nul_in_header_value_is_400() {
    rejects(
        |a| format!("GET http://{a}/hello?m=nul HTTP/1.1\r\nHost: {a}\r\nX-A: a\0b\r\n\r\n").into(),
        400,
        None,
    );
}
