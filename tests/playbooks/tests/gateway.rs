//! Reverse mode as a gateway (`proxy_core::gateway`): which backend each request goes to,
//! what it is told about the client, what happens when a backend cannot be reached or keeps
//! failing, decided from events and times alone. Client connections share one gateway, as the
//! connections of a listener do.

use std::time::Duration;

use playbooks::h2::H2Peer;
use playbooks::pump::{Origins, Peer, Pump};
use playbooks::*;
use proxy_core::gateway::{Backend, Balance, Gateway, GatewaySpec, GroupSpec, LimitSpec, RouteSpec};
use proxy_core::OpenError;

fn gateway(ports: &[u16], balance: Balance) -> Gateway {
    let backends = ports.iter().map(|p| Backend::parse(&format!("http://127.0.0.1:{p}")).unwrap()).collect();
    let mut group = GroupSpec::new("web", backends);
    group.balance = balance;
    Gateway::new(GatewaySpec::single(group), 11).unwrap()
}

fn config(gateway: &Gateway) -> Config {
    let target = ServerAddr::new("127.0.0.1", 9001);
    Config {
        mode: Mode::Reverse { scheme: Scheme::Http, target, client_tls: false },
        gateway: Some(gateway.clone()),
        ..no_hooks()
    }
}

const GET: &str = "GET /x HTTP/1.1\r\nHost: shop.test\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What a backend on `port` receives for [`GET`] from the playbook's client.
fn forwarded_get(port: u16) -> String {
    format!(
        "GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         x-forwarded-host: shop.test\r\nforwarded: for=127.0.0.1;proto=http;host=\"shop.test\"\r\n\r\n"
    )
}

/// One client connection sends [`GET`]; `port`'s backend answers `answer`.
fn exchange(gw: &Gateway, port: u16, answer: &str) {
    Playbook::new(config(gw))
        .recv(CLIENT, GET)
        .expect(open(S1, &format!("127.0.0.1:{port}")))
        .opened(S1)
        .expect(send(S1, forwarded_get(port)))
        .recv(S1, answer)
        .expect(send(CLIENT, answer))
        .run();
}

#[test]
fn client_connections_take_the_backends_in_turn() {
    let gw = gateway(&[9001, 9002, 9003], Balance::RoundRobin);
    for port in [9001, 9002, 9003, 9001] {
        exchange(&gw, port, OK);
    }
}

#[test]
fn requests_of_one_keep_alive_connection_are_balanced_too() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    Playbook::new(config(&gw))
        .recv(CLIENT, GET)
        .expect(open(S1, "127.0.0.1:9001"))
        .opened(S1)
        .expect(send(S1, forwarded_get(9001)))
        .recv(S1, OK)
        .expect(send(CLIENT, OK))
        .recv(CLIENT, GET)
        .expect(open(S2, "127.0.0.1:9002"))
        .opened(S2)
        .expect(send(S2, forwarded_get(9002)))
        .recv(S2, OK)
        .expect(send(CLIENT, OK))
        // Back to 9001: its idle connection carries the third.
        .recv(CLIENT, GET)
        .expect(send(S1, forwarded_get(9001)))
        .run();
}

#[test]
fn least_conn_sends_other_clients_elsewhere_while_one_waits() {
    let gw = gateway(&[9001, 9002], Balance::LeastConn);
    let mut first = Pump::new(config(&gw), Peer::Plain { received: Vec::new() }, plain_origin());
    first.run();
    first.client_sends(GET.as_bytes());
    assert_eq!(first.addrs[&S1].to_string(), "127.0.0.1:9001");
    // Its answer is owed while two other clients come: 9001 is busy, so both go to 9002.
    for _ in 0..2 {
        exchange(&gw, 9002, OK);
    }
    first.server_sends(S1, OK.as_bytes());
    assert!(first.client.received().ends_with(b"ok"));
    // Both idle again: in turn from where it left off.
    exchange(&gw, 9001, OK);
}

#[test]
fn a_refused_connection_is_retried_on_the_next_backend() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    Playbook::new(config(&gw))
        .recv(CLIENT, GET)
        .expect(open(S1, "127.0.0.1:9001"))
        .open_failed(S1, OpenError::Refused)
        .expect(log("127.0.0.1:9001: connection refused; trying http://127.0.0.1:9002"))
        .expect(open(S2, "127.0.0.1:9002"))
        .opened(S2)
        .expect(send(S2, forwarded_get(9002)))
        .recv(S2, OK)
        .expect(send(CLIENT, OK))
        .run();
}

#[test]
fn when_every_backend_refuses_the_client_gets_502_then_503_at_once() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    let refused = "cannot connect to 127.0.0.1:9002: connection refused";
    for _ in 0..3 {
        Playbook::new(config(&gw))
            .recv(CLIENT, GET)
            .expect(open(S1, "127.0.0.1:9001"))
            .open_failed(S1, OpenError::Refused)
            .expect(open(S2, "127.0.0.1:9002"))
            .open_failed(S2, OpenError::Refused)
            .expect(send(CLIENT, proxy_error(502, "Bad Gateway", refused, false)))
            .run();
    }
    // Three failures in a row each: both ejected. Nothing is opened; the answer names the group.
    Playbook::new(config(&gw))
        .recv(CLIENT, GET)
        .expect(log("every backend of group \"web\" is down"))
        .expect(send(CLIENT, proxy_error(503, "Service Unavailable", "every backend of group \"web\" is down", false)))
        .run();
}

#[test]
fn a_backend_answering_5xx_is_ejected_and_comes_back_after_the_interval() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    let bad = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    for _ in 0..2 {
        exchange(&gw, 9001, bad);
        exchange(&gw, 9002, OK);
    }
    Playbook::new(config(&gw))
        .recv(CLIENT, GET)
        .expect(open(S1, "127.0.0.1:9001"))
        .opened(S1)
        .expect(send(S1, forwarded_get(9001)))
        .recv(S1, bad)
        .expect(log_at(LogLevel::Warn, "backend http://127.0.0.1:9001 of group \"web\" ejected for 10 s: 3 failures in a row, the last: answered 500"))
        .expect(send(CLIENT, bad))
        .run();
    for _ in 0..3 {
        exchange(&gw, 9002, OK);
    }
    // Ten seconds later 9001 is back, in its turn.
    let later = |gw: &Gateway, port: u16| {
        Playbook::new(config(gw))
            .advance(Duration::from_secs(10))
            .recv(CLIENT, GET)
            .expect(open(S1, &format!("127.0.0.1:{port}")))
            .opened(S1)
            .expect(send(S1, forwarded_get(port)))
            .run();
    };
    later(&gw, 9001);
    later(&gw, 9002);
}

#[test]
fn a_group_of_one_is_never_ejected() {
    let gw = gateway(&[9001], Balance::RoundRobin);
    for _ in 0..5 {
        Playbook::new(config(&gw))
            .recv(CLIENT, GET)
            .expect(open(S1, "127.0.0.1:9001"))
            .open_failed(S1, OpenError::Refused)
            .expect(send(CLIENT, proxy_error(502, "Bad Gateway", "cannot connect to 127.0.0.1:9001: connection refused", false)))
            .run();
    }
}

#[test]
fn routes_choose_the_group_and_rewrite_the_path() {
    let b = |p: u16| Backend::parse(&format!("http://127.0.0.1:{p}")).unwrap();
    let spec = GatewaySpec {
        groups: vec![GroupSpec::new("site", vec![b(9001)]), GroupSpec::new("api", vec![b(9002)])],
        routes: vec![
            RouteSpec { host: Some("shop.test".into()), ..RouteSpec::to_group("site") },
            RouteSpec {
                host: Some("shop.test".into()),
                path_prefix: "/api".into(),
                rewrite_prefix: Some(String::new()),
                set_headers: vec![("X-Route".into(), "api".into())],
                ..RouteSpec::to_group("api")
            },
        ],
        forwarded_headers: false,
    };
    let gw = Gateway::new(spec, 1).unwrap();
    Playbook::new(config(&gw))
        .recv(CLIENT, "GET /api/users?id=2 HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n")
        .expect(open(S1, "127.0.0.1:9002"))
        .opened(S1)
        .expect(send(S1, "GET /users?id=2 HTTP/1.1\r\nHost: 127.0.0.1:9002\r\nx-route: api\r\n\r\n"))
        .recv(S1, OK)
        .expect(send(CLIENT, OK))
        .recv(CLIENT, "GET /about HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .expect(open(S2, "127.0.0.1:9001"))
        .opened(S2)
        .expect(send(S2, "GET /about HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"))
        .recv(S2, OK)
        .expect(send(CLIENT, OK))
        .recv(CLIENT, "GET /about HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .expect(log("no route for other.test/about"))
        .expect(send(CLIENT, proxy_error(404, "Not Found", "no route for other.test/about", false)))
        .run();
}

#[test]
fn an_h2_clients_streams_are_balanced_and_told_its_authority() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    let mut pump = Pump::new(config(&gw), Peer::H2(Box::new(H2Peer::client())), plain_origin());
    pump.run();
    pump.client_h2().get(1, "http://shop.test/x");
    pump.client_h2().get(3, "http://shop.test/y");
    pump.client_sends(b"");
    let addrs: Vec<String> = pump.addrs.values().map(ToString::to_string).collect();
    assert_eq!(addrs, ["127.0.0.1:9001", "127.0.0.1:9002"], "logs: {:?}", pump.logs);
    let request = String::from_utf8_lossy(pump.server(S2).received()).into_owned();
    assert!(request.starts_with("GET /y HTTP/1.1\r\nhost: 127.0.0.1:9002\r\n"), "{request}");
    assert!(request.contains("x-forwarded-host: shop.test\r\n"), "{request}");
}

/// One backend taking `max_conns` requests at once, `queue_limit` more waiting up to 5 s;
/// upstream connections shared across client connections, as the CLI runs it.
fn limited(max_conns: u32, queue_limit: usize) -> (Gateway, Config) {
    let mut group = GroupSpec::new("web", vec![Backend::parse("http://127.0.0.1:9001").unwrap()]);
    group.limits = LimitSpec { max_conns: Some(max_conns), queue_limit, queue_timeout: Duration::from_secs(5) };
    let gw = Gateway::new(GatewaySpec::single(group), 3).unwrap();
    let config = Config { share_upstreams: true, ..config(&gw) };
    (gw, config)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn past_the_limit_a_request_waits_for_the_connection_the_one_before_frees() {
    let (_gw, config) = limited(1, 1);
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, plain_origin());
    first.run().client_sends(GET.as_bytes());
    assert_eq!(first.addrs[&S1].to_string(), "127.0.0.1:9001");

    // The backend has its one request: the second client's waits, nothing opened for it and
    // nothing read of it yet.
    let mut second = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, plain_origin());
    second.run().client_sends(GET.as_bytes());
    assert!(second.addrs.is_empty() && second.client.received().is_empty(), "logs: {:?}", second.logs);
    // The queue (one place) is full: a third is answered at once, naming the group and why.
    let full = "every backend of group \"web\" has 1 requests in flight, its limit, and 1 more wait in its queue, which is full";
    Playbook::new(config.clone())
        .recv(CLIENT, GET)
        .expect(log(full))
        .expect(send(CLIENT, proxy_error(503, "Service Unavailable", full, false)))
        .run();

    // The first is answered: its connection goes back to the shared pool at once, and the
    // waiting request is woken and takes it, with no new connection to the backend.
    first.server_sends(S1, OK.as_bytes());
    assert!(first.client.received().ends_with(b"ok"));
    assert_eq!(first.parked, [S1]);
    second.pool = std::mem::take(&mut first.pool);
    second.run();
    let adopted = *second.servers.keys().next().expect("the parked connection was adopted");
    assert!(second.pool.is_empty());
    // The same backend connection: it carried the first request, then this one.
    assert_eq!(text(second.server(adopted).received()), forwarded_get(9001).repeat(2));
    second.server_sends(adopted, OK.as_bytes());
    assert_eq!(text(second.client.received()), OK);
}

#[test]
fn a_request_that_waits_too_long_gets_503_and_the_queue_moves_on() {
    let (gw, config) = limited(1, 10);
    let mut first = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, plain_origin());
    first.run().client_sends(GET.as_bytes());
    let mut late = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, plain_origin());
    late.run().client_sends(GET.as_bytes());
    let mut patient = Pump::new(config.clone(), Peer::Plain { received: Vec::new() }, plain_origin());
    patient.advance(Duration::from_secs(3)).client_sends(GET.as_bytes());
    assert_eq!(gw.queued(), [("web".to_owned(), 2)]);

    // Five seconds in the queue: the client gets 503 saying how long it waited; its place goes.
    late.advance(Duration::from_secs(5));
    let waited = "waited 5.0 s in the queue of group \"web\" for a backend below its limit of 1 requests in flight";
    assert_eq!(text(late.client.received()), proxy_error(503, "Service Unavailable", waited, false));
    assert!(late.logs.iter().any(|l| l.ends_with(waited)), "{:?}", late.logs);
    assert!(late.addrs.is_empty());
    assert_eq!(gw.queued(), [("web".to_owned(), 1)]);

    // A client that is gone while waiting (its socket failed: the second close) gives its
    // place up too. (A first close alone is a half-close: the request is whole and still owed
    // its answer.)
    patient.closes(CLIENT);
    assert_eq!(gw.queued(), [("web".to_owned(), 1)]);
    patient.closes(CLIENT);
    assert_eq!(gw.queued(), [("web".to_owned(), 0)]);
    first.server_sends(S1, OK.as_bytes());
    assert_eq!(gw.status(std::time::Instant::now())[0].in_flight, 0);
}

fn plain_origin() -> Origins {
    Box::new(|_| Some(Peer::Plain { received: Vec::new() }))
}
