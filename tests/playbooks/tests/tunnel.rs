//! Connections that stop being HTTP: `CONNECT` tunnels and `101 Switching Protocols`.

use playbooks::*;

const CONNECT_A: &str = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
const ESTABLISHED: &str = "HTTP/1.1 200 Connection established\r\n\r\n";

#[test]
fn connect_tunnel_carries_bytes_both_ways() {
    Playbook::new(no_hooks())
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .recv(CLIENT, "\x16\x03\x01 client hello")
        .expect(send(S1, "\x16\x03\x01 client hello"))
        .recv(S1, "\x16\x03\x03 server hello")
        .expect(send(CLIENT, "\x16\x03\x03 server hello"))
        // The client is done sending: the server hears it, the other way stays open.
        .closed(CLIENT)
        .expect(half_close(S1))
        .recv(S1, "last words")
        .expect(send(CLIENT, "last words"))
        .closed(S1)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run_split();
}

#[test]
fn connect_tunnel_server_closes_first() {
    Playbook::new(no_hooks())
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .closed(S1)
        .expect(half_close(CLIENT))
        .recv(CLIENT, "late")
        .expect(send(S1, "late"))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run();
}

#[test]
fn connect_bytes_sent_early_reach_the_server() {
    // A client may send its first bytes right behind the CONNECT, before the 200.
    Playbook::new(no_hooks())
        .recv(CLIENT, format!("{CONNECT_A}early"))
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .expect(send(S1, "early"))
        .run_split();
}

#[test]
fn connect_with_hook() {
    Playbook::new(http_proxy())
        .recv(CLIENT, CONNECT_A)
        .expect(hook(F1, HookKind::HttpConnect).inspect(|f| {
            assert_eq!(f.request.method, "CONNECT");
            assert_eq!(f.request.url(), "a.test:443");
        }))
        .expect(pause(CLIENT))
        .update(F1, |f| f.request.port = 8443)
        .expect(open(S1, "a.test:8443"))
        .expect(resume(CLIENT))
        .opened(S1)
        // The tunnel is the response: the hook watches it, nothing waits for it.
        .expect(hook(F1, HookKind::Response).inspect(|f| {
            assert_eq!(f.response.as_ref().unwrap().status, 200);
        }))
        .expect(send(CLIENT, ESTABLISHED))
        .recv(CLIENT, "hello")
        .expect(send(S1, "hello"))
        .run();
}

#[test]
fn connect_refused_by_hook() {
    Playbook::new(http_proxy())
        .recv(CLIENT, CONNECT_A)
        .expect(hook(F1, HookKind::HttpConnect))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Respond(Response::text(403, "no")))
        .expect(send(
            CLIENT,
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\nno",
        ))
        .expect(resume(CLIENT))
        .run();
}

#[test]
fn connect_failed_is_502() {
    Playbook::new(no_hooks())
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .open_failed(S1, OpenError::Refused)
        .expect(log("cannot connect to a.test:443: connection refused"))
        .expect(send(
            CLIENT,
            proxy_error(502, "Bad Gateway", "cannot connect to a.test:443: connection refused", false),
        ))
        .run();
}

#[test]
fn upgrade_becomes_a_tunnel_after_101() {
    // A protocol other than WebSocket (which has a layer of its own: tests/websocket.rs).
    Playbook::new(no_hooks())
        .recv(
            CLIENT,
            "GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\
             X-Key: k\r\n\r\n",
        )
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(
            S1,
            "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: x-raw\r\nX-Key: k\r\nconnection: Upgrade\r\n\r\n",
        ))
        .recv(
            S1,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\
              X-Accept: a\r\n\r\n\x81\x02hi",
        )
        // What the server sent behind its 101 belongs to the new protocol.
        .expect(send(
            CLIENT,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\nX-Accept: a\r\n\
              connection: Upgrade\r\n\r\n\x81\x02hi",
        ))
        .recv(CLIENT, b"\x81\x82mask")
        .expect(send(S1, b"\x81\x82mask"))
        .closed(S1)
        .expect(half_close(CLIENT))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run_split();
}

#[test]
fn upgrade_declined_stays_http() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nconnection: Upgrade\r\n\r\n"))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .expect(send(S1, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        .run();
}

#[test]
fn tunnel_backpressure() {
    Playbook::new(Config { high_water: 10, ..no_hooks() })
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        // The 200 alone is past the mark: the server is not read until the client drains.
        .expect(send(CLIENT, ESTABLISHED))
        .expect(pause(S1))
        .drained(CLIENT)
        .expect(resume(S1))
        .recv(S1, "0123456789")
        .expect(send(CLIENT, "0123456789"))
        .recv(S1, "x")
        .expect(send(CLIENT, "x"))
        .expect(pause(S1))
        .recv(CLIENT, "up")
        .expect(send(S1, "up"))
        .drained(CLIENT)
        .expect(resume(S1))
        .run();
}

#[test]
fn connect_client_closing_before_the_server_is_up() {
    Playbook::new(no_hooks())
        .recv(CLIENT, format!("{CONNECT_A}bye"))
        .expect(open(S1, "a.test:443"))
        .closed(CLIENT)
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .expect(send(S1, "bye"))
        .expect(resume(CLIENT))
        .expect(half_close(S1))
        .recv(S1, "reply")
        .expect(send(CLIENT, "reply"))
        .closed(S1)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run();
}

#[test]
fn tunnel_backpressure_both_ways() {
    // Both peers read slowly: each direction must pause its sender on its own.
    Playbook::new(Config { high_water: 10, ..no_hooks() })
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .expect(pause(S1))
        .drained(CLIENT)
        .expect(resume(S1))
        .recv(S1, "downloading")
        .expect(send(CLIENT, "downloading"))
        .expect(pause(S1))
        .recv(CLIENT, "uploading..")
        .expect(send(S1, "uploading.."))
        .expect(pause(CLIENT))
        // The client drained: the server may be read again, but the client stays paused
        // until the server drains too.
        .drained(CLIENT)
        .expect(resume(S1))
        .drained(S1)
        .expect(resume(CLIENT))
        .run();
}
