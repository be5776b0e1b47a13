#![no_main]
//! See `playbooks::fuzz::websocket_frames`: the same body runs as a proptest in `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| playbooks::fuzz::websocket_frames(data));
