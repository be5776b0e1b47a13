//! Carriers: an HTTP/2 connection a client connection parked carries the streams of several
//! client connections at once (`layers::http::carried`). Each client connection is its own
//! core, driven by its own pump; the carrier is a third core they join.

use std::time::{Duration, Instant};

use playbooks::h2::{H2Peer, Reason};
use playbooks::pump::{CarrierPump, Origins, Peer, Pump, SharedCarrier};
use playbooks::*;
use proxy_core::{Config, ConnId, HookSet};

const IDLE: Duration = Duration::from_secs(4);

fn config() -> Config {
    Config { share_upstreams: true, upstream_h2c: true, hooks: HookSet::NONE, ..Config::default() }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET http://a.test{path} HTTP/1.1\r\nHost: a.test\r\n\r\n").into_bytes()
}

/// A client connection fetches `/one` over HTTP/2 (prior knowledge) and leaves: its idle
/// connection is parked, and is then run as a carrier.
fn carrier(now: Instant) -> SharedCarrier {
    let origins: Origins = Box::new(|_| Some(Peer::H2(Box::new(H2Peer::server()))));
    let mut first = Pump::new(config(), Peer::Plain { received: Vec::new() }, origins).at(now);
    first.run();
    first.client_sends(&get("/one"));
    // Without a carrier to join, the client connection adopts the connection it parked for
    // one (S1, as S2).
    let stream = first.server_h2(S2).requests()[0].0;
    first.server_h2(S2).respond(stream, 200, b"one", None);
    first.server_sends(S2, b"");
    first.closes(ConnId::CLIENT);
    assert_eq!(first.parked, [S1, S2], "logs {:?}", first.logs);
    let (parked, peer) = first.pool.pop().expect("parked");
    CarrierPump::new(config(), parked, peer, IDLE, now)
}

/// A client connection that may join `carrier`, and whose own connections are refused: a
/// request that does not join fails with 502.
fn client(carrier: &SharedCarrier, now: Instant) -> Pump {
    let mut pump = Pump::new(config(), Peer::Plain { received: Vec::new() }, Box::new(|_| None)).at(now).with_carrier(carrier.clone());
    pump.run();
    pump
}

fn answer(pump: &Pump) -> String {
    String::from_utf8_lossy(pump.client.received()).into_owned()
}

#[test]
fn two_client_connections_have_streams_on_one_connection_at_once() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    let mut b = client(&carrier, now);
    a.client_sends(&get("/a"));
    b.client_sends(&get("/b"));
    let requests = carrier.borrow_mut().server_h2().requests();
    let paths: Vec<String> = requests.iter().map(|(_, head)| head.uri.path().to_owned()).collect();
    assert_eq!(paths, ["/one", "/a", "/b"], "both clients' requests on the parked connection");
    assert_eq!(carrier.borrow().carrying, 2, "two streams open at once");
    // The server answers the second client first: each answer reaches its own client.
    let (stream_a, stream_b) = (requests[1].0, requests[2].0);
    carrier.borrow_mut().server_h2().respond(stream_b, 200, b"for b", None);
    carrier.borrow_mut().server_sends(b"");
    b.run();
    a.run();
    assert!(answer(&b).starts_with("HTTP/1.1 200 ") && answer(&b).contains("for b"), "{:?}", answer(&b));
    assert_eq!(answer(&a), "", "a's answer has not come");
    carrier.borrow_mut().server_h2().respond(stream_a, 200, b"for a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert!(answer(&a).starts_with("HTTP/1.1 200 ") && answer(&a).contains("for a"), "{:?}", answer(&a));
    assert!(!answer(&a).contains("for b") && !answer(&b).contains("for a"));
    assert_eq!(carrier.borrow().carrying, 0, "both streams left when their exchanges ended");
    assert!(!a.logs.iter().chain(&b.logs).any(|l| l.contains("cannot connect")), "nobody opened a connection of its own");
}

#[test]
fn what_one_carrier_turn_has_for_a_client_connection_reaches_it_as_one_event() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = Pump::new(config(), Peer::Plain { received: Vec::new() }, Box::new(|_| None))
        .at(now)
        .with_carrier(carrier.clone())
        .recording();
    a.run();
    a.client_sends(&get("/a"));
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    // Head, body and end in one read of the carrier: three messages for the stream.
    carrier.borrow_mut().server_h2().respond(stream, 200, b"all of a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert!(answer(&a).starts_with("HTTP/1.1 200 ") && answer(&a).ends_with("8\r\nall of a\r\n0\r\n\r\n"), "{:?}", answer(&a));
    let carried: Vec<&String> = a.transcript().iter().filter(|line| line.starts_with(">> Carried")).collect();
    assert_eq!(carried.len(), 1, "one event for the turn: {carried:#?}");
    assert!(carried[0].matches("Output").count() >= 3, "head, body and end in it: {}", carried[0]);
}

#[test]
fn a_client_that_leaves_mid_response_cancels_its_stream_alone() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    let mut b = client(&carrier, now);
    a.client_sends(&get("/a"));
    b.client_sends(&get("/b"));
    let requests = carrier.borrow_mut().server_h2().requests();
    let (stream_a, stream_b) = (requests[1].0, requests[2].0);
    // The first client is gone (its end, then a failed write).
    a.closes(ConnId::CLIENT);
    a.closes(ConnId::CLIENT);
    carrier.borrow_mut().server_sends(b"");
    assert_eq!(carrier.borrow_mut().server_h2().reset_reason(stream_a), Some(Reason::CANCEL), "its stream is cancelled");
    assert_eq!(carrier.borrow_mut().server_h2().reset_reason(stream_b), None, "the other goes on");
    carrier.borrow_mut().server_h2().respond(stream_b, 200, b"for b", None);
    carrier.borrow_mut().server_sends(b"");
    b.run();
    assert!(answer(&b).contains("for b"), "{:?}", answer(&b));
    assert!(!carrier.borrow().closed, "the connection stays");
}

#[test]
fn the_server_closing_fails_each_stream_on_it_and_the_carrier_takes_no_more() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    a.client_sends(&get("/a"));
    carrier.borrow_mut().server_closes();
    a.run();
    assert!(answer(&a).starts_with("HTTP/1.1 502 "), "{:?}", answer(&a));
    assert!(carrier.borrow().closed);
    assert_eq!(carrier.borrow().capacity, 0, "no stream joins a closed carrier");
}

#[test]
fn a_request_the_carrier_never_took_goes_to_a_connection_of_its_own() {
    let now = Instant::now();
    let carrier = carrier(now);
    carrier.borrow_mut().server_closes();
    // A registry that has not heard yet: the client joins the closed carrier anyway.
    carrier.borrow_mut().closed = false;
    carrier.borrow_mut().capacity = 100;
    let origins: Origins = Box::new(|_| Some(Peer::H2(Box::new(H2Peer::server()))));
    let mut a = Pump::new(config(), Peer::Plain { received: Vec::new() }, origins).at(now).with_carrier(carrier.clone());
    a.run();
    // Refused as never processed: sent again, once, on a connection opened for it (the
    // registry has heard by then).
    a.client_sends(&get("/a"));
    let server = a.servers.keys().copied().next().expect("a connection of its own");
    let requests = a.server_h2(server).requests();
    assert_eq!(requests.len(), 1, "logs {:?}", a.logs);
    a.server_h2(server).respond(requests[0].0, 200, b"own", None);
    a.server_sends(server, b"");
    assert!(answer(&a).contains("own"), "{:?}; logs {:?}", answer(&a), a.logs);
}

#[test]
fn an_idle_carrier_closes_after_the_idle_timeout() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    a.client_sends(&get("/a"));
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    // Busy: time passes without closing it.
    carrier.borrow_mut().advance(IDLE * 2);
    assert!(!carrier.borrow().closed);
    carrier.borrow_mut().server_h2().respond(stream, 200, b"a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert!(answer(&a).contains("200"));
    carrier.borrow_mut().advance(IDLE - Duration::from_millis(1));
    assert!(!carrier.borrow().closed, "not yet");
    carrier.borrow_mut().advance(Duration::from_millis(2));
    assert!(carrier.borrow().closed, "idle for the timeout: closed");
    assert_eq!(carrier.borrow().capacity, 0);
}

#[test]
fn a_request_body_goes_on_only_as_the_carrier_passes_it_into_the_connection() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    // The server reads nothing for now: no window opens.
    carrier.borrow_mut().server_h2().holding = true;
    let body = vec![b'x'; 4 * 1024 * 1024];
    let head = format!("POST http://a.test/up HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n", body.len());
    a.client_sends(head.as_bytes());
    let mut sent = 0;
    // The client sends while it is read.
    while sent < body.len() && !a.paused.contains(&ConnId::CLIENT) {
        let end = (sent + 16 * 1024).min(body.len());
        a.client_sends(&body[sent..end]);
        sent = end;
    }
    let high_water = Config::default().high_water;
    assert!(sent < 2 * high_water + 128 * 1024, "{sent} bytes taken from the client, high water {high_water}");
    // The server catches up; the client is read again as the carrier passes its bytes on.
    for _ in 0..10_000 {
        carrier.borrow_mut().server_h2().release();
        carrier.borrow_mut().server_sends(b"");
        a.run();
        while sent < body.len() && !a.paused.contains(&ConnId::CLIENT) {
            let end = (sent + 16 * 1024).min(body.len());
            a.client_sends(&body[sent..end]);
            sent = end;
        }
        if sent == body.len() {
            break;
        }
    }
    carrier.borrow_mut().server_h2().release();
    carrier.borrow_mut().server_sends(b"");
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    assert_eq!(carrier.borrow_mut().server_h2().body(stream).len(), body.len(), "the whole body went on");
}

#[test]
fn a_client_that_reads_nothing_holds_the_server_back_through_the_carrier() {
    let now = Instant::now();
    let carrier = carrier(now);
    let mut a = client(&carrier, now);
    a.client_stalled = true;
    a.client_sends(&get("/big"));
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    let body = vec![b'x'; 8 * 1024 * 1024];
    carrier.borrow_mut().server_h2().respond(stream, 200, &body, None);
    for _ in 0..100 {
        carrier.borrow_mut().server_sends(b"");
        a.run();
    }
    let reached = a.client.received().len();
    let sent = body.len() - carrier.borrow_mut().server_h2().engine.backlog(stream);
    let (window, high_water) = (1024 * 1024, Config::default().high_water);
    // No more than the high-water mark (and one poll's worth) reaches a client that reads
    // nothing, and the server sent no more than that and one stream window.
    assert!(reached < window + 2 * high_water, "{reached} bytes reached a client that reads nothing");
    assert!(sent <= reached + window + high_water, "the server sent {sent} bytes, {reached} reached the client");
}

/// An HTTP/2 client connection's next request takes the stream its last exchange left on the
/// carrier, rather than joining anew. While it waits the stream gives its place on the
/// carrier up, and it leaves once it has waited `joined_stream_idle`.
#[test]
fn a_stream_whose_exchange_is_over_carries_its_client_connections_next_request() {
    let now = Instant::now();
    let carrier = carrier(now);
    let client = Peer::H2(Box::new(H2Peer::client()));
    let mut a = Pump::new(config(), client, Box::new(|_| None)).at(now).with_carrier(carrier.clone()).recording();
    a.run();
    let joins = |a: &Pump| a.transcript().iter().filter(|line| line.starts_with(">> Joined")).count();
    a.client_h2().get(1, "http://a.test/a");
    a.client_h2().get(3, "http://a.test/b");
    a.client_sends(b"");
    let requests = carrier.borrow_mut().server_h2().requests();
    let (stream_a, stream_b) = (requests[1].0, requests[2].0);
    assert_eq!((joins(&a), carrier.borrow().carrying), (2, 2), "a stream each");
    carrier.borrow_mut().server_h2().respond(stream_a, 200, b"for a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert_eq!(a.client_h2().body(1), b"for a");
    assert_eq!(carrier.borrow().carrying, 1, "the stream /a went on waits, its place given up");
    a.client_h2().get(5, "http://a.test/c");
    a.client_sends(b"");
    assert_eq!((joins(&a), carrier.borrow().carrying), (2, 2), "/c took the waiting stream: no join");
    let requests = carrier.borrow_mut().server_h2().requests();
    assert_eq!(requests.len(), 4, "logs {:?}", a.logs);
    let (stream_c, head_c) = &requests[3];
    assert_eq!(head_c.uri.path(), "/c");
    assert_ne!(*stream_c, stream_a, "a new HTTP/2 stream for the new exchange");
    // Answered in the other order: each answer reaches its own stream.
    carrier.borrow_mut().server_h2().respond(*stream_c, 200, b"for c", None);
    carrier.borrow_mut().server_h2().respond(stream_b, 200, b"for b", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert_eq!(a.client_h2().body(5), b"for c");
    assert_eq!(a.client_h2().body(3), b"for b");
    assert_eq!(a.client_h2().ended(5), Some(None));
    assert_eq!(a.client_h2().ended(3), Some(None));
    assert_eq!(carrier.borrow().carrying, 0);
    // Both streams wait, then leave.
    let (closed, idle) = (a.closed.len(), Config::default().joined_stream_idle);
    a.advance(idle - Duration::from_millis(1));
    assert_eq!(a.closed.len(), closed, "still waiting");
    a.advance(Duration::from_millis(2));
    assert_eq!(a.closed.len(), closed + 2, "both left their carrier");
    // The next request joins anew.
    a.client_h2().get(7, "http://a.test/d");
    a.client_sends(b"");
    assert_eq!((joins(&a), carrier.borrow().carrying), (3, 1));
}

/// With `joined_stream_idle` zero, a stream leaves its carrier as its exchange ends.
#[test]
fn a_stream_leaves_at_once_without_a_wait_for_the_next_request() {
    let now = Instant::now();
    let carrier = carrier(now);
    let config = Config { joined_stream_idle: Duration::ZERO, ..config() };
    let mut a = Pump::new(config, Peer::H2(Box::new(H2Peer::client())), Box::new(|_| None)).at(now).with_carrier(carrier.clone());
    a.run();
    a.client_h2().get(1, "http://a.test/a");
    a.client_sends(b"");
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    let closed = a.closed.len();
    carrier.borrow_mut().server_h2().respond(stream, 200, b"for a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert_eq!(a.client_h2().body(1), b"for a");
    assert_eq!(a.closed.len(), closed + 1, "left with its exchange");
}

/// A request that takes a waiting stream whose carrier has closed meanwhile is refused
/// unprocessed, and goes again on a connection of its own.
#[test]
fn a_request_on_a_waiting_stream_of_a_closed_carrier_goes_elsewhere() {
    let now = Instant::now();
    let carrier = carrier(now);
    let origins: Origins = Box::new(|_| Some(Peer::H2(Box::new(H2Peer::server()))));
    let mut a = Pump::new(config(), Peer::H2(Box::new(H2Peer::client())), origins).at(now).with_carrier(carrier.clone());
    a.run();
    a.client_h2().get(1, "http://a.test/a");
    a.client_sends(b"");
    let stream = carrier.borrow_mut().server_h2().requests()[1].0;
    carrier.borrow_mut().server_h2().respond(stream, 200, b"for a", None);
    carrier.borrow_mut().server_sends(b"");
    a.run();
    assert_eq!(a.client_h2().body(1), b"for a");
    carrier.borrow_mut().server_closes();
    a.client_h2().get(3, "http://a.test/b");
    a.client_sends(b"");
    let server = a.servers.keys().copied().next().expect("a connection of its own");
    let requests = a.server_h2(server).requests();
    assert_eq!(requests.len(), 1, "logs {:?}", a.logs);
    a.server_h2(server).respond(requests[0].0, 200, b"own", None);
    a.server_sends(server, b"");
    assert_eq!(a.client_h2().body(3), b"own", "logs {:?}", a.logs);
    assert_eq!(carrier.borrow_mut().server_h2().requests().len(), 2, "the closed carrier sent nothing more");
}
