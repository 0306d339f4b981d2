//! Debugging a captured run with gdb: a GDB remote protocol server (built on the
//! `gdbstub` crate) on a replay session, with reverse execution.
//!
//! - [`backend`]: what the server needs from a replay ([`backend::Session`]).
//! - [`timeline`]: exact, repeatable positions without a hardware counter, and going
//!   to any of them, backwards included (re-open the replay, run forward).
//! - [`arch`]: the x86-64 Linux register set and target description gdb gets.
//! - [`target`]: the `gdbstub` target on a timeline.
//! - [`tls`]: thread-local variables (`qGetTLSAddr`, answered beside `gdbstub`).
//! - [`sysroot`]: the archive's binaries and libraries under their recorded paths, so
//!   gdb loads their symbols with no checkout and no build.
#![deny(missing_docs)]

pub mod arch;
pub mod backend;
pub mod errors;
pub mod live;
pub mod recording;
pub mod run;
pub mod server;
pub mod sysroot;
pub mod target;
pub mod timeline;
pub mod tls;
#[cfg(test)]
mod toy;

pub use errors::{Error, Result};
