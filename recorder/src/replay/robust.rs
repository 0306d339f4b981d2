//! The kernel's cleanup of robust futexes at thread exit, redone with recorded tids.
//!
//! A thread registers a robust list (`set_robust_list`: glibc does it for every thread,
//! and links each robust mutex it holds into it). When the thread ends, the kernel walks
//! the list and, for each futex word whose owner bits (`FUTEX_TID_MASK`) equal the
//! thread's tid, sets `FUTEX_OWNER_DIED`, keeping `FUTEX_WAITERS` and clearing the
//! owner: the next locker gets `EOWNERDEAD`. At replay the words hold the *recorded*
//! tids (the program saw those) while the kernel compares them with the replayed
//! thread's real tid, so it would mark nothing. The replayer therefore walks the list
//! itself, just before the thread ends, comparing with the recorded tid. Futex waits and
//! wakes are emulated at replay, so the kernel's wake of a waiter is not needed.
//!
//! The list (`include/uapi/linux/futex.h`): the head holds `next` (the first entry, or
//! the head itself when empty), `futex_offset` (from an entry to its futex word) and
//! `list_op_pending` (an entry being locked or unlocked). Bit 0 of an entry pointer
//! marks a priority-inheritance futex. The walk stops at the head, at a fault, or after
//! [`LIMIT`] entries, as the kernel's does.

use crate::errors::{Error, Result};
use crate::ptrace::Task;

/// The most entries walked (the kernel's `ROBUST_LIST_LIMIT`): a corrupt or circular
/// list cannot make the replayer loop.
pub const LIMIT: usize = 2048;

const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// The robust list head `task` registered (`get_robust_list`), if any.
fn head(task: &Task) -> Result<Option<u64>> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: plain syscall writing into two locals of the sizes the kernel expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            task.tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(Error::TaskGone { pid: task.tid });
        }
        return Err(Error::Unsupported {
            what: format!("get_robust_list of thread {}: {e}", task.tid),
            hint: "the replayer needs it to redo the robust futex cleanup".into(),
        });
    }
    Ok((head != 0).then_some(head))
}

/// Reads a little-endian u64 at `addr`, `None` on a fault (the kernel stops there too).
fn read_u64(task: &mut Task, addr: u64) -> Option<u64> {
    let b = task.read_mem(addr, 8).ok()?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Marks the futex word at `addr` as its owner's death does, if `tid` owns it; whether
/// it did, or `None` where the kernel gives up the walk (a misaligned or unreadable
/// word).
fn mark(task: &mut Task, addr: u64, tid: i32) -> Result<Option<bool>> {
    if addr % 4 != 0 {
        return Ok(None);
    }
    let Ok(b) = task.read_mem(addr, 4) else {
        return Ok(None);
    };
    let word = u32::from_le_bytes(b.try_into().expect("4 bytes"));
    if word & FUTEX_TID_MASK != tid as u32 {
        return Ok(Some(false));
    }
    let new = (word & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
    task.write_mem(addr, &new.to_le_bytes())?;
    Ok(Some(true))
}

/// Thread `task`, recorded as `tid`, is about to end: sets `FUTEX_OWNER_DIED` on every
/// robust futex of its list that `tid` owns, as the kernel did at record. Returns how
/// many were marked.
pub fn owner_died(task: &mut Task, tid: i32) -> Result<usize> {
    let Some(head) = head(task)? else {
        return Ok(0);
    };
    let (Some(first), Some(offset), Some(pending)) = (
        read_u64(task, head),
        read_u64(task, head + 8),
        read_u64(task, head + 16),
    ) else {
        return Ok(0);
    };
    let offset = offset as i64;
    let pending = pending & !1;
    let word = |entry: u64| entry.wrapping_add_signed(offset);
    let mut marked = 0;
    let mut entry = first & !1;
    let mut walked = 0;
    while entry != head && walked < LIMIT {
        let next = read_u64(task, entry);
        if entry != pending {
            match mark(task, word(entry), tid)? {
                Some(true) => marked += 1,
                Some(false) => {}
                None => return Ok(marked),
            }
        }
        let Some(next) = next else {
            // The kernel gives up there, the pending entry included.
            return Ok(marked);
        };
        entry = next & !1;
        walked += 1;
    }
    if pending != 0 && mark(task, word(pending), tid)? == Some(true) {
        marked += 1;
    }
    if marked > 0 {
        tracing::debug!("thread {tid} ended owning {marked} robust futex(es)");
    }
    Ok(marked)
}
