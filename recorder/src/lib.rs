//! Record and replay of Linux x86_64 programs with ptrace, without a hardware PMU.
#![deny(missing_docs)]

pub mod syscalls;
