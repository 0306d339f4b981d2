//! `cargo +nightly fuzz run trace_header`: see fuzz/README.md and `chaos_fuzz::trace_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaos_fuzz::trace_header(data));
