//! `--max-connections N`: as `--help` says, at most N clients are served at once and the
//! others wait, connected, in the listen backlog until one of the N ends; none is refused or
//! dropped, a client that gives up while waiting costs nothing, and the proxy serves on.

use crate::support;

use std::io::ErrorKind;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::resources::{assert_fds_return, open_fds, raise_fd_limit};
use support::*;

const MAX: usize = 4;
/// Clients at once in the burst: more than the usual listen backlog of 128.
const BURST: usize = 300;

/// A keep-alive `GET /hello` on `w`.
fn hello(origin: &Origin) -> String {
    format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority())
}

/// Whether a response arrives on `w` within `within`; it must be the hello.
fn answered(w: &mut Wire, within: Duration) -> bool {
    w.stream().set_read_timeout(Some(within)).unwrap();
    let got = match w.read_response("GET") {
        Ok(r) => {
            assert_eq!((r.status, r.text().as_str()), (200, HELLO), "{r:?}");
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("a waiting client lost its connection: {e}"),
    };
    w.stream().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    got
}

#[test]
fn clients_beyond_the_limit_wait_their_turn() {
    let origin = Origin::start();
    let max = MAX.to_string();
    let proxy = Proxy::start(&["-q", "--no-intercept", "--max-connections", &max]);
    let pid = proxy.pid();
    let baseline = open_fds(pid);

    // N clients are served and stay connected.
    let mut served: Vec<Wire> = (0..MAX).map(|_| proxy.connect()).collect();
    for w in &mut served {
        w.send(hello(&origin));
        assert!(answered(w, Duration::from_secs(5)), "one of the first {MAX} clients was not served");
    }
    // Three more connect (the kernel completes the handshake) and ask, but are not served.
    let mut waiting: Vec<Wire> = (0..3).map(|_| proxy.connect()).collect();
    for w in &mut waiting {
        w.send(hello(&origin));
    }
    for w in &mut waiting {
        assert!(!answered(w, Duration::from_millis(300)), "a client beyond the limit was served");
    }
    // The proxy holds sockets for N clients (and their upstreams), not for the others.
    let held = open_fds(pid);
    assert!(held <= baseline + 2 * MAX, "{held} descriptors with {MAX} clients served, {baseline} before");
    // One waiting client gives up.
    drop(waiting.pop());

    // Two of the served leave: the two waiting clients take their places, in turn.
    served.truncate(MAX - 2);
    for w in &mut waiting {
        assert!(answered(w, Duration::from_secs(5)), "a waiting client was not served when a place came free");
    }
    // Waiting clients that got their turn are served like any other.
    for w in served.iter_mut().chain(&mut waiting) {
        w.send(hello(&origin));
        assert!(answered(w, Duration::from_secs(5)));
    }
    drop(served);
    drop(waiting);
    assert_fds_return(pid, baseline, Duration::from_secs(5));
}

#[test]
fn a_burst_far_beyond_the_limit_is_served_in_turns() {
    raise_fd_limit(4 * BURST + 256);
    let origin = Origin::start();
    let max = MAX.to_string();
    let proxy = Proxy::start(&["-q", "--no-intercept", "--max-connections", &max]);
    let pid = proxy.pid();
    let baseline = open_fds(pid);

    // Clients at once, one request each on a connection of its own. Each is connected at
    // once (the backlog holds them all; a full one would leave some retrying their SYN for a
    // second or more), then waits for its turn.
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let clients: Vec<_> = (0..BURST)
        .map(|_| {
            let (tx, port, request) = (tx.clone(), proxy.port(), hello(&origin));
            let request = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
            thread::spawn(move || {
                let begun = Instant::now();
                let mut w = Wire::connect(port);
                let connected = begun.elapsed();
                w.send(request);
                let r = w.read_response("GET").expect("a client of the burst got no response");
                tx.send((connected, r.status, r.text())).unwrap();
            })
        })
        .collect();
    let mut most = 0;
    while clients.iter().any(|c| !c.is_finished()) && start.elapsed() < Duration::from_secs(30) {
        most = most.max(open_fds(pid));
        thread::sleep(Duration::from_millis(2));
    }
    for c in clients {
        c.join().expect("a client of the burst failed");
    }
    drop(tx);
    let answers: Vec<_> = rx.iter().collect();
    let slowest = answers.iter().map(|a| a.0).max().unwrap_or_default();
    println!("{BURST} clients served {MAX} at a time in {:?}; slowest connect {slowest:?}", start.elapsed());
    assert_eq!(answers.len(), BURST);
    assert!(answers.iter().all(|(_, s, t)| *s == 200 && t == HELLO), "{answers:?}");
    assert!(slowest < Duration::from_millis(900), "a client waited {slowest:?} to connect: the backlog overflowed");
    assert!(most <= baseline + 2 * MAX, "{most} descriptors at most, {baseline} before: more than {MAX} clients at once");

    assert_fds_return(pid, baseline, Duration::from_secs(5));
    checks::get_hello(checks::Via::Proxy(&proxy), &origin);
}
