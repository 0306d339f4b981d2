//! Syscall knowledge: one declarative table (`recorder/syscalls.toml`) turned into Rust
//! by `build.rs`, plus the hand-written handlers for the calls marked `special`.

pub mod effects;
mod model;
pub mod special;
mod table;

pub use model::{Class, MemArg, RequestDesc, Size, SyscallDesc};
pub use table::*;

/// The kernel's `__X32_SYSCALL_BIT`: numbers with it set are x32 ABI calls.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// Whether `nr` is an x32 ABI system call number (bit 30 set in a positive 32-bit
/// number), which a kernel built with the x32 ABI would run.
pub fn is_x32(nr: u64) -> bool {
    nr & X32_SYSCALL_BIT != 0 && nr < 0x8000_0000
}

/// For a multiplexing call (ioctl, fcntl, prctl, arch_prctl) whose request is not in
/// the table: the request, named for a message (`prctl option 19`).
pub fn unknown_request(nr: u64, args: &[u64; 6]) -> Option<String> {
    match nr {
        nr::IOCTL if ioctl_request(args[1] & 0xffff_ffff).is_none() => {
            Some(format!("ioctl request {:#x}", args[1] & 0xffff_ffff))
        }
        nr::FCNTL if fcntl_command(args[1]).is_none() => {
            Some(format!("fcntl command {}", args[1] as i64))
        }
        nr::PRCTL if prctl_option(args[0]).is_none() => {
            Some(format!("prctl option {}", args[0] as i64))
        }
        nr::ARCH_PRCTL if arch_prctl_code(args[0]).is_none() => {
            Some(format!("arch_prctl code {:#x}", args[0]))
        }
        _ => None,
    }
}
