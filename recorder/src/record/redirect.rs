//! Scratch redirection for blocking syscalls.
//!
//! A thread blocked in the kernel (read on a pipe, accept, epoll_wait) sits there while
//! other threads run. If the kernel wrote its results straight into the program's
//! buffers, another thread could observe a half-written buffer at a moment the trace
//! cannot name. So the output buffers of a blocking call are pointed at a per-thread
//! scratch slot; when the thread is next scheduled, the results are copied into the
//! real buffers (and recorded as the call's writes) and the argument registers are put
//! back. Futex words are never redirected: the kernel must see the real word.

use super::super::syscalls::nr;
use crate::errors::Result;
use crate::ptrace::Task;

/// Base of the scratch area, mapped into the program at exec (`MAP_NORESERVE`, so it
/// costs nothing until used). Far from where Linux places anything.
pub const SCRATCH_BASE: u64 = 0x2100_0000_0000;
/// Bytes per thread slot.
pub const SLOT_SIZE: u64 = 4 << 20;
/// Number of slots (threads that can be blocked at once with redirected buffers).
pub const SLOTS: u64 = 256;

/// Capacity of a redirected buffer.
#[derive(Clone, Copy)]
enum Cap {
    Arg(u8),
    ArgTimes(u8, usize),
    Fixed(usize),
    /// The u32 at the pointer in this argument (a socklen_t).
    DerefU32(u8),
}

/// How much of the scratch copy goes back into the real buffer.
#[derive(Clone, Copy)]
enum Back {
    Ret,
    RetTimes(usize),
    Full,
}

#[derive(Clone, Copy)]
struct Region {
    arg: u8,
    cap: Cap,
    copy_in: bool,
    back: Back,
}

const fn out(arg: u8, cap: Cap, back: Back) -> Region {
    Region {
        arg,
        cap,
        copy_in: false,
        back,
    }
}
const fn inout(arg: u8, cap: Cap) -> Region {
    Region {
        arg,
        cap,
        copy_in: true,
        back: Back::Full,
    }
}

/// The blocking calls whose output buffers are redirected. Calls that may block but
/// write no memory (write, connect, futex...) need nothing.
const SPECS: &[(u64, &[Region])] = &[
    (nr::READ, &[out(1, Cap::Arg(2), Back::Ret)]),
    (nr::PREAD64, &[out(1, Cap::Arg(2), Back::Ret)]),
    (
        nr::RECVFROM,
        &[
            out(1, Cap::Arg(2), Back::Ret),
            inout(4, Cap::DerefU32(5)),
            inout(5, Cap::Fixed(4)),
        ],
    ),
    (
        nr::ACCEPT,
        &[inout(1, Cap::DerefU32(2)), inout(2, Cap::Fixed(4))],
    ),
    (
        nr::ACCEPT4,
        &[inout(1, Cap::DerefU32(2)), inout(2, Cap::Fixed(4))],
    ),
    (nr::POLL, &[inout(0, Cap::ArgTimes(1, 8))]),
    (
        nr::PPOLL,
        &[inout(0, Cap::ArgTimes(1, 8)), inout(2, Cap::Fixed(16))],
    ),
    (
        nr::EPOLL_WAIT,
        &[out(1, Cap::ArgTimes(2, 12), Back::RetTimes(12))],
    ),
    (
        nr::EPOLL_PWAIT,
        &[out(1, Cap::ArgTimes(2, 12), Back::RetTimes(12))],
    ),
    (
        nr::EPOLL_PWAIT2,
        &[out(1, Cap::ArgTimes(2, 12), Back::RetTimes(12))],
    ),
    (
        nr::WAIT4,
        &[
            out(1, Cap::Fixed(4), Back::Full),
            out(3, Cap::Fixed(144), Back::Full),
        ],
    ),
    (
        nr::WAITID,
        &[
            out(2, Cap::Fixed(128), Back::Full),
            out(4, Cap::Fixed(144), Back::Full),
        ],
    ),
    (nr::NANOSLEEP, &[out(1, Cap::Fixed(16), Back::Full)]),
    (nr::CLOCK_NANOSLEEP, &[out(3, Cap::Fixed(16), Back::Full)]),
    (nr::RT_SIGTIMEDWAIT, &[out(1, Cap::Fixed(128), Back::Full)]),
    (
        nr::SELECT,
        &[
            inout(1, Cap::Fixed(0)),
            inout(2, Cap::Fixed(0)),
            inout(3, Cap::Fixed(0)),
            inout(4, Cap::Fixed(16)),
        ],
    ),
];

/// A redirected call in flight.
#[derive(Debug, Clone)]
pub struct Redirected {
    /// The argument registers as the program passed them.
    pub original_args: [u64; 6],
    /// (real address, scratch address, capacity, how much comes back)
    copies: Vec<(u64, u64, usize, BackLen)>,
}

#[derive(Debug, Clone, Copy)]
enum BackLen {
    Ret,
    RetTimes(usize),
    Full,
}

/// Points the output buffers of a blocking call at scratch slot `slot`, if the call has
/// any. The task is at the call's entry stop. Returns `None` when nothing needs
/// redirecting (or the buffers do not fit the slot, which is logged).
pub fn redirect(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    slot: u64,
) -> Result<Option<Redirected>> {
    let Some((_, regions)) = SPECS.iter().find(|(n, _)| *n == sysno) else {
        return Ok(None);
    };
    let base = SCRATCH_BASE + (slot % SLOTS) * SLOT_SIZE;
    let mut at = base;
    let mut new_args = *args;
    let mut copies = Vec::new();
    for r in regions.iter() {
        let real = args[r.arg as usize];
        if real == 0 {
            continue;
        }
        let cap = match r.cap {
            Cap::Arg(n) => args[n as usize] as usize,
            Cap::ArgTimes(n, k) => (args[n as usize] as usize).saturating_mul(k),
            Cap::Fixed(0) => (args[0].min(1 << 20) as usize).div_ceil(64) * 8, // select's fd sets
            Cap::Fixed(k) => k,
            Cap::DerefU32(n) => {
                let p = args[n as usize];
                if p == 0 {
                    0
                } else {
                    u32::from_le_bytes(task.read_mem(p, 4)?.try_into().expect("4")) as usize
                }
            }
        };
        if cap == 0 {
            continue;
        }
        if at + cap as u64 > base + SLOT_SIZE {
            tracing::debug!("buffers of syscall {sysno} do not fit a scratch slot; not redirected");
            return Ok(None);
        }
        if r.copy_in {
            let data = task.read_mem(real, cap)?;
            task.write_mem(at, &data)?;
        }
        new_args[r.arg as usize] = at;
        let back = match r.back {
            Back::Ret => BackLen::Ret,
            Back::RetTimes(k) => BackLen::RetTimes(k),
            Back::Full => BackLen::Full,
        };
        copies.push((real, at, cap, back));
        at = (at + cap as u64 + 15) & !15;
    }
    if copies.is_empty() {
        return Ok(None);
    }
    // accept/recvfrom: the socklen pointer itself was redirected; its capacity already
    // read. Point the registers at scratch.
    let mut regs = task.regs()?;
    crate::arch::set_syscall_args(&mut regs, &new_args);
    task.set_regs(&regs)?;
    Ok(Some(Redirected {
        original_args: *args,
        copies,
    }))
}

/// Copies the results back into the program's buffers and restores the argument
/// registers. The task is at the call's exit stop.
pub fn complete(task: &mut Task, r: &Redirected, ret: i64) -> Result<()> {
    if ret >= 0 {
        for &(real, scratch, cap, back) in &r.copies {
            let len = match back {
                BackLen::Ret => (ret as usize).min(cap),
                BackLen::RetTimes(k) => (ret as usize).saturating_mul(k).min(cap),
                BackLen::Full => cap,
            };
            if len > 0 {
                let data = task.read_mem(scratch, len)?;
                task.write_mem(real, &data)?;
            }
        }
    }
    let mut regs = task.regs()?;
    crate::arch::set_syscall_args(&mut regs, &r.original_args);
    task.set_regs(&regs)
}
