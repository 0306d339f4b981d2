//! Syscalls at record: at entry, the table's class decides (refused, answered by the
//! engine, held, blocked, let run) and the inputs are hashed; at exit, the result and
//! the memory written become the `Syscall` event.

use super::self_memory::MemFileWrite;
use super::*;

impl Recorder {
    /// A syscall's entry: `at_seccomp` when the filter stopped it (the call can then be
    /// skipped without an exit stop); `released` when it was held there (see
    /// [`ordering`]) and may now proceed, its `Blocked` event written already.
    pub(super) fn on_entry(
        &mut self,
        cur: i32,
        sysno: u64,
        args: [u64; 6],
        at_seccomp: bool,
        released: bool,
    ) -> Result<Next> {
        let engine_call = matches!(
            sysno,
            nr::CHAOS_TICK | nr::CHAOS_SYSCALLBUF_INIT | nr::CHAOS_SYSCALLBUF_FLUSH
        );
        if !engine_call && !self.threads[&cur].filters.is_empty() {
            // The program's own seccomp filters speak first (see `program_filters`),
            // except on the calls only the recorder's additions make (which a
            // program's allow-list would refuse: natively they do not exist).
            if let Some(next) = self.program_verdict(cur, sysno, args, at_seccomp)? {
                return Ok(next);
            }
        }
        let Some(desc) = syscalls::lookup(sysno) else {
            return self.on_unknown_entry(cur, sysno, args);
        };
        if self.seccomp && syscalls::untraced_call(sysno, &args) {
            // Seen only because the thread was resumed with PTRACE_SYSCALL: as the
            // filter would, let it run unrecorded (no pending call: resumed with CONT).
            return Ok(Next::Continue);
        }
        let out_fd = ordering::output_fd(sysno, &args);
        let mut out_key = None;
        if let (Some(fd), false) = (out_fd, released) {
            if self.any_write_in_flight() {
                // Another write is in flight (rare): which file is this one for?
                let key = ordering::file_key(cur, fd);
                out_key = Some(key);
                if let Some(key) = key.filter(|k| self.write_in_flight(cur, *k)) {
                    // Hold it until that write is recorded; mark where it stopped.
                    tracing::debug!(
                        "thread {cur} waits at {}(fd {fd}): another thread's write to the same file is in flight",
                        desc.name
                    );
                    self.events.push(&Event::Blocked {
                        tid: cur,
                        nr: sysno,
                        args,
                    })?;
                    let t = self.threads.get_mut(&cur).expect("current");
                    t.held = Some(Held {
                        nr: sysno,
                        args,
                        at_seccomp,
                        key,
                    });
                    t.state = Where::Held;
                    return Ok(Next::Switch);
                }
            }
        }
        let (class, outputs, _) = resolve_request(desc, &args);
        let mut fake_ret = None;
        let unknown_request = syscalls::unknown_request(sysno, &args);
        match class {
            // A request the table does not know runs without outputs: programs probe
            // with invalid ones, and the kernel's refusal is recorded like any result
            // (its success stops the recording at exit, see `on_exit`).
            Class::Unsupported { .. } if unknown_request.is_some() => {}
            Class::Unsupported { hint } => {
                return Err(Error::UnsupportedSyscall {
                    name: desc.name.to_string(),
                    nr: sysno,
                    hint: hint.to_string(),
                });
            }
            Class::Refused { errno } => fake_ret = Some(-(errno as i64)),
            Class::Recorded | Class::Executed => {}
        }
        let special_here = desc.special
            && match special::handling(sysno, &args) {
                special::Handling::Here => true,
                special::Handling::Engine => false,
                special::Handling::Missing => {
                    return Err(Error::UnsupportedSyscall {
                        name: desc.name.to_string(),
                        nr: sysno,
                        hint: "its row is special but has no handler (a recorder bug)".into(),
                    })
                }
                special::Handling::Unsupported(hint) => {
                    return Err(Error::UnsupportedSyscall {
                        name: desc.name.to_string(),
                        nr: sysno,
                        hint: hint.to_string(),
                    })
                }
            };
        // clone3's arguments are in memory: read once (flags first).
        let clone3 = match sysno {
            nr::CLONE3 => Some(read_clone3(
                &mut self.threads.get_mut(&cur).expect("current").task,
                args[0],
            )?),
            _ => None,
        };
        let clone_flags = match sysno {
            nr::CLONE => Some(args[0]),
            _ => clone3.map(|c| c[0]),
        };
        if let Some(flags) = clone_flags {
            check_clone(flags, sysno == nr::CLONE3)?;
        }
        if sysno == nr::UNSHARE {
            check_unshare(args[0])?;
        }
        let joined = match sysno {
            nr::SETNS => setns_joins(cur, &args)?,
            _ => 0,
        };
        let new_pid_namespace = match sysno {
            nr::UNSHARE => args[0] & libc::CLONE_NEWPID as u64 != 0,
            nr::SETNS => joined & libc::CLONE_NEWPID as u64 != 0,
            _ => clone_flags.is_some_and(|f| f & libc::CLONE_NEWPID as u64 != 0),
        };
        if new_pid_namespace && !self.pid_namespaces {
            tracing::debug!(
                "thread {cur}: a pid namespace of the program's; tasks' pids recorded from now on"
            );
            self.pid_namespaces = true;
        }
        if self.pid_namespaces {
            self.check_signal_into_pid_namespace(cur, sysno, &args)?;
        }
        if sysno == nr::CLONE && args[0] & libc::CLONE_UNTRACED as u64 != 0 {
            // The new task must be traced like every other: the flag, which only keeps
            // a tracer off, is taken out of the call (and put back at its exit, see
            // `untraced_clone`). Replay does the same.
            let task = &mut self.threads.get_mut(&cur).expect("current").task;
            untraced_clone(task, args[0] & !(libc::CLONE_UNTRACED as u64))?;
        }
        if sysno == nr::CLONE3 && clone_flags.unwrap_or(0) & libc::CLONE_UNTRACED as u64 != 0 {
            return Err(Error::Unsupported {
                what: "clone3 with CLONE_UNTRACED (a task the recorder could not trace)".into(),
                hint: "use clone(), whose CLONE_UNTRACED the recorder takes out, or drop the flag"
                    .into(),
            });
        }
        self.shared.check_entry(cur, sysno, &args)?;
        if probe::changes_lookup(sysno) || clone_flags.is_some_and(probe::new_namespaces) {
            self.same_lookups = false;
        }
        if at_seccomp && self.same_lookups && !special_here && matches!(class, Class::Recorded) {
            // A lookup of a path that does not exist: answered here, in one stop.
            let task = &mut self.threads.get_mut(&cur).expect("current").task;
            if let Some(errno) = probe::missing(task, sysno, &args)? {
                let input_hash = syscalls::input_hash(task, desc, &args)?;
                task.set_orig_rax(u64::MAX)?;
                task.set_rax(-(errno as i64) as u64)?;
                self.lookups_answered += 1;
                self.events.push(&Event::Syscall(SyscallEvent {
                    tid: cur,
                    nr: sysno,
                    args,
                    ret: -(errno as i64),
                    input_hash,
                    writes: Vec::new(),
                    file: None,
                }))?;
                return Ok(Next::Continue);
            }
        }
        self.program_filter_entry(cur, sysno, &args)?;
        if let Some(answer) = desc.answer {
            // Never run (sched_setaffinity: the recording stays pinned; it "worked").
            fake_ret = Some(answer);
        }
        if let Some(answer) = self.answer_buffer_call(cur, sysno, &args) {
            fake_ret = Some(answer);
        }
        if self.closes_desched_fd(cur, sysno, &args) {
            // The library's fd, which the program does not know it has: as if closed.
            fake_ret = Some(-(libc::EBADF as i64));
        }
        if sysno == nr::PRCTL && args[0] == libc::PR_SET_TSC as u64 {
            // The recorder's trap stays armed; the program's setting is kept here and
            // decides whose rdtsc fault it is (see `Thread::tsc_sigsegv`).
            let t = self.threads.get_mut(&cur).expect("current");
            fake_ret = Some(match args[1] as i32 {
                libc::PR_TSC_ENABLE | libc::PR_TSC_SIGSEGV => {
                    t.tsc_sigsegv = args[1] as i32 == libc::PR_TSC_SIGSEGV;
                    0
                }
                _ => -(libc::EINVAL as i64),
            });
        }
        if sysno == nr::CHAOS_TICK {
            // Instrumented code asks for its next tick budget (see `crate::ticks`); a
            // longer one while no other thread can run, as the events so far say.
            let budget = if self.others_ready_as_recorded(cur) {
                self.sched.tick_budget()
            } else {
                self.sched.tick_budget_alone()
            };
            fake_ret = Some(budget as i64);
            self.ticks += 1;
        }
        if let Some(point) = self.completes_at_entry(cur, sysno, at_seccomp, special_here) {
            let ret = fake_ret.unwrap_or(0);
            return self.complete_at_entry(cur, desc, args, ret, point);
        }
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        if fake_ret.is_some() {
            task.set_orig_rax(u64::MAX)?;
        }
        let input_hash = syscalls::input_hash(task, desc, &args)?;
        let mut entry = effects::EntryState::capture(task, outputs, &args)?;
        if special_here {
            special::capture_entry(task, sysno, &args, &mut entry)?;
        }
        if let Some(c) = clone3 {
            entry.extra = c.to_vec();
        }
        let kills_itself = self.kills_own_process(cur, sysno, &args);
        if sysno == nr::EXIT || sysno == nr::EXIT_GROUP || kills_itself {
            // These never come back: write the event now.
            self.events.push(&Event::Syscall(SyscallEvent {
                tid: cur,
                nr: sysno,
                args,
                ret: 0,
                input_hash,
                writes: Vec::new(),
                file: None,
            }))?;
            return self.on_exit_call(cur, if kills_itself { nr::EXIT_GROUP } else { sysno });
        }
        // Fork-family calls report their child through ptrace events and are handled
        // as such (vfork's wait included), never as blocking calls.
        let forks = matches!(sysno, nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK);
        let may_block = desc.may_block
            && !syscalls::special::never_blocks(sysno, &args)
            && !(self.threads.len() > 1 && out_fd.is_some_and(|fd| ordering::never_waits(cur, fd)));
        let blocking = may_block && !forks && fake_ret.is_none() && self.threads.len() > 1;
        let creates_thread = match sysno {
            nr::CLONE => args[0] & libc::CLONE_THREAD as u64 != 0,
            nr::CLONE3 => entry
                .extra
                .first()
                .is_some_and(|f| f & libc::CLONE_THREAD as u64 != 0),
            _ => false,
        };
        let mut pending = Pending {
            nr: sysno,
            args,
            input_hash,
            outputs,
            special: special_here,
            entry,
            fake_ret,
            redirect: None,
            creates_thread,
            exec_happened: false,
            out_fd,
            out_key,
            exec_from: None,
            unknown_request,
        };
        if may_block && !forks && fake_ret.is_none() {
            // A held signal must not wait for the end of a call that may wait for ever
            // (for a parent that waits to see the signal's effect).
            self.queue_deferred_now(cur)?;
        }
        if sysno != nr::RESTART_SYSCALL {
            // Only the restart right after the interrupted call continues it.
            if let Some(t) = self.threads.get_mut(&cur) {
                t.restart_redirect = None;
            }
        }
        if blocking {
            // Let it sit in the kernel while others run; its results land in scratch.
            let t = self.threads.get_mut(&cur).expect("current");
            pending.redirect = if sysno == nr::RESTART_SYSCALL {
                t.restart_redirect.take()
            } else {
                redirect::redirect(&mut t.task, sysno, &args, t.slot)?
            };
            t.pending = Some(pending);
            if !released {
                self.events.push(&Event::Blocked {
                    tid: cur,
                    nr: sysno,
                    args,
                })?;
            }
            t.kernel_stack = t
                .task
                .regs()
                .ok()
                .map(|r| crate::preempt::memory::Preempted::of(&r));
            let pi_word = special::pi_lock_waits(sysno, &args)
                .then(|| t.task.read_mem(args[0], 4).ok())
                .flatten();
            match t.task.resume(Resume::Syscall, 0) {
                Ok(()) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
            t.state = Where::Blocked;
            if let Some(before) = pi_word {
                self.await_pi_waiter(cur, args[0], &before)?;
            }
            return Ok(Next::Switch);
        }
        self.threads.get_mut(&cur).expect("current").pending = Some(pending);
        Ok(Next::Continue)
    }

    /// The scheduling point of a call the engine completes at its seccomp stop, in one
    /// stop instead of two: `sched_yield` (0: the other threads of the recording stand in
    /// ptrace stops, there is nobody to yield to in the kernel), `chaos_tick` and the
    /// syscall-buffering library's flush call (their answers are decided at entry, and
    /// the flushed records were read at this stop). Their exits have nothing else to do
    /// but what [`Self::complete_at_entry`] does here, as long as the thread holds no
    /// signal (one waits for a call's exit, where replay can name the point). `None`
    /// for every other call.
    fn completes_at_entry(
        &self,
        cur: i32,
        sysno: u64,
        at_seccomp: bool,
        special_here: bool,
    ) -> Option<Point> {
        let t = &self.threads[&cur];
        let point = match sysno {
            nr::SCHED_YIELD => Point::Yield,
            nr::CHAOS_TICK => Point::Tick,
            // A buffered futex wake of its woke a waiter: the waker gives way (see
            // `Point::Wake`), as at any call's exit.
            nr::CHAOS_SYSCALLBUF_FLUSH if t.buffered_wake => Point::Wake,
            nr::CHAOS_SYSCALLBUF_FLUSH => Point::SyscallExit,
            _ => return None,
        };
        (at_seccomp && !special_here && t.deferred.is_empty() && t.requeued.is_none())
            .then_some(point)
    }

    /// Completes a call at its seccomp stop (see [`Self::completes_at_entry`]): skipped
    /// in the kernel with `ret` as its result, recorded now with the memory writes its
    /// exit would have made (buffers marked for traced writes; a flushed buffer
    /// emptied), and a scheduling point as at its exit.
    fn complete_at_entry(
        &mut self,
        cur: i32,
        desc: &'static syscalls::SyscallDesc,
        args: [u64; 6],
        ret: i64,
        point: Point,
    ) -> Result<Next> {
        let t = self.threads.get_mut(&cur).expect("current");
        t.buffered_wake = false;
        let input_hash = syscalls::input_hash(&mut t.task, desc, &args)?;
        t.task.set_orig_rax(u64::MAX)?;
        t.task.set_rax(ret as u64)?;
        self.completed_at_entry += 1;
        let mut writes = self.mark_writes_traced(cur)?;
        if desc.nr == nr::CHAOS_SYSCALLBUF_FLUSH {
            writes.extend(self.empty_flushed_buffer(cur, args[0])?);
        }
        self.events.push(&Event::Syscall(SyscallEvent {
            tid: cur,
            nr: desc.nr,
            args,
            ret,
            input_hash,
            writes,
            file: None,
        }))?;
        Ok(self.at_point(cur, point)?.unwrap_or(Next::Continue))
    }

    /// A call wrote `len` bytes at `addr` into process `pid` (through its memory file,
    /// or `process_vm_writev`):
    /// the bytes there now become a [`Event::KernelWrite`] of one of its threads (its
    /// leader while it lives), for replay to write at this point.
    fn record_write_into(&mut self, pid: i32, addr: u64, len: usize) -> Result<()> {
        let target = if self.threads.get(&pid).is_some_and(|t| t.tgid == pid) {
            Some(pid)
        } else {
            self.members(pid).into_iter().next()
        };
        let Some(tid) = target else {
            return Err(super::self_memory::outside_the_recording(pid));
        };
        let t = self.threads.get_mut(&tid).expect("a member");
        let data = t.task.read_mem(addr, len)?;
        self.events.push(&Event::KernelWrite { tid, addr, data })
    }

    /// A thread in `FUTEX_LOCK_PI` was let into the kernel: before another thread runs,
    /// wait until the call has either returned (its exit stop, which records the lock's
    /// word) or put the thread to sleep, having set the waiters bit in the word at
    /// `addr`, which read `before` at the entry. A changed word is recorded where it
    /// changed ([`Event::KernelWrite`]): the owner's unlock reads it next.
    fn await_pi_waiter(&mut self, cur: i32, addr: u64, before: &[u8]) -> Result<()> {
        const FUTEX_WAITERS: u32 = 0x8000_0000;
        // The kernel sets the bit within microseconds; this bounds a thread stuck
        // elsewhere in the kernel (a page fault on the word that waits for I/O).
        const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
        let started = std::time::Instant::now();
        loop {
            match crate::kernel::task_state(cur) {
                // Returned (a ptrace stop), or gone: its exit says the rest.
                None | Some('t' | 'T' | 'Z' | 'X' | 'x') => return Ok(()),
                Some('S' | 'D') => {
                    let t = self.threads.get_mut(&cur).expect("current");
                    let Ok(word) = t.task.read_mem(addr, 4) else {
                        return Ok(());
                    };
                    let value = u32::from_le_bytes(word[..].try_into().expect("4 bytes"));
                    if value & FUTEX_WAITERS != 0 {
                        if word != before {
                            self.events.push(&Event::KernelWrite {
                                tid: cur,
                                addr,
                                data: word,
                            })?;
                        }
                        return Ok(());
                    }
                }
                _ => {}
            }
            if started.elapsed() > PATIENCE {
                return Err(Error::Unsupported {
                    what: format!(
                        "thread {cur} entered FUTEX_LOCK_PI on {addr:#x} and neither returned \
                         nor went to sleep on it within {PATIENCE:?}"
                    ),
                    hint: "report this as a bug; use an ordinary mutex meanwhile".into(),
                });
            }
            // The engine shares the thread's core: let it run.
            std::thread::yield_now();
        }
    }

    /// A call whose number the kernel does not have (`syscall(-1)`, numbers past the
    /// table's end): the kernel would answer `ENOSYS`, and so does the recording, with
    /// an ordinary event. x32 calls (numbers with bit 30 set), which a kernel built with
    /// the x32 ABI would run, stop the recording instead.
    pub(super) fn on_unknown_entry(
        &mut self,
        cur: i32,
        sysno: u64,
        args: [u64; 6],
    ) -> Result<Next> {
        if syscalls::is_x32(sysno) {
            return Err(Error::UnsupportedSyscall {
                name: syscalls::name_of(sysno),
                nr: sysno,
                hint: "x32 ABI system calls are not supported; record an x86_64 build".into(),
            });
        }
        let task = &mut self.threads.get_mut(&cur).expect("current").task;
        task.set_orig_rax(u64::MAX)?;
        let entry = effects::EntryState::capture(task, &[], &args)?;
        self.threads.get_mut(&cur).expect("current").pending = Some(Pending {
            nr: sysno,
            args,
            input_hash: 0,
            outputs: &[],
            special: false,
            entry,
            fake_ret: Some(-(libc::ENOSYS as i64)),
            redirect: None,
            creates_thread: false,
            exec_happened: false,
            out_fd: None,
            out_key: None,
            exec_from: None,
            unknown_request: None,
        });
        Ok(Next::Continue)
    }

    /// Whether `cur` sends SIGKILL to its own process (`kill(getpid(), SIGKILL)`, tgkill
    /// or tkill of one of its threads), in a process other than the main one: the call
    /// never comes back, and the process ends there as if it called exit_group. Its
    /// event is written at entry so that replay ends it at the same point: the kernel's
    /// CLONE_CHILD_CLEARTID write and futex wake at its death are seen by the processes
    /// that share its memory (rr's clone_cleartid_coredump), which waited for ever at
    /// replay or found the word not cleared. (The main process's end is its exit event.)
    fn kills_own_process(&self, cur: i32, sysno: u64, args: &[u64; 6]) -> bool {
        let Some(tgid) = self.threads.get(&cur).map(|t| t.tgid) else {
            return false;
        };
        if tgid == self.leader {
            return false;
        }
        // The pids as the engine names them (the program names them in its own pid
        // namespace).
        let global = |pid: u64| {
            i32::try_from(pid)
                .ok()
                .filter(|&p| p > 0)
                .and_then(|p| self.pidns.global(cur, p))
        };
        let is_tgid = |pid: u64| global(pid) == Some(tgid);
        let member = |tid: u64| global(tid).is_some_and(|t| self.members(tgid).contains(&t));
        let sigkill = libc::SIGKILL as u64;
        match sysno {
            nr::KILL => is_tgid(args[0]) && args[1] == sigkill,
            nr::TGKILL => is_tgid(args[0]) && member(args[1]) && args[2] == sigkill,
            nr::TKILL => member(args[0]) && args[1] == sigkill,
            _ => false,
        }
    }

    /// exit / exit_group: the event is written; let the call run and collect the ends.
    pub(super) fn on_exit_call(&mut self, cur: i32, sysno: u64) -> Result<Next> {
        let t = self.threads.get_mut(&cur).expect("current");
        let tgid = t.tgid;
        t.task
            .resume(Resume::Syscall, 0)
            .or_else(|e| if e.is_gone() { Ok(()) } else { Err(e) })?;
        if sysno == nr::EXIT_GROUP || self.members(tgid).len() == 1 {
            // The whole process ends. A leader's end is reported only after its other
            // threads are collected: those first, then the leader (after the other
            // processes of the pid namespace it is the first of, if it is).
            let namespace = self.end_namespace_of(tgid);
            if !namespace.is_empty() {
                let stop = self.reap_with_namespace(tgid, Some(cur), namespace);
                if tgid == self.leader {
                    return self.process_ended(tgid, stop).map(Next::Finished);
                }
                return Ok(Next::Switch);
            }
            self.threads.remove(&cur);
            for t in self.members(tgid) {
                if t != tgid {
                    reap(t);
                    self.threads.remove(&t);
                }
            }
            if cur != tgid {
                reap(cur);
            }
            let stop = if cur == tgid
                || self.threads.contains_key(&tgid)
                || self.zombies.contains(&tgid)
            {
                self.threads.remove(&tgid);
                self.zombies.remove(&tgid);
                reap(tgid)
            } else {
                Stop::Exited(0)
            };
            if tgid == self.leader {
                return self.process_ended(tgid, stop).map(Next::Finished);
            }
            return Ok(Next::Switch);
        }
        // One thread ends. A process's leader stays a zombie until the others are gone,
        // so only non-leaders are waited for (their CLEARTID write and futex wake happen
        // before their exit is reported: nothing may run before that).
        self.threads.remove(&cur);
        if cur == tgid {
            self.zombies.insert(tgid);
            crate::tree::wait_until_zombie(tgid);
        } else {
            reap(cur);
        }
        Ok(Next::Switch)
    }

    pub(super) fn on_exit(&mut self, cur: i32, mut ret: i64) -> Result<()> {
        if let Some(budget) = self
            .threads
            .get(&cur)
            .and_then(|t| t.pending.as_ref())
            .filter(|p| p.nr == nr::CHAOS_SYSCALLBUF_INIT)
            .and_then(|p| p.fake_ret.filter(|&r| r > 0))
        {
            // A registered buffer: how the thread gets its desched event, with the budget.
            let answer = self.desched_answer(budget);
            if let Some(p) = self.threads.get_mut(&cur).and_then(|t| t.pending.as_mut()) {
                p.fake_ret = Some(answer);
            }
        }
        let desched_write = self.desched_asked(cur, ret)?;
        if let Some(p) = self.threads.get_mut(&cur).and_then(|t| {
            let p = t.pending.as_ref()?;
            (p.nr == nr::CLONE && p.args[0] & libc::CLONE_UNTRACED as u64 != 0)
                .then_some((p.args[0], &mut t.task))
        }) {
            untraced_clone(p.1, p.0)?;
        }
        // The recorded tree's processes, for a MAP_SHARED file mapping (see `shared_files`).
        // A private mapping of a file opened for writing is followed too: the program
        // may change the file under pages it has not touched yet.
        let tree: Vec<i32> = match self.threads.get(&cur).and_then(|t| t.pending.as_ref()) {
            Some(p)
                if p.nr == nr::MMAP
                    && p.args[3] as i32 & libc::MAP_ANONYMOUS == 0
                    && (p.args[3] as i32 & libc::MAP_SHARED != 0
                        || shared_files::fd_writable(cur, p.args[4])) =>
            {
                self.threads
                    .values()
                    .map(|t| t.tgid)
                    .chain(self.zombies.iter().copied())
                    .collect()
            }
            _ => Vec::new(),
        };
        let filter_writes = self.program_filter_exit(cur, ret)?;
        let own_seccomp = self.own_seccomp_mode(cur);
        let t = self.threads.get_mut(&cur).expect("thread");
        let files = t.files;
        let tsc_sigsegv = t.tsc_sigsegv;
        let Some(p) = t.pending.take() else {
            return Ok(());
        };
        let task = &mut t.task;
        let mut restart_writes = Vec::new();
        if let Some(r) = &p.redirect {
            if p.nr == nr::RESTART_SYSCALL {
                restart_writes = redirect::restarted(task, r, ret)?;
            } else {
                redirect::complete(task, r, ret)?;
                if ret == crate::kernel::restart::ERESTART_RESTARTBLOCK {
                    t.restart_redirect = Some(r.clone());
                }
            }
        }
        let task = &mut t.task;
        if let Some(fake) = p.fake_ret {
            ret = fake;
            task.set_rax(ret as u64)?;
        }
        let mut writes = Vec::new();
        let mut file = None;
        let mut shared_map = None;
        let mut shared_write = None;
        let mut other_process_writes = Vec::new();
        if let (Some(request), true) = (&p.unknown_request, ret >= 0) {
            return Err(Error::UnsupportedSyscall {
                name: syscalls::name_of(p.nr),
                nr: p.nr,
                hint: format!(
                    "{request} is not in the recorder's table yet (recorder/syscalls.toml), and the kernel accepted it; please report it"
                ),
            });
        }
        if p.fake_ret.is_none() && crate::kernel::restart::interrupted(ret) {
            // A signal cut it short; it may still have written (the time left).
            writes = effects::collect_interrupted_outputs(task, p.outputs, &p.args, &p.entry);
        } else if ret < 0 && p.fake_ret.is_none() && !p.special {
            // Outputs the kernel fills on failure too (waitid's siginfo).
            writes = effects::collect_error_outputs(task, p.outputs, &p.args);
        }
        if ret >= 0 && p.fake_ret.is_none() {
            writes = if p.special {
                special::outputs(task, p.nr, &p.args, ret, &p.entry)?
            } else {
                effects::collect_outputs(task, p.outputs, &p.args, ret, &p.entry)?
            };
            match p.nr {
                // The recorder's own traps must not show: rdtsc faults (PR_SET_TSC) and
                // cpuid faults (ARCH_SET_CPUID) only for the recorder; the program sees
                // its own PR_SET_TSC setting (kept by the engine, see `tsc_sigsegv`).
                nr::PRCTL if p.args[0] == libc::PR_GET_TSC as u64 && p.args[1] != 0 => {
                    let mode = if tsc_sigsegv {
                        libc::PR_TSC_SIGSEGV
                    } else {
                        libc::PR_TSC_ENABLE
                    };
                    let enabled = (mode as u32).to_le_bytes().to_vec();
                    task.write_mem(p.args[1], &enabled)?;
                    writes = vec![crate::trace::MemWrite {
                        addr: p.args[1],
                        data: enabled,
                    }];
                }
                nr::PRCTL if p.args[0] == libc::PR_GET_SECCOMP as u64 => {
                    // The recorder's seccomp filter must not show either: the program
                    // gets what the recorder itself has (0, or 2 inside a container
                    // that filters), as it would running natively from here.
                    // The program's own filters do show (see `program_filters`).
                    ret = match own_seccomp {
                        Some(mode) => mode,
                        // SAFETY: plain syscall without pointers.
                        None => i64::from(unsafe { libc::prctl(libc::PR_GET_SECCOMP) }),
                    };
                    task.set_rax(ret as u64)?;
                }
                nr::SECCOMP
                    if p.args[0] == crate::program_filter::SECCOMP_GET_NOTIF_SIZES && ret == 0 =>
                {
                    // Three u16 sizes (the table's row describes no outputs).
                    writes = vec![crate::trace::MemWrite {
                        addr: p.args[2],
                        data: task.read_mem(p.args[2], 6)?,
                    }];
                }
                nr::ARCH_PRCTL if p.args[0] == crate::kernel::ARCH_GET_CPUID => {
                    ret = 1;
                    task.set_rax(1)?;
                }
                nr::SCHED_GETAFFINITY => {
                    // Show the real CPU set, not the one-core pin.
                    let mask = cpu_mask_bytes(&self.cpu_set, ret as usize);
                    task.write_mem(p.args[2], &mask)?;
                    writes = vec![crate::trace::MemWrite {
                        addr: p.args[2],
                        data: mask,
                    }];
                }
                nr::MMAP => {
                    let followed = if tree.is_empty() {
                        None
                    } else {
                        self.shared.captured(cur, p.args[4])
                    };
                    file = match followed {
                        Some(hash) => Some(hash),
                        None => capture_mmap(task, &mut self.files, &p.args)?,
                    };
                    if file.is_some() && !tree.is_empty() {
                        shared_map = self.shared.mapped(cur, p.args[4], &tree)?;
                        if let Some(hash) = &file {
                            self.shared.note_capture(cur, p.args[4], hash);
                        }
                    }
                }
                nr::CLONE | nr::CLONE3 => writes = clone_writes(task, p.nr, &p.args, &p.entry)?,
                _ => {}
            }
            if let Some(kind) = OutputFds::write_kind(p.nr) {
                if let Some(stream) = self.fd_tables.stream(files, p.args[0]) {
                    let data = crate::output::written_bytes(task, kind, &p.args, ret)?;
                    let (f, name) = match stream {
                        Stream::Stdout => (&mut self.stdout, "stdout"),
                        Stream::Stderr => (&mut self.stderr, "stderr"),
                    };
                    if !self.fault.is_set() {
                        if let Err(e) = f.write_all(&data) {
                            self.fault.note(Error::io(self.trace.path.join(name), e));
                        }
                    }
                }
            }
            self.fd_tables.after_syscall(files, p.nr, &p.args, ret);
            shared_write = self.shared.written(task, p.nr, &p.args, ret)?;
            if !self.mem_file_opened {
                self.mem_file_opened = super::self_memory::opens_a_mem_file(task, p.nr, &p.args);
            }
            if p.nr == nr::PROCESS_VM_WRITEV && p.entry.extra.first() == Some(&0) {
                // Into another process: its bytes are recorded after the event.
                let pid = p.args[0] as i32;
                for (addr, len) in special::remote_ranges_written(task, &p.args, ret)? {
                    other_process_writes.push((pid, addr, len));
                }
            }
            if self.mem_file_opened {
                match super::self_memory::written(task, p.nr, &p.args, ret)? {
                    Some(MemFileWrite::Own(w)) => writes.push(w),
                    Some(MemFileWrite::Other { pid, addr, len }) => {
                        other_process_writes.push((pid, addr, len));
                    }
                    None => {}
                }
            }
        }
        if let (Some(word), None) = (special::pi_futex_word(p.nr, &p.args), p.fake_ret) {
            // Whatever the call returned (a timeout, a deadlock refused, an interruption),
            // the kernel may have written the lock's word: its value now. Unreadable
            // only when the call failed with EFAULT, having written nothing.
            if let Ok(data) = task.read_mem(word, 4) {
                writes.push(crate::trace::MemWrite { addr: word, data });
            }
        }
        let maps_shared = shared_map.is_some();
        if let Some(name) = shared_map {
            self.events.push(&Event::SharedFile { tid: cur, name })?;
        }
        if ret > 0 {
            if let Some(flags) = buffers::pending_clone_flags(&p) {
                writes.extend(self.retire_shared_tls_buffer(cur, flags, ret as i32)?);
            }
        }
        let emulated = syscalls::lookup(p.nr)
            .is_some_and(|d| matches!(resolve_request(d, &p.args).0, Class::Recorded));
        if emulated && p.exec_from.is_none() && !p.exec_happened {
            writes.extend(self.mark_writes_traced(cur)?);
            writes.extend(self.bump_fd_gen(cur, p.nr)?);
        } else if maps_shared {
            // The mapping process's own writes to the file are traced from here on, not
            // from its next emulated call: a buffered pwrite right after the mmap (rr's
            // shared_monitor), or a forked child's (its buffer is a copy), would not
            // reach replay's copy of the file.
            writes.extend(self.mark_writes_traced(cur)?);
        }
        writes.extend(filter_writes);
        writes.extend(restart_writes);
        if p.nr == nr::CHAOS_SYSCALLBUF_FLUSH && p.fake_ret.is_some() {
            writes.extend(self.empty_flushed_buffer(cur, p.args[0])?);
        }
        writes.extend(desched_write);
        self.events.push(&Event::Syscall(SyscallEvent {
            // An exec from another thread than the leader is replayed by that thread.
            tid: p.exec_from.unwrap_or(cur),
            nr: p.nr,
            args: p.args,
            ret,
            input_hash: p.input_hash,
            writes,
            file,
        }))?;
        if let Some((name, offset, data)) = shared_write {
            self.events.push(&Event::SharedFileWrite {
                tid: cur,
                name,
                offset,
                data,
            })?;
        }
        for (pid, addr, len) in other_process_writes {
            self.record_write_into(pid, addr, len)?;
        }
        if p.nr == nr::PIDFD_GETFD {
            let threads = &self.threads;
            let table_of = |pid: i32| threads.get(&pid).map_or(pid, |t| t.files);
            self.fd_tables.after_getfd(files, table_of, &p.args, ret);
        }
        let unshared_files = p.nr == nr::UNSHARE && p.args[0] & libc::CLONE_FILES as u64 != 0;
        if (unshared_files || p.exec_happened) && ret == 0 {
            self.own_table(cur);
        }
        if p.exec_happened && ret == 0 {
            // A new image: arm the traps again (exec clears CPUID faulting) and capture it.
            let task = &mut self.threads.get_mut(&cur).expect("thread").task;
            task.reopen_mem();
            let exe = std::fs::read_link(format!("/proc/{cur}/exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let setup = exec::arm_and_capture(task, &mut self.files, &exe, self.syscallbuf)?;
            self.events.push(&Event::Exec(Box::new(setup.state)))?;
        }
        Ok(())
    }
}

/// `struct clone_args`: flags, pidfd, child_tid, parent_tid.
/// Refuses the clone flags the recorder cannot follow.
/// Sets clone's flags register (rdi) to `flags`: CLONE_UNTRACED is taken out at the
/// call's entry and put back at its exit (the new task starts with the flags without
/// it: glibc's clone overwrites that register in the child before the program sees it).
pub(crate) fn untraced_clone(task: &mut Task, flags: u64) -> Result<()> {
    let mut regs = task.regs()?;
    regs.rdi = flags;
    task.set_regs(&regs)
}

/// The namespace flags of clone(2) a recorded program may pass: the new task sees the
/// kernel through new namespaces, and all it sees through calls is recorded. Replay
/// creates the task without them (see `replay::tree`), as it does with `CLONE_UNTRACED`.
pub(crate) const CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWNET) as u64;

pub(super) fn check_clone(flags: u64, clone3: bool) -> Result<()> {
    // Flags the kernel refuses together whatever else is asked: the call fails with
    // EINVAL and is recorded as such (rr's clone_fail passes every flag).
    let refused_together = [
        libc::CLONE_NEWNS | libc::CLONE_FS,
        libc::CLONE_NEWUSER | libc::CLONE_FS,
    ];
    if refused_together
        .iter()
        .any(|&both| flags & both as u64 == both as u64)
    {
        return Ok(());
    }
    if clone3 && flags & CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY != 0 {
        // Replay would have to rewrite the flags in the program's clone_args.
        return Err(Error::Unsupported {
            what: format!("clone3 into new namespaces (flags {flags:#x})"),
            hint: "use clone(2) or unshare(2), whose new namespaces the recorder supports".into(),
        });
    }
    Ok(())
}

/// unshare(2) runs at record and replay gives its result without making it: a new
/// namespace changes what the program's later calls see, and those are recorded (a new
/// pid namespace, for the children the caller creates next: see [`crate::pidns`]).
/// Refused are a new time namespace (for the children it creates) and detached System V
/// semaphore undo lists. A private fd table gets books of its own (see `fd_tables`).
pub(super) fn check_unshare(flags: u64) -> Result<()> {
    let refused = libc::CLONE_NEWTIME | libc::CLONE_SYSVSEM;
    if flags & refused as u64 != 0 {
        return Err(Error::Unsupported {
            what: format!("unshare of a new time namespace or semaphore undo list (flags {flags:#x})"),
            hint: "the recorder keeps books of the program's tasks and clocks that these would change; set up the sandbox outside the recorded program".into(),
        });
    }
    Ok(())
}

/// The namespaces (`CLONE_NEW*` flags) `setns(fd, nstype)` made by task `tid` would
/// join: the type of the namespace file `fd` is, or for a pidfd the flags in
/// `nstype`. Like unshare(2), it runs at record and replay gives its result; joining a
/// pid namespace puts the caller's later children there (their pids are recorded from
/// then on, see [`crate::pidns`]). A time namespace is refused as unshare's is. A call
/// the kernel will refuse (a bad fd) joins nothing.
pub(super) fn setns_joins(tid: i32, args: &[u64; 6]) -> Result<u64> {
    let link = std::fs::read_link(format!("/proc/{tid}/fd/{}", args[0] as i32))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kinds: &[(&str, i32)] = &[
        ("mnt:", libc::CLONE_NEWNS),
        ("uts:", libc::CLONE_NEWUTS),
        ("ipc:", libc::CLONE_NEWIPC),
        ("user:", libc::CLONE_NEWUSER),
        ("pid:", libc::CLONE_NEWPID),
        ("net:", libc::CLONE_NEWNET),
        ("cgroup:", libc::CLONE_NEWCGROUP),
        ("time:", libc::CLONE_NEWTIME),
    ];
    let joined = if link == "anon_inode:[pidfd]" || link.starts_with("pidfd:") {
        args[1] & 0xffff_ffff
    } else {
        kinds
            .iter()
            .find(|(prefix, _)| link.starts_with(prefix))
            .map_or(0, |&(_, flag)| flag as u64)
    };
    if joined & libc::CLONE_NEWTIME as u64 != 0 {
        return Err(Error::Unsupported {
            what: "setns into a time namespace".into(),
            hint: "the recorder keeps books of the program's tasks that this would change; \
                   set up the sandbox outside the recorded program"
                .into(),
        });
    }
    Ok(joined)
}

impl Recorder {
    /// A task `cur` creates lives in pid namespaces of the program's: its pids there
    /// are recorded ([`Event::PidNamespace`], before its `NewTask`) and kept.
    pub(super) fn record_pid_namespaces(&mut self, cur: i32, child: i32) -> Result<()> {
        let (namespaces, pids) =
            crate::pidns::read_levels(child).map_err(|e| Error::Unsupported {
                what: format!("reading the pid namespaces of new task {child}: {e}"),
                hint: "the recorder reads /proc/TID/status and /proc/TID/ns/pid of the tasks \
                       a program creates in pid namespaces of its own"
                    .into(),
            })?;
        if namespaces.is_empty() {
            return Ok(());
        }
        self.pidns.add(child, &namespaces, &pids);
        self.events.push(&Event::PidNamespace {
            tid: cur,
            child,
            namespaces,
            pids,
        })
    }

    /// Refuses a SIGSTOP sent from a task into a pid namespace below its own: the
    /// receiver sees no sender (`si_pid` 0), as for the engine's own SIGSTOPs (the end
    /// of a slice), which it could not tell apart.
    fn check_signal_into_pid_namespace(&self, cur: i32, sysno: u64, args: &[u64; 6]) -> Result<()> {
        let (target, sig) = match sysno {
            nr::KILL => (args[0], args[1]),
            nr::TKILL => (args[0], args[1]),
            nr::TGKILL => (args[1], args[2]),
            _ => return Ok(()),
        };
        if sig != libc::SIGSTOP as u64 {
            return Ok(());
        }
        let Some(target) = i32::try_from(target)
            .ok()
            .filter(|&t| t > 0)
            .and_then(|t| self.pidns.global(cur, t))
        else {
            return Ok(());
        };
        if self.pidns.depth(target) > self.pidns.depth(cur) {
            return Err(Error::Unsupported {
                what: format!(
                    "{} of SIGSTOP into a pid namespace below the sender's",
                    syscalls::name_of(sysno)
                ),
                hint: "the receiver sees such a signal without a sender, like the recorder's \
                       own SIGSTOPs; send it from within the namespace, or another signal"
                    .into(),
            });
        }
        Ok(())
    }
}

pub(super) fn read_clone3(task: &mut Task, addr: u64) -> Result<[u64; 4]> {
    let b = task.read_mem(addr, 32)?;
    let q = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
    Ok([q(0), q(1), q(2), q(3)])
}

/// The thread ids and pidfd clone wrote into the program's memory (CLONE_PARENT_SETTID,
/// CLONE_CHILD_SETTID, CLONE_PIDFD); the child has already reported its first stop, so both writes
/// have happened.
pub(super) fn clone_writes(
    task: &mut Task,
    sysno: u64,
    args: &[u64; 6],
    st: &effects::EntryState,
) -> Result<Vec<crate::trace::MemWrite>> {
    let (flags, ptid, ctid, pidfd) = if sysno == nr::CLONE3 {
        (st.extra[0], st.extra[3], st.extra[2], st.extra[1])
    } else {
        // clone(2) stores the pidfd where the parent's tid would go.
        (args[0], args[2], args[3], args[2])
    };
    let mut w = Vec::new();
    if flags & libc::CLONE_PIDFD as u64 != 0 && pidfd != 0 {
        // The replayed clone makes a pidfd of its own, maybe under another number: the
        // program must see the recorded one (its later uses of it are emulated).
        w.push(crate::trace::MemWrite {
            addr: pidfd,
            data: task.read_mem(pidfd, 4)?,
        });
    }
    if flags & libc::CLONE_PARENT_SETTID as u64 != 0 && ptid != 0 {
        w.push(crate::trace::MemWrite {
            addr: ptid,
            data: task.read_mem(ptid, 4)?,
        });
    }
    if flags & libc::CLONE_CHILD_SETTID as u64 != 0 && ctid != 0 {
        w.push(crate::trace::MemWrite {
            addr: ctid,
            data: task.read_mem(ctid, 4)?,
        });
    }
    Ok(w)
}

pub(super) fn capture_mmap(
    task: &mut Task,
    files: &mut FileStore,
    args: &[u64; 6],
) -> Result<Option<String>> {
    let flags = args[3] as i32;
    if flags & libc::MAP_ANONYMOUS != 0 {
        return Ok(None);
    }
    let fd = args[4] as i32;
    let path = PathBuf::from(format!("/proc/{}/fd/{fd}", task.tid));
    let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
    if is_dev_zero(&meta) {
        // Anonymous memory in effect (shared with the children it forks, for
        // MAP_SHARED): replay maps anonymous memory (see `replay::syscall::redo_mmap`).
        return Ok(None);
    }
    if !meta.is_file() {
        let target = std::fs::read_link(&path)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return Err(Error::Unsupported {
            what: format!("mmap of {target}, which is not a regular file"),
            hint: "device and special-file mappings cannot be replayed".into(),
        });
    }
    // A MAP_SHARED file is captured as it is now; later writes to it are recorded (see
    // `shared_files`).
    Ok(Some(files.capture(&path)?))
}

/// Whether a file is `/dev/zero` (character device 1:5), whose mappings are anonymous
/// memory.
fn is_dev_zero(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 5)
}

pub(super) fn cpu_mask_bytes(cpus: &[usize], len: usize) -> Vec<u8> {
    let mut mask = vec![0u8; len];
    for &c in cpus {
        if c / 8 < len {
            mask[c / 8] |= 1 << (c % 8);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn joins(fd: i32, nstype: i32) -> Result<u64> {
        setns_joins(
            std::process::id() as i32,
            &[fd as u64, nstype as u64, 0, 0, 0, 0],
        )
    }

    #[test]
    fn setns_joins_the_namespace_its_file_or_pidfd_names() {
        let uts = std::fs::File::open("/proc/self/ns/uts").unwrap();
        assert_eq!(
            joins(uts.as_raw_fd(), 0).unwrap(),
            libc::CLONE_NEWUTS as u64
        );
        let pid = std::fs::File::open("/proc/self/ns/pid_for_children").unwrap();
        assert_eq!(
            joins(pid.as_raw_fd(), 0).unwrap(),
            libc::CLONE_NEWPID as u64
        );
        // SAFETY: pidfd_open of our own pid; the fd is closed below.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) } as i32;
        assert!(pidfd >= 0);
        let flags = libc::CLONE_NEWNET | libc::CLONE_NEWPID;
        assert_eq!(joins(pidfd, flags).unwrap(), flags as u64);
        // SAFETY: our own fd.
        unsafe { libc::close(pidfd) };
        let time = std::fs::File::open("/proc/self/ns/time").unwrap();
        let refused = joins(time.as_raw_fd(), 0).unwrap_err().to_string();
        assert!(refused.contains("time namespace"), "{refused}");
        assert_eq!(joins(-1, 0).unwrap(), 0, "a bad fd joins nothing");
    }
}
