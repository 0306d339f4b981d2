//! Buffered calls that may block (issue 17): the desched event.
//!
//! The engine runs one thread at a time. A buffered call (no stop) that blocks, a read
//! on an empty pipe, would hold the recording up for ever: the thread that would write
//! the pipe never runs. So the library buffers reads on pipes, sockets and terminals
//! only in a thread that has a *desched event* (writes on them stay traced: the engine
//! orders the writes to one file at their entries, `ordering`): a software perf event
//! counting the thread's context switches (`PERF_COUNT_SW_CONTEXT_SWITCHES`, no PMU
//! needed), sample period 1, whose overflow signals the thread (`O_ASYNC`,
//! `F_SETOWN_EX` to it, `F_SETSIG` SIGSTOP, as the CPU-time slice clock does). The
//! library arms it just before the call and disarms it after, with ioctls through the
//! quiet entry (`syscallbuf::abi::QUIET_ENTRY`, not recorded). A call that blocks
//! switches the thread out: the signal interrupts the call and the thread stops. The
//! engine then gives the call [`abi::DESCHED_RET`] as its result (the kernel would
//! restart it); the library records that like any result and makes the call again,
//! traced, which takes the `Blocked` path. Replay sees a buffered call with that result
//! followed by the traced call, and needs nothing new.
//!
//! The same stop can be a false alarm: the thread was only preempted (the engine and
//! other jobs share the pinned core; another thread's stop wakes the engine), the call
//! finished. The engine ignores it. Every ptrace stop is a context switch too: an event
//! still armed would count the stop its own signal causes and signal again, a second
//! stop before the thread ran an instruction. So the event may overflow once
//! (`PERF_EVENT_IOC_REFRESH` with 1, [`charge`]): the kernel disables it at that
//! overflow, in the switch that raised it. At each of its signal's stops the engine
//! charges it again, armed if the call is still ahead (a false alarm before the call),
//! disarmed otherwise. (Before, the event was left enabled and the engine dropped the
//! second signal: a blocked read cost four stops, two more than a traced one.)
//!
//! Any signal that interrupts a buffered call in the kernel (the program's SIGALRM, a
//! preemption) is handled the same way: the call's result becomes
//! [`abi::DESCHED_RET`], so the call is made again, traced, where the held signal can
//! interrupt it as it would without buffering, and replay finds it there.
//!
//! The event is opened when the thread first needs it, so threads that never read a
//! pipe or a socket pay nothing: the registration's answer says so
//! ([`abi::DESCHED_LAZY`] in bits 32 and up), and the library makes the thread's first
//! read that may block traced, with [`abi::ASK_MARK`] in r9. At that read's exit the
//! engine opens the event in the thread by syscall injection, moves it to an fd from
//! [`abi::DESCHED_FD_FLOOR`] up (close-on-exec), and writes its number (-1 when it
//! could not) into the buffer's [`abi::H_DESCHED`] word, as a memory write of the
//! read's event, so replay gives the library the same; no stop is added. (Recorders
//! of trace format 12 opened it at every registration and gave the number in the
//! answer; the library still follows such answers, for their traces.) The engine keeps
//! its own handle (`pidfd_getfd`) to set the signal and to disarm it. A forked child
//! gets its own event under the same number (the child's copy of the parent's is
//! replaced; its copy of the buffer names it). Where perf events are refused
//! (`perf_event_paranoid` 2 or more without `CAP_PERFMON`: the count is of kernel
//! events; seccomp; no perf support), no thread gets one, calls that may block are
//! traced as before, and the trace header says so (`desched`). It is on by default;
//! `CARGO_CHAOS_DESCHED=0` turns it off (see [`available`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use perf_event_open_sys as sys;

use super::*;
use crate::inject::inject_syscall;
use crate::syscallbuf::abi;

// From the kernel's uapi (asm-generic/fcntl.h).
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// A thread's desched event.
#[derive(Debug)]
pub(super) struct Desched {
    /// The engine's handle on it.
    fd: OwnedFd,
    /// Its number in the program.
    pub(super) program_fd: i32,
    /// Disarmed at a false alarm while the call was still ahead: armed again at the
    /// next stop for its signal.
    rearm: bool,
}

impl Desched {
    /// Whether a signal's siginfo is this event's signal.
    fn sent(&self, si: &libc::siginfo_t) -> bool {
        if !crate::preempt::cpu_clock::from_a_clock(si) {
            return false;
        }
        // SAFETY: a siginfo_t is 128 bytes; for a SIGPOLL-style si_code the kernel put
        // `si_fd` (int) at offset 24 (the libc crate has no accessor).
        let fd = unsafe {
            std::ptr::read_unaligned(
                (si as *const libc::siginfo_t as *const u8).add(24) as *const i32
            )
        };
        fd == self.fd.as_raw_fd()
    }

    /// Whether `si` is this event's signal, which is then disarmed (armed again at its
    /// next stop if the call is still ahead): for stops the engine makes itself
    /// (stepping), where the signal is dropped.
    pub(super) fn swallow(&mut self, si: &libc::siginfo_t) -> bool {
        if !self.sent(si) {
            return false;
        }
        self.recharge(false);
        self.rearm = true;
        true
    }

    /// Whether a signal met while stepping disarmed it ([`Desched::swallow`]) although
    /// the library had armed it: the engine arms it again when the call is still ahead.
    pub(super) fn disarmed_by_a_step(&self) -> bool {
        self.rearm
    }

    /// Arms or disarms it for the engine, which does the library's ioctl itself
    /// (stepping a thread out of a buffered call).
    pub(super) fn set_armed(&mut self, armed: bool) {
        self.ioctl(armed);
        self.rearm = false;
    }

    /// After its signal: the event disabled itself at the overflow (see [`charge`]);
    /// it may overflow once more, and is left armed or not.
    fn recharge(&self, enable: bool) {
        charge(self.fd.as_raw_fd());
        if !enable {
            self.ioctl(false);
        }
    }

    fn ioctl(&self, enable: bool) {
        // SAFETY: perf ioctls on an fd we own; they fail only for a thread that is gone.
        unsafe {
            if enable {
                sys::ioctls::ENABLE(self.fd.as_raw_fd(), 0);
            } else {
                sys::ioctls::DISABLE(self.fd.as_raw_fd(), 0);
            }
        }
    }
}

/// Lets the event at `fd` overflow once more, and enables it (`PERF_EVENT_IOC_REFRESH`
/// with 1: the kernel disables the event itself at that overflow). So the signal is
/// raised by the switch of a call that blocks and not again by the thread's ptrace stop
/// for it (its own switch out), which would cost a second stop. The engine charges it
/// at its creation and again after each of its signals (the count is added to: one is
/// given per overflow seen).
fn charge(fd: i32) {
    // SAFETY: a perf ioctl on an fd we own; it fails only for a thread that is gone.
    unsafe {
        sys::ioctls::REFRESH(fd, 1);
    }
}

/// The event's attributes: context switches of the thread, a signal at each.
fn attr() -> sys::bindings::perf_event_attr {
    let mut attr = sys::bindings::perf_event_attr {
        type_: sys::bindings::PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
        config: sys::bindings::PERF_COUNT_SW_CONTEXT_SWITCHES as u64,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    attr.set_disabled(1);
    attr.set_exclude_hv(1);
    attr
}

/// Whether the engine may open desched events (on itself; the program runs with its
/// credentials): unless `CARGO_CHAOS_DESCHED=0`, and not where perf events are
/// refused.
///
/// It was opt-in while every thread's event was opened at its registration: a tokio
/// suite recorded ~8% slower in CPU time with it (docs/benchmarks.md). Opened at a
/// thread's first read that may block, only threads that read pipes or sockets pay.
pub(super) fn available() -> bool {
    if std::env::var_os("CARGO_CHAOS_DESCHED").is_some_and(|v| v == "0") {
        return false;
    }
    let mut a = attr();
    // SAFETY: `a` is a valid perf_event_attr with its size set.
    let fd = unsafe {
        sys::perf_event_open(&mut a, 0, -1, -1, sys::bindings::PERF_FLAG_FD_CLOEXEC as _)
    };
    if fd < 0 {
        let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        tracing::debug!(
            "no context-switch perf event ({}; kernel.perf_event_paranoid = {paranoid}): \
             buffered calls never block, pipes and sockets take the traced path",
            std::io::Error::last_os_error()
        );
        return false;
    }
    // SAFETY: closing the fd just opened.
    unsafe { libc::close(fd) };
    true
}

/// Opens a desched event in thread `task` of process `tgid`, stopped at a syscall's exit
/// or a signal stop (its registers are kept), using `scratch` (8-aligned memory of the
/// program's that nothing else uses now; its bytes are put back) for the attributes.
/// With `at` it replaces that fd (a forked child's copy of its parent's event), else it
/// gets the lowest free number from [`abi::DESCHED_FD_FLOOR`].
fn open_in(task: &mut Task, tgid: i32, scratch: u64, at: Option<i32>) -> Result<Desched> {
    let a = attr();
    let size = std::mem::size_of::<sys::bindings::perf_event_attr>();
    // SAFETY: perf_event_attr is plain data of `size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(&a as *const _ as *const u8, size) }.to_vec();
    let saved = task.read_mem(scratch, size)?;
    task.write_mem(scratch, &bytes)?;
    let insn = abi::ENTRY;
    let opened = inject_syscall(
        task,
        insn,
        libc::SYS_perf_event_open as u64,
        &[
            scratch,
            0,
            u64::MAX,
            u64::MAX,
            sys::bindings::PERF_FLAG_FD_CLOEXEC as u64,
        ],
    );
    task.write_mem(scratch, &saved)?;
    let first = opened?;
    if first < 0 {
        return Err(Error::Unsupported {
            what: format!("perf_event_open in thread {}: {}", task.tid, -first),
            hint: String::new(),
        });
    }
    let moved = match at {
        Some(n) => inject_syscall(
            task,
            insn,
            libc::SYS_dup3 as u64,
            &[first as u64, n as u64, libc::O_CLOEXEC as u64],
        )?,
        None => inject_syscall(
            task,
            insn,
            libc::SYS_fcntl as u64,
            &[
                first as u64,
                libc::F_DUPFD_CLOEXEC as u64,
                abi::DESCHED_FD_FLOOR,
            ],
        )?,
    };
    inject_syscall(task, insn, libc::SYS_close as u64, &[first as u64])?;
    let fail = |task: &mut Task, what: String| -> Result<Desched> {
        if moved >= 0 {
            inject_syscall(task, insn, libc::SYS_close as u64, &[moved as u64])?;
        }
        Err(Error::Unsupported {
            what,
            hint: String::new(),
        })
    };
    if moved < 0 {
        return fail(task, format!("moving the desched event's fd: {}", -moved));
    }
    // SAFETY: plain syscalls; the fds they return are owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tgid, 0) };
    if pidfd < 0 {
        let e = std::io::Error::last_os_error();
        return fail(task, format!("pidfd_open: {e}"));
    }
    // SAFETY: a new fd, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), moved, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return fail(task, format!("pidfd_getfd: {e}"));
    }
    // SAFETY: a new fd, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let owner = FOwnerEx {
        kind: F_OWNER_TID,
        pid: task.tid,
    };
    // SAFETY: fcntl on an fd we own; `owner` outlives the call. The owner, the signal
    // and O_ASYNC belong to the open file, which the program's fd shares.
    let ok = unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &owner as *const FOwnerEx) == 0
            && libc::fcntl(fd.as_raw_fd(), F_SETSIG, libc::SIGSTOP) == 0
            && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_ASYNC) == 0
    };
    if !ok {
        let e = std::io::Error::last_os_error();
        return fail(task, format!("setting the desched event's signal: {e}"));
    }
    // One overflow allowed, then disarmed until the library arms it.
    charge(fd.as_raw_fd());
    // SAFETY: a perf ioctl on an fd we own.
    unsafe { sys::ioctls::DISABLE(fd.as_raw_fd(), 0) };
    Ok(Desched {
        fd,
        program_fd: moved as i32,
        rearm: false,
    })
}

impl Recorder {
    /// The answer to a registration answered `budget`: with [`abi::DESCHED_LAZY`] in
    /// bits 32 and up when the thread may get a desched event (opened at its first read
    /// that may block, [`Recorder::desched_asked`]).
    pub(super) fn desched_answer(&self, budget: i64) -> i64 {
        if !self.desched {
            return budget;
        }
        budget | ((abi::DESCHED_LAZY as i64) << 32)
    }

    /// At the exit of `cur`'s traced call, which returned `ret`: when it is the
    /// library's read asking for the thread's desched event ([`abi::ASK_MARK`]), opens
    /// the event and writes its fd (-1 when it cannot) into the buffer's
    /// [`abi::H_DESCHED`] word; the write is returned for the read's event, so replay
    /// makes it too. A read cut short by a signal is made again (restarted, or by the
    /// library) and asks again.
    pub(super) fn desched_asked(
        &mut self,
        cur: i32,
        ret: i64,
    ) -> Result<Option<crate::trace::MemWrite>> {
        if !self.desched || crate::kernel::restart::interrupted(ret) {
            return Ok(None);
        }
        let Some(t) = self.threads.get_mut(&cur) else {
            return Ok(None);
        };
        let asks = t.pending.as_ref().is_some_and(|p| {
            p.nr == nr::READ && p.args[5] == abi::ASK_MARK && p.fake_ret.is_none()
        });
        if !asks || t.desched.is_some() {
            return Ok(None);
        }
        // Not for a vfork child on its parent's buffer: the word would name the child's
        // fd to the parent, whose fd table does not have it. It keeps asking (traced).
        let Some(buffer) =
            t.sb.as_ref()
                .filter(|sb| std::rc::Rc::strong_count(sb) == 1)
                .map(|sb| sb.borrow().addr())
        else {
            return Ok(None);
        };
        // The attributes go into the buffer's record area (put back afterwards).
        let scratch = buffer + abi::HEADER_WORDS * 8;
        let fd: i64 = match open_in(&mut t.task, t.tgid, scratch, None) {
            Ok(d) => {
                let fd = d.program_fd;
                tracing::debug!("thread {cur}: desched event at fd {fd}");
                t.desched = Some(d);
                self.desched_events += 1;
                fd.into()
            }
            Err(e) => {
                tracing::debug!(
                    "thread {cur}: no desched event ({e}); calls that may block are traced"
                );
                -1
            }
        };
        let w = crate::trace::MemWrite {
            addr: buffer + abi::H_DESCHED * 8,
            data: fd.to_le_bytes().to_vec(),
        };
        t.task.write_mem(w.addr, &w.data)?;
        Ok(Some(w))
    }

    /// A forked or vforked child (`child`, at its first stop) of `parent`: its own
    /// desched event under the number its copy of the parent's thread-local state names
    /// (its fd table is a copy of its parent's).
    pub(super) fn desched_for_child(&mut self, parent: i32, child: i32) {
        let Some(n) = self
            .threads
            .get(&parent)
            .and_then(|t| t.desched.as_ref())
            .map(|d| d.program_fd)
        else {
            return;
        };
        let Some(t) = self.threads.get_mut(&child) else {
            return;
        };
        // Its copy of the buffer's record area (the bytes are put back).
        let Some(scratch) =
            t.sb.as_ref()
                .map(|sb| sb.borrow().addr() + abi::HEADER_WORDS * 8)
        else {
            return;
        };
        match open_in(&mut t.task, t.tgid, scratch, Some(n)) {
            Ok(d) => {
                t.desched = Some(d);
                self.desched_events += 1;
            }
            Err(e) => {
                // Its calls that block would arm its parent's event: none of its own.
                tracing::debug!("forked child {child}: no desched event ({e})");
                let _ =
                    inject_syscall(&mut t.task, abi::ENTRY, libc::SYS_close as u64, &[n as u64]);
            }
        }
    }

    /// At a signal stop of `cur` (`sig`): a buffered call interrupted in the kernel gets
    /// [`abi::DESCHED_RET`] (made again, traced); the desched event is disarmed (and
    /// armed again, see the module's notes). Returns whether the stop was the desched
    /// event's own signal, which the program never sees.
    pub(super) fn desched_stop(&mut self, cur: i32, sig: i32) -> Result<bool> {
        let Some(t) = self.threads.get_mut(&cur) else {
            return Ok(false);
        };
        let Some(sb) = t.sb.clone() else {
            return Ok(false);
        };
        let ours = sig == libc::SIGSTOP
            && t.desched.is_some()
            && t.task
                .siginfo()
                .is_ok_and(|si| t.desched.as_ref().is_some_and(|d| d.sent(&si)));
        let mut regs = t.task.regs()?;
        if !ours && regs.rip != abi::ENTRY_IP {
            return Ok(false);
        }
        let in_call_at = sb.borrow().addr() + abi::H_IN_CALL * 8;
        let in_call = match t.task.read_mem(in_call_at, 8) {
            Ok(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            Err(e) if e.is_gone() => return Ok(ours),
            Err(e) => return Err(e),
        };
        if in_call != 0
            && regs.rip == abi::ENTRY_IP
            && crate::kernel::restart::interrupted(regs.rax as i64)
            && syscalls::lookup(regs.orig_rax).is_some_and(|d| d.buffered)
        {
            // It blocked (or a signal cut it short): made again, traced.
            tracing::debug!(
                "thread {cur}: buffered {} interrupted ({}) by {}: made again, traced",
                syscalls::name_of(regs.orig_rax),
                regs.rax as i64,
                signal_name(sig)
            );
            regs.rax = abi::DESCHED_RET as u64;
            t.task.set_regs(&regs)?;
            if let Some(d) = t.desched.as_mut() {
                if ours {
                    d.recharge(false);
                } else {
                    d.ioctl(false);
                }
                d.rearm = false;
            }
        } else if ours {
            let d = t.desched.as_mut().expect("checked above");
            // Before its call, or in it at a stop: the call is still to come, armed
            // again now (the event disabled itself at the overflow, so this stop's own
            // switch raised no second signal).
            let ahead = in_call == 1 && regs.rip != abi::ENTRY_IP;
            if regs.rip == abi::ENTRY_IP && regs.rax as i64 == abi::DESCHED_RET {
                // The thread has not run since the engine answered its call: raised by
                // that stop's own switch, which the disabled event should not count.
                tracing::debug!("thread {cur}: a second desched signal for one blocked call");
            }
            d.recharge(ahead);
            d.rearm = false;
        }
        if ours {
            t.state = Where::Ready(0);
            self.desched_signals += 1;
        }
        Ok(ours)
    }

    /// Whether `si` is the signal of `cur`'s desched event (then disarmed, see
    /// [`Desched::swallow`]): a stop that was not the program's, to drop.
    pub(super) fn is_desched_signal(&mut self, cur: i32, sig: i32, si: &libc::siginfo_t) -> bool {
        let ours = sig == libc::SIGSTOP
            && self
                .threads
                .get_mut(&cur)
                .and_then(|t| t.desched.as_mut())
                .is_some_and(|d| d.swallow(si));
        if ours {
            self.desched_signals += 1;
        }
        ours
    }

    /// Whether `cur` is about to close (or `dup2` over) a desched event's fd of its
    /// process: the call is answered `EBADF` instead (the library's fd is not the
    /// program's, and natively that number would be free). `close_range` is not
    /// followed: after it, the library's arming fails and its calls that block are only
    /// ended by the slice's backstop.
    pub(super) fn closes_desched_fd(&self, cur: i32, sysno: u64, args: &[u64; 6]) -> bool {
        if !self.desched {
            return false;
        }
        let fd = match sysno {
            nr::CLOSE => args[0],
            nr::DUP2 | nr::DUP3 => args[1],
            _ => return false,
        };
        let Some(tgid) = self.threads.get(&cur).map(|t| t.tgid) else {
            return false;
        };
        self.threads.values().any(|t| {
            t.tgid == tgid
                && t.desched
                    .as_ref()
                    .is_some_and(|d| d.program_fd as u64 == fd)
        })
    }
}
