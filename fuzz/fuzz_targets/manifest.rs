//! `cargo +nightly fuzz run manifest`: see fuzz/README.md and `chaos_fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaos_fuzz::manifest(data));
