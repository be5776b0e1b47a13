//! The gateway's decisions, driven by requests and times alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::flow::{ClientInfo, Version};
use crate::headers::Headers;
use crate::ids::Scheme;

fn backends(ports: &[u16]) -> Vec<Backend> {
    ports.iter().map(|p| Backend::parse(&format!("http://127.0.0.1:{p}")).unwrap()).collect()
}

fn gateway(ports: &[u16], balance: Balance) -> Gateway {
    let mut group = GroupSpec::new("web", backends(ports));
    group.balance = balance;
    Gateway::new(GatewaySpec::single(group), 7).unwrap()
}

fn request(host: &str, path: &str) -> Request {
    let mut headers = Headers::new();
    headers.append("host", host.to_owned());
    Request {
        method: "GET".into(),
        scheme: Scheme::Http,
        host: "unset".into(),
        port: 1,
        path: path.into(),
        version: Version::Http11,
        headers,
        body: None,
        trailers: None,
    }
}

fn client(ip: &str) -> ClientInfo {
    ClientInfo::new(format!("{ip}:40000").parse().unwrap(), "127.0.0.1:8080".parse().unwrap())
}

/// Admit a request and say which backend port it went to.
fn send(gw: &Gateway, now: Instant, r: &mut Request) -> (u16, Lease) {
    let Admitted::Now(lease) = gw.admit(now, r, &client("192.0.2.1"), false, None).unwrap() else { panic!("queued") };
    (r.port, lease)
}

#[test]
fn round_robin_takes_each_in_turn_and_names_the_backend() {
    let gw = gateway(&[9001, 9002, 9003], Balance::RoundRobin);
    let t0 = Instant::now();
    let mut ports = Vec::new();
    for _ in 0..6 {
        let mut r = request("shop.test", "/x");
        let (port, _lease) = send(&gw, t0, &mut r);
        assert_eq!(r.headers.get_str("host"), Some(format!("127.0.0.1:{port}").as_str()));
        assert_eq!(r.headers.get_str("x-forwarded-host"), Some("shop.test"));
        assert_eq!(r.headers.get_str("x-forwarded-for"), Some("192.0.2.1"));
        ports.push(port);
    }
    assert_eq!(ports, [9001, 9002, 9003, 9001, 9002, 9003]);
}

#[test]
fn least_conn_counts_requests_in_flight_until_their_lease_ends() {
    let gw = gateway(&[9001, 9002], Balance::LeastConn);
    let t0 = Instant::now();
    let (a, held) = send(&gw, t0, &mut request("h", "/"));
    assert_eq!(a, 9001);
    // 9001 is busy: everything goes to 9002 while each lease is dropped at once.
    for _ in 0..3 {
        assert_eq!(send(&gw, t0, &mut request("h", "/")).0, 9002);
    }
    let status = gw.status(t0);
    assert_eq!((status[0].in_flight, status[1].in_flight, status[1].requests), (1, 0, 3));
    drop(held);
    assert_eq!(gw.status(t0)[0].in_flight, 0);
}

#[test]
fn power_of_two_choices_prefers_the_faster_backend() {
    let gw = gateway(&[9001, 9002], Balance::PowerOfTwo);
    let t0 = Instant::now();
    // Teach it: 9001 answers in 200 ms, 9002 in 5 ms.
    for (port, ms) in [(9001, 200), (9002, 5)] {
        loop {
            let (got, mut lease) = send(&gw, t0, &mut request("h", "/"));
            if got == port {
                lease.responded(200, t0 + Duration::from_millis(ms));
                break;
            }
        }
    }
    let mut counts = BTreeMap::new();
    for _ in 0..100 {
        let (port, _lease) = send(&gw, t0, &mut request("h", "/"));
        *counts.entry(port).or_insert(0) += 1;
    }
    // Two candidates, both always drawn: the cheaper wins every time.
    assert_eq!(counts.get(&9002), Some(&100), "{counts:?}");
    // A minute later the slow one's peak has decayed (200 ms to 0.5 ms) while the fast one
    // keeps answering in 5 ms: the once-slow backend is tried again rather than starved.
    let t1 = t0 + Duration::from_secs(60);
    assert!(gw.status(t1)[0].latency.unwrap() < Duration::from_millis(1));
    let (port, mut lease) = send(&gw, t1, &mut request("h", "/"));
    assert_eq!(port, 9002);
    lease.responded(200, t1 + Duration::from_millis(5));
    assert_eq!(send(&gw, t1 + Duration::from_millis(5), &mut request("h", "/")).0, 9001);
}

#[test]
fn hashing_sticks_and_a_removed_backend_moves_only_its_share() {
    let spec = |ports: &[u16]| {
        let mut group = GroupSpec::new("web", backends(ports));
        group.balance = "hash:header:x-user".parse().unwrap();
        GatewaySpec::single(group)
    };
    let gw = Gateway::new(spec(&[9001, 9002, 9003, 9004]), 1).unwrap();
    let t0 = Instant::now();
    let placed = |gw: &Gateway| {
        (0..400)
            .map(|u| {
                let mut r = request("h", "/");
                r.headers.append("x-user", format!("user-{u}"));
                send(gw, t0, &mut r).0
            })
            .collect::<Vec<_>>()
    };
    let before = placed(&gw);
    assert_eq!(before, placed(&gw), "the same key, the same backend");
    for port in [9001, 9002, 9003, 9004] {
        let share = before.iter().filter(|p| **p == port).count();
        assert!((60..=140).contains(&share), "{port} got {share} of 400");
    }
    gw.reload(spec(&[9001, 9002, 9004])).unwrap();
    let after = placed(&gw);
    for (b, a) in before.iter().zip(&after) {
        if *b != 9003 {
            assert_eq!(b, a, "only 9003's keys move");
        } else {
            assert_ne!(*a, 9003);
        }
    }
    // No key: balanced in turn (from wherever the hashed picks left the turn).
    let mut ports: Vec<u16> = (0..3).map(|_| send(&gw, t0, &mut request("h", "/")).0).collect();
    ports.sort();
    assert_eq!(ports, [9001, 9002, 9004]);
}

#[test]
fn failures_in_a_row_eject_for_a_growing_interval() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    let t0 = Instant::now();
    let fail_9001 = |now: Instant| {
        for _ in 0..4 {
            let (port, mut lease) = send(&gw, now, &mut request("h", "/"));
            if port == 9001 {
                return lease.responded(502, now);
            }
        }
        panic!("9001 not picked");
    };
    assert_eq!(fail_9001(t0), None);
    assert_eq!(fail_9001(t0), None);
    let line = fail_9001(t0).expect("the third failure ejects");
    assert!(line.contains("http://127.0.0.1:9001") && line.contains("ejected for 10 s") && line.contains("answered 502"), "{line}");
    assert!(matches!(gw.status(t0)[0].health, Health::Ejected { .. }));
    for _ in 0..4 {
        assert_eq!(send(&gw, t0 + Duration::from_secs(9), &mut request("h", "/")).0, 9002);
    }
    // Back after 10 s; failing at once ejects it again, for twice as long.
    let t1 = t0 + Duration::from_secs(10);
    let line = fail_9001(t1).expect("one failure after an ejection ejects again");
    assert!(line.contains("ejected for 20 s"), "{line}");
    // A success once back resets the count.
    let t2 = t1 + Duration::from_secs(20);
    loop {
        let (port, mut lease) = send(&gw, t2, &mut request("h", "/"));
        if port == 9001 {
            assert_eq!(lease.responded(200, t2), None);
            break;
        }
    }
    assert_eq!(fail_9001(t2), None);
}

#[test]
fn a_group_of_one_is_never_ejected() {
    let gw = gateway(&[9001], Balance::RoundRobin);
    let t0 = Instant::now();
    for _ in 0..10 {
        let (_, mut lease) = send(&gw, t0, &mut request("h", "/"));
        assert_eq!(lease.failed(t0, "connection refused"), None);
    }
    assert_eq!(gw.status(t0)[0].health, Health::Up);
}

#[test]
fn a_connect_failure_goes_to_the_next_backend_each_at_most_once() {
    let gw = gateway(&[9001, 9002, 9003], Balance::RoundRobin);
    let t0 = Instant::now();
    let mut r = request("h", "/");
    let (port, mut lease) = send(&gw, t0, &mut r);
    assert_eq!(port, 9001);
    let (next, _) = lease.connect_failed(t0, "connection refused", &mut r);
    assert_eq!(next.map(|b| b.addr.port), Some(9002));
    assert_eq!((r.port, r.headers.get_str("host")), (9002, Some("127.0.0.1:9002")));
    let (next, _) = lease.connect_failed(t0, "connection refused", &mut r);
    assert_eq!(next.map(|b| b.addr.port), Some(9003));
    let (next, _) = lease.connect_failed(t0, "connection refused", &mut r);
    assert_eq!(next, None, "every backend tried");
    let in_flight: Vec<u32> = gw.status(t0).iter().map(|s| s.in_flight).collect();
    assert_eq!(in_flight, [0, 0, 1], "the lease holds only the backend it is on");
    drop(lease);
    assert!(gw.status(t0).iter().all(|s| s.in_flight == 0));
}

#[test]
fn active_checks_take_a_backend_out_and_bring_it_back() {
    let mut group = GroupSpec::new("web", backends(&[9001, 9002]));
    group.health.path = Some("/healthz".into());
    group.health.interval = Duration::from_secs(2);
    let gw = Gateway::new(GatewaySpec::single(group), 3).unwrap();
    let t0 = Instant::now();
    let probes = gw.due_checks(t0);
    assert_eq!(probes.iter().map(|p| (p.addr.port, p.path.as_str())).collect::<Vec<_>>(), [(9001, "/healthz"), (9002, "/healthz")]);
    assert!(gw.due_checks(t0).is_empty(), "running checks are not due again");
    assert_eq!(gw.poll_timeout(), None);
    let line = gw.check_done(&probes[0], Ok(503), t0).unwrap();
    assert_eq!(line, "backend http://127.0.0.1:9001 of group \"web\" is down: its health check answered 503");
    assert_eq!(gw.check_done(&probes[1], Ok(200), t0), None);
    assert_eq!(gw.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    for _ in 0..3 {
        assert_eq!(send(&gw, t0, &mut request("h", "/")).0, 9002);
    }
    let t1 = t0 + Duration::from_secs(2);
    let probes = gw.due_checks(t1);
    assert_eq!(probes.len(), 2);
    let line = gw.check_done(&probes[1], Err("connect timed out".into()), t1).unwrap();
    assert!(line.ends_with("is down: its health check failed: connect timed out"), "{line}");
    let refused = gw.admit(t1, &mut request("h", "/"), &client("192.0.2.1"), false, None).unwrap_err();
    assert_eq!(refused, Refusal::AllDown { group: "web".into() });
    assert_eq!(refused.status(), 503);
    let line = gw.check_done(&probes[0], Ok(204), t1).unwrap();
    assert!(line.ends_with("is up again: its health check answered 2xx"), "{line}");
    assert_eq!(send(&gw, t1, &mut request("h", "/")).0, 9001);
}

#[test]
fn routes_pick_groups_rewrite_paths_and_set_fields() {
    let spec = GatewaySpec {
        groups: vec![GroupSpec::new("site", backends(&[9001])), GroupSpec::new("api", backends(&[9002]))],
        routes: vec![
            RouteSpec::to_group("site"),
            RouteSpec {
                path_prefix: "/api".into(),
                rewrite_prefix: Some(String::new()),
                set_headers: vec![("X-Api".into(), "1".into())],
                remove_headers: vec!["cookie".into()],
                ..RouteSpec::to_group("api")
            },
            RouteSpec { host: Some("keep.test".into()), preserve_host: true, ..RouteSpec::to_group("site") },
        ],
        forwarded_headers: false,
    };
    let gw = Gateway::new(spec, 1).unwrap();
    let t0 = Instant::now();
    let mut r = request("shop.test", "/api/users?id=3");
    r.headers.append("cookie", "a=b");
    let (port, _l) = send(&gw, t0, &mut r);
    assert_eq!((port, r.path.as_str()), (9002, "/users?id=3"));
    assert_eq!((r.headers.get_str("x-api"), r.headers.contains("cookie")), (Some("1"), false));
    assert!(!r.headers.contains("x-forwarded-for"), "forwarded fields off");
    let mut r = request("keep.test:8080", "/");
    let (port, _l) = send(&gw, t0, &mut r);
    assert_eq!((port, r.headers.get_str("host")), (9001, Some("keep.test:8080")));

    let only_api = GatewaySpec { routes: vec![RouteSpec { path_prefix: "/api".into(), ..RouteSpec::to_group("api") }], ..GatewaySpec::single(GroupSpec::new("api", backends(&[9002]))) };
    gw.reload(only_api).unwrap();
    let refused = gw.admit(t0, &mut request("shop.test", "/about"), &client("192.0.2.1"), false, None).unwrap_err();
    assert_eq!(refused.to_string(), "no route for shop.test/about");
    assert_eq!(refused.status(), 404);
}

#[test]
fn a_reload_keeps_state_of_backends_that_stay_and_drains_the_others() {
    let gw = gateway(&[9001, 9002], Balance::RoundRobin);
    let t0 = Instant::now();
    let (_, held) = send(&gw, t0, &mut request("h", "/"));
    let (_, mut failing) = send(&gw, t0, &mut request("h", "/"));
    failing.responded(500, t0);
    drop(failing);
    let bad = GatewaySpec::single(GroupSpec::new("web", Vec::new()));
    assert_eq!(gw.reload(bad).unwrap_err(), "group \"web\" has no backend");
    assert_eq!(gw.status(t0).len(), 2, "an invalid spec changes nothing");
    let mut group = GroupSpec::new("web", backends(&[9002, 9003]));
    group.balance = Balance::LeastConn;
    gw.reload(GatewaySpec::single(group)).unwrap();
    let status = gw.status(t0);
    assert_eq!(status.iter().map(|s| s.backend.addr.port).collect::<Vec<_>>(), [9002, 9003]);
    assert_eq!((status[0].requests, status[1].requests), (1, 0), "9002 kept its count");
    // The removed 9001 finishes its request; nothing new goes there.
    for _ in 0..4 {
        assert_ne!(send(&gw, t0, &mut request("h", "/")).0, 9001);
    }
    drop(held);
    assert_eq!(gw.status(t0).len(), 2);
}

/// A waker that counts how often it was woken.
struct Count(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

fn woken(count: &Count) -> usize {
    count.0.load(std::sync::atomic::Ordering::SeqCst)
}

fn limited(ports: &[u16], max_conns: u32, queue_limit: usize) -> Gateway {
    let mut group = GroupSpec::new("web", backends(ports));
    group.limits = LimitSpec { max_conns: Some(max_conns), queue_limit, queue_timeout: Duration::from_secs(5) };
    Gateway::new(GatewaySpec::single(group), 7).unwrap()
}

fn queue(gw: &Gateway, now: Instant, waker: &Waker) -> Ticket {
    match gw.admit(now, &mut request("shop.test", "/x"), &client("192.0.2.1"), false, Some(waker)).unwrap() {
        Admitted::Queued(ticket) => ticket,
        Admitted::Now(lease) => panic!("not queued: {lease:?}"),
    }
}

#[test]
fn past_the_limit_requests_wait_in_order_and_each_freed_slot_goes_to_the_first() {
    let gw = limited(&[9001, 9002], 1, 10);
    assert!(gw.limits_connections());
    let t0 = Instant::now();
    let (a, first) = send(&gw, t0, &mut request("h", "/"));
    let (b, second) = send(&gw, t0, &mut request("h", "/"));
    assert_eq!((a, b), (9001, 9002));
    let (w1, waker1) = counting();
    let (w2, waker2) = counting();
    let one = queue(&gw, t0, &waker1);
    let two = queue(&gw, t0, &waker2);
    assert_eq!(gw.queued(), [("web".to_owned(), 2)]);
    // Not granted yet: it still waits, the request untouched.
    let mut r = request("shop.test", "/x");
    assert!(one.claim(t0, &mut r).is_none());
    assert_eq!(r.port, 1);
    drop(second);
    assert_eq!((woken(&w1), woken(&w2)), (1, 0), "the first in the queue is woken");
    let lease = one.claim(t0, &mut r).unwrap();
    assert_eq!((r.port, r.headers.get_str("x-forwarded-host")), (9002, Some("shop.test")));
    assert_eq!(gw.status(t0)[1].in_flight, 1);
    // The second leaves the queue unserved; the next slot freed has nobody to go to.
    drop(two);
    assert_eq!(gw.queued(), [("web".to_owned(), 0)]);
    drop(first);
    drop(lease);
    assert_eq!(gw.status(t0).iter().map(|s| s.in_flight).sum::<u32>(), 0);
}

#[test]
fn a_ticket_granted_but_dropped_passes_its_backend_on() {
    let gw = limited(&[9001], 1, 10);
    let t0 = Instant::now();
    let (_, held) = send(&gw, t0, &mut request("h", "/"));
    let (w1, waker1) = counting();
    let (w2, waker2) = counting();
    let one = queue(&gw, t0, &waker1);
    let two = queue(&gw, t0, &waker2);
    drop(held);
    assert_eq!(woken(&w1), 1);
    // Its client left before it claimed the grant: the next one gets it.
    drop(one);
    assert_eq!(woken(&w2), 1);
    let mut r = request("shop.test", "/x");
    let lease = two.claim(t0, &mut r).unwrap();
    assert_eq!(r.port, 9001);
    assert_eq!(gw.status(t0)[0].in_flight, 1);
    drop(lease);
}

#[test]
fn a_full_queue_refuses_at_once_and_a_wait_times_out_with_its_reason() {
    let gw = limited(&[9001], 2, 1);
    let t0 = Instant::now();
    let _held = [send(&gw, t0, &mut request("h", "/")).1, send(&gw, t0, &mut request("h", "/")).1];
    let (_, waker) = counting();
    let ticket = queue(&gw, t0, &waker);
    let refused = gw.admit(t0, &mut request("h", "/"), &client("192.0.2.1"), false, Some(&waker)).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "every backend of group \"web\" has 2 requests in flight, its limit, and 1 more wait in its queue, which is full"
    );
    assert_eq!(refused.status(), 503);
    assert_eq!(ticket.deadline(), t0 + Duration::from_secs(5));
    let late = ticket.timed_out(t0 + Duration::from_secs(5));
    assert_eq!(late.to_string(), "waited 5.0 s in the queue of group \"web\" for a backend below its limit of 2 requests in flight");
    assert_eq!(late.status(), 503);
    // Down, not full: 503 at once, not queued.
    let down = limited(&[9001], 1, 10);
    let probes = {
        let mut g = GroupSpec::new("web", backends(&[9001]));
        g.health.path = Some("/h".into());
        g.limits.max_conns = Some(1);
        down.reload(GatewaySpec::single(g)).unwrap();
        down.due_checks(t0)
    };
    down.check_done(&probes[0], Ok(500), t0);
    let refused = down.admit(t0, &mut request("h", "/"), &client("192.0.2.1"), false, Some(&waker)).unwrap_err();
    assert_eq!(refused, Refusal::AllDown { group: "web".into() });
}

#[test]
fn a_reload_raising_the_limit_serves_the_queue() {
    let gw = limited(&[9001], 1, 10);
    let t0 = Instant::now();
    let (_, _held) = send(&gw, t0, &mut request("h", "/"));
    let (w, waker) = counting();
    let ticket = queue(&gw, t0, &waker);
    let mut group = GroupSpec::new("web", backends(&[9001]));
    group.limits.max_conns = Some(2);
    gw.reload(GatewaySpec::single(group)).unwrap();
    assert_eq!(woken(&w), 1);
    assert!(ticket.claim(t0, &mut request("h", "/")).is_some());
    gw.reload(GatewaySpec::single(GroupSpec::new("web", backends(&[9001])))).unwrap();
    assert!(!gw.limits_connections());
}
