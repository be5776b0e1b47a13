//! Child processes that never outlive their test: the proxy under test, curl and python3.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::pattern::{pattern_piece, Fnv64, PIECE};
use super::wire::Wire;

/// How long the proxy may take to print its listening line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of proxy output kept for diagnostics.
const KEEP_LINES: usize = 2000;
/// Environment variables that would route (or un-route) a client around the proxy.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];
const CURL_MARK: &str = "@@sansproxy-test ";
/// The CA certificate (PEM) sansproxy writes into its `--ca-dir`.
pub const CA_CERT_FILE: &str = "sansproxy-ca-cert.pem";
/// The CA key and certificate (PEM) sansproxy writes into its `--ca-dir`.
pub const CA_KEY_FILE: &str = "sansproxy-ca.pem";

/// Writes a child's standard input from a thread of its own.
pub type Feeder = Box<dyn FnOnce(&mut ChildStdin) -> io::Result<()> + Send>;

/// Kills and reaps its child on drop.
pub struct ChildGuard {
    child: Child,
}

/// A running `sansproxy --listen 127.0.0.1:0`, killed on drop. Its stdout is kept line by line;
/// its stderr is drained and its tail printed if the test panics.
pub struct Proxy {
    port: u16,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    guard: ChildGuard,
    /// What `--ca-dir` named, if the launcher passed it.
    ca_dir: Option<PathBuf>,
    /// A CA directory owned by this proxy; declared after `guard`, so it is removed only once
    /// the process is gone.
    _own_ca_dir: Option<TempDir>,
}

/// How a bounded child process ended.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code; `None` when killed by a signal (including by our time limit).
    pub code: Option<i32>,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// A curl invocation: `curl -q -sS --max-time T -w MARK ARGS`.
pub struct Curl {
    args: Vec<OsString>,
    max_time: Duration,
    stdin: Option<Feeder>,
}

/// What curl reported about one URL (from `-w`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// `%{http_code}`: the final response's status, 0 if none.
    pub status: u16,
    /// `%{num_connects}`: new connections this transfer opened.
    pub connects: u32,
    /// `%{http_connect}`: the proxy's answer to CONNECT, 0 if none.
    pub connect_status: u16,
    /// `%{time_total}`.
    pub total: Duration,
    /// `%{http_version}`: `1.1`, `2`, or `0` when no response came.
    pub version: String,
}

#[derive(Debug)]
pub struct CurlOutput {
    /// Exit code; 0 on success, e.g. 18 for a partial file, 28 for `--max-time`.
    pub code: Option<i32>,
    /// Standard output (empty when streamed through [`Curl::run_streaming`]).
    pub body: Vec<u8>,
    /// One entry per URL, in order.
    pub transfers: Vec<Transfer>,
    /// curl's own messages on stderr (`-sS` prints errors only, `-v` more).
    pub messages: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// A file under `CARGO_TARGET_TMPDIR`, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

/// A directory under `CARGO_TARGET_TMPDIR`, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

#[derive(Default)]
struct Lines {
    lines: Mutex<VecDeque<String>>,
    total: AtomicUsize,
    grew: Condvar,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits at most `limit` for the child to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if start.elapsed() > limit {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CA directory of every proxy under test, given through `SANSPROXY_CA_DIR` (which a
/// test's own `--ca-dir` overrides): made by the first proxy of a run, inside the target
/// directory rather than the user's home. Its `sansproxy-ca-cert.pem` is the CA to trust.
pub fn test_ca_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sansproxy-ca")
}

impl Proxy {
    /// Starts `sansproxy --listen 127.0.0.1:0 ARGS` and waits (at most 20 s) for
    /// `sansproxy listening on 127.0.0.1:PORT` on its stderr.
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::start_with_env(&[], args)
    }

    /// [`Proxy::start`] with `vars` added to the proxy's environment.
    pub fn start_with_env(vars: &[(&str, &str)], args: &[&str]) -> Proxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sansproxy"));
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(vars.iter().copied())
            .env("SANSPROXY_CA_DIR", test_ca_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sansproxy: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let mut guard = ChildGuard::new(child);

        let stdout = Arc::new(Lines::default());
        let stderr = Arc::new(Lines::default());
        let (tx, rx) = mpsc::channel();
        {
            let lines = stdout.clone();
            thread::spawn(move || pump(out, &lines, None));
            let lines = stderr.clone();
            thread::spawn(move || pump(err, &lines, Some(tx)));
        }

        let deadline = Instant::now() + LISTEN_TIMEOUT;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = listening_port(&line) {
                        break port;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "sansproxy {args:?} printed no listening line within {LISTEN_TIMEOUT:?}; stderr:\n{}",
                    stderr.text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = guard.wait_timeout(Duration::from_secs(5));
                    let status = status.map_or("still running".into(), |s| s.to_string());
                    panic!(
                        "sansproxy {args:?} closed stderr before listening ({status}); stderr:\n{}",
                        stderr.text()
                    )
                }
            }
        };
        Proxy {
            port,
            stdout,
            stderr,
            guard,
            ca_dir: None,
            _own_ca_dir: None,
        }
    }

    /// Starts the proxy with `--ca-dir` pointing at a fresh temp dir (removed on drop), so
    /// it never creates a CA anywhere else; [`Proxy::ca_cert`] is then what clients trust.
    pub fn start_tls(args: &[&str]) -> Proxy {
        let dir = TempDir::new("proxy-ca");
        let mut proxy = Proxy::start_with_ca_dir(dir.path(), args);
        proxy._own_ca_dir = Some(dir);
        proxy
    }

    /// Starts `sansproxy --ca-dir DIR ARGS`; `DIR` outlives the proxy and may be reused.
    pub fn start_with_ca_dir(dir: &Path, args: &[&str]) -> Proxy {
        let dir_arg = dir.to_str().expect("temp paths are utf-8");
        let mut all = vec!["--ca-dir", dir_arg];
        all.extend_from_slice(args);
        let mut proxy = Proxy::start(&all);
        proxy.ca_dir = Some(dir.to_owned());
        proxy
    }

    /// Where the CA certificate goes, written or not; panics unless the proxy was started
    /// with a CA dir.
    pub fn ca_cert_path(&self) -> PathBuf {
        let dir = self.ca_dir.as_ref().expect("proxy started without --ca-dir");
        dir.join(CA_CERT_FILE)
    }

    /// `CA_DIR/sansproxy-ca-cert.pem`, the certificate clients must trust; panics unless the
    /// proxy was started with a CA dir and has written the file.
    pub fn ca_cert(&self) -> PathBuf {
        let cert = self.ca_cert_path();
        let dir = cert.parent().expect("the CA file is in the CA dir");
        assert!(
            cert.is_file(),
            "sansproxy is listening but wrote no {}; files in the CA dir: {:?}",
            cert.display(),
            std::fs::read_dir(dir)
                .map(|d| d
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>())
                .unwrap_or_default()
        );
        cert
    }

    /// [`Proxy::ca_cert`] as a `&str`-friendly string, for command lines.
    pub fn ca_cert_arg(&self) -> String {
        self.ca_cert()
            .to_str()
            .expect("temp paths are utf-8")
            .to_owned()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the listener in `mode` (`regular`, `socks5`...), when the proxy serves
    /// several: from its `sansproxy listening on ADDR (MODE mode)` line.
    pub fn listener(&self, mode: &str) -> u16 {
        let suffix = format!(" ({mode} mode)");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr.text();
            let line = text.lines().find(|l| l.contains("sansproxy listening on ") && l.ends_with(&suffix));
            if let Some(port) = line.and_then(listening_port) {
                return port;
            }
            assert!(Instant::now() < deadline, "no {mode} listener; stderr:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ports of the first `n` listeners in `mode`, in the order the proxy printed them.
    pub fn listeners(&self, mode: &str, n: usize) -> Vec<u16> {
        let suffix = format!(" ({mode} mode)");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr.text();
            let ports: Vec<u16> = text
                .lines()
                .filter(|l| l.contains("sansproxy listening on ") && l.ends_with(&suffix))
                .filter_map(listening_port)
                .collect();
            if ports.len() >= n {
                return ports[..n].to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} {mode} listeners; stderr:\n{text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`, for `curl -x`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw connection to the proxy.
    pub fn connect(&self) -> Wire {
        Wire::connect(self.port)
    }

    /// A curl invocation already routed through this proxy (`-x`).
    pub fn curl(&self) -> Curl {
        Curl::new().args(["-x", &self.url()])
    }

    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.guard.try_wait().is_none()
    }

    /// Stdout lines so far (the flow log).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Waits at most `limit` for a stdout line satisfying `pred` and returns it.
    pub fn wait_stdout(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.stdout.wait_for(limit, pred)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- sansproxy (pid {}) stdout ---\n{}\n--- sansproxy stderr ---\n{}",
                self.guard.id(),
                self.stdout.text(),
                self.stderr.text()
            );
        }
    }
}

impl Default for Curl {
    fn default() -> Self {
        Self::new()
    }
}

impl Curl {
    pub fn new() -> Curl {
        Curl {
            args: Vec::new(),
            max_time: Duration::from_secs(10),
            stdin: None,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Curl {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Curl
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// curl's `--max-time`; our own watchdog kills it 5 s later.
    pub fn max_time(mut self, t: Duration) -> Curl {
        self.max_time = t;
        self
    }

    /// Feeds curl's stdin (for `-T -` or `--data-binary @-`).
    pub fn stdin(
        mut self,
        feed: impl FnOnce(&mut ChildStdin) -> io::Result<()> + Send + 'static,
    ) -> Curl {
        self.stdin = Some(Box::new(feed));
        self
    }

    pub fn run(self) -> CurlOutput {
        let mut body = Vec::new();
        let mut out = self.run_streaming(|d| body.extend_from_slice(d));
        out.body = body;
        out
    }

    /// Runs curl, handing its stdout to `f` as it arrives instead of keeping it.
    pub fn run_streaming(self, mut f: impl FnMut(&[u8])) -> CurlOutput {
        let format = format!(
            "%{{stderr}}\n{CURL_MARK}status=%{{http_code}} connects=%{{num_connects}} \
             connect=%{{http_connect}} total=%{{time_total}} version=%{{http_version}}@@\n"
        );
        let mut cmd = Command::new("curl");
        cmd.args(["-q", "-sS", "--max-time"])
            .arg(format!("{:.3}", self.max_time.as_secs_f64()))
            .arg("-w")
            .arg(format)
            .args(&self.args);
        let run = run_bounded(
            cmd,
            self.max_time + Duration::from_secs(5),
            self.stdin,
            &mut f,
        );
        let (transfers, messages) = parse_curl_stderr(&run.stderr);
        CurlOutput {
            code: run.code,
            body: Vec::new(),
            transfers,
            messages,
            elapsed: run.elapsed,
            timed_out: run.timed_out,
        }
    }
}

impl CurlOutput {
    /// The only transfer; panics unless exactly one URL was fetched.
    pub fn transfer(&self) -> &Transfer {
        assert_eq!(self.transfers.len(), 1, "expected one transfer: {self}");
        &self.transfers[0]
    }

    /// Status of the only transfer.
    pub fn status(&self) -> u16 {
        self.transfer().status
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Panics unless curl exited 0.
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "curl failed: {self}");
        self
    }
}

impl std::fmt::Display for CurlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = 300.min(self.body.len());
        write!(
            f,
            "exit {:?} after {:?}{}; transfers {:?}; messages {:?}; body ({} bytes) starts {:?}",
            self.code,
            self.elapsed,
            if self.timed_out {
                " (killed by the test's time limit)"
            } else {
                ""
            },
            self.transfers,
            self.messages,
            self.body.len(),
            String::from_utf8_lossy(&self.body[..shown])
        )
    }
}

impl TempFile {
    /// A new file holding `len` bytes of the pattern; returns it with its FNV-1a 64 hash.
    pub fn with_pattern(tag: &str, len: u64) -> (TempFile, u64) {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(temp_name(tag));
        let tmp = TempFile { path };
        let mut file = io::BufWriter::new(File::create(&tmp.path).expect("create temp file"));
        let mut hash = Fnv64::new();
        let mut at = 0;
        while at < len {
            let piece = pattern_piece(at, PIECE.min((len - at) as usize));
            hash.update(piece);
            file.write_all(piece).expect("write temp file");
            at += piece.len() as u64;
        }
        file.flush().expect("flush temp file");
        (tmp, hash.finish())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(temp_name(tag));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `sansproxy-itest-PID-N-TAG`, unique within this test process.
fn temp_name(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("sansproxy-itest-{}-{n}-{tag}", std::process::id())
}

/// Runs `python3 -c SCRIPT ARGS` without proxy variables in its environment; returns how it
/// ended and its stdout.
pub fn run_python(script: &str, args: &[&str], limit: Duration) -> (RunOutput, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    let mut out = Vec::new();
    let run = run_bounded(cmd, limit, None, &mut |d| out.extend_from_slice(d));
    (run, String::from_utf8_lossy(&out).into_owned())
}

/// Runs `cmd` with proxy variables removed, handing stdout to `on_stdout`, and kills it by pid
/// once `limit` has passed.
pub fn run_bounded(
    mut cmd: Command,
    limit: Duration,
    stdin: Option<Feeder>,
    on_stdout: &mut dyn FnMut(&[u8]),
) -> RunOutput {
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let pipe = child.stdin.take();
    let guard = Arc::new(Mutex::new(ChildGuard::new(child)));
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));

    let watchdog = {
        let (guard, done, timed_out) = (guard.clone(), done.clone(), timed_out.clone());
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > limit {
                    timed_out.store(true, Ordering::SeqCst);
                    guard.lock().unwrap_or_else(|p| p.into_inner()).kill();
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let errs = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let feeder = stdin.zip(pipe).map(|(feed, mut pipe)| {
        thread::spawn(move || {
            // A child that stops reading makes this fail with EPIPE, which is fine.
            let _ = feed(&mut pipe);
        })
    });

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => on_stdout(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Stdout is closed, so the child is exiting; the watchdog still bounds the wait.
    let status = loop {
        if let Some(s) = guard.lock().unwrap_or_else(|p| p.into_inner()).try_wait() {
            break Some(s);
        }
        if start.elapsed() > limit + Duration::from_secs(5) {
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    // Killing (again) is harmless if the child exited; it ends the pipes if it did not.
    guard.lock().unwrap_or_else(|p| p.into_inner()).kill();
    let stderr = String::from_utf8_lossy(&errs.join().unwrap_or_default()).into_owned();
    if let Some(t) = feeder {
        let _ = t.join();
    }
    RunOutput {
        code: status.and_then(|s| s.code()),
        stderr,
        elapsed,
        timed_out: timed_out.load(Ordering::SeqCst) || status.is_none(),
    }
}

impl Lines {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEEP_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
        self.total.fetch_add(1, Ordering::SeqCst);
        self.grew.notify_all();
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    fn wait_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self
                .grew
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Copies `from` line by line into `lines` (and `tx`, while someone listens) until EOF.
fn pump(from: impl Read, lines: &Lines, mut tx: Option<mpsc::Sender<String>>) {
    let mut r = BufReader::new(from);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match r.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if let Some(t) = &tx {
            if t.send(line.clone()).is_err() {
                tx = None;
            }
        }
        lines.push(line);
    }
}

/// The port in `sansproxy listening on 127.0.0.1:PORT`, wherever the line puts it.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("sansproxy listening on ").nth(1)?;
    let addr: std::net::SocketAddr = rest.split_whitespace().next()?.parse().ok()?;
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "proxy listens on the wrong address: {line}"
    );
    Some(addr.port())
}

fn parse_curl_stderr(stderr: &str) -> (Vec<Transfer>, String) {
    let mut transfers = Vec::new();
    let mut messages = String::new();
    for line in stderr.lines() {
        let Some(at) = line.find(CURL_MARK) else {
            messages.push_str(line);
            messages.push('\n');
            continue;
        };
        messages.push_str(&line[..at]);
        let fields = line[at + CURL_MARK.len()..].trim_end_matches('@');
        let mut t = Transfer {
            status: 0,
            connects: 0,
            connect_status: 0,
            total: Duration::ZERO,
            version: String::new(),
        };
        for kv in fields.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "status" => t.status = v.parse().unwrap_or(0),
                "connects" => t.connects = v.parse().unwrap_or(0),
                "connect" => t.connect_status = v.parse().unwrap_or(0),
                "total" => t.total = Duration::from_secs_f64(v.parse().unwrap_or(0.0)),
                "version" => t.version = v.to_owned(),
                _ => {}
            }
        }
        transfers.push(t);
    }
    (transfers, messages.trim().to_owned())
}
