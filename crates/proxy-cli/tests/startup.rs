//! What a newcomer meets starting and stopping `sansproxy`: where it listens (`--listen PORT`,
//! mitmdump's `-p`, a host name), a port in use refused before any CA is made, the CA notice
//! even with `-q`, and Ctrl-C: idle keep-alive clients closed at once, the wait said in the
//! log (without colour escapes in a file), a second Ctrl-C quitting at once.

use crate::support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::origin::never_answer;
use support::process::{run_bounded, test_ca_dir, ChildGuard, CA_CERT_FILE};
use support::{unused_port, Origin, TcpServer, TempDir, Wire, HELLO};

/// How long the proxy may take to print its listening line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A `sansproxy ARGS` whose stdout and stderr go to files (not a terminal, as when redirected),
/// killed on drop.
struct Started {
    guard: ChildGuard,
    dir: TempDir,
}

impl Started {
    /// Starts `sansproxy ARGS` (the CA in the tests' shared directory unless ARGS say
    /// otherwise) and waits for its listening line.
    fn new(args: &[&str]) -> Started {
        let dir = TempDir::new("startup");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sansproxy"));
        cmd.args(args)
            .env("SANSPROXY_CA_DIR", test_ca_dir())
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).expect("create stdout file"))
            .stderr(File::create(dir.join("stderr")).expect("create stderr file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start sansproxy: {e}"));
        let mut started = Started { guard: ChildGuard::new(child), dir };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !started.stderr().contains("sansproxy listening on ") {
            if let Some(status) = started.guard.try_wait() {
                panic!("sansproxy {args:?} ended ({status}) before listening:\n{}", started.stderr());
            }
            assert!(Instant::now() < deadline, "sansproxy {args:?} printed no listening line:\n{}", started.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        started
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The addresses of its `sansproxy listening on ADDR` lines.
    fn listening(&self) -> Vec<String> {
        let text = self.stderr();
        let lines = text.lines().filter_map(|l| l.strip_prefix("sansproxy listening on "));
        lines.map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned()).collect()
    }

    /// The port of its first listening line on 127.0.0.1.
    fn port(&self) -> u16 {
        let on_loopback = self.listening().into_iter().find_map(|a| a.strip_prefix("127.0.0.1:")?.parse().ok());
        on_loopback.unwrap_or_else(|| panic!("not listening on 127.0.0.1:\n{}", self.stderr()))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.guard.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with the pid of our own child, which the guard has not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits at most `limit` for the proxy to exit; how it ended and how long that took.
    fn exit_within(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        match self.guard.wait_timeout(limit) {
            Some(status) => (status, start.elapsed()),
            None => panic!("sansproxy still running {limit:?} later:\n{}", self.stderr()),
        }
    }

    /// Waits at most 5 s for a line of stderr containing `text`.
    fn wait_stderr(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let all = self.stderr();
            if let Some(line) = all.lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "no {text:?} in stderr:\n{all}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET /hello` of `origin` through the proxy on `port`, on a keep-alive connection left open.
fn hello_through(port: u16, origin: &Origin) -> Wire {
    let mut w = Wire::connect(port);
    w.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()));
    let response = w.read_response("GET").expect("a response");
    assert_eq!((response.status, response.text()), (200, HELLO.to_owned()));
    assert!(response.header("connection").is_none(), "kept alive: {:?}", response.head);
    w
}

#[test]
fn a_bare_port_is_on_loopback() {
    let origin = Origin::start();
    let port = unused_port();
    let proxy = Started::new(&["--listen", &port.to_string()]);
    assert_eq!(proxy.listening(), [format!("127.0.0.1:{port}")]);
    hello_through(port, &origin);
}

#[test]
fn mitmdumps_listen_flags() {
    let origin = Origin::start();
    let port = unused_port();
    let proxy = Started::new(&["-p", &port.to_string()]);
    assert_eq!(proxy.listening(), [format!("127.0.0.1:{port}")]);
    hello_through(port, &origin);
    drop(proxy);

    let port = unused_port();
    let proxy = Started::new(&["--listen-host", "127.0.0.1", "--listen-port", &port.to_string()]);
    assert_eq!(proxy.listening(), [format!("127.0.0.1:{port}")]);
    hello_through(port, &origin);
}

#[test]
fn a_host_name_is_listened_on_at_each_of_its_addresses() {
    let origin = Origin::start();
    let port = unused_port();
    let proxy = Started::new(&["--listen", &format!("localhost:{port}")]);
    // 127.0.0.1 at least, and ::1 where localhost has it too.
    let listening = proxy.listening();
    assert!(listening.contains(&format!("127.0.0.1:{port}")), "{listening:?}");
    assert!(listening.iter().all(|a| a == &format!("127.0.0.1:{port}") || a == &format!("[::1]:{port}")), "{listening:?}");
    hello_through(port, &origin);
}

/// Runs `sansproxy ARGS` that must fail at once; its exit code and stderr.
fn fails(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sansproxy"));
    cmd.args(args).env("SANSPROXY_CA_DIR", test_ca_dir());
    let run = run_bounded(cmd, Duration::from_secs(20), None, &mut |_| {});
    assert!(!run.timed_out, "sansproxy {args:?} did not exit:\n{}", run.stderr);
    (run.code, run.stderr)
}

#[test]
fn a_port_in_use_is_refused_before_any_ca_is_made() {
    let dir = TempDir::new("port-in-use");
    let ca = dir.join("ca");
    let ca_arg = ca.to_str().expect("temp paths are utf-8");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("local_addr").port().to_string();
    let (code, stderr) = fails(&["--listen", &port, "--ca-dir", ca_arg]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "sansproxy: cannot listen on 127.0.0.1:{port}: address already in use \
             (is another proxy running? pick another port with --listen PORT)\n"
        )
    );
    assert!(!ca.exists(), "a CA directory was made: {}", ca.display());
    // The remedy names the flag that was used.
    let (_, stderr) = fails(&["-p", &port, "--ca-dir", ca_arg]);
    assert!(stderr.ends_with("pick another port with -p PORT)\n"), "{stderr}");
    assert!(!ca.exists());
}

#[test]
fn a_second_proxy_on_the_same_port_is_refused() {
    // Its threads' sockets share the port among themselves (SO_REUSEPORT), never with
    // another process.
    let dir = TempDir::new("second-proxy");
    let ca = dir.join("ca");
    let first = Started::new(&["--listen", "127.0.0.1:0", "--threads", "2"]);
    let port = first.port().to_string();
    let (code, stderr) = fails(&["--listen", &port, "--threads", "2", "--ca-dir", ca.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}: address already in use")), "{stderr}");
    assert!(!ca.exists());
}

#[test]
fn quiet_still_says_how_to_trust_the_ca() {
    let dir = TempDir::new("quiet-ca");
    let ca: PathBuf = dir.join("ca");
    let ca_arg = ca.to_str().expect("temp paths are utf-8");
    let cert = ca.join(CA_CERT_FILE).display().to_string();
    let proxy = Started::new(&["-q", "--listen", "127.0.0.1:0", "--ca-dir", ca_arg]);
    let stderr = proxy.wait_stderr("intercepting TLS with a new CA");
    assert!(stderr.ends_with(&format!("clients must trust its certificate {cert}")), "{stderr}");
    for way in [
        format!("curl --cacert {cert}"),
        format!("GIT_SSL_CAINFO={cert} git"),
        format!("REQUESTS_CA_BUNDLE={cert}"),
        format!("SSL_CERT_FILE={cert}"),
        format!("NODE_EXTRA_CA_CERTS={cert}"),
        "update-ca-certificates".to_owned(),
    ] {
        proxy.wait_stderr(&way);
    }
    drop(proxy);
    // Started again: the CA is there, and the notice is short.
    let proxy = Started::new(&["-q", "--listen", "127.0.0.1:0", "--ca-dir", ca_arg]);
    proxy.wait_stderr(&format!("sansproxy: intercepting TLS; clients must trust the CA certificate {cert}"));
    proxy.wait_stderr("(curl --cacert; GIT_SSL_CAINFO for git; REQUESTS_CA_BUNDLE or SSL_CERT_FILE for Python;");
}

#[test]
fn ctrl_c_closes_an_idle_keep_alive_client_at_once() {
    let origin = Origin::start();
    let mut proxy = Started::new(&["--listen", "127.0.0.1:0"]);
    let mut client = hello_through(proxy.port(), &origin);
    proxy.signal(libc::SIGINT);
    // The shutdown timeout is 5 s: the idle client is not waited for.
    let (status, took) = proxy.exit_within(Duration::from_secs(4));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_millis(2500), "exited after {took:?}");
    let line = proxy.wait_stderr("shutting down");
    assert!(
        line.ends_with("shutting down: waiting up to 5s for 1 connection to finish; press Ctrl-C again to quit now"),
        "{line}"
    );
    client.expect_closed(Duration::from_secs(1));
    let stderr = proxy.stderr();
    assert!(!stderr.contains("\x1b["), "colour escapes in a file: {stderr:?}");
}

#[test]
fn ctrl_c_lets_a_request_in_flight_finish_and_ends_its_connection() {
    // An origin that answers half a second after the request came.
    let origin = TcpServer::start(|stream| {
        let mut w = Wire::new(stream);
        if let Ok(Some(_)) = w.read_head(64 * 1024) {
            std::thread::sleep(Duration::from_millis(500));
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        }
    });
    let mut proxy = Started::new(&["--listen", "127.0.0.1:0"]);
    let mut client = Wire::connect(proxy.port());
    client.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/"), origin.authority()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.connections() == 0 {
        assert!(Instant::now() < deadline, "the request never reached the origin");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.signal(libc::SIGINT);
    // The response comes, saying the connection ends with it, and it does.
    let response = client.read_response("GET").expect("the response to the request in flight");
    assert_eq!((response.status, response.text().as_str()), (200, "hi"));
    assert_eq!(response.header("connection"), Some("close"), "{:?}", response.head);
    client.expect_closed(Duration::from_secs(1));
    // The client closes too, as told (until it does, the proxy reads on for --close-linger,
    // lest unread input reset the response).
    drop(client);
    let (status, took) = proxy.exit_within(Duration::from_secs(4));
    assert!(status.success() && took < Duration::from_secs(2), "{status} after {took:?}");
}

#[test]
fn a_second_ctrl_c_quits_during_a_request_in_flight() {
    let origin = TcpServer::start(never_answer);
    let mut proxy = Started::new(&["--listen", "127.0.0.1:0", "--shutdown-timeout", "30"]);
    let mut client = Wire::connect(proxy.port());
    client.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/"), origin.authority()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.connections() == 0 {
        assert!(Instant::now() < deadline, "the request never reached the origin");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.signal(libc::SIGINT);
    proxy.wait_stderr("shutting down: waiting up to 30s for 1 connection to finish; press Ctrl-C again to quit now");
    // The request is in flight: the proxy waits for it...
    std::thread::sleep(Duration::from_millis(300));
    assert!(proxy.guard.try_wait().is_none(), "quit with a request in flight:\n{}", proxy.stderr());
    // ...until told again.
    proxy.signal(libc::SIGINT);
    let (_, took) = proxy.exit_within(Duration::from_secs(5));
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
    proxy.wait_stderr("second signal: quitting now, dropping 1 connection");
    client.expect_closed(Duration::from_secs(1));
}
