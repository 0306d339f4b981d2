//! Issue 6: `cargo record-test` and `cargo replay-artifact` end to end, on the flaky
//! tests of `tests/example-crate`: each is hunted until it fails, its archive moved and
//! the build deleted, and the replay must show the failing run again. Also the exit
//! codes, JSON messages, GitHub Actions files, and the workflows in `ci-examples/`.
//!
//! One test binary; the areas live in `tests/record_test/*.rs`.

mod record_test {
    pub mod common;

    mod chaos;
    mod ci_examples;
    mod cli;
    mod concurrent;
    mod config;
    mod credentials;
    mod debugging;
    mod disk_full;
    mod filter;
    mod flaky;
    mod interface;
    mod json;
    mod junit;
    mod ls;
    mod nextest;
    mod partition;
    mod signals;
}
