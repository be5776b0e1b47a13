//! A git repository to clone over the smart HTTP protocol, and its origin: python3's CGI
//! server running `git http-backend`, in plain text or wrapped in TLS with python's `ssl`.
//!
//! The origin answers HTTP/1.0 and ends each body by closing the connection (over TLS, with
//! `close_notify`); git sends its upload-pack request as a POST with a Content-Length.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::pki::{Cert, ORIGIN_HOST};
use super::process::{run_bounded, ChildGuard, Proxy, RunOutput, TempDir, PROXY_VARS};

/// Size of the binary file in the source repository.
pub const BLOB_LEN: usize = 5 << 20;
/// Limit for the clone (and for any other git command).
pub const GIT_LIMIT: Duration = Duration::from_secs(60);
/// How long the origin may take to print its port.
const ORIGIN_START: Duration = Duration::from_secs(20);

/// python3's CGI server on 127.0.0.1:0, serving the current directory's `cgi-bin/`; with
/// `CERT KEY` arguments, over TLS. Prints its port, then logs one line per request on stderr.
const CGI_SERVER: &str = r#"
import http.server, os, ssl, sys
# As root, the CGI runner would switch to 'nobody' before running the script, and git would
# then refuse the repository as owned by someone else. Run scripts as ourselves.
http.server.nobody_uid = lambda: os.getuid()
ctx = None
if len(sys.argv) == 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ctx.set_alpn_protocols(['http/1.1'])
class Handler(http.server.CGIHTTPRequestHandler):
    # A forked script would write its plaintext straight to the socket, under the TLS layer:
    # over TLS, run scripts through pipes instead.
    have_fork = ctx is None
    timeout = 30
    def setup(self):
        if ctx:
            # The handshake runs here, on the request's thread, not in the accept loop.
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()
    def finish(self):
        super().finish()
        if ctx:
            # Bodies end with the connection: say so with close_notify, or clients see a
            # truncation.
            try:
                self.request.unwrap()
            except OSError:
                pass
    def log_message(self, fmt, *args):
        sys.stderr.write('%s\n' % (fmt % args))
        sys.stderr.flush()
class Server(http.server.ThreadingHTTPServer):
    def get_request(self):
        sock, addr = super().get_request()
        if ctx:
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr
server = Server(('127.0.0.1', 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A source repository under `src/` and its bare copy at `srv/repo.git`, in a temp dir.
pub struct Fixture {
    pub tmp: TempDir,
    /// HEAD of the source repository.
    pub head: String,
    /// The big binary file's contents.
    pub blob: Vec<u8>,
}

/// python3's CGI server running `git http-backend` for `<tmp>/srv`, killed on drop.
pub struct GitOrigin {
    port: u16,
    tls: bool,
    log: PathBuf,
    _guard: ChildGuard,
}

/// `len` bytes of xorshift64* output: deterministic and incompressible.
pub fn noise(len: usize) -> Vec<u8> {
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
pub fn git_cmd(tmp: &TempDir) -> Command {
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
pub fn git_run(tmp: &TempDir, args: &[&str]) -> (RunOutput, String) {
    let mut cmd = git_cmd(tmp);
    cmd.args(args);
    let mut out = Vec::new();
    let run = run_bounded(cmd, GIT_LIMIT, None, &mut |d| out.extend_from_slice(d));
    (run, String::from_utf8_lossy(&out).into_owned())
}

/// Runs `git ARGS` and panics unless it exits 0; returns its stdout.
pub fn git(tmp: &TempDir, args: &[&str]) -> String {
    let (run, out) = git_run(tmp, args);
    assert_eq!(
        run.code,
        Some(0),
        "git {args:?} failed: {run:?}; stdout {out:?}"
    );
    out
}

impl Fixture {
    pub fn new(tag: &str) -> Fixture {
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
    pub fn clone(&self, origin: &GitOrigin, proxy: Option<&Proxy>, dir: &str) -> RunOutput {
        self.clone_with(origin, proxy, &[], dir)
    }

    /// Like [`Fixture::clone`], with extra `-c NAME=VALUE` settings (`http.sslCAInfo=...`).
    pub fn clone_with(
        &self,
        origin: &GitOrigin,
        proxy: Option<&Proxy>,
        config: &[&str],
        dir: &str,
    ) -> RunOutput {
        self.clone_with_env(origin, proxy, config, &[], dir)
    }

    /// Like [`Fixture::clone_with`], with `vars` in git's environment (`GIT_SSL_CAINFO`).
    pub fn clone_with_env(
        &self,
        origin: &GitOrigin,
        proxy: Option<&Proxy>,
        config: &[&str],
        vars: &[(&str, &str)],
        dir: &str,
    ) -> RunOutput {
        let url = origin.base();
        let dest = self.tmp.join(dir);
        let dest = dest.to_str().unwrap();
        let proxy_cfg = match proxy {
            Some(p) => format!("http.proxy={}", p.url()),
            None => "http.proxy=".to_owned(),
        };
        let mut args = vec!["-c", &proxy_cfg];
        for c in config {
            args.extend(["-c", c]);
        }
        args.extend(["clone", "-q", &url, dest]);
        let mut cmd = git_cmd(&self.tmp);
        cmd.args(&args).envs(vars.iter().copied());
        run_bounded(cmd, GIT_LIMIT, None, &mut |_| {})
    }

    /// Asserts `dir` is a sound clone: fsck passes, HEAD and the big file match the source.
    pub fn check_clone(&self, dir: &str) {
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

impl GitOrigin {
    /// The plain HTTP origin, at `http://127.0.0.1:PORT`.
    pub fn start(fx: &Fixture) -> GitOrigin {
        GitOrigin::launch(fx, None)
    }

    /// The HTTPS origin presenting `cert`, at `https://localhost:PORT`.
    pub fn start_tls(fx: &Fixture, cert: &Cert) -> GitOrigin {
        GitOrigin::launch(fx, Some(cert))
    }

    fn launch(fx: &Fixture, cert: Option<&Cert>) -> GitOrigin {
        let www = fx.tmp.join("www");
        fs::create_dir_all(www.join("cgi-bin")).unwrap();
        let exec_path = git(&fx.tmp, &["--exec-path"]).trim().to_owned();
        let backend = Path::new(&exec_path).join("git-http-backend");
        assert!(backend.is_file(), "no {}", backend.display());
        let link = www.join("cgi-bin/git");
        if !link.exists() {
            std::os::unix::fs::symlink(&backend, link).unwrap();
        }

        let log = fx.tmp.join(if cert.is_some() {
            "origin-tls.log"
        } else {
            "origin.log"
        });
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(CGI_SERVER);
        if let Some(c) = cert {
            cmd.args([c.cert_arg(), c.key_arg()]);
        }
        cmd.current_dir(&www)
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
            tls: cert.is_some(),
            log,
            _guard: guard,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The repository's URL: `http://127.0.0.1:PORT/...` or `https://localhost:PORT/...`.
    pub fn base(&self) -> String {
        let (scheme, host) = if self.tls {
            ("https", ORIGIN_HOST)
        } else {
            ("http", "127.0.0.1")
        };
        format!("{scheme}://{host}:{}/cgi-bin/git/repo.git", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
