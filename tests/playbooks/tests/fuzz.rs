//! The fuzz targets' bodies as bounded proptests, so `cargo test` catches what the fuzzer
//! would, without a nightly toolchain.

use playbooks::fuzz;
use proptest::prelude::*;

/// Requests and responses of the kinds the scenarios know, for the generators to splice.
const SEEDS: &[&[u8]] = &[
    b"GET http://a.test/ HTTP/1.1\r\nhost: a.test\r\n\r\n",
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
    b"POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\n\r\nraw",
    b"GET http://a.test/ HTTP/1.0\r\n\r\n",
    b"HEAD http://a.test/ HTTP/1.1\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx: y\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nframes",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    // Bodies long enough to be forwarded under the fuzz configuration.
    b"POST http://a.test/ HTTP/1.1\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
    b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
];

fn spliced() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (0..SEEDS.len()).prop_map(|i| SEEDS[i].to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn client_bytes(seed in any::<u8>(), input in spliced()) {
        let mut data = vec![seed];
        data.extend(input);
        fuzz::client_bytes(&data);
    }

    #[test]
    fn server_bytes(input in spliced()) {
        fuzz::server_bytes(&input);
    }

    #[test]
    fn scenario(input in proptest::collection::vec(any::<u8>(), 0..96)) {
        fuzz::scenario(&input);
    }
}

#[test]
fn seeds_run_clean() {
    for seed in SEEDS {
        fuzz::client_bytes(&[&[7u8][..], seed].concat());
        fuzz::server_bytes(seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn http1_wire(input in spliced()) {
        fuzz::http1_wire(&input);
    }
}
