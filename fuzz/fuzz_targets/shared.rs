#![no_main]
//! See `playbooks::fuzz::shared`: the same body runs as a proptest in `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| playbooks::fuzz::shared(data));
