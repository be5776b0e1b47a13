//! The embedding example runs as a user would run it: `examples/rewrite_and_block.rs`, built
//! by `cargo test` beside this test, started with a CA directory of its own, and driven by curl
//! over plain HTTP and intercepted HTTPS against an HTTPS origin signed by a private CA.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[test]
fn rewrite_and_block_intercepts_https() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, origin_ca) = https_origin(dir.path());
    let ca_dir = dir.path().join("proxy-ca");
    let mut example = Example::start(&ca_dir, &origin_ca);
    assert_eq!(example.ca, ca_dir.join("sansproxy-ca-cert.pem"), "the example names the CA to trust");
    let proxy = format!("http://{}", example.addr);

    // HTTPS through the proxy: intercepted, so the request reaches the origin tagged.
    let ca = example.ca.to_str().unwrap().to_owned();
    let page = curl(&["-x", &proxy, "--cacert", &ca, &format!("https://{origin}/hello")]);
    assert!(page.status.success(), "{}", page.stderr_text());
    let body = page.stdout_text();
    assert!(body.starts_with("GET /hello HTTP/1.1\r\n"), "{body}");
    assert!(body.contains("\r\nx-sansproxy: 1\r\n"), "the hook's header reached the origin: {body}");

    // Without the proxy's CA the client refuses the minted certificate: it was intercepted.
    let untrusted = curl(&["-x", &proxy, &format!("https://{origin}/")]);
    assert_eq!(untrusted.status.code(), Some(60), "{}", untrusted.stderr_text());

    // The blocked host, over plain HTTP and as a CONNECT, answered by the hook without a lookup.
    let blocked = curl(&["-x", &proxy, "-i", "http://blocked.test/"]);
    let text = blocked.stdout_text();
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.ends_with("blocked by policy: blocked.test"), "{text}");
    let tunnel = curl(&["-x", &proxy, "--cacert", &ca, "https://blocked.test/"]);
    assert_eq!(tunnel.status.code(), Some(56), "{}", tunnel.stderr_text());
    assert!(tunnel.stderr_text().contains("403"), "{}", tunnel.stderr_text());

    example.stop();
}

/// An embedder's proxy that does not trust an origin's private CA answers with a 502 that names
/// the cause and the builder methods that fix it.
#[test]
fn builder_failures_name_the_builder_methods() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, _origin_ca) = https_origin(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let proxy = runtime
        .block_on(proxy_io::Proxy::builder().listen("127.0.0.1:0".parse().unwrap()).ca_dir(dir.path().join("ca")).build())
        .unwrap();
    let (addr, stop) = (proxy.local_addr(), proxy.shutdown_handle());
    let ca = proxy.ca().expect("the builder intercepts by default").cert_path.clone();
    let fetch = std::thread::spawn(move || {
        let page = curl(&["-x", &format!("http://{addr}"), "--cacert", ca.to_str().unwrap(), &format!("https://{origin}/")]);
        stop.shutdown();
        page
    });
    runtime.block_on(proxy.run());
    let page = fetch.join().unwrap();
    let body = page.stdout_text();
    assert!(body.contains("certificate signed by an unknown issuer"), "{body}");
    assert!(body.contains("Builder::upstream_ca(PEM)") && body.contains("Builder::insecure_upstream()"), "{body}");
}

/// The example binary, started and listening.
struct Example {
    child: Child,
    addr: SocketAddr,
    ca: PathBuf,
}

impl Example {
    fn start(ca_dir: &Path, upstream_ca: &Path) -> Example {
        let bin = example_path("rewrite_and_block");
        let mut child = Command::new(&bin)
            .args(["blocked.test", "127.0.0.1:0"])
            .arg(upstream_ca)
            .env("SANSPROXY_CA_DIR", ca_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // Its two lines, read on a thread so a silent example fails the test in bounded time.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().take(20).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut ca) = (None, None);
        while addr.is_none() || ca.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    panic!("the example did not say where it listens and which CA to trust: {e}");
                }
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = rest.split(',').next().and_then(|a| a.parse().ok());
            } else if let Some(path) = line.strip_prefix("intercepting HTTPS: clients must trust ") {
                ca = Some(PathBuf::from(path));
            }
        }
        Example { child, addr: addr.unwrap(), ca: ca.unwrap() }
    }

    /// Ctrl-C, as a user stops it; it must exit promptly and cleanly.
    fn stop(&mut self) {
        // SAFETY: kill(2) with the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the example exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the example did not exit within 10 s of SIGINT");
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An example binary `cargo test` built beside this test (`target/<profile>/examples/`).
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p proxy-io` builds the examples (a `--test` filter does not)",
        path.display()
    );
    path
}

struct Output(std::process::Output);

impl Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

impl std::ops::Deref for Output {
    type Target = std::process::Output;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    Output(out)
}

/// An HTTPS origin on 127.0.0.1, its certificate signed by a CA of its own whose PEM file is
/// written into `dir`. It answers each request with its head, as received, for a body.
fn https_origin(dir: &Path) -> (SocketAddr, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let ca_path = dir.join("origin-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    let (config, listener) = (Arc::new(config), TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16).flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || drop(echo_heads(config, stream)));
        }
    });
    (addr, ca_path)
}

fn echo_heads(config: Arc<rustls::ServerConfig>, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
    while head.len() < 65536 {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.ends_with(b"\r\n\r\n") {
            write!(tls, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len())?;
            tls.write_all(&head)?;
            tls.flush()?;
            head.clear();
        }
    }
    Ok(())
}
