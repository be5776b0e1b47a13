//! Soak: 50,000 requests over 200 keep-alive connections, about 2% of them abandoned half-way
//! by their client, with bodies from empty to a megabyte (Content-Length or chunked) checked
//! end to end, byte for byte or by hash; afterwards the proxy's descriptors and memory are
//! back where they were before.
//!
//! Every choice (kind of request, body size, framing, whether and where to abort) comes from
//! a pseudo-random generator seeded per connection from [`SEED`], so a failure replays.

use crate::support;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::pattern::pattern_piece;
use support::resources::{fd_summary, open_fds, raise_fd_limit, rss_kib, wait_fds_at_most};
use support::*;

const CONNECTIONS: usize = 200;
const REQUESTS: usize = 50_000;
const SEED: u64 = 0x5eed_50a6_2024_0001;
/// Requests in a thousand that the client abandons.
const ABORTS_PER_MILLE: u64 = 20;
/// Warm-up requests per connection, aborts included, before the memory baseline is taken.
const WARM_UP: usize = 10;
/// How much more resident memory than after the warm-up the proxy may keep once the soak is
/// over: allocator caches, not per-connection state (200 connections' worth of buffers would
/// be tens of megabytes).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// glibc's malloc raises its mmap and trim thresholds as the program frees big blocks, after
/// which freed buffers stay in the heap: resident memory would then measure the allocator's
/// history rather than what the proxy still holds. Pinned, a freed buffer of 64 KiB or more
/// goes back to the system, and one that stays allocated shows.
const MALLOC_FIXED: &[(&str, &str)] = &[("MALLOC_MMAP_THRESHOLD_", "65536"), ("MALLOC_TRIM_THRESHOLD_", "131072")];

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A body size: mostly small, some large enough for the proxy to splice.
    fn size(&mut self) -> usize {
        let max = match self.below(100) {
            0..=59 => 4 << 10,
            60..=91 => 64 << 10,
            92..=98 => 256 << 10,
            _ => 1 << 20,
        };
        self.below(max + 1) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `POST /echo`: the body comes back.
    Echo,
    /// `POST /sink`: the body's length and hash come back.
    Sink,
    /// `GET /big?n=N`: N pattern bytes.
    Big,
}

/// Where a client abandons a request.
#[derive(Debug, Clone, Copy)]
enum Abort {
    /// Partway through sending it.
    Sending,
    /// Right after sending it, reading nothing.
    Sent,
    /// Partway through reading the response.
    Reading,
}

/// One request as the generator picked it.
struct Plan {
    kind: Kind,
    size: usize,
    chunked: bool,
    abort: Option<Abort>,
}

impl Plan {
    fn pick(rng: &mut Rng, aborts: bool) -> Plan {
        let kind = match rng.below(10) {
            0..=3 => Kind::Echo,
            4..=6 => Kind::Sink,
            _ => Kind::Big,
        };
        let size = rng.size();
        let chunked = rng.below(4) == 0;
        let abort = (aborts && rng.below(1000) < ABORTS_PER_MILLE).then(|| match rng.below(3) {
            0 => Abort::Sending,
            1 => Abort::Sent,
            _ => Abort::Reading,
        });
        Plan { kind, size, chunked, abort }
    }
}

/// A request body: a tag naming the connection and request (so a response for another
/// request cannot pass for this one), then pattern bytes from an offset of its own.
fn body(conn: usize, seq: usize, size: usize) -> Vec<u8> {
    let tag = format!("{conn}:{seq};");
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&tag.as_bytes()[..tag.len().min(size)]);
    let start = (conn * 7919 + seq) as u64;
    while out.len() < size {
        let n = (size - out.len()).min(64 * 1024);
        out.extend_from_slice(pattern_piece(start + out.len() as u64, n));
    }
    out
}

/// The request's bytes: head and body, in one buffer.
fn request(origin: &Origin, plan: &Plan, body: &[u8]) -> Vec<u8> {
    let a = origin.authority();
    let mut out = match plan.kind {
        Kind::Big => format!("GET http://{a}/big?n={} HTTP/1.1\r\nHost: {a}\r\n\r\n", plan.size).into_bytes(),
        Kind::Echo | Kind::Sink => {
            let path = if matches!(plan.kind, Kind::Echo) { "echo" } else { "sink" };
            let framing = if plan.chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {}", body.len())
            };
            format!("POST http://{a}/{path} HTTP/1.1\r\nHost: {a}\r\n{framing}\r\n\r\n").into_bytes()
        }
    };
    if matches!(plan.kind, Kind::Echo | Kind::Sink) {
        if plan.chunked {
            for piece in body.chunks(8 * 1024 + 3) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(body);
        }
    }
    out
}

/// What one connection's worker saw.
#[derive(Default)]
struct Tally {
    done: usize,
    aborted: usize,
    connections: usize,
    /// Requests whose answer was not what was asked for.
    corrupt: Vec<String>,
}

/// Runs `requests` requests on connection number `conn`, reconnecting after each abort.
fn worker(port: u16, origin: &Origin, conn: usize, requests: usize, aborts: bool, stop: &AtomicBool) -> Tally {
    let mut rng = Rng(SEED ^ (conn as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut tally = Tally::default();
    let mut wire: Option<Wire> = None;
    for seq in 0..requests {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let plan = Plan::pick(&mut rng, aborts);
        let body = match plan.kind {
            Kind::Big => Vec::new(),
            Kind::Echo | Kind::Sink => body(conn, seq, plan.size),
        };
        let bytes = request(origin, &plan, &body);
        let w = wire.get_or_insert_with(|| {
            tally.connections += 1;
            Wire::connect(port)
        });
        let what = format!("connection {conn} request {seq}: {:?} of {} bytes (chunked: {})", plan.kind, plan.size, plan.chunked);
        if let Some(abort) = plan.abort {
            match abort {
                Abort::Sending => {
                    let cut = 1 + rng.below(bytes.len() as u64 - 1) as usize;
                    let _ = w.write_all(&bytes[..cut]);
                }
                Abort::Sent => {
                    let _ = w.write_all(&bytes);
                }
                Abort::Reading => {
                    let _ = w.write_all(&bytes);
                    // Read some of the response, head included (50 bytes at least), and hang
                    // up; never wait for more than the response has.
                    let body = if matches!(plan.kind, Kind::Sink) { 0 } else { plan.size as u64 };
                    let mut left = 1 + rng.below(body + 50) as usize;
                    let mut buf = vec![0; 16 * 1024];
                    let mut stream = w.stream();
                    while left > 0 {
                        match stream.read(&mut buf[..left.min(16 * 1024)]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => left = left.saturating_sub(n),
                        }
                    }
                }
            }
            wire = None;
            tally.aborted += 1;
            continue;
        }
        if let Err(e) = w.write_all(&bytes) {
            tally.corrupt.push(format!("{what}: sending: {e}"));
            wire = None;
            continue;
        }
        let outcome = match plan.kind {
            Kind::Echo => w.read_response("POST").map(|r| {
                if r.status != 200 || r.body != body {
                    Some(format!("{what}: status {}, {} bytes back, differing", r.status, r.body.len()))
                } else {
                    None
                }
            }),
            Kind::Sink => w.read_response("POST").map(|r| {
                let want = sink_reply(body.len() as u64, fnv1a64(&body));
                (r.status != 200 || r.text() != want).then(|| format!("{what}: {} {:?}, wanted {want:?}", r.status, r.text()))
            }),
            Kind::Big => {
                let mut check = PatternCheck::new();
                w.read_response_with("GET", &mut |d| check.feed(d)).map(|head| {
                    let ok = head.status().ok() == Some(200) && check.len() == plan.size as u64 && check.mismatch().is_none();
                    (!ok).then(|| format!("{what}: {:?}, {} bytes, mismatch at {:?}", head.start, check.len(), check.mismatch()))
                })
            }
        };
        match outcome {
            Ok(None) => tally.done += 1,
            Ok(Some(bad)) => {
                tally.corrupt.push(bad);
                wire = None;
            }
            Err(e) => {
                tally.corrupt.push(format!("{what}: {e}"));
                wire = None;
            }
        }
    }
    tally
}

/// Runs `per_conn` requests on each of [`CONNECTIONS`] connections at once.
fn run(port: u16, origin: &Arc<Origin>, per_conn: usize, aborts: bool) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|conn| {
            let (origin, stop) = (Arc::clone(origin), Arc::clone(&stop));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let tally = worker(port, &origin, conn, per_conn, aborts, &stop);
                    if !tally.corrupt.is_empty() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    tally
                })
                .expect("spawn a worker")
        })
        .collect();
    let mut total = Tally::default();
    for w in workers {
        let t = w.join().expect("a worker panicked");
        total.done += t.done;
        total.aborted += t.aborted;
        total.connections += t.connections;
        total.corrupt.extend(t.corrupt);
    }
    total
}

#[test]
fn fifty_thousand_requests_with_aborts_leave_nothing_behind() {
    raise_fd_limit(4 * CONNECTIONS + 256);
    let origin = Arc::new(Origin::start());
    let proxy = Proxy::start_with_env(MALLOC_FIXED, &["-q", "--no-intercept"]);
    let pid = proxy.pid();
    let (fds0, rss0) = (open_fds(pid), rss_kib(pid));

    // Warm up: the allocator and the runtime grow to their working size.
    let warm = run(proxy.port(), &origin, WARM_UP, true);
    assert!(warm.corrupt.is_empty(), "warm-up: {:?}", &warm.corrupt[..warm.corrupt.len().min(5)]);
    if let Err(n) = wait_fds_at_most(pid, fds0, Duration::from_secs(10)) {
        panic!("after the warm-up the proxy holds {n} descriptors, {fds0} before: {}", fd_summary(pid));
    }
    let rss_warm = rss_kib(pid);

    // The soak, with the proxy's memory sampled as it goes.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(Mutex::new((0u64, 0usize)));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let mut p = peak.lock().unwrap();
                p.0 = p.0.max(rss_kib(pid));
                p.1 = p.1.max(open_fds(pid));
                drop(p);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let start = Instant::now();
    let soak = run(proxy.port(), &origin, REQUESTS / CONNECTIONS, true);
    let took = start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let (rss_peak, fds_peak) = *peak.lock().unwrap();

    let fds_after = wait_fds_at_most(pid, fds0, Duration::from_secs(10));
    let rss_after = rss_kib(pid);
    println!(
        "soak: {} requests ({} completed, {} aborted) over {} connections in {took:.2?}; \
         proxy descriptors {fds0} before, {fds_peak} at peak, {fds_after:?} after; \
         RSS {rss0} KiB cold, {rss_warm} KiB warm, {rss_peak} KiB at peak, {rss_after} KiB after",
        soak.done + soak.aborted,
        soak.done,
        soak.aborted,
        soak.connections,
    );

    assert!(soak.corrupt.is_empty(), "{} bad answers, first: {:#?}", soak.corrupt.len(), &soak.corrupt[..soak.corrupt.len().min(5)]);
    assert_eq!(soak.done + soak.aborted, REQUESTS);
    assert!(soak.aborted > REQUESTS * ABORTS_PER_MILLE as usize / 2000, "only {} aborts", soak.aborted);
    if let Err(n) = fds_after {
        panic!("after the soak the proxy holds {n} descriptors, {fds0} before: {}", fd_summary(pid));
    }
    assert!(
        rss_after <= rss_warm + RSS_SLACK_KIB,
        "the proxy kept {rss_after} KiB after the soak, {rss_warm} KiB after the warm-up (slack {RSS_SLACK_KIB} KiB)"
    );
    // Still serving.
    checks::get_hello(checks::Via::Proxy(&proxy), &origin);
}
