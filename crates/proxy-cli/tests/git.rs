//! `git clone` over plain HTTP (the smart protocol) through the proxy, from a `git http-backend`
//! that python's CGI server runs, with a 5 MiB incompressible file so the pack is big and
//! streamed. `git fsck --full` must pass in the clone, and HEAD and the big file must match.
//!
//! The origin answers HTTP/1.0 and ends each body by closing the connection; git sends its
//! upload-pack request as a POST with a Content-Length.

mod support;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::process::{run_bounded, ChildGuard, RunOutput};
use support::*;

/// Size of the binary file in the source repository.
const BLOB_LEN: usize = 5 << 20;
/// Limit for the clone (and for any other git command).
const GIT_LIMIT: Duration = Duration::from_secs(60);
/// How long the origin may take to print its port.
const ORIGIN_START: Duration = Duration::from_secs(20);

/// python3's CGI server on 127.0.0.1:0, serving the current directory's `cgi-bin/`. Prints its
/// port, then logs one line per request on stderr.
const CGI_SERVER: &str = r#"
import http.server, os, sys
# As root, the CGI runner would switch to 'nobody' before running the script, and git would
# then refuse the repository as owned by someone else. Run scripts as ourselves.
http.server.nobody_uid = lambda: os.getuid()
class Handler(http.server.CGIHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write('%s\n' % (fmt % args))
        sys.stderr.flush()
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Environment variables that could route a client around (or onto) a proxy.
const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// A directory under `CARGO_TARGET_TMPDIR`, removed with everything in it on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("sansproxy-itest-{}-{n}-{tag}", std::process::id());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A source repository under `src/` and its bare copy at `srv/repo.git`, in a temp dir.
struct Fixture {
    tmp: TempDir,
    /// HEAD of the source repository.
    head: String,
    /// The big binary file's contents.
    blob: Vec<u8>,
}

/// `len` bytes of xorshift64* output: deterministic and incompressible.
fn noise(len: usize) -> Vec<u8> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A `git` command isolated from the user's and the system's configuration and from any
/// repository the tests run inside.
fn git_cmd(tmp: &TempDir) -> Command {
    let home = tmp.join("home");
    let mut cmd = Command::new("git");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z");
    cmd
}

/// Runs `git ARGS` (bounded, proxy variables removed); returns how it ended and its stdout.
fn git_run(tmp: &TempDir, args: &[&str]) -> (RunOutput, String) {
    let mut cmd = git_cmd(tmp);
    cmd.args(args);
    let mut out = Vec::new();
    let run = run_bounded(cmd, GIT_LIMIT, None, &mut |d| out.extend_from_slice(d));
    (run, String::from_utf8_lossy(&out).into_owned())
}

/// Runs `git ARGS` and panics unless it exits 0; returns its stdout.
fn git(tmp: &TempDir, args: &[&str]) -> String {
    let (run, out) = git_run(tmp, args);
    assert_eq!(
        run.code,
        Some(0),
        "git {args:?} failed: {run:?}; stdout {out:?}"
    );
    out
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let tmp = TempDir::new(tag);
        fs::create_dir_all(tmp.join("home")).unwrap();
        let src = tmp.join("src");
        let s = src.to_str().unwrap();
        git(&tmp, &["init", "-q", "-b", "main", s]);

        fs::write(
            src.join("README.md"),
            "# fixture\n\nA repository to clone.\n",
        )
        .unwrap();
        fs::create_dir_all(src.join("docs")).unwrap();
        fs::write(src.join("docs/notes.txt"), "first notes\n").unwrap();
        git(&tmp, &["-C", s, "add", "-A"]);
        git(&tmp, &["-C", s, "commit", "-q", "-m", "text files"]);

        let blob = noise(BLOB_LEN);
        fs::write(src.join("blob.bin"), &blob).unwrap();
        git(&tmp, &["-C", s, "add", "blob.bin"]);
        git(&tmp, &["-C", s, "commit", "-q", "-m", "a 5 MiB binary"]);

        fs::write(
            src.join("README.md"),
            "# fixture\n\nA repository to clone, twice.\n",
        )
        .unwrap();
        fs::write(src.join("docs/more.txt"), "more\nlines\nhere\n").unwrap();
        git(&tmp, &["-C", s, "add", "-A"]);
        git(&tmp, &["-C", s, "commit", "-q", "-m", "more text"]);
        git(&tmp, &["-C", s, "tag", "-a", "-m", "v1", "v1"]);

        let head = git(&tmp, &["-C", s, "rev-parse", "HEAD"]).trim().to_owned();
        let srv = tmp.join("srv/repo.git");
        git(&tmp, &["clone", "-q", "--bare", s, srv.to_str().unwrap()]);
        Fixture { tmp, head, blob }
    }

    /// Clones over HTTP from `origin` into `dir` (through `proxy` if given).
    fn clone(&self, origin: &GitOrigin, proxy: Option<&Proxy>, dir: &str) -> RunOutput {
        let url = origin.base();
        let dest = self.tmp.join(dir);
        let dest = dest.to_str().unwrap();
        let proxy_cfg = match proxy {
            Some(p) => format!("http.proxy={}", p.url()),
            None => "http.proxy=".to_owned(),
        };
        let (run, _) = git_run(&self.tmp, &["-c", &proxy_cfg, "clone", "-q", &url, dest]);
        run
    }

    /// Asserts `dir` is a sound clone: fsck passes, HEAD and the big file match the source.
    fn check_clone(&self, dir: &str) {
        let clone = self.tmp.join(dir);
        let c = clone.to_str().unwrap();
        git(&self.tmp, &["-C", c, "fsck", "--full", "--strict"]);
        let head = git(&self.tmp, &["-C", c, "rev-parse", "HEAD"]);
        assert_eq!(head.trim(), self.head, "cloned HEAD");
        let tags = git(&self.tmp, &["-C", c, "tag", "-l"]);
        assert_eq!(tags.trim(), "v1", "cloned tags");
        let blob = fs::read(clone.join("blob.bin")).expect("read cloned blob.bin");
        assert_eq!(blob.len(), self.blob.len(), "cloned blob.bin length");
        assert!(blob == self.blob, "cloned blob.bin differs from the source");
        let notes = fs::read_to_string(clone.join("docs/more.txt")).unwrap();
        assert_eq!(notes, "more\nlines\nhere\n");
    }
}

/// python3's CGI server running `git http-backend` for `<tmp>/srv`, killed on drop.
struct GitOrigin {
    port: u16,
    log: PathBuf,
    _guard: ChildGuard,
}

impl GitOrigin {
    fn start(fx: &Fixture) -> GitOrigin {
        let www = fx.tmp.join("www");
        fs::create_dir_all(www.join("cgi-bin")).unwrap();
        let exec_path = git(&fx.tmp, &["--exec-path"]).trim().to_owned();
        let backend = Path::new(&exec_path).join("git-http-backend");
        assert!(backend.is_file(), "no {}", backend.display());
        std::os::unix::fs::symlink(&backend, www.join("cgi-bin/git")).unwrap();

        let log = fx.tmp.join("origin.log");
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(CGI_SERVER)
            .current_dir(&www)
            .env("GIT_PROJECT_ROOT", fx.tmp.join("srv"))
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", fx.tmp.join("home"))
            .env("XDG_CONFIG_HOME", fx.tmp.join("home/.config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3: {e}"));
        let out = child.stdout.take().unwrap();
        let guard = ChildGuard::new(child);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(ORIGIN_START).unwrap_or_else(|_| {
            panic!(
                "the CGI origin printed no port within {ORIGIN_START:?}; log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the CGI origin printed {line:?}, not a port; log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        GitOrigin {
            port,
            log,
            _guard: guard,
        }
    }

    /// The repository's URL.
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/git/repo.git", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn git_clone_direct_self_check() {
    let start = Instant::now();
    let fx = Fixture::new("git-direct");
    let origin = GitOrigin::start(&fx);
    let run = fx.clone(&origin, None, "clone");
    assert_eq!(
        run.code,
        Some(0),
        "direct clone failed: {run:?}; origin log:\n{}",
        origin.log()
    );
    fx.check_clone("clone");
    let log = origin.log();
    assert!(
        log.contains(
            "\"GET /cgi-bin/git/repo.git/info/refs?service=git-upload-pack HTTP/1.1\" 200"
        ),
        "origin log:\n{log}"
    );
    assert!(
        log.contains("\"POST /cgi-bin/git/repo.git/git-upload-pack HTTP/1.1\" 200"),
        "origin log:\n{log}"
    );
    eprintln!(
        "direct clone took {:?} (whole test {:?})",
        run.elapsed,
        start.elapsed()
    );
}

#[test]
fn git_clone_through_proxy() {
    let start = Instant::now();
    let fx = Fixture::new("git-proxy");
    let origin = GitOrigin::start(&fx);
    let proxy = Proxy::start(&[]);
    let run = fx.clone(&origin, Some(&proxy), "clone");
    assert_eq!(
        run.code,
        Some(0),
        "clone through the proxy failed: {run:?}; origin log:\n{}",
        origin.log()
    );
    fx.check_clone("clone");

    // CLIENT METHOD URL -> STATUS BYTESb DURATIONms
    let refs = format!(
        "GET {}/info/refs?service=git-upload-pack -> 200 ",
        origin.base()
    );
    let pack = format!("POST {}/git-upload-pack -> 200 ", origin.base());
    for want in [&refs, &pack] {
        proxy
            .wait_stdout(Duration::from_secs(5), |l| l.contains(want.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "no flow line containing {want:?}; stdout {:?}",
                    proxy.stdout_lines()
                )
            });
    }
    // The pack went through the proxy: the POST's response carried the 5 MiB file.
    let line = proxy
        .wait_stdout(Duration::ZERO, |l| l.contains(pack.as_str()))
        .unwrap();
    let bytes: u64 = line
        .split_whitespace()
        .nth(5)
        .and_then(|b| b.strip_suffix('b'))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"));
    assert!(
        bytes > BLOB_LEN as u64,
        "upload-pack response of {bytes} bytes cannot hold the 5 MiB file: {line:?}"
    );
    eprintln!(
        "clone through the proxy took {:?} (whole test {:?}); flow log: {:?}",
        run.elapsed,
        start.elapsed(),
        proxy.stdout_lines()
    );
}
