//! What one keep-alive request costs the core alone, with no sockets: a reverse-mode client
//! connection (a gateway with one backend, as `sansproxy --reverse URL -q` runs it) asks
//! `GET /1k` over and over, its backend answers nginx's head and a 1 KiB body, and the events a
//! driver would feed (`DataReceived`, `WriteDrained`) go in as the driver feeds them.
//!
//! `cargo run --release -p proxy-core --example keepalive_cost [REQUESTS]` prints nanoseconds
//! per request: the part of the proxy's cost that is its own, without the kernel's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proxy_core::gateway::{Backend, Gateway, GatewaySpec, GroupSpec};
use proxy_core::{
    ClientInfo, Command, Config, ConnId, Connection, Event, HookSet, Mode, Scheme, ServerAddr,
};

/// Counts allocations, to report how many a request takes.
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a count is kept.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] =
    b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:18100\r\nUser-Agent: proxyload\r\nAccept: */*\r\n\r\n";

fn response() -> Bytes {
    let head = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 14:00:00 GMT\r\n\
                Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\
                Last-Modified: Fri, 04 Dec 2026 12:00:00 GMT\r\nConnection: keep-alive\r\n\
                ETag: \"6751a0c0-400\"\r\nAccept-Ranges: bytes\r\n\r\n";
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 1024));
    Bytes::from(bytes)
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let backend = Backend::parse("http://127.0.0.1:18080").expect("a backend URL");
    let gateway = Gateway::new(
        GatewaySpec::single(GroupSpec::new("default", vec![backend])),
        1,
    )
    .expect("a gateway");
    let config = Arc::new(Config {
        mode: Mode::Reverse {
            scheme: Scheme::Http,
            target: ServerAddr::new("127.0.0.1", 18080),
            client_tls: false,
        },
        gateway: Some(gateway),
        hooks: HookSet::NONE,
        ..Config::default()
    });
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    let local: SocketAddr = "127.0.0.1:18100".parse().expect("an address");
    let mut conn = Connection::new(config, ClientInfo::new(peer, local));
    let response = response();
    let start = Instant::now();
    conn.handle(start, Event::Start);
    let mut server = None;
    let (mut to_client, mut to_server) = (0usize, 0usize);
    let mut now = start;
    let began = Instant::now();
    let allocations = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..requests {
        if i % 1024 == 0 {
            now = Instant::now();
        }
        conn.handle(
            now,
            Event::DataReceived {
                conn: ConnId::CLIENT,
                data: Bytes::from_static(REQUEST),
            },
        );
        let mut answered = false;
        while !answered {
            let mut events = Vec::new();
            while let Some(command) = conn.poll_command() {
                match command {
                    Command::OpenConnection { conn: s, .. } | Command::Reuse { conn: s, .. } => {
                        server = Some(s);
                        events.push(Event::Opened { conn: s });
                    }
                    Command::SendData { conn: c, data } => {
                        events.push(Event::WriteDrained { conn: c });
                        if c == ConnId::CLIENT {
                            to_client += data.len();
                            answered = answered || data.ends_with(b"xxxx");
                        } else {
                            to_server += data.len();
                            events.push(Event::DataReceived {
                                conn: c,
                                data: response.clone(),
                            });
                        }
                    }
                    Command::CloseConnection { conn: c, .. } => {
                        panic!("{c:?} closed at request {i}")
                    }
                    _ => {}
                }
            }
            assert!(
                !events.is_empty() || answered,
                "the core is stuck at request {i} (server {server:?})"
            );
            for event in events {
                conn.handle(now, event);
            }
        }
    }
    let took = began.elapsed();
    let allocations = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed) - allocations;
    println!(
        "{requests} requests, {:.0} ns and {:.1} allocations each ({} bytes to the backend, {} to the client per request)",
        took.as_nanos() as f64 / requests as f64,
        allocations as f64 / requests as f64,
        to_server / requests,
        to_client / requests
    );
}
