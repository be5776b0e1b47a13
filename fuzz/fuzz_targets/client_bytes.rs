#![no_main]
//! See `playbooks::fuzz::client_bytes`: the same body runs as a proptest in `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| playbooks::fuzz::client_bytes(data));
