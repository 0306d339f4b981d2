//! `cargo +nightly fuzz run archive`: see fuzz/README.md and `chaos_fuzz::archive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaos_fuzz::archive(data));
