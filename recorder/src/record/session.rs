//! The recording session: setting up and starting the program, the one-thread-at-a-time
//! scheduling loop, dispatching each stop of a thread (decoded as a
//! [`crate::tree::ThreadStop`]) to the syscall, signal and event handlers, and the task
//! tree's changes (new tasks, exec, processes ending).

use super::*;
use crate::tree::{Member, ThreadStop};

impl Recorder {
    pub(super) fn run(&mut self, header: Header) -> Result<ExitKind> {
        self.start(header)?;

        loop {
            let mut cur = match self.current {
                Some(c) => c,
                None => match self.pick()? {
                    Some(c) => {
                        // A held signal's slice counts from here: not while others ran.
                        let t = self.threads.get_mut(&c).expect("picked");
                        if t.held_since.is_some() {
                            t.held_since = Some(crate::arch::self_traps::monotonic_now());
                        }
                        c
                    }
                    None => {
                        // Every thread sits in a blocking call (or is stopped): wait for
                        // one to return.
                        let Some((tid, stop)) = self.wait_or_continued()? else {
                            if self.interrupter.requested() {
                                return self.end_interrupted(self.leader, Stop::Other(0));
                            }
                            continue;
                        };
                        if self.interrupter.requested() {
                            return self.end_interrupted(tid, stop);
                        }
                        if let Some(how) = self.on_background_stop(tid, stop)? {
                            return Ok(how);
                        }
                        continue;
                    }
                },
            };
            let t = self.threads.get_mut(&cur).expect("current thread exists");
            let Where::Ready(sig) = t.state else {
                unreachable!("the current thread is always ready when resumed")
            };
            t.state = Where::Running;
            let tgid = t.tgid;
            // To the next call (the filter stops it), or to the exit of the one it is in.
            let mode = if self.seccomp && t.pending.is_none() && !t.wants_every_call(self.seccomp) {
                Resume::Cont
            } else {
                Resume::Syscall
            };
            let at_point = std::mem::take(&mut t.at_point);
            let at_exit = t.sigreturn_exit && t.exit_rip.is_some() && !t.exit_unblocks;
            if sig == 0 && (at_point.is_some() || at_exit) && self.signal_comes_first(cur) {
                // A signal that arrived while it waited (another thread sent it) is
                // delivered before the thread runs an instruction: still right after
                // its `rt_sigreturn`, or at its preemption point.
                let t = self.threads.get_mut(&cur).expect("current thread exists");
                t.exit_unblocks |= at_exit;
                t.resumed_at_point = at_point;
            }
            let t = self.threads.get_mut(&cur).expect("current thread exists");
            match t.task.resume(mode, sig) {
                Ok(()) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
            // Others ready to run: this thread gets a time slice (see `preempt`). While
            // they all sit in blocking calls (or wait behind one), none: its slice starts
            // when one of those calls returns. (Arming a CPU-time clock costs three
            // ioctls and a timer that follows the thread through every context switch.)
            // A thread holding a signal gets a short one either way (see `slices`).
            let ordinary = (!self.no_watchdog && self.someone_ready())
                .then(|| self.sched.slice(crate::preempt::SLICE));
            self.start_slices(tgid, cur, ordinary);
            let mut sliced = self
                .threads
                .get(&cur)
                .is_some_and(|t| t.slice_ends.is_some());
            let stop = loop {
                let (tid, stop) = self.wait_any()?;
                if self.interrupter.requested() {
                    self.end_slice(cur);
                    return self.end_interrupted(tid, stop);
                }
                if tid == cur {
                    break stop;
                }
                if let Some(leader) = self.exec_takeover(cur, tid, stop)? {
                    // It exec'ed from a thread other than the main one: it goes on under
                    // the leader's tid.
                    cur = leader;
                    break stop;
                }
                if let Some(how) = self.on_background_stop(tid, stop)? {
                    self.end_slice(cur);
                    return Ok(how);
                }
                if !self.threads.contains_key(&cur) {
                    // Its process ended while it ran (another of its threads reported
                    // first) and it was reaped with the others: nothing more will come.
                    break Stop::Killed(libc::SIGKILL);
                }
                if self
                    .threads
                    .get(&tid)
                    .is_some_and(|t| matches!(t.state, Where::Unblocked(_)))
                {
                    // Someone can run now: the running thread gets an ordinary slice.
                    if sliced {
                        self.shorten_slice(cur);
                    } else if !self.no_watchdog {
                        self.start_slice(tgid, cur, crate::preempt::SLICE);
                        sliced = true;
                    }
                }
            };
            self.end_slice(cur);
            let next = match self.on_stop(cur, stop) {
                Ok(next) => next,
                Err(e) if self.died_under_us(cur, &e) => Next::Switch,
                Err(e) => return Err(e),
            };
            match next {
                Next::Continue => {}
                Next::Switch => {
                    self.previous = Some(cur);
                    self.current = None;
                }
                Next::Finished(how) => return Ok(how),
            }
        }
    }

    /// Waits for any of this recording's tasks; stops of unknown tasks (new threads
    /// that report before their parent's clone event) are kept for later.
    pub(super) fn wait_any(&mut self) -> Result<(i32, Stop)> {
        loop {
            let (tid, stop) = crate::ptrace::wait_own()?;
            if self.reaped_group_holder(tid) {
                continue;
            }
            if self.is_ours(tid, stop) {
                return Ok((tid, stop));
            }
            self.early.insert(tid, stop);
        }
    }

    /// The scheduling decision at a call's exit (or at the entry of a call completed
    /// there): `Some` when `cur` gives way (a thread it woke is seen returning first, see
    /// `collect_woken`), or the program ended meanwhile.
    pub(super) fn at_point(&mut self, cur: i32, point: Point) -> Result<Option<Next>> {
        if self.threads.len() > 1 && self.sched.should_switch(point) {
            if point == Point::Wake {
                if let Some(how) = self.collect_woken(cur)? {
                    return Ok(Some(Next::Finished(how)));
                }
            }
            return Ok(Some(Next::Switch));
        }
        Ok(None)
    }

    /// Whether `tid`, just reported by a wait, was the process group's holder (killed by
    /// the program's `kill(0, SIGKILL)` or so): it is gone, nothing to do.
    pub(super) fn reaped_group_holder(&mut self, tid: i32) -> bool {
        if self.group.as_ref().is_some_and(|g| g.pid() == tid) {
            // Dropping it waits for nothing more: it is reaped.
            self.group = None;
            return true;
        }
        false
    }

    /// Whether a stop is of a known task (the others are new threads that report before
    /// their parent's clone event).
    pub(super) fn is_ours(&self, tid: i32, stop: Stop) -> bool {
        // A zombie leader reports only a thread that takes its tid by exec'ing.
        self.threads.contains_key(&tid)
            || (self.zombies.contains(&tid) && stop == Stop::Event(libc::PTRACE_EVENT_EXEC))
    }

    /// Chooses the thread to run next; `None` when every thread is blocked (or held
    /// behind a blocked one).
    pub(super) fn pick(&mut self) -> Result<Option<i32>> {
        loop {
            if self.any_stopped() {
                // A SIGCONT from outside the recording.
                self.wake_continued();
            }
            let runnable = self.runnable();
            if runnable.is_empty() {
                return Ok(None);
            }
            let woken = self.woken.take().filter(|w| runnable.contains(w));
            let tid = self.sched.pick_after(&runnable, self.previous, woken);
            let blocked = self
                .threads
                .values()
                .any(|t| matches!(t.state, Where::Blocked));
            if let Some(starve) = self.sched.starvation_due(blocked) {
                // Chaos mode holds it back so that a timeout elsewhere can fire first.
                // While every blocked thread waits on a futex that no timer of its own
                // ends within the starvation (libtest's main thread waiting for a test,
                // a join), nothing can: the starvation waits for a later pick.
                if self.a_blocked_call_may_end_within(starve) {
                    self.sched.starvation(blocked);
                    tracing::debug!("thread {tid} starved for {starve:?}");
                    std::thread::sleep(starve);
                }
            }
            let t = self.threads.get_mut(&tid).expect("picked");
            match t.state {
                Where::Unblocked(ret) => {
                    t.state = Where::Ready(0);
                    match self.on_exit(tid, ret) {
                        Ok(()) => {}
                        // Killed after its call returned: choose again.
                        Err(e) if self.died_under_us(tid, &e) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Where::Held => {
                    // Its file is free: the call starts from its entry, as if just made.
                    t.state = Where::Ready(0);
                    let h = t.held.take().expect("a held thread has its call");
                    match self.on_entry(tid, h.nr, h.args, h.at_seccomp, true)? {
                        Next::Continue => {}
                        // Left blocked in the kernel: choose again.
                        Next::Switch => continue,
                        Next::Finished(_) => {
                            return Err(Error::Unsupported {
                                what: format!("thread {tid}'s held write ended the program"),
                                hint: "report this as a bug".into(),
                            })
                        }
                    }
                }
                _ => {}
            }
            self.current = Some(tid);
            return Ok(Some(tid));
        }
    }

    /// Whether a thread in a blocking call might see its call end within `d` without
    /// another thread of the recording doing anything: anything but a futex wait
    /// without a timeout or with a `CLOCK_MONOTONIC` deadline (`FUTEX_WAIT_BITSET`, as
    /// Rust's std waits) beyond `d` from now (the margin covers the engine's own delays).
    pub(super) fn a_blocked_call_may_end_within(&mut self, d: std::time::Duration) -> bool {
        const FUTEX_WAIT_BITSET: i32 = 9;
        const MARGIN: std::time::Duration = std::time::Duration::from_millis(20);
        let deadline = crate::arch::self_traps::monotonic_now() + d + MARGIN;
        self.threads.values_mut().any(|t| {
            if !matches!(t.state, Where::Blocked) {
                return false;
            }
            let Some(p) = t.pending.as_ref() else {
                return true;
            };
            if p.nr != nr::FUTEX {
                return true;
            }
            let (op, timeout) = (p.args[1] as i32, p.args[3]);
            let cmd = op & libc::FUTEX_CMD_MASK;
            if cmd != libc::FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET {
                return true;
            }
            if timeout == 0 {
                return false;
            }
            if cmd != FUTEX_WAIT_BITSET || op & libc::FUTEX_CLOCK_REALTIME != 0 {
                // A relative timeout (started when, exactly?) or a wall-clock one.
                return true;
            }
            match t.task.read_mem(timeout, 16) {
                Ok(b) => {
                    let secs = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                    let nanos = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
                    if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
                        return true;
                    }
                    std::time::Duration::new(secs as u64, nanos as u32) <= deadline
                }
                Err(_) => true,
            }
        })
    }

    /// Thread `cur`'s `FUTEX_WAKE` woke a waiter, which is to run next (see
    /// [`Point::Wake`]): its wait's exit stop is awaited here, a few milliseconds at
    /// most, so that the pick sees it ready. Only while a thread of `cur`'s process waits in a futex call (a private
    /// wake wakes no one else; any other stop met meanwhile is handled as usual).
    /// Returns how the program ended, if it did meanwhile.
    pub(super) fn collect_woken(&mut self, cur: i32) -> Result<Option<ExitKind>> {
        // At most about 5 ms: the woken thread needs a CPU (the pinned one, or the
        // other's share under load) to reach its exit stop.
        const TRIES: usize = 200;
        const WOKEN_POLL: std::time::Duration = std::time::Duration::from_micros(25);
        let tgid = self.threads.get(&cur).map_or(cur, |t| t.tgid);
        let waiting = |s: &Self| {
            s.threads.values().any(|t| {
                t.tgid == tgid
                    && matches!(t.state, Where::Blocked)
                    && t.pending.as_ref().is_some_and(|p| p.nr == nr::FUTEX)
            })
        };
        let returned = |s: &Self| {
            s.threads.iter().find_map(|(&tid, t)| {
                (t.tgid == tgid
                    && matches!(t.state, Where::Unblocked(_))
                    && t.pending.as_ref().is_some_and(|p| p.nr == nr::FUTEX))
                .then_some(tid)
            })
        };
        for _ in 0..TRIES {
            if let Some(tid) = returned(self) {
                // Seen already, or just now.
                tracing::debug!("thread {cur} woke thread {tid}: it runs next");
                self.woken = Some(tid);
                return Ok(None);
            }
            if !waiting(self) {
                return Ok(None);
            }
            match crate::ptrace::try_wait_own()? {
                Some((tid, _)) if self.reaped_group_holder(tid) => {}
                Some((tid, stop)) if self.is_ours(tid, stop) => {
                    if let Some(how) = self.on_background_stop(tid, stop)? {
                        return Ok(Some(how));
                    }
                }
                Some((tid, stop)) => {
                    self.early.insert(tid, stop);
                }
                None => std::thread::sleep(WOKEN_POLL),
            }
        }
        tracing::debug!("thread {cur} woke a waiter, not seen returning");
        Ok(None)
    }

    /// The threads that can run: ready ones, those whose blocking call returned, and
    /// held ones whose file is free.
    pub(super) fn runnable(&mut self) -> Vec<i32> {
        let mut runnable = Vec::new();
        let mut held = Vec::new();
        for (tid, t) in &self.threads {
            match (t.state, t.held) {
                (Where::Ready(_) | Where::Unblocked(_), _) => runnable.push(*tid),
                (Where::Held, Some(h)) => held.push((*tid, h.key)),
                _ => {}
            }
        }
        for (tid, key) in held {
            if !self.write_in_flight(tid, key) {
                runnable.push(tid);
            }
        }
        runnable.sort_unstable();
        runnable
    }

    /// Whether a thread other than the running one can run (see [`Self::runnable`]).
    pub(super) fn someone_ready(&mut self) -> bool {
        let mut held = Vec::new();
        for (tid, t) in &self.threads {
            match (t.state, t.held) {
                (Where::Ready(_) | Where::Unblocked(_), _) => return true,
                (Where::Held, Some(h)) => held.push((*tid, h.key)),
                _ => {}
            }
        }
        held.into_iter()
            .any(|(tid, key)| !self.write_in_flight(tid, key))
    }

    /// Whether a thread other than `cur` can run as far as the recorded events say: one
    /// is ready, or held at a write whose file no recorded-but-unfinished write uses. A
    /// thread in a blocking call counts as blocked until its result is recorded, even if
    /// the kernel has returned it meanwhile (that moment is timing, not an event), so the
    /// answer follows from the events alone.
    pub(super) fn others_ready_as_recorded(&mut self, cur: i32) -> bool {
        let mut held = Vec::new();
        for (tid, t) in &self.threads {
            if *tid == cur {
                continue;
            }
            match (t.state, t.held) {
                (Where::Ready(_), _) => return true,
                (Where::Held, Some(h)) => held.push((*tid, h.key)),
                _ => {}
            }
        }
        held.into_iter()
            .any(|(tid, key)| !self.write_in_flight(tid, key))
    }

    /// Whether any thread has a write-family call in flight (no lookup: the common case
    /// is no).
    pub(super) fn any_write_in_flight(&self) -> bool {
        self.threads.values().any(|t| {
            matches!(t.state, Where::Blocked | Where::Unblocked(_))
                && t.pending.as_ref().is_some_and(|p| p.out_fd.is_some())
        })
    }

    /// Whether a thread other than `tid` has a write-family call in flight (in the
    /// kernel, or returned but not yet recorded) on the file `key`. The file behind a
    /// call in flight is looked up once; if that fails (another thread closed the fd
    /// meanwhile) it is taken as another file.
    pub(super) fn write_in_flight(&mut self, tid: i32, key: ordering::FileKey) -> bool {
        self.threads.iter_mut().any(|(other, t)| {
            if *other == tid || !matches!(t.state, Where::Blocked | Where::Unblocked(_)) {
                return false;
            }
            let Some(p) = t.pending.as_mut() else {
                return false;
            };
            let Some(fd) = p.out_fd else {
                return false;
            };
            let theirs = *p
                .out_key
                .get_or_insert_with(|| ordering::file_key(*other, fd));
            theirs == Some(key)
        })
    }

    /// A stop of a thread that is not the running one: a blocked thread's call returned,
    /// or it died.
    pub(super) fn on_background_stop(&mut self, tid: i32, stop: Stop) -> Result<Option<ExitKind>> {
        match stop {
            Stop::Syscall => {
                let t = self.threads.get_mut(&tid).expect("known thread");
                let at = match t.task.syscall_stop() {
                    Ok(at) => at,
                    Err(e) if self.died_under_us(tid, &e) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let t = self.threads.get_mut(&tid).expect("known thread");
                match at {
                    SyscallStop::Exit { ret, rip } if t.state == Where::Blocked => {
                        t.state = Where::Unblocked(ret);
                        t.exit_rip = Some(rip);
                    }
                    other => {
                        return Err(Error::Unsupported {
                            what: format!(
                                "thread {tid} stopped at {other:?} while it was not running"
                            ),
                            hint: "report this as a bug".into(),
                        })
                    }
                }
                Ok(None)
            }
            Stop::Exited(_) | Stop::Killed(_) => {
                let tgid = self.threads.get(&tid).map(|t| t.tgid).unwrap_or(tid);
                self.threads.remove(&tid);
                if self.execing(tgid) {
                    // Another thread of its process is in execve: the kernel ends the
                    // others (collected by this wait; the exec waits for that).
                    tracing::debug!("thread {tid} ended by an exec in process {tgid}");
                    return Ok(None);
                }
                // Its process is going away (killed, or exit_group by another thread).
                if tgid == self.leader {
                    return self.process_ended(tid, stop).map(Some);
                }
                self.forget_process(tgid);
                Ok(None)
            }
            Stop::Signal(libc::SIGINT) if self.signal_is_from_terminal(tid) => {
                self.interrupter.note(Outcome::Interrupted);
                self.end_interrupted(tid, stop).map(Some)
            }
            Stop::Signal(sig) => {
                // A signal arrived for a blocked thread; the syscall will report its
                // exit (EINTR/ERESTART*) first, then this signal again when resumed.
                Err(Error::Unsupported {
                    what: format!(
                        "signal {} arrived for blocked thread {tid}",
                        signal_name(sig)
                    ),
                    hint: "asynchronous signals are not supported by this version of the recorder"
                        .into(),
                })
            }
            other => Err(Error::Unsupported {
                what: format!("thread {tid} stopped with {other:?} while blocked"),
                hint: "report this as a bug".into(),
            }),
        }
    }

    /// Whether `e`, met while handling thread `tid`'s stop, only says that a SIGKILL took
    /// the thread away meanwhile (its memory or registers went first; see
    /// [`crate::ptrace::dying`]). If so, the thread is left to wait for its end, which a
    /// later wait reports like any thread's; the call it was in has no exit in the
    /// trace, as for a thread killed while blocked.
    pub(super) fn died_under_us(&mut self, tid: i32, e: &Error) -> bool {
        let may_be_death = matches!(
            e,
            Error::TaskGone { .. } | Error::Memory { .. } | Error::Ptrace { .. }
        );
        if !may_be_death || !crate::ptrace::dying(tid) {
            return false;
        }
        tracing::debug!("thread {tid} was killed while its stop was handled ({e})");
        if let Some(t) = self.threads.get_mut(&tid) {
            t.state = Where::Blocked;
        }
        true
    }

    /// Whether a thread of process `tgid` is in an execve.
    pub(super) fn execing(&self, tgid: i32) -> bool {
        self.threads
            .values()
            .any(|t| t.tgid == tgid && t.pending.as_ref().is_some_and(|p| syscalls::is_exec(p.nr)))
    }

    /// A thread other than its process's leader exec'ed: the kernel ended the process's
    /// other threads, and the exec'ing thread took the leader's tid, under which it
    /// reports the exec (`tid`, `stop`; `PTRACE_GETEVENTMSG` names the former tid).
    /// Follows it: the running thread `cur` is from now on known as the leader. Returns
    /// the leader's tid when that is what happened.
    pub(super) fn exec_takeover(&mut self, cur: i32, tid: i32, stop: Stop) -> Result<Option<i32>> {
        if stop != Stop::Event(libc::PTRACE_EVENT_EXEC) {
            return Ok(None);
        }
        let Some(t) = self.threads.get(&cur) else {
            return Ok(None);
        };
        if t.tgid != tid || !t.pending.as_ref().is_some_and(|p| syscalls::is_exec(p.nr)) {
            return Ok(None);
        }
        let former = Task::new(tid).event_msg()? as i32;
        if former != cur {
            return Err(Error::Unsupported {
                what: format!(
                    "process {tid} reported an exec by thread {former} while thread {cur} was in execve"
                ),
                hint: "report this as a bug".into(),
            });
        }
        // The others are gone: non-leaders report their ends (collected already, unless
        // one is still on its way), the leader is released by the kernel unreported.
        for other in self.members(tid) {
            if other != cur && other != tid {
                reap(other);
            }
            if other != cur {
                self.threads.remove(&other);
            }
        }
        self.zombies.remove(&tid);
        let mut t = self.threads.remove(&cur).expect("checked above");
        t.task = Task::new(tid);
        // Its CPU-time clock signals the tid it had: a new one comes with its next slice.
        t.clock = None;
        if let Some(p) = t.pending.as_mut() {
            p.exec_from = Some(cur);
        }
        self.threads.insert(tid, t);
        self.current = Some(tid);
        if self.previous == Some(cur) {
            self.previous = Some(tid);
        }
        tracing::debug!("thread {cur} exec'ed and is now {tid}, its process's leader");
        Ok(Some(tid))
    }

    /// The main process ended (`tid`, already out of the running, reported `stop`):
    /// reap its threads, end every other process of the tree (processes that outlive
    /// the main one are killed: the recording is of the main process's life), and write
    /// the exit event.
    pub(super) fn process_ended(&mut self, tid: i32, stop: Stop) -> Result<ExitKind> {
        let leader = self.leader;
        let mut leader_stop = (tid == leader).then_some(stop);
        self.threads.remove(&tid);
        for t in self.members(leader) {
            if t != leader {
                reap(t);
                self.threads.remove(&t);
            }
        }
        if leader_stop.is_none() {
            leader_stop = Some(reap(leader));
        }
        self.threads.remove(&leader);
        self.zombies.remove(&leader);
        self.kill_all();
        let how = match leader_stop {
            Some(Stop::Killed(s)) => ExitKind::Signaled(s),
            Some(Stop::Exited(c)) => ExitKind::Exited(c),
            _ => ExitKind::Exited(0),
        };
        self.events.push(&Event::Exit { tid: leader, how })?;
        self.events.flush();
        Ok(how)
    }

    pub(super) fn kill_all(&mut self) {
        let tasks: Vec<Member> = self
            .threads
            .iter()
            .map(|(tid, t)| Member {
                leader: *tid == t.tgid,
                tid: *tid,
            })
            .chain(self.zombies.iter().map(|z| Member {
                leader: true,
                tid: *z,
            }))
            .collect();
        crate::tree::kill_and_reap(tasks);
        self.threads.clear();
        self.zombies.clear();
    }

    pub(super) fn on_stop(&mut self, cur: i32, stop: Stop) -> Result<Next> {
        let resumed_at_point = self
            .threads
            .get_mut(&cur)
            .and_then(|t| t.resumed_at_point.take());
        let decoded = match self.threads.get(&cur) {
            Some(t) => ThreadStop::decode(&t.task, stop)?,
            None => ThreadStop::decode(&Task::new(cur), stop)?,
        };
        if self.syscallbuf
            && !matches!(
                decoded,
                ThreadStop::Exited(_)
                    | ThreadStop::Killed(_)
                    | ThreadStop::SyscallExit { .. }
                    | ThreadStop::Event(libc::PTRACE_EVENT_EXEC)
            )
        {
            // The calls it made without a stop come before whatever this stop records.
            // (At a syscall's exit stop no code ran since its entry stop, where the
            // buffer was read; the flush call's exit must not read it before the library
            // starts it again.)
            self.flush_buffer(cur)?;
        }
        if let ThreadStop::Signal(sig) = decoded {
            if self.syscallbuf && self.desched_stop(cur, sig)? {
                // The desched event's signal: never the program's.
                return Ok(Next::Continue);
            }
        }
        match decoded {
            ThreadStop::Exited(_) | ThreadStop::Killed(_) => {
                let tgid = self.threads.get(&cur).map(|t| t.tgid).unwrap_or(cur);
                if tgid != self.leader {
                    self.threads.remove(&cur);
                    self.forget_process(tgid);
                    return Ok(Next::Switch);
                }
                return self.process_ended(cur, stop).map(Next::Finished);
            }
            ThreadStop::SyscallEntry { .. }
            | ThreadStop::SyscallExit { .. }
            | ThreadStop::SyscallUnknown => {
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(0);
                match decoded {
                    ThreadStop::SyscallEntry { nr, args } => {
                        self.threads.get_mut(&cur).expect("current").exit_rip = None;
                        if let Some(next) = self.bounce_for_held_signal(cur, nr, &args)? {
                            return Ok(next);
                        }
                        return self.on_entry(cur, nr, args, false, false);
                    }
                    ThreadStop::SyscallExit { ret, rip } => {
                        let sysno = self.threads[&cur].pending.as_ref().map(|p| p.nr);
                        let woke = self.threads[&cur]
                            .pending
                            .as_ref()
                            .is_some_and(|p| syscalls::futex_wake(p.nr, &p.args))
                            && ret > 0;
                        self.on_exit(cur, ret)?;
                        if sysno.is_some_and(job_control::sends_signal) && self.any_stopped() {
                            self.wake_continued();
                        }
                        if matches!(sysno, Some(nr::RT_SIGPROCMASK | nr::RT_SIGRETURN)) {
                            let t = self.threads.get_mut(&cur).expect("current");
                            t.segv_blocked = signal::blocks_segv(&t.task)?;
                        }
                        let t = self.threads.get_mut(&cur).expect("current");
                        t.exit_rip = Some(rip);
                        t.sigreturn_exit = sysno == Some(nr::RT_SIGRETURN);
                        t.exit_unblocks = t.sigreturn_exit && signal::unblocked_pending(cur);
                        if t.requeued.is_none() {
                            if let Some(si) = t.deferred.pop_front() {
                                // Queue a held signal again, now that replay can name
                                // the point: right after this syscall.
                                t.state = Where::Ready(si.si_signo);
                                t.requeued = Some(si);
                            }
                        }
                        // Any other held signal waits for the next call's exit, or
                        // for a whole held signal's slice from here (see `slices`).
                        t.held_since =
                            (!t.deferred.is_empty()).then(crate::arch::self_traps::monotonic_now);
                        let buffered_wake = sysno == Some(nr::CHAOS_SYSCALLBUF_FLUSH)
                            && std::mem::take(&mut t.buffered_wake);
                        let point = match sysno {
                            Some(nr::SCHED_YIELD) => Point::Yield,
                            Some(nr::CHAOS_TICK) => Point::Tick,
                            _ if woke || buffered_wake => Point::Wake,
                            _ => Point::SyscallExit,
                        };
                        if let Some(next) = self.at_point(cur, point)? {
                            return Ok(next);
                        }
                    }
                    _ => {}
                }
            }
            ThreadStop::Signal(libc::SIGSTOP) if self.is_preemption(cur)? => {
                if let Some(sig) = self.leave_buffered_call(cur)? {
                    // A signal came first: handle it, no preemption this time (the
                    // watchdog fires again).
                    let deliver = self.on_signal(cur, sig)?;
                    self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver);
                    return Ok(Next::Continue);
                }
                self.flush_buffer(cur)?;
                let t = self.threads.get_mut(&cur).expect("current");
                // The end of a held signal's slice rather than of its ordinary one: the
                // thread stops to be given the signal, and goes on (see `slices`).
                let delivery = std::mem::take(&mut t.delivery_slice);
                let over = t
                    .slice_ends
                    .take()
                    .is_some_and(|end| crate::arch::self_traps::monotonic_now() >= end);
                if delivery {
                    let regs = t.task.regs()?;
                    if !over || !self.can_give_held_signal(cur, &regs)? {
                        // The SIGSTOP of an earlier slice (this one is not over: its
                        // length in CPU time cannot be shorter in wall-clock time), or
                        // no signal to give here (the thread blocks it: in the
                        // handler of another): no point, the thread goes on (nothing
                        // it can see happened).
                        tracing::debug!("thread {cur}: no held signal given at this stop");
                        let t = self.threads.get_mut(&cur).expect("current");
                        t.state = Where::Ready(0);
                        return Ok(Next::Continue);
                    }
                } else {
                    self.sched.preempted();
                }
                let t = self.threads.get_mut(&cur).expect("current");
                let regs = t.task.regs()?;
                // On to a point replay finds cheaply (see `preempt::steer`).
                let started = crate::arch::self_traps::monotonic_now();
                let requeued = t.requeued.is_some();
                let mut steered = crate::preempt::steer::steer(&mut t.task, regs, requeued)?;
                let elapsed = || crate::arch::self_traps::monotonic_now().saturating_sub(started);
                let stepped = elapsed();
                let others = self.other_stacks(cur);
                let t = self.threads.get_mut(&cur).expect("current");
                if steered.point.method == crate::preempt::point::Method::StateMatch {
                    let words = crate::preempt::steer::pointed_words(
                        &mut t.task,
                        &steered.regs,
                        steered.point.stack_from,
                        &steered.point.stack,
                        &others,
                        &steered.point.memory,
                    )?;
                    steered.point.memory.extend(words);
                }
                let state = crate::preempt::capture(&mut t.task, &steered.regs, &others)?;
                tracing::debug!(
                    "thread {cur} preempted at {:#x}: {} steps in {stepped:?}, state in {:?}; other threads' rsp {:x?}",
                    steered.regs.rip,
                    steered.point.steps,
                    elapsed().saturating_sub(stepped),
                    others.iter().map(|o| o.rsp).collect::<Vec<_>>()
                );
                t.state = Where::Ready(0);
                t.exit_rip = None;
                self.events.push(&Event::Preempted {
                    tid: cur,
                    state: Box::new(state),
                    point: Box::new(steered.point),
                })?;
                // Until a delivery moves it (`deliver_to_handler`) or it is resumed.
                t.at_point = Some(steered.regs.rip);
                let mut deliver = 0;
                if let Some(sig) = steered.signal {
                    deliver = self.on_signal(cur, sig)?;
                    self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver);
                }
                if !delivery {
                    return Ok(Next::Switch);
                }
                if deliver == 0 {
                    self.give_held_signal(cur, &steered.regs)?;
                }
                return Ok(Next::Continue);
            }
            ThreadStop::Signal(libc::SIGINT) if self.signal_is_from_terminal(cur) => {
                // Ctrl-C reached the program before (or instead of) the recorder: end
                // the recording the same way, without delivering it.
                self.interrupter.note(Outcome::Interrupted);
                return self.end_interrupted(cur, stop).map(Next::Finished);
            }
            ThreadStop::Signal(sig) if self.is_group_stop(cur, sig)? => {
                // Its process stops: so does it, until continued (see `job_control`).
                tracing::debug!("thread {cur}: group-stop ({})", signal_name(sig));
                self.threads.get_mut(&cur).expect("current").state = Where::Stopped;
                return Ok(Next::Switch);
            }
            ThreadStop::Signal(sig) => {
                self.stop_at_point = resumed_at_point;
                let deliver = self.on_signal(cur, sig);
                self.stop_at_point = None;
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(deliver?);
            }
            ThreadStop::Seccomp => {
                let t = self.threads.get_mut(&cur).expect("current");
                t.state = Where::Ready(0);
                if t.pending.is_some() {
                    // Resumed with PTRACE_SYSCALL, it reported the entry already.
                    return Ok(Next::Continue);
                }
                if let SyscallStop::Entry { nr, args } = t.task.syscall_stop()? {
                    t.exit_rip = None;
                    return self.on_entry(cur, nr, args, true, false);
                }
            }
            ThreadStop::Event(ev) => {
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(0);
                return self.on_event(cur, ev);
            }
            ThreadStop::Other(_) => {
                self.threads.get_mut(&cur).expect("current").state = Where::Ready(0)
            }
        }
        Ok(Next::Continue)
    }

    /// The stacks of the threads sharing `cur`'s address space, but `cur`, where they
    /// stand (for the memory digest of `cur`'s preemption point, which leaves their dead
    /// stacks out: see `preempt::memory::dead_stacks`). Every one of them is stopped
    /// (its registers as at its stop) or in a blocking call (its registers as when it
    /// was resumed into it); replay has each at the same place when it searches for the
    /// point (the same events replayed). One whose registers cannot be read (gone) is
    /// left out, and its stack counts whole.
    pub(super) fn other_stacks(&self, cur: i32) -> Vec<crate::preempt::memory::Preempted> {
        use crate::preempt::memory::{same_address_space, Preempted};
        let tgid = self.threads[&cur].tgid;
        self.threads
            .iter()
            .filter(|(tid, t)| {
                **tid != cur && (t.tgid == tgid || same_address_space(cur, t.task.tid))
            })
            .filter_map(|(_, t)| match t.state {
                Where::Blocked => t.kernel_stack,
                _ => t.task.regs().ok().map(|r| Preempted::of(&r)),
            })
            .collect()
    }

    pub(super) fn on_event(&mut self, cur: i32, ev: i32) -> Result<Next> {
        match ev {
            libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                let child = self.threads[&cur].task.event_msg()? as i32;
                let first = match self.early.remove(&child) {
                    Some(s) => s,
                    None => crate::ptrace::wait_for(child)?,
                };
                if !matches!(first, Stop::Signal(libc::SIGSTOP)) {
                    return Err(Error::Unsupported {
                        what: format!("new task {child} first stopped with {first:?}"),
                        hint: "report this as a bug".into(),
                    });
                }
                // A new process is a task of its own tgid, unless clone made a thread.
                let process = ev != libc::PTRACE_EVENT_CLONE
                    || !self.threads[&cur]
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.creates_thread);
                let tgid = if process {
                    child
                } else {
                    self.threads[&cur].tgid
                };
                let slot = self.next_slot;
                self.next_slot += 1;
                let mut new = Thread::new(Task::new(child), tgid, slot);
                new.segv_blocked = self.threads[&cur].segv_blocked;
                new.tsc_sigsegv = self.threads[&cur].tsc_sigsegv;
                // Seccomp filters are inherited by threads and processes alike.
                new.filters = self.threads[&cur].filters.clone();
                self.threads.insert(child, new);
                self.interrupter.add_member(child);
                let flags = self.threads[&cur]
                    .pending
                    .as_ref()
                    .and_then(buffers::pending_clone_flags);
                self.new_task_table(cur, child, flags);
                let vfork = ev == libc::PTRACE_EVENT_VFORK;
                self.inherit_buffer(cur, child, process, vfork);
                if process && self.threads[&child].sb.is_some() {
                    // A forked copy of the thread (or a vfork child on its memory): its
                    // own desched event under the same number.
                    self.desched_for_child(cur, child);
                }
                if self.pid_namespaces {
                    self.record_pid_namespaces(cur, child)?;
                }
                self.events.push(&Event::NewTask {
                    tid: cur,
                    child,
                    process,
                    vfork,
                })?;
                if vfork {
                    // The parent now waits in the kernel until the child execs or exits.
                    let t = self.threads.get_mut(&cur).expect("current");
                    t.kernel_stack = t
                        .task
                        .regs()
                        .ok()
                        .map(|r| crate::preempt::memory::Preempted::of(&r));
                    t.task.resume(Resume::Syscall, 0).or_else(|e| {
                        if e.is_gone() {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                    t.state = Where::Blocked;
                    return Ok(Next::Switch);
                }
                Ok(Next::Continue)
            }
            libc::PTRACE_EVENT_EXEC => {
                let tgid = self.threads[&cur].tgid;
                self.forget_buffers(tgid);
                // The execve exit stop comes next; the image is captured there.
                if let Some(p) = self
                    .threads
                    .get_mut(&cur)
                    .expect("current")
                    .pending
                    .as_mut()
                {
                    p.exec_happened = true;
                }
                Ok(Next::Continue)
            }
            _ => Ok(Next::Continue),
        }
    }

    /// The threads of process `tgid` that are still known.
    pub(super) fn members(&self, tgid: i32) -> Vec<i32> {
        self.threads
            .iter()
            .filter(|(_, t)| t.tgid == tgid)
            .map(|(tid, _)| *tid)
            .collect()
    }

    /// Reaps whatever is left of a (non-main) process that has ended.
    pub(super) fn forget_process(&mut self, tgid: i32) {
        let namespace = self.end_namespace_of(tgid);
        if !namespace.is_empty() {
            self.reap_with_namespace(tgid, None, namespace);
            return;
        }
        let mut tasks: Vec<Member> = self
            .members(tgid)
            .into_iter()
            .map(|t| Member {
                leader: t == tgid,
                tid: t,
            })
            .collect();
        for m in &tasks {
            self.threads.remove(&m.tid);
        }
        if self.zombies.remove(&tgid) {
            tasks.push(Member {
                leader: true,
                tid: tgid,
            });
        }
        crate::tree::reap_in_order(tasks);
    }
}

pub(super) fn record_here(opts: &RecordOptions) -> Result<RecordSummary> {
    let trace = if opts.reuse_trace_dir {
        TraceDir::reuse(&opts.trace_dir)?
    } else {
        TraceDir::create(&opts.trace_dir)?
    };
    let env_path = opts
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let exe = spawn::resolve_program(&opts.program, env_path)?;
    let cwd = match &opts.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir().map_err(|e| Error::io(".", e))?,
    };

    // Pin this thread and the program to one core: ptrace stops cost ~11x more across
    // cores. The program is still shown the real CPU set (sched_getaffinity is rewritten).
    let cpu_set = spawn::cpu_set();
    let pinned = opts
        .cpu
        .or_else(current_cpu)
        .filter(|c| cpu_set.contains(c))
        .unwrap_or(cpu_set[0]);
    // Until the recording ends: the next recording on this thread (a hunt's worker
    // records run after run) must see the real set again, and what this thread spawns
    // afterwards must not inherit the rdtsc trap.
    let _pinned = spawn::Pinned::pin(&[pinned], cpu_set.clone());
    let _traps = crate::arch::self_traps::ArmedHere::new(true);
    let mut argv = vec![opts.program.clone().into_os_string()];
    argv.extend(opts.args.iter().cloned());
    let seed = opts.seed.unwrap_or_else(random_seed);
    let header = header::initial(opts, &argv, &cwd, &exe, seed, &cpu_set, pinned);
    let stdio_files = match &opts.stdio {
        Stdio::Inherit => None,
        Stdio::Files { stdout, stderr } => {
            let create = |p: &PathBuf| std::fs::File::create(p).map_err(|e| Error::io(p, e));
            let stdin = std::fs::File::open("/dev/null").map_err(|e| Error::io("/dev/null", e))?;
            Some([stdin, create(stdout)?, create(stderr)?])
        }
    };
    // The program runs in another process group than the recorder's (what it sends to its
    // group must not reach the recorder), one that a holder process leads (so that the
    // program's setsid() succeeds as natively), in the terminal's foreground if the
    // recorder was; the guard gives the foreground back when the recording ends.
    let group = spawn::GroupHolder::start()?;
    let first_group = group.pid();
    let foreground = match opts.stdio {
        Stdio::Inherit => spawn::ForegroundGuard::for_stdin(),
        Stdio::Files { .. } => None,
    };
    let mut env = opts.env.clone();
    if opts.syscallbuf {
        let library = crate::syscallbuf::library_path()?;
        let old = env.iter().position(|(k, _)| k == "LD_PRELOAD");
        let value = crate::syscallbuf::ld_preload(&library, old.map(|i| env[i].1.as_os_str()))?;
        if let Some(i) = old {
            env.remove(i);
        }
        env.push(("LD_PRELOAD".into(), value));
    }
    let spec = SpawnSpec {
        path: &exe,
        argv,
        env,
        cwd: Some(&cwd),
        cpu: Some(pinned),
        no_aslr: true,
        null_stdio: false,
        stdio_fds: stdio_files
            .as_ref()
            .map(|f| [f[0].as_raw_fd(), f[1].as_raw_fd(), f[2].as_raw_fd()]),
        no_core: false,
        trap_tsc_no_new_privs: true,
        landlock: None,
        process_group: Some(first_group),
        foreground_tty: foreground.as_ref().map(spawn::ForegroundGuard::tty),
    };
    // The trace's files exist before the program starts: failing to create them stops
    // the recording before anything ran.
    let fault = TraceFault::new();
    let open = |name: &str| {
        std::fs::File::create(trace.path.join(name))
            .map_err(|e| Error::io(trace.path.join(name), e))
    };
    let events = EventSink::new(
        EventWriter::create(&trace.path.join("events"))?,
        fault.clone(),
    );
    let (stdout, stderr) = (open("stdout")?, open("stderr")?);
    let pid = spawn::spawn_traced(&spec)?;
    drop(stdio_files);
    let interrupter = opts.interrupter.clone().unwrap_or_default();
    if interrupter.arm(pid) {
        interrupter.interrupt(Outcome::Interrupted);
    }
    let watchdog = opts
        .timeout
        .map(|limit| Watchdog::start(limit, interrupter.clone()));
    let mut rec = Recorder {
        events,
        files: FileStore::with_cache(trace.path.join("files"), opts.capture_cache.clone())
            .reporting_to(fault.clone()),
        fault: fault.clone(),
        threads: BTreeMap::from([(pid, Thread::new(Task::new(pid), pid, 0))]),
        leader: pid,
        group: Some(group),
        first_group,
        zombies: HashSet::new(),
        current: Some(pid),
        previous: None,
        sched: Scheduler::with_chaos(seed, opts.chaos),
        next_slot: 1,
        early: HashMap::new(),
        woken: None,
        fd_tables: FdTables::default(),
        stdout,
        stderr,
        cpu_set,
        cpuid_seen: BTreeSet::new(),
        seccomp: false,
        same_lookups: true,
        pid_namespaces: false,
        pidns: crate::pidns::PidNamespaces::default(),
        lookups_answered: 0,
        completed_at_entry: 0,
        desched_signals: 0,
        desched_events: 0,
        ticks: 0,
        shared: shared_files::SharedFiles::default(),
        mem_file_opened: false,
        interrupter: interrupter.clone(),
        watchdog: crate::preempt::Watchdog::start(header.cpu_set.clone()),
        no_watchdog: opts.no_watchdog,
        cpu_slices: opts.slice_clock == crate::preempt::cpu_clock::SliceClock::Cpu,
        syscallbuf: opts.syscallbuf,
        stop_at_point: None,
        fd_gens: HashMap::new(),
        fd_gen_counter: 0,
        shared_tls: HashSet::new(),
        desched: false,
        trace: trace.clone(),
    };
    let r = rec.run(header);
    rec.watchdog.shutdown();
    if r.is_err() {
        rec.kill_all();
    }
    drop(watchdog);
    let stopped = interrupter.disarm();
    rec.events.flush();
    if opts.reuse_trace_dir {
        if let Err(e) = rec.files.remove_unused() {
            fault.note(e);
        }
    }
    let events = rec.events.count();
    let cpuid_leaves = rec.cpuid_seen.iter().copied().collect();
    let (ticks, lookups_answered) = (rec.ticks, rec.lookups_answered);
    let completed_at_entry = rec.completed_at_entry;
    let (desched_signals, desched_events) = (rec.desched_signals, rec.desched_events);
    // Closes the trace's files (a removed file's space is freed when it is closed).
    drop(rec);
    let mut result = match r {
        Ok(how) => RunResult {
            outcome: match (how, stopped) {
                (ExitKind::Signaled(libc::SIGKILL), Some(why)) => why,
                (ExitKind::Exited(_), _) => Outcome::Exited,
                (ExitKind::Signaled(_), _) => Outcome::Signaled,
            },
            exit_code: match how {
                ExitKind::Exited(c) => Some(c),
                _ => None,
            },
            signal: match how {
                ExitKind::Signaled(s) => Some(s),
                _ => None,
            },
            status: how.status(),
            events,
            cpuid_leaves,
            tick_requests: ticks,
            lookups_answered,
            completed_at_entry,
            desched_signals,
            desched_events,
            message: None,
            trace_error: fault.message(),
        },
        Err(e) => {
            let result = RunResult {
                outcome: Outcome::RecorderError,
                exit_code: None,
                signal: None,
                status: 125,
                events,
                cpuid_leaves,
                tick_requests: ticks,
                lookups_answered,
                completed_at_entry,
                desched_signals,
                desched_events,
                message: Some(e.to_string()),
                trace_error: fault.message(),
            };
            // The recorder's error is the news, whether or not this can be written.
            if let Err(w) = trace.write_result(&result) {
                tracing::warn!("{w}");
            }
            return Err(e);
        }
    };
    if let Err(e) = trace.write_result(&result) {
        // The program's status stands; the trace lacks its end.
        fault.note(e);
        result.trace_error = fault.message();
        // An incomplete trace cannot be replayed: its events and captured files make
        // room for the `result.json` that says so (on a full disk, nothing else would).
        let _ = std::fs::remove_file(trace.path.join("events"));
        if let Ok(files) = std::fs::read_dir(trace.path.join("files")) {
            for f in files.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        if let Err(e) = trace.write_result(&result) {
            tracing::warn!("{e}");
        }
    }
    Ok(RecordSummary {
        trace: trace.path.clone(),
        result,
    })
}

pub(super) fn current_cpu() -> Option<usize> {
    // SAFETY: plain libc call.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as usize)
}

pub(super) fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into a local buffer.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    u64::from_le_bytes(b)
}

impl Recorder {
    /// Process `tgid` ends. When it is the first process of a pid namespace of the
    /// program's, the kernel kills every other process of that namespace (and of the
    /// namespaces below), and its own exit waits until they are collected: they are
    /// killed here, the way the kernel would, and their tids returned, to be collected
    /// with `tgid`'s threads ([`Recorder::reap_with_namespace`]). They leave the books;
    /// replay ends them at the same point (`replay::Replayer::end_namespace_of`).
    pub(super) fn end_namespace_of(&mut self, tgid: i32) -> Vec<i32> {
        let Some(ns) = self.pidns.led_by(tgid) else {
            return Vec::new();
        };
        let members: Vec<Member> = self
            .threads
            .iter()
            .filter(|(t, x)| x.tgid != tgid && self.pidns.within(**t, ns))
            .map(|(t, x)| Member {
                leader: *t == x.tgid,
                tid: *t,
            })
            .chain(
                self.zombies
                    .iter()
                    .filter(|z| **z != tgid && self.pidns.within(**z, ns))
                    .map(|z| Member {
                        leader: true,
                        tid: *z,
                    }),
            )
            .collect();
        tracing::debug!(
            "process {tgid} ends its pid namespace: {} tasks of it killed",
            members.len()
        );
        for m in &members {
            self.threads.remove(&m.tid);
            self.zombies.remove(&m.tid);
            Task::new(m.tid).kill();
        }
        members.iter().map(|m| m.tid).collect()
    }

    /// Collects process `tgid`'s threads (`also`: one already out of the books) with
    /// the other tasks of the pid namespace it is the first process of (`namespace`,
    /// killed): the last of its threads to exit waits until all others are collected,
    /// whichever it is, so all are collected together. Returns the leader's end.
    pub(super) fn reap_with_namespace(
        &mut self,
        tgid: i32,
        also: Option<i32>,
        namespace: Vec<i32>,
    ) -> Stop {
        let mut tids = namespace;
        tids.extend(self.members(tgid));
        tids.extend(also);
        if self.zombies.remove(&tgid) || !tids.contains(&tgid) {
            tids.push(tgid);
        }
        tids.sort_unstable();
        tids.dedup();
        for t in &tids {
            self.threads.remove(t);
        }
        let ends = crate::tree::reap_together(&tids);
        ends.get(&tgid).copied().unwrap_or(Stop::Exited(0))
    }
}
