//! One layer at a time: the HTTP layer and the tunnel driven alone, with no mode in front of
//! them and nothing behind them, as mitmproxy's playbooks test a layer in isolation. What a
//! layer hands over shows as a debug log line, so the seam between layers is tested here too.

use playbooks::*;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
const OK_HI: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const CONNECT_A: &str = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n";
const ESTABLISHED: &str = "HTTP/1.1 200 Connection established\r\n\r\n";

#[test]
fn the_http_layer_alone_serves_a_request() {
    // Every hook is asked for, yet the first one is the request's: admitting the client is
    // the mode's job, and there is no mode.
    Playbook::alone(Alone::Http, Config::default())
        .recv(CLIENT, GET_A)
        .expect(hook(F1, HookKind::RequestHeaders))
        .expect(pause(CLIENT))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Request))
        .reply(F1, HookReply::Continue)
        .expect(open(S1, "a.test:80"))
        .expect(resume(CLIENT))
        .opened(S1)
        .expect(hook(F2, HookKind::ServerConnected))
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(hook(F1, HookKind::ResponseHeaders))
        .expect(pause(CLIENT))
        .expect(pause(S1))
        .reply(F1, HookReply::Continue)
        .expect(hook(F1, HookKind::Response))
        .expect(send(CLIENT, OK_HI))
        .expect(resume(CLIENT))
        .expect(resume(S1))
        .run();
}

#[test]
fn the_http_layer_alone_keeps_its_connection_between_requests() {
    Playbook::alone(Alone::Http, no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .recv(CLIENT, GET_A)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .closed(CLIENT)
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

#[test]
fn a_connect_is_handed_over_with_what_came_behind_it() {
    // The tunnel is the next layer's business; alone, the HTTP layer's part ends with the
    // 200 and the hand-over, which carries the bytes the client sent early.
    Playbook::alone(Alone::Http, no_hooks())
        .recv(CLIENT, format!("{CONNECT_A}early"))
        .expect(open(S1, "a.test:443"))
        .opened(S1)
        .expect(send(CLIENT, ESTABLISHED))
        .expect(log_at(
            LogLevel::Debug,
            "hand-over (CONNECT): server connection 1 to a.test:443, 5 bytes from the client, 0 from the server",
        ))
        .run();
}

#[test]
fn a_101_is_handed_over_with_the_new_protocol_s_first_bytes() {
    // The seam the WebSocket layer will sit on: the 101 goes to the client, the frame the
    // server sent behind it goes with the hand-over.
    Playbook::alone(Alone::Http, no_hooks())
        .recv(
            CLIENT,
            "GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: k\r\n\r\n",
        )
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(
            S1,
            "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nconnection: Upgrade\r\n\r\n",
        ))
        .recv(
            S1,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Accept: a\r\n\r\n\x81\x02hi",
        )
        .expect(send(
            CLIENT,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\
              connection: Upgrade\r\n\r\n",
        ))
        .expect(log_at(
            LogLevel::Debug,
            "hand-over (101): server connection 1 to a.test:80, 0 bytes from the client, 4 from the server",
        ))
        // The HTTP layer is done: what follows is the next layer's, and there is none.
        .recv(CLIENT, b"\x81\x82mask")
        .expect_not_finished()
        .run();
}

#[test]
fn a_refused_connect_hands_nothing_over() {
    Playbook::alone(Alone::Http, no_hooks())
        .recv(CLIENT, CONNECT_A)
        .expect(open(S1, "a.test:443"))
        .open_failed(S1, OpenError::Refused)
        .expect(send(
            CLIENT,
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 62\r\n\r\n\
             bad gateway: cannot connect to a.test:443: connection refused\n",
        ))
        .expect(log("cannot connect to a.test:443: connection refused"))
        .run();
}

#[test]
fn the_tunnel_alone_opens_its_server_and_carries_bytes_both_ways() {
    let server = ServerAddr::new("b.test", 7000);
    Playbook::alone(Alone::Tunnel { server }, no_hooks())
        .expect(open(S1, "b.test:7000"))
        .expect(pause(CLIENT))
        .opened(S1)
        .expect(resume(CLIENT))
        .recv(S1, "from the server")
        .expect(send(CLIENT, "from the server"))
        .recv(CLIENT, "from the client")
        .expect(send(S1, "from the client"))
        // Half-closes pass through, one direction at a time.
        .closed(S1)
        .expect(half_close(CLIENT))
        .recv(CLIENT, "last words")
        .expect(send(S1, "last words"))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect(close(S1))
        .expect_finished()
        .run_split();
}

#[test]
fn the_tunnel_alone_closes_the_client_when_its_server_cannot_be_reached() {
    let server = ServerAddr::new("b.test", 7000);
    Playbook::alone(Alone::Tunnel { server }, no_hooks())
        .expect(open(S1, "b.test:7000"))
        .expect(pause(CLIENT))
        .open_failed(S1, OpenError::Refused)
        .expect(log("cannot connect to b.test:7000: connection refused"))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}
