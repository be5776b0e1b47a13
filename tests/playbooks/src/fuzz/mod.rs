//! Bodies of the fuzz targets: plain functions over bytes that `fuzz/` runs under libFuzzer
//! and `tests/fuzz.rs` runs as bounded proptests. Each drives a [`Connection`] like a careful
//! driver would (`run.rs`) and checks the core's promises after every step, not just that it
//! does not panic:
//!
//! - every command names a connection that exists, has opened, and has not been closed;
//! - nothing is sent on a connection after its writing side was closed;
//! - a blocking hook is raised at most once per flow and kind, and never while one is
//!   unanswered, so each is answered exactly once;
//! - output queued for a connection that never drains stays within the configured bounds,
//!   provided the driver honours `PauseReading`, and a `Forward` respects `forward_min`;
//! - whatever the input, every byte the proxy writes to a server as HTTP reads as canonical
//!   requests with a strict reader of our own ([`strict`]): one framing, one `Host`;
//! - for a well-formed client input, the requests servers receive are exactly the input's
//!   after the documented rewrites (`oracle.rs`), and the client gets each answer;
//! - for a fixed request, what the client receives reads as one canonical response.
//!
//! The first input byte of `client_bytes`, `server_bytes` and `scenario` picks a
//! configuration ([`variant`]): hooks on or off, forwarding, connection reuse, `Via`, and for
//! `scenario` the proxy mode. `FUZZ_TRACE=1` prints every event and command of a run, for
//! replaying a failure.
//!
//! [`Connection`]: proxy_core::Connection

use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Config, Event, HookSet, Mode, Scheme, ServerAddr};

mod h2;
mod oracle;
mod run;
mod shared;
pub mod strict;
mod socks5;
mod tls;
mod websocket;

pub use h2::h2_frames;
pub use run::{Run, ORIGIN_OK};
pub use shared::shared;
pub use socks5::socks5_handshake;
pub use tls::{client_hello, tls};
pub use websocket::{websocket_frames, websocket_session};

/// Small limits, so that short inputs reach every limit.
pub fn fuzz_config() -> Config {
    Config {
        max_head_bytes: 2048,
        max_headers: 32,
        max_buffered_body: 4096,
        high_water: 1024,
        forward_min: Some(16),
        ..Config::default()
    }
}

/// [`fuzz_config`] changed as `flags` says: bit 0 turns hooks off, bit 1 forwarding off, bit 2
/// server connection reuse off, bit 3 `Via` on; with `modes`, bits 4-5 pick reverse or
/// upstream mode over regular.
pub fn variant(flags: u8, modes: bool) -> Config {
    let mut config = fuzz_config();
    if flags & 1 != 0 {
        config.hooks = HookSet::NONE;
    }
    if flags & 2 != 0 {
        config.forward_min = None;
    }
    config.reuse_server_connections = flags & 4 == 0;
    config.add_via = flags & 8 != 0;
    if modes {
        config.mode = match (flags >> 4) % 4 {
            1 => {
                let target = ServerAddr::new("origin.test", 8080);
                Mode::Reverse { scheme: Scheme::Http, target, client_tls: false }
            }
            2 => Mode::Upstream { proxy: ServerAddr::new("127.0.0.1", 3128), tls: false, auth: None },
            _ => Mode::Regular,
        };
    }
    config
}

/// Largest single `DataReceived` the targets feed.
pub const MAX_CHUNK: usize = 512;

/// Piece lengths from a xorshift generator seeded by `seed`: mostly short, sometimes long.
fn pieces(seed: u8, mut input: &[u8]) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut out = Vec::new();
    while !input.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let max = if state & 3 == 0 { MAX_CHUNK } else { 16 };
        let n = 1 + (state >> 8) as usize % max.min(input.len());
        let (piece, rest) = input.split_at(n);
        out.push(piece);
        input = rest;
    }
    out
}

/// Raw client bytes into a regular-mode proxy, cut where the second byte's generator says
/// (`pieces`), with a reference origin answering every complete request. If the bytes are
/// well-formed requests (`oracle.rs`), servers must receive exactly their rewrites, and the
/// client one `200` for each.
pub fn client_bytes(data: &[u8]) {
    let [flags, seed, input @ ..] = data else { return };
    let config = variant(*flags, false);
    let expected = oracle::expected_upstream(input, &config);
    let mut run = Run::new(config);
    run.answer = true;
    run.handle(Event::Start);
    run.serve();
    for piece in pieces(*seed, input) {
        run.client(Bytes::copy_from_slice(piece));
        run.serve();
    }
    run.client_eof();
    run.serve();
    run.finish();
    let Some(expected) = expected else { return };
    let got: Vec<oracle::Expected> = run
        .received
        .iter()
        .map(|m| oracle::Expected {
            head: m.head.clone(),
            body: m.body.clone(),
            trailers: m.trailers.clone(),
            chunked: m.chunked,
        })
        .collect();
    if got != expected {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let show = |e: &[oracle::Expected]| {
            e.iter().map(|e| format!("{:?} + {:?} + {:?}", text(&e.head), text(&e.body), text(&e.trailers))).collect::<Vec<_>>()
        };
        panic!("servers received\n  {:?}\nfor a well-formed input that must become\n  {:?}", show(&got), show(&expected));
    }
    let answers = run.sent.get(&proxy_core::ConnId::CLIENT).map_or(&[][..], |s| &s[..]);
    let mut at = 0;
    for i in 0..expected.len() {
        match strict::response(&answers[at..], "GET", true) {
            strict::Step::Done(m, len) if m.status() == 200 && m.body == b"ok" => at += len,
            other => panic!("answer {i} to a well-formed input: {other:?} in {:?}", String::from_utf8_lossy(answers)),
        }
    }
    assert_eq!(at, answers.len(), "the client got more than its answers: {:?}", String::from_utf8_lossy(answers));
}

/// Raw server bytes as the response to a fixed `GET`, cut in pieces the second byte picks;
/// the client must get one response in canonical framing.
pub fn server_bytes(data: &[u8]) {
    let [flags, seed, input @ ..] = data else { return };
    let mut run = Run::new(variant(*flags, false));
    run.handle(Event::Start);
    run.serve();
    run.client(Bytes::from_static(b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n"));
    run.serve();
    for piece in pieces(*seed, input) {
        run.server_data(Bytes::copy_from_slice(piece));
        run.serve();
    }
    run.close_servers();
    run.client_eof();
    run.serve();
    run.finish();
    run.check_single_response();
}

/// Pieces the scenario target sends; the smuggling cases among them.
const PIECES: [&[u8]; 24] = [
    b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n",
    b"POST http://a.test/u HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
    b"POST http://a.test/c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    b"4\r\ndata\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"\r\n",
    b"xyz",
    b"GET / HTTP/1.1\r\nhost: origin.test\r\n\r\n",
    b"HEAD http://a.test/h HTTP/1.1\r\n\r\n",
    b"GET http://a.test/ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nX",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: xchunked\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 40\r\n\r\n",
    b"0123456789012345678901234567890123456789",
    b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"1;ext=1\r\nx\r\n0\r\nx-t: 1\r\ncontent-length: 1\r\n\r\n",
];

/// A whole scenario decoded from `data`: after a configuration byte, pairs of an operation and
/// its argument: client and server pieces (from `PIECES` or raw), closes, hook replies,
/// open results, drains and wakeups, in the order the input gives.
pub fn scenario(data: &[u8]) {
    let Some((&flags, ops)) = data.split_first() else { return };
    let mut run = Run::new(variant(flags, true));
    run.handle(Event::Start);
    for pair in ops.chunks(2) {
        let op = pair[0];
        let arg = pair.get(1).copied().unwrap_or(0);
        let piece = Bytes::from_static(PIECES[usize::from(arg) % PIECES.len()]);
        match op % 10 {
            0 | 1 => run.client(piece),
            2 | 3 => run.server_data(piece),
            4 => run.answer_hook(arg),
            5 => run.resolve_open(arg),
            6 => run.drain(arg),
            7 => run.advance(Duration::from_secs(u64::from(arg % 8) * 20)),
            8 => run.close_conn(arg),
            _ => run.client(Bytes::copy_from_slice(&pair[1..])),
        }
        run.read_upstream_requests();
    }
    run.finish();
}

pub fn http1_wire(data: &[u8]) {
    use bytes::BytesMut;
    use proxy_core::wire::{self, BodyEvent, BodyReader, Framing, HeadReader, Limits};

    let limits = Limits { max_head_bytes: 4096, max_headers: 64 };
    let mut buf = BytesMut::from(data);
    let mut heads = HeadReader::new();
    if let Ok(Some(head)) = heads.read_request(&mut buf, &limits) {
        let mut again = BytesMut::new();
        wire::write_request_head(&mut again, &head.method, &head.target, head.version, &head.headers);
        // Written again with CRLF and `: `, a head read with bare LFs grows: the round trip
        // is about content, not the size limit.
        let roomy = Limits { max_head_bytes: 4 * again.len(), ..limits };
        let reparsed = HeadReader::new().read_request(&mut again, &roomy);
        assert_eq!(reparsed, Ok(Some(head.clone())), "request head does not survive a round trip");
        if let Ok(framing) = wire::request_framing(&head) {
            read_body(framing, limits, &mut buf);
        }
    }
    let mut heads = HeadReader::new();
    if let Ok(Some(head)) = heads.read_response(&mut buf, &limits) {
        if let Ok(framing) = wire::response_framing("GET", &head) {
            read_body(framing, limits, &mut buf);
        }
    }

    fn read_body(framing: Framing, limits: Limits, buf: &mut BytesMut) {
        let mut reader = BodyReader::new(framing, limits);
        let mut total = 0u64;
        while let Ok(Some(event)) = reader.read(buf) {
            match event {
                BodyEvent::Data(data) => {
                    assert!(!data.is_empty(), "empty data event");
                    total += data.len() as u64;
                    if let Framing::Length(n) = framing {
                        assert!(total <= n, "{total} body bytes for content-length {n}");
                    }
                }
                BodyEvent::End { .. } => {
                    if let Framing::Length(n) = framing {
                        assert_eq!(total, n, "body ended short of its content-length");
                    }
                    assert!(reader.is_done());
                    return;
                }
            }
        }
    }
}
