//! CONNECT tunnels: curl's `--proxytunnel`, and raw HTTP spoken through a tunnel by hand.

use crate::support;

use std::time::Duration;

use support::*;

#[test]
fn curl_proxytunnel_fetches_through_connect() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    let out = proxy.curl().args(["-p", &origin.url("/hello")]).run();
    out.assert_success();
    let t = out.transfer();
    assert_eq!((t.connect_status, t.status), (200, 200), "{out}");
    assert_eq!(out.text(), HELLO, "{out}");
    assert_eq!(origin.requests(), ["GET /hello"]);
}

#[test]
fn raw_connect_tunnel_carries_http() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["-q"]);
    let a = origin.authority();
    let mut w = proxy.connect();
    w.send(format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n"));
    let r = w.read_response("CONNECT").expect("CONNECT response");
    assert!(r.head.start.starts_with("HTTP/1.1 200"), "{r:?}");
    assert!(
        w.buffered().is_empty(),
        "bytes after the CONNECT response: {:?}",
        w.buffered()
    );

    w.send(format!("GET /hello HTTP/1.1\r\nHost: {a}\r\n\r\n"));
    let r = w.read_response("GET").expect("response through the tunnel");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO), "{r:?}");

    let body = pattern(0, 10_000);
    w.send(format!(
        "POST /echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    w.send(&body);
    let r = w.read_response("POST").expect("echo through the tunnel");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body == body, "echo through the tunnel differs");

    // The origin closing its end closes the tunnel.
    w.send(format!(
        "GET /hello HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
    ));
    let r = w
        .read_response("GET")
        .expect("last response through the tunnel");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO), "{r:?}");
    w.expect_closed(Duration::from_secs(5));

    assert_eq!(origin.connections(), 1);
    assert_eq!(
        origin.requests(),
        ["GET /hello", "POST /echo", "GET /hello"]
    );
}
