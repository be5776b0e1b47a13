//! WebSocket peers: Python's `websockets` (PyPI) and Node's `ws` (npm), installed on first use
//! into a venv and a node_modules under the target directory (`.ci/run` needs only `python3`
//! with venv, and `node` and `npm`). The scripts sit next to this file.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{run_bounded, ChildGuard, RunOutput};

pub const SERVER_PY: &str = include_str!("ws/server.py");
pub const CLIENT_PY: &str = include_str!("ws/client.py");
pub const PEERS_JS: &str = include_str!("ws/peers.js");

/// The versions the tests were written against.
/// `python-socks` lets the `websockets` client use a SOCKS5 proxy (`tests/modes.rs`).
const PY_PACKAGES: &[&str] = &["websockets==15.0.1", "python-socks==2.7.1", "prometheus-client==0.21.1"];
const NPM_PACKAGES: &[&str] = &["ws@8.23.1", "https-proxy-agent@7.0.6"];
const INSTALL_LIMIT: Duration = Duration::from_secs(600);

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-tools")
}

/// Run `install` once across every test process: the first to take the lock (a directory)
/// installs and writes `done`; the others wait for it.
fn once(name: &str, install: impl FnOnce(&Path)) -> PathBuf {
    let dir = tools_dir().join(name);
    let done = dir.join("done");
    if done.exists() {
        return dir;
    }
    fs::create_dir_all(tools_dir()).expect("create the tools directory");
    let lock = tools_dir().join(format!("{name}.lock"));
    let start = Instant::now();
    loop {
        if done.exists() {
            return dir;
        }
        match fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) => {
                // A lock older than the install limit belongs to a run that was killed.
                let stale = fs::metadata(&lock).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().unwrap_or_default() > INSTALL_LIMIT);
                if stale {
                    let _ = fs::remove_dir(&lock);
                }
                assert!(start.elapsed() < INSTALL_LIMIT, "waited {INSTALL_LIMIT:?} for another test to install {name}");
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if !done.exists() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the tool's directory");
        install(&dir);
        fs::write(&done, "").expect("mark the install done");
    }
    let _ = fs::remove_dir(&lock);
    dir
}

/// Run an installer with the environment as it is (it may need a proxy to reach its
/// registry); pip and npm bound their own network waits.
fn must(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's python, with `websockets`, `python-socks` and `prometheus_client` installed.
pub fn python() -> PathBuf {
    // The key names the package set: a venv made for another set is not reused.
    let dir = once("venv-prometheus", |dir| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(dir);
        must(venv, "python3 -m venv (Debian: apt-get install python3-venv)");
        let mut pip = Command::new(dir.join("bin/pip"));
        pip.args(["install", "-q", "--disable-pip-version-check"]).args(PY_PACKAGES);
        must(pip, "pip install websockets python-socks prometheus-client");
    });
    dir.join("bin/python")
}

/// A node_modules directory with `ws` and `https-proxy-agent`.
pub fn node_modules() -> PathBuf {
    let dir = once("node", |dir| {
        fs::write(dir.join("package.json"), "{\"name\": \"ws-peers\", \"private\": true}").expect("write package.json");
        let mut npm = Command::new("npm");
        npm.current_dir(dir).args(["install", "--silent", "--no-audit", "--no-fund"]).args(NPM_PACKAGES);
        must(npm, "npm install ws (Debian: apt-get install nodejs npm)");
    });
    dir.join("node_modules")
}

/// A WebSocket origin (a child process), its port, and the lines it printed after it.
pub struct WsServer {
    guard: ChildGuard,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl WsServer {
    /// The Python origin (`server.py`), wss:// with `tls` = (certificate, key) PEM files.
    pub fn python(tls: Option<(&Path, &Path)>) -> WsServer {
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(SERVER_PY);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        Self::spawn(cmd)
    }

    /// The Node origin (`peers.js server`).
    pub fn node() -> WsServer {
        let mut cmd = Command::new("node");
        cmd.env("NODE_PATH", node_modules()).arg("-e").arg(PEERS_JS).args(["-", "server"]);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> WsServer {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the WebSocket origin: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let guard = ChildGuard::new(child);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    match line.strip_prefix("port ").and_then(|p| p.parse::<u16>().ok()) {
                        Some(port) if tx.is_some() => {
                            let _ = tx.take().expect("checked").send(port);
                        }
                        _ => lines.lock().unwrap().push(line),
                    }
                }
            });
        }
        let port = rx.recv_timeout(Duration::from_secs(30)).expect("the WebSocket origin printed no port within 30 s");
        WsServer { guard, port, lines }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Waits at most `limit` for a printed line containing `text`.
    pub fn wait_line(&self, text: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return Some(line.clone());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Run `client.py CHECK URL PROXY CAFILE EXTRA...`, `on_line` seeing each line it prints.
pub fn python_client(args: &[&str], limit: Duration, on_line: &mut dyn FnMut(&str)) -> (RunOutput, String) {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(CLIENT_PY).args(args);
    node_or_python(cmd, limit, on_line)
}

/// Run `peers.js client ARGS...`.
pub fn node_client(args: &[&str], limit: Duration) -> (RunOutput, String) {
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", node_modules()).arg("-e").arg(PEERS_JS).args(["-", "client"]).args(args);
    node_or_python(cmd, limit, &mut |_| {})
}

/// Run the node program `script` with `args` (no modules needed), for at most `limit`.
pub fn node_script(script: &str, args: &[&str], limit: Duration) -> (RunOutput, String) {
    let mut cmd = Command::new("node");
    cmd.arg("-e").arg(script).arg("-").args(args);
    node_or_python(cmd, limit, &mut |_| {})
}

fn node_or_python(cmd: Command, limit: Duration, on_line: &mut dyn FnMut(&str)) -> (RunOutput, String) {
    let mut out = Vec::new();
    let mut seen = 0;
    let run = run_bounded(cmd, limit, None, &mut |d| {
        out.extend_from_slice(d);
        while let Some(end) = out[seen..].iter().position(|&b| b == b'\n') {
            on_line(&String::from_utf8_lossy(&out[seen..seen + end]));
            seen += end + 1;
        }
    });
    (run, String::from_utf8_lossy(&out).into_owned())
}
