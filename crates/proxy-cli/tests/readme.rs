//! The README's "Getting started", followed to the letter: the proxy started with the README's
//! command, in a home directory of its own, and the README's curl and Python commands run by
//! the shell as written. Only what cannot be the same here is replaced: the port (a free one
//! instead of 8080), the page (`https://example.com/` becomes a local HTTPS origin), and the
//! proxy is told to trust that origin's private CA (`--upstream-ca`), as the real
//! example.com needs no such flag.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::process::{run_bounded, ChildGuard};
use support::{unused_port, Origin, Pki, TempDir, HELLO};

const README_PAGE: &str = "https://example.com/";

#[test]
fn getting_started_works_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let steps = section(&readme, "## Getting started");
    let blocks = sh_blocks(steps);
    assert_eq!(blocks.len(), 2, "Getting started has a block to start the proxy and one to fetch:\n{steps}");

    // Step 1: the command, exactly the README's first line, run as the binary cargo builds.
    let start = blocks[0].trim();
    let top = sh_blocks(&readme).into_iter().next().unwrap();
    assert!(top.starts_with(start), "step 1 is the README's run command: {start:?} vs {top:?}");
    let args = start
        .strip_prefix("cargo run --release -p proxy-cli -- ")
        .unwrap_or_else(|| panic!("step 1 runs the proxy-cli binary through cargo: {start:?}"));
    assert!(args.contains("127.0.0.1:8080"), "{args}");
    let port = unused_port();
    let args = args.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));

    let home = TempDir::new("readme-home");
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sansproxy"));
    cmd.args(args.split_whitespace()).args(["--upstream-ca", pki.origin_ca_arg()]);
    let mut child = clean_env(&mut cmd, home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sansproxy");
    let stderr = lines(child.stderr.take().unwrap());
    let stdout = lines(child.stdout.take().unwrap());
    let mut proxy = ChildGuard::new(child);
    let mut said = String::new();
    while !said.contains("sansproxy listening on") {
        match stderr.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => said += &format!("{line}\n"),
            Err(e) => panic!("the proxy did not say it listens ({e}); it said:\n{said}"),
        }
    }
    // "prints where its certificate is": ~/.sansproxy/sansproxy-ca-cert.pem, made just now.
    let ca = home.join(".sansproxy/sansproxy-ca-cert.pem");
    while let Ok(line) = stderr.recv_timeout(Duration::from_millis(500)) {
        said += &format!("{line}\n");
    }
    assert!(said.contains(ca.to_str().unwrap()), "the proxy names the CA certificate:\n{said}");
    assert!(ca.exists(), "{} was made", ca.display());

    // Step 2: both commands as written, through the shell, in the same home.
    let page = origin.url("/hello").replacen("http://", "https://", 1).replacen("127.0.0.1", "localhost", 1);
    assert!(blocks[1].contains(README_PAGE), "step 2 fetches {README_PAGE}: {}", blocks[1]);
    let script = blocks[1].replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")).replace(README_PAGE, &page);
    let mut sh = Command::new("sh");
    sh.args(["-e", "-c", &script]);
    clean_env(&mut sh, home.path());
    let mut printed = Vec::new();
    let out = run_bounded(sh, Duration::from_secs(60), None, &mut |d| printed.extend_from_slice(d));
    let stdout_text = String::from_utf8_lossy(&printed);
    assert_eq!(out.code, Some(0), "step 2 failed: {out:?}\n{stdout_text}");
    assert_eq!(stdout_text.matches(HELLO.trim_end()).count(), 2, "curl and python each print the page:\n{stdout_text}");

    // "a line for each CONNECT and each request inside it", for both clients.
    let mut flows = Vec::new();
    while flows.len() < 4 {
        match stdout.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => flows.push(line),
            Err(e) => panic!("four flow lines expected ({e}), got {flows:?}"),
        }
    }
    let authority = page.trim_start_matches("https://").trim_end_matches("/hello");
    let connect = format!(" CONNECT {authority} -> 200 tunnel ");
    // Python's CONNECT is HTTP/1.0, curl's HTTP/1.1.
    let tunnel = |l: &&String| l.contains(&connect) && (l.ends_with("ms (client HTTP/1.1)") || l.ends_with("ms (client HTTP/1.0)"));
    assert_eq!(flows.iter().filter(tunnel).count(), 2, "{flows:?}");
    // The local origin speaks HTTP/1.1 only, so both clients are given HTTP/1.1 too.
    let get = format!(" GET {page} -> 200 12b ");
    let versions = "ms (client HTTP/1.1, server HTTP/1.1)";
    assert_eq!(flows.iter().filter(|l| l.contains(&get) && l.ends_with(versions)).count(), 2, "{flows:?}");
    proxy.kill();
}

/// The text of the section headed `heading`, up to the next heading of its level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let body = &text[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// The contents of the ```sh blocks in `text`, each with its indentation removed.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == "```sh" => current = Some((indent, String::new())),
            None => {}
            Some(_) if trimmed == "```" => blocks.push(current.take().unwrap().1),
            Some((indent, block)) => {
                block.push_str(line.get(*indent..).unwrap_or(""));
                block.push('\n');
            }
        }
    }
    blocks
}

/// A newcomer's environment: `HOME` is `home`, and nothing tells the proxy or the clients
/// where else to look for a CA or a proxy.
fn clean_env<'a>(cmd: &'a mut Command, home: &Path) -> &'a mut Command {
    for var in [
        "SANSPROXY_CA_DIR", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
        "all_proxy", "NO_PROXY", "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
}

/// The lines `pipe` gives, as they come, on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().take(1000).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
