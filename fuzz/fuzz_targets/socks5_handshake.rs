#![no_main]
//! See `playbooks::fuzz::socks5_handshake`: the same body runs as a proptest in `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| playbooks::fuzz::socks5_handshake(data));
