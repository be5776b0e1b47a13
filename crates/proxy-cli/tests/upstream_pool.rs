//! Upstream connections outlive their client connections: short clients of a reverse proxy
//! (one request each, `Connection: close`) reach the backend over a handful of connections,
//! plain and TLS, and `--no-server-reuse` turns it off.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// `n` client connections one after the other, each one `GET /hello` with `Connection: close`,
/// each answered in full.
fn short_clients(port: u16, n: usize) {
    for i in 0..n {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(b"GET /hello HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).expect("the whole answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with(HELLO), "client {i}: {answer:?}");
    }
}

#[test]
fn short_clients_share_few_upstream_connections() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--reverse", &origin.url("")]);
    short_clients(proxy.port(), 200);
    let used = origin.connections();
    assert!(used <= 10, "200 short clients took {used} upstream connections");
}

#[test]
fn short_clients_of_three_balanced_backends_share_few_upstream_connections() {
    let origins = [Origin::start(), Origin::start(), Origin::start()];
    let urls: Vec<String> = origins.iter().map(|o| o.url("")).collect();
    let proxy = Proxy::start(&["--reverse", &urls[0], "--reverse", &urls[1], "--reverse", &urls[2]]);
    short_clients(proxy.port(), 200);
    let used: Vec<usize> = origins.iter().map(Origin::connections).collect();
    assert!(used.iter().sum::<usize>() <= 10, "200 short clients took {used:?} upstream connections");
    let served: Vec<usize> = origins.iter().map(|o| o.requests().len()).collect();
    assert!(served.iter().all(|n| n.abs_diff(67) <= 2), "round robin over three: {served:?}");
}

#[test]
fn short_clients_share_few_tls_upstream_connections() {
    let pki = Pki::new();
    let origin = Origin::start_tls(&pki.valid);
    let proxy = Proxy::start_tls(&["--reverse", &origin.url(""), "--upstream-ca", pki.origin_ca_arg()]);
    short_clients(proxy.port(), 200);
    let used = origin.connections();
    assert!(used <= 10, "200 short clients took {used} TLS upstream connections");
}

#[test]
fn without_reuse_each_client_opens_its_own() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--reverse", &origin.url(""), "--no-server-reuse"]);
    short_clients(proxy.port(), 20);
    assert_eq!(origin.connections(), 20);
}

#[test]
fn a_parked_connection_the_server_closed_is_not_used() {
    // A backend that answers one request and then closes its end 100 ms later: the proxy
    // keeps its connections 4 s, so the next client finds the parked one dead. It gets a new
    // connection, not an error.
    let backend = TcpServer::start(|mut tcp: TcpStream| {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = tcp.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{HELLO}", HELLO.len()).as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    });
    let proxy = Proxy::start(&["--reverse", &backend.url("")]);
    short_clients(proxy.port(), 1);
    std::thread::sleep(Duration::from_millis(400));
    short_clients(proxy.port(), 1);
    assert_eq!(backend.connections(), 2, "a new connection after the parked one closed");
}
