//! Signals at record: preemption stops, faults that recur by themselves, signals held
//! until a point replay can name (right after a syscall of the thread), and the
//! rdtsc/cpuid traps answered by the recorder.

use super::*;
use crate::syscallbuf::abi;

impl Thread {
    /// Whether this thread holds a signal that its next buffered call should bring to a
    /// traced one (with the recorder's filter, `seccomp`): it is then resumed with
    /// `PTRACE_SYSCALL`, which stops even the calls the filter lets through (see
    /// [`Recorder::bounce_for_held_signal`]).
    pub(super) fn wants_every_call(&self, seccomp: bool) -> bool {
        seccomp && self.sb.is_some() && !self.deferred.is_empty() && self.requeued.is_none()
    }
}

impl Recorder {
    pub(super) fn on_signal(&mut self, cur: i32, sig: i32) -> Result<i32> {
        let multi = self.threads.len() > 1;
        let t = self.threads.get_mut(&cur).expect("current");
        let regs = t.task.regs()?;
        let exit_rip = t.exit_rip.take();
        let exit_unblocks = std::mem::take(&mut t.exit_unblocks);
        if sig == libc::SIGSEGV {
            let bytes = t.task.read_mem_partial(regs.rip, 3)?;
            let own_fault = t.tsc_sigsegv;
            if let Some(insn) = Trapped::decode(&bytes)
                .filter(|&i| !(own_fault && matches!(i, Trapped::Rdtsc | Trapped::Rdtscp)))
            {
                let event = emulate(&mut t.task, insn, regs, &mut self.cpuid_seen)?;
                if t.segv_blocked {
                    reblock_segv(&t.task)?;
                }
                self.events.push(&event)?;
                return Ok(0);
            }
        }
        let si = match t.task.siginfo() {
            Ok(si) => si,
            // No siginfo: a group-stop, not a delivery (handled before, see
            // `job_control`).
            Err(Error::Ptrace { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        if sig == libc::SIGSTOP
            && (sent_by_recorder(&si) || t.clock.as_ref().is_some_and(|c| c.sent(&si)))
        {
            // The watchdog's or the interrupter's stop, caught while the thread was
            // stepped (a short chaos slice can end again before the thread reports the
            // first one): never the program's, never delivered; delivered, it would
            // stop the whole process (a group-stop nobody continues).
            tracing::debug!("thread {cur}: a second SIGSTOP of the recorder's, dropped");
            return Ok(0);
        }
        if self.is_desched_signal(cur, sig, &si) {
            // The desched event's, met while the engine stepped the thread.
            self.threads.get_mut(&cur).expect("current").exit_rip = exit_rip;
            return Ok(0);
        }
        let t = self.threads.get_mut(&cur).expect("current");
        if let Some(req) = t.requeued.take() {
            if req.si_signo == sig {
                // A deferred signal, queued again right after a syscall: deliver it
                // with its original siginfo.
                t.task.set_siginfo(&req)?;
                self.events.push(&Event::Signal {
                    tid: cur,
                    signo: sig,
                    rip: regs.rip,
                    injected: true,
                    info: siginfo_bytes(&req),
                })?;
                if job_control::is_stop_signal(sig) {
                    // Still right after the call while stopped (see `job_control`).
                    t.exit_rip = Some(regs.rip);
                    t.exit_unblocks = true;
                }
                return self.deliver_to_handler(cur, sig);
            }
            t.requeued = Some(req);
        }
        // SAFETY: si_pid is valid for SI_USER.
        if sig == libc::SIGSTOP
            && multi
            && si.si_code == libc::SI_USER
            && unsafe { si.si_pid() } == 0
        {
            // A leftover initial stop of a new task (the kernel queues it without a
            // sender); nothing to deliver. A kill(SIGSTOP) names its sender.
            return Ok(0);
        }
        if is_fault(sig, si.si_code) {
            let tgid = self.threads.get(&cur).map_or(cur, |t| t.tgid);
            if self.pidns.led_by(tgid).is_some() && !crate::replay::signal::caught(cur, sig) {
                // Natively it dies of it; under ptrace the kernel keeps the first process
                // of a pid namespace alive and drops the signal, and the instruction
                // faults again, for ever.
                return Err(Error::Unsupported {
                    what: format!(
                        "a {} without a handler in the first process of a pid namespace",
                        signal_name(sig)
                    ),
                    hint: "a traced namespace's first process does not die of a fault; \
                           fork the crashing code into a child of it"
                        .into(),
                });
            }
            self.events.push(&Event::Signal {
                tid: cur,
                signo: sig,
                rip: regs.rip,
                injected: false,
                info: Vec::new(),
            })?;
            return Ok(sig);
        }
        if matches!(
            sig,
            libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
        ) && !self.sent_by_tree(cur, &si)
            && (si.si_code != libc::SI_KERNEL || self.in_first_group(cur))
        {
            // Ctrl-C at the terminal, or a kill from outside: end the recording, the way
            // `Interrupter::interrupt` does (the engine stops the program itself; the
            // recorder's own Ctrl-C handler may have asked already, and a second
            // `interrupt` would kill before the finished calls are written down).
            self.interrupter.note(Outcome::Interrupted);
            // SAFETY: plain syscall to our own tracee.
            unsafe { libc::kill(self.leader, libc::SIGSTOP) };
            return Ok(0);
        }
        let t = self.threads.get_mut(&cur).expect("current");
        // The last call the thread made, if it made one since it was last interrupted:
        // an untraced call (see `seccomp`) returning to the same address as the traced
        // call before it is not a point replay can name.
        let after_untraced =
            syscalls::untraced_call(regs.orig_rax, &crate::arch::syscall_args(&regs));
        // Every way into the kernel but a syscall (an interrupt, a fault, a trap) sets
        // `orig_rax` to -1, and a signal is delivered only on the way out of the
        // kernel: a syscall number there means the thread entered the kernel last by
        // that call, so it runs no instruction since its exit. Only `exit_rip` equal
        // to `rip` does not say so: a loop comes back to the same address, and a
        // signal that arrived there later, queued again at the call's exit by replay,
        // would be delivered in the wrong iteration (issue 16: a loop the handler's
        // `rt_sigreturn` returns into). `rt_sigreturn` restores `orig_rax` = -1 itself:
        // after it, only a signal already pending at its exit is right after it.
        let no_entry_since = (regs.orig_rax as i64) >= 0 || exit_unblocks;
        if exit_rip == Some(regs.rip) && no_entry_since && !(self.seccomp && after_untraced) {
            // Right after a syscall: a point replay can name and queue the signal at.
            self.events.push(&Event::Signal {
                tid: cur,
                signo: sig,
                rip: regs.rip,
                injected: true,
                info: siginfo_bytes(&si),
            })?;
            if job_control::is_stop_signal(sig) {
                // Still right after the call while stopped (see `job_control`).
                t.exit_rip = exit_rip;
                t.exit_unblocks = true;
            }
            return self.deliver_to_handler(cur, sig);
        }
        if self.stop_at_point == Some(regs.rip)
            && regs.orig_rax == u64::MAX
            && t.deferred.is_empty()
            && t.requeued.is_none()
        {
            // The first stop since the thread was resumed at its preemption point, for
            // a signal pending then: it ran no instruction, and replay stands there
            // too. Given at the point, rather than held until a later call (a thread
            // that sees the sender's next move before its handler ran does what it
            // never does natively).
            t.deferred.push_back(si);
            t.held_since
                .get_or_insert_with(crate::arch::self_traps::monotonic_now);
            self.give_held_signal(cur, &regs)?;
            let t = self.threads.get(&cur).expect("current");
            return Ok(match t.state {
                Where::Ready(deliver) if t.deferred.is_empty() => deliver,
                // Not given after all: held, as below.
                _ => 0,
            });
        }
        // Somewhere in user code, a point replay cannot find again: hold the signal
        // and queue it again at this thread's next syscall exit (or give it at a
        // preemption point if the thread makes no traced call for a while, see
        // `slices::HELD_SIGNAL_SLICE`).
        t.deferred.push_back(si);
        t.held_since
            .get_or_insert_with(crate::arch::self_traps::monotonic_now);
        Ok(0)
    }

    /// Thread `cur`, holding a signal (see [`Thread::wants_every_call`]), stopped at the
    /// entry of call `nr` with `args`. A buffered call (at the untraced entry) is not
    /// made: it gets [`abi::DESCHED_RET`], so the library makes it again, traced, and
    /// the held signal is given at that call's exit, a point replay names. (Natively the
    /// kernel delivers a signal at the first syscall's exit after it arrives; held until
    /// the library's next flush, it came hundreds of buffered calls late, after the
    /// program had moved on: rr's async_signal_syscalls2 saw its sender's `done` first,
    /// with a handler still to run.) Any other call runs on to the filter's stop, where
    /// it is recorded as usual, or, let through, to its exit as it would without a stop.
    /// `None` when the thread holds no such signal.
    pub(super) fn bounce_for_held_signal(
        &mut self,
        cur: i32,
        nr: u64,
        args: &[u64; 6],
    ) -> Result<Option<Next>> {
        let t = self.threads.get(&cur).expect("current");
        if !t.wants_every_call(self.seccomp) {
            return Ok(None);
        }
        let mut regs = t.task.regs()?;
        let buffered = regs.rip == abi::ENTRY_IP;
        let t = self.threads.get_mut(&cur).expect("current");
        if buffered {
            tracing::debug!(
                "thread {cur}: buffered {} made traced, for a held signal",
                syscalls::name_of(nr)
            );
            regs.orig_rax = u64::MAX;
            t.task.set_regs(&regs)?;
        }
        let stop = loop {
            t.task.resume(Resume::Syscall, 0)?;
            match t.task.wait()? {
                // The filter's verdict on a skipped call, if it gives one.
                Stop::Event(libc::PTRACE_EVENT_SECCOMP) if buffered => continue,
                stop => break stop,
            }
        };
        match stop {
            Stop::Syscall => {
                if buffered {
                    let mut regs = t.task.regs()?;
                    regs.rax = abi::DESCHED_RET as u64;
                    t.task.set_regs(&regs)?;
                }
                t.state = Where::Ready(0);
                Ok(Some(Next::Continue))
            }
            // A call the filter stops: recorded from its seccomp stop, as usual.
            Stop::Event(libc::PTRACE_EVENT_SECCOMP) => {
                t.state = Where::Ready(0);
                self.on_entry(cur, nr, *args, true, false).map(Some)
            }
            other => self.on_stop(cur, other).map(Some),
        }
    }

    /// Whether stopped thread `cur`, resumed now without a signal, stops first for a
    /// signal already pending, before it runs an instruction: one of its own that it
    /// does not block, or one of its process's that no other thread can take first (all
    /// of them stopped: a thread in a blocking call would take one it does not block).
    pub(super) fn signal_comes_first(&self, cur: i32) -> bool {
        let (own, process) = pending_unblocked(cur);
        if own != 0 {
            return true;
        }
        if process == 0 {
            return false;
        }
        let tgid = self.threads.get(&cur).map_or(cur, |t| t.tgid);
        !self
            .threads
            .iter()
            .any(|(&tid, t)| tid != cur && t.tgid == tgid && matches!(t.state, Where::Blocked))
    }

    /// Thread `cur` was just preempted at the end of its held signal's slice, at a point
    /// with registers `at` (recorded as [`Event::Preempted`]), and is at a signal stop
    /// there: it is given its oldest held signal at that point, with its siginfo
    /// ([`Event::SignalAtPoint`]; replay finds the point and gives it the same way).
    /// Not in or right after a syscall (the point is that call's exit, where the signal
    /// is queued again anyway), nor while a signal queued again is on its way, nor
    /// when the thread blocks the signal now: the signal then stays held.
    pub(super) fn give_held_signal(&mut self, cur: i32, at: &crate::ptrace::Regs) -> Result<()> {
        if !self.can_give_held_signal(cur, at)? {
            return Ok(());
        }
        let t = self.threads.get_mut(&cur).expect("current");
        let mut regs = t.task.regs()?;
        if regs.rip != at.rip {
            // A signal met during the steps was delivered already (its handler's first
            // instruction): no longer at the point.
            return Ok(());
        }
        let si = t.deferred.pop_front().expect("checked above");
        let signo = si.si_signo;
        if regs.eflags & DEBUG_FLAGS != 0 {
            // The signal frame saves the flags: the debugger's resume and trap flags
            // are not the program's (replay clears them too).
            regs.eflags &= !DEBUG_FLAGS;
            t.task.set_regs(&regs)?;
        }
        // At this signal stop (a step's trap, the slice's SIGSTOP, or a signal that
        // arrived during the steps, held above), the kernel delivers the signal the
        // thread is resumed with, with the siginfo set here (its number is the same).
        t.task.set_siginfo(&si)?;
        t.held_since = (!t.deferred.is_empty()).then(crate::arch::self_traps::monotonic_now);
        self.events.push(&Event::SignalAtPoint {
            tid: cur,
            signo,
            rip: regs.rip,
            info: siginfo_bytes(&si),
        })?;
        let deliver = self.deliver_to_handler(cur, signo)?;
        self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver);
        tracing::debug!(
            "thread {cur}: {} given at a preemption point ({:#x})",
            crate::trace::signal_name(signo),
            regs.rip
        );
        Ok(())
    }

    /// Thread `cur` stands at the delivery stop of asynchronous signal `sig`, which the
    /// trace just gave it (an injected [`Event::Signal`] or an [`Event::SignalAtPoint`]):
    /// a caught one is delivered now, by one step that stops at the handler's first
    /// instruction, where the frame's stale fault fields are cleared (see
    /// [`clear_fault_fields`]; replay does the same). Returns the signal the thread is
    /// still to be resumed with: 0 then, `sig` for a signal without a handler or a stop
    /// signal (their default actions are the kernel's, no frame).
    pub(super) fn deliver_to_handler(&mut self, cur: i32, sig: i32) -> Result<i32> {
        let t = self.threads.get_mut(&cur).expect("current");
        // Delivered, it leaves its preemption point (a frame, the handler).
        t.at_point = None;
        if job_control::is_stop_signal(sig) || !catches(cur, sig) {
            return Ok(sig);
        }
        match step_into_handler(&mut t.task, sig)? {
            Stop::Signal(libc::SIGTRAP) => {
                clear_fault_fields(&mut t.task)?;
                Ok(0)
            }
            Stop::Exited(_) | Stop::Killed(_) => Err(Error::TaskGone { pid: cur }),
            other => Err(Error::Unsupported {
                what: format!(
                    "thread {cur} stopped with {other:?} as it was given {}",
                    crate::trace::signal_name(sig)
                ),
                hint: "report this as a bug".into(),
            }),
        }
    }

    /// Whether thread `cur`, stopped with registers `at`, can be given its oldest held
    /// signal there (see [`Self::give_held_signal`]); if not, the signal stays held for
    /// another whole slice, rather than a stop at every short one.
    pub(super) fn can_give_held_signal(
        &mut self,
        cur: i32,
        at: &crate::ptrace::Regs,
    ) -> Result<bool> {
        let t = self.threads.get_mut(&cur).expect("current");
        let Some(signo) = t.deferred.front().map(|si| si.si_signo) else {
            return Ok(false);
        };
        let ok = at.orig_rax == u64::MAX
            && t.requeued.is_none()
            && (1..=64).contains(&signo)
            && t.task.sigmask()? & (1u64 << (signo - 1)) == 0;
        if !ok {
            t.held_since = Some(crate::arch::self_traps::monotonic_now());
        }
        Ok(ok)
    }

    /// Thread `cur` is at the entry of a call that may block, with a signal held (see
    /// [`Self::on_signal`]): the signal is queued again now, so that it interrupts the
    /// call if the call waits (a held signal otherwise waits for the call's end, which
    /// may never come: a child blocked in read() while its parent waits to see it
    /// stopped). It is delivered right after the call, with its original siginfo, like
    /// one queued again at a call's exit; the copy queued here says `SI_QUEUE` (the only
    /// kind another process may send), replaced at delivery.
    pub(super) fn queue_deferred_now(&mut self, cur: i32) -> Result<()> {
        let t = self.threads.get_mut(&cur).expect("current");
        if t.requeued.is_some() {
            return Ok(());
        }
        let Some(si) = t.deferred.pop_front() else {
            return Ok(());
        };
        if !queue_signal(t.tgid, cur, &si) {
            // Gone meanwhile: the signal goes back to wait for the call's exit.
            t.deferred.push_front(si);
            return Ok(());
        }
        t.requeued = Some(si);
        Ok(())
    }

    /// Whether a SIGSTOP stop of `tid` is the end of its slice (the watchdog's tgkill
    /// or its CPU-time clock).
    pub(super) fn is_preemption(&self, tid: i32) -> Result<bool> {
        let si = match self.threads[&tid].task.siginfo() {
            Ok(si) => si,
            Err(Error::Ptrace { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(self.sent_by_recorder(tid, &si))
    }

    /// Whether thread `tid`'s process is in the process group the recording started in,
    /// the one the recorder's terminal signals (the terminal's foreground group when the
    /// recorder had it). A terminal of the program's own (a pty), or the kernel's SIGHUP
    /// to a process group its parent's exit orphaned, signals other groups.
    pub(super) fn in_first_group(&self, tid: i32) -> bool {
        // SAFETY: plain syscall.
        unsafe { libc::getpgid(tid) == self.first_group }
    }

    /// Whether a signal was sent by one of the recorded processes (kill, tgkill...).
    pub(super) fn sent_by_tree(&self, tid: i32, si: &libc::siginfo_t) -> bool {
        if si.si_code != libc::SI_USER
            && si.si_code != libc::SI_TKILL
            && si.si_code != libc::SI_QUEUE
        {
            return si.si_code != libc::SI_KERNEL;
        }
        // SAFETY: si_pid is valid for SI_USER/SI_TKILL/SI_QUEUE.
        let pid = unsafe { si.si_pid() };
        if pid == 0 && self.pidns.depth(tid) > 0 {
            // From a pid namespace above the receiver's: a process of the tree outside
            // the program's namespace (not the terminal, whose signals are SI_KERNEL).
            return true;
        }
        // The receiver names the sender in its own pid namespace.
        let Some(pid) = self.pidns.global(tid, pid) else {
            return false;
        };
        self.threads.values().any(|t| t.tgid == pid)
    }
}

/// The resume (RF) and trap (TF) flags: the debugger's, cleared before a signal frame
/// saves the flags at a preemption point (record and replay alike).
pub(crate) const DEBUG_FLAGS: u64 = 0x10000 | 0x100;

/// Whether thread `tid` has a signal pending (for itself or its process) that it does
/// not block (`/proc/TID/status`); false when that cannot be read.
pub(super) fn unblocked_pending(tid: i32) -> bool {
    let (own, process) = pending_unblocked(tid);
    own | process != 0
}

/// Signals pending for thread `tid` that it does not block (`/proc/TID/status`): its
/// own (`SigPnd`) and its process's (`ShdPnd`); none when that cannot be read.
fn pending_unblocked(tid: i32) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return (0, 0);
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0)
    };
    let blocked = mask("SigBlk:");
    (mask("SigPnd:") & !blocked, mask("ShdPnd:") & !blocked)
}

/// Whether thread `tid` has a handler for `sig` (`SigCgt` of `/proc/TID/status`).
pub(crate) fn catches(tid: i32, sig: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .is_some_and(|mask| (1..=64).contains(&sig) && mask & (1 << (sig - 1)) != 0)
}

/// Resumes `task`, at the delivery stop of caught signal `sig`, with one step: the
/// kernel builds the handler's frame and reports the step's trap at the handler's first
/// instruction, before it runs (a `SIGTRAP` stop). Returns the stop.
pub(crate) fn step_into_handler(task: &mut Task, sig: i32) -> Result<Stop> {
    task.resume(Resume::Step, sig)?;
    task.wait()
}

/// Offset of `err` in the frame's `ucontext` (flags, link and `stack_t`, 40 bytes, then
/// the sigcontext: 18 registers and 4 segment selectors before `err`); `trapno`
/// follows it, then `oldmask`, then `cr2`.
const UC_ERR: u64 = 40 + 18 * 8 + 8;

/// At the first instruction of a handler of an asynchronous signal: zeroes the frame's
/// `err`, `trapno` and `cr2`. The kernel fills them from the thread's last exception,
/// which for a signal no instruction raised is stale, and differs between record and
/// replay (the engine's own traps: the recorder's steps, replay's patched traps and
/// breakpoints); the program can read them (`uc_mcontext.gregs[REG_TRAPNO]`), and they
/// are part of the stack compared at a preemption point inside the handler. The frame
/// is at `rsp`: the return address, then the `ucontext`.
pub(crate) fn clear_fault_fields(task: &mut Task) -> Result<()> {
    let uc = task.regs()?.rsp + 8;
    task.write_mem(uc + UC_ERR, &[0u8; 16])?;
    task.write_mem(uc + UC_ERR + 24, &[0u8; 8])
}

/// Whether `task` blocks SIGSEGV now.
pub(crate) fn blocks_segv(task: &Task) -> Result<bool> {
    Ok(task.sigmask()? & segv_bit() != 0)
}

/// Blocks SIGSEGV again in `task`, after a trapped instruction's fault: the kernel
/// unblocks a blocked SIGSEGV to force the fault's delivery (and resets its handler,
/// which natively would not have run either), and the program, which never faulted
/// natively, must find its mask as it left it (rr's sigprocmask_exec: blocked across
/// an exec, and the dynamic loader's rdtsc unblocked it). Used at record and replay,
/// whose traps are the same.
pub(crate) fn reblock_segv(task: &Task) -> Result<()> {
    let mask = task.sigmask()?;
    task.set_sigmask(mask | segv_bit())
}

fn segv_bit() -> u64 {
    1 << (libc::SIGSEGV - 1)
}

/// The raw bytes of a siginfo, for the trace.
pub(super) fn siginfo_bytes(si: &libc::siginfo_t) -> Vec<u8> {
    // SAFETY: siginfo_t is 128 bytes of plain data.
    unsafe {
        std::slice::from_raw_parts(
            si as *const _ as *const u8,
            std::mem::size_of::<libc::siginfo_t>(),
        )
    }
    .to_vec()
}

/// A fault raised by the thread's own instruction: it recurs by itself at replay.
pub(super) fn is_fault(sig: i32, code: i32) -> bool {
    matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    ) && code > 0
}

pub(super) fn emulate(
    task: &mut Task,
    insn: Trapped,
    mut regs: crate::ptrace::Regs,
    cpuid_seen: &mut BTreeSet<[u32; 6]>,
) -> Result<Event> {
    let tid = task.tid;
    let rip = regs.rip;
    let event = match insn {
        Trapped::Rdtsc | Trapped::Rdtscp => {
            let (tsc, aux) = arch::read_tsc();
            arch::apply_tsc(&mut regs, tsc, aux, insn == Trapped::Rdtscp);
            Event::Rdtsc {
                tid,
                rip,
                rdtscp: insn == Trapped::Rdtscp,
                tsc,
                aux,
            }
        }
        Trapped::Cpuid => {
            let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
            let out = arch::masked_cpuid(leaf, subleaf);
            arch::apply_cpuid(&mut regs, out);
            cpuid_seen.insert([leaf, subleaf, out[0], out[1], out[2], out[3]]);
            Event::Cpuid {
                tid,
                rip,
                leaf,
                subleaf,
                out,
            }
        }
    };
    task.set_regs(&regs)?;
    Ok(event)
}

/// Whether a signal was sent by this process with `tgkill` (the watchdog ending a slice,
/// the interrupter stopping the program): the recorder's, not the program's.
pub(super) fn sent_by_recorder(si: &libc::siginfo_t) -> bool {
    crate::pidns::tkill_from_this_process(si)
}

/// Queues `si` to thread `tid` of `tgid` (`rt_tgsigqueueinfo`, which needs the code
/// `SI_QUEUE`; the kernel's own siginfo is given back at the delivery stop). False when
/// the thread is gone.
pub(super) fn queue_signal(tgid: i32, tid: i32, si: &libc::siginfo_t) -> bool {
    let mut queued = *si;
    queued.si_code = libc::SI_QUEUE;
    // SAFETY: plain syscall to our own tracee with a siginfo we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            tgid,
            tid,
            si.si_signo,
            &queued as *const libc::siginfo_t,
        )
    };
    r == 0
}
