//! Reading the memory a syscall takes in (for exactness hashes) and the memory it wrote
//! (to inject at replay), from the table's declarative descriptions.

use super::{MemArg, Size};
use crate::errors::Result;
use crate::ptrace::Task;
use crate::trace::MemWrite;

/// Largest single buffer we read for an input hash or an output (guards against
/// garbage sizes; a syscall cannot move more than this in one call anyway).
const MAX_BUF: usize = 1 << 31;

/// What the engine remembers between a syscall's entry and exit stops.
#[derive(Debug, Clone, Default)]
pub struct EntryState {
    /// `*(u32 *)arg` at entry for `SockLen` sizes, by argument index.
    pub socklen: [Option<u32>; 6],
    /// Values a special handler remembers (see `special::capture_entry`).
    pub extra: Vec<u64>,
}

impl EntryState {
    /// Reads what must be known at entry for these outputs.
    pub fn capture(task: &mut Task, outputs: &[MemArg], args: &[u64; 6]) -> Result<Self> {
        let mut st = EntryState::default();
        for o in outputs {
            if let Size::SockLen(n) = o.size {
                let p = args[n as usize];
                if p != 0 {
                    let b = task.read_mem(p, 4)?;
                    st.socklen[n as usize] =
                        Some(u32::from_le_bytes(b.try_into().expect("4 bytes")));
                }
            }
        }
        Ok(st)
    }
}

/// Reads an `iovec` array: (base, len) pairs.
pub fn read_iovecs(task: &mut Task, addr: u64, count: u64) -> Result<Vec<(u64, u64)>> {
    let count = count.min(1024) as usize;
    if addr == 0 || count == 0 {
        return Ok(Vec::new());
    }
    let raw = task.read_mem(addr, count * 16)?;
    Ok(raw
        .chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[0..8].try_into().expect("8")),
                u64::from_le_bytes(c[8..16].try_into().expect("8")),
            )
        })
        .collect())
}

/// Hashes every input buffer into one 64-bit value (0 when there is none), in a way
/// that replay computes identically.
pub fn input_hash(
    task: &mut Task,
    inputs: &[MemArg],
    args: &[u64; 6],
    ret_hint: Option<i64>,
) -> Result<u64> {
    if inputs.is_empty() {
        return Ok(0);
    }
    let mut h = blake3::Hasher::new();
    for i in inputs {
        let p = args[i.arg as usize];
        h.update(&[i.arg]);
        if p == 0 {
            h.update(b"null");
            continue;
        }
        match i.size {
            Size::CStr => {
                let s = task.read_cstr(p, 1 << 16)?;
                h.update(&s);
            }
            Size::Iovec(n) => {
                for (base, len) in read_iovecs(task, p, args[n as usize])? {
                    let b = task.read_mem_partial(base, (len as usize).min(MAX_BUF))?;
                    h.update(&b);
                }
            }
            _ => {
                if let Some(len) = fixed_len(i.size, args, ret_hint, &EntryState::default()) {
                    let b = task.read_mem_partial(p, len.min(MAX_BUF))?;
                    h.update(&b);
                }
            }
        }
    }
    let out = h.finalize();
    Ok(u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8")) | 1)
}

/// Hashes explicit memory regions (special syscalls' inputs) like [`input_hash`].
pub fn hash_regions(task: &mut Task, regions: &[(u64, usize)]) -> Result<u64> {
    if regions.is_empty() {
        return Ok(0);
    }
    let mut h = blake3::Hasher::new();
    for &(addr, len) in regions {
        let b = task.read_mem_partial(addr, len.min(MAX_BUF))?;
        h.update(&b);
    }
    let out = h.finalize();
    Ok(u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8")) | 1)
}

fn fixed_len(size: Size, args: &[u64; 6], ret: Option<i64>, st: &EntryState) -> Option<usize> {
    let ret_len = || ret.filter(|r| *r >= 0).map(|r| r as usize);
    match size {
        Size::Ret => ret_len(),
        Size::Arg(n) => Some(args[n as usize] as usize),
        Size::Fixed(n) => Some(n),
        Size::ArgTimes(n, k) => Some((args[n as usize] as usize).saturating_mul(k)),
        Size::RetTimes(k) => ret_len().map(|r| r.saturating_mul(k)),
        Size::SockLen(n) => st.socklen[n as usize].map(|v| v as usize),
        Size::CStr | Size::Iovec(_) => None,
    }
}

/// Reads what an interrupted call may have written: the outputs whose size does not
/// depend on the result (the time left that ppoll, select and nanosleep write back,
/// poll's revents). A region that cannot be read is left out: the kernel did not
/// write it either. Injecting bytes the kernel left unchanged is harmless, so this
/// needs no per-call knowledge of which of them the kernel writes when interrupted.
pub fn collect_interrupted_outputs(
    task: &mut Task,
    outputs: &[MemArg],
    args: &[u64; 6],
    st: &EntryState,
) -> Vec<MemWrite> {
    outputs
        .iter()
        .filter(|o| args[o.arg as usize] != 0)
        .filter(|o| matches!(o.size, Size::Fixed(_) | Size::Arg(_) | Size::ArgTimes(..)))
        .filter_map(|o| {
            let addr = args[o.arg as usize];
            let len = fixed_len(o.size, args, None, st)?.min(MAX_BUF);
            let data = task.read_mem(addr, len).ok()?;
            (len > 0).then_some(MemWrite { addr, data })
        })
        .collect()
}

/// Reads the outputs a failed call wrote all the same (those marked `on_error` in the
/// table, of a fixed size: waitid's siginfo). A region that cannot be read is left out:
/// the kernel could not write it either (its EFAULT).
pub fn collect_error_outputs(
    task: &mut Task,
    outputs: &[MemArg],
    args: &[u64; 6],
) -> Vec<MemWrite> {
    outputs
        .iter()
        .filter(|o| o.on_error && args[o.arg as usize] != 0)
        .filter_map(|o| {
            let Size::Fixed(len) = o.size else {
                return None;
            };
            let addr = args[o.arg as usize];
            let data = task.read_mem(addr, len.min(MAX_BUF)).ok()?;
            (!data.is_empty()).then_some(MemWrite { addr, data })
        })
        .collect()
}

/// Reads the memory the syscall wrote, per its output descriptions. Called at the exit
/// stop of a successful call.
pub fn collect_outputs(
    task: &mut Task,
    outputs: &[MemArg],
    args: &[u64; 6],
    ret: i64,
    st: &EntryState,
) -> Result<Vec<MemWrite>> {
    let mut writes = Vec::new();
    for o in outputs {
        let p = args[o.arg as usize];
        if p == 0 {
            continue;
        }
        match o.size {
            Size::Iovec(n) => {
                let mut left = ret.max(0) as u64;
                for (base, len) in read_iovecs(task, p, args[n as usize])? {
                    if left == 0 {
                        break;
                    }
                    let take = len.min(left);
                    writes.push(MemWrite {
                        addr: base,
                        data: task.read_mem(base, take as usize)?,
                    });
                    left -= take;
                }
            }
            Size::SockLen(n) => {
                // The kernel wrote the full address length back; it copied at most the
                // buffer's size at entry.
                let lenp = args[n as usize];
                if lenp == 0 {
                    continue;
                }
                let cap = st.socklen[n as usize].unwrap_or(0) as usize;
                let now =
                    u32::from_le_bytes(task.read_mem(lenp, 4)?.try_into().expect("4")) as usize;
                let len = cap.min(now);
                if len > 0 {
                    writes.push(MemWrite {
                        addr: p,
                        data: task.read_mem(p, len)?,
                    });
                }
            }
            size => {
                // A result may say more than the kernel wrote (keyctl's KEYCTL_READ returns
                // the payload's full size): an output sized by it writes at most its max.
                let max = o.max.and_then(|m| fixed_len(m, args, None, st));
                let len = match (fixed_len(size, args, Some(ret), st), max) {
                    (Some(len), Some(max)) => Some(len.min(max)),
                    (len, _) => len,
                };
                if let Some(len) = len {
                    // A fixed size is the most the kernel may write (capget writes 12
                    // bytes for a version-1 header, 24 otherwise): what lies past a
                    // page the program cannot read, the kernel did not write either.
                    let data = task.read_mem_partial(p, len.min(MAX_BUF))?;
                    if !data.is_empty() {
                        writes.push(MemWrite { addr: p, data });
                    }
                }
            }
        }
    }
    Ok(writes)
}
