//! Hand-written memory effects of the syscalls the table marks `special`: those whose
//! buffers hang off structures (msghdr) or whose sizes depend on several arguments
//! (select's fd sets). Every special row must have an arm in [`handling`]; a test
//! checks it. Whether a call is supported at all is the table's to say (class
//! `unsupported` with its hint); only a request carried in the arguments (a futex
//! operation) can be refused here.

use super::effects::{read_iovecs, EntryState};
use super::nr;
use crate::errors::{Error, Result};
use crate::ptrace::Task;
use crate::trace::MemWrite;

/// How the engine treats a special syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Its memory effects are computed by [`inputs`] and [`outputs`] here.
    Here,
    /// The engine handles it itself (mmap, clone, exec, affinity, ioctl per request...).
    Engine,
    /// This request (a futex operation) is not supported: recording stops with the hint.
    Unsupported(&'static str),
    /// No arm for this call: a special row without a handler, which a test rules out.
    Missing,
}

/// How a special syscall is handled.
pub fn handling(sysno: u64, args: &[u64; 6]) -> Handling {
    match sysno {
        nr::SELECT
        | nr::PSELECT6
        | nr::MINCORE
        | nr::SENDMSG
        | nr::RECVMSG
        | nr::GET_MEMPOLICY
        | nr::RT_SIGSUSPEND
        | nr::FUTEX_WAITV
        | nr::FUTEX_WAKE
        | nr::FUTEX_WAIT
        | nr::FUTEX_REQUEUE
        | nr::PROCESS_VM_WRITEV => Handling::Here,
        nr::FUTEX => match args[1] as i32 & libc::FUTEX_CMD_MASK {
            libc::FUTEX_LOCK_PI | libc::FUTEX_UNLOCK_PI | libc::FUTEX_TRYLOCK_PI | libc::FUTEX_WAIT_REQUEUE_PI
            | libc::FUTEX_CMP_REQUEUE_PI | 13 /* FUTEX_LOCK_PI2 */ => {
                Handling::Unsupported("priority-inheritance futexes (PTHREAD_PRIO_INHERIT mutexes) are not supported: the kernel rewrites their lock word for a waiting thread at a moment the recorder cannot place (see the README's Limitations); use ordinary mutexes in the code under test")
            }
            _ => Handling::Here,
        },
        nr::RESTART_SYSCALL => Handling::Here,
        nr::MMAP
        | nr::MADVISE
        | nr::RT_SIGRETURN
        | nr::IOCTL
        | nr::FCNTL
        | nr::PRCTL
        | nr::ARCH_PRCTL
        | nr::SCHED_GETAFFINITY
        | nr::CLONE
        | nr::CLONE3
        | nr::FORK
        | nr::VFORK
        | nr::EXECVE => Handling::Engine,
        _ => Handling::Missing,
    }
}

/// The size of `struct msghdr`.
pub const MSGHDR_SIZE: usize = 56;
/// Where the pointers of `struct msghdr` are: `msg_name`, `msg_iov`, `msg_control`.
pub const MSGHDR_NAME: usize = 0;
/// See [`MSGHDR_NAME`].
pub const MSGHDR_IOV: usize = 16;
/// See [`MSGHDR_NAME`].
pub const MSGHDR_CONTROL: usize = 32;
/// The fields of `struct msghdr` that recvmsg writes back, as (offset, length):
/// `msg_namelen`, `msg_controllen`, `msg_flags`.
pub const MSGHDR_WRITTEN: &[(usize, usize)] = &[(8, 4), (40, 8), (48, 4)];

/// `struct msghdr` fields we need.
pub struct MsgHdr {
    /// `msg_name`.
    pub name: u64,
    /// `msg_namelen`.
    pub namelen: u32,
    /// `msg_iov`.
    pub iov: u64,
    /// `msg_iovlen`.
    pub iovlen: u64,
    /// `msg_control`.
    pub control: u64,
    /// `msg_controllen`.
    pub controllen: u64,
}

/// Reads the `struct msghdr` at `addr`.
pub fn read_msghdr(task: &mut Task, addr: u64) -> Result<MsgHdr> {
    let b = task.read_mem(addr, MSGHDR_SIZE)?;
    let q = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
    Ok(MsgHdr {
        name: q(0),
        namelen: u32::from_le_bytes(b[8..12].try_into().expect("4")),
        iov: q(16),
        iovlen: q(24),
        control: q(32),
        controllen: q(40),
    })
}

/// The bytes of each fd set select and pselect6 read and write for `nfds`.
pub fn fd_set_bytes(nfds: u64) -> usize {
    (nfds.min(1 << 20) as usize).div_ceil(64) * 8
}

/// Memory regions (address, length) a special syscall reads, for the input hash.
pub fn inputs(task: &mut Task, sysno: u64, args: &[u64; 6]) -> Result<Vec<(u64, usize)>> {
    let mut r = Vec::new();
    match sysno {
        nr::SELECT | nr::PSELECT6 => {
            let n = fd_set_bytes(args[0]);
            r.extend((1..4).filter(|&i| args[i] != 0).map(|i| (args[i], n)));
        }
        nr::SENDMSG => {
            let m = read_msghdr(task, args[1])?;
            if m.name != 0 {
                r.push((m.name, m.namelen as usize));
            }
            r.extend(
                read_iovecs(task, m.iov, m.iovlen)?
                    .into_iter()
                    .map(|(b, l)| (b, l as usize)),
            );
            if m.control != 0 {
                r.push((m.control, m.controllen.min(1 << 16) as usize));
            }
        }
        _ => {}
    }
    Ok(r)
}

/// What must be remembered at entry for [`outputs`].
pub fn capture_entry(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    st: &mut EntryState,
) -> Result<()> {
    if sysno == nr::RECVMSG {
        let m = read_msghdr(task, args[1])?;
        st.extra = vec![m.namelen as u64, m.controllen];
    }
    if sysno == nr::PROCESS_VM_WRITEV && Some(args[0] as i32) != thread_group(task.tid) {
        // Replay writes into the caller's memory only; another process's would change
        // behind its back.
        return Err(Error::Unsupported {
            what: format!(
                "process_vm_writev into process {}, another process than the caller",
                args[0] as i32
            ),
            hint: "writing another process's memory cannot be replayed yet; writing the \
                   program's own memory is supported"
                .into(),
        });
    }
    Ok(())
}

/// The process (thread group) of thread `tid`, from `/proc/TID/status`.
pub(crate) fn thread_group(tid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Memory a special syscall wrote; called at a successful exit.
pub fn outputs(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    ret: i64,
    st: &EntryState,
) -> Result<Vec<MemWrite>> {
    let mut w = Vec::new();
    let mut grab = |task: &mut Task, addr: u64, len: usize| -> Result<()> {
        if addr != 0 && len > 0 {
            w.push(MemWrite {
                addr,
                data: task.read_mem(addr, len)?,
            });
        }
        Ok(())
    };
    match sysno {
        nr::SELECT | nr::PSELECT6 => {
            let n = fd_set_bytes(args[0]);
            for &set in &args[1..4] {
                grab(task, set, n)?;
            }
            if sysno == nr::SELECT {
                grab(task, args[4], 16)?;
            }
        }
        nr::MINCORE => grab(task, args[2], (args[1] as usize).div_ceil(4096))?,
        nr::GET_MEMPOLICY => {
            grab(task, args[0], 4)?;
            let bits = args[2].saturating_sub(1).div_ceil(64) * 64;
            grab(task, args[1], (bits / 8).min(1 << 16) as usize)?;
        }
        nr::RECVMSG => {
            grab(task, args[1], MSGHDR_SIZE)?;
            let m = read_msghdr(task, args[1])?;
            let name_in = st.extra.first().copied().unwrap_or(0) as usize;
            grab(task, m.name, name_in.min(m.namelen as usize))?;
            let mut left = ret.max(0) as u64;
            for (base, len) in read_iovecs(task, m.iov, m.iovlen)? {
                if left == 0 {
                    break;
                }
                let take = len.min(left);
                grab(task, base, take as usize)?;
                left -= take;
            }
            let control_in = st.extra.get(1).copied().unwrap_or(0);
            grab(task, m.control, m.controllen.min(control_in) as usize)?;
        }
        nr::FUTEX if args[1] as i32 & libc::FUTEX_CMD_MASK == libc::FUTEX_WAKE_OP => {
            grab(task, args[4], 4)?
        }
        nr::PROCESS_VM_WRITEV => {
            // Into the caller's own memory (see `capture_entry`): what landed in the
            // remote iovecs, `ret` bytes in their order, is written again at replay.
            let mut left = ret.max(0) as u64;
            for (base, len) in read_iovecs(task, args[3], args[4])? {
                if left == 0 {
                    break;
                }
                let take = len.min(left);
                grab(task, base, take as usize)?;
                left -= take;
            }
        }
        _ => {}
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::syscalls::{Class, SYSCALLS};

    /// The table and this file agree: every special row has an arm, none of them refuses
    /// the call as a whole (that is the table's `unsupported` class), and rows the
    /// table marks unsupported are not special (nothing here would handle them).
    #[test]
    fn every_special_row_has_a_handling() {
        let mut problems = Vec::new();
        for d in SYSCALLS {
            let h = handling(d.nr, &[0; 6]);
            match (d.special, h) {
                (true, Handling::Missing) => {
                    problems.push(format!("special row {} has no arm in handling", d.name))
                }
                (true, Handling::Unsupported(_)) => problems.push(format!(
                    "special row {} is refused in code: make its class \"unsupported\" in syscalls.toml",
                    d.name
                )),
                (false, Handling::Here | Handling::Engine) => problems.push(format!(
                    "{} has an arm in handling but its row is not special",
                    d.name
                )),
                _ => {}
            }
            if d.special && matches!(d.class, Class::Unsupported { .. }) {
                problems.push(format!("{} is unsupported and special", d.name));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The one request refused here: priority-inheritance futex operations.
    #[test]
    fn only_priority_inheritance_futexes_are_refused_here() {
        for op in 0..16 {
            let refused = matches!(
                handling(nr::FUTEX, &[0, op, 0, 0, 0, 0]),
                Handling::Unsupported(_)
            );
            let pi = [6, 7, 8, 11, 12, 13].contains(&op);
            assert_eq!(refused, pi, "futex op {op}");
        }
    }
}
