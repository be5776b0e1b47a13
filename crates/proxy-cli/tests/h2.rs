//! HTTP/2 through the binary: curl, h2load and a small h2 client of our own against HTTP/2
//! origins ([`H2Origin`], the `h2` crate's server, over TLS with ALPN `h2` only, or plain
//! with prior knowledge) and the HTTP/1.1 [`Origin`], in every version pairing the stream
//! layer translates: h2 ↔ h2, h2 client ↔ h1 server, h1 client ↔ h2 server.
//!
//! The origins are first checked straight, without the proxy, so a failure through the proxy
//! is the proxy's.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use support::h2client::{runtime, H2Conn, Reply};
use support::h2origin::{grpc_message, Kick, RESET_AFTER, TRAILER, TRAILERS_BODY};
use support::pattern::{pattern_piece, PIECE};
use support::process::run_bounded;
use support::*;

const BIG: u64 = 100 << 20;
const BIG_LIMIT: Duration = Duration::from_secs(60);
/// The proxy's peak resident memory over a 100 MiB transfer stays below this.
const MAX_PEAK_RSS_KIB: u64 = 64 * 1024;
const ECHO_LEN: usize = 5 << 20;
/// curl's exit code for a body that ended before its announced length.
const CURL_PARTIAL_FILE: i32 = 18;

/// A proxy intercepting TLS that trusts the test origin CA upstream.
fn intercepting(pki: &Pki, extra: &[&str]) -> Proxy {
    let mut args = vec!["--upstream-ca", pki.origin_ca_arg()];
    args.extend_from_slice(extra);
    Proxy::start_tls(&args)
}

/// [`intercepting`], with a metrics listener: the proxy and that listener's port.
fn intercepting_with_metrics(pki: &Pki, extra: &[&str]) -> (Proxy, u16) {
    let metrics = unused_port();
    let metrics_at = format!("127.0.0.1:{metrics}");
    let mut args = vec!["--metrics", metrics_at.as_str()];
    args.extend_from_slice(extra);
    (intercepting(pki, &args), metrics)
}

/// The HTTP/2 TLS origin, after checking that it serves `/hello` straight over HTTP/2.
fn h2_tls_origin(pki: &Pki) -> H2Origin {
    let origin = H2Origin::start_tls(&pki.valid);
    let out = Curl::new()
        .args(["--http2", "--cacert", pki.origin_ca_arg()])
        .arg(origin.url("/hello"))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    assert_eq!(out.transfer().version, "2", "{out}");
    assert_eq!(origin.requests(), ["GET /hello"], "direct self-check");
    origin
}

/// curl through `proxy` speaking HTTP/2 to it, trusting only the proxy's CA.
fn curl_h2(proxy: &Proxy) -> Curl {
    Via::ProxyTls(proxy).curl().arg("--http2")
}

/// Waits for a flow line containing every one of `want`.
fn flow_line(proxy: &Proxy, want: &[&str]) -> String {
    proxy
        .wait_stdout(Duration::from_secs(5), |l| {
            want.iter().all(|w| l.contains(w))
        })
        .unwrap_or_else(|| {
            panic!(
                "no flow line containing {want:?}; stdout {:?}",
                proxy.stdout_lines()
            )
        })
}

/// The fields of a `/headers` answer (either origin), names lowercased.
fn echoed_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.rsplit_once(": ").or_else(|| l.split_once(':')))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn echoed<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The peak resident set (`VmHWM`) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// When each of the five `/grpc-stream` messages was complete, from the chunks as received.
fn grpc_arrivals(reply: &Reply) -> Vec<Instant> {
    let mut ends = Vec::new();
    let mut at = 0;
    for k in 1..=5 {
        at += grpc_message(k).len();
        ends.push(at);
    }
    let (mut seen, mut received) = (Vec::new(), 0);
    for (when, chunk) in &reply.chunks {
        received += chunk.len();
        while seen.len() < ends.len() && ends[seen.len()] <= received {
            seen.push(*when);
        }
    }
    seen
}

fn grpc_body() -> Vec<u8> {
    (1..=5).flat_map(grpc_message).collect()
}

// ---- the harness alone ----

#[test]
fn h2_origins_direct_self_check() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let direct = || Curl::new().args(["--http2", "--cacert", pki.origin_ca_arg()]);
    let out = direct().args(["-I", &origin.url("/hello")]).run();
    out.assert_success();
    assert!(out.text().starts_with("HTTP/2 200"), "{out}");
    assert!(out.text().contains("content-length: 12"), "{out}");
    let (file, _) = TempFile::with_pattern("h2-echo", 300_000);
    let out = direct()
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert!(out.body == pattern(0, 300_000), "echo differs: {out}");
    let mut check = PatternCheck::new();
    let out = direct()
        .arg(origin.url("/big?n=3000000"))
        .run_streaming(|d| check.feed(d));
    out.assert_success();
    assert_eq!((check.len(), check.mismatch()), (3_000_000, None), "{out}");

    let plain = H2Origin::start_h2c();
    let out = Curl::new()
        .args(["--http2-prior-knowledge", &plain.url("/headers")])
        .run();
    out.assert_success();
    assert_eq!(out.transfer().version, "2", "{out}");
    let fields = echoed_headers(&out.text());
    assert_eq!(echoed(&fields, ":authority"), [plain.authority()], "{out}");

    // Our own client, straight to the plain origin: streaming, trailers, resets.
    runtime().block_on(async {
        let conn = H2Conn::h2c(plain.port(), &plain.authority()).await.unwrap();
        let reply = conn.get("/grpc-stream").await.unwrap();
        assert_eq!(reply.body(), grpc_body());
        assert_spread(&grpc_arrivals(&reply), Duration::from_millis(300));
        let trailers = reply.trailers.expect("grpc trailers");
        assert_eq!(trailers["grpc-status"], "0");
        let reply = conn.get("/trailers").await.unwrap();
        assert_eq!(reply.text(), TRAILERS_BODY);
        assert_eq!(reply.trailers.expect("trailers")[TRAILER.0], TRAILER.1);
        let failure = conn.get("/reset?when=before").await.unwrap_err();
        assert!(failure.is_remote_reset(), "{failure:?}");
        let reply = conn.get("/reset?when=after").await.unwrap();
        assert_eq!(reply.body().len(), RESET_AFTER);
        assert!(
            reply.error.as_ref().is_some_and(|e| e.is_remote_reset()),
            "{reply:?}"
        );
        let reply = conn.get("/hello").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, HELLO));

        // GOAWAY lets a request in progress finish.
        let slow = conn.get("/slow?ms=400");
        let kick = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            plain.kick(Kick::GoAway);
        };
        let (reply, ()) = tokio::join!(slow, kick);
        let reply = reply.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, HELLO),
            "{reply:?}"
        );
    });
}

// ---- versions on each side ----

#[test]
fn h2_client_h2_server() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    let out = curl_h2(&proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(
        (out.status(), out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{out}"
    );
    assert_eq!(out.transfer().version, "2", "curl spoke {out}");
    flow_line(
        &proxy,
        &[
            &format!("GET {} -> 200 12b ", origin.url("/hello")),
            "(client HTTP/2, server HTTP/2)",
        ],
    );

    // (Through a proxy, curl -I prints the CONNECT answer first.)
    let out = curl_h2(&proxy).args(["-I", &origin.url("/hello")]).run();
    out.assert_success();
    assert!(out.text().contains("\r\n\r\nHTTP/2 200 \r\n"), "{out}");
    assert!(out.text().contains("content-length: 12"), "{out}");

    // What the origin saw: the client's :authority, the client's header, nothing
    // connection-specific.
    let out = curl_h2(&proxy)
        .args(["-H", "X-Sansproxy-Test: abc, def", &origin.url("/headers")])
        .run();
    out.assert_success();
    let fields = echoed_headers(&out.text());
    assert_eq!(echoed(&fields, ":authority"), [origin.authority()], "{out}");
    assert_eq!(echoed(&fields, ":scheme"), ["https"], "{out}");
    assert_eq!(echoed(&fields, "x-sansproxy-test"), ["abc, def"], "{out}");
    for name in [
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "proxy-connection",
    ] {
        assert!(
            echoed(&fields, name).is_empty(),
            "{name} reached an HTTP/2 origin: {out}"
        );
    }
    assert_eq!(
        origin.requests(),
        ["GET /hello", "GET /hello", "HEAD /hello", "GET /headers"]
    );
}

/// A client offering both versions to an HTTP/1.1 origin gets HTTP/1.1, as it would without
/// the proxy; a client offering only `h2` (gRPC clients do) gets HTTP/2, translated.
#[test]
fn h2_client_h1_server() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let out = curl_h2(&proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.transfer().version, "1.1", "the origin chose HTTP/1.1: {out}");
    flow_line(
        &proxy,
        &[
            &format!("GET {} -> 200 12b ", origin.url("/hello")),
            "(client HTTP/1.1, server HTTP/1.1)",
        ],
    );

    let n = 3 << 20;
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let reply = conn.get("/hello").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, HELLO), "{reply:?}");

        let sent = pattern(0, 300_000);
        let reply = conn
            .request(Method::POST, "/echo", Some(Bytes::from(sent.clone())))
            .await
            .unwrap();
        assert!(reply.error.is_none(), "{reply:?}");
        assert!(reply.body() == sent, "echo differs");

        // :authority became the Host an HTTP/1.1 client would have sent.
        let reply = conn
            .request_with(Method::GET, "/headers", &[("x-sansproxy-test", "abc")], None)
            .await
            .unwrap();
        let fields = echoed_headers(&reply.text());
        assert_eq!(echoed(&fields, "host"), [origin.authority()], "{reply:?}");
        assert_eq!(echoed(&fields, "x-sansproxy-test"), ["abc"], "{reply:?}");

        // HEAD: the length of the body not sent.
        let reply = conn.request(Method::HEAD, "/hello", None).await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.headers["content-length"], "12", "{reply:?}");
        assert!(reply.body().is_empty(), "{reply:?}");

        // A body of unknown length (DATA frames, no content-length) goes chunked to HTTP/1.1.
        let sent = pattern(0, n);
        let reply = conn
            .request(Method::POST, "/sink", Some(Bytes::from(sent.clone())))
            .await
            .unwrap();
        assert_eq!(reply.text(), sink_reply(n as u64, fnv1a64(&sent)), "{reply:?}");
    });
    flow_line(
        &proxy,
        &[
            &format!("POST {} -> 200 ", origin.url("/sink")),
            "(client HTTP/2, server HTTP/1.1)",
        ],
    );
    assert_eq!(
        origin.requests(),
        [
            "GET /hello",
            "GET /hello",
            "POST /echo",
            "GET /headers",
            "HEAD /hello",
            "POST /sink"
        ]
    );
}

/// A 20 KB header field: HEADERS plus CONTINUATION frames on the HTTP/2 side, one long line
/// on the HTTP/1.1 side, in both directions of translation.
#[test]
fn big_header_fields_cross_versions() {
    let pki = Pki::new();
    let h2 = h2_tls_origin(&pki);
    let h1 = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let value: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let header = format!("X-Big: {value}");
    // An HTTP/2 client to the HTTP/1.1 origin: ours, since curl would get HTTP/1.1 there.
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &h1.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let reply = conn
            .request_with(Method::GET, "/headers", &[("x-big", &value)], None)
            .await
            .unwrap();
        let fields = echoed_headers(&reply.text());
        assert_eq!(echoed(&fields, "x-big"), [value.as_str()], "h2 to h1");
    });
    for (url, version) in [
        (h2.url("/headers"), "--http1.1"),
        (h2.url("/headers"), "--http2"),
    ] {
        let out = Via::ProxyTls(&proxy)
            .curl()
            .args([version, "-H", &header, &url])
            .run();
        out.assert_success();
        let fields = echoed_headers(&out.text());
        assert_eq!(
            echoed(&fields, "x-big"),
            [value.as_str()],
            "{version} to {url}: {}",
            out.text().len()
        );
    }
}

/// `Expect: 100-continue` from an HTTP/1.1 client to an HTTP/2 origin (which never sends
/// 100): the body goes well before curl's 1 s expect timeout would have sent it unasked.
#[test]
fn expect_continue_h1_client_h2_server() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    let len = 300_000;
    let (file, _) = TempFile::with_pattern("expect-h2", len as u64);
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args([
            "--http1.1",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "1",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert!(out.body == pattern(0, len), "echo differs: {out}");
    let total = out.transfer().total;
    assert!(
        total < Duration::from_millis(900),
        "took {total:?}: no 100 Continue came through"
    );
}

#[test]
fn h1_client_h2_server() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args(["--http1.1", &origin.url("/hello")])
        .run();
    out.assert_success();
    assert_eq!(
        (out.status(), out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{out}"
    );
    assert_eq!(out.transfer().version, "1.1", "curl spoke {out}");
    flow_line(
        &proxy,
        &[
            &format!("GET {} -> 200 12b ", origin.url("/hello")),
            "(client HTTP/1.1, server HTTP/2)",
        ],
    );

    // A chunked request body becomes HTTP/2 DATA.
    let (file, _) = TempFile::with_pattern("h1-h2-echo", 300_000);
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args([
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert!(out.body == pattern(0, 300_000), "echo differs: {out}");

    // Host became :authority.
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args(["--http1.1", &origin.url("/headers")])
        .run();
    out.assert_success();
    let fields = echoed_headers(&out.text());
    assert_eq!(echoed(&fields, ":authority"), [origin.authority()], "{out}");
    assert!(echoed(&fields, "host").is_empty(), "{out}");
}

// ---- bodies and streams ----

#[test]
fn h2_echo_5_mib_and_parallel_streams() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &["-q"]);
    let (file, _) = TempFile::with_pattern("h2-echo-5m", ECHO_LEN as u64);
    let out = curl_h2(&proxy)
        .max_time(Duration::from_secs(30))
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert_eq!(out.transfer().version, "2", "{out}");
    assert_eq!(out.body.len(), ECHO_LEN, "{out}");
    assert!(out.body == pattern(0, ECHO_LEN), "5 MiB echo differs");

    // curl, ten transfers at once on one connection.
    let dir = TempDir::new("h2-parallel");
    let mut curl =
        curl_h2(&proxy)
            .max_time(Duration::from_secs(30))
            .args(["-Z", "--parallel-max", "10"]);
    let sizes: Vec<u64> = (1..=10).map(|k| k * 250_000).collect();
    for (i, n) in sizes.iter().enumerate() {
        curl = curl
            .arg("-o")
            .arg(dir.join(format!("{i}")))
            .arg(origin.url(&format!("/big?n={n}")));
    }
    let out = curl.run();
    out.assert_success();
    assert_eq!(out.transfers.len(), 10, "{out}");
    assert!(
        out.transfers
            .iter()
            .all(|t| t.status == 200 && t.version == "2"),
        "{out}"
    );
    let connects: u32 = out.transfers.iter().map(|t| t.connects).sum();
    assert_eq!(connects, 1, "curl multiplexed over one connection: {out}");
    for (i, &n) in sizes.iter().enumerate() {
        let got = std::fs::read(dir.join(format!("{i}"))).expect("curl's output file");
        assert!(
            got == pattern(0, n as usize),
            "transfer {i} ({n} bytes) differs"
        );
    }

    // Our client: 30 streams at once, downloads, uploads and small requests mixed.
    let connections_before = origin.connections();
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..30u64 {
            let streams = (*conn).clone();
            tasks.spawn(async move {
                let (reply, want) = match i % 3 {
                    0 => {
                        let n = 100_000 + i * 70_000;
                        (
                            streams.get(&format!("/big?n={n}")).await,
                            pattern(0, n as usize),
                        )
                    }
                    1 => {
                        let body = pattern(i, 500_000 + i as usize * 1000);
                        let reply =
                            streams.request(Method::POST, "/echo", Some(Bytes::from(body.clone())));
                        (reply.await, body)
                    }
                    _ => (streams.get("/hello").await, HELLO.as_bytes().to_vec()),
                };
                let reply = reply.unwrap_or_else(|e| panic!("stream {i}: {e:?}"));
                assert!(reply.error.is_none(), "stream {i}: {:?}", reply.error);
                assert_eq!(reply.status, 200, "stream {i}");
                assert!(
                    reply.body() == want,
                    "stream {i}: body differs ({} bytes)",
                    reply.body().len()
                );
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a stream task");
        }
        assert!(conn.is_open());
    });
    // At most one new one: curl's connection, parked when curl left, may carry them all.
    assert!(
        origin.connections() - connections_before <= 1,
        "30 concurrent streams took more than one upstream connection"
    );
}

/// HTTP/1.1 carries one request at a time: concurrent streams to an HTTP/1.1 origin need
/// connections of their own, not a queue behind one.
#[test]
fn concurrent_h2_streams_to_an_h1_origin_do_not_wait_for_each_other() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &["-q"]);
    let started = Instant::now();
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..10 {
            let streams = (*conn).clone();
            tasks.spawn(async move {
                let reply = streams
                    .get("/chunked-slow")
                    .await
                    .unwrap_or_else(|e| panic!("stream {i}: {e:?}"));
                assert_eq!(reply.status, 200, "stream {i}");
                assert_eq!(reply.text(), slow_chunks_body(), "stream {i}");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a stream task");
        }
    });
    let took = started.elapsed();
    eprintln!(
        "10 concurrent 400 ms responses from an HTTP/1.1 origin: {took:.2?}, {} origin connections",
        origin.connections()
    );
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the streams were served one after another"
    );
}

#[test]
fn reverse_h2c_prior_knowledge() {
    let origin = H2Origin::start_h2c();
    let upstream = format!("h2c://{}", origin.authority());
    let proxy = Proxy::start(&["--reverse", &upstream, "--no-intercept"]);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", proxy.port());
    let out = Curl::new()
        .args(["--http2-prior-knowledge", &url("/hello")])
        .run();
    out.assert_success();
    assert_eq!(
        (out.status(), out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{out}"
    );
    assert_eq!(out.transfer().version, "2", "{out}");
    flow_line(
        &proxy,
        &[
            "GET ",
            "/hello -> 200 12b ",
            "(client HTTP/2, server HTTP/2)",
        ],
    );

    let (file, _) = TempFile::with_pattern("h2c-echo", 1 << 20);
    let out = Curl::new()
        .arg("--http2-prior-knowledge")
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(url("/echo"))
        .run();
    out.assert_success();
    assert!(out.body == pattern(0, 1 << 20), "echo differs: {out}");

    // Reverse mode names the origin: :authority is the upstream's.
    let out = Curl::new()
        .args(["--http2-prior-knowledge", &url("/headers")])
        .run();
    out.assert_success();
    let fields = echoed_headers(&out.text());
    assert_eq!(echoed(&fields, ":authority"), [origin.authority()], "{out}");

    // An HTTP/1.1 client of the same proxy is translated to h2c upstream.
    let out = Curl::new().args(["--http1.1", &url("/hello")]).run();
    out.assert_success();
    assert_eq!(
        (out.text().as_str(), out.transfer().version.as_str()),
        (HELLO, "1.1"),
        "{out}"
    );
    flow_line(
        &proxy,
        &["/hello -> 200 12b ", "(client HTTP/1.1, server HTTP/2)"],
    );
    assert_eq!(
        origin.requests(),
        ["GET /hello", "POST /echo", "GET /headers", "GET /hello"]
    );

    // Keep-alive on both sides: five requests on one client connection, carried by one
    // upstream HTTP/2 connection (the one the last client parked, or a new one).
    let before = origin.connections();
    let hello = url("/hello");
    let out = Curl::new()
        .args(["--http1.1", &hello, &hello, &hello, &hello, &hello])
        .run();
    out.assert_success();
    assert_eq!(out.text(), HELLO.repeat(5), "{out}");
    let connects: Vec<_> = out.transfers.iter().map(|t| t.connects).collect();
    assert_eq!(connects, [1, 0, 0, 0, 0], "{out}");
    assert!(
        origin.connections() - before <= 1,
        "upstream connections for five requests: {}",
        origin.connections() - before
    );
}

#[test]
fn h2_download_100_mib_memory_bounded() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    let before = peak_rss_kib(proxy.pid());
    let mut check = PatternCheck::new();
    let started = Instant::now();
    let out = curl_h2(&proxy)
        .max_time(BIG_LIMIT)
        .arg(origin.url(&format!("/big?n={BIG}")))
        .run_streaming(|d| check.feed(d));
    let took = started.elapsed();
    out.assert_success();
    assert_eq!(out.transfer().version, "2", "{out}");
    assert_eq!(check.len(), BIG, "download length: {out}");
    assert_eq!(
        check.mismatch(),
        None,
        "download differs from the pattern at this offset"
    );
    let peak = peak_rss_kib(proxy.pid());
    eprintln!(
        "h2 100 MiB download through the proxy: {took:.2?} ({:.0} MiB/s); proxy peak RSS {peak} KiB (at start {before} KiB)",
        100.0 / took.as_secs_f64()
    );
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "proxy peak RSS {peak} KiB over {MAX_PEAK_RSS_KIB} KiB: the body was buffered"
    );
    flow_line(
        &proxy,
        &[
            &format!(" -> 200 {BIG}b "),
            "(client HTTP/2, server HTTP/2)",
        ],
    );
}

#[test]
fn h2_upload_100_mib_to_h2_and_h1_origins() {
    let pki = Pki::new();
    let h2 = h2_tls_origin(&pki);
    let h1 = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let (file, hash) = TempFile::with_pattern("h2-upload", BIG);
    // curl gets the version each origin chose.
    for (url, server) in [(h2.url("/sink"), "HTTP/2"), (h1.url("/sink"), "HTTP/1.1")] {
        let started = Instant::now();
        let out = curl_h2(&proxy)
            .max_time(BIG_LIMIT)
            .arg("-T")
            .arg(file.path())
            .args(["-X", "POST", &url])
            .run();
        let took = started.elapsed();
        out.assert_success();
        let client = if server == "HTTP/2" { "2" } else { "1.1" };
        assert_eq!(out.transfer().version, client, "{out}");
        assert_eq!(out.text(), sink_reply(BIG, hash), "{out}");
        flow_line(
            &proxy,
            &[
                &format!("POST {url} -> 200 "),
                &format!("(client HTTP/{client}, server {server})"),
            ],
        );
        eprintln!("curl 100 MiB upload to an {server} origin: {took:.2?}");
    }
    // HTTP/2 DATA frames to the HTTP/1.1 origin, from a client that offers only h2.
    let started = Instant::now();
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &h1.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let body = Bytes::from(pattern(0, BIG as usize));
        let reply = conn
            .request(Method::POST, "/sink", Some(body))
            .await
            .unwrap();
        assert_eq!(reply.text(), sink_reply(BIG, hash), "{reply:?}");
    });
    flow_line(
        &proxy,
        &[
            &format!("POST {} -> 200 ", h1.url("/sink")),
            "(client HTTP/2, server HTTP/1.1)",
        ],
    );
    eprintln!("h2 100 MiB upload to an HTTP/1.1 origin: {:.2?}", started.elapsed());
    let peak = peak_rss_kib(proxy.pid());
    eprintln!("proxy peak RSS after both uploads: {peak} KiB");
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "proxy peak RSS {peak} KiB: a request body was buffered"
    );
}

// ---- backpressure ----

#[test]
fn stalled_h2_client_stops_the_h2_origin() {
    const N: u64 = 20 << 20;
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let (status, mut body) = conn.start_get(&format!("/big?n={N}")).await.unwrap();
        assert_eq!(status, 200);
        let mut check = PatternCheck::new();
        let first = body
            .data()
            .await
            .expect("a first chunk")
            .expect("body bytes");
        let _ = body.flow_control().release_capacity(first.len());
        check.feed(&first);
        // Read nothing for a while: our window stays shut, and so must the proxy's.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let sent = origin.big_sent();
        eprintln!("a stalled h2 client: the origin sent {sent} of {N} bytes in 1 s");
        assert!(
            sent < 8 << 20,
            "the origin sent {sent} bytes to a client that reads nothing"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(data) = body.data().await {
            let data = data.expect("body bytes");
            let _ = body.flow_control().release_capacity(data.len());
            check.feed(&data);
            assert!(Instant::now() < deadline, "the rest took over 30 s");
        }
        assert_eq!((check.len(), check.mismatch()), (N, None));
    });
}

#[test]
fn stalled_h2_origin_stops_the_h2_client_upload() {
    const N: u64 = 20 << 20;
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        // The origin reads nothing for the first second.
        let (response, mut send) = conn.start_post("/sink?delay_ms=1000").await.unwrap();
        let started = Instant::now();
        let (mut sent, mut in_stall) = (0u64, None);
        while sent < N {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "upload stuck at {sent}"
            );
            if in_stall.is_none() && started.elapsed() >= Duration::from_millis(800) {
                in_stall = Some(sent);
            }
            send.reserve_capacity(PIECE.min((N - sent) as usize));
            let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
            let room = match tokio::time::timeout(Duration::from_millis(100), capacity).await {
                Ok(Some(Ok(room))) => room.min(PIECE).min((N - sent) as usize),
                Ok(Some(Err(e))) => panic!("upload failed after {sent} bytes: {e}"),
                Ok(None) => panic!("upload stream closed after {sent} bytes"),
                Err(_) => 0, // no window for a while
            };
            if room > 0 {
                let end = sent + room as u64 == N;
                send.send_data(Bytes::from_static(pattern_piece(sent, room)), end)
                    .unwrap();
                sent += room as u64;
            }
        }
        let in_stall = in_stall.unwrap_or(N);
        eprintln!(
            "an origin reading nothing: the h2 client could send {in_stall} of {N} bytes in 800 ms"
        );
        assert!(
            in_stall < 8 << 20,
            "the proxy took {in_stall} bytes for an origin that read none"
        );
        let (head, mut body) = response.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        let mut text = Vec::new();
        while let Some(data) = body.data().await {
            text.extend_from_slice(&data.unwrap());
        }
        let hash = fnv1a64(&pattern(0, N as usize));
        assert_eq!(String::from_utf8_lossy(&text), sink_reply(N, hash));
    });
}

#[test]
fn stalled_h1_client_stops_the_h2_origin() {
    const N: u64 = 64 << 20;
    let origin = H2Origin::start_h2c();
    let upstream = format!("h2c://{}", origin.authority());
    let proxy = Proxy::start(&["--reverse", &upstream, "--no-intercept"]);
    let mut w = proxy.connect();
    w.send(format!(
        "GET /big?n={N} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        proxy.port()
    ));
    let head = w.read_head(64 * 1024).unwrap().expect("a response head");
    assert_eq!(head.status().unwrap(), 200, "{head:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let sent = origin.big_sent();
    eprintln!("a stalled HTTP/1.1 client: the origin sent {sent} of {N} bytes in 1 s");
    // Socket buffers on both sides of the proxy hold a few MiB; the rest must wait.
    assert!(
        sent < 24 << 20,
        "the origin sent {sent} bytes to a client that reads nothing"
    );
    let mut check = PatternCheck::new();
    let framing = head.response_framing("GET").unwrap();
    w.read_body(framing, &mut |d| check.feed(d)).unwrap();
    assert_eq!((check.len(), check.mismatch()), (N, None));
    let peak = peak_rss_kib(proxy.pid());
    assert!(peak < MAX_PEAK_RSS_KIB, "proxy peak RSS {peak} KiB");
}

// ---- streaming, trailers, resets ----

#[test]
fn grpc_stream_is_not_buffered_and_keeps_its_trailers() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let sent = Instant::now();
        let reply = conn.get("/grpc-stream").await.unwrap();
        assert!(reply.error.is_none(), "{reply:?}");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/grpc");
        assert_eq!(reply.body(), grpc_body());
        let seen = grpc_arrivals(&reply);
        let offsets: Vec<_> = seen.iter().map(|t| *t - sent).collect();
        eprintln!("gRPC messages through the proxy arrived at {offsets:.1?} after the request");
        assert!(
            offsets[0] < Duration::from_millis(300),
            "first message took {:?}",
            offsets[0]
        );
        assert_spread(&seen, Duration::from_millis(300));
        let trailers = reply.trailers.expect("the proxy dropped the trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "ok");
    });
    flow_line(
        &proxy,
        &["/grpc-stream -> 200 ", "(client HTTP/2, server HTTP/2)"],
    );

    // curl shows the trailers too.
    let out = curl_h2(&proxy)
        .args(["-v", &origin.url("/grpc-stream")])
        .run();
    out.assert_success();
    assert_eq!(out.body, grpc_body(), "{out}");
    assert!(out.messages.contains("< grpc-status: 0"), "{out}");
}

#[test]
fn trailers_reach_h2_and_h1_clients() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let reply = conn.get("/trailers").await.unwrap();
        assert!(reply.error.is_none(), "{reply:?}");
        assert_eq!(reply.text(), TRAILERS_BODY);
        let trailers = reply.trailers.expect("the proxy dropped the trailers");
        assert_eq!(trailers[TRAILER.0], TRAILER.1);
    });

    // curl --http1.1: chunked, with the trailer after the last chunk. (`-v` does not show
    // HTTP/1.1 trailers; `-D` writes them after the head.)
    let dir = TempDir::new("h1-trailers");
    let out = Via::ProxyTls(&proxy)
        .curl()
        .arg("--http1.1")
        .arg("-D")
        .arg(dir.join("head"))
        .arg(origin.url("/trailers"))
        .run();
    out.assert_success();
    assert_eq!(out.text(), TRAILERS_BODY, "{out}");
    let dumped = std::fs::read_to_string(dir.join("head")).expect("curl's -D file");
    let trailer = format!("\r\n\r\n{}: {}\r\n", TRAILER.0, TRAILER.1);
    assert!(
        dumped.ends_with(&trailer),
        "no trailer {trailer:?} after the head: {dumped:?}"
    );

    // The exact HTTP/1.1 bytes, from a plain reverse proxy to the h2c origin.
    let plain = H2Origin::start_h2c();
    let upstream = format!("h2c://{}", plain.authority());
    let reverse = Proxy::start(&["--reverse", &upstream, "--no-intercept"]);
    let mut w = reverse.connect();
    w.send(format!(
        "GET /trailers HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        reverse.port()
    ));
    let head = w.read_head(64 * 1024).unwrap().expect("a response head");
    assert_eq!(head.status().unwrap(), 200, "{head:?}");
    assert!(head.has_token("transfer-encoding", "chunked"), "{head:?}");
    let mut raw = Vec::new();
    w.read_body(Framing::UntilClose, &mut |d| raw.extend_from_slice(d))
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let want_end = format!("0\r\n{}: {}\r\n\r\n", TRAILER.0, TRAILER.1);
    assert!(
        raw.ends_with(&want_end),
        "chunked body {raw:?} does not end with {want_end:?}"
    );
    let body: String = raw
        .split("\r\n")
        .skip(1)
        .step_by(2)
        .take_while(|c| !c.is_empty())
        .collect();
    assert!(body.starts_with(TRAILERS_BODY.trim_end()), "{raw:?}");
}

#[test]
fn origin_reset_fails_only_its_stream() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        // Reset before the response head: the proxy may still answer (502), or reset.
        match conn.get("/reset?when=before").await {
            Ok(reply) => {
                assert_eq!(reply.status, 502, "{reply:?} ({})", reply.text());
                eprintln!(
                    "reset before the head: the client got 502 {:?}",
                    reply.text()
                );
            }
            Err(failure) => {
                assert!(failure.is_remote_reset(), "{failure:?}");
                eprintln!("reset before the head: the client's stream was reset ({failure:?})");
            }
        }
        let reply = conn.get("/hello").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, HELLO));

        // Reset mid-body: the head and the first bytes came, then the stream must fail, not
        // end as if complete.
        let reply = conn.get("/reset?when=after").await.unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body() == pattern(0, reply.body().len()), "{reply:?}");
        let error = reply.error.as_ref().unwrap_or_else(|| {
            panic!(
                "a stream reset upstream ended cleanly after {} bytes",
                reply.body().len()
            )
        });
        assert!(error.is_remote_reset(), "{error:?}");

        // The connection is still good, for several requests.
        for _ in 0..3 {
            let reply = conn.get("/hello").await.unwrap();
            assert_eq!((reply.status, reply.text().as_str()), (200, HELLO));
        }
        assert!(conn.is_open());
    });

    // An HTTP/1.1 client: the body cannot end cleanly, so the proxy closes the connection
    // and curl reports a partial file; the next request works.
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args(["--http1.1", &origin.url("/reset?when=after")])
        .run();
    assert_eq!(
        out.code,
        Some(CURL_PARTIAL_FILE),
        "a reset upstream looked like success: {out}"
    );
    assert!(out.body == pattern(0, out.body.len()), "{out}");
    let out = Via::ProxyTls(&proxy)
        .curl()
        .args(["--http1.1", &origin.url("/hello")])
        .run();
    out.assert_success();
    assert_eq!(out.text(), HELLO, "{out}");
}

#[test]
fn client_reset_and_hangup_cancel_the_upstream_stream() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    let wait_failures = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while origin.failures().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        origin.failures()
    };
    let rt = runtime();
    rt.block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let (status, mut body) = conn.start_get(&format!("/big?n={BIG}")).await.unwrap();
        assert_eq!(status, 200);
        body.data()
            .await
            .expect("a first chunk")
            .expect("body bytes");
        drop(body); // RST_STREAM(CANCEL)
        let reply = conn.get("/hello").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, HELLO));
    });
    let failures = wait_failures(1);
    assert!(
        failures.len() == 1 && failures[0].starts_with("GET /big: "),
        "the origin's stream was not reset after the client's: {failures:?}"
    );
    eprintln!("client RST_STREAM reached the origin as: {}", failures[0]);

    // A client that hangs up mid-download.
    rt.block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let (_, mut body) = conn.start_get(&format!("/big?n={BIG}")).await.unwrap();
        body.data()
            .await
            .expect("a first chunk")
            .expect("body bytes");
        drop(conn);
    });
    drop(rt);
    let failures = wait_failures(2);
    assert_eq!(
        failures.len(),
        2,
        "the origin still serves a client that left: {failures:?}"
    );
    assert!(
        origin.big_sent() < BIG,
        "the whole body went to a client that left"
    );
    let out = curl_h2(&proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.text(), HELLO, "{out}");
}

#[test]
fn origin_connection_loss_and_goaway() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    runtime().block_on(async {
        let conn = H2Conn::via_proxy(proxy.port(), &origin.authority(), &proxy.ca_cert())
            .await
            .unwrap();
        let hello = || async {
            let reply = conn.get("/hello").await.unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                (reply.status, reply.text()),
                (200, HELLO.to_owned()),
                "{reply:?}"
            );
        };
        hello().await;
        let first = origin.connections();

        // The origin closes its idle connection without a word: the next request gets a new
        // one.
        origin.kick(Kick::Drop);
        tokio::time::sleep(Duration::from_millis(200)).await;
        hello().await;
        assert_eq!(origin.connections(), first + 1);

        // GOAWAY with a request in progress: that request completes, the next one goes on a
        // new connection.
        let slow = conn.get("/slow?ms=400");
        let kick = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            origin.kick(Kick::GoAway);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (reply, ()) = tokio::join!(slow, kick);
        let reply = reply.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, HELLO),
            "{reply:?}"
        );
        hello().await;
        assert_eq!(origin.connections(), first + 2);

        // The connection dropped under a request in progress: that one fails (a 502 or a
        // reset), the next one succeeds.
        let slow = conn.get("/slow?ms=400");
        let kick = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            origin.kick(Kick::Drop);
        };
        let (reply, ()) = tokio::join!(slow, kick);
        match reply {
            Ok(reply) => assert!(reply.status == 502 || reply.error.is_some(), "{reply:?}"),
            Err(failure) => assert!(failure.reason().is_some(), "{failure:?}"),
        }
        hello().await;
        assert!(conn.is_open());
    });
}

#[test]
fn origin_stream_limit_queues_requests() {
    let origin = H2Origin::start_h2c_with_max_streams(5);
    let upstream = format!("h2c://{}", origin.authority());
    let proxy = Proxy::start(&["--reverse", &upstream, "--no-intercept", "-q"]);
    let started = Instant::now();
    runtime().block_on(async {
        let conn = H2Conn::h2c(proxy.port(), &format!("127.0.0.1:{}", proxy.port()))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let streams = (*conn).clone();
            tasks.spawn(async move {
                let reply = streams
                    .get("/slow?ms=200")
                    .await
                    .unwrap_or_else(|e| panic!("stream {i}: {e:?}"));
                assert_eq!(
                    (reply.status, reply.text().as_str()),
                    (200, HELLO),
                    "stream {i}: {reply:?}"
                );
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a stream task");
        }
    });
    eprintln!(
        "20 requests against an origin allowing 5 streams: {:.2?}, {} upstream connections",
        started.elapsed(),
        origin.connections()
    );
    assert_eq!(origin.requests().len(), 20);
}

#[test]
fn prior_knowledge_in_regular_mode() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--no-intercept"]);
    let connect_to = format!("127.0.0.1:{}:127.0.0.1:{}", origin.port(), proxy.port());
    let out = Curl::new()
        .args([
            "--http2-prior-knowledge",
            "--connect-to",
            &connect_to,
            &origin.url("/hello"),
        ])
        .run();
    out.assert_success();
    assert_eq!(
        (out.text().as_str(), out.transfer().version.as_str()),
        (HELLO, "2"),
        "{out}"
    );
    flow_line(
        &proxy,
        &[
            &format!("GET {} -> 200 12b ", origin.url("/hello")),
            "(client HTTP/2, server HTTP/1.1)",
        ],
    );
    assert_eq!(origin.requests(), ["GET /hello"]);
}

// ---- turning it off, and load ----

#[test]
fn no_http2_speaks_http1_on_both_sides() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &["--no-http2"]);
    let out = curl_h2(&proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(
        (out.status(), out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{out}"
    );
    assert_eq!(out.transfer().version, "1.1", "{out}");
    flow_line(
        &proxy,
        &[
            &format!("GET {} -> 200 12b ", origin.url("/hello")),
            "(client HTTP/1.1, server HTTP/1.1)",
        ],
    );

    // An origin that speaks only h2 refuses the proxy's http/1.1: a 502, not a hang.
    let h2_only = h2_tls_origin(&pki);
    let out = curl_h2(&proxy).arg(h2_only.url("/hello")).run();
    assert_eq!(out.transfer().status, 502, "{out}");
    assert_eq!(
        h2_only.requests(),
        ["GET /hello"],
        "only the self-check reached it"
    );
}

/// h2load, from Debian's `nghttp2-client` (`.ci/run` installs it).
fn h2load() -> Command {
    let found = Command::new("h2load").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "h2load is missing: install Debian's nghttp2-client (.ci/run does)"
    );
    Command::new("h2load")
}

/// Runs `h2load -n 2000 -c 4 -m 10 URL` and asserts every request got a 2xx.
fn h2load_2000(url: &str) {
    let mut cmd = h2load();
    cmd.args(["-n", "2000", "-c", "4", "-m", "10", "-T", "20", url]);
    let mut stdout = Vec::new();
    let run = run_bounded(cmd, Duration::from_secs(60), None, &mut |d| {
        stdout.extend_from_slice(d)
    });
    let stdout = String::from_utf8_lossy(&stdout);
    assert_eq!(run.code, Some(0), "h2load failed: {run:?}\n{stdout}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in h2load's output:\n{stdout}"))
            .to_owned()
    };
    let (finished, requests, codes) = (
        line("finished in"),
        line("requests:"),
        line("status codes:"),
    );
    eprintln!("h2load {url}: {finished}\n  {requests}\n  {codes}");
    assert!(
        requests.contains(
            "2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"
        ),
        "{stdout}"
    );
    assert!(codes.starts_with("status codes: 2000 2xx"), "{stdout}");
}

#[test]
fn h2load_through_reverse_h2c() {
    let origin = H2Origin::start_h2c();
    let upstream = format!("h2c://{}", origin.authority());
    let proxy = Proxy::start(&["--reverse", &upstream, "--no-intercept", "-q"]);
    h2load_2000(&format!("http://127.0.0.1:{}/hello", proxy.port()));
    assert_eq!(origin.requests().len(), 2000);
}

/// What the metrics listener on `port` says `name` is, for the only listener.
fn metric(port: u16, name: &str) -> f64 {
    let text = scrape(port);
    let line = text.lines().find(|l| l.starts_with(&format!("{name}{{"))).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The streams an HTTP/2 client's requests take on the shared upstream connection carry one
/// request after another: h2load's 2000 requests over 4 connections of 10 streams join it a
/// few dozen times, not once each; with `--joined-stream-idle 0`, once each.
#[test]
fn h2load_through_reverse_h2c_takes_its_streams_on_the_carrier_again() {
    for (extra, joins) in [(&[][..], 1..=100), (&["--joined-stream-idle", "0"][..], 2000..=2100)] {
        let origin = H2Origin::start_h2c();
        let upstream = format!("h2c://{}", origin.authority());
        let metrics = unused_port();
        let metrics_at = format!("127.0.0.1:{metrics}");
        let mut args = vec!["--reverse", &upstream, "--no-intercept", "--threads", "1", "--metrics", &metrics_at, "-q"];
        args.extend_from_slice(extra);
        let proxy = Proxy::start(&args);
        h2load_2000(&format!("http://127.0.0.1:{}/hello", proxy.port()));
        assert_eq!(origin.requests().len(), 2000);
        let joined = metric(metrics, "sansproxy_upstream_streams_joined");
        assert!(joins.contains(&(joined as u32)), "{extra:?}: {joined} joins for 2000 requests");
        // h2load's four connections start at once, before any carrier is up: each may open one.
        let carriers = metric(metrics, "sansproxy_upstream_carriers");
        assert!((1.0..=4.0).contains(&carriers), "{carriers} carriers");
    }
}

#[test]
fn h2load_through_reverse_tls() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &["--reverse", &origin.url(""), "--listen-tls", "-q"]);
    h2load_2000(&format!("https://127.0.0.1:{}/hello", proxy.port()));
    // The self-check's request, then h2load's.
    assert_eq!(origin.requests().len(), 2001);
}

#[test]
fn the_next_intercepted_client_of_an_http2_server_takes_the_connection_the_last_one_left() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let proxy = intercepting(&pki, &[]);
    for _ in 0..3 {
        let out = curl_h2(&proxy).arg(origin.url("/hello")).run();
        out.assert_success();
        assert_eq!(out.text(), HELLO, "{out}");
    }
    // The self-check's connection, then one for all three clients: an intercepted
    // CONNECT's HTTP/2 connection is parked whole for the next CONNECT (not made a carrier,
    // which a tunnel could not take over).
    assert_eq!(origin.connections(), 2, "{}", proxy.stderr_text());
}

/// HTTP/1.1 clients intercepted on their way to an HTTP/2 server share its connections: each
/// client connection's requests join the shared connection once (its next request takes the
/// same stream), and one connection carries them all (one driver thread here). The second
/// `CONNECT`'s own connection is kept whole for the next `CONNECT`, which mints its client's
/// certificate from it. An HTTP/2 client's streams stay on the connection its `CONNECT` took.
#[test]
fn intercepted_http1_clients_of_an_http2_server_share_its_connection() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let (proxy, metrics) = intercepting_with_metrics(&pki, &["--threads", "1"]);
    for _ in 0..3 {
        let out = Via::ProxyTls(&proxy).curl().arg("--http1.1").arg(origin.url("/hello")).arg(origin.url("/hello")).run();
        out.assert_success();
        assert_eq!(out.text(), HELLO.repeat(2), "{out}");
    }
    assert_eq!(metric(metrics, "sansproxy_upstream_streams_joined"), 3.0, "{}", proxy.stderr_text());
    assert_eq!(metric(metrics, "sansproxy_upstream_carriers"), 1.0);
    // The self-check's, the first CONNECT's (now carrying), the second's (kept for the third).
    assert_eq!(origin.connections(), 3, "{}", proxy.stderr_text());

    let out = curl_h2(&proxy).arg(origin.url("/hello")).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.text(), HELLO.repeat(2), "{out}");
    assert_eq!(metric(metrics, "sansproxy_upstream_streams_joined"), 3.0, "an HTTP/2 client joins nothing");
    assert_eq!(origin.connections(), 3, "{}", proxy.stderr_text());
    assert_eq!(origin.requests().len(), 1 + 8);
}

/// An intercepted HTTP/1.1 client's 100 MiB download and upload to an HTTP/2 server go as a
/// stream on the shared connection (a carrier, on another task than the client's): byte-exact,
/// in bounded memory, the carrier's window held shut while the client has no room.
#[test]
fn http1_clients_100_mib_through_a_shared_http2_connection() {
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let (proxy, metrics) = intercepting_with_metrics(&pki, &[]);
    let mut check = PatternCheck::new();
    let out = Via::ProxyTls(&proxy)
        .curl()
        .arg("--http1.1")
        .max_time(BIG_LIMIT)
        .arg(origin.url(&format!("/big?n={BIG}")))
        .run_streaming(|d| check.feed(d));
    out.assert_success();
    assert_eq!((check.len(), check.mismatch()), (BIG, None), "{out}");
    let (file, hash) = TempFile::with_pattern("h1-shared-upload", BIG);
    let sink = origin.url("/sink");
    let out = Via::ProxyTls(&proxy)
        .curl()
        .arg("--http1.1")
        .max_time(BIG_LIMIT)
        .arg("-T")
        .arg(file.path())
        .args(["-X", "POST", &sink])
        .run();
    out.assert_success();
    assert_eq!(out.text(), sink_reply(BIG, hash), "{out}");
    assert_eq!(metric(metrics, "sansproxy_upstream_streams_joined"), 2.0, "both went on the shared connection");
    let peak = peak_rss_kib(proxy.pid());
    assert!(peak < MAX_PEAK_RSS_KIB, "proxy peak RSS {peak} KiB: a body was buffered");
    flow_line(&proxy, &[&format!("POST {sink} -> 200 "), "(client HTTP/1.1, server HTTP/2)"]);
}

/// Many HTTP/1.1 clients at once (curl's parallel transfers, eight connections at a time,
/// each kept alive for several requests) intercepted on their way to an HTTP/2 server: each
/// response, of a size of its own, reaches its own client whole, while the requests of all of
/// them go as streams on the server's shared connections.
#[test]
fn parallel_intercepted_http1_clients_of_an_http2_server() {
    const TRANSFERS: u64 = 48;
    let pki = Pki::new();
    let origin = h2_tls_origin(&pki);
    let (proxy, metrics) = intercepting_with_metrics(&pki, &[]);
    let dir = TempDir::new("parallel-h1");
    let size = |i: u64| 1000 + i * 7919;
    let mut curl = Via::ProxyTls(&proxy).curl().args(["--http1.1", "-Z", "--parallel-max", "8", "--output-dir"]).arg(dir.path());
    for i in 0..TRANSFERS {
        curl = curl.args(["-o", &format!("{i}")]).arg(origin.url(&format!("/big?n={}", size(i))));
    }
    let out = curl.max_time(Duration::from_secs(30)).run();
    out.assert_success();
    for i in 0..TRANSFERS {
        let body = std::fs::read(dir.join(format!("{i}"))).expect("each transfer wrote its file");
        assert!(body == pattern(0, size(i) as usize), "transfer {i}: {} bytes, {} expected: {out}", body.len(), size(i));
    }
    let joined = metric(metrics, "sansproxy_upstream_streams_joined");
    assert!((1.0..=TRANSFERS as f64).contains(&joined), "{joined} streams joined");
    // The self-check's request, then one each.
    assert_eq!(origin.requests().len() as u64, 1 + TRANSFERS);
}
