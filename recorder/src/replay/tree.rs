//! The replayed task tree: its threads by recorded tid, new tasks taken in, processes
//! and threads collected as they end, and the whole tree ended with the replay.

use super::*;
use crate::tree::Member;

impl Replayer<'_> {
    /// The stacks of the replayed threads that share the address space of `task` (the
    /// thread of recorded tid `tid`, of recorded process `tgid`), but that thread, where
    /// they stand: for the memory digest of its preemption point, as at record
    /// (`Recorder::other_stacks`). Each is stopped where the events replayed so far left
    /// it, which is where it was at record when the point was captured (or in the kernel,
    /// a vfork's parent, as when it was resumed into it); one whose registers cannot be
    /// read is left out.
    pub(super) fn other_stacks(
        &self,
        tid: i32,
        tgid: i32,
        task: i32,
    ) -> Vec<crate::preempt::memory::Preempted> {
        use crate::preempt::memory::{same_address_space, Preempted};
        self.threads
            .iter()
            .filter(|(t, th)| {
                **t != tid && (th.tgid == tgid || same_address_space(task, th.task.tid))
            })
            .filter_map(|(_, th)| match th.kernel_stack {
                Some(stack) => Some(stack),
                None => th.task.regs().ok().map(|r| Preempted::of(&r)),
            })
            .collect()
    }

    pub(super) fn kill_all(&mut self) {
        let tasks: Vec<Member> = self
            .threads
            .drain()
            .map(|(tid, t)| Member {
                leader: tid == t.tgid,
                tid: t.task.tid,
            })
            .chain(self.zombies.drain().map(|(_, t)| Member {
                leader: true,
                tid: t.tid,
            }))
            .collect();
        crate::tree::kill_and_reap(tasks);
    }

    /// The trace's next event is the process's end: let the thread with a (fatal)
    /// signal pending, or the leader, run until the end.
    pub(super) fn run_to_end(&mut self, ev: &Event) -> Result<ExitKind> {
        let tid = self
            .threads
            .iter()
            .find(|(_, t)| t.signal != 0)
            .map(|(tid, _)| *tid)
            .unwrap_or(self.leader);
        let Some(th) = self.threads.remove(&tid) else {
            return Err(self.diverge(ev, "has no thread left to end it".into()));
        };
        let mut th = th;
        let sig = std::mem::take(&mut th.signal);
        let others = self.threads.values().any(|t| t.tgid == tid);
        if tid == self.leader && others && kills(th.task.tid, sig) {
            // The leader dies of the signal, and with it the other threads; the kernel
            // reports the leader's end only once they are collected, so they are
            // collected first (waiting for the leader alone would wait forever).
            th.task.resume(Resume::Sysemu, sig)?;
            self.reap_followers(tid);
            let stop = reap(&th.task);
            return Ok(self.reap_all(tid, stop));
        }
        let stop = match self.resume_to_next(&mut th, Resume::Sysemu, sig) {
            Ok(stop) => stop,
            Err(e) => {
                // Stopped at a breakpoint on the way (or failed): the thread stays.
                self.threads.insert(tid, th);
                return Err(e);
            }
        };
        match stop {
            s @ (Stop::Exited(_) | Stop::Killed(_)) => Ok(self.reap_all(tid, s)),
            other => Err(self.diverge(ev, format!("stopped with {other:?} instead of ending"))),
        }
    }

    /// The main process ended: thread `tid` (already out of `threads`) reported
    /// `stop`. Collects its other threads, ends the other processes of the tree (as the
    /// recording did), and returns the main process's end (its leader's).
    pub(super) fn reap_all(&mut self, tid: i32, stop: Stop) -> ExitKind {
        let leader = self.leader;
        let mut leader_stop = (tid == leader).then_some(stop);
        self.reap_followers(leader);
        if leader_stop.is_none() {
            if let Some(th) = self.threads.remove(&leader) {
                leader_stop = Some(reap(&th.task));
            } else if let Some(z) = self.zombies.remove(&leader) {
                leader_stop = Some(reap(&z));
            }
        }
        self.kill_all();
        let how = match leader_stop {
            Some(Stop::Killed(s)) => ExitKind::Signaled(s),
            Some(Stop::Exited(c)) => ExitKind::Exited(c),
            _ => ExitKind::Exited(0),
        };
        self.ended = Some(how);
        how
    }

    /// Reaps the threads of process `tgid` other than its leader (known ones; the
    /// thread the caller holds is not in `threads`).
    pub(super) fn reap_followers(&mut self, tgid: i32) {
        let followers: Vec<i32> = self
            .threads
            .iter()
            .filter(|(t, x)| x.tgid == tgid && **t != tgid)
            .map(|(t, _)| *t)
            .collect();
        for t in followers {
            if let Some(x) = self.threads.remove(&t) {
                reap(&x.task);
            }
        }
    }

    /// `th` unshared its fd table or exec'd: when another task shares the table, it now
    /// has a copy of its own, as at record (see `record::fd_tables`).
    pub(super) fn own_table(&mut self, th: &mut RThread) {
        let shared = self.threads.values().any(|t| t.files == th.files);
        th.files = self.fd_tables.leave(th.files, shared);
    }

    /// A (non-main) process ended: collect what is left of it.
    pub(super) fn forget_process(&mut self, tgid: i32) {
        let tables: Vec<i32> = self
            .threads
            .values()
            .filter(|th| th.tgid == tgid)
            .map(|th| th.files)
            .chain([tgid])
            .collect();
        self.mapped_fds.retain(|(t, _), _| !tables.contains(t));
        let members: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, th)| th.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        let tasks = self.take_members(tgid, &members);
        crate::tree::reap_in_order(tasks);
        self.bps.forget(tgid);
    }

    /// Takes `members` (threads of process `tgid`, in this order) and the process's
    /// zombie leader, if any, out of the tree, as the task-tree module collects them.
    fn take_members(&mut self, tgid: i32, members: &[i32]) -> Vec<Member> {
        members
            .iter()
            .filter_map(|t| self.threads.remove(t).map(|x| (*t, x.task)))
            .map(|(t, task)| Member {
                leader: t == tgid,
                tid: task.tid,
            })
            .chain(self.zombies.remove(&tgid).map(|z| Member {
                leader: true,
                tid: z.tid,
            }))
            .collect()
    }

    /// A fork-family call created a task ([`Event::NewTask`]): run the parent into the
    /// call until the kernel reports the child, and take the child in.
    pub(super) fn new_task(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        child: i32,
        process: bool,
        vfork: bool,
    ) -> Result<Step> {
        let mut sig = th.signal;
        th.signal = 0;
        let (nr, args) = loop {
            match self.resume_to_next(th, Resume::Syscall, sig)? {
                Stop::Syscall => match th.task.syscall_stop()? {
                    SyscallStop::Entry { nr, args } => break (nr, args),
                    _ => sig = 0,
                },
                other => {
                    return Err(
                        self.diverge(ev, format!("stopped with {other:?} before creating it"))
                    )
                }
            }
        };
        if !matches!(nr, nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK) {
            return Err(self.diverge(ev, format!("made syscall {}", describe_call(nr, &args))));
        }
        let left_out =
            libc::CLONE_UNTRACED as u64 | crate::record::CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY;
        if nr == nr::CLONE && args[0] & left_out != 0 {
            // As at record: traced all the same. New namespaces are not created: what
            // the program saw through them is in the trace. The flags are put back at
            // the exit.
            crate::record::untraced_clone(&mut th.task, args[0] & !left_out)?;
        }
        th.task.resume(Resume::Syscall, 0)?;
        match th.task.wait_skipping_sigchld()?.0 {
            Stop::Event(
                libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK,
            ) => {}
            other => {
                return Err(self.diverge(
                    ev,
                    format!("stopped with {other:?} in {}", syscalls::name_of(nr)),
                ))
            }
        }
        let real = th.task.event_msg()? as i32;
        match crate::ptrace::wait_for(real)? {
            Stop::Signal(libc::SIGSTOP) => {}
            other => {
                return Err(self.diverge(ev, format!("the new task first stopped with {other:?}")))
            }
        }
        let tgid = if process { child } else { th.tgid };
        let mut task = Task::new(real);
        if nr == nr::CLONE && args[0] & crate::record::CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY != 0 {
            // The recorded child came out of the call with all its flags in rdi.
            crate::record::untraced_clone(&mut task, args[0] & !(libc::CLONE_UNTRACED as u64))?;
        }
        let (flags, ctid) = match nr {
            nr::CLONE => (args[0], args[3]),
            nr::CLONE3 => {
                let b = th.task.read_mem(args[0], 24)?;
                let q = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
                (q(0), q(16))
            }
            _ => (0, 0),
        };
        if process {
            // CLONE_CHILD_SETTID wrote the child's real tid into the child's own memory
            // (glibc's fork keeps its thread's tid there, the owner id of the mutexes
            // it locks): the program saw the recorded one, the one its own pid
            // namespace gave it.
            if flags & libc::CLONE_CHILD_SETTID as u64 != 0 && ctid != 0 {
                task.write_mem(ctid, &self.pidns.own(child).to_le_bytes())?;
            }
        }
        let mut new = RThread::new(task, tgid);
        new.segv_blocked = th.segv_blocked;
        // Its parent's fd table (CLONE_FILES), or a copy, as at record.
        new.files = self.fd_tables.on_clone(th.files, child, flags);
        self.threads.insert(child, new);
        if process {
            self.bps.forked(th.tgid, child);
            if let Some(b) = self.brk.get(&th.tgid).copied() {
                self.brk.insert(child, b);
            }
        }
        if vfork {
            // The parent waits in the kernel until the child execs or exits.
            th.kernel_stack = Some(crate::preempt::memory::Preempted::of(&th.task.regs()?));
            th.task.resume(Resume::Syscall, 0)?;
        }
        th.in_fork = Some((nr, args, vfork));
        Ok(Step::Done)
    }

    /// `th` (recorded tid `ev.tid()`) was resumed into an exec: the kernel kills the
    /// other threads of its process and waits until the non-leaders are collected, which
    /// is done here. When `th` is not the leader, it takes the leader's tid (the leader
    /// is released without a report): `th` is then pointed at that tid, and the
    /// leader's recorded tid is returned.
    pub(super) fn end_other_threads(
        &mut self,
        ev: &Event,
        th: &mut RThread,
    ) -> Result<Option<i32>> {
        let tgid = th.tgid;
        self.reap_followers(tgid);
        if ev.tid() == tgid {
            return Ok(None);
        }
        let leader = match (self.threads.remove(&tgid), self.zombies.remove(&tgid)) {
            (Some(x), _) => x.task.tid,
            (None, Some(z)) => z.tid,
            (None, None) => {
                return Err(self.diverge(ev, format!("has no leader {tgid} to take over")));
            }
        };
        th.task = Task::new(leader);
        Ok(Some(tgid))
    }

    /// A process of the tree that was sent SIGKILL has just been reaped by its parent
    /// (the wait that returned its status): at record it died when the signal arrived,
    /// with no stop the trace could hold, and the kernel marked the robust futexes it
    /// held as owner-died. Its events all came before that wait. End it the same way now
    /// (futexes marked with the recorded tids, then the tasks killed), so a mutex it held
    /// in shared memory reads as owner-died to the others, as it did.
    pub(super) fn end_killed(&mut self, tgid: i32) -> Result<()> {
        let mut members: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, x)| x.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        for t in &members {
            if let Some(x) = self.threads.get_mut(t) {
                match robust::owner_died(&mut x.task, self.pidns.own(*t)) {
                    Ok(_) | Err(Error::TaskGone { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // The leader last: its end is reported once its other threads are collected.
        members.sort_by_key(|&t| t == tgid);
        let tasks = self.take_members(tgid, &members);
        crate::tree::kill_and_reap(tasks);
        self.bps.forget(tgid);
        self.end_namespace_of(tgid)
    }

    /// Process `tgid` has ended. When it was the first process of a pid namespace of
    /// the program's at record, the kernel killed every other process of that namespace
    /// there (see the recorder's `end_namespace_of`): they have no events after this,
    /// and are ended now the same way (robust futexes marked, then killed).
    pub(super) fn end_namespace_of(&mut self, tgid: i32) -> Result<()> {
        let Some(ns) = self.pidns.led_by(tgid) else {
            return Ok(());
        };
        let mut processes: Vec<i32> = self
            .threads
            .iter()
            .filter(|(t, x)| x.tgid != tgid && self.pidns.within(**t, ns))
            .map(|(_, x)| x.tgid)
            .chain(
                self.zombies
                    .keys()
                    .copied()
                    .filter(|z| *z != tgid && self.pidns.within(*z, ns)),
            )
            .collect();
        processes.sort_unstable();
        processes.dedup();
        for p in processes {
            self.end_killed(p)?;
            self.forget_process(p);
        }
        Ok(())
    }
}

/// A thread of the replayed program.
pub(super) struct RThread {
    pub(super) task: Task,
    /// Recorded tgid of its process.
    pub(super) tgid: i32,
    /// Its fd table, named by the rules the recorder follows (see `record::fd_tables`;
    /// a table of its own made by unshare or exec may get another negative id than at
    /// record): the key of the books kept per table (`out_fds`, `mapped_fds`).
    pub(super) files: i32,
    /// Held at the entry stop of a call recorded as [`Event::Blocked`].
    pub(super) held: Option<(u64, [u64; 6])>,
    /// Signal to deliver when it is next resumed.
    pub(super) signal: i32,
    /// Inside a fork-family call whose child was created ([`Event::NewTask`]): its
    /// number and arguments, and whether it waits in the kernel (vfork).
    pub(super) in_fork: Option<(u64, [u64; 6], bool)>,
    /// The file its next mmap maps `MAP_SHARED` ([`Event::SharedFile`]).
    pub(super) next_shared: Option<String>,
    /// The temporary mask of the call it just returned from interrupted (rt_sigsuspend,
    /// ppoll, pselect6, epoll_pwait: see [`temporary_mask`]); the signal that
    /// interrupted it must be delivered under that mask (see
    /// [`Replayer::deliver_under_temporary_mask`]).
    pub(super) temporary_mask: Option<u64>,
    /// The generation of the debugger's watchpoints its debug registers hold
    /// ([`super::watch::Watches`]).
    pub(super) watch_generation: u64,
    /// At the delivery stop of a stop signal replay did not deliver (see
    /// [`super::signal::drop_if_stop`]): a signal recorded at the same point is given
    /// there, without a new stop.
    pub(super) at_dropped_stop: bool,
    /// It blocks SIGSEGV (see [`crate::record::signal::reblock_segv`]).
    pub(super) segv_blocked: bool,
    /// The stop it reached after running buffered calls from the feed
    /// ([`super::feed`]), for the event replayed next.
    pub(super) fed_stop: Option<crate::ptrace::Stop>,
    /// It stands at the preemption point its last event found, and has not run since
    /// (an [`Event::SignalAtPoint`] may give it a signal there).
    pub(super) at_point: bool,
    /// Where a signal's delivery by the engine's step left it (the handler's first
    /// instruction, see [`super::Replayer::clean_frame_later`]), until it is resumed: a
    /// breakpoint there is hit before the handler runs, as natively.
    pub(super) entered_handler: Option<u64>,
    /// Its signal (`signal`) is an asynchronous one whose frame is to be cleaned as at
    /// record: it is delivered by a step of its own (see
    /// [`super::Replayer::clean_frame_later`]).
    pub(super) clean_frame: bool,
    /// Its stack (`rsp`, `fs_base`) when it was resumed into the kernel to wait there (a
    /// vfork's parent, until the child execs or exits), where its registers cannot be
    /// read (see [`Replayer::other_stacks`]).
    pub(super) kernel_stack: Option<crate::preempt::memory::Preempted>,
}

impl RThread {
    pub(super) fn new(task: Task, tgid: i32) -> Self {
        RThread {
            task,
            tgid,
            files: tgid,
            held: None,
            signal: 0,
            in_fork: None,
            next_shared: None,
            temporary_mask: None,
            watch_generation: 0,
            at_dropped_stop: false,
            segv_blocked: false,
            fed_stop: None,
            at_point: false,
            entered_handler: None,
            clean_frame: false,
            kernel_stack: None,
        }
    }
}

/// Waits until a task has ended.
/// Whether delivering `sig` to thread `tid` ends its process: it has no handler, is
/// not ignored, and its default action is to terminate.
fn kills(tid: i32, sig: i32) -> bool {
    use super::signal::{caught, ignored, terminates_by_default};
    sig != 0 && terminates_by_default(sig) && !caught(tid, sig) && !ignored(tid, sig)
}

pub(super) fn reap(task: &Task) -> Stop {
    crate::ptrace::reap(task.tid)
}
