//! Syscall knowledge: one declarative table (`recorder/syscalls.toml`) turned into Rust
//! by `build.rs`, plus the hand-written handlers for the calls marked `special`.

pub mod effects;
mod model;
pub mod special;
mod table;

pub use model::{Class, MemArg, RequestDesc, Size, SyscallDesc};

use crate::errors::Result;
use crate::ptrace::Task;
pub use table::*;

/// The kernel's `__X32_SYSCALL_BIT`: numbers with it set are x32 ABI calls.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// Whether `nr` is an x32 ABI system call number (bit 30 set in a positive 32-bit
/// number), which a kernel built with the x32 ABI would run.
pub fn is_x32(nr: u64) -> bool {
    nr & X32_SYSCALL_BIT != 0 && nr < 0x8000_0000
}

/// Whether `nr` is an exec (execve, or execveat, which fexecve uses).
pub fn is_exec(nr: u64) -> bool {
    nr == nr::EXECVE || nr == nr::EXECVEAT
}

/// Whether the call `nr` with `args` is one the recorder's seccomp filter lets through
/// without a stop (and replay runs natively when the program makes it): the `untraced`
/// rows, and of them `rt_sigprocmask` only when it cannot unblock a signal (`SIG_BLOCK`,
/// or no new set: a query). One that may unblock stays traced: a pending signal it
/// unblocks is delivered as it returns, a point replay names by its exit.
pub fn untraced_call(nr: u64, args: &[u64; 6]) -> bool {
    lookup(nr).is_some_and(|d| d.untraced)
        && (nr != nr::RT_SIGPROCMASK || sigprocmask_never_unblocks(args))
}

/// Whether call `nr` with `args` is a `FUTEX_WAKE` (private or not), whose result is
/// the number of waiters it woke.
pub fn futex_wake(nr: u64, args: &[u64; 6]) -> bool {
    nr == nr::FUTEX && args[1] as u32 & libc::FUTEX_CMD_MASK as u32 == libc::FUTEX_WAKE as u32
}

/// `rt_sigprocmask(how, set, ..)` that leaves every blocked signal blocked: `SIG_BLOCK`
/// (the kernel reads `how` as an int) or a null `set`. See [`untraced_call`].
pub fn sigprocmask_never_unblocks(args: &[u64; 6]) -> bool {
    args[0] as u32 == libc::SIG_BLOCK as u32 || args[1] == 0
}

/// prctl's PR_SET_MM, whose sub-options (its second argument) have a table of their own
/// (`[[prctl_mm]]`).
const PR_SET_MM: u64 = libc::PR_SET_MM as u64;

/// For a multiplexing call (ioctl, fcntl, prctl, arch_prctl, keyctl, quotactl) whose request is
/// not known: the request, named for a message (`prctl option 19`). Such a call runs
/// without outputs and only its failure is recorded.
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
        nr::PRCTL if args[0] == PR_SET_MM && prctl_mm_option(args[1]).is_none() => {
            Some(format!("prctl PR_SET_MM sub-option {}", args[1] as i64))
        }
        nr::ARCH_PRCTL if arch_prctl_code(args[0]).is_none() => {
            Some(format!("arch_prctl code {:#x}", args[0]))
        }
        nr::KEYCTL if keyctl_operation(args[0]).is_none() => {
            Some(format!("keyctl operation {}", args[0] as i64))
        }
        nr::QUOTACTL if special::quota_output(args[0]).is_none() => {
            Some(format!("quotactl command {:#x}", args[0] as u32))
        }
        _ => None,
    }
}

/// Picks the class and memory descriptions of a call, per request for ioctl, fcntl,
/// prctl, arch_prctl and keyctl (a request not in the table is unsupported). Record and replay
/// both decide by it.
pub fn resolve_request(
    desc: &'static SyscallDesc,
    args: &[u64; 6],
) -> (Class, &'static [MemArg], &'static [MemArg]) {
    let req = match desc.nr {
        nr::IOCTL => Some((ioctl_request(args[1] & 0xffff_ffff), "ioctl request")),
        nr::FCNTL => Some((fcntl_command(args[1]), "fcntl command")),
        nr::PRCTL if args[0] == PR_SET_MM => {
            Some((prctl_mm_option(args[1]), "PR_SET_MM sub-option"))
        }
        nr::PRCTL => Some((prctl_option(args[0]), "prctl option")),
        nr::ARCH_PRCTL => Some((arch_prctl_code(args[0]), "arch_prctl code")),
        nr::KEYCTL => Some((keyctl_operation(args[0]), "keyctl operation")),
        _ => None,
    };
    match req {
        Some((Some(r), _)) => (r.class, r.outputs, r.inputs),
        Some((None, what)) => (
            Class::Unsupported {
                hint: match what {
                    "ioctl request" => "this ioctl request is not in the recorder's table",
                    "fcntl command" => "this fcntl command is not in the recorder's table",
                    "arch_prctl code" => "this arch_prctl code is not in the recorder's table",
                    "keyctl operation" => "this keyctl operation is not in the recorder's table",
                    "PR_SET_MM sub-option" => {
                        "this PR_SET_MM sub-option is not in the recorder's table"
                    }
                    _ => "this prctl option is not in the recorder's table",
                },
            },
            &[],
            &[],
        ),
        None => (desc.class, desc.outputs, desc.inputs),
    }
}

/// The hash of what a call reads, as record writes it and replay checks it: from the
/// special handler's regions when it computes the call's effects, else from the inputs
/// of the row (or of the request, for the multiplexing calls).
pub fn input_hash(task: &mut Task, desc: &'static SyscallDesc, args: &[u64; 6]) -> Result<u64> {
    if desc.special && special::handling(desc.nr, args) == special::Handling::Here {
        let regions = special::inputs(task, desc.nr, args)?;
        effects::hash_regions(task, &regions)
    } else {
        let (_, _, inputs) = resolve_request(desc, args);
        effects::input_hash(task, inputs, args, None)
    }
}
