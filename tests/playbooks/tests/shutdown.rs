//! A graceful shutdown (`Event::Shutdown`): nothing is kept alive past what is in progress.
//! An idle HTTP/1 client connection closes at once, one with a request in flight after its
//! response (saying `Connection: close` if its head has not gone yet), and an HTTP/2 one gets
//! a GOAWAY and closes once its streams are done.

use std::time::Duration;

use playbooks::h2::*;
use playbooks::pump::{Origins, Peer, Pump};
use playbooks::*;

const GET_A: &str = "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
const GET_A_UP: &str = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
const OK_HI: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn an_idle_http1_client_is_closed_at_once() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, OK_HI))
        .expect_timeout(Some(Duration::from_secs(120)))
        // Between requests: no waiting for the idle timeout.
        .shutdown()
        .expect(close(S1))
        .expect(close(CLIENT))
        .expect_finished()
        .run();
}

#[test]
fn a_client_that_never_spoke_is_closed_at_once() {
    Playbook::new(no_hooks()).shutdown().expect(close(CLIENT)).expect_finished().run();
}

#[test]
fn a_request_in_flight_gets_its_response_with_connection_close() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .shutdown()
        .expect_not_finished()
        .recv(S1, OK_HI)
        // The client learns that the connection ends with this response, and it does.
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .closed(CLIENT)
        .expect(close(CLIENT))
        .expect_finished()
        .run_split();
}

#[test]
fn a_response_whose_head_went_ends_the_connection_when_it_ends() {
    Playbook::new(no_hooks())
        .recv(CLIENT, GET_A)
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhi")
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhi"))
        .shutdown()
        .recv(S1, "yo")
        .expect(send(CLIENT, "yo"))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run();
}

#[test]
fn a_request_whose_head_is_arriving_is_the_last() {
    Playbook::new(no_hooks())
        .recv(CLIENT, "GET http://a.test/ HTTP/1.1\r\n")
        .shutdown()
        .recv(CLIENT, "Host: a.test\r\n\r\n")
        .expect(open(S1, "a.test:80"))
        .opened(S1)
        .expect(send(S1, GET_A_UP))
        .recv(S1, OK_HI)
        .expect(send(CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nhi"))
        .expect(close(S1))
        .expect(half_close(CLIENT))
        .run();
}

fn h1_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}

fn h2_client() -> Pump {
    let mut pump = Pump::new(Config::default(), Peer::Plain { received: Vec::new() }, h1_origin());
    pump.run();
    pump.client_sends(&preface());
    pump
}

/// The GOAWAY frames the proxy sent its client: each one's last stream and error code.
fn goaways(pump: &Pump) -> Vec<(u32, Option<Reason>)> {
    let sent = frames(pump.client.received());
    sent.iter()
        .filter(|f| f.kind == GOAWAY)
        .map(|f| (u32::from_be_bytes([f.payload[0] & 0x7f, f.payload[1], f.payload[2], f.payload[3]]), f.error_code()))
        .collect()
}

#[test]
fn an_idle_http2_client_gets_a_goaway_and_is_closed() {
    let mut pump = h2_client();
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block("a.test", "/")));
    pump.server_sends(S1, OK_HI.as_bytes());
    assert!(frames(pump.client.received()).iter().any(|f| f.kind == DATA && f.stream == 1), "answered");
    assert!(!pump.closed.contains(&CLIENT));
    pump.shuts_down();
    assert_eq!(goaways(&pump), vec![(1, Some(Reason::NO_ERROR))]);
    assert!(pump.closed.contains(&CLIENT), "no stream left: closed at once");
}

#[test]
fn an_http2_client_with_a_stream_in_flight_gets_a_goaway_and_its_response() {
    let mut pump = h2_client();
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block("a.test", "/")));
    pump.shuts_down();
    assert_eq!(goaways(&pump), vec![(1, Some(Reason::NO_ERROR))], "stream 1 will still be served");
    assert!(!pump.closed.contains(&CLIENT), "stream 1 is in flight");
    // A stream opened after the GOAWAY is refused; the one before it goes on.
    pump.client_sends(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &get_block("a.test", "/late")));
    assert_eq!(pump.addrs.len(), 1, "the late stream went nowhere");
    pump.server_sends(S1, OK_HI.as_bytes());
    let sent = frames(pump.client.received());
    assert!(sent.iter().any(|f| f.kind == DATA && f.stream == 1 && f.flags & END_STREAM != 0), "stream 1 ended");
    assert!(pump.closed.contains(&CLIENT), "its last stream done, the connection goes");
}
