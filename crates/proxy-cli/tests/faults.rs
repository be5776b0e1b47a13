//! Faults through the binary: clients that leave mid-body, a server that resets mid-body, one
//! that never answers, a name that does not resolve, a refused connection. For each, the
//! other side gets a clear result (a status and a body naming the cause, or a cut connection
//! once the response had started), the flow log has exactly one error line for the flow,
//! and the proxy's descriptors come back to their count from before.

use crate::support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::resources::{assert_fds_return, open_fds};
use support::*;

/// How long leftovers may take to go.
const SETTLE: Duration = Duration::from_secs(5);

/// A proxy with its flow log on, and its descriptors once it is up.
fn proxy(extra: &[&str]) -> (Proxy, usize) {
    let mut args = vec!["--no-intercept"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args);
    let fds = open_fds(proxy.pid());
    (proxy, fds)
}

/// Waits for the flow log's line about `url`, which must be an error containing `cause`,
/// checks that it stays the only line about `url`, and returns it.
fn one_error_line(proxy: &Proxy, url: &str, cause: &str) -> String {
    let about = |l: &str| l.contains(&format!(" {url} -> "));
    let line = proxy
        .wait_stdout(Duration::from_secs(10), about)
        .unwrap_or_else(|| panic!("no flow line for {url}: {:?}", proxy.stdout_lines()));
    assert!(line.contains(" -> error: ") && line.contains(cause), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    let lines: Vec<_> = proxy.stdout_lines().into_iter().filter(|l| about(l)).collect();
    assert_eq!(lines.len(), 1, "more than one line for the flow: {lines:?}");
    line
}

/// Closes `stream` with a reset (`SO_LINGER` 0) rather than a FIN.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket and a `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// Reads and drops `n` bytes from `w`.
fn read_some(w: &mut Wire, n: usize) {
    let mut buf = vec![0; 64 * 1024];
    let mut left = n.saturating_sub(w.buffered().len());
    let mut stream = w.stream();
    while left > 0 {
        let k = stream.read(&mut buf).expect("reading the body");
        assert!(k > 0, "the proxy closed after {} of {n} bytes", n - left);
        left = left.saturating_sub(k);
    }
}

#[test]
fn client_leaving_mid_download_frees_the_upstream() {
    let origin = Origin::start();
    let (proxy, fds) = proxy(&[]);
    // Far more than the proxy could pass on in the time it has to settle.
    let url = origin.url(&format!("/big?n={}", 1u64 << 40));
    let mut w = proxy.connect();
    w.send(format!("GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.authority()));
    let head = w.read_head(64 * 1024).unwrap().expect("a response head");
    assert_eq!(head.status().unwrap(), 200, "{head:?}");
    read_some(&mut w, 4 << 20);
    drop(w);
    one_error_line(&proxy, &url, "client disconnected");
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

#[test]
fn client_leaving_mid_upload_frees_the_upstream() {
    let origin = Origin::start();
    let (proxy, fds) = proxy(&[]);
    let url = origin.url("/sink");
    let mut w = proxy.connect();
    w.send(format!("POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n", origin.authority(), 1u64 << 40));
    for _ in 0..64 {
        w.send(pattern(0, 64 * 1024));
    }
    drop(w);
    one_error_line(&proxy, &url, "client disconnected");
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

#[test]
fn server_resetting_mid_body_cuts_the_client_off() {
    // Promises 10 MB, sends 100 kB, resets. A server of its own: the shared ones keep a
    // second descriptor of each connection, which would turn the reset into a FIN.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("the proxy never connected: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = Wire::new(stream);
        w.read_head(64 * 1024).unwrap().expect("a request");
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
        out.extend_from_slice(&pattern(0, 100_000));
        w.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        reset(w.into_inner());
    });
    let (proxy, fds) = proxy(&[]);
    let url = format!("http://{authority}/reset");
    let out = proxy.curl().max_time(Duration::from_secs(10)).arg(&url).run();
    // curl 18: the transfer ended with bytes still to come.
    assert_eq!(out.code, Some(18), "{out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");
    assert!(out.body.len() <= 100_000 && out.body == pattern(0, out.body.len()), "{out}");
    server.join().expect("the resetting server failed");
    one_error_line(&proxy, &url, &authority);
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

#[test]
fn silent_server_is_504_after_the_idle_timeout() {
    let server = TcpServer::start(support::origin::never_answer);
    let (proxy, fds) = proxy(&["--server-idle-timeout", "0.5"]);
    let url = server.url("/silent");
    let start = Instant::now();
    let out = proxy.curl().max_time(Duration::from_secs(10)).arg(&url).run();
    let took = start.elapsed();
    out.assert_success();
    assert_eq!(out.status(), 504, "{out}");
    let cause = format!("{} sent nothing for 0.5 s", server.authority());
    assert!(out.text().contains(&cause), "{out}");
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "504 after {took:?}");
    one_error_line(&proxy, &url, &cause);
    drop(server);
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

/// A client that announces `len` body bytes, sends `sent` of them and goes quiet: the server,
/// waiting for the rest, is not blamed for its silence (its idle limit is shorter); the
/// client is, at the body timeout: a 408 naming the cause, then the connection closes.
fn stalled_upload_gets_408(len: usize, sent: usize) {
    let origin = Origin::start();
    let (proxy, fds) = proxy(&["--body-timeout", "0.8", "--server-idle-timeout", "0.3"]);
    let url = origin.url("/sink");
    let mut w = proxy.connect();
    let start = Instant::now();
    w.send(format!("POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n\r\n", origin.authority()));
    w.send(pattern(0, sent));
    let response = w.read_response("POST").expect("a response");
    let took = start.elapsed();
    assert_eq!(response.status, 408, "{response:?}");
    let cause = "client sent nothing of the request body for 0.8 s";
    assert!(response.text().contains(cause), "{response:?}");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "408 after {took:?}");
    let mut rest = Vec::new();
    w.stream().read_to_end(&mut rest).expect("the proxy closes");
    assert!(rest.is_empty(), "{rest:?}");
    drop(w);
    one_error_line(&proxy, &url, cause);
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

#[test]
fn stalled_upload_is_408_after_the_body_timeout() {
    stalled_upload_gets_408(100_000, 40_000);
}

#[test]
fn stalled_spliced_upload_is_408_after_the_body_timeout() {
    // A body big enough for the driver to splice: the server took every byte the client
    // sent, so the driver reports a forward waiting for the client, the one timed out.
    stalled_upload_gets_408(64 << 20, 4 << 20);
}

#[test]
fn unresolvable_name_is_502_naming_it() {
    let (proxy, fds) = proxy(&[]);
    let url = "http://nowhere.invalid/";
    let out = proxy.curl().arg(url).run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    assert!(out.text().contains("cannot connect to nowhere.invalid:80: "), "{out}");
    let line = one_error_line(&proxy, url, "cannot connect to nowhere.invalid:80: name resolution failed: ");
    // The URL and what could not be reached name the host; the resolver's failure does not.
    assert_eq!(line.matches("nowhere.invalid").count(), 2, "{line}");
    assert_fds_return(proxy.pid(), fds, SETTLE);
}

#[test]
fn refused_connection_is_502_naming_it() {
    let (proxy, fds) = proxy(&[]);
    let port = unused_port();
    let url = format!("http://127.0.0.1:{port}/");
    let out = proxy.curl().arg(&url).run();
    out.assert_success();
    assert_eq!(out.status(), 502, "{out}");
    assert!(out.text().contains(&format!("cannot connect to 127.0.0.1:{port}: connection refused")), "{out}");
    one_error_line(&proxy, &url, "refused");
    assert_fds_return(proxy.pid(), fds, SETTLE);
}
