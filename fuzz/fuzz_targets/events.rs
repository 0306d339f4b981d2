//! `cargo +nightly fuzz run events`: see fuzz/README.md and `chaos_fuzz::events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaos_fuzz::events(data));
