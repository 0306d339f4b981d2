//! Issue 3: multi-threaded programs and unmodified Rust test binaries under the
//! recorder. C fixtures (`tests/fixtures/c/threads_*.c`, built with `cc -O1 -pthread`)
//! and the Rust fixture crate (`tests/fixtures/rust-suite`, built with cargo) are
//! recorded with `cargo-chaos record` and replayed with `cargo-chaos replay`; the replay
//! must show the recording's stdout, stderr and exit status byte for byte.
//!
//! One test binary; the areas live in `tests/threads/*.rs`.

mod threads {
    pub mod common;
    pub mod suite;

    mod c_fixtures;
    mod exec_robust;
    mod mutation;
    mod ordering;
    mod rust_suite;
    mod side_by_side;
}
