#![no_main]
//! See `playbooks::fuzz::websocket_session`: the same body runs as a proptest in `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| playbooks::fuzz::websocket_session(data));
