//! The fuzz targets' bodies as bounded proptests, so `cargo test` catches what the fuzzer
//! would, without a nightly toolchain. `write_seed_corpus` (ignored) writes the seeds of
//! `fuzz/corpus/` from the tables here.

use playbooks::fuzz;
use proptest::prelude::*;

/// Requests of the kinds the scenarios know, the smuggling cases among them.
const REQUESTS: &[&[u8]] = &[
    b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: b.test\r\nX-A:  1 \r\nTransfer-Encoding: Chunked\r\n\r\n\
      0003;e=1\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\nContent-Length: 9\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\n\r\nraw",
    b"GET http://a.test/ HTTP/1.0\r\n\r\n",
    b"HEAD http://a.test/ HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nhost: a.test\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
    b"GET http://a.test/ HTTP/1.1\nhost: a.test\n\n",
    // Bodies long enough to be forwarded under the fuzz configuration.
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
    // Smuggling.
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding:\tchunked\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\nhello",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: +5\r\n\r\nhello",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 18446744073709551616\r\n\r\nhello",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nhost: evil.test\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n\r\n",
    b"GET http://a.test:80:80/ HTTP/1.1\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\rhost: a.test\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nx[y]: 1\r\n\r\n",
];

/// Responses of the kinds the scenarios know, the smuggling cases among them.
const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx: y\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nframes",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\ncontent-length: 2\n\nhi",
    b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\ncontent-length: 2\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+2\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: 0\r\n\r\n",
];

fn spliced(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => (0..seeds.len()).prop_map(move |i| seeds[i].to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

/// Requests inside the oracle's subset: absolute-form, plain fields, any framing.
fn well_formed() -> impl Strategy<Value = Vec<u8>> {
    let field = ("X-[A-Za-z0-9]{1,8}", "[!-~]([ -~]{0,12}[!-~])?", "[ \t]{0,2}");
    let chunks = proptest::collection::vec(("[a-z]{1,20}", any::<bool>(), 0usize..3), 0..4);
    let request = (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        "[a-z0-9]{1,8}\\.test(:[1-9][0-9]{0,3})?",
        "/[a-zA-Z0-9/._~?=&%+-]{0,16}",
        proptest::collection::vec(field, 0..4),
        prop::option::of("[a-z]{1,8}(:[1-9][0-9]{0,2})?"),
        0u8..3,
        chunks,
        proptest::collection::vec(("T-[a-z]{1,4}|Content-Length|Host|If-Match", "[a-z0-9]{1,4}"), 0..3),
    )
        .prop_map(|(method, authority, path, fields, host, framing, chunks, trailers)| {
            let mut raw = format!("{method} http://{authority}{path} HTTP/1.1\r\n");
            for (name, value, ows) in &fields {
                raw.push_str(&format!("{name}:{ows}{value}{ows}\r\n"));
            }
            if let Some(host) = host {
                raw.push_str(&format!("Host: {host}\r\n"));
            }
            let body: String = chunks.iter().map(|(c, _, _)| c.as_str()).collect();
            match framing {
                1 => raw.push_str(&format!("Content-Length: {:03}\r\n\r\n{body}", body.len())),
                2 => {
                    raw.push_str("Transfer-Encoding: chunked\r\n\r\n");
                    for (c, upper, zeros) in &chunks {
                        let size = format!("{}{:x}", "0".repeat(*zeros), c.len());
                        let size = if *upper { size.to_uppercase() } else { size };
                        raw.push_str(&format!("{size}{}\r\n{c}\r\n", if *upper { ";e=1" } else { "" }));
                    }
                    raw.push_str("0\r\n");
                    for (name, value) in &trailers {
                        raw.push_str(&format!("{name}: {value}\r\n"));
                    }
                    raw.push_str("\r\n");
                }
                _ => raw.push_str("\r\n"),
            }
            raw.into_bytes()
        });
    proptest::collection::vec(request, 1..4).prop_map(|r| r.concat())
}

/// TLS target inputs: a configuration byte, then operations with their arguments and raw
/// bytes, mostly ones that make progress (settle, requests, responses).
/// A mostly well-formed frame: any opcode, FIN, mask, and a payload, so that the reader gets
/// past the header checks into fragmentation and control-frame rules.
fn ws_frame() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200), any::<bool>()).prop_map(|(head, payload, masked)| {
        let opcode = [0x0, 0x1, 0x2, 0x8, 0x9, 0xa, 0x3][usize::from(head % 7)];
        let key = masked.then_some([head, 7, 9, 11]);
        playbooks::ws::frame(head & 0x80 != 0, opcode, payload, key)
    })
}

fn tls_input() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![
        3 => (2u8..5, any::<u8>()).prop_map(|(op, arg)| vec![op, arg]),
        1 => (prop::sample::select(vec![0u8, 1, 5, 6, 7]), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(op, arg, raw)| [vec![op, arg], raw].concat()),
    ];
    (prop::sample::select(vec![0u8, 1, 2, 3, 8, 0x10, 0x20, 0x40, 0x80, 0x81]), proptest::collection::vec(op, 0..10))
        .prop_map(|(flags, ops)| [vec![flags], ops.concat()].concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn client_bytes(flags in any::<u8>(), seed in any::<u8>(), input in spliced(REQUESTS)) {
        fuzz::client_bytes(&[&[flags, seed][..], &input].concat());
    }

    #[test]
    fn client_bytes_well_formed(flags in any::<u8>(), seed in any::<u8>(), input in well_formed()) {
        fuzz::client_bytes(&[&[flags, seed][..], &input].concat());
    }

    #[test]
    fn server_bytes(flags in any::<u8>(), seed in any::<u8>(), input in spliced(RESPONSES)) {
        fuzz::server_bytes(&[&[flags, seed][..], &input].concat());
    }

    #[test]
    fn scenario(input in proptest::collection::vec(any::<u8>(), 0..96)) {
        fuzz::scenario(&input);
    }

    #[test]
    fn http1_wire(input in spliced(REQUESTS)) {
        fuzz::http1_wire(&input);
    }
}

/// Inputs for the shared target: mostly requests and answers, some of everything else.
fn shared_input() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![
        4 => any::<u8>().prop_map(|arg| vec![0, arg]),
        4 => any::<u8>().prop_map(|arg| vec![1, arg]),
        3 => (2u8..7, any::<u8>()).prop_map(|(op, arg)| vec![op, arg]),
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(arg, raw)| [vec![7, arg], raw].concat()),
    ];
    let flags = prop::sample::select(vec![0u8, 1, 0x04, 0x10, 0x14, 0x20, 0x30, 0x40, 0x41, 0x44, 0x08, 0x80, 0x81, 0x90, 0xc0]);
    (flags, proptest::collection::vec(op, 0..24))
        .prop_map(|(flags, ops)| [vec![flags], ops.concat()].concat())
}

proptest! {
    // Each case runs real handshakes: fewer of them keep this to seconds.
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tls(input in tls_input()) {
        fuzz::tls(&input);
    }

    #[test]
    fn shared(input in shared_input()) {
        fuzz::shared(&input);
    }

    #[test]
    fn websocket_frames(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz::websocket_frames(&input);
    }

    #[test]
    fn websocket_frames_well_formed(flags in any::<u8>(), cut in any::<u8>(), frames in proptest::collection::vec(ws_frame(), 0..12)) {
        let mut input = vec![flags, cut];
        for frame in frames {
            input.extend(frame);
        }
        fuzz::websocket_frames(&input);
    }

    #[test]
    fn websocket_session(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzz::websocket_session(&input);
    }

    #[test]
    fn socks5_handshake(input in proptest::collection::vec(any::<u8>(), 0..80)) {
        fuzz::socks5_handshake(&input);
    }

    #[test]
    fn socks5_handshake_well_formed(flags in any::<u8>(), cut in any::<u8>(), kind in 0..4u8, tail in proptest::collection::vec(any::<u8>(), 0..24)) {
        // A valid greeting (and credentials when bit 0 asks for them), a request of each
        // address type, then bytes for the tunnel: the paths past the handshake.
        let mut input = vec![flags, cut, 5, 2, 0, 2];
        if flags & 1 != 0 {
            input.extend_from_slice(b"\x01\x01u\x01p");
        }
        input.extend_from_slice(&[5, 1, 0]);
        match kind {
            0 => input.extend_from_slice(&[1, 10, 0, 0, 9]),
            1 => input.extend_from_slice(b"\x03\x06a.test"),
            2 => input.extend_from_slice(&[4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            _ => input.extend_from_slice(&[1, 127, 0, 0, 1]),
        }
        input.extend_from_slice(&[0x1f, 0x90]);
        input.extend(tail);
        fuzz::socks5_handshake(&input);
    }

    #[test]
    fn h2_frames(flags in any::<u8>(), seed in any::<u8>(), input in proptest::collection::vec(any::<u8>(), 0..160)) {
        let mut data = vec![flags, seed];
        data.extend(input);
        fuzz::h2_frames(&data);
    }
}

#[test]
fn seeds_run_clean() {
    for flags in [0, 1, 2, 4, 8, 15] {
        for seed in REQUESTS {
            fuzz::client_bytes(&[&[flags, 7][..], seed].concat());
        }
        for seed in RESPONSES {
            fuzz::server_bytes(&[&[flags, 7][..], seed].concat());
        }
    }
}

/// Every input a fuzzer once failed on, kept in `fuzz/regressions/<target>/`, runs clean.
#[test]
fn regressions_run_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 7] = [
        ("client_bytes", fuzz::client_bytes),
        ("server_bytes", fuzz::server_bytes),
        ("scenario", fuzz::scenario),
        ("http1_wire", fuzz::http1_wire),
        ("tls", fuzz::tls),
        ("h2_frames", fuzz::h2_frames),
        ("shared", fuzz::shared),
    ];
    let mut ran = 0;
    for (target, body) in targets {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else { continue };
        for entry in dir {
            let path = entry.expect("directory entry").path();
            let input = std::fs::read(&path).expect("regression input");
            let outcome = std::panic::catch_unwind(|| body(&input));
            assert!(outcome.is_ok(), "{} fails again", path.display());
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
}

#[test]
fn a_full_tls_exchange_runs_clean() {
    // Settle (handshakes), a request, settle, a response, settle.
    fuzz::tls(&[0, 2, 0, 3, 0, 2, 0, 4, 0, 2, 0]);
    fuzz::tls(&[0x10, 2, 0, 3, 0, 2, 0, 4, 1, 2, 0]);
}

/// Writes `fuzz/corpus/<target>/seed-*` from the tables above: run with `--ignored` after
/// changing them.
#[test]
#[ignore]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let write = |target: &str, name: String, data: Vec<u8>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), data).expect("seed");
    };
    for (i, seed) in REQUESTS.iter().enumerate() {
        write("client_bytes", format!("seed-{i:02}"), [&[0u8, 7][..], seed].concat());
        write("client_bytes", format!("seed-{i:02}-nohooks"), [&[1u8, 200][..], seed].concat());
        write("http1_wire", format!("seed-req-{i:02}"), seed.to_vec());
        // The request, then an operation to answer it, for the scenario.
        write("scenario", format!("seed-req-{i:02}"), [&[0u8, 9][..], seed, &[5, 1, 2, 4, 4, 0, 6, 0]].concat());
    }
    for (i, seed) in RESPONSES.iter().enumerate() {
        write("server_bytes", format!("seed-{i:02}"), [&[0u8, 7][..], seed].concat());
        write("server_bytes", format!("seed-{i:02}-nohooks"), [&[1u8, 200][..], seed].concat());
        write("http1_wire", format!("seed-resp-{i:02}"), [REQUESTS[0], seed].concat());
    }
    // Scenarios: a GET answered, a chunked POST answered in pieces, a CONNECT, an upgrade,
    // each in regular, reverse and upstream mode.
    let scenarios: [&[u8]; 4] = [
        &[0, 0, 4, 0, 5, 1, 2, 4, 6, 0, 7, 3],
        &[0, 2, 5, 1, 2, 5, 2, 6, 2, 7, 4, 0, 6, 0],
        &[0, 3, 5, 1, 9, 0x16, 8, 1],
        &[0, 14, 5, 1, 2, 15, 9, 0x81, 8, 0],
    ];
    for (i, ops) in scenarios.iter().enumerate() {
        for mode in [0u8, 0x10, 0x20] {
            write("scenario", format!("seed-{i}-mode{}", mode >> 4), [&[mode][..], ops].concat());
        }
    }
    // TLS: the full exchange, through and passed through, with each request and response.
    for (i, flags) in [0u8, 0x10, 0x20, 0x40, 0x80].into_iter().enumerate() {
        for r in 0..6u8 {
            write("tls", format!("seed-{i}-{r}"), vec![flags, 2, 0, 3, r, 2, 0, 4, r % 5, 2, 0, 3, 0, 2, 0]);
        }
    }
    // A real ClientHello sent raw, 64 bytes per operation, for the mutator to work on.
    let mut raw = vec![0x80u8];
    for piece in fuzz::client_hello().chunks(64) {
        raw.extend_from_slice(&[0, 63]);
        raw.extend_from_slice(piece);
    }
    write("tls", "seed-raw-client-hello".into(), raw);
    // Shared carriers: the exchanges of `a_shared_exchange_runs_clean`.
    for (i, ops) in SHARED_EXCHANGES.iter().enumerate() {
        for (v, flags) in [0u8, 0x10, 0x40, 0x80, 0x04].into_iter().enumerate() {
            write("shared", format!("seed-{i}-{v}"), [&[flags][..], ops].concat());
        }
    }
    // HTTP/2: the exchanges of `an_h2_exchange_runs_clean`, under each configuration variant.
    for (i, ops) in H2_EXCHANGES.iter().enumerate() {
        for (v, flags) in [0u8, 1, 0x10, 0x20].into_iter().enumerate() {
            write("h2_frames", format!("seed-{i}-{v}"), [&[flags, 7][..], ops].concat());
        }
    }
}

/// Frame programs for the h2_frames target (see `fuzz::h2_frames`). First: stream 1 a GET,
/// stream 3 an upload of two DATA frames, stream 5 opened and reset, a GOAWAY. Second: three
/// GETs and a PING.
const H2_EXCHANGES: [&[u8]; 2] = [
    &[0, 1, 1, 3, 2, 3, 9, 2, 3, 10, 1, 5, 3, 5, 8, 4, 0, 0, 0, 1, 0],
    &[0, 1, 0, 3, 0, 5, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8],
];

/// Requests with bodies, resets and window updates on several streams.
#[test]
fn an_h2_exchange_runs_clean() {
    // Stream 1: a GET. Stream 3: an upload of two DATA frames. Stream 5: opened and reset.
    for (flags, seed) in [(0u8, 7u8), (1, 200)] {
        for ops in H2_EXCHANGES {
            fuzz::h2_frames(&[&[flags, seed][..], ops].concat());
        }
    }
}

/// Programs for the shared target (see `fuzz::shared`; a request's argument is its client
/// plus six times its kind). First: a second client comes, each sends a GET, the answers
/// go in the other order, the carrier's server goes away gracefully, a third client comes and
/// sends a chunked POST, answered. Second: a POST and a pipelined PUT from one client, a HEAD
/// from another, who leaves before its answer is read; half a minute passes, and a chunked
/// POST is answered with a body longer than the proxy's buffers. Third, for an origin that
/// never acknowledges the proxy's SETTINGS: a GET, 70 seconds (past the server's deadline, so
/// it goes on its tunnel's connection), its answer; a second client does the same; the first
/// sends a POST, answered at once.
const SHARED_EXCHANGES: [&[u8]; 3] = [
    &[6, 0, 0, 0, 0, 1, 1, 1, 1, 0, 3, 0, 6, 0, 0, 2 + 6 * 2, 1, 0],
    &[6, 0, 0, 6, 0, 1 + 6 * 3, 1, 1, 0, 6 * 5, 4, 1, 1, 0, 1, 0, 5, 3, 0, 6 * 2, 1, 3],
    &[0, 0, 5, 3, 5, 3, 5, 1, 1, 0, 6, 0, 0, 1, 5, 3, 5, 3, 5, 1, 1, 0, 0, 6, 1, 0],
];

/// Clients sharing an HTTP/2 server's connection, under several configurations (plain HTTP
/// among them): every answer reaches the client that asked.
#[test]
fn a_shared_exchange_runs_clean() {
    for flags in [0u8, 1, 4, 0x10, 0x14, 0x20, 0x40, 0x80, 0x84, 0x90] {
        for ops in SHARED_EXCHANGES {
            fuzz::shared(&[&[flags][..], ops].concat());
        }
    }
}

#[test]
fn tls_regression_client_eof_mid_handshake() {
    fuzz::tls(&[0, 6, 0]);
}

#[test]
fn tls_regression_send_after_close() {
    fuzz::tls(&[0, 3, 40, 5, 4, 16]);
}

#[test]
fn tls_regression_send_before_open() {
    fuzz::tls(&[1, 3, 126, 4, 225, 3, 66]);
}
