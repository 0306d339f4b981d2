//! End-to-end tests of the `cargo-chaos` binary: C fixtures are built at test time,
//! recorded with `cargo-chaos record` and replayed with `cargo-chaos replay`, and what the
//! replay shows is compared byte for byte with what the recording showed.
//!
//! One test binary; the areas live in `tests/e2e/*.rs`.

mod e2e {
    pub mod common;

    mod archives;
    mod cli;
    mod corrupt;
    mod disk_full;
    mod edge_cases;
    mod environment;
    mod hostile;
    mod mutation;
    mod repeat;
    mod roundtrip;
    mod seccomp;
    mod secrets;
    mod syscallbuf;
    mod unprivileged;
}
