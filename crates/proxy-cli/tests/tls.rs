//! HTTPS through the intercepting proxy: curl and python trust only the proxy's CA (created
//! in a temp `--ca-dir`), the proxy trusts the test origin CA (`--upstream-ca`), and the
//! origins are rustls servers on 127.0.0.1 with certificates from a PKI made at test time.
//!
//! Each origin is first checked straight, without the proxy, so a failure through the proxy
//! is the proxy's.

use crate::support;

use std::fs;
use std::time::Duration;

use support::checks::{self, Via};
use support::pki::{Cert, WRONG_HOST};
use support::process::{CA_CERT_FILE, CA_KEY_FILE};
use support::*;

const BIG: u64 = 100 << 20;
const BIG_LIMIT: Duration = Duration::from_secs(60);
/// curl's exit code when it cannot verify the server's certificate.
const CURL_PEER_FAILED_VERIFICATION: i32 = 60;
/// What `curl -v` says when the certificate names `localhost`, and when it names the address.
const LOCALHOST_MATCHED: &str = "host \"localhost\" matched cert's \"localhost\"";
const IP_MATCHED: &str = "host \"127.0.0.1\" matched cert's IP address";

/// A proxy intercepting TLS that trusts the test origin CA upstream.
fn intercepting(pki: &Pki, extra: &[&str]) -> Proxy {
    let mut args = vec!["--upstream-ca", pki.origin_ca_arg()];
    args.extend_from_slice(extra);
    Proxy::start_tls(&args)
}

/// A TLS origin presenting `cert`, after checking that it serves `/hello` straight (with
/// `-k`: some certificates are bad on purpose; `tls_origins_direct_self_check` verifies them).
fn tls_origin(cert: &Cert) -> Origin {
    let origin = Origin::start_tls(cert);
    let out = Curl::new().arg("-k").arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    assert_eq!(origin.requests(), ["GET /hello"], "direct self-check");
    origin
}

/// curl through `proxy`, trusting only the proxy's CA.
fn curl_via(proxy: &Proxy) -> Curl {
    Via::ProxyTls(proxy).curl()
}

/// Waits for a flow line containing `want`.
fn flow_line(proxy: &Proxy, want: &str) -> String {
    proxy
        .wait_stdout(Duration::from_secs(5), |l| l.contains(want))
        .unwrap_or_else(|| {
            panic!(
                "no flow line containing {want:?}; stdout {:?}",
                proxy.stdout_lines()
            )
        })
}

/// The certificate curl saw, from `-v`: its `subject:` and `issuer:` lines.
fn seen_cert(out: &CurlOutput) -> (String, String) {
    let field = |name: &str| {
        out.messages
            .lines()
            .find_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("curl -v printed no {name:?} line: {out}"))
    };
    (field("subject:"), field("issuer:"))
}

// ---- the harness alone ----

#[test]
fn tls_origins_direct_self_check() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let ca = pki.origin_ca.as_path();
    checks::get_hello(Via::DirectTls(ca), &origin);
    checks::head_hello(Via::DirectTls(ca), &origin);
    checks::echo(Via::DirectTls(ca), &origin, 300_000);
    checks::headers_reach_origin(Via::DirectTls(ca), &origin);

    // curl -v names the origin CA as issuer: the intercepting tests rely on this line.
    let out = Curl::new()
        .args(["-v", "--cacert", pki.origin_ca_arg()])
        .arg(origin.url("/hello"))
        .run();
    out.assert_success();
    let (subject, issuer) = seen_cert(&out);
    assert!(subject.contains("valid origin"), "{subject:?}");
    assert!(issuer.contains("sansproxy test origin CA"), "{issuer:?}");
    assert!(out.messages.contains(LOCALHOST_MATCHED), "{out}");

    // By address: the valid certificate has an IP SAN.
    let out = Curl::new()
        .args(["-v", "--cacert", pki.origin_ca_arg()])
        .arg(origin.ip_url("/hello"))
        .run();
    out.assert_success();
    assert_eq!(out.text(), HELLO, "{out}");
    assert!(out.messages.contains(IP_MATCHED), "{out}");

    // Trusting another CA, curl refuses the origin.
    let out = Curl::new()
        .args(["--cacert", pki.other_ca.cert_arg()])
        .arg(origin.url("/hello"))
        .run();
    assert_eq!(out.code, Some(CURL_PEER_FAILED_VERIFICATION), "{out}");

    // Each bad certificate is refused straight, for its own reason.
    for (cert, why) in [
        (&pki.expired, "certificate has expired"),
        (
            &pki.wrong_host,
            "no alternative certificate subject name matches",
        ),
        (&pki.self_signed, "self-signed certificate"),
    ] {
        let bad = tls_origin(cert);
        let out = Curl::new()
            .args(["--cacert", pki.origin_ca_arg()])
            .arg(bad.url("/hello"))
            .run();
        assert_eq!(out.code, Some(CURL_PEER_FAILED_VERIFICATION), "{out}");
        assert!(out.messages.contains(why), "expected {why:?}: {out}");
    }
}

#[test]
fn tls_origin_direct_keep_alive_and_python() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    checks::keep_alive(Via::DirectTls(&pki.origin_ca), &origin);
    let (run, stdout) = run_python(
        PYTHON_TLS_CLIENT,
        &[
            "",
            "localhost",
            &origin.port().to_string(),
            pki.origin_ca_arg(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        run.code,
        Some(0),
        "python3 failed: {run:?}, stdout {stdout:?}"
    );
    assert_eq!(stdout, "ok\n", "{run:?}");
}

#[test]
fn tls_origin_direct_big_bodies() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    checks::download(Via::DirectTls(&pki.origin_ca), &origin, 16 << 20, BIG_LIMIT);
    checks::upload_file(Via::DirectTls(&pki.origin_ca), &origin, 16 << 20, BIG_LIMIT);
}

// ---- interception ----

#[test]
fn https_get_head_post_intercepted() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let via = Via::ProxyTls(&proxy);
    checks::get_hello(via, &origin);
    checks::head_hello(via, &origin);
    checks::echo(via, &origin, 1_000_000);
    checks::chunked_echo(via, &origin);
    checks::headers_reach_origin(via, &origin);

    // The flow log shows the decrypted request with its https URL.
    let line = flow_line(&proxy, &format!("GET {} -> 200 ", origin.url("/hello")));
    assert!(line.contains("https://localhost:"), "{line}");
    flow_line(&proxy, &format!("POST {} -> 200 ", origin.url("/echo")));
}

#[test]
fn https_client_sees_a_minted_certificate() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);

    // Trusting the proxy CA, curl sees a certificate the proxy issued for localhost.
    let out = curl_via(&proxy).arg("-v").arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    let (_, issuer) = seen_cert(&out);
    assert!(
        !issuer.contains("sansproxy test origin CA"),
        "curl saw the origin's own certificate: {issuer:?}"
    );
    assert!(out.messages.contains(LOCALHOST_MATCHED), "{out}");

    // Trusting only the origin CA, curl rejects the proxy's certificate.
    let out = proxy
        .curl()
        .args(["--cacert", pki.origin_ca_arg()])
        .arg(origin.url("/hello"))
        .run();
    assert_eq!(out.code, Some(CURL_PEER_FAILED_VERIFICATION), "{out}");
    assert!(out.messages.contains("certificate"), "{out}");
    assert_eq!(
        origin.requests(),
        ["GET /hello", "GET /hello"],
        "direct + one"
    );
    // The proxy says why, on the flow log: the client refused its certificate, and it should
    // trust the proxy's CA file.
    let line = flow_line(&proxy, "client TLS handshake for localhost");
    let ca = proxy.ca_cert_arg();
    let refused = "failed: the client refused the proxy's certificate (alert unknown_ca); the client does not \
                   trust the proxy's CA";
    assert!(line.contains(refused), "{line}");
    assert!(
        line.contains(&format!("make the client trust {ca} (curl --cacert {ca}, GIT_SSL_CAINFO={ca} git")),
        "{line}"
    );
    assert!(line.contains("or leave this host uninspected (--ignore-hosts REGEX)"), "{line}");
    assert!(!line.contains("UnknownCA"), "{line}");
}

/// A TLS client through the proxy at port `argv[1]` to `localhost:argv[2]`, offering only
/// the OpenSSL cipher suites `argv[3]` over TLS 1.2; prints how its handshake ended.
const PYTHON_CIPHERS: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers(sys.argv[3])
raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
raw.sendall(b'CONNECT localhost:%s HTTP/1.1\r\nHost: localhost\r\n\r\n' % sys.argv[2].encode())
head = b''
while not head.endswith(b'\r\n\r\n'):
    head += raw.recv(1)
try:
    ctx.wrap_socket(raw, server_hostname='localhost')
    print('handshake done')
except ssl.SSLError as e:
    print('refused')
"#;

#[test]
fn a_client_with_no_cipher_suite_in_common_gets_a_line_saying_so() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    // RSA key exchange, which rustls does not speak.
    let (port, origin_port) = (proxy.port().to_string(), origin.port().to_string());
    let args = [port.as_str(), origin_port.as_str(), "AES128-SHA"];
    let (run, stdout) = run_python(PYTHON_CIPHERS, &args, Duration::from_secs(30));
    assert_eq!((run.code, stdout.as_str()), (Some(0), "refused\n"), "{run:?}");
    let line = flow_line(&proxy, "client TLS handshake for localhost");
    assert!(
        line.ends_with(
            "failed: no cipher suite, key exchange group or signature scheme in common; the client speaks \
             only TLS the proxy does not: leave this host uninspected (--ignore-hosts REGEX)"
        ),
        "{line:?}"
    );
}

#[test]
fn https_by_ip_gets_an_ip_san() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    // curl sends no SNI for an address: the minted certificate must name 127.0.0.1.
    let out = curl_via(&proxy)
        .arg("-v")
        .arg(origin.ip_url("/hello"))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    let (_, issuer) = seen_cert(&out);
    assert!(!issuer.contains("sansproxy test origin CA"), "{issuer:?}");
    assert!(out.messages.contains(IP_MATCHED), "{out}");
    flow_line(&proxy, &format!("GET {} -> 200 ", origin.ip_url("/hello")));
}

#[test]
fn https_keep_alive_one_connect() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    // Five URLs in one curl: one CONNECT, one TLS session, five requests.
    checks::keep_alive(Via::ProxyTls(&proxy), &origin);
    let url = origin.url("/hello");
    let out = curl_via(&proxy).args([&url, &url, &url]).run();
    out.assert_success();
    let connects: Vec<_> = out.transfers.iter().map(|t| t.connect_status).collect();
    assert_eq!(connects, [200, 0, 0], "one CONNECT, then reuse: {out}");
}

#[test]
fn new_clients_take_the_intercepted_upstream_connection_of_earlier_ones() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    // Twenty curls one after the other, each its own CONNECT and its own TLS session with the
    // proxy: the server's TLS connection is made once and handed from one to the next.
    for i in 0..20 {
        let out = curl_via(&proxy).arg("-v").arg(origin.url("/hello")).run();
        out.assert_success();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "client {i}: {out}");
        assert!(out.messages.contains(LOCALHOST_MATCHED), "client {i} saw a certificate for localhost: {out}");
    }
    let used = origin.connections();
    assert!(used <= 2, "20 clients one after the other took {used} upstream connections");

    // A connection made for the address serves clients of the address...
    for _ in 0..2 {
        let out = curl_via(&proxy).arg(origin.ip_url("/hello")).run();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    }
    assert_eq!(origin.connections(), used + 1);
    // ...but not one that connects to the address and names the server in its SNI: it gets a
    // connection of its own, verified for the name, and a certificate for it.
    let connect_to = format!("localhost:{p}:127.0.0.1:{p}", p = origin.port());
    let out = curl_via(&proxy).args(["-v", "--connect-to", &connect_to]).arg(origin.url("/hello")).run();
    assert!(out.messages.contains("CONNECT 127.0.0.1:"), "{out}");
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    assert!(out.messages.contains(LOCALHOST_MATCHED), "{out}");
    assert_eq!(origin.connections(), used + 2);
}

/// A TLS origin answering every request `ok`, that records whether each connection's
/// handshake resumed an earlier session.
fn resumption_recording_origin(cert: &Cert) -> (TcpServer, std::sync::Arc<std::sync::Mutex<Vec<bool>>>) {
    let config = cert.server_config();
    let resumed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = resumed.clone();
    let server = TcpServer::start(move |tcp: std::net::TcpStream| {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { return };
        let mut wire = Wire::new(rustls::StreamOwned::new(conn, tcp));
        // One request a connection: the answer says `Connection: close`.
        if let Ok(Some(_)) = wire.read_head(64 * 1024) {
            let tls = &wire.get_mut().conn;
            if seen.lock().unwrap().len() < 100 && !tls.is_handshaking() {
                let kind = tls.handshake_kind();
                seen.lock().unwrap().push(kind == Some(rustls::HandshakeKind::Resumed));
            }
            if wire.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n").is_err() {
                return;
            }
            let _ = std::io::Write::flush(wire.get_mut());
        }
    });
    (server, resumed)
}

#[test]
fn new_upstream_tls_connections_resume_the_session_of_earlier_ones() {
    let pki = Pki::new();
    let (origin, resumed) = resumption_recording_origin(&pki.valid);
    // The origin closes after each answer, so every client needs a new upstream connection
    // and a handshake: all but the first resume the session the proxy kept.
    let proxy = intercepting(&pki, &[]);
    let url = format!("https://localhost:{}/x", origin.port());
    for i in 0..4 {
        let out = curl_via(&proxy).arg(&url).run();
        assert_eq!((out.status(), out.text().as_str()), (200, "ok\n"), "client {i}: {out}");
    }
    assert_eq!(*resumed.lock().unwrap(), [false, true, true, true], "which upstream handshakes resumed");
}

#[test]
fn https_download_100_mib_byte_exact() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &["-q"]);
    checks::download(Via::ProxyTls(&proxy), &origin, BIG, BIG_LIMIT);
}

#[test]
fn https_upload_byte_exact() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &["-q"]);
    checks::upload_file(Via::ProxyTls(&proxy), &origin, 20 << 20, BIG_LIMIT);
    checks::upload_chunked(Via::ProxyTls(&proxy), &origin, 4 << 20, BIG_LIMIT);
}

#[test]
fn https_python_through_proxy() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let proxy_addr = format!("127.0.0.1:{}", proxy.port());
    let (run, stdout) = run_python(
        PYTHON_TLS_CLIENT,
        &[
            &proxy_addr,
            "localhost",
            &origin.port().to_string(),
            &proxy.ca_cert_arg(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        run.code,
        Some(0),
        "python3 failed: {run:?}, stdout {stdout:?}"
    );
    assert_eq!(stdout, "ok\n", "{run:?}");
    flow_line(&proxy, &format!("HEAD {} -> 200 ", origin.url("/hello")));
}

// ---- upstream verification ----

/// Through the intercepting proxy, an origin presenting `cert` gets no request: the client
/// gets a 502 naming the origin and `cause` (which ends with the remedy).
fn assert_upstream_refused(pki: &Pki, cert: &Cert, cause: &str) {
    assert_upstream_refused_by(&intercepting(pki, &[]), cert, cause);
}

/// [`assert_upstream_refused`] through `proxy`.
fn assert_upstream_refused_by(proxy: &Proxy, cert: &Cert, cause: &str) {
    let origin = tls_origin(cert);
    let out = curl_via(proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    let body = out.text();
    assert!(
        body.contains(cause),
        "502 body does not say {cause:?}: {out}"
    );
    assert!(
        body.contains(&origin.authority()),
        "502 body does not name {}: {out}",
        origin.authority()
    );
    assert_eq!(
        origin.requests(),
        ["GET /hello"],
        "only the direct self-check"
    );
}

#[test]
fn upstream_expired_certificate_is_502() {
    let pki = Pki::new();
    assert_upstream_refused(
        &pki,
        &pki.expired,
        "TLS handshake failed: certificate expired; the server must renew it (or this machine's clock is \
         wrong); or skip verification (--insecure-upstream)\n",
    );
}

#[test]
fn upstream_wrong_host_is_502() {
    let pki = Pki::new();
    assert_upstream_refused(
        &pki,
        &pki.wrong_host,
        "TLS handshake failed: certificate not valid for this host name (name mismatch: it is for \
         wrong.example); use a name the certificate is for, or skip verification (--insecure-upstream)\n",
    );
}

const SELF_SIGNED: &str = "TLS handshake failed: self-signed certificate; trust the certificate itself \
                           (--upstream-ca FILE) or skip verification (--insecure-upstream)\n";

#[test]
fn upstream_self_signed_is_502() {
    let pki = Pki::new();
    assert_upstream_refused(&pki, &pki.self_signed, SELF_SIGNED);
}

#[test]
fn upstream_self_signed_ca_is_502_in_words_and_trusted_with_upstream_ca() {
    // As `openssl req -x509` makes them: the server's certificate says it is a CA, which
    // rustls alone reports as `CaUsedAsEndEntity`.
    let pki = Pki::new();
    assert_upstream_refused(&pki, &pki.self_signed_ca, SELF_SIGNED);

    // The remedy works: trusted with --upstream-ca, it serves, by name and by address.
    let origin = tls_origin(&pki.self_signed_ca);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.self_signed_ca.cert_arg()]);
    checks::get_hello(Via::ProxyTls(&proxy), &origin);
    let out = curl_via(&proxy).arg(origin.ip_url("/hello")).run();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    // Trusting it does not vouch for it under another name (the client's SNI, which the
    // proxy verifies the origin for).
    let connect_to = format!("{WRONG_HOST}:{p}:127.0.0.1:{p}", p = origin.port());
    let out = curl_via(&proxy)
        .args(["--connect-to", &connect_to])
        .arg(format!("https://{WRONG_HOST}:{}/hello", origin.port()))
        .run();
    assert_eq!(out.status(), 502, "{out}");
    assert!(out.text().contains("name mismatch: it is for localhost, 127.0.0.1"), "{out}");
}

#[test]
fn upstream_unknown_issuer_is_502() {
    // A valid certificate, but the proxy was not told about the origin CA.
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = Proxy::start_tls(&[]);
    let out = curl_via(&proxy).arg(origin.url("/hello")).run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    assert_eq!(
        out.text(),
        format!(
            "bad gateway: cannot connect to {}: TLS handshake failed: certificate signed by an unknown \
             issuer (a CA the proxy does not trust); trust the CA certificate that signed it (--upstream-ca \
             FILE) or skip verification (--insecure-upstream)\n",
            origin.authority()
        ),
        "{out}"
    );
    // The flow line says the same.
    let line = flow_line(&proxy, "-> error: ");
    assert!(line.contains("unknown issuer") && line.contains("--upstream-ca FILE"), "{line}");
}

#[test]
fn an_upstream_port_without_tls_is_502_saying_so() {
    // A plain HTTP server answers the proxy's ClientHello as a bad request.
    let origin = TcpServer::start(|mut tcp: std::net::TcpStream| {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = std::io::Read::read(&mut tcp, &mut [0; 4096]);
        let _ = std::io::Write::write_all(&mut tcp, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let proxy = Proxy::start_tls(&[]);
    let out = curl_via(&proxy).arg(format!("https://127.0.0.1:{}/hello", origin.port())).run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    assert!(
        out.text().ends_with(
            "TLS handshake failed: not TLS: the other side sent plain HTTP; it speaks plain HTTP on this \
             port: use http:// for it\n"
        ),
        "{out}"
    );
}

#[test]
fn insecure_upstream_accepts_bad_certificates() {
    let pki = Pki::new();
    let proxy = Proxy::start_tls(&["--insecure-upstream"]);
    for cert in [&pki.expired, &pki.wrong_host, &pki.self_signed, &pki.self_signed_ca, &pki.valid] {
        let origin = tls_origin(cert);
        let out = curl_via(&proxy).arg(origin.url("/hello")).run();
        out.assert_success();
        assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    }
}

// ---- passthrough and plain HTTP in a tunnel ----

#[test]
fn ignored_hosts_pass_tls_through() {
    let pki = Pki::new();
    let ignored = tls_origin(&pki.valid);
    let other = tls_origin(&pki.valid);
    let regex = format!("^localhost:{}$", ignored.port());
    let proxy = intercepting(&pki, &["--ignore-hosts", &regex]);

    // The ignored origin's own certificate reaches the client.
    let out = proxy
        .curl()
        .args(["-v", "--cacert", pki.origin_ca_arg()])
        .arg(ignored.url("/hello"))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    let (_, issuer) = seen_cert(&out);
    assert!(issuer.contains("sansproxy test origin CA"), "{issuer:?}");
    let out = curl_via(&proxy).arg(ignored.url("/hello")).run();
    assert_eq!(out.code, Some(CURL_PEER_FAILED_VERIFICATION), "{out}");

    // Another port on the same host is still intercepted.
    checks::get_hello(Via::ProxyTls(&proxy), &other);
    let out = proxy
        .curl()
        .args(["--cacert", pki.origin_ca_arg()])
        .arg(other.url("/hello"))
        .run();
    assert_eq!(out.code, Some(CURL_PEER_FAILED_VERIFICATION), "{out}");
}

#[test]
fn ignore_hosts_by_name() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &["--ignore-hosts", "^localhost:"]);
    let out = proxy
        .curl()
        .args(["--cacert", pki.origin_ca_arg()])
        .arg(origin.url("/hello"))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
}

#[test]
fn plain_http_inside_connect_is_proxied() {
    let origin = Origin::start();
    let proxy = Proxy::start_tls(&[]);
    let out = proxy.curl().args(["-p", &origin.url("/hello")]).run();
    out.assert_success();
    let t = out.transfer();
    assert_eq!((t.connect_status, t.status), (200, 200), "{out}");
    assert_eq!(out.text(), HELLO, "{out}");

    let body = pattern(0, 200_000);
    let (file, _) = TempFile::with_pattern("tunnel-echo", body.len() as u64);
    let data = format!("@{}", file.path().display());
    let out = proxy
        .curl()
        .args(["-p", "--data-binary", &data, "-H", "Expect:"])
        .arg(origin.url("/echo"))
        .run();
    out.assert_success();
    assert_eq!(out.status(), 200, "{out}");
    assert!(out.body == body, "echo through the tunnel differs: {out}");
    assert_eq!(origin.requests(), ["GET /hello", "POST /echo"]);
    // Parsed as HTTP, not relayed as opaque bytes: each request has its own flow line.
    flow_line(&proxy, "/hello -> 200 ");
    flow_line(&proxy, "/echo -> 200 ");
}

// ---- the proxy's CA ----

#[test]
fn ca_dir_is_created_once_and_reused() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let dir = TempDir::new("ca-reuse");
    let first = {
        let proxy = Proxy::start_with_ca_dir(dir.path(), &["--upstream-ca", pki.origin_ca_arg()]);
        checks::get_hello(Via::ProxyTls(&proxy), &origin);
        fs::read_to_string(proxy.ca_cert()).expect("read the CA certificate")
    };
    assert!(first.contains("-----BEGIN CERTIFICATE-----"), "{first}");
    let both = fs::read_to_string(dir.join(CA_KEY_FILE)).expect("read the CA key file");
    assert!(both.contains("PRIVATE KEY-----"), "no key in {CA_KEY_FILE}");
    assert!(
        both.contains("-----BEGIN CERTIFICATE-----"),
        "no cert in {CA_KEY_FILE}"
    );

    let proxy = Proxy::start_with_ca_dir(dir.path(), &["--upstream-ca", pki.origin_ca_arg()]);
    let again = fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    assert_eq!(first, again, "a second start replaced the CA");
    checks::get_hello(Via::ProxyTls(&proxy), &origin);
}

#[test]
fn existing_ca_from_flags() {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    // No --ca-dir: it conflicts with --ca-cert, and no CA is made.
    let proxy = Proxy::start(&[
        "--ca-cert",
        pki.other_ca.cert_arg(),
        "--ca-key",
        pki.other_ca.key_arg(),
        "--upstream-ca",
        pki.origin_ca_arg(),
    ]);
    let out = proxy
        .curl()
        .args(["-v", "--cacert", pki.other_ca.cert_arg()])
        .arg(origin.url("/hello"))
        .run();
    out.assert_success();
    assert_eq!((out.status(), out.text().as_str()), (200, HELLO), "{out}");
    let (_, issuer) = seen_cert(&out);
    assert!(issuer.contains("sansproxy test proxy CA"), "{issuer:?}");
}

// ---- protocol versions and resumption ----

/// Two connections through the proxy with one client context: the second offers the first's
/// session. Prints the negotiated version and whether the session was resumed.
const PYTHON_RESUME: &str = r#"
import socket, ssl, sys
proxy_port, host, port, cafile, version = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
def fetch(session):
    raw = socket.create_connection(('127.0.0.1', proxy_port), timeout=10)
    raw.sendall(b'CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n' % (host.encode(), port, host.encode(), port))
    head = b''
    while not head.endswith(b'\r\n\r\n'):
        head += raw.recv(1)
    assert head.startswith(b'HTTP/1.1 200'), head
    tls = ctx.wrap_socket(raw, server_hostname=host, session=session)
    tls.sendall(b'GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' % host.encode())
    data = b''
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b'HTTP/1.1 200') and data.endswith(b'hello world\n'), data
    result = (tls.version(), tls.session_reused, tls.session)
    tls.close()
    return result
first = fetch(None)
second = fetch(first[2])
print(first[0], first[1], second[1])
"#;

fn resumes_with(version: &str, expect_version: &str) {
    let pki = Pki::new();
    let origin = tls_origin(&pki.valid);
    let proxy = intercepting(&pki, &[]);
    let (proxy_port, origin_port, ca) = (proxy.port().to_string(), origin.port().to_string(), proxy.ca_cert_arg());
    let args = [proxy_port.as_str(), "localhost", origin_port.as_str(), ca.as_str(), version];
    let (run, stdout) = run_python(PYTHON_RESUME, &args, Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "python3 failed: {run:?}, stdout {stdout:?}");
    assert_eq!(stdout.trim(), format!("{expect_version} False True"), "a returning client resumes: {run:?}");
}

#[test]
fn tls13_clients_resume_their_sessions() {
    resumes_with("TLSv1_3", "TLSv1.3");
}

#[test]
fn tls12_clients_resume_their_sessions() {
    resumes_with("TLSv1_2", "TLSv1.2");
}
