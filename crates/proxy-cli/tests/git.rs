//! `git clone` over the smart HTTP protocol through the proxy, from a `git http-backend` that
//! python's CGI server runs, with a 5 MiB incompressible file so the pack is big and streamed:
//! over plain HTTP, and over HTTPS, where the proxy intercepts TLS with its own CA and git
//! trusts only that CA. `git fsck --full` must pass in the clone, and HEAD and the big file
//! must match. The origin and the fixture live in `support/git.rs`.

use crate::support;

use std::time::{Duration, Instant};

use support::git::{git_run, Fixture, GitOrigin, BLOB_LEN};
use support::*;

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

    check_flow_lines(&proxy, &origin);
    eprintln!(
        "clone through the proxy took {:?} (whole test {:?}); flow log: {:?}",
        run.elapsed,
        start.elapsed(),
        proxy.stdout_lines()
    );
}

#[test]
fn git_https_clone_direct_self_check() {
    let start = Instant::now();
    let pki = Pki::new();
    let fx = Fixture::new("git-https-direct");
    let origin = GitOrigin::start_tls(&fx, &pki.valid);
    let trust_origin = format!("http.sslCAInfo={}", pki.origin_ca_arg());
    let run = fx.clone_with(&origin, None, &[&trust_origin], "clone");
    assert_eq!(
        run.code,
        Some(0),
        "direct HTTPS clone failed: {run:?}; origin log:\n{}",
        origin.log()
    );
    fx.check_clone("clone");

    // git does check the origin's certificate: trusting another CA, the clone fails.
    let trust_other = format!("http.sslCAInfo={}", pki.other_ca.cert_arg());
    let run = fx.clone_with(&origin, None, &[&trust_other], "untrusted");
    assert_ne!(run.code, Some(0), "cloned without trusting the origin CA");
    assert!(
        run.stderr.contains("certificate"),
        "not a certificate error: {run:?}"
    );
    eprintln!(
        "direct HTTPS clone took {:?} (whole test {:?})",
        run.elapsed,
        start.elapsed()
    );
}

#[test]
fn git_https_clone_through_intercepting_proxy() {
    let start = Instant::now();
    let pki = Pki::new();
    let fx = Fixture::new("git-https-proxy");
    let origin = GitOrigin::start_tls(&fx, &pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    // git trusts only the proxy's CA: the clone works only if the proxy intercepts.
    let trust_proxy = format!("http.sslCAInfo={}", proxy.ca_cert_arg());
    let run = fx.clone_with(&origin, Some(&proxy), &[&trust_proxy], "clone");
    assert_eq!(
        run.code,
        Some(0),
        "HTTPS clone through the proxy failed: {run:?}; origin log:\n{}",
        origin.log()
    );
    fx.check_clone("clone");
    check_flow_lines(&proxy, &origin);
    eprintln!(
        "HTTPS clone through the proxy took {:?} (whole test {:?}); flow log: {:?}",
        run.elapsed,
        start.elapsed(),
        proxy.stdout_lines()
    );
}

#[test]
fn git_not_trusting_the_proxy_ca_leaves_a_line_saying_what_to_do() {
    // git's GnuTLS completes the handshake, checks the certificate only then, and leaves with
    // a close_notify: at the TLS level nothing failed, yet the proxy says what happened.
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let tmp = TempDir::new("git-untrusted");
    std::fs::create_dir_all(tmp.join("home")).unwrap();
    let proxy_cfg = format!("http.proxy={}", proxy.url());
    let (run, _) = git_run(&tmp, &["-c", &proxy_cfg, "ls-remote", &origin.url("/repo.git")]);
    assert_ne!(run.code, Some(0), "git trusted the proxy's certificate without being told to: {run:?}");
    assert!(run.stderr.contains("certificate"), "not a certificate error: {run:?}");
    let line = proxy
        .wait_stdout(Duration::from_secs(5), |l| l.contains("client TLS handshake for localhost"))
        .unwrap_or_else(|| panic!("no failure line; stdout {:?}", proxy.stdout_lines()));
    let ca = proxy.ca_cert_arg();
    assert!(
        line.contains(&format!(
            "failed: the client closed the connection right after the handshake, before sending a request; \
             it probably does not trust the proxy's CA (GnuTLS clients, git among them, check the \
             certificate only after the handshake): make the client trust {ca} (curl --cacert {ca}, \
             GIT_SSL_CAINFO={ca} git, or the system's trust store), or leave this host uninspected \
             (--ignore-hosts REGEX)"
        )),
        "{line}"
    );
    assert_eq!(origin.requests(), Vec::<String>::new(), "no request reached the origin");
}

#[test]
fn git_trusts_the_proxy_ca_the_way_the_notice_says() {
    let pki = Pki::new();
    let fx = Fixture::new("git-https-cainfo");
    let origin = GitOrigin::start_tls(&fx, &pki.valid);
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    // `GIT_SSL_CAINFO=CA git ...`, as the CA notice and the README say: the variable wins
    // over `-c http.sslCAInfo` (here another CA), which is why a `-c` alone fails for a user
    // who has the variable set.
    let other = format!("http.sslCAInfo={}", pki.other_ca.cert_arg());
    let ca = proxy.ca_cert_arg();
    let run = fx.clone_with_env(&origin, Some(&proxy), &[&other], &[("GIT_SSL_CAINFO", &ca)], "clone");
    assert_eq!(run.code, Some(0), "HTTPS clone with GIT_SSL_CAINFO failed: {run:?}");
    fx.check_clone("clone");
}

/// The proxy logged both requests of the clone with their full URL (so `https://` for an
/// intercepted clone), and the upload-pack response carried the 5 MiB file.
fn check_flow_lines(proxy: &Proxy, origin: &GitOrigin) {
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
}
