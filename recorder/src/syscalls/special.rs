//! Hand-written memory effects of the syscalls the table marks `special`: those whose
//! buffers hang off structures (msghdr) or whose sizes depend on several arguments
//! (select's fd sets). Every special row must have an arm in [`handling`]; a test
//! checks it. Whether a call is supported at all is the table's to say (class
//! `unsupported` with its hint); only a request carried in the arguments (a futex
//! operation) can be refused here.

use super::effects::{read_iovecs, EntryState};
use super::nr;
use crate::errors::Result;
use crate::kernel::thread_group;
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

/// Whether this request of a `may_block` row returns at once whatever other threads do:
/// the futex operations that only wake or requeue waiters (and a priority-inheritance
/// lock's unlock and try-lock, which hand over or take a lock without waiting). The
/// engine then runs the call
/// to its exit before another thread runs, so its effects are recorded before those of
/// the threads it wakes (FUTEX_WAKE_OP writes its second word and then wakes: a woken
/// thread reads that word, and the program may exit before the waker's exit stop would
/// have been seen).
pub fn never_blocks(sysno: u64, args: &[u64; 6]) -> bool {
    const FUTEX_WAKE_BITSET: i32 = 10;
    match sysno {
        nr::FUTEX => matches!(
            args[1] as i32 & libc::FUTEX_CMD_MASK,
            libc::FUTEX_WAKE
                | libc::FUTEX_WAKE_OP
                | libc::FUTEX_REQUEUE
                | libc::FUTEX_CMP_REQUEUE
                | FUTEX_WAKE_BITSET
                | libc::FUTEX_UNLOCK_PI
                | libc::FUTEX_TRYLOCK_PI
        ),
        // Interface lists and old bridge requests answer at once.
        nr::IOCTL => pointer_ioctl(args[1]).is_some(),
        _ => false,
    }
}

/// `FUTEX_LOCK_PI2`, which the libc crate does not name.
const FUTEX_LOCK_PI2: i32 = 13;

/// The lock word of a priority-inheritance futex operation (lock, try-lock, unlock):
/// the kernel writes it (the owner's tid, the waiters bit), so the call's event carries
/// its value afterwards, whatever the call returned.
pub fn pi_futex_word(sysno: u64, args: &[u64; 6]) -> Option<u64> {
    let pi = sysno == nr::FUTEX
        && matches!(
            args[1] as i32 & libc::FUTEX_CMD_MASK,
            libc::FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | libc::FUTEX_TRYLOCK_PI | libc::FUTEX_UNLOCK_PI
        );
    pi.then_some(args[0])
}

/// Whether the call takes a priority-inheritance lock, waiting for it: as it goes to
/// sleep, the kernel sets the waiters bit in the lock's word (see
/// [`crate::trace::Event::KernelWrite`]).
pub fn pi_lock_waits(sysno: u64, args: &[u64; 6]) -> bool {
    sysno == nr::FUTEX
        && matches!(
            args[1] as i32 & libc::FUTEX_CMD_MASK,
            libc::FUTEX_LOCK_PI | FUTEX_LOCK_PI2
        )
}

/// How a special syscall is handled.
pub fn handling(sysno: u64, args: &[u64; 6]) -> Handling {
    match sysno {
        nr::SELECT
        | nr::PSELECT6
        | nr::MINCORE
        | nr::SENDMSG
        | nr::RECVMSG
        | nr::SENDMMSG
        | nr::RECVMMSG
        | nr::GET_MEMPOLICY
        | nr::RT_SIGSUSPEND
        | nr::FUTEX_WAITV
        | nr::FUTEX_WAKE
        | nr::FUTEX_WAIT
        | nr::FUTEX_REQUEUE
        | nr::PROCESS_VM_WRITEV
        | nr::SETSOCKOPT => Handling::Here,
        nr::FUTEX => match args[1] as i32 & libc::FUTEX_CMD_MASK {
            libc::FUTEX_WAIT_REQUEUE_PI | libc::FUTEX_CMP_REQUEUE_PI => {
                Handling::Unsupported("condition variables requeued onto priority-inheritance mutexes (FUTEX_WAIT_REQUEUE_PI) are not supported: the kernel takes the mutex for the woken waiter, rewriting its word at a moment the recorder cannot place; use a condition variable with an ordinary mutex in the code under test")
            }
            _ => Handling::Here,
        },
        nr::RESTART_SYSCALL => Handling::Here,
        nr::IOCTL if pointer_ioctl(args[1]).is_some() => Handling::Here,
        nr::SEMGET | nr::MSGGET | nr::SHMGET if args[0] as i32 != libc::IPC_PRIVATE => {
            Handling::Unsupported(
                "a System V IPC object with a key can be shared with processes outside the \
                 recording, which cannot be replayed; create it with IPC_PRIVATE (shared with \
                 the children it forks), or use futex-based locks, pipes or sockets",
            )
        }
        nr::SEMGET
        | nr::SEMCTL
        | nr::MSGGET
        | nr::MSGSND
        | nr::MSGRCV
        | nr::MSGCTL
        | nr::SHMGET
        | nr::SHMCTL
        | nr::SYSLOG
        | nr::QUOTACTL => Handling::Here,
        nr::MMAP
        | nr::MADVISE
        | nr::RT_SIGRETURN
        | nr::IOCTL
        | nr::FCNTL
        | nr::PRCTL
        | nr::KEYCTL
        | nr::ARCH_PRCTL
        | nr::SCHED_GETAFFINITY
        | nr::CLONE
        | nr::CLONE3
        | nr::FORK
        | nr::VFORK
        | nr::EXECVE
        | nr::EXECVEAT => Handling::Engine,
        _ => Handling::Missing,
    }
}

/// The ioctl requests whose argument holds pointers the kernel reads or writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointerIoctl {
    /// `SIOCGIFCONF`: a `struct ifconf` (`ifc_len`, then `ifc_buf`); the kernel fills
    /// the buffer with up to `ifc_len` bytes of `struct ifreq` and writes back how many
    /// (with a null buffer, how many it would need).
    IfConf,
    /// `SIOCGIFBR` and `SIOCSIFBR`, the old bridge requests: an array of three `unsigned
    /// long`s, the `BRCTL_*` operation and its two arguments. `BRCTL_GET_BRIDGES` writes
    /// one `int` per bridge (its result) into the array at the first argument;
    /// `BRCTL_ADD_BRIDGE` and `BRCTL_DEL_BRIDGE` read a name there.
    Bridge,
}

/// `SIOCGIFCONF`, `SIOCGIFBR`, `SIOCSIFBR`.
const SIOCGIFCONF: u64 = 0x8912;
const SIOCGIFBR: u64 = 0x8940;
const SIOCSIFBR: u64 = 0x8941;
/// The old bridge operations that move memory (`linux/if_bridge.h`).
const BRCTL_GET_BRIDGES: u64 = 1;
const BRCTL_ADD_BRIDGE: u64 = 2;
const BRCTL_DEL_BRIDGE: u64 = 3;
/// The bytes of a bridge name the kernel reads (`IFNAMSIZ - 1`).
const BRIDGE_NAME: usize = 15;
/// The most bridges `BRCTL_GET_BRIDGES` lists (the kernel refuses a larger array).
const MAX_BRIDGES: u64 = 2048;

fn pointer_ioctl(request: u64) -> Option<PointerIoctl> {
    match request & 0xffff_ffff {
        SIOCGIFCONF => Some(PointerIoctl::IfConf),
        SIOCGIFBR | SIOCSIFBR => Some(PointerIoctl::Bridge),
        _ => None,
    }
}

/// The three words of an old bridge request's array at `at`; `None` when they cannot
/// be read (the kernel will fail the call with EFAULT, which is recorded as it is).
fn bridge_args(task: &mut Task, at: u64) -> Option<[u64; 3]> {
    let b = task.read_mem(at, 24).ok()?;
    let w = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8"));
    Some([w(0), w(1), w(2)])
}

/// What a pointer ioctl reads (see [`inputs`]): its argument's struct, and a bridge's
/// name.
fn pointer_ioctl_inputs(task: &mut Task, args: &[u64; 6], r: &mut Vec<(u64, usize)>) {
    match pointer_ioctl(args[1]) {
        Some(PointerIoctl::IfConf) => r.push((args[2], 16)),
        Some(PointerIoctl::Bridge) => {
            r.push((args[2], 24));
            if let Some([op, name, _]) = bridge_args(task, args[2]) {
                if matches!(op, BRCTL_ADD_BRIDGE | BRCTL_DEL_BRIDGE) && name != 0 {
                    r.push((name, BRIDGE_NAME));
                }
            }
        }
        None => {}
    }
}

/// What a pointer ioctl wrote (see [`outputs`]), given its struct as it was at entry
/// (`at_entry`: `SIOCGIFCONF`'s length and buffer, a bridge request's three words).
fn pointer_ioctl_outputs(
    task: &mut Task,
    args: &[u64; 6],
    ret: i64,
    at_entry: &[u64],
    grab: &mut impl FnMut(&mut Task, u64, usize) -> Result<()>,
) -> Result<()> {
    match (pointer_ioctl(args[1]), at_entry) {
        (Some(PointerIoctl::IfConf), &[capacity, buf]) => {
            grab(task, args[2], 4)?;
            let b = task.read_mem(args[2], 4)?;
            let written = i32::from_le_bytes(b.try_into().expect("4")).max(0) as u64;
            if buf != 0 {
                grab(task, buf, written.min(capacity) as usize)?;
            }
        }
        (Some(PointerIoctl::Bridge), &[BRCTL_GET_BRIDGES, indices, count]) => {
            let n = (ret.max(0) as u64).min(count).min(MAX_BRIDGES);
            grab(task, indices, n as usize * 4)?;
        }
        _ => {}
    }
    Ok(())
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

/// The size of `struct mmsghdr` (sendmmsg, recvmmsg): a msghdr, then `msg_len` (u32)
/// at [`MMSGHDR_LEN`], padded to 8 bytes.
pub const MMSGHDR_SIZE: usize = 64;
/// Where `msg_len` is in `struct mmsghdr`.
pub const MMSGHDR_LEN: usize = 56;
/// The fields of a `struct mmsghdr` that recvmmsg writes: those of [`MSGHDR_WRITTEN`]
/// and `msg_len`.
pub const MMSGHDR_RECV_WRITTEN: &[(usize, usize)] = &[(8, 4), (40, 8), (48, 4), (56, 4)];
/// The field of a `struct mmsghdr` that sendmmsg writes: `msg_len`.
pub const MMSGHDR_SEND_WRITTEN: &[(usize, usize)] = &[(56, 4)];
/// The most messages sendmmsg and recvmmsg take (the kernel's `UIO_MAXIOV`).
pub const MMSG_MAX: u64 = 1024;

/// The addresses of the `vlen` `struct mmsghdr` of an array at `addr` (capped as the
/// kernel caps them).
pub fn mmsghdrs(addr: u64, vlen: u64) -> impl Iterator<Item = u64> {
    (0..vlen.min(MMSG_MAX)).map(move |i| addr + i * MMSGHDR_SIZE as u64)
}

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
        nr::SENDMSG => sent_message(task, args[1], &mut r)?,
        nr::SENDMMSG => {
            for hdr in mmsghdrs(args[1], args[2]) {
                sent_message(task, hdr, &mut r)?;
            }
        }
        nr::RECVMMSG if args[4] != 0 => r.push((args[4], 16)),
        nr::MSGSND => r.push((args[1], (args[2] as usize).saturating_add(8))),
        nr::SETSOCKOPT if args[3] != 0 => r.push((args[3], (args[4] as usize).min(1 << 24))),
        nr::SEMCTL | nr::MSGCTL | nr::SHMCTL => {
            let (at, len) = ipc_ctl_memory(sysno, args, false);
            if at != 0 && len > 0 {
                r.push((at, len));
            }
        }
        nr::IOCTL => pointer_ioctl_inputs(task, args, &mut r),
        _ => {}
    }
    Ok(r)
}

/// What sendmsg reads of the message whose `struct msghdr` is at `hdr`: the name, the
/// iovec buffers and the control data.
fn sent_message(task: &mut Task, hdr: u64, r: &mut Vec<(u64, usize)>) -> Result<()> {
    let m = read_msghdr(task, hdr)?;
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
    Ok(())
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
    if sysno == nr::RECVMMSG {
        // Each message's name and control capacities, in order.
        for hdr in mmsghdrs(args[1], args[2]) {
            let m = read_msghdr(task, hdr)?;
            st.extra.extend([m.namelen as u64, m.controllen]);
        }
    }
    if sysno == nr::IOCTL {
        // Unreadable (a bad pointer): nothing to remember, the kernel fails the call.
        st.extra = match pointer_ioctl(args[1]) {
            Some(PointerIoctl::IfConf) => match task.read_mem(args[2], 16) {
                Ok(b) => {
                    let len = i32::from_le_bytes(b[..4].try_into().expect("4")).max(0) as u64;
                    vec![len, u64::from_le_bytes(b[8..].try_into().expect("8"))]
                }
                Err(_) => Vec::new(),
            },
            Some(PointerIoctl::Bridge) => {
                bridge_args(task, args[2]).map_or(Vec::new(), |a| a.to_vec())
            }
            None => Vec::new(),
        };
    }
    if sysno == nr::PROCESS_VM_WRITEV {
        // Whether it writes into the caller's own process (its outputs, below) or into
        // another one (the engine records that process's bytes after the call).
        st.extra = vec![u64::from(Some(args[0] as i32) == thread_group(task.tid))];
    }
    Ok(())
}

/// The remote ranges a `process_vm_writev` that returned `ret` filled: its remote
/// iovecs, in order, up to `ret` bytes.
pub fn remote_ranges_written(
    task: &mut Task,
    args: &[u64; 6],
    ret: i64,
) -> Result<Vec<(u64, usize)>> {
    let mut left = ret.max(0) as u64;
    let mut out = Vec::new();
    for (base, len) in read_iovecs(task, args[3], args[4])? {
        if left == 0 {
            break;
        }
        let take = len.min(left);
        if take > 0 {
            out.push((base, take as usize));
        }
        left -= take;
    }
    Ok(out)
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
            // The time left: select's timeval, pselect6's timespec (both 16 bytes).
            grab(task, args[4], 16)?;
        }
        nr::MINCORE => grab(task, args[2], (args[1] as usize).div_ceil(4096))?,
        nr::SETSOCKOPT => {
            if let Some((at, len)) = replaced_counters(task, args)? {
                grab(task, at, len)?;
            }
        }
        nr::GET_MEMPOLICY => {
            grab(task, args[0], 4)?;
            let bits = args[2].saturating_sub(1).div_ceil(64) * 64;
            grab(task, args[1], (bits / 8).min(1 << 16) as usize)?;
        }
        nr::RECVMSG => {
            grab(task, args[1], MSGHDR_SIZE)?;
            let name_in = st.extra.first().copied().unwrap_or(0);
            let control_in = st.extra.get(1).copied().unwrap_or(0);
            let len = ret.max(0) as u64;
            received_message(task, args[1], len, name_in, control_in, &mut grab)?;
        }
        nr::SENDMMSG => {
            for hdr in mmsghdrs(args[1], ret.max(0) as u64) {
                grab(task, hdr + MMSGHDR_LEN as u64, 4)?;
            }
        }
        nr::RECVMMSG => {
            grab(task, args[4], 16)?;
            for (i, hdr) in mmsghdrs(args[1], ret.max(0) as u64).enumerate() {
                grab(task, hdr, MMSGHDR_SIZE)?;
                let b = task.read_mem(hdr + MMSGHDR_LEN as u64, 4)?;
                let len = u32::from_le_bytes(b.try_into().expect("4")) as u64;
                let name_in = st.extra.get(2 * i).copied().unwrap_or(0);
                let control_in = st.extra.get(2 * i + 1).copied().unwrap_or(0);
                received_message(task, hdr, len, name_in, control_in, &mut grab)?;
            }
        }
        nr::MSGRCV => grab(task, args[1], (ret as usize).saturating_add(8))?,
        nr::QUOTACTL => grab(task, args[3], quota_output(args[0]).unwrap_or(0))?,
        // SYSLOG_ACTION_READ, _READ_ALL, _READ_CLEAR: the log's bytes.
        nr::SYSLOG if matches!(args[0], 2..=4) => grab(task, args[1], ret as usize)?,
        nr::SEMCTL | nr::MSGCTL | nr::SHMCTL => {
            let (at, len) = ipc_ctl_memory(sysno, args, true);
            grab(task, at, len)?;
        }
        nr::FUTEX if args[1] as i32 & libc::FUTEX_CMD_MASK == libc::FUTEX_WAKE_OP => {
            grab(task, args[4], 4)?
        }
        nr::IOCTL if ret >= 0 => pointer_ioctl_outputs(task, args, ret, &st.extra, &mut grab)?,
        nr::PROCESS_VM_WRITEV if st.extra.first() == Some(&1) => {
            // Into the caller's own memory (see `capture_entry`): what landed in the
            // remote iovecs, `ret` bytes in their order, is written again at replay.
            for (base, len) in remote_ranges_written(task, args, ret)? {
                grab(task, base, len)?;
            }
        }
        _ => {}
    }
    Ok(w)
}

/// The memory semctl, msgctl or shmctl writes (`write`) or reads (`!write`) for its
/// command, as (address, length): a `semid64_ds` (104 bytes), `msqid64_ds` (120) or
/// `shmid64_ds` (112) for the status commands, a `seminfo` (40), `msginfo` (32),
/// `shminfo64` (72) or `shm_info` (48) for the limits and usage, and for semctl's
/// GETALL one `u16` per semaphore of the set (counted with IPC_STAT by the recorder,
/// which shares the program's IPC namespace).
fn ipc_ctl_memory(sysno: u64, args: &[u64; 6], write: bool) -> (u64, usize) {
    const IPC_64: i32 = 0x100;
    const SEM_STAT_ANY: i32 = 20;
    const MSG_STAT_ANY: i32 = 13;
    const SHM_STAT: i32 = 13;
    const SHM_INFO: i32 = 14;
    const SHM_STAT_ANY: i32 = 15;
    let (cmd, at) = match sysno {
        nr::SEMCTL => (args[2] as i32 & !IPC_64, args[3]),
        _ => (args[1] as i32 & !IPC_64, args[2]),
    };
    let len = match (sysno, cmd, write) {
        (nr::SEMCTL, libc::IPC_STAT | libc::SEM_STAT | SEM_STAT_ANY, true) => 104,
        (nr::SEMCTL, libc::IPC_SET, false) => 104,
        (nr::SEMCTL, libc::IPC_INFO | libc::SEM_INFO, true) => 40,
        // Counted at record only: at replay the set does not exist, so SETALL's values
        // are not part of the input check.
        (nr::SEMCTL, libc::GETALL, true) => semaphores(args[0] as i32) * 2,
        (nr::MSGCTL, libc::IPC_STAT | libc::MSG_STAT | MSG_STAT_ANY, true) => 120,
        (nr::MSGCTL, libc::IPC_SET, false) => 120,
        (nr::MSGCTL, libc::IPC_INFO | libc::MSG_INFO, true) => 32,
        (nr::SHMCTL, libc::IPC_STAT | SHM_STAT | SHM_STAT_ANY, true) => 112,
        (nr::SHMCTL, libc::IPC_SET, false) => 112,
        (nr::SHMCTL, libc::IPC_INFO, true) => 72,
        (nr::SHMCTL, SHM_INFO, true) => 48,
        _ => 0,
    };
    (at, len)
}

/// For a quotactl command (`QCMD(cmd, type)`), the bytes it writes at argument 3;
/// `None` for a command the recorder does not know.
pub fn quota_output(cmd: u64) -> Option<usize> {
    Some(match (cmd as u32) >> 8 {
        0x80_0001..=0x80_0003 => 0, // Q_SYNC, Q_QUOTAON, Q_QUOTAOFF
        0x80_0004 => 4,             // Q_GETFMT
        0x80_0005 => 24,            // Q_GETINFO
        0x80_0006 => 0,             // Q_SETINFO
        0x80_0007 => 72,            // Q_GETQUOTA
        0x80_0008 => 0,             // Q_SETQUOTA
        0x80_0009 => 80,            // Q_GETNEXTQUOTA
        _ => return None,
    })
}

/// The number of semaphores in System V set `id` (0 when it cannot be read).
fn semaphores(id: i32) -> usize {
    // SAFETY: semid_ds is plain data; IPC_STAT writes one into it.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT with a pointer to a semid_ds we own.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    if r < 0 {
        0
    } else {
        ds.sem_nsems as usize
    }
}

/// What recvmsg wrote of a message of `len` bytes whose `struct msghdr` is at `hdr`:
/// the name and control data (up to the capacities they had at entry) and the iovec
/// buffers, in order, up to `len`.
fn received_message(
    task: &mut Task,
    hdr: u64,
    len: u64,
    name_in: u64,
    control_in: u64,
    grab: &mut impl FnMut(&mut Task, u64, usize) -> Result<()>,
) -> Result<()> {
    let m = read_msghdr(task, hdr)?;
    grab(task, m.name, name_in.min(m.namelen as u64) as usize)?;
    let mut left = len;
    for (base, len) in read_iovecs(task, m.iov, m.iovlen)? {
        if left == 0 {
            break;
        }
        let take = len.min(left);
        grab(task, base, take as usize)?;
        left -= take;
    }
    grab(task, m.control, m.controllen.min(control_in) as usize)
}

/// `IPT_SO_SET_REPLACE` and `IP6T_SO_SET_REPLACE` (the same value at `SOL_IP` and
/// `SOL_IPV6`): the kernel writes the replaced table's counters (`num_counters` of
/// `struct xt_counters`, 16 bytes each) where the `counters` pointer of the
/// `struct ipt_replace` (or `ip6t_replace`, laid out alike) points.
fn replaced_counters(task: &mut Task, args: &[u64; 6]) -> Result<Option<(u64, usize)>> {
    const SO_SET_REPLACE: u64 = 64;
    // name[32], valid_hooks, num_entries, size, hook_entry[5], underflow[5]: 84 bytes.
    const NUM_COUNTERS_AT: usize = 84;
    const COUNTERS_AT: usize = 88;
    let level = args[1] as i32;
    if !(level == libc::SOL_IP || level == libc::SOL_IPV6)
        || args[2] != SO_SET_REPLACE
        || (args[4] as usize) < COUNTERS_AT + 8
    {
        return Ok(None);
    }
    let head = task.read_mem(args[3], COUNTERS_AT + 8)?;
    let n = u32::from_le_bytes(head[NUM_COUNTERS_AT..COUNTERS_AT].try_into().expect("4"));
    let at = u64::from_le_bytes(head[COUNTERS_AT..].try_into().expect("8"));
    Ok(Some((at, (n as usize).saturating_mul(16).min(1 << 24))))
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

    /// The requests refused here: the requeue of a condition variable's waiters onto a
    /// priority-inheritance futex.
    #[test]
    fn only_requeues_onto_priority_inheritance_futexes_are_refused_here() {
        for op in 0..16 {
            let refused = matches!(
                handling(nr::FUTEX, &[0, op, 0, 0, 0, 0]),
                Handling::Unsupported(_)
            );
            let requeue_pi = [11, 12].contains(&op);
            assert_eq!(refused, requeue_pi, "futex op {op}");
        }
    }
}
