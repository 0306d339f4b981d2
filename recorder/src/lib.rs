//! Record and replay of Linux x86_64 programs with ptrace, without a hardware PMU.
//!
//! See `docs/architecture.md` for the moving parts. The entry points are
//! [`record::record`] and [`replay::replay`] (a loop over [`replay::ReplaySession`], the
//! replay a debugger drives); [`trace`] is the on-disk format.
#![deny(missing_docs)]

pub mod address_space;
pub mod arch;
pub mod errors;
pub mod host;
pub mod inject;
pub mod kernel;
pub mod output;
pub mod pidns;
pub mod preempt;
pub mod program_filter;
pub mod ptrace;
pub mod record;
pub mod replay;
pub mod sched;
pub mod spawn;
pub mod syscallbuf;
pub mod syscalls;
pub mod ticks;
pub mod trace;
pub mod tree;

pub use errors::{Error, Result};
