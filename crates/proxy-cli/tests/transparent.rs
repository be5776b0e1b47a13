//! Transparent mode for real. The test moves one thread into a network namespace of its own
//! (`unshare(CLONE_NEWNET)`: the thread's sockets, the threads it starts and the processes it
//! spawns all live there), brings its loopback up, starts the origins and the proxy inside,
//! and has nftables redirect the connections of one user id (curl, run as that user) to the
//! proxy. The proxy runs as root, so its own connections to the origins are not redirected.
//! Nothing leaves the namespace's loopback. Needs root and `nft` (`.ci/run` installs it).

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::pki::ORIGIN_HOST;
use support::*;

/// The user curl runs as; only its connections are redirected.
const CLIENT_UID: u32 = 4242;

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl as [`CLIENT_UID`], no proxy configured: the body it got.
fn curl_as_client(args: &[&str]) -> Vec<u8> {
    let uid = format!("--reuid={CLIENT_UID}");
    let gid = format!("--regid={CLIENT_UID}");
    let mut all = vec![uid.as_str(), gid.as_str(), "--clear-groups", "curl", "-sS", "--max-time", "30", "--noproxy", "*"];
    all.extend_from_slice(args);
    let out = Command::new("setpriv").args(&all).output().expect("run curl through setpriv");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn transparent_mode_in_a_network_namespace() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (a network namespace and nftables)");
    let inside = std::thread::spawn(|| {
        // SAFETY: unshare only changes this thread's namespaces.
        let moved = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(moved, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        run("ip", &["link", "set", "lo", "up"], None);
        let pki = Pki::new();
        let plain = Origin::start();
        let tls = Origin::start_tls(&pki.valid);
        let proxy = Proxy::start_tls(&["--mode", "transparent", "--upstream-ca", pki.origin_ca_arg()]);
        let rules = format!(
            "table ip sansproxy_test {{\n\
               chain output {{\n\
                 type nat hook output priority -100; policy accept;\n\
                 meta skuid {CLIENT_UID} tcp dport {{ {}, {} }} redirect to :{}\n\
               }}\n\
             }}\n",
            plain.port(),
            tls.port(),
            proxy.port()
        );
        run("nft", &["-f", "-"], Some(&rules));
        // curl, run as another user, must be able to read the proxy's CA.
        let dir = TempDir::new("transparent-ca");
        let ca = dir.join("ca.pem");
        std::fs::copy(proxy.ca_cert(), &ca).expect("copy the CA");
        run("chmod", &["755", dir.path().to_str().unwrap()], None);
        run("chmod", &["644", ca.to_str().unwrap()], None);

        let body = curl_as_client(&[&plain.url("/big?n=3000000")]);
        assert!(body == pattern(0, 3_000_000), "plain HTTP differs ({} bytes)", body.len());
        let resolve = format!("{ORIGIN_HOST}:{}:127.0.0.1", tls.port());
        let body = curl_as_client(&["--resolve", &resolve, "--cacert", ca.to_str().unwrap(), &tls.url("/big?n=3000000")]);
        assert!(body == pattern(0, 3_000_000), "HTTPS differs ({} bytes)", body.len());
        // Both went through the proxy, HTTPS intercepted (curl trusted only the proxy's CA,
        // for the SNI), each to the address the client had connected to.
        let line = proxy.wait_stdout(Duration::from_secs(5), |l| l.contains(&format!("GET https://127.0.0.1:{}/big", tls.port())));
        assert!(line.is_some(), "{:?}", proxy.stdout_lines());
        let lines = proxy.stdout_lines();
        assert!(lines.iter().any(|l| l.contains(&format!("GET http://127.0.0.1:{}/big", plain.port()))), "{lines:?}");
        // A connection straight to the proxy, not redirected, would loop: refused.
        let out = Command::new("curl").args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{}/", proxy.port())]).output().unwrap();
        assert!(!out.status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !proxy.stderr_text().contains("is the proxy's own listener") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(proxy.stderr_text().contains("is the proxy's own listener: closing (a redirect loop?)"), "{}", proxy.stderr_text());
    });
    if let Err(panic) = inside.join() {
        std::panic::resume_unwind(panic);
    }
}
