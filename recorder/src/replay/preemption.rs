//! Finding a recorded preemption point again: the thread runs to the first point whose
//! state equals the recorded one (a hardware breakpoint at its `rip`, then a state
//! comparison at each hit; see `docs/architecture.md`).

use super::*;

impl Replayer<'_> {
    /// Runs the thread to the first point whose state equals the recorded preemption
    /// point (a hardware breakpoint at its `rip`, then a state comparison at each hit).
    pub(super) fn run_to_preemption(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &crate::preempt::PreemptState,
    ) -> Result<Step> {
        use crate::preempt;
        let rip = want.regs.get(16).copied().unwrap_or(0);
        let mut traps = 0u64;
        let started = std::time::Instant::now();
        let mut cycle = preempt::CycleCheck::default();
        // The other threads stay where they are during the search.
        let others = self.other_stacks(ev.tid(), th.tgid, th.task.tid);
        // A thread that never comes to the breakpoint would run on forever.
        let deadline = super::preempt_search::SearchDeadline::start(th.task.tid);
        preempt::set_breakpoint(&th.task, Some(rip))?;
        loop {
            let regs = th.task.regs()?;
            let compared = if regs.rip == rip {
                preempt::compare(&mut th.task, &regs, want, self.memory_digest, &others)?
            } else {
                preempt::Compared::Differs
            };
            if cycle.repeats(compared) {
                preempt::set_breakpoint(&th.task, None)?;
                return Err(self.diverge(
                    ev,
                    format!("{} (after {traps} breakpoint hits)", preempt::CYCLE),
                ));
            }
            if compared == preempt::Compared::Equal {
                preempt::set_breakpoint(&th.task, None)?;
                if let Some(restarted) = preempt::restart_after_stop(&regs) {
                    // The preemption interrupted a syscall; at record the kernel
                    // restarted it once the (suppressed) SIGSTOP was gone. Do the same.
                    th.task.set_regs(&restarted)?;
                }
                self.stats.preemptions += 1;
                self.stats.preemption_traps += traps;
                self.stats.preemption_time += started.elapsed();
                return Ok(Step::Done);
            }
            let sig = th.signal;
            th.signal = 0;
            match self.resume_to_next(th, Resume::Sysemu, sig)? {
                Stop::Signal(libc::SIGSTOP) if deadline.is_some() => {
                    let d = deadline.as_ref().expect("checked");
                    if d.passed() {
                        preempt::set_breakpoint(&th.task, None)?;
                        return Err(self.diverge(
                            ev,
                            format!(
                                "ran for {}s after its last breakpoint hit without coming to that state (after {traps} hits; a loop without syscalls that never ends at replay)",
                                d.after.as_secs()
                            ),
                        ));
                    }
                    // The deadline's stop, sent as a hit re-armed it (suppressed).
                    d.rearm();
                }
                Stop::Signal(libc::SIGTRAP) => {
                    traps += 1;
                    if let Some(d) = &deadline {
                        d.rearm();
                    }
                    if traps > crate::preempt::MAX_TRAPS {
                        preempt::set_breakpoint(&th.task, None)?;
                        return Err(self.diverge(
                            ev,
                            format!(
                                "did not reach that state within {traps} breakpoint hits: the thread was preempted inside a long loop whose state never repeats (hint: such points can only be found cheaply with instruction counting, which this version lacks)"
                            ),
                        ));
                    }
                }
                Stop::Syscall => {
                    preempt::set_breakpoint(&th.task, None)?;
                    return Err(self.diverge(
                        ev,
                        format!(
                            "made a syscall before reaching it (after {traps} breakpoint hits)"
                        ),
                    ));
                }
                other => {
                    return Err(
                        self.diverge(ev, format!("stopped with {other:?} before reaching it"))
                    )
                }
            }
        }
    }
}
