//! The modes before HTTP, through the binary with real clients on loopback: SOCKS5 (curl's
//! `--socks5-hostname` and `--socks5`, with and without a password), `--proxyauth` for HTTP
//! proxy clients (curl `-U`), several `--mode`s in one process, and transparent mode for
//! real, in a network namespace of the test's own with an nftables redirect.

use crate::support;

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
    // The 407 goes through the response hook like any answer: one flow line for each request
    // refused (curl may ask more than once), as mitmdump's.
    let refused = |l: &str| l.contains(&format!(" {} -> 407 ", origin.url("/hello")));
    assert!(proxy.wait_stdout(Duration::from_secs(5), refused).is_some(), "{:?}", proxy.stdout_lines());
    std::thread::sleep(Duration::from_millis(200));
    let asked = proxy.stderr_text().matches("proxy authentication failed").count();
    assert!(asked > 0);
    assert_eq!(proxy.stdout_lines().iter().filter(|l| refused(l)).count(), asked, "{:?}", proxy.stdout_lines());
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
    // A client that does not trust the proxy's certificate fails its handshake, logged with
    // what to trust.
    let out = Curl::new().args(["--proxy", &https_proxy]).arg(plain.url("/hello")).run();
    assert_ne!(out.code, Some(0), "{out}");
    let line = proxy.wait_stdout(Duration::from_secs(5), |l| l.contains("client TLS handshake for 127.0.0.1"));
    let line = line.unwrap_or_else(|| panic!("no failure line: {:?}", proxy.stdout_lines()));
    let refused = "(alert unknown_ca); the client does not trust the proxy's CA: make the client trust";
    assert!(line.contains(refused), "{line}");
    assert!(line.contains(&format!("curl --cacert {ca}")), "{line}");
}

#[test]
fn a_secure_web_proxy_with_a_certificate_of_its_own() {
    // `--cert 127.0.0.1=PEM`: clients of the proxy itself get that certificate (one they
    // trust already, not the proxy's CA), and the hosts intercepted inside still get minted
    // ones.
    let pki = Pki::new();
    let plain = Origin::start();
    let tls = Origin::start_tls(&pki.valid);
    let own = pki.dir().join("proxy-cert.pem");
    let pem = [std::fs::read(&pki.valid.cert_pem).unwrap(), std::fs::read(&pki.valid.key_pem).unwrap()].concat();
    std::fs::write(&own, pem).unwrap();
    let cert = format!("127.0.0.1={}", own.display());
    let proxy = Proxy::start_tls(&["--cert", &cert, "--upstream-ca", pki.origin_ca_arg()]);
    let https_proxy = format!("https://127.0.0.1:{}", proxy.port());
    let secure = || Curl::new().args(["--proxy", &https_proxy, "--proxy-cacert", pki.origin_ca_arg()]);
    let out = secure().arg(plain.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "{out}");
    let out = secure().args(["--cacert", &proxy.ca_cert_arg()]).arg(tls.url("/hello")).run();
    assert_eq!(out.text(), HELLO, "minted for the host inside: {out}");
    // A client that trusts only the proxy's CA refuses the proxy's own certificate.
    let out = Curl::new().args(["--proxy", &https_proxy, "--proxy-cacert", &proxy.ca_cert_arg()]).arg(plain.url("/hello")).run();
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

/// Everything an HTTP/2 tunnel's stream carries until it ends, its flow-control window
/// released as it is read.
async fn read_stream(mut recv: h2::RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let next = tokio::time::timeout(support::h2client::STEP_TIMEOUT, recv.data()).await;
        match next.expect("the tunnel's next bytes in time") {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                all.extend_from_slice(&data);
            }
            Some(Err(e)) => panic!("the tunnel stream failed after {} bytes: {e}", all.len()),
            None => return all,
        }
    }
}

/// The head and body of an HTTP/1.1 response read whole.
fn split_response(raw: &[u8]) -> (String, &[u8]) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    (String::from_utf8_lossy(&raw[..end]).into_owned(), &raw[end..])
}

#[test]
fn an_http2_client_opens_tunnels_as_streams() {
    // The h2 crate as the client, HTTP/2 with prior knowledge to a regular listener: two
    // CONNECT streams at once on one connection, a 3 MB download through one and a 2 MB
    // upload through the other, byte for byte, flow control carrying the backpressure.
    use bytes::Bytes;
    use support::h2client::{runtime, H2Conn};
    let origin = Origin::start();
    let proxy = Proxy::start(&[]);
    let target = origin.authority();
    let upload = pattern(0, 2_000_000);
    let (download, uploaded) = runtime().block_on(async {
        let conn = H2Conn::h2c(proxy.port(), "proxy.test").await.expect("HTTP/2 to the proxy");
        let (status, mut down, down_recv) = conn.connect_tunnel(&target).await.expect("CONNECT");
        assert_eq!(status, 200);
        let (status, mut up, up_recv) = conn.connect_tunnel(&target).await.expect("CONNECT");
        assert_eq!(status, 200);
        let get = format!("GET /big?n=3000000 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        down.send_data(Bytes::from(get), false).expect("send");
        let post = format!("POST /sink HTTP/1.1\r\nHost: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", upload.len());
        up.send_data(Bytes::from(post), false).expect("send");
        for piece in upload.chunks(64 * 1024) {
            up.send_data(Bytes::copy_from_slice(piece), false).expect("send");
        }
        tokio::join!(read_stream(down_recv), read_stream(up_recv))
    });
    let (head, body) = split_response(&download);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut check = PatternCheck::new();
    check.feed(body);
    assert_eq!((check.len(), check.mismatch()), (3_000_000, None));
    let (head, body) = split_response(&uploaded);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(String::from_utf8_lossy(body), sink_reply(upload.len() as u64, fnv1a64(&upload)));
    // Each tunnel is a CONNECT flow, and the requests inside are flows of their own.
    let lines = proxy.stdout_lines();
    assert_eq!(lines.iter().filter(|l| l.contains("CONNECT") && l.contains(&target)).count(), 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("GET http://") && l.contains("/big?n=3000000")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("POST http://") && l.contains("/sink")), "{lines:?}");
}

/// Node's http2 as an HTTPS proxy client, as Chrome is one: TLS to the proxy (ALPN h2), a
/// CONNECT stream, and TLS to the origin inside it. Prints `ok LENGTH` once the body has
/// been checked against the test pattern, else what went wrong.
const NODE_H2_PROXY_CLIENT: &str = r#"
const http2 = require('http2'), tls = require('tls'), fs = require('fs');
const [proxyPort, caFile, host, port, path] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const fail = (what) => { console.log('failed: ' + what); process.exit(1); };
const session = http2.connect(`https://127.0.0.1:${proxyPort}`, { ca });
session.on('error', (e) => fail('session: ' + e.message));
session.on('connect', () => {
  if (session.alpnProtocol !== 'h2') fail('ALPN ' + session.alpnProtocol);
});
const stream = session.request({ ':method': 'CONNECT', ':authority': `${host}:${port}` });
stream.on('error', (e) => fail('stream: ' + e.message));
stream.on('response', (headers) => {
  if (headers[':status'] !== 200) fail('status ' + headers[':status']);
  const socket = tls.connect({ socket: stream, servername: host, ca, ALPNProtocols: ['http/1.1'] }, () => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
  socket.on('error', (e) => fail('inner TLS: ' + e.message));
  const chunks = [];
  socket.on('data', (d) => chunks.push(d));
  socket.on('end', () => {
    const all = Buffer.concat(chunks);
    const end = all.indexOf('\r\n\r\n');
    const head = all.subarray(0, end).toString();
    if (!head.startsWith('HTTP/1.1 200')) fail('response ' + head);
    const body = all.subarray(end + 4);
    for (let i = 0; i < body.length; i++) {
      if (body[i] !== ((i % 251) * 31 + 7) % 251) fail('body differs at byte ' + i);
    }
    console.log('ok ' + body.length);
    session.close();
  });
});
"#;

#[test]
fn node_as_an_http2_https_proxy_client_with_an_intercepted_tunnel() {
    use support::ws::node_script;
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let ca = proxy.ca_cert_arg();
    let port = origin.port().to_string();
    let args = [proxy.port().to_string(), ca, support::pki::ORIGIN_HOST.to_owned(), port, "/big?n=3000000".to_owned()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (run, stdout) = node_script(NODE_H2_PROXY_CLIENT, &args, Duration::from_secs(60));
    assert_eq!(stdout, "ok 3000000\n", "{run:?}; proxy stderr:\n{}", proxy.stderr_text());
    let lines = proxy.stdout_lines();
    assert!(lines.iter().any(|l| l.contains(&origin.url("/big?n=3000000"))), "the request inside is a flow: {lines:?}");
}
