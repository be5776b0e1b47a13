//! WebSocket through the proxy with real peers: Python's `websockets` and Node's `ws`, as
//! clients and origins (`support/ws`), over loopback. ws:// in the explicit proxy's own form
//! and through CONNECT, wss:// intercepted, reverse mode to a ws origin; byte-exact echo,
//! close codes that reach the origin, messages not batched, a 64 MiB message and a slow
//! reader with the proxy's memory bounded.

mod support;

use std::time::Duration;

use support::pki::ORIGIN_HOST;
use support::resources::rss_kib;
use support::ws::{node_client, python_client, WsServer};
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// The proxy's peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Run a Python client check and require `ok`.
fn python_ok(args: &[&str]) -> String {
    let (run, out) = python_client(args, LIMIT, &mut |_| {});
    assert_eq!(run.code, Some(0), "client {args:?} failed: {out}\n{}", run.stderr);
    assert!(out.contains("ok"), "client {args:?}: {out}");
    out
}

/// The origin saw the client's close frame: code 4001 and the client's reason.
fn origin_saw_close(origin: &WsServer, reason: &str) -> String {
    let line = origin.wait_line("4001", Duration::from_secs(10));
    let line = line.unwrap_or_else(|| panic!("the origin saw no close 4001; it printed {:?}", origin.lines()));
    assert!(line.contains(reason), "{line}");
    line
}

/// Python's `websockets` offers `permessage-deflate` and accepts it: the proxy passes the
/// offer on, and each side compresses with the proxy.
fn compressed(origin_line: &str) {
    assert!(origin_line.contains("permessage-deflate"), "not negotiated: {origin_line}");
}

/// The proxy parsed the WebSocket (rather than tunnelling it): its flow log has the 101 and the
/// end line with the close code and message counts.
fn proxy_logged(proxy: &Proxy, counts: &str) {
    let end = proxy.wait_stdout(Duration::from_secs(10), |l| l.contains("websocket #") && l.contains("closed by client: 4001"));
    let end = end.unwrap_or_else(|| panic!("no WebSocket end line; stdout: {:?}", proxy.stdout_lines()));
    assert!(end.contains(counts), "{end}");
    assert!(proxy.stdout_lines().iter().any(|l| l.contains("-> 101 websocket #")), "{:?}", proxy.stdout_lines());
}

#[test]
fn python_echo_in_the_explicit_proxy_form() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    python_ok(&["explicit", &url, &proxy.url(), "-"]);
    let line = origin_saw_close(&origin, "client says bye");
    assert!(line.contains("\"extensions\": []"), "the explicit client offers no extension: {line}");
    proxy_logged(&proxy, "messages 12 -> 12 <-");
}

#[test]
fn python_echo_through_connect() {
    // With interception on, the plain HTTP inside the CONNECT is parsed, and the upgrade in it
    // becomes the WebSocket layer.
    let origin = WsServer::python(None);
    let proxy = Proxy::start_tls(&[]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    python_ok(&["echo", &url, &proxy.url(), "-"]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn python_wss_intercepted() {
    let pki = Pki::new();
    let origin = WsServer::python(Some((&pki.valid.cert_pem, &pki.valid.key_pem)));
    let proxy = Proxy::start_tls(&["--upstream-ca", pki.origin_ca_arg()]);
    let url = format!("wss://{ORIGIN_HOST}:{}", origin.port());
    let ca = proxy.ca_cert_arg();
    python_ok(&["echo", &url, &proxy.url(), &ca]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn python_reverse_mode_to_a_ws_origin() {
    let origin = WsServer::python(None);
    let target = format!("http://127.0.0.1:{}", origin.port());
    let proxy = Proxy::start(&["--mode", &format!("reverse:{target}"), "--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", proxy.port());
    python_ok(&["echo", &url, "-", "-"]);
    compressed(&origin_saw_close(&origin, "client says bye"));
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn node_echo_through_connect_intercepted() {
    let origin = WsServer::node();
    let proxy = Proxy::start_tls(&[]);
    let url = format!("ws://127.0.0.1:{}/chat", origin.port());
    let (run, out) = node_client(&[&url, &proxy.url()], LIMIT);
    assert_eq!(run.code, Some(0), "node client failed: {out}\n{}", run.stderr);
    assert!(out.contains("ok"), "{out}");
    origin_saw_close(&origin, "node says bye");
    proxy_logged(&proxy, "messages 110 -> 110 <-");
}

#[test]
fn messages_sent_apart_arrive_apart() {
    let origin = WsServer::python(None);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    // Streaming, and held whole for the per-message log of -v.
    for args in [&["--no-intercept"][..], &["--no-intercept", "-v"]] {
        let proxy = Proxy::start(args);
        let out = python_ok(&["spread", &url, &proxy.url(), "-"]);
        eprintln!("{args:?}: {out}");
    }
}

#[test]
fn a_64_mib_message_passes_with_bounded_memory() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    let out = python_ok(&["big", &url, &proxy.url(), "-", "64"]);
    let peak = peak_rss_kib(proxy.pid());
    eprintln!("{out} proxy peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "the proxy's peak RSS was {peak} KiB for a 64 MiB message");
}

#[test]
fn a_slow_reader_holds_back_a_fast_writer() {
    let origin = WsServer::python(None);
    let proxy = Proxy::start(&["--no-intercept"]);
    let url = format!("ws://127.0.0.1:{}", origin.port());
    let pid = proxy.pid();
    let mut during = Vec::new();
    let (run, out) = python_client(&["slow", &url, &proxy.url(), "-", "256"], LIMIT, &mut |line| {
        if line == "stalled" {
            // The client reads nothing for 3 s while the origin tries to send 256 MiB.
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(500));
                during.push(rss_kib(pid));
            }
        }
    });
    assert_eq!(run.code, Some(0), "slow client failed: {out}\n{}", run.stderr);
    let peak = peak_rss_kib(pid);
    eprintln!("{out} proxy RSS while stalled {during:?} KiB, peak {peak} KiB");
    assert_eq!(during.len(), 5, "{out}");
    // Once the buffers between are full, the stalled proxy does not grow.
    assert!(during[4] <= during[1] + 1024, "the proxy grew while its reader stalled: {during:?} KiB");
    assert!(peak < 64 * 1024, "the proxy's peak RSS was {peak} KiB");
}
