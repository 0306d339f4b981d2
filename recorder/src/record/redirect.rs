//! Scratch redirection for blocking syscalls.
//!
//! A thread blocked in the kernel (read on a pipe, accept, epoll_wait) sits there while
//! other threads run. If the kernel wrote its results straight into the program's
//! buffers, another thread could observe a half-written buffer at a moment the trace
//! cannot name. So the output buffers of a blocking call are pointed at a per-thread
//! scratch slot; when the thread is next scheduled, the results are copied into the
//! real buffers (and recorded as the call's writes) and the argument registers are put
//! back.
//!
//! What moves comes from the syscall table, not from a list here: every output of a
//! `may_block` row (`syscalls.toml`), sized as the row says. An output sized by the
//! result (`read`'s buffer) takes its row's `max` (`read`: argument 2); an `iovec`
//! array is rebuilt in scratch around scratch buffers; a `socklen` output takes the
//! length its pointer holds at entry. Two special rows add their hand-written parts:
//! select and pselect6 their fd sets, recvmsg its `struct msghdr` (rebuilt in scratch
//! around scratch name, iovec and control buffers; only the fields the kernel writes go
//! back), recvmmsg and sendmmsg their arrays of `struct mmsghdr` (the same per message;
//! sendmmsg's data stays where it is, the kernel only reads it). Futex words are never
//! redirected: the futex rows have no outputs (the kernel must see the real word), and a
//! test checks it.
//!
//! A copy whose whole length goes back (a fixed-size struct, a timeout the kernel
//! updates, poll's array) is first filled with the real buffer's bytes, so what the
//! kernel did not write comes back unchanged; a buffer filled by the result (read's,
//! readv's) comes back only as far as the result says. A failed call writes nothing
//! back, except the whole-length copies of one a signal interrupted and the outputs the
//! table marks `on_error` (waitid's siginfo, which the kernel fills when it fails too).

use super::super::syscalls::{self, effects::read_iovecs, special, MemArg, Size, SyscallDesc};
use crate::errors::Result;
use crate::ptrace::Task;
use crate::syscalls::nr;

/// Base of the scratch area, mapped into the program at exec (`MAP_NORESERVE`, so it
/// costs nothing until used). Far from where Linux places anything.
pub const SCRATCH_BASE: u64 = 0x2100_0000_0000;
/// Bytes per thread slot.
pub const SLOT_SIZE: u64 = 4 << 20;
/// Number of slots (threads that can be blocked at once with redirected buffers).
pub const SLOTS: u64 = 256;

/// The most iovec entries a call takes (the kernel's `UIO_MAXIOV`).
const MAX_IOV: u64 = 1024;

/// How much of a scratch copy goes back into the real buffer.
#[derive(Debug, Clone, Copy)]
enum Back {
    /// The next bytes of the result: a non-negative result counts bytes spread over
    /// the `Result` copies of the call in order (read's one buffer, readv's several).
    Result,
    /// The result times this many bytes (epoll_wait's events).
    ResultTimes(usize),
    /// All of it (the copy was filled from the real buffer first).
    Whole,
    /// All of it, also when the call failed (an `on_error` output: waitid's siginfo).
    Always,
    /// Only these (offset, length) fields (recvmsg's msghdr, whose pointer fields point
    /// at scratch).
    Fields(&'static [(usize, usize)]),
}

#[derive(Debug, Clone, Copy)]
struct Copy {
    real: u64,
    scratch: u64,
    len: usize,
    back: Back,
}

/// A redirected call in flight.
#[derive(Debug, Clone)]
pub struct Redirected {
    /// The argument registers as the program passed them.
    pub original_args: [u64; 6],
    copies: Vec<Copy>,
}

/// Why a plan stops.
enum Stop {
    /// The buffers do not fit the slot: the call is left as it is.
    TooBig,
    /// Reading or writing the program's memory failed.
    Failed(crate::errors::Error),
}

impl From<crate::errors::Error> for Stop {
    fn from(e: crate::errors::Error) -> Self {
        Stop::Failed(e)
    }
}

type Step<T> = std::result::Result<T, Stop>;

/// Builds the scratch side of one call in one slot.
struct Plan<'t> {
    task: &'t mut Task,
    /// The arguments as the program passed them.
    original: [u64; 6],
    /// The arguments the kernel is to see.
    args: [u64; 6],
    at: u64,
    end: u64,
    copies: Vec<Copy>,
}

impl Plan<'_> {
    /// Reserves `len` bytes of the slot (16-aligned).
    fn alloc(&mut self, len: usize) -> Step<u64> {
        let at = self.at;
        match at.checked_add(len as u64) {
            Some(next) if next <= self.end => {
                self.at = (next + 15) & !15;
                Ok(at)
            }
            _ => Err(Stop::TooBig),
        }
    }

    /// Reads the program's memory; `None` when it cannot be read (the kernel is then
    /// left to refuse the real buffer itself).
    fn read(&mut self, addr: u64, len: usize) -> Step<Option<Vec<u8>>> {
        match self.task.read_mem(addr, len) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.is_gone() => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// Moves the real buffer at `real` (`len` bytes) to scratch and returns its scratch
    /// address; `real` itself when there is nothing to move (NULL, empty, unreadable).
    fn buffer(&mut self, real: u64, len: usize, back: Back) -> Step<u64> {
        if real == 0 || len == 0 {
            return Ok(real);
        }
        let fill = if matches!(back, Back::Whole | Back::Always | Back::Fields(_)) {
            match self.read(real, len)? {
                Some(data) => Some(data),
                None => return Ok(real),
            }
        } else {
            None
        };
        let scratch = self.alloc(len)?;
        if let Some(data) = fill {
            self.task.write_mem(scratch, &data)?;
        }
        self.copies.push(Copy {
            real,
            scratch,
            len,
            back,
        });
        Ok(scratch)
    }

    /// Moves the buffer argument `arg` points to, and points the argument at the copy.
    fn arg_buffer(&mut self, arg: u8, len: usize, back: Back) -> Step<()> {
        let real = self.original[arg as usize];
        self.args[arg as usize] = self.buffer(real, len, back)?;
        Ok(())
    }

    /// Builds a scratch iovec array for the `count` entries at `real`, around scratch
    /// buffers filled by the result, and returns its address (`real` when there is
    /// nothing to move).
    fn iovec(&mut self, real: u64, count: u64) -> Step<u64> {
        self.iovec_back(real, count, Back::Result)
    }

    /// As [`Plan::iovec`], with the buffers coming back as `back` says.
    fn iovec_back(&mut self, real: u64, count: u64, back: Back) -> Step<u64> {
        if real == 0 || count == 0 || count > MAX_IOV || self.read(real, 16)?.is_none() {
            return Ok(real);
        }
        let iov = read_iovecs(self.task, real, count)?;
        let array = self.alloc(iov.len() * 16)?;
        let mut raw = Vec::with_capacity(iov.len() * 16);
        for (base, len) in iov {
            let base = self.buffer(base, len as usize, back)?;
            raw.extend_from_slice(&base.to_le_bytes());
            raw.extend_from_slice(&len.to_le_bytes());
        }
        self.task.write_mem(array, &raw)?;
        Ok(array)
    }

    /// The outputs the table describes.
    fn outputs(&mut self, outputs: &[MemArg]) -> Step<()> {
        let original = self.original;
        let arg = |n: u8| original[n as usize] as usize;
        for o in outputs {
            match o.size {
                Size::Ret | Size::RetTimes(_) => {
                    let len = match o.max {
                        Some(Size::Arg(n)) => arg(n),
                        Some(Size::ArgTimes(n, k)) => arg(n).saturating_mul(k),
                        Some(Size::Fixed(k)) => k,
                        // The build refuses a may_block row without one.
                        _ => continue,
                    };
                    let back = match o.size {
                        Size::RetTimes(k) => Back::ResultTimes(k),
                        _ => Back::Result,
                    };
                    self.arg_buffer(o.arg, len, back)?;
                }
                Size::Arg(n) => self.arg_buffer(o.arg, arg(n), Back::Whole)?,
                Size::ArgTimes(n, k) => {
                    self.arg_buffer(o.arg, arg(n).saturating_mul(k), Back::Whole)?
                }
                Size::Fixed(k) if o.on_error => self.arg_buffer(o.arg, k, Back::Always)?,
                Size::Fixed(k) => self.arg_buffer(o.arg, k, Back::Whole)?,
                Size::SockLen(n) => {
                    // The capacity the program's socklen holds at entry.
                    let p = self.original[n as usize];
                    let len = match p {
                        0 => 0,
                        p => self
                            .read(p, 4)?
                            .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")) as usize),
                    };
                    self.arg_buffer(o.arg, len, Back::Whole)?;
                }
                Size::Iovec(n) => {
                    let real = self.original[o.arg as usize];
                    self.args[o.arg as usize] = self.iovec(real, arg(n) as u64)?;
                }
                Size::CStr => {}
            }
        }
        Ok(())
    }

    /// The hand-written parts of the special rows.
    fn special(&mut self, sysno: u64) -> Step<()> {
        match sysno {
            nr::SELECT | nr::PSELECT6 => {
                let n = special::fd_set_bytes(self.original[0]);
                for arg in 1..4 {
                    self.arg_buffer(arg, n, Back::Whole)?;
                }
            }
            nr::RECVMSG => self.msghdr()?,
            nr::RECVMMSG => self.mmsghdrs(true)?,
            // struct msgbuf: the type, then up to msgsz bytes.
            nr::MSGRCV => {
                let len = (self.original[2] as usize).saturating_add(8);
                self.arg_buffer(1, len, Back::Whole)?
            }
            nr::SENDMMSG => self.mmsghdrs(false)?,
            _ => {}
        }
        Ok(())
    }

    /// recvmmsg and sendmmsg: a scratch array of `struct mmsghdr`. For recvmmsg each
    /// message is rebuilt as recvmsg's (see [`Plan::msghdr`]), except that its iovec
    /// buffers come back whole (filled from the program's first: one result counts
    /// messages, not bytes); sendmmsg's keep pointing at the program's data, which the
    /// kernel only reads. Only the fields the kernel writes go back (`msg_len`, and for
    /// recvmmsg those recvmsg writes).
    fn mmsghdrs(&mut self, receive: bool) -> Step<()> {
        let real = self.original[1];
        let count = self.original[2].min(special::MMSG_MAX);
        let len = count as usize * special::MMSGHDR_SIZE;
        if real == 0 || count == 0 {
            return Ok(());
        }
        let Some(mut raw) = self.read(real, len)? else {
            return Ok(());
        };
        if receive {
            for (i, hdr) in special::mmsghdrs(real, count).enumerate() {
                let m = special::read_msghdr(self.task, hdr)?;
                if m.iovlen > MAX_IOV {
                    return Ok(());
                }
                let name = self.buffer(m.name, m.namelen as usize, Back::Whole)?;
                let iov = self.iovec_back(m.iov, m.iovlen, Back::Whole)?;
                let control = self.buffer(m.control, m.controllen as usize, Back::Whole)?;
                let at = i * special::MMSGHDR_SIZE;
                for (field, value) in [
                    (special::MSGHDR_NAME, name),
                    (special::MSGHDR_IOV, iov),
                    (special::MSGHDR_CONTROL, control),
                ] {
                    raw[at + field..at + field + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        let scratch = self.alloc(len)?;
        self.task.write_mem(scratch, &raw)?;
        let written = if receive {
            special::MMSGHDR_RECV_WRITTEN
        } else {
            special::MMSGHDR_SEND_WRITTEN
        };
        for i in 0..count {
            let at = i * special::MMSGHDR_SIZE as u64;
            self.copies.push(Copy {
                real: real + at,
                scratch: scratch + at,
                len: special::MMSGHDR_SIZE,
                back: Back::Fields(written),
            });
        }
        self.args[1] = scratch;
        Ok(())
    }

    /// recvmsg: a scratch `struct msghdr` around scratch name, iovec and control
    /// buffers. Only the fields the kernel writes go back to the program's msghdr.
    fn msghdr(&mut self) -> Step<()> {
        let real = self.original[1];
        if real == 0 {
            return Ok(());
        }
        let Some(mut raw) = self.read(real, special::MSGHDR_SIZE)? else {
            return Ok(());
        };
        let m = special::read_msghdr(self.task, real)?;
        if m.iovlen > MAX_IOV {
            return Ok(());
        }
        let name = self.buffer(m.name, m.namelen as usize, Back::Whole)?;
        let iov = self.iovec(m.iov, m.iovlen)?;
        let control = self.buffer(m.control, m.controllen as usize, Back::Whole)?;
        for (at, value) in [
            (special::MSGHDR_NAME, name),
            (special::MSGHDR_IOV, iov),
            (special::MSGHDR_CONTROL, control),
        ] {
            raw[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let scratch = self.alloc(special::MSGHDR_SIZE)?;
        self.task.write_mem(scratch, &raw)?;
        self.copies.push(Copy {
            real,
            scratch,
            len: special::MSGHDR_SIZE,
            back: Back::Fields(special::MSGHDR_WRITTEN),
        });
        self.args[1] = scratch;
        Ok(())
    }
}

/// The special rows that may block and whose memory effects [`Plan::special`] moves
/// to scratch.
pub const SPECIAL_REDIRECTED: &[u64] = &[
    nr::SELECT,
    nr::PSELECT6,
    nr::RECVMSG,
    nr::RECVMMSG,
    nr::SENDMMSG,
    nr::MSGRCV,
];

/// The special rows that may block and write no memory of the program's while they
/// block: the futex calls (the kernel must see the real futex word), ioctl and fcntl
/// (their blocking requests, TIOCSTI-style waits and F_SETLKW, write nothing), sendmsg
/// and msgsnd (read only), rt_sigsuspend (a mask it reads), vfork (a task event), and
/// restart_syscall (it resumes a call with the pointers the kernel saved; see
/// docs/architecture.md).
pub const SPECIAL_NOT_REDIRECTED: &[u64] = &[
    nr::FUTEX,
    nr::FUTEX_WAIT,
    nr::FUTEX_WAITV,
    nr::IOCTL,
    nr::FCNTL,
    nr::SENDMSG,
    nr::MSGSND,
    nr::RT_SIGSUSPEND,
    nr::VFORK,
    nr::RESTART_SYSCALL,
];

/// Points the output buffers of a blocking call at scratch slot `slot`, if the call has
/// any. The task is at the call's entry stop. Returns `None` when nothing needs
/// redirecting (or the buffers do not fit the slot, which is logged).
pub fn redirect(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    slot: u64,
) -> Result<Option<Redirected>> {
    let Some(desc) = syscalls::lookup(sysno) else {
        return Ok(None);
    };
    if !desc.may_block {
        return Ok(None);
    }
    let base = SCRATCH_BASE + (slot % SLOTS) * SLOT_SIZE;
    let mut plan = Plan {
        task,
        original: *args,
        args: *args,
        at: base,
        end: base + SLOT_SIZE,
        copies: Vec::new(),
    };
    match plan_call(&mut plan, desc) {
        Ok(()) => {}
        Err(Stop::TooBig) => {
            tracing::debug!("buffers of syscall {sysno} do not fit a scratch slot; not redirected");
            return Ok(None);
        }
        Err(Stop::Failed(e)) => return Err(e),
    }
    if plan.copies.is_empty() {
        return Ok(None);
    }
    set_args(plan.task, &plan.args)?;
    Ok(Some(Redirected {
        original_args: *args,
        copies: plan.copies,
    }))
}

fn plan_call(plan: &mut Plan<'_>, desc: &SyscallDesc) -> Step<()> {
    plan.outputs(desc.outputs)?;
    if desc.special {
        plan.special(desc.nr)?;
    }
    Ok(())
}

fn set_args(task: &mut Task, a: &[u64; 6]) -> Result<()> {
    let mut regs = task.regs()?;
    crate::arch::set_syscall_args(&mut regs, a);
    task.set_regs(&regs)
}

/// Copies the results back into the program's buffers and restores the argument
/// registers. The task is at the call's exit stop. A call that failed writes nothing
/// back, unless a signal interrupted it: then the whole-length copies come back (the
/// time left that nanosleep or ppoll wrote), as the engine records them
/// (`effects::collect_interrupted_outputs`).
pub fn complete(task: &mut Task, r: &Redirected, ret: i64) -> Result<()> {
    copy_back(task, r, ret)?;
    set_args(task, &r.original_args)
}

/// At the exit of `restart_syscall` continuing a redirected call (poll, nanosleep and
/// the like that a signal interrupted with `-ERESTART_RESTARTBLOCK`): the kernel saved
/// the output pointers it was given, the scratch copies, in its restart block, so the
/// restarted call wrote there. Copies them back as [`complete`] does and returns what
/// was written, as the `restart_syscall` event's memory writes (its own row has none).
/// The argument registers are left as they are (the restart does not use them).
pub fn restarted(task: &mut Task, r: &Redirected, ret: i64) -> Result<Vec<crate::trace::MemWrite>> {
    copy_back(task, r, ret)
}

/// Copies what the kernel wrote into the scratch copies back to the real buffers (as
/// far as [`complete`] says), returning the writes.
fn copy_back(task: &mut Task, r: &Redirected, ret: i64) -> Result<Vec<crate::trace::MemWrite>> {
    let mut writes = Vec::new();
    let interrupted = crate::kernel::restart::interrupted(ret);
    let mut left = ret.max(0) as usize;
    for c in &r.copies {
        let back_anyway = match c.back {
            Back::Always => true,
            Back::Whole => interrupted,
            _ => false,
        };
        if ret < 0 && !back_anyway {
            continue;
        }
        let one;
        let ranges: &[(usize, usize)] = match c.back {
            Back::Result => {
                let len = left.min(c.len);
                left -= len;
                one = [(0, len)];
                &one
            }
            Back::ResultTimes(k) => {
                one = [(0, (ret.max(0) as usize).saturating_mul(k).min(c.len))];
                &one
            }
            Back::Whole | Back::Always => {
                one = [(0, c.len)];
                &one
            }
            Back::Fields(fields) => fields,
        };
        for &(at, len) in ranges {
            if len > 0 {
                let data = task.read_mem(c.scratch + at as u64, len)?;
                task.write_mem(c.real + at as u64, &data)?;
                writes.push(crate::trace::MemWrite {
                    addr: c.real + at as u64,
                    data,
                });
            }
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::{Class, SYSCALLS};

    /// Every call that may block and writes memory is covered: its outputs come from
    /// its row, and a special row is either moved by hand here or known to write
    /// nothing while it blocks.
    #[test]
    fn every_blocking_call_with_outputs_is_covered() {
        let mut problems = Vec::new();
        for d in SYSCALLS.iter().filter(|d| d.may_block) {
            if matches!(d.class, Class::Unsupported { .. } | Class::Refused { .. }) {
                continue;
            }
            for o in d.outputs {
                if matches!(o.size, Size::Ret | Size::RetTimes(_))
                    && !matches!(
                        o.max,
                        Some(Size::Arg(_) | Size::ArgTimes(..) | Size::Fixed(_))
                    )
                {
                    problems.push(format!("{}: output of arg {} has no max", d.name, o.arg));
                }
            }
            let listed = [SPECIAL_REDIRECTED, SPECIAL_NOT_REDIRECTED]
                .iter()
                .filter(|l| l.contains(&d.nr))
                .count();
            match (d.special, listed) {
                (true, 1) | (false, 0) => {}
                (true, _) => problems.push(format!(
                    "{}: a special blocking row must be in exactly one of SPECIAL_REDIRECTED and SPECIAL_NOT_REDIRECTED",
                    d.name
                )),
                (false, _) => problems.push(format!("{}: listed but not special", d.name)),
            }
        }
        for &n in SPECIAL_REDIRECTED.iter().chain(SPECIAL_NOT_REDIRECTED) {
            match syscalls::lookup(n) {
                Some(d) if d.may_block && d.special => {}
                _ => problems.push(format!(
                    "{}: listed but not a special may_block row",
                    syscalls::name_of(n)
                )),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The calls the old hand-written list missed are covered now.
    #[test]
    fn blocking_calls_with_outputs_are_redirected() {
        for name in [
            "read",
            "pread64",
            "readv",
            "preadv",
            "preadv2",
            "recvfrom",
            "recvmsg",
            "accept",
            "accept4",
            "poll",
            "ppoll",
            "select",
            "pselect6",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "wait4",
            "waitid",
            "nanosleep",
            "clock_nanosleep",
            "rt_sigtimedwait",
            "mq_timedreceive",
            "splice",
            "sendfile",
        ] {
            let d = syscalls::by_name(name).expect(name);
            assert!(d.may_block, "{name}");
            assert!(
                !d.outputs.is_empty() || SPECIAL_REDIRECTED.contains(&d.nr),
                "{name} moves nothing to scratch"
            );
        }
    }

    /// Futex words are never moved: the kernel must compare and wait on the real word.
    #[test]
    fn futex_words_are_never_redirected() {
        for d in SYSCALLS.iter().filter(|d| d.name.starts_with("futex")) {
            assert!(d.outputs.is_empty(), "{} has outputs", d.name);
            assert!(!SPECIAL_REDIRECTED.contains(&d.nr), "{}", d.name);
        }
    }
}
