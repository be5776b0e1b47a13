//! Plain HTTP/1.1 through the proxy with real clients: absolute-form requests, bodies,
//! keep-alive, streaming, the flow log and python's urllib.

use crate::support;

use std::time::{Duration, Instant};

use support::checks::{self, Via};
use support::*;

#[test]
fn get_returns_exact_body() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::get_hello(Via::Proxy(&proxy), &origin);
    // The proxy forwards origin-form, not the absolute-form it received.
    assert_eq!(origin.requests(), ["GET /hello"]);
}

#[test]
fn head_has_content_length_and_no_body() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::head_hello(Via::Proxy(&proxy), &origin);
}

#[test]
fn post_body_is_echoed_byte_exact() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::echo(Via::Proxy(&proxy), &origin, 5000);
}

#[test]
fn chunked_request_body_is_echoed() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::chunked_echo(Via::Proxy(&proxy), &origin);
}

#[test]
fn expect_100_continue_is_not_delayed() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::expect_continue(Via::Proxy(&proxy), &origin);
}

#[test]
fn request_headers_reach_origin() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::headers_reach_origin(Via::Proxy(&proxy), &origin);
}

#[test]
fn keep_alive_reuses_client_and_server_connections() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::keep_alive(Via::Proxy(&proxy), &origin);
}

#[test]
fn chunked_response_is_streamed_not_buffered() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::slow_chunks(Via::Proxy(&proxy), &origin);
}

/// A body big enough to be spliced, which the origin sends as a burst, then a small piece,
/// then nothing for a while. The burst raises the proxy's read mark; the small piece must
/// still reach the client at once, not when the rest comes.
#[test]
fn a_spliced_body_that_pauses_after_a_burst_is_not_held_back() {
    const BURST: usize = 2 << 20;
    const SMALL: usize = 1000;
    const TOTAL: usize = 4 << 20;
    const PAUSE: Duration = Duration::from_millis(1500);
    let server = TcpServer::start(|stream| {
        let mut w = Wire::new(stream);
        if let Ok(Some(_)) = w.read_head(64 * 1024) {
            let body = pattern(0, TOTAL);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n");
            let _ = w.write_all(head.as_bytes());
            let _ = w.write_all(&body[..BURST]);
            let _ = w.write_all(&body[BURST..BURST + SMALL]);
            std::thread::sleep(PAUSE);
            let _ = w.write_all(&body[BURST + SMALL..]);
        }
    });
    let proxy = Proxy::start(&["-q"]);

    let mut w = Wire::connect(proxy.port());
    let sent = Instant::now();
    w.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", server.url("/"), server.authority()));
    let mut check = PatternCheck::new();
    let mut before_pause = None;
    let head = w
        .read_response_with("GET", &mut |d| {
            check.feed(d);
            if before_pause.is_none() && check.len() >= (BURST + SMALL) as u64 {
                before_pause = Some(sent.elapsed());
            }
        })
        .unwrap();
    assert_eq!(head.status().ok(), Some(200), "{head:?}");
    assert_eq!((check.len(), check.mismatch()), (TOTAL as u64, None));
    let took = before_pause.unwrap();
    assert!(took < PAUSE - Duration::from_millis(500), "the piece before the pause took {took:?}");
}

#[test]
fn flow_log_has_a_line_per_request() {
    let origin = Origin::start();
    let proxy = Proxy::start(&[]);
    checks::get_hello(Via::Proxy(&proxy), &origin);

    let want = format!("GET {} -> 200 12b", origin.url("/hello"));
    let line = proxy
        .wait_stdout(Duration::from_secs(5), |l| l.contains(&want))
        .unwrap_or_else(|| {
            panic!(
                "no flow line containing {want:?}; stdout {:?}",
                proxy.stdout_lines()
            )
        });
    // CLIENT METHOD URL -> STATUS BYTESb DURATIONms (client VERSION, server VERSION)
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 11, "flow line {line:?}");
    assert_eq!(words[7..], ["(client", "HTTP/1.1,", "server", "HTTP/1.1)"], "flow line {line:?}");
    assert!(words[0].starts_with("127.0.0.1"), "client in {line:?}");
    assert_eq!(
        words[1..6],
        ["GET", &origin.url("/hello"), "->", "200", "12b"],
        "flow line {line:?}"
    );
    let ms = words[6]
        .strip_suffix("ms")
        .and_then(|n| n.parse::<f64>().ok());
    assert!(
        ms.is_some_and(|ms| (0.0..10_000.0).contains(&ms)),
        "duration in {line:?}"
    );
}

#[test]
fn quiet_flag_silences_flow_log() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::get_hello(Via::Proxy(&proxy), &origin);
    let line = proxy.wait_stdout(Duration::from_millis(500), |_| true);
    assert_eq!(line, None, "-q printed to stdout");
}

#[test]
fn python_urllib_through_proxy() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    checks::python(Via::Proxy(&proxy), &origin);
    assert_eq!(origin.requests(), ["GET /hello", "POST /echo"]);
}
