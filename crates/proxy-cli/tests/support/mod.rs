//! Helpers for sansproxy's end-to-end tests: the proxy launcher, an origin server (plain or
//! TLS) with a throwaway PKI, an HTTP/2 origin and client, a `git http-backend` origin, a raw
//! HTTP/1.1 client, runners for curl and python3, and `/proc` readings of the proxy's
//! descriptors and memory. Everything binds 127.0.0.1:0, every wait is bounded, and every
//! child process is killed by its guard.
//!
//! `tests/main.rs` declares this module once for every subject; each uses part of it.
#![allow(dead_code, unused_imports)]

pub mod checks;
pub mod git;
pub mod h2client;
pub mod h2origin;
pub mod origin;
pub mod pattern;
pub mod pki;
pub mod process;
pub mod resources;
pub mod wire;
pub mod ws;

pub use checks::Via;
pub use h2origin::H2Origin;
pub use origin::{unused_port, Origin, TcpServer, HELLO};
pub use pattern::{fnv1a64, pattern, sink_reply, PatternCheck};
pub use pki::Pki;
pub use process::{run_python, Curl, CurlOutput, Proxy, TempDir, TempFile};
pub use wire::{Framing, Wire};

use std::time::{Duration, Instant};

/// A Python client for `/hello` and `/echo`. Arguments: the proxy URL (empty: no proxy) and
/// the origin's base URL. Prints `ok` when every assertion held.
pub const PYTHON_CLIENT: &str = r#"
import sys, urllib.request
proxy, base = sys.argv[1], sys.argv[2]
if proxy:
    assert not urllib.request.proxy_bypass('127.0.0.1'), 'no_proxy would bypass the proxy'
opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': proxy} if proxy else {}))
with opener.open(base + '/hello', timeout=10) as r:
    status, body = r.status, r.read()
assert status == 200, ('GET /hello status', status)
assert body == b'hello world\n', ('GET /hello body', body)
data = bytes((i * 31 + 7) % 251 for i in range(5000))
req = urllib.request.Request(base + '/echo', data=data, method='POST',
                             headers={'Content-Type': 'application/octet-stream'})
with opener.open(req, timeout=10) as r:
    status, body = r.status, r.read()
assert status == 200, ('POST /echo status', status)
assert body == data, ('POST /echo body', len(body))
print('ok')
"#;

/// A Python client for a TLS origin, with `http.client` (GET, HEAD and POST on one
/// connection) and then `urllib`. Arguments: the proxy as `HOST:PORT` (empty: no proxy), the
/// origin's host and port, and the CA file to trust. Prints `ok` when every assertion held.
pub const PYTHON_TLS_CLIENT: &str = r#"
import http.client, ssl, sys, urllib.request
proxy, host, port, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
if proxy:
    phost, pport = proxy.rsplit(':', 1)
    conn = http.client.HTTPSConnection(phost, int(pport), context=ctx, timeout=10)
    conn.set_tunnel(host, port)
else:
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
conn.request('GET', '/hello')
r = conn.getresponse()
status, body = r.status, r.read()
assert (status, body) == (200, b'hello world\n'), ('GET /hello', status, body)
sock = conn.sock
conn.request('HEAD', '/hello')
r = conn.getresponse()
status, length, body = r.status, r.getheader('Content-Length'), r.read()
assert (status, length, body) == (200, '12', b''), ('HEAD /hello', status, length, body)
data = bytes((i * 31 + 7) % 251 for i in range(100000))
conn.request('POST', '/echo', body=data, headers={'Content-Type': 'application/octet-stream'})
r = conn.getresponse()
status, body = r.status, r.read()
assert status == 200, ('POST /echo status', status)
assert body == data, ('POST /echo body', len(body))
assert conn.sock is sock, 'http.client opened a second connection'
conn.close()
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({'https': 'http://' + proxy} if proxy else {}),
    urllib.request.HTTPSHandler(context=ctx))
with opener.open('https://%s:%d/hello' % (host, port), timeout=10) as r:
    status, body = r.status, r.read()
assert (status, body) == (200, b'hello world\n'), ('urllib GET /hello', status, body)
print('ok')
"#;

/// Body arrival times of `GET /chunked-slow`, read over `w` after the request was sent.
/// Returns the whole body and, for each `chunk K\n` line, when it was first complete.
pub fn read_slow_chunks(w: &mut Wire) -> (Vec<u8>, Vec<Instant>) {
    let mut body = Vec::new();
    let mut seen = Vec::new();
    let head = w
        .read_response_with("GET", &mut |d| {
            body.extend_from_slice(d);
            let text = String::from_utf8_lossy(&body);
            while seen.len() < 5 && text.contains(&format!("chunk {}\n", seen.len() + 1)) {
                seen.push(Instant::now());
            }
        })
        .unwrap_or_else(|e| panic!("reading /chunked-slow: {e}"));
    assert_eq!(head.status().ok(), Some(200), "{head:?}");
    (body, seen)
}

/// The body `/chunked-slow` sends.
pub fn slow_chunks_body() -> String {
    (1..=5).map(|k| format!("chunk {k}\n")).collect()
}

/// Asserts the chunks came in over at least `min` from first to last.
pub fn assert_spread(seen: &[Instant], min: Duration) {
    assert_eq!(seen.len(), 5, "not all chunks arrived");
    let spread = seen[4] - seen[0];
    let gaps: Vec<_> = seen.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        spread >= min,
        "chunks arrived within {spread:?} (gaps {gaps:?}): the body was buffered"
    );
}

/// `GET /metrics` from the metrics listener (`--metrics`) on `port`: the body.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text"), "{answer}");
    answer.split_once("\r\n\r\n").unwrap().1.to_owned()
}
