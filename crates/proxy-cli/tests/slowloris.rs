//! Slowloris: a thousand clients trickling their request heads a byte at a time do not keep a
//! normal client from being served promptly, and the head timeout cuts each of them off with
//! a 408, after which the proxy holds no more descriptors than before they came. The same for
//! request bodies trickled below a reverse proxy's least body rate.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::resources::{assert_fds_return, open_fds, raise_fd_limit};
use support::*;

/// Slow clients, when the descriptor limit allows (each costs one here and one in the proxy).
const CLIENTS: usize = 1000;
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a slow client sends its next byte: often enough that, were trickling to push
/// the deadline back, none would ever be cut off.
const TRICKLE: Duration = Duration::from_secs(1);
/// How long a normal request may take while the slow clients are connected.
const PROMPT: Duration = Duration::from_secs(1);

struct Slow {
    stream: TcpStream,
    sent: usize,
    next: Instant,
    got: Vec<u8>,
    closed: bool,
}

#[test]
fn slow_head_clients_are_cut_off_and_starve_nobody() {
    let limit = raise_fd_limit(FDS_FOR_BOTH);
    let clients = CLIENTS.min(limit.saturating_sub(256 + 4 * BODY_CLIENTS) / 2);
    assert!(clients >= 200, "a descriptor limit of {limit} leaves room for {clients} slow clients");

    let origin = Origin::start();
    let proxy = Proxy::start(&["-q", "--no-intercept", "--head-timeout", "2"]);
    let pid = proxy.pid();
    let baseline = open_fds(pid);
    let head = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority());

    // Every slow client connects and sends its first byte; the next ones are spread over the
    // trickle period.
    let start = Instant::now();
    let mut slow: Vec<Slow> = (0..clients)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
            stream.write_all(&head.as_bytes()[..1]).expect("first byte");
            stream.set_nonblocking(true).expect("nonblocking");
            let next = Instant::now() + TRICKLE.mul_f64(i as f64 / clients as f64);
            Slow { stream, sent: 1, next, got: Vec::new(), closed: false }
        })
        .collect();
    let connected = start.elapsed();

    // Meanwhile a normal client: fresh connections, one request each.
    let (tx, rx) = mpsc::channel();
    let normal = {
        let (port, path) = (proxy.port(), origin.url("/hello"));
        let authority = origin.authority();
        thread::spawn(move || {
            for _ in 0..5 {
                let begun = Instant::now();
                let mut w = Wire::connect(port);
                w.send(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"));
                let r = w.read_response("GET").expect("normal request");
                assert_eq!((r.status, r.text().as_str()), (200, HELLO));
                tx.send(begun.elapsed()).unwrap();
                thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let mut peak = 0;
    let give_up = start + connected + HEAD_TIMEOUT + Duration::from_secs(8);
    let mut buf = [0u8; 1024];
    while slow.iter().any(|s| !s.closed) && Instant::now() < give_up {
        peak = peak.max(open_fds(pid));
        let now = Instant::now();
        for s in slow.iter_mut().filter(|s| !s.closed) {
            // The head is never finished: the last byte stays unsent.
            if now >= s.next && s.sent < head.len() - 1 {
                match s.stream.write(&head.as_bytes()[s.sent..s.sent + 1]) {
                    Ok(_) => s.sent += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The proxy has given up on it; what it said is still to be read.
                    Err(_) => s.sent = head.len(),
                }
                s.next = now + TRICKLE;
            }
            loop {
                match s.stream.read(&mut buf) {
                    Ok(0) => {
                        s.closed = true;
                        break;
                    }
                    Ok(n) => s.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        s.closed = true;
                        break;
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let cut_after = start.elapsed();
    normal.join().expect("the normal client failed");
    let latencies: Vec<Duration> = rx.try_iter().collect();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{clients} slow clients connected in {connected:?}, all cut off after {cut_after:?}; \
         proxy descriptors {baseline} before, {peak} at peak; normal requests took {latencies:?}"
    );

    assert_eq!(latencies.len(), 5);
    assert!(worst < PROMPT, "a normal request took {worst:?} beside {clients} slow clients");
    let open = slow.iter().filter(|s| !s.closed).count();
    assert_eq!(open, 0, "{open} slow clients still connected after {cut_after:?}");
    let answered = slow.iter().filter(|s| s.got.starts_with(b"HTTP/1.1 408 ")).count();
    let example = String::from_utf8_lossy(&slow[0].got).into_owned();
    assert_eq!(answered, clients, "not every slow client got a 408; the first got {example:?}");
    assert!(example.contains("request head not complete after 2 s"), "{example:?}");
    // Each was cut off by its own deadline, counted from its first byte.
    assert!(cut_after >= HEAD_TIMEOUT, "cut off after {cut_after:?}, before the head timeout");
    assert!(peak >= baseline + clients / 2, "the slow clients never held the proxy's sockets: peak {peak}");

    drop(slow);
    assert_fds_return(pid, baseline, Duration::from_secs(5));
    // And it still serves.
    checks::get_hello(support::checks::Via::Proxy(&proxy), &origin);
}

/// Slow-body clients: each sends its request head whole, then a byte of its body every
/// 200 ms.
const BODY_CLIENTS: usize = 500;

/// Descriptors this process needs with both tests running at once (they share it): each
/// slow-head client one, each slow-body client four (its socket, the backend's end and the
/// backend's clone of it, and slack), and some to spare. Raising only to one test's need
/// had the other's accepts fail now and then.
const FDS_FOR_BOTH: usize = 2 * CLIENTS + 4 * BODY_CLIENTS + 256;

#[test]
fn slow_body_clients_of_a_reverse_proxy_get_408_and_free_their_upstreams() {
    let limit = raise_fd_limit(FDS_FOR_BOTH);
    let clients = BODY_CLIENTS.min(limit.saturating_sub(256 + 2 * CLIENTS) / 4);
    assert!(clients >= 100, "a descriptor limit of {limit} leaves room for {clients} slow clients");
    // A backend that reads whatever comes and never answers: only the proxy ends these.
    let origin = TcpServer::start(|mut tcp: TcpStream| {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    // Reverse mode's least body rate (500 bytes/s) is on by default; checked every second here.
    let proxy = Proxy::start(&["-q", "--reverse", &origin.url(""), "--body-rate-window", "1"]);
    let baseline = open_fds(proxy.pid());
    let head = format!("POST /sink HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\nx", origin.authority());
    let start = Instant::now();
    let mut slow: Vec<Option<TcpStream>> = (0..clients)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
            stream.write_all(head.as_bytes()).expect("head");
            Some(stream)
        })
        .collect();
    // Trickle for three seconds: each check finds a few bytes where 500 a second are owed.
    let mut answers = vec![Vec::new(); clients];
    while start.elapsed() < Duration::from_secs(3) {
        for (client, answer) in slow.iter_mut().zip(&mut answers) {
            let Some(stream) = client else { continue };
            // A client that has its answer stops sending (were it to go on, its writes after
            // the proxy's close could reset the connection before the answer is read).
            if answer.is_empty() && stream.write_all(b"x").is_err() {
                *client = None;
                continue;
            }
            stream.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            let open = match stream.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    true
                }
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            };
            stream.set_nonblocking(false).unwrap();
            if !open {
                *client = None;
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    // What is still to be read.
    for (client, answer) in slow.iter_mut().zip(&mut answers) {
        if let Some(stream) = client.take() {
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            let _ = (&stream).read_to_end(&mut rest);
            answer.extend_from_slice(&rest);
        }
    }
    let cut = answers
        .iter()
        .filter(|a| {
            let a = String::from_utf8_lossy(a);
            a.starts_with("HTTP/1.1 408 Request Timeout\r\n") && a.contains("below the minimum of 500 bytes/s")
        })
        .count();
    let other = answers.iter().find(|a| !String::from_utf8_lossy(a).starts_with("HTTP/1.1 408 "));
    assert_eq!(cut, clients, "{cut} of {clients} slow clients got their 408; another answer: {:?}", other.map(|a| String::from_utf8_lossy(a)));
    // Every upstream connection they held is gone again, and a normal upload goes through.
    assert_fds_return(proxy.pid(), baseline, Duration::from_secs(10));
    let sink = Origin::start();
    let normal = Proxy::start(&["-q", "--reverse", &sink.url(""), "--body-rate-window", "1"]);
    let out = Curl::new().args(["--data-binary", "@-", &format!("{}/sink", normal.url())]).stdin(|w| w.write_all(&[7u8; 200_000])).run();
    out.assert_success();
}
