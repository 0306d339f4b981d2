//! Syscall knowledge: one declarative table (`recorder/syscalls.toml`) turned into Rust
//! by `build.rs`, plus the hand-written handlers for the calls marked `special`.

pub mod effects;
mod model;
pub mod special;
mod table;

pub use model::{Class, MemArg, RequestDesc, Size, SyscallDesc};
pub use table::*;
