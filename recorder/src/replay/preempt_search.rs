//! Finding a recorded preemption point ([`Event::Preempted`]) again, cheaply.
//!
//! - [`Method::StateMatch`]: when the instruction at the point can be displaced (see
//!   [`crate::preempt::insn::unpatchable`]; several short ones when the function's
//!   bounds from `.eh_frame` show no branch into them, see
//!   [`crate::preempt::insn::displaced`]), a conditional trap is patched in (see
//!   [`crate::preempt::patch`]): the thread runs at full speed and traps only where its
//!   registers and the recorded stack words match, and the engine then compares the
//!   full state. Otherwise the hardware breakpoint search
//!   ([`Replayer::run_to_preemption`]), with a debug log saying why.
//! - [`Method::RepString`]: a hardware breakpoint at the `rep` instruction; at a hit
//!   whose registers say that it is the recorded execution of it, only the iterations
//!   that had been done at record run (`rcx` lowered, a breakpoint on the next
//!   instruction), then `rcx` and `rip` are put back and the full state compared.

use super::{RThread, Replayer, Step};
use crate::address_space::{read_maps, STUB_SYSCALL};
use crate::errors::{Error, Result};
use crate::inject::inject_syscall;
use crate::preempt::point::{Method, PointInfo};
use crate::preempt::{self, function, insn, patch, PreemptState};
use crate::ptrace::{Regs, Resume, Stop};
use crate::trace::Event;

/// Index of `rcx`, `rsi`, `rdi` and `rip` in the recorded register vector.
const RCX: usize = 11;
const RSI: usize = 13;
const RDI: usize = 14;
const RIP: usize = 16;
const EFLAGS: usize = 18;
/// CF, PF, AF, ZF, SF and OF in `eflags`.
const STATUS_FLAGS: u64 = 0x8d5;

/// A trampoline patched into a replayed process.
struct Patched {
    rip: u64,
    /// The trampoline's quick check ran `cmp`s on dead flags: the status flags at a
    /// trap are the trampoline's, and the recorded ones are put back.
    flags_dead: bool,
    original: Vec<u8>,
    tramp: patch::Trampoline,
}

impl Replayer<'_> {
    /// Runs the thread to the recorded preemption point `want`, found as `point` says.
    pub(super) fn run_to_preempted(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &PreemptState,
        point: &PointInfo,
    ) -> Result<Step> {
        if let Some(why) = point.method.unavailable() {
            return Err(Error::Unsupported {
                what: format!(
                    "this trace cannot be replayed here: {why} (event {}, {})",
                    self.index,
                    ev.describe()
                ),
                hint: "replay it with the tool and on the kind of machine that recorded it".into(),
            });
        }
        let rip = want.regs.get(RIP).copied().unwrap_or(0);
        if th.signal != 0 {
            self.enter_handler(ev, th)?;
        }
        // The other threads stay where they are during the search.
        let others = self.other_stacks(ev.tid(), th.tgid, th.task.tid);
        tracing::debug!(
            "preemption point at {rip:#x} (event {}): other threads' rsp {:x?}",
            self.index,
            others.iter().map(|o| o.rsp).collect::<Vec<_>>()
        );
        let regs = th.task.regs()?;
        if regs.rip == rip
            && preempt::matches(&mut th.task, &regs, want, self.memory_digest, &others)?
        {
            return self.arrived(th, &regs, 0, std::time::Instant::now());
        }
        let mut no_patch = None;
        if point.method == Method::StateMatch {
            if let Some(step) = self.run_to_self_loop_point(ev, th, want, &others)? {
                return Ok(step);
            }
        }
        if point.method == Method::RepString {
            if let Some(step) = self.run_to_rep_point(ev, th, want, &others)? {
                return Ok(step);
            }
        } else {
            if let Some(step) = self.step_out_of_patch(th, want, &others)? {
                return Ok(step);
            }
            match self.patch(th, want, point) {
                Ok(p) => return self.run_patched(ev, th, want, p, &others),
                Err(why) => {
                    tracing::debug!(
                        "preemption point at {rip:#x} (event {}): no patch, a hardware breakpoint instead: {why}",
                        self.index
                    );
                    no_patch = Some(why);
                }
            }
        }
        // A search that fails says why the cheap one was not used.
        self.run_to_preemption(ev, th, want)
            .map_err(|e| match (e, no_patch) {
                (
                    Error::Divergence {
                        event,
                        expected,
                        actual,
                    },
                    Some(why),
                ) => Error::Divergence {
                    event,
                    expected,
                    actual: format!(
                        "{actual} (searched with a hardware breakpoint: no patch, {why})"
                    ),
                },
                (e, _) => e,
            })
    }

    /// Thread `th` stands at the delivery stop of the signal its last event gave it
    /// (`th.signal`): the signal is delivered now, before the search. The search injects
    /// calls into the thread (the trampoline's mapping), and a thread resumed with a
    /// signal from an injected call's exit stop has it queued anew, as a second delivery
    /// stop (the search's "stopped with" divergence) with the kernel's siginfo instead of
    /// the recorded one. A caught signal is delivered by a single step: the kernel sets
    /// up the handler's frame and reports the step's trap at the handler's first
    /// instruction, before it runs (where the recording may have been preempted: a slice
    /// that ended as the signal was delivered). An ignored one is dropped (delivering it
    /// does nothing); any other is left to the resume that follows.
    fn enter_handler(&mut self, ev: &Event, th: &mut RThread) -> Result<()> {
        let sig = th.signal;
        let tid = th.task.tid;
        if super::signal::caught(tid, sig) {
            th.signal = 0;
            match self.resume_to_next(th, Resume::Step, sig)? {
                Stop::Signal(libc::SIGTRAP) => Ok(()),
                other => Err(self.diverge(
                    ev,
                    format!("stopped with {other:?} as it was given its signal"),
                )),
            }
        } else {
            if super::signal::ignored(tid, sig) {
                th.signal = 0;
            }
            Ok(())
        }
    }

    /// The thread is at the point (`regs`): counts it, and restarts the syscall the
    /// preemption interrupted, if it did.
    fn arrived(
        &mut self,
        th: &mut RThread,
        regs: &Regs,
        traps: u64,
        started: std::time::Instant,
    ) -> Result<Step> {
        if let Some(restarted) = preempt::restart_after_stop(regs) {
            th.task.set_regs(&restarted)?;
        }
        tracing::debug!(
            "preemption point at {:#x} (event {}) reached after {traps} traps",
            regs.rip,
            self.index
        );
        self.stats.preemptions += 1;
        self.stats.preemption_traps += traps;
        self.stats.preemption_time += started.elapsed();
        Ok(Step::Done)
    }

    /// A thread that sits just after the point's address (a previous point nearby) would
    /// be inside the patched bytes: single-steps it out of them first, stopping if it
    /// reaches the point on the way. Never steps over an instruction that enters the
    /// kernel or traps (the patch is then refused).
    fn step_out_of_patch(
        &mut self,
        th: &mut RThread,
        want: &PreemptState,
        others: &[preempt::memory::Preempted],
    ) -> Result<Option<Step>> {
        let rip = want.regs[RIP];
        let window = rip + 1..rip + 2 * insn::MAX_LEN as u64;
        let started = std::time::Instant::now();
        for _ in 0..insn::MAX_LEN {
            let regs = th.task.regs()?;
            if regs.rip == rip
                && preempt::matches(&mut th.task, &regs, want, self.memory_digest, others)?
            {
                return self.arrived(th, &regs, 0, started).map(Some);
            }
            if !window.contains(&regs.rip) {
                break;
            }
            let bytes = th.task.read_mem_partial(regs.rip, insn::MAX_LEN)?;
            match insn::decode(&bytes, regs.rip) {
                Some(i) if insn::steppable(&i) => {}
                _ => break,
            }
            let sig = th.signal;
            th.signal = 0;
            match self.resume_to_next(th, Resume::Step, sig)? {
                Stop::Signal(libc::SIGTRAP) => {}
                other => {
                    return Err(Error::Unsupported {
                        what: format!(
                        "the replayed thread stopped with {other:?} while the replayer stepped it"
                    ),
                        hint: "report this as a bug".into(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// Maps and patches in the trampoline for the point, or says why not.
    fn patch(
        &mut self,
        th: &mut RThread,
        want: &PreemptState,
        point: &PointInfo,
    ) -> std::result::Result<Patched, String> {
        let rip = want.regs.get(RIP).copied().unwrap_or(0);
        if !self.bps.is_empty() {
            // A debugger's int3s would be read as code and patched around.
            return Err("a debugger has breakpoints set".into());
        }
        let bytes = th
            .task
            .read_mem_partial(rip, insn::MAX_LEN)
            .map_err(|e| e.to_string())?;
        let i = insn::decode(&bytes, rip).ok_or("no valid instruction there")?;
        let maps = read_maps(th.task.tid).map_err(|e| e.to_string())?;
        let insns = match insn::unpatchable(&i) {
            None => vec![i],
            Some(why) if i.len() < insn::JMP_LEN => {
                // Several short instructions: only with the function's bounds.
                let f = function::around(&mut th.task, &maps, rip)
                    .map_err(|e| format!("{why}, and {e}"))?;
                if f.lsda {
                    return Err(format!(
                        "{why}, and its function has landing pads (an LSDA)"
                    ));
                }
                let code = th
                    .task
                    .read_mem(f.start, (f.end - f.start) as usize)
                    .map_err(|e| e.to_string())?;
                insn::displaced(&code, f.start, rip).map_err(|e| format!("{why}, and {e}"))?
            }
            Some(why) => return Err(why.into()),
        };
        let end = insns.last().map_or(rip, |i| i.next_ip());
        let current = th.task.regs().map_err(|e| e.to_string())?.rip;
        if current > rip && current < end {
            return Err("the thread is inside the patched bytes".into());
        }
        // Other threads may sit inside the patched bytes (a sibling preempted in the same
        // loop): they stay stopped while this one runs to its point, and the bytes are
        // put back before any of them runs again.
        let spans: Vec<(u64, u64)> = maps.iter().map(|m| (m.start, m.end)).collect();
        let base = patch::place(&spans, rip).ok_or("no free pages within a jump's reach")?;
        // Memory words that are always mapped (the thread's stack, a module's data)
        // first: the trampoline reads those before it compares the registers.
        let rsp = th.task.regs().map_err(|e| e.to_string())?.rsp;
        let stable = |addr: u64| {
            maps.iter().any(|m| {
                m.start <= addr
                    && addr + 8 <= m.end
                    && m.prot & libc::PROT_WRITE != 0
                    && (m.is_file() || (m.start <= rsp && rsp < m.end))
            })
        };
        type Words = Vec<(u64, u64)>;
        // The words the registers point at (format 11; their addresses are recorded
        // register values), those the stack words point at and those a cache line or
        // two on from either (format 15) come last, compared only once the registers
        // match: in the fast check, before the registers, words that rarely differ from
        // one pass to the next would only make every pass pay for both checks.
        let points_at = |addr: u64| {
            patch::COMPARED
                .iter()
                .any(|(_, i)| want.regs.get(*i) == Some(&addr))
                || point.stack.contains(&addr)
        };
        let pointed = |addr: u64| {
            points_at(addr)
                || preempt::steer::PADDED_OFFSETS
                    .iter()
                    .any(|&off| addr.checked_sub(off).is_some_and(points_at))
        };
        let (written, at_registers): (Words, Words) =
            point.memory.iter().partition(|(addr, _)| !pointed(*addr));
        let (mut memory, others): (Words, Words) =
            written.into_iter().partition(|(addr, _)| stable(*addr));
        let safe_words = memory.len();
        memory.extend(others);
        memory.extend(at_registers);
        let mut w = patch::Want::new(&want.regs, point.stack_from, &point.stack, &memory)
            .ok_or("the recorded registers are incomplete")?;
        w.safe_words = safe_words;
        w.flags_dead = th
            .task
            .read_mem_partial(rip, 64)
            .is_ok_and(|code| insn::flags_dead_at(&code, rip));
        let tramp = patch::build(&insns, base, &w)?;
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
        let got = inject_syscall(
            &mut th.task,
            STUB_SYSCALL,
            libc::SYS_mmap as u64,
            &[base, patch::SIZE, prot, flags, u64::MAX, 0],
        )
        .map_err(|e| e.to_string())?;
        if got as u64 != base {
            if got > 0 {
                let _ = self.unmap(th, got as u64);
            }
            return Err(format!(
                "mapping the trampoline at {base:#x} returned {got}"
            ));
        }
        let write = |th: &mut RThread| -> Result<Vec<u8>> {
            th.task.write_mem(base, &tramp.code)?;
            th.task.write_mem(base + patch::DATA_OFFSET, &tramp.data)?;
            let original = th.task.read_mem(rip, tramp.jump.len())?;
            th.task.write_mem(rip, &tramp.jump)?;
            Ok(original)
        };
        match write(th) {
            Ok(original) => Ok(Patched {
                rip,
                flags_dead: w.flags_dead,
                original,
                tramp,
            }),
            Err(e) => {
                let _ = self.unmap(th, base);
                Err(e.to_string())
            }
        }
    }

    fn unmap(&mut self, th: &mut RThread, base: u64) -> Result<()> {
        inject_syscall(
            &mut th.task,
            STUB_SYSCALL,
            libc::SYS_munmap as u64,
            &[base, patch::SIZE],
        )
        .map(|_| ())
    }

    /// Puts the patched bytes back and unmaps the trampoline.
    fn unpatch(&mut self, th: &mut RThread, p: &Patched) -> Result<()> {
        th.task.write_mem(p.rip, &p.original)?;
        self.unmap(th, p.tramp.base)
    }

    fn run_patched(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &PreemptState,
        p: Patched,
        others: &[preempt::memory::Preempted],
    ) -> Result<Step> {
        let started = std::time::Instant::now();
        let skip = Some((p.tramp.base, p.tramp.base + patch::SIZE));
        let mut traps = 0u64;
        let mut cycle = preempt::CycleCheck::default();
        // Bounds the search: a thread that goes [`NEAR_MATCH_DEADLINE`] without a trap
        // (re-armed at each one) runs a loop that never reaches the point at replay; so
        // does one that goes as long after a trap whose memory differed (not re-armed).
        let deadline = SearchDeadline::start(th.task.tid);
        let mut near_match = false;
        loop {
            let sig = th.signal;
            th.signal = 0;
            let stop = match self.resume_to_next(th, Resume::Sysemu, sig) {
                Ok(s) => s,
                Err(e) => {
                    let _ = self.unpatch(th, &p);
                    return Err(e);
                }
            };
            if let (Stop::Signal(libc::SIGSTOP), Some(d)) = (&stop, &deadline) {
                if d.passed() {
                    let _ = self.unpatch(th, &p);
                    return Err(self.diverge(
                        ev,
                        if near_match {
                            format!(
                                "did not come back to that state long after a trap whose registers and stack matched but whose memory did not (after {traps} traps; a loop without syscalls that never ends at replay)"
                            )
                        } else {
                            format!(
                                "ran for {}s after its last check without coming to that address with its registers (after {traps} traps; a loop without syscalls that never ends at replay)",
                                d.after.as_secs()
                            )
                        },
                    ));
                }
                // The deadline's stop, sent as a trap re-armed it: not the program's
                // (suppressed by the resume).
                if !near_match {
                    d.rearm();
                }
                continue;
            }
            let trapped = match stop {
                Stop::Signal(libc::SIGTRAP) => {
                    th.task.regs().ok().filter(|r| r.rip == p.tramp.trap + 1)
                }
                _ => None,
            };
            let failed = match stop {
                Stop::Signal(libc::SIGTRAP) if trapped.is_some() => {
                    traps += 1;
                    if let (Some(d), false) = (&deadline, near_match) {
                        d.rearm();
                    }
                    let mut at = trapped.expect("checked");
                    at.rip = p.rip;
                    if p.flags_dead {
                        // Dead at the point (the program writes them all before it
                        // reads one): the recorded values, for an exact state.
                        at.eflags =
                            (at.eflags & !STATUS_FLAGS) | (want.regs[EFLAGS] & STATUS_FLAGS);
                    }
                    let compared = if preempt::comparable(&at) == want.regs
                        && preempt::stack_hash(&mut th.task, at.rsp, self.memory_digest)?
                            == want.stack_hash
                        && preempt::fpu_hash(&th.task)? == want.fpu_hash
                    {
                        let memory = preempt::memory_hash_without(
                            &mut th.task,
                            &at,
                            skip,
                            self.memory_digest,
                            others,
                        )?;
                        if memory == want.memory_hash {
                            self.unpatch(th, &p)?;
                            th.task.set_regs(&at)?;
                            return self.arrived(th, &at, traps, started);
                        }
                        tracing::debug!("point {:#x}: a trap whose memory differs", p.rip);
                        // The registers can never match again in a loop whose only
                        // way out is the recorded state (a spin-wait): the deadline is
                        // no longer re-armed, so that the search ends with a divergence.
                        near_match = true;
                        preempt::Compared::MemoryDiffers(memory)
                    } else {
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            let got = preempt::comparable(&at);
                            let regs: Vec<usize> = (0..got.len().min(want.regs.len()))
                                .filter(|&i| got[i] != want.regs[i])
                                .collect();
                            let stack =
                                preempt::stack_hash(&mut th.task, at.rsp, self.memory_digest)?
                                    != want.stack_hash;
                            let fpu = preempt::fpu_hash(&th.task)? != want.fpu_hash;
                            tracing::debug!(
                                "point {:#x}: a trap that differs (registers {regs:?}, stack {stack}, fpu {fpu})",
                                p.rip
                            );
                        }
                        preempt::Compared::Differs
                    };
                    if cycle.repeats(compared) {
                        format!("{} (after {traps} traps)", preempt::CYCLE)
                    } else if traps <= preempt::MAX_TRAPS {
                        continue;
                    } else {
                        format!(
                            "did not reach that state within {traps} matches of its registers and stack words"
                        )
                    }
                }
                Stop::Syscall => format!(
                    "made a syscall before reaching it (after {traps} matches of its registers)"
                ),
                other => format!("stopped with {other:?} before reaching it"),
            };
            // The divergence is what to report, even if the task is gone by now.
            let _ = self.unpatch(th, &p);
            return Err(self.diverge(ev, failed));
        }
    }

    /// Runs to an interrupted `rep` string instruction; `None` when the instruction at
    /// the point is not one (then the plain breakpoint search applies).
    fn run_to_rep_point(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &PreemptState,
        others: &[preempt::memory::Preempted],
    ) -> Result<Option<Step>> {
        let rip = want.regs[RIP];
        let bytes = th.task.read_mem_partial(rip, insn::MAX_LEN)?;
        let Some(i) = insn::decode(&bytes, rip) else {
            return Ok(None);
        };
        let Some(rep) = insn::rep_string(&i) else {
            return Ok(None);
        };
        let next = rip + i.len() as u64;
        let started = std::time::Instant::now();
        let mut traps = 0u64;
        preempt::set_breakpoint(&th.task, Some(rip))?;
        loop {
            let regs = th.task.regs()?;
            if regs.rip == rip {
                if let Some(done) = iterations_done(&regs, want, rep) {
                    // Only the iterations done at record.
                    if done > 0 {
                        let mut r = regs;
                        r.rcx = done;
                        th.task.set_regs(&r)?;
                        self.run_to(ev, th, next)?;
                    }
                    let mut r = th.task.regs()?;
                    r.rcx = want.regs[RCX];
                    r.rip = rip;
                    th.task.set_regs(&r)?;
                    if preempt::matches(&mut th.task, &r, want, self.memory_digest, others)? {
                        preempt::set_breakpoint(&th.task, None)?;
                        return self.arrived(th, &r, traps, started).map(Some);
                    }
                    // Not this one: finish it, and look at the next execution.
                    self.run_to(ev, th, next)?;
                    preempt::set_breakpoint(&th.task, Some(rip))?;
                }
            }
            let sig = th.signal;
            th.signal = 0;
            match self.resume_to_next(th, Resume::Sysemu, sig)? {
                Stop::Signal(libc::SIGTRAP) => {
                    traps += 1;
                    if traps > preempt::MAX_TRAPS {
                        preempt::set_breakpoint(&th.task, None)?;
                        return Err(self.diverge(
                            ev,
                            format!("did not reach that state within {traps} breakpoint hits"),
                        ));
                    }
                }
                other => {
                    preempt::set_breakpoint(&th.task, None)?;
                    return Err(
                        self.diverge(ev, format!("stopped with {other:?} before reaching it"))
                    );
                }
            }
        }
    }

    /// Runs to a point on a `loop` onto itself ([`insn::loops_onto_itself`]); `None`
    /// when the instruction at the point is not one. A hardware breakpoint there stops
    /// the thread as it comes to the loop; when all but `rcx` is as recorded and `rcx`
    /// is not below the recorded count, the passes in between are skipped by setting
    /// it, and the full state compared. Otherwise the loop runs on at full speed to
    /// its end. (The patched check would run each pass through the trampoline: 3.3×
    /// the recording's time on the `self_loop` fixture.)
    fn run_to_self_loop_point(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &PreemptState,
        others: &[preempt::memory::Preempted],
    ) -> Result<Option<Step>> {
        let rip = want.regs[RIP];
        let bytes = th.task.read_mem_partial(rip, insn::MAX_LEN)?;
        let Some(i) = insn::decode(&bytes, rip).filter(insn::loops_onto_itself) else {
            return Ok(None);
        };
        let next = i.next_ip();
        let started = std::time::Instant::now();
        let deadline = SearchDeadline::start(th.task.tid);
        let mut traps = 0u64;
        preempt::set_breakpoint(&th.task, Some(rip))?;
        loop {
            let regs = th.task.regs()?;
            if regs.rip == rip {
                let now = preempt::comparable(&regs);
                let others_equal = now
                    .iter()
                    .zip(&want.regs)
                    .enumerate()
                    .all(|(n, (a, b))| n == RCX || a == b);
                if others_equal && regs.rcx >= want.regs[RCX] {
                    let mut r = regs;
                    r.rcx = want.regs[RCX];
                    th.task.set_regs(&r)?;
                    if preempt::matches(&mut th.task, &r, want, self.memory_digest, others)? {
                        preempt::set_breakpoint(&th.task, None)?;
                        return self.arrived(th, &r, traps, started).map(Some);
                    }
                    th.task.set_regs(&regs)?;
                }
                // Not this one: the loop runs to its end, and the next time it starts
                // is looked at.
                self.run_to(ev, th, next)?;
                preempt::set_breakpoint(&th.task, Some(rip))?;
            }
            let sig = th.signal;
            th.signal = 0;
            let stop = self.resume_to_next(th, Resume::Sysemu, sig)?;
            match (stop, &deadline) {
                (Stop::Signal(libc::SIGTRAP), _) => {
                    traps += 1;
                    if let Some(d) = &deadline {
                        d.rearm();
                    }
                    if traps > preempt::MAX_TRAPS {
                        preempt::set_breakpoint(&th.task, None)?;
                        return Err(self.diverge(
                            ev,
                            format!("did not reach that state within {traps} breakpoint hits"),
                        ));
                    }
                }
                (Stop::Signal(libc::SIGSTOP), Some(d)) if !d.passed() => d.rearm(),
                (other, _) => {
                    preempt::set_breakpoint(&th.task, None)?;
                    let what = match other {
                        Stop::Signal(libc::SIGSTOP) if deadline.is_some() => format!(
                            "ran for {}s without coming to that loop (after {traps} breakpoint hits; a loop without syscalls that never ends at replay)",
                            NEAR_MATCH_DEADLINE.as_secs()
                        ),
                        Stop::Syscall => format!(
                            "made a syscall before reaching it (after {traps} breakpoint hits)"
                        ),
                        other => format!("stopped with {other:?} before reaching it"),
                    };
                    return Err(self.diverge(ev, what));
                }
            }
        }
    }

    /// Runs the thread to `at` with the hardware breakpoint there.
    fn run_to(&mut self, ev: &Event, th: &mut RThread, at: u64) -> Result<()> {
        preempt::set_breakpoint(&th.task, Some(at))?;
        match self.resume_to_next(th, Resume::Sysemu, 0)? {
            Stop::Signal(libc::SIGTRAP) if th.task.regs()?.rip == at => Ok(()),
            other => {
                preempt::set_breakpoint(&th.task, None)?;
                Err(self.diverge(
                    ev,
                    format!("stopped with {other:?} inside the rep instruction"),
                ))
            }
        }
    }
}

/// If `regs` (at the `rep` instruction) can be the recorded execution of it, how many
/// iterations had been done at record.
fn iterations_done(regs: &Regs, want: &PreemptState, rep: insn::RepString) -> Option<u64> {
    let now = preempt::comparable(regs);
    let others_equal = now
        .iter()
        .zip(&want.regs)
        .enumerate()
        .all(|(n, (a, b))| matches!(n, RCX | RSI | RDI) || a == b);
    if !others_equal {
        return None;
    }
    let done = regs.rcx.checked_sub(want.regs[RCX])?;
    let bytes = done.wrapping_mul(rep.size);
    let down = regs.eflags & 0x400 != 0;
    let moved = |from: u64| {
        if down {
            from.wrapping_sub(bytes)
        } else {
            from.wrapping_add(bytes)
        }
    };
    let rsi_ok = if rep.uses_rsi {
        moved(regs.rsi) == want.regs[RSI]
    } else {
        regs.rsi == want.regs[RSI]
    };
    let rdi_ok = if rep.uses_rdi {
        moved(regs.rdi) == want.regs[RDI]
    } else {
        regs.rdi == want.regs[RDI]
    };
    (rsi_ok && rdi_ok).then_some(done)
}

/// How long a search goes on without a trap, or after a trap that matched all but the
/// memory digest. Such a search normally ends within a slice's worth of the program's
/// time (a slice is at most 200 ms of the thread's CPU time at record; a few seconds
/// when each trap hashes a large memory); one that goes on is in a loop that never ends
/// at replay (the state it waits for never comes).
const NEAR_MATCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// A watchdog that stops the searching thread (SIGSTOP) [`NEAR_MATCH_DEADLINE`] after
/// it is (re-)armed; its thread ends with it.
pub(super) struct SearchDeadline {
    dog: std::sync::Arc<preempt::Watchdog>,
    tgid: i32,
    tid: i32,
    /// How long after its last (re-)arming.
    pub(super) after: std::time::Duration,
}

impl SearchDeadline {
    pub(super) fn start(tid: i32) -> Option<Self> {
        let tgid = crate::kernel::thread_group(tid)?;
        // Shorter for tests: `CARGO_CHAOS_NEAR_MATCH_SECS`.
        let after = std::env::var("CARGO_CHAOS_NEAR_MATCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(NEAR_MATCH_DEADLINE, std::time::Duration::from_secs);
        // On the engine's core, like the thread that creates it.
        let d = SearchDeadline {
            dog: preempt::Watchdog::start(crate::spawn::cpu_set()),
            tgid,
            tid,
            after,
        };
        d.rearm();
        Some(d)
    }

    /// The deadline is [`NEAR_MATCH_DEADLINE`] from now.
    pub(super) fn rearm(&self) {
        self.dog
            .arm(self.tgid, self.tid, self.after, preempt::Clock::Precise);
    }

    /// Whether it had passed (its SIGSTOP sent); disarms it.
    pub(super) fn passed(&self) -> bool {
        self.dog.disarm()
    }
}

impl Drop for SearchDeadline {
    fn drop(&mut self) {
        self.dog.shutdown();
    }
}
