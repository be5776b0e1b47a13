//! Client checks run both through the proxy and, in `origin.rs`, straight against the origin,
//! so the origin and these checks are themselves tested without the proxy.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::origin::{Origin, HELLO};
use super::pattern::{pattern, pattern_piece, sink_reply, Fnv64, PatternCheck, PIECE};
use super::process::{run_python, Curl, Proxy, TempFile};
use super::wire::Wire;
use super::{assert_spread, read_slow_chunks, slow_chunks_body, PYTHON_CLIENT};

/// How a client reaches the origin. The TLS variants are for [`Origin::start_tls`] origins
/// and the curl-only checks; the raw-connection checks speak plain HTTP.
#[derive(Clone, Copy)]
pub enum Via<'a> {
    Direct,
    Proxy(&'a Proxy),
    /// Straight to a TLS origin, trusting the CA certificate at this path.
    DirectTls(&'a Path),
    /// Through an intercepting proxy, trusting only the proxy's CA.
    ProxyTls(&'a Proxy),
}

impl Via<'_> {
    /// curl, with `-x` when going through the proxy and `--cacert` over TLS.
    pub fn curl(&self) -> Curl {
        match self {
            Via::Direct => Curl::new(),
            Via::Proxy(p) => p.curl(),
            Via::DirectTls(ca) => Curl::new().arg("--cacert").arg(ca),
            Via::ProxyTls(p) => p.curl().arg("--cacert").arg(p.ca_cert()),
        }
    }

    /// A raw connection: to the proxy, or to the origin itself.
    pub fn connect(&self, origin: &Origin) -> Wire {
        match self {
            Via::Direct => Wire::connect(origin.port()),
            Via::Proxy(p) => p.connect(),
            Via::DirectTls(_) | Via::ProxyTls(_) => panic!("raw connections speak plain HTTP"),
        }
    }

    /// The request target for `path`: absolute-form for the proxy, origin-form otherwise.
    pub fn target(&self, origin: &Origin, path: &str) -> String {
        match self {
            Via::Direct => path.to_owned(),
            Via::Proxy(_) => origin.url(path),
            Via::DirectTls(_) | Via::ProxyTls(_) => panic!("raw connections speak plain HTTP"),
        }
    }
}

pub fn get_hello(via: Via, origin: &Origin) {
    let out = via.curl().arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert_eq!(out.text(), HELLO, "{out}");
}

/// `curl -I`: 200 with `Content-Length: 12`; then, on one raw connection, HEAD followed by
/// GET, which fails if any body bytes followed the HEAD response. Over TLS only the curl part
/// runs (the raw client speaks plain HTTP; the TLS python client covers HEAD then GET).
pub fn head_hello(via: Via, origin: &Origin) {
    let out = via.curl().args(["-I", &origin.url("/hello")]).run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    let text = out.text();
    assert!(text.starts_with("HTTP/1.1 200"), "{out}");
    let has_len = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(n, v)| n.eq_ignore_ascii_case("content-length") && v.trim() == "12");
    assert!(has_len, "HEAD response lacks Content-Length: 12: {out}");
    if matches!(via, Via::DirectTls(_) | Via::ProxyTls(_)) {
        return;
    }

    let mut w = via.connect(origin);
    let (a, t) = (origin.authority(), via.target(origin, "/hello"));
    w.send(format!("HEAD {t} HTTP/1.1\r\nHost: {a}\r\n\r\n"));
    let r = w.read_response("HEAD").expect("HEAD response");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("12")),
        "{r:?}"
    );
    w.send(format!("GET {t} HTTP/1.1\r\nHost: {a}\r\n\r\n"));
    let r = w
        .read_response("GET")
        .expect("GET after HEAD on the same connection");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO), "{r:?}");
}

/// `--data-binary` of `len` pattern bytes to `/echo`, answered byte for byte.
pub fn echo(via: Via, origin: &Origin, len: usize) {
    let (file, _) = TempFile::with_pattern("echo", len as u64);
    let data = format!("@{}", file.path().display());
    let out = via
        .curl()
        .args([
            "--data-binary",
            &data,
            "-H",
            "Expect:",
            &origin.url("/echo"),
        ])
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert!(out.body == pattern(0, len), "echo differs: {out}");
}

/// A chunked request body (`Transfer-Encoding: chunked`) to `/echo`.
pub fn chunked_echo(via: Via, origin: &Origin) {
    let len = 300_000;
    let (file, _) = TempFile::with_pattern("chunked-echo", len as u64);
    let data = format!("@{}", file.path().display());
    let out = via
        .curl()
        .args([
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
            "--data-binary",
            &data,
        ])
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert!(out.body == pattern(0, len), "chunked echo differs: {out}");
}

/// A 2 MB POST with `Expect: 100-continue`, echoed exactly, well before curl's 1 s
/// expect timeout would have sent the body unasked.
pub fn expect_continue(via: Via, origin: &Origin) {
    let len = 2_000_000;
    let (file, _) = TempFile::with_pattern("expect", len as u64);
    let data = format!("@{}", file.path().display());
    let out = via
        .curl()
        .args([
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "1",
            "--data-binary",
            &data,
        ])
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert!(out.body == pattern(0, len), "echo differs: {out}");
    let total = out.transfer().total;
    assert!(
        total < Duration::from_millis(900),
        "took {total:?}: 100 Continue did not come through"
    );
}

/// `/headers`: an end-to-end header arrives unchanged, with the right Host.
pub fn headers_reach_origin(via: Via, origin: &Origin) {
    let out = via
        .curl()
        .args(["-H", "X-Sansproxy-Test: abc, def"])
        .arg(origin.url("/headers"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    let text = out.text();
    let has = |name: &str, value: &str| {
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
    };
    assert!(
        has("x-sansproxy-test", "abc, def"),
        "custom header lost: {text:?}"
    );
    assert!(has("host", &origin.authority()), "wrong Host: {text:?}");
}

/// One curl fetching `/hello` five times reuses its connection, and the origin sees one
/// connection carrying five origin-form requests.
pub fn keep_alive(via: Via, origin: &Origin) {
    let url = origin.url("/hello");
    let out = via.curl().args([&url, &url, &url, &url, &url]).run();
    out.assert_success();
    assert_eq!(out.text(), HELLO.repeat(5), "{out}");
    let statuses: Vec<_> = out.transfers.iter().map(|t| t.status).collect();
    let connects: Vec<_> = out.transfers.iter().map(|t| t.connects).collect();
    assert_eq!(statuses, [200; 5], "{out}");
    assert_eq!(
        connects,
        [1, 0, 0, 0, 0],
        "curl did not reuse its connection: {out}"
    );
    assert_eq!(
        origin.connections(),
        1,
        "origin connections; requests {:?}",
        origin.requests()
    );
    assert_eq!(origin.requests(), vec!["GET /hello"; 5]);
}

/// `/big?n=N` streamed through a checker that recomputes the pattern.
pub fn download(via: Via, origin: &Origin, n: u64, limit: Duration) {
    let mut check = PatternCheck::new();
    let out = via
        .curl()
        .max_time(limit)
        .arg(origin.url(&format!("/big?n={n}")))
        .run_streaming(|d| check.feed(d));
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert_eq!(check.len(), n, "download length: {out}");
    assert_eq!(
        check.mismatch(),
        None,
        "download differs from the pattern at this offset"
    );
}

/// `curl -T FILE -X POST` of `n` bytes (Content-Length) to `/sink`.
pub fn upload_file(via: Via, origin: &Origin, n: u64, limit: Duration) {
    let (file, hash) = TempFile::with_pattern("upload", n);
    let out = via
        .curl()
        .max_time(limit)
        .arg("-T")
        .arg(file.path())
        .args(["-X", "POST", &origin.url("/sink")])
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert_eq!(out.text(), sink_reply(n, hash), "{out}");
}

/// `curl -T -` (chunked, from stdin) of `n` pattern bytes to `/sink`.
pub fn upload_chunked(via: Via, origin: &Origin, n: u64, limit: Duration) {
    let mut hash = Fnv64::new();
    let mut at = 0;
    while at < n {
        let piece = pattern_piece(at, PIECE.min((n - at) as usize));
        hash.update(piece);
        at += piece.len() as u64;
    }
    let out = via
        .curl()
        .max_time(limit)
        .args(["-T", "-", "-X", "POST", &origin.url("/sink")])
        .stdin(move |pipe| {
            let mut at = 0;
            while at < n {
                let piece = pattern_piece(at, PIECE.min((n - at) as usize));
                pipe.write_all(piece)?;
                at += piece.len() as u64;
            }
            Ok(())
        })
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert_eq!(out.text(), sink_reply(n, hash.finish()), "{out}");
}

/// `/chunked-slow` over a raw connection: the five chunks arrive spread over >= 300 ms.
pub fn slow_chunks(via: Via, origin: &Origin) {
    let mut w = via.connect(origin);
    let t = via.target(origin, "/chunked-slow");
    let sent = Instant::now();
    w.send(format!(
        "GET {t} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.authority()
    ));
    let (body, seen) = read_slow_chunks(&mut w);
    assert_eq!(String::from_utf8_lossy(&body), slow_chunks_body());
    assert!(
        seen[0] - sent < Duration::from_millis(300),
        "first chunk took {:?}",
        seen[0] - sent
    );
    assert_spread(&seen, Duration::from_millis(300));
}

/// python3's urllib fetches `/hello` and posts to `/echo`.
pub fn python(via: Via, origin: &Origin) {
    let proxy = match via {
        Via::Direct => String::new(),
        Via::Proxy(p) => p.url(),
        Via::DirectTls(_) | Via::ProxyTls(_) => panic!("PYTHON_CLIENT speaks plain HTTP"),
    };
    let (run, stdout) = run_python(
        PYTHON_CLIENT,
        &[&proxy, &origin.url("")],
        Duration::from_secs(30),
    );
    assert_eq!(
        run.code,
        Some(0),
        "python3 failed: {run:?}, stdout {stdout:?}"
    );
    assert_eq!(stdout, "ok\n", "{run:?}");
}

/// GET `url` with `curl` and check the body streams as [`pattern`](super::pattern) for
/// exactly `len` bytes, byte for byte.
pub fn fetch_pattern(curl: Curl, url: &str, len: u64) {
    let mut check = PatternCheck::new();
    let out = curl.arg(url).run_streaming(|d| check.feed(d));
    out.assert_success();
    assert_eq!((check.len(), check.mismatch()), (len, None), "{out}");
}
