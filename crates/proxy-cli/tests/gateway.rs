//! Reverse mode as a gateway over several backends, end to end: balancing, a refusing backend
//! skipped, active health checks taking backends out and bringing them back, 503 when none is
//! left, what the backends are told about the client, connection limits and the queue,
//! configuration reloaded under a long download.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// A backend answering `/healthz` with whatever `health` holds, and anything else `200`
/// with its `name` as the body; it counts what it served besides health checks.
struct Backend {
    server: TcpServer,
    health: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let health = Arc::new(AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let (h, s) = (Arc::clone(&health), Arc::clone(&served));
        let server = TcpServer::start(move |tcp: TcpStream| {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let mut wire = Wire::new(tcp);
            while let Ok(Some(head)) = wire.read_head(64 * 1024) {
                let (status, body) = match head.start.split(' ').nth(1) {
                    Some("/healthz") => (h.load(Ordering::SeqCst), "health\n".to_owned()),
                    _ => {
                        s.fetch_add(1, Ordering::SeqCst);
                        (200, format!("{name}\n"))
                    }
                };
                let close = head.has_token("connection", "close");
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{}\r\n{body}",
                    body.len(),
                    if close { "Connection: close\r\n" } else { "" }
                );
                if wire.write_all(answer.as_bytes()).is_err() || close {
                    return;
                }
            }
        });
        Backend { server, health, served }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// One short client: `GET path` with `Connection: close`; the status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).expect("the whole answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Poll `f` every 50 ms for at most `limit`, until it is true.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn three_backends_share_the_requests_evenly() {
    let backends = [Backend::start("a"), Backend::start("b"), Backend::start("c")];
    for lb in ["round-robin", "least-conn", "random"] {
        let urls: Vec<String> = backends.iter().map(Backend::url).collect();
        let before: Vec<usize> = backends.iter().map(Backend::served).collect();
        let proxy = Proxy::start(&["--reverse", &urls[0], "--reverse", &urls[1], "--reverse", &urls[2], "--lb", lb]);
        for _ in 0..300 {
            assert_eq!(get(proxy.port(), "/x").0, 200);
        }
        let shares: Vec<usize> = backends.iter().zip(&before).map(|(b, n)| b.served() - n).collect();
        assert_eq!(shares.iter().sum::<usize>(), 300);
        // Round robin and least-conn (one request at a time) are exact; the random ones
        // within what chance allows.
        let slack = if matches!(lb, "round-robin" | "least-conn") { 10 } else { 40 };
        for share in &shares {
            assert!(share.abs_diff(100) <= slack, "{lb}: {shares:?}");
        }
    }
}

#[test]
fn p2c_sends_less_to_a_slow_backend() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let slow = TcpServer::start(|tcp: TcpStream| {
        let mut wire = Wire::new(tcp);
        while let Ok(Some(_)) = wire.read_head(64 * 1024) {
            std::thread::sleep(Duration::from_millis(30));
            if wire.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n").is_err() {
                return;
            }
        }
    });
    let proxy = Proxy::start(&["--reverse", &a.url(), "--reverse", &b.url(), "--reverse", &slow.url(""), "--lb", "p2c"]);
    let mut slow_answers = 0;
    for _ in 0..150 {
        let (status, body) = get(proxy.port(), "/x");
        assert_eq!(status, 200);
        slow_answers += usize::from(body == "slow\n");
    }
    assert_eq!(a.served() + b.served() + slow_answers, 150);
    assert!(slow_answers <= 10, "the slow backend answered {slow_answers} of 150");
    assert!(a.served() >= 30 && b.served() >= 30, "a {} b {}", a.served(), b.served());
}

#[test]
fn hashing_on_a_header_keeps_a_user_on_one_backend() {
    let backends = [Backend::start("a"), Backend::start("b"), Backend::start("c")];
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let proxy = Proxy::start(&["--reverse", &urls[0], "--reverse", &urls[1], "--reverse", &urls[2], "--lb", "hash:header:x-user"]);
    let ask = |user: &str| {
        let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(tcp, "GET / HTTP/1.1\r\nHost: gw.test\r\nX-User: {user}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer.rsplit("\r\n\r\n").next().unwrap().to_owned()
    };
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..30 {
        let first = ask(&format!("u{user}"));
        for _ in 0..3 {
            assert_eq!(ask(&format!("u{user}")), first, "user u{user} moved");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "30 users spread over every backend: {seen:?}");
}

#[test]
fn a_backend_that_refuses_is_skipped_and_ejected() {
    let good = Backend::start("good");
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let proxy = Proxy::start(&["--reverse", &dead, "--reverse", &good.url()]);
    for _ in 0..20 {
        assert_eq!(get(proxy.port(), "/x"), (200, "good\n".to_owned()));
    }
    assert_eq!(good.served(), 20);
    let line = "ejected for 10 s: 3 failures in a row, the last: connection refused";
    assert!(eventually(Duration::from_secs(5), || proxy.stderr_text().contains(line)), "{}", proxy.stderr_text());
}

#[test]
fn health_checks_take_backends_out_bring_them_back_and_503_when_none_is_left() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let proxy = Proxy::start(&[
        "--reverse", &a.url(), "--reverse", &b.url(),
        "--health-check", "/healthz", "--health-interval", "0.2", "--health-timeout", "1",
    ]);
    let port = proxy.port();
    let bodies = |n: usize| (0..n).map(|_| get(port, "/x")).collect::<Vec<_>>();
    assert!(bodies(4).iter().all(|(status, _)| *status == 200));

    a.health.store(500, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || bodies(4).iter().all(|r| *r == (200, "b\n".to_owned()))),
        "a, answering 500 to its checks, still gets requests"
    );
    b.health.store(503, Ordering::SeqCst);
    let all_down = (503, "service unavailable: every backend of group \"default\" is down\n".to_owned());
    assert!(eventually(Duration::from_secs(5), || get(port, "/x") == all_down), "no 503 with every backend down");
    // At once: nothing is tried.
    let started = Instant::now();
    assert_eq!(get(port, "/x"), all_down);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The refusal is the flow's error, in the flow log as any other.
    let refused = |l: &str| l.contains("GET ") && l.contains("/x -> ") && l.contains("every backend of group \"default\" is down");
    assert!(proxy.wait_stdout(Duration::from_secs(5), refused).is_some(), "{:?}", proxy.stdout_lines());

    a.health.store(204, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || get(port, "/x") == (200, "a\n".to_owned())), "a did not come back");
    let stderr = proxy.stderr_text();
    for line in [
        "of group \"default\" is down: its health check answered 500",
        "of group \"default\" is down: its health check answered 503",
        "is up again: its health check answered 2xx",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }
}

#[test]
fn backends_are_told_who_asked() {
    let origin = Origin::start();
    let proxy = Proxy::start(&["--reverse", &origin.url("")]);
    let (status, body) = get(proxy.port(), "/headers");
    assert_eq!(status, 200);
    for field in [
        format!("Host: {}", origin.authority()),
        "x-forwarded-for: 127.0.0.1".to_owned(),
        "x-forwarded-proto: http".to_owned(),
        "x-forwarded-host: gw.test".to_owned(),
        "forwarded: for=127.0.0.1;proto=http;host=\"gw.test\"".to_owned(),
    ] {
        assert!(body.lines().any(|l| l == field), "no {field:?} in:\n{body}");
    }
    let quiet = Proxy::start(&["--reverse", &origin.url(""), "--no-forwarded"]);
    let (_, body) = get(quiet.port(), "/headers");
    assert!(!body.to_ascii_lowercase().contains("forwarded"), "{body}");
}

/// One keep-alive client connection: `GET path`, the answer's body.
fn ask(wire: &mut Wire, path: &str) -> String {
    wire.send(format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n"));
    let response = wire.read_response("GET").expect("an answer");
    String::from_utf8_lossy(&response.body).into_owned()
}

fn hangup(proxy: &Proxy) {
    // SAFETY: kill(2) with the pid of the proxy this test started.
    assert_eq!(unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) }, 0);
}

#[test]
fn a_config_file_routes_and_reloads_on_sighup_without_dropping_connections() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new("gateway-config");
    let file = dir.join("gateway.toml");
    // The README's example.
    std::fs::write(&file, format!("[[route]]\nupstreams = [\"{}\", \"{}\"]\nlb = \"round-robin\"\n", a.url(), a.url())).unwrap();
    let proxy = Proxy::start(&["--config", file.to_str().unwrap()]);
    let mut kept = Wire::connect(proxy.port());
    assert_eq!(ask(&mut kept, "/x"), "a\n");

    std::fs::write(
        &file,
        format!(
            "max-fails = 2\n\n[[upstream]]\nname = \"b\"\nbackends = [\"{}\"]\n\n[[route]]\npath = \"/b\"\nrewrite = \"\"\nupstream = \"b\"\n\n[[route]]\nupstreams = [\"{}\"]\n",
            b.url(),
            a.url()
        ),
    )
    .unwrap();
    hangup(&proxy);
    assert!(eventually(Duration::from_secs(5), || proxy.stderr_text().contains("reloaded, 2 routes over 2 groups")), "{}", proxy.stderr_text());
    // The connection kept alive across the reload routes its next request by the new routes.
    assert_eq!(ask(&mut kept, "/b/x"), "b\n");
    assert_eq!(ask(&mut kept, "/x"), "a\n");
    assert!(proxy.stderr_text().contains("flags changed; they take effect when sansproxy restarts"));

    // A broken file is refused with its line; the routes in place keep serving.
    std::fs::write(&file, "[[route]]\nupstream = \"gone\"\n").unwrap();
    hangup(&proxy);
    let refused = "configuration not reloaded, the old one keeps serving";
    assert!(eventually(Duration::from_secs(5), || proxy.stderr_text().contains(refused)), "{}", proxy.stderr_text());
    assert!(proxy.stderr_text().contains("line 1: upstream \"gone\" is not defined"), "{}", proxy.stderr_text());
    assert_eq!(ask(&mut kept, "/b/y"), "b\n");
    assert_eq!(get(proxy.port(), "/b/z"), (200, "b\n".to_owned()));
}

#[test]
fn routes_with_a_listen_of_their_own_make_a_second_gateway_beside_a_forward_proxy() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let dir = TempDir::new("gateway-listeners");
    let file = dir.join("gateway.toml");
    let config = |second: &Backend, third: Option<&Backend>| {
        let mut text = format!(
            "mode = [\"regular@0\"]\n\n[[route]]\nupstreams = [\"{}\"]\n\n[[route]]\nlisten = \"0\"\nupstreams = [\"{}\"]\n",
            a.url(),
            second.url()
        );
        if let Some(third) = third {
            text += &format!(
                "\n[[route]]\nlisten = \"127.0.0.1:1\"\nupstreams = [\"{}\"]\n",
                third.url()
            );
        }
        text
    };
    std::fs::write(&file, config(&b, None)).unwrap();
    let proxy = Proxy::start(&["--config", file.to_str().unwrap()]);
    let reverse = proxy.listeners("reverse", 2);
    assert_eq!(get(reverse[0], "/x"), (200, "a\n".to_owned()));
    assert_eq!(get(reverse[1], "/x"), (200, "b\n".to_owned()));
    // The forward proxy beside them takes absolute URLs to anywhere.
    let regular = proxy.listener("regular");
    let mut tcp = TcpStream::connect(("127.0.0.1", regular)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        tcp,
        "GET {}/y HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        c.url(),
        c.server.authority()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("c\n"),
        "{answer}"
    );

    // A reload changes each listener's own routes.
    std::fs::write(&file, config(&c, None)).unwrap();
    hangup(&proxy);
    assert!(
        eventually(Duration::from_secs(5), || get(reverse[1], "/x")
            == (200, "c\n".to_owned())),
        "{}",
        proxy.stderr_text()
    );
    assert_eq!(get(reverse[0], "/x"), (200, "a\n".to_owned()));
    // One that would add a listener is refused, and what serves stays.
    std::fs::write(&file, config(&b, Some(&b))).unwrap();
    hangup(&proxy);
    let refused = "the reverse listeners changed";
    assert!(
        eventually(Duration::from_secs(5), || proxy
            .stderr_text()
            .contains(refused)),
        "{}",
        proxy.stderr_text()
    );
    assert_eq!(get(reverse[1], "/x"), (200, "c\n".to_owned()));
}

#[test]
fn watch_config_applies_a_changed_file_by_itself() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = TempDir::new("gateway-watch");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, format!("[[route]]\nupstreams = [\"{}\"]\n", a.url())).unwrap();
    let proxy = Proxy::start(&["--config", file.to_str().unwrap(), "--watch-config"]);
    assert_eq!(get(proxy.port(), "/x"), (200, "a\n".to_owned()));
    // A different length as well as a new time: the change shows whatever the clock's grain.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, format!("[[route]]\nupstreams = [\"{}\"]\nlb = \"least-conn\"\n", b.url())).unwrap();
    assert!(eventually(Duration::from_secs(5), || get(proxy.port(), "/x") == (200, "b\n".to_owned())), "{}", proxy.stderr_text());
}

#[test]
fn a_config_file_with_a_mistake_is_refused_at_start_with_its_line() {
    let dir = TempDir::new("gateway-bad");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "max-fails = 3\n[[route]]\nupstreams = [\"http://127.0.0.1:1\"]\nhots = \"x\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sansproxy")).args(["--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml: line 2: unknown key \"hots\" in [[route]]"), "{stderr}");
}

/// The samples of an OpenMetrics text as Python's `prometheus_client` parses them:
/// `name|label=value,...|value`, labels sorted.
fn parsed_by_prometheus_client(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))
        print(f'{s.name}|{labels}|{float(s.value)}')
"#;
    let mut child = std::process::Command::new(support::ws::python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn metrics_count_flows_per_backend_and_show_backend_state() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let metrics_port = unused_port();
    let proxy = Proxy::start(&[
        "--reverse", &a.url(), "--reverse", &b.url(), "--reverse", &dead,
        "--metrics", &format!("127.0.0.1:{metrics_port}"), "-q",
    ]);
    for _ in 0..12 {
        assert_eq!(get(proxy.port(), "/x").0, 200);
    }
    let listener = format!("reverse@{}", proxy.port());
    let want = |samples: &[String], line: String| assert!(samples.contains(&line), "no {line:?} in:\n{}", samples.join("\n"));
    let samples = parsed_by_prometheus_client(&scrape(metrics_port));
    // The dead backend's turns went to the others, then it was ejected.
    let counted: f64 = samples
        .iter()
        .filter(|s| s.starts_with("sansproxy_requests_total|"))
        .map(|s| s.rsplit('|').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted, 12.0, "{samples:?}");
    for backend in [a.url(), b.url()] {
        want(&samples, format!("sansproxy_backend_up|backend={backend},group=default,listener={listener}|1.0"));
        want(&samples, format!("sansproxy_backend_in_flight|backend={backend},group=default,listener={listener}|0.0"));
    }
    want(&samples, format!("sansproxy_backend_up|backend={dead},group=default,listener={listener}|0.0"));
    want(&samples, format!("sansproxy_queue_length|group=default,listener={listener}|0.0"));
    let served = a.served() as f64;
    want(&samples, format!("sansproxy_requests_total|backend={},listener={listener},status=2xx|{served:.1}", a.url()));
    want(&samples, format!("sansproxy_request_duration_seconds_count|backend={},listener={listener}|{served:.1}", a.url()));
    assert!(samples.iter().any(|s| s.starts_with(&format!("sansproxy_upstream_idle_connections|listener={listener}|"))));
}

/// A backend that answers each request after `delay`, and records how many connections it
/// had open at most at once.
struct SlowBackend {
    server: TcpServer,
    open_now: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

impl SlowBackend {
    fn start(delay: Duration) -> SlowBackend {
        let open_now = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let (now, most) = (Arc::clone(&open_now), Arc::clone(&most_open));
        let server = TcpServer::start(move |tcp: TcpStream| {
            let open = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(open, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let mut wire = Wire::new(tcp);
            while let Ok(Some(_)) = wire.read_head(64 * 1024) {
                std::thread::sleep(delay);
                if wire.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n").is_err() {
                    break;
                }
            }
            now.fetch_sub(1, Ordering::SeqCst);
        });
        SlowBackend { server, open_now, most_open }
    }
}

/// `n` short clients at once; each one's status, body and how long it took.
fn at_once(port: u16, n: usize) -> Vec<(u16, String, Duration)> {
    let clients: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let (status, body) = get(port, "/x");
                (status, body, start.elapsed())
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

#[test]
fn a_connection_limit_queues_requests_and_answers_503_when_the_queue_is_full_or_too_slow() {
    // Requests take 300 ms; two at a time; six clients at once all get through the queue, the
    // backend never seeing more than two connections.
    let backend = SlowBackend::start(Duration::from_millis(300));
    let url = backend.server.url("");
    let proxy = Proxy::start(&["--reverse", &url, "--upstream-max-conns", "2", "--queue-timeout", "5"]);
    let answers = at_once(proxy.port(), 6);
    assert!(answers.iter().all(|(status, body, _)| *status == 200 && body == "slow\n"), "{answers:?}");
    assert_eq!(backend.most_open.load(Ordering::SeqCst), 2, "the backend saw more than two connections at once");
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    assert!(slowest >= Duration::from_millis(850), "six requests of 300 ms two at a time took {slowest:?}");
    drop(proxy);

    // Requests take 3 s; two at a time, three may wait a second: of ten clients, two are
    // served, three wait and get 503 after a second, five get 503 at once.
    let backend = SlowBackend::start(Duration::from_secs(3));
    let url = backend.server.url("");
    let proxy = Proxy::start(&[
        "--reverse", &url, "--upstream-max-conns", "2", "--queue-limit", "3", "--queue-timeout", "1",
    ]);
    let answers = at_once(proxy.port(), 10);
    let served = answers.iter().filter(|a| a.0 == 200).count();
    let full: Vec<_> = answers.iter().filter(|a| a.1.contains("which is full")).collect();
    let waited: Vec<_> = answers.iter().filter(|a| a.1.contains("waited 1.0 s in the queue")).collect();
    assert_eq!((served, full.len(), waited.len()), (2, 5, 3), "{answers:?}");
    assert!(full.iter().all(|a| a.0 == 503 && a.2 < Duration::from_millis(500)), "a full queue answers at once: {full:?}");
    assert!(waited.iter().all(|a| a.0 == 503 && a.2 >= Duration::from_secs(1) && a.2 < Duration::from_secs(2)), "{waited:?}");
    assert!(full[0].1.contains("every backend of group \"default\" has 2 requests in flight"), "{}", full[0].1);
    assert_eq!(backend.most_open.load(Ordering::SeqCst), 2);
    assert!(proxy.stderr_text().contains("waited 1.0 s in the queue of group \"default\""), "{}", proxy.stderr_text());
    drop(backend.open_now);
}

/// A backend streaming `/stream`: 100 pieces of 16 KiB of the test pattern, 100 ms apart;
/// anything else is answered with its name.
fn streaming_backend(name: &'static str) -> TcpServer {
    TcpServer::start(move |tcp: TcpStream| {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
        let mut wire = Wire::new(tcp);
        while let Ok(Some(head)) = wire.read_head(64 * 1024) {
            if head.start.split(' ').nth(1) == Some("/stream") {
                let (pieces, piece) = (100u64, 16 * 1024u64);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", pieces * piece);
                if wire.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for i in 0..pieces {
                    std::thread::sleep(Duration::from_millis(100));
                    if wire.write_all(&pattern(i * piece, piece as usize)).is_err() {
                        return;
                    }
                }
            } else {
                let body = format!("{name}\n");
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if wire.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn a_download_started_before_a_reload_finishes_intact_on_the_old_backend() {
    let (a, b) = (streaming_backend("a"), streaming_backend("b"));
    let dir = TempDir::new("gateway-reload-download");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, format!("[[route]]\nupstreams = [\"{}\"]\n", a.url(""))).unwrap();
    let proxy = Proxy::start(&["--config", file.to_str().unwrap(), "-q"]);
    let port = proxy.port();
    let download = std::thread::spawn(move || {
        let mut wire = Wire::connect(port);
        wire.send("GET /stream HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        let mut check = PatternCheck::new();
        let head = wire.read_response_with("GET", &mut |d| check.feed(d)).expect("the whole download");
        (head.status().unwrap(), check.len(), check.mismatch())
    });
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&file, format!("[[route]]\nupstreams = [\"{}\"]\n", b.url(""))).unwrap();
    hangup(&proxy);
    assert!(eventually(Duration::from_secs(5), || get(port, "/x") == (200, "b\n".to_owned())), "{}", proxy.stderr_text());
    let (status, len, mismatch) = download.join().unwrap();
    assert_eq!((status, len, mismatch), (200, 100 * 16 * 1024, None), "the download of the old configuration");
}

/// `n` short clients at once, each asking for `path`: each one's status and body.
fn at_once_for(port: u16, n: usize, path: &'static str) -> Vec<(u16, String)> {
    let clients: Vec<_> = (0..n).map(|_| std::thread::spawn(move || get(port, path))).collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

/// The streams of many short clients on one HTTP/2 connection at once: the first client's
/// connection becomes a carrier, and the clients after it join it, whichever connection they
/// come on. On one driver thread: one connection for all.
fn clients_share_one_http2_connection(origin: &support::h2origin::H2Origin, proxy: &Proxy) {
    assert_eq!(get(proxy.port(), "/hello"), (200, HELLO.to_owned()), "{}", proxy.stderr_text());
    assert_eq!(origin.connections(), 1);
    let took = twenty_at_once(origin, proxy);
    assert!(took < Duration::from_secs(3), "20 requests of 300 ms took {took:?}: not at once");
    assert_eq!(origin.connections(), 1, "one connection carried every client's stream");
    assert_eq!(origin.requests().len(), 21);
}

/// 20 clients at once, each answered after 300 ms; how long they took in all.
fn twenty_at_once(origin: &support::h2origin::H2Origin, proxy: &Proxy) -> Duration {
    let start = Instant::now();
    // Each answer takes 300 ms: one after another, 20 would take 6 s.
    for (status, body) in at_once_for(proxy.port(), 20, "/slow?ms=300") {
        assert_eq!((status, body.as_str()), (200, HELLO), "{}", proxy.stderr_text());
    }
    assert!(origin.failures().is_empty(), "{:?}", origin.failures());
    start.elapsed()
}

#[test]
fn short_clients_of_an_h2c_backend_share_one_connection_at_once() {
    let origin = support::h2origin::H2Origin::start_h2c();
    let metrics_port = unused_port();
    let upstream = format!("h2c://{}", origin.authority());
    let proxy = Proxy::start(&["--reverse", &upstream, "--threads", "1", "--metrics", &format!("127.0.0.1:{metrics_port}"), "-q"]);
    clients_share_one_http2_connection(&origin, &proxy);
    // The carrier, and the 21 streams that joined it (the first client's too: its new
    // connection became the carrier as soon as it opened), none open now.
    let samples = parsed_by_prometheus_client(&scrape(metrics_port));
    let listener = format!("reverse@{}", proxy.port());
    for want in [
        format!("sansproxy_upstream_carriers|listener={listener}|1.0"),
        format!("sansproxy_upstream_carried_streams|listener={listener}|0.0"),
        format!("sansproxy_upstream_streams_joined|listener={listener}|21.0"),
    ] {
        assert!(samples.contains(&want), "no {want:?} in:\n{}", samples.join("\n"));
    }
}

#[test]
fn short_clients_of_an_https_http2_backend_share_one_tls_connection_at_once() {
    let pki = Pki::new();
    let origin = support::h2origin::H2Origin::start_tls(&pki.valid);
    let proxy = Proxy::start(&["--reverse", &origin.url(""), "--upstream-ca", pki.origin_ca_arg(), "--threads", "1", "-q"]);
    clients_share_one_http2_connection(&origin, &proxy);
}

#[test]
fn with_a_runtime_per_core_each_thread_has_its_carrier_and_later_clients_join_them() {
    let origin = support::h2origin::H2Origin::start_h2c();
    let proxy = Proxy::start(&["--reverse", &format!("h2c://{}", origin.authority()), "--threads", "2", "-q"]);
    // A first burst may open a connection per client before the first of each thread is up.
    twenty_at_once(&origin, &proxy);
    let opened = origin.connections();
    assert!(opened <= 20, "{opened} connections for 20 clients");
    // Every thread has a carrier now: the next bursts open nothing.
    for _ in 0..2 {
        let took = twenty_at_once(&origin, &proxy);
        assert!(took < Duration::from_secs(3), "20 requests of 300 ms took {took:?}: not at once");
    }
    assert_eq!(origin.connections(), opened, "later clients joined the carriers");
    assert_eq!(origin.requests().len(), 60);
}
