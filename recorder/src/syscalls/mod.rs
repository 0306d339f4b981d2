//! Syscall knowledge: one declarative table (`recorder/syscalls.toml`) turned into Rust
//! by `build.rs`, plus the hand-written handlers for the calls marked `special`.

mod model;
mod table;
pub mod effects;
pub mod special;

pub use model::{Class, MemArg, RequestDesc, Size, SyscallDesc};
pub use table::*;
