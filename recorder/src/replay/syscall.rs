//! Syscall events at replay: emulated calls get the recorded result and memory, the
//! calls that shape the address space or the task tree run for real (mmap and brk
//! redone by injection at the recorded address, execve redone as an exec of the stub),
//! and the checks of each call against its event.

use super::signal::temporary_mask;
use super::tree::reap;
use super::*;
use crate::pidns::PidNamespaces;

impl Replayer<'_> {
    /// The fork-family call of an earlier [`Event::NewTask`] returns.
    pub(super) fn finish_fork(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        th: &mut RThread,
    ) -> Result<Step> {
        let (nr, args, in_kernel) = th.in_fork.take().expect("checked by the caller");
        th.kernel_stack = None;
        if s.nr != nr || s.args != args {
            return Err(self.diverge(ev, format!("made syscall {}", describe_call(nr, &args))));
        }
        if !in_kernel {
            th.task.resume(Resume::Syscall, 0)?;
        }
        match th.task.wait_skipping_sigchld()?.0 {
            Stop::Syscall => {}
            other => {
                return Err(self.diverge(
                    ev,
                    format!("stopped with {other:?} in {}", syscalls::name_of(nr)),
                ))
            }
        }
        let left_out =
            libc::CLONE_UNTRACED as u64 | crate::record::CLONE_NAMESPACES_LEFT_OUT_AT_REPLAY;
        if nr == nr::CLONE && args[0] & left_out != 0 {
            crate::record::untraced_clone(&mut th.task, args[0])?;
        }
        for w in &s.writes {
            th.task.write_mem(w.addr, &w.data)?;
        }
        th.task.set_rax(s.ret as u64)?;
        Ok(Step::Done)
    }

    /// The program execs: cancel its execve (it would load the host's files) and exec
    /// the stub instead; the [`Event::Exec`] that follows rebuilds the recorded image.
    ///
    /// The stub's exec ends the process's other threads, as the program's did at
    /// record. From a thread other than the leader, the exec'ing thread takes the
    /// leader's tid: the result is then [`Step::Became`] the leader's recorded tid.
    pub(super) fn exec_stub(&mut self, ev: &Event, th: &mut RThread) -> Result<Step> {
        th.task.set_orig_rax(u64::MAX)?;
        self.run_to_exit(ev, &th.task)?;
        // The exec ends the other threads, and drops the exec'ing thread's robust list
        // after it took the leader's tid: the kernel's owner-died marking, redone with
        // the recorded tids (it matters for futexes in memory shared with others).
        let tgid = th.tgid;
        for (tid, other) in self.threads.iter_mut() {
            if other.tgid == tgid {
                robust::owner_died(&mut other.task, self.pidns.own(*tid))?;
            }
        }
        robust::owner_died(&mut th.task, self.pidns.own(tgid))?;
        let mut regs = th.task.regs()?;
        let mut path = std::os::unix::ffi::OsStrExt::as_bytes(self.stub_path.as_os_str()).to_vec();
        path.push(0);
        // Below the red zone, on the old image's stack, which is about to go anyway.
        let at = (regs.rsp - 8192) & !15;
        th.task.write_mem(at, &path)?;
        let argv = (at + path.len() as u64 + 15) & !15;
        th.task.write_mem(argv, &[0u8; 16])?;
        regs.rip -= 2;
        regs.rax = libc::SYS_execve as u64;
        regs.rdi = at;
        regs.rsi = argv;
        regs.rdx = argv;
        th.task.set_regs(&regs)?;
        th.task.resume(Resume::Syscall, 0)?;
        let mut saw_exec = false;
        let mut became = None;
        let mut entered = false;
        loop {
            match th.task.wait_skipping_sigchld()?.0 {
                Stop::Event(libc::PTRACE_EVENT_EXEC) => saw_exec = true,
                Stop::Syscall => match th.task.syscall_stop()? {
                    SyscallStop::Exit { ret, .. } => {
                        if !saw_exec || ret != 0 {
                            return Err(
                                self.diverge(ev, format!("could not exec the replay stub ({ret})"))
                            );
                        }
                        break;
                    }
                    SyscallStop::Entry { .. } if !entered => {
                        // Into the exec, which ends the process's other threads.
                        entered = true;
                        th.task.resume(Resume::Syscall, 0)?;
                        became = self.end_other_threads(ev, th)?;
                        continue;
                    }
                    _ => {}
                },
                other => {
                    return Err(self.diverge(
                        ev,
                        format!("stopped with {other:?} while exec'ing the stub"),
                    ))
                }
            }
            th.task.resume(Resume::Syscall, 0)?;
        }
        th.task.reopen_mem();
        Ok(match became {
            Some(leader) => Step::Became(leader),
            None => Step::Done,
        })
    }

    /// A call the program's own seccomp filters answered at record ([`Event::Filtered`]):
    /// skipped here too (a SYSEMU stop), with the same verdict applied (see
    /// [`crate::program_filter`]); the `SIGSYS` of a trap or a kill is the `Signal`
    /// event that follows.
    pub(super) fn on_filtered(
        &mut self,
        ev: &Event,
        sysno: u64,
        args: [u64; 6],
        th: &mut RThread,
    ) -> Result<Step> {
        let Event::Filtered {
            nr,
            args: rargs,
            rip,
            verdict,
            ..
        } = *ev
        else {
            unreachable!("checked by the caller");
        };
        (self.observer)(th.task.tid, self.index);
        if nr != sysno || rargs != args {
            return Err(self.diverge(ev, format!("made syscall {}", describe_call(sysno, &args))));
        }
        let at = th.task.regs()?.rip;
        if at != rip {
            return Err(self.diverge(ev, format!("made it at {at:#x}")));
        }
        use crate::program_filter::{force_default_sigsys, Verdict};
        // A thread killed alone is refused at record: a kill there ended the process.
        match Verdict::from_ret(verdict, 1) {
            Verdict::Fail(ret) => th.task.set_rax(ret as u64)?,
            Verdict::Trap(_) => {
                th.task.set_rax(sysno)?;
                force_default_sigsys(&mut th.task, false)?;
            }
            Verdict::KillProcess(_) => {
                th.task.set_rax(sysno)?;
                force_default_sigsys(&mut th.task, true)?;
            }
            other => {
                return Err(Error::BadTrace {
                    path: self.trace.path.clone(),
                    reason: format!(
                        "event {} holds a seccomp verdict that is never recorded ({other:?})",
                        self.index
                    ),
                })
            }
        }
        Ok(Step::Done)
    }

    pub(super) fn on_syscall(
        &mut self,
        ev: &Event,
        sysno: u64,
        args: [u64; 6],
        th: &mut RThread,
    ) -> Result<Step> {
        let Event::Syscall(s) = ev else {
            return Err(self.diverge(ev, format!("made syscall {}", describe_call(sysno, &args))));
        };
        (self.observer)(th.task.tid, self.index);
        if s.nr != sysno || s.args != args {
            return Err(self.diverge(ev, format!("made syscall {}", describe_call(sysno, &args))));
        }
        let Some(desc) = syscalls::lookup(sysno) else {
            // A number the kernel does not have: ENOSYS at record, injected here (the
            // trace's checks allow nothing else for such a number).
            th.task.set_rax(s.ret as u64)?;
            return Ok(Step::Done);
        };
        let hash = syscalls::input_hash(&mut th.task, desc, &args)?;
        if hash != s.input_hash {
            return Err(self.diverge(
                ev,
                format!(
                    "passed different data to {} (input hash {hash:#x}, recorded {:#x})",
                    desc.name, s.input_hash
                ),
            ));
        }
        th.temporary_mask = temporary_mask(&mut th.task, sysno, &args, s.ret)?;
        if runs_at_replay(s) {
            let step = self.execute(ev, s, th)?;
            if matches!(sysno, nr::RT_SIGPROCMASK | nr::RT_SIGRETURN) {
                th.segv_blocked = crate::record::signal::blocks_segv(&th.task)?;
            }
            return Ok(step);
        }
        if s.ret >= 0 {
            if let (Some(kind), Some(stream)) = (
                OutputFds::write_kind(sysno),
                self.fd_tables.stream(th.files, args[0]),
            ) {
                let data = crate::output::written_bytes(&mut th.task, kind, &args, s.ret)?;
                (self.sink)(stream, &data);
            }
        }
        for w in &s.writes {
            th.task.write_mem(w.addr, &w.data)?;
        }
        self.note_shmget(s);
        self.forget_mapped_fds(th.files, s, &mut th.task)?;
        if let Some(soft) = new_stack_limit(&mut th.task, s, th.tgid)? {
            // Not only recorded: the stack's growth depends on it (a program that
            // lowers it and overflows its stack must do so at the same depth).
            super::rebuild::set_stack_limit(&mut th.task, soft)?;
        }
        if sysno == nr::PRCTL && args[0] == libc::PR_SET_NAME as u64 && s.ret == 0 {
            // Emulated, but the kernel's name of the thread is what a debugger shows
            // (/proc/PID/task/TID/comm): set it too.
            crate::inject::inject_syscall(&mut th.task, STUB_SYSCALL, sysno, &args[..2])?;
        }
        th.task.set_rax(s.ret as u64)?;
        if crate::kernel::restart::is_restart(s.ret) {
            // Interrupted by a signal at record. Unless a handler ran next (a signal
            // event of this thread follows, and the kernel decides again at replay) or
            // the interruption was a preemption (its point is this exit, and the
            // restart happens once it is found), the kernel restarted the call on the
            // way back to user mode: do that here, where no signal is pending to make
            // the kernel do it.
            let regs = th.task.regs()?;
            if restarts_now(self.next_of_thread(s.tid)?, &regs) {
                if let Some(r) = crate::preempt::restart_after_stop(&regs) {
                    th.task.set_regs(&r)?;
                }
            }
        }
        self.fd_tables.after_syscall(th.files, sysno, &args, s.ret);
        if sysno == nr::PIDFD_GETFD {
            let threads = &self.threads;
            let table_of = |pid: i32| threads.get(&pid).map_or(pid, |t| t.files);
            self.fd_tables.after_getfd(th.files, table_of, &args, s.ret);
        }
        if sysno == nr::UNSHARE && args[0] & libc::CLONE_FILES as u64 != 0 && s.ret == 0 {
            self.own_table(th);
        }
        if th.tgid != self.leader && self.kills_own_process(s, th.tgid) {
            // It killed its own process, which ended there at record (the call never
            // came back; see the recorder's `kills_own_process`).
            return self.end_own_kill(s.tid, th);
        }
        if let Some(victim) = sigkilled_process(s, &self.pidns) {
            if victim != th.tgid && victim != self.leader {
                self.sigkilled.insert(victim);
            }
        }
        if let Some(dead) = reaped_child(s, &self.pidns) {
            if self.sigkilled.remove(&dead) {
                self.end_killed(dead)?;
            }
        }
        Ok(Step::Done)
    }

    /// Runs a call of the "executed at replay" class. The task is at a real (non-SYSEMU)
    /// entry stop; on return it is at the call's exit stop with the recorded result.
    pub(super) fn execute(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        th: &mut RThread,
    ) -> Result<Step> {
        match s.nr {
            nr::EXIT_GROUP | nr::EXIT => {
                self.robust_cleanup(s, th)?;
                th.task.resume(Resume::Syscall, 0)?;
                let tgid = th.tgid;
                let others = self.threads.values().filter(|t| t.tgid == tgid).count();
                if s.nr == nr::EXIT_GROUP || others == 0 {
                    // A leader's end is reported only after its other threads are
                    // collected: those first.
                    self.reap_followers(tgid);
                    let stop = if s.tid == tgid {
                        reap(&th.task)
                    } else {
                        reap(&th.task);
                        match (self.threads.remove(&tgid), self.zombies.remove(&tgid)) {
                            (Some(x), _) => reap(&x.task),
                            (None, Some(z)) => reap(&z),
                            (None, None) => Stop::Exited(0),
                        }
                    };
                    if tgid == self.leader {
                        self.reap_all(self.leader, stop);
                    } else {
                        self.forget_process(tgid);
                        self.end_namespace_of(tgid)?;
                    }
                } else if s.tid == tgid {
                    // A process leader stays a zombie until its other threads are gone.
                    self.zombies.insert(tgid, Task::new(th.task.tid));
                    crate::tree::wait_until_zombie(th.task.tid);
                } else {
                    reap(&th.task);
                }
                return Ok(Step::Gone);
            }
            nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK => {
                return Err(self.diverge(
                    ev,
                    "created a task without the recorded new-task event".into(),
                ));
            }
            nr::EXECVE | nr::EXECVEAT => return self.exec_stub(ev, th),
            nr::SHMAT | nr::SHMDT => {
                // Cancel the call; the segment is a file at replay (see `sysv_shm`).
                th.task.set_orig_rax(u64::MAX)?;
                self.run_to_exit(ev, &th.task)?;
                if s.nr == nr::SHMAT {
                    self.redo_shmat(ev, s, &mut th.task)?;
                    if !self.bps.is_empty() {
                        let start = s.ret as u64;
                        let end = start.saturating_add(s.args[1]);
                        self.bps.remapped(th.tgid, start, end, &mut th.task)?;
                    }
                } else {
                    self.redo_shmdt(ev, s, &mut th.task)?;
                }
                th.task.set_rax(s.ret as u64)?;
                return Ok(Step::Done);
            }
            nr::MMAP | nr::BRK => {
                // Cancel the call, then do what it did at record time by injection.
                th.task.set_orig_rax(u64::MAX)?;
                self.run_to_exit(ev, &th.task)?;
                if s.nr == nr::MMAP {
                    let shared = th.next_shared.take();
                    self.redo_mmap(ev, s, &mut th.task, th.files, shared)?;
                    if !self.bps.is_empty() && s.ret >= 0 {
                        let start = s.ret as u64;
                        let end = start.saturating_add(s.args[1]);
                        self.bps.remapped(th.tgid, start, end, &mut th.task)?;
                    }
                } else {
                    self.redo_brk(th.tgid, s.ret as u64, &mut th.task)?;
                }
                // An mmap that mapped a file shared marked the process's syscall
                // buffers at record (writes are traced from then on).
                for w in &s.writes {
                    th.task.write_mem(w.addr, &w.data)?;
                }
                th.task.set_rax(s.ret as u64)?;
                return Ok(Step::Done);
            }
            _ => {}
        }
        let saved = th.task.regs()?;
        if s.nr == nr::MREMAP && s.ret >= 0 && s.ret as u64 != s.args[0] {
            // It moved at record time: make it move to the same place.
            let mut r = saved;
            r.r10 |= (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
            r.r8 = s.ret as u64;
            th.task.set_regs(&r)?;
        }
        let got = self.run_to_exit(ev, &th.task)?;
        if got != s.ret && compares_result(s.nr) {
            return Err(self.diverge(ev, format!("got {got} from it at replay")));
        }
        if s.nr == nr::RT_SIGRETURN {
            return Ok(Step::Done);
        }
        if s.nr == nr::MREMAP && s.ret >= 0 && !self.bps.is_empty() {
            let start = s.ret as u64;
            let end = start.saturating_add(s.args[2]);
            self.bps.remapped(th.tgid, start, end, &mut th.task)?;
        }
        let mut r = th.task.regs()?;
        crate::arch::set_syscall_args(&mut r, &crate::arch::syscall_args(&saved));
        r.rax = s.ret as u64;
        th.task.set_regs(&r)?;
        Ok(Step::Done)
    }

    /// Thread `th` ends (`exit`), or its whole process (`exit_group`): the kernel's
    /// owner-died marking of the robust futexes each ending thread owns is done here,
    /// with the recorded tids (see [`robust`]).
    pub(super) fn robust_cleanup(&mut self, s: &SyscallEvent, th: &mut RThread) -> Result<()> {
        robust::owner_died(&mut th.task, self.pidns.own(s.tid))?;
        if s.nr == nr::EXIT_GROUP {
            let tgid = th.tgid;
            for (tid, other) in self.threads.iter_mut() {
                if other.tgid == tgid {
                    match robust::owner_died(&mut other.task, self.pidns.own(*tid)) {
                        Ok(_) | Err(Error::TaskGone { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn run_to_exit(&self, ev: &Event, task: &Task) -> Result<i64> {
        task.resume(Resume::Syscall, 0)?;
        match task.wait_skipping_sigchld()?.0 {
            Stop::Syscall => match task.syscall_stop()? {
                SyscallStop::Exit { ret, .. } => Ok(ret),
                other => Err(self.diverge(ev, format!("stopped at {other:?}"))),
            },
            other => Err(self.diverge(ev, format!("stopped with {other:?} inside it"))),
        }
    }

    pub(super) fn redo_mmap(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        task: &mut Task,
        files: i32,
        shared: Option<String>,
    ) -> Result<()> {
        if s.ret < 0 {
            return Ok(());
        }
        let [_, len, prot, flags, _, off] = s.args;
        let addr = s.ret as u64;
        if crate::address_space::overlaps_stub(addr, addr.saturating_add(len)) {
            return Err(stub_conflict(addr));
        }
        let base_flags = (flags as i32 & !libc::MAP_FIXED_NOREPLACE) | libc::MAP_FIXED;
        let got = match &s.file {
            Some(hash) => {
                let private = (base_flags & !libc::MAP_SHARED & !libc::MAP_SHARED_VALIDATE)
                    | libc::MAP_PRIVATE;
                let (fd, flags, keep) = match shared {
                    // A file the program changes while it maps it: its copy (mapped
                    // privately if the program did, see `record::shared_files`).
                    Some(name) => (self.open_shared_copy(&name, hash, task)?, base_flags, false),
                    None => (
                        self.trace_file_for(hash, s.args[4], files, task)?,
                        private,
                        true,
                    ),
                };
                let got = inject(
                    task,
                    libc::SYS_mmap,
                    &[addr, len, prot, flags as u64, fd as u64, off],
                );
                if !keep {
                    inject(task, libc::SYS_close, &[fd as u64])?;
                }
                got?
            }
            // Anonymous memory, or a mapping of /dev/zero, which is the same.
            None => inject(
                task,
                libc::SYS_mmap,
                &[
                    addr,
                    len,
                    prot,
                    (base_flags | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
            )?,
        };
        if got != s.ret {
            return Err(self.diverge(ev, format!("could not map it at replay ({got})")));
        }
        Ok(())
    }

    /// The captured file `hash` opened in process `tgid` for a private mapping the
    /// program made from its fd `fd`: opened once per recorded fd and kept open (until
    /// the program closes that fd, or execs), so that mappings made from one open file
    /// are of one open file at replay too. The kernel merges adjacent mappings of the
    /// same open file into one area, and an mremap across them works only then (rr's
    /// mremap_after_coalesce).
    fn trace_file_for(&mut self, hash: &str, fd: u64, files: i32, task: &mut Task) -> Result<i64> {
        let key = (files, fd as i32);
        if let Some((h, ours)) = self.mapped_fds.get(&key) {
            if h == hash {
                return Ok(*ours);
            }
        }
        let ours = self.open_trace_file(hash, task)?;
        if let Some((_, old)) = self.mapped_fds.insert(key, (hash.to_string(), ours)) {
            inject(task, libc::SYS_close, &[old as u64])?;
        }
        Ok(ours)
    }

    /// After a recorded call made with fd table `files`: the files kept open for its mappings
    /// whose recorded fd it closed (or replaced) are closed too.
    pub(super) fn forget_mapped_fds(
        &mut self,
        files: i32,
        s: &SyscallEvent,
        task: &mut Task,
    ) -> Result<()> {
        if self.mapped_fds.is_empty() || s.ret < 0 {
            return Ok(());
        }
        let gone = |fd: i32| match s.nr {
            nr::CLOSE => fd as u64 == s.args[0],
            nr::DUP2 | nr::DUP3 => fd as u64 == s.args[1],
            nr::CLOSE_RANGE => (s.args[0]..=s.args[1]).contains(&(fd as u64)),
            _ => false,
        };
        let closed: Vec<(i32, i32)> = self
            .mapped_fds
            .keys()
            .filter(|(t, fd)| *t == files && gone(*fd))
            .copied()
            .collect();
        for key in closed {
            if let Some((_, ours)) = self.mapped_fds.remove(&key) {
                inject(task, libc::SYS_close, &[ours as u64])?;
            }
        }
        Ok(())
    }

    pub(super) fn open_trace_file(&mut self, hash: &str, task: &mut Task) -> Result<i64> {
        let path = self.trace.mappable_path(hash, self.scratch())?;
        Self::open_in(task, &path, libc::O_RDONLY | libc::O_NOFOLLOW)
    }

    /// The writable copy of shared-mapped file `name` (made from its capture `hash` the
    /// first time), opened in `task`.
    pub(super) fn open_shared_copy(
        &mut self,
        name: &str,
        hash: &str,
        task: &mut Task,
    ) -> Result<i64> {
        let path = match self.shared_copies.get(name) {
            Some(p) => p.clone(),
            None => {
                let to = self
                    .scratch()
                    .join(format!("shared-{}", self.shared_copies.len()));
                self.trace.copy_captured(hash, &to)?;
                self.shared_copies.insert(name.to_string(), to.clone());
                to
            }
        };
        Self::open_in(task, &path, libc::O_RDWR)
    }

    /// Replays a write-family call's change to a shared-mapped file.
    pub(super) fn write_shared(
        &mut self,
        ev: &Event,
        name: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let Some(path) = self.shared_copies.get(name) else {
            return Err(self.diverge(ev, format!("{name} was never mapped at replay")));
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        std::os::unix::fs::FileExt::write_all_at(&f, data, offset).map_err(|e| Error::io(path, e))
    }

    /// Opens `path` in `task` (an injected openat with `flags | O_CLOEXEC`).
    pub(super) fn open_in(task: &mut Task, path: &Path, flags: i32) -> Result<i64> {
        let mut bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        bytes.push(0);
        task.write_mem(STUB_SCRATCH, &bytes)?;
        let fd = inject(
            task,
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as u64,
                STUB_SCRATCH,
                (flags | libc::O_CLOEXEC) as u64,
            ],
        )?;
        if fd < 0 {
            return Err(Error::io(
                path,
                std::io::Error::from_raw_os_error(-fd as i32),
            ));
        }
        Ok(fd)
    }

    /// The kernel's brk area at replay is not where it was at record; brk is replayed as
    /// anonymous mappings at the recorded addresses.
    pub(super) fn redo_brk(&mut self, tgid: i32, new: u64, task: &mut Task) -> Result<()> {
        let page = |x: u64| x.saturating_add(4095) & !4095;
        let old = self.brk.get(&tgid).copied().unwrap_or(new);
        let (old_end, new_end) = (page(old), page(new));
        if new_end > old_end {
            let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
            let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
            let got = inject(
                task,
                libc::SYS_mmap,
                &[old_end, new_end - old_end, prot, flags, u64::MAX, 0],
            )?;
            if got as u64 != old_end {
                return Err(Error::Unsupported {
                    what: format!("cannot grow the heap at replay ({got})"),
                    hint: "report this as a bug".into(),
                });
            }
        } else if new_end < old_end {
            inject(task, libc::SYS_munmap, &[new_end, old_end - new_end])?;
        }
        if new != 0 {
            self.brk.insert(tgid, new);
        }
        Ok(())
    }
}

/// The RLIMIT_STACK soft limit a successful `setrlimit`/`prlimit64` of the calling
/// process (`tgid`, as recorded) set, read from the program's own argument.
fn new_stack_limit(task: &mut Task, s: &SyscallEvent, tgid: i32) -> Result<Option<u64>> {
    let stack = libc::RLIMIT_STACK as u64;
    let ptr = match s.nr {
        nr::SETRLIMIT if s.args[0] == stack => s.args[1],
        nr::PRLIMIT64 if s.args[1] == stack && (s.args[0] == 0 || s.args[0] as i32 == tgid) => {
            s.args[2]
        }
        _ => return Ok(None),
    };
    if s.ret != 0 || ptr == 0 {
        return Ok(None);
    }
    let b = task.read_mem(ptr, 8)?;
    Ok(Some(u64::from_le_bytes(b.try_into().expect("8 bytes"))))
}

pub(super) fn inject(task: &mut Task, nr: i64, args: &[u64]) -> Result<i64> {
    inject_syscall(task, STUB_SYSCALL, nr as u64, args)
}

pub(super) fn stub_conflict(addr: u64) -> Error {
    Error::Unsupported {
        what: format!(
            "the recording mapped memory at {addr:#x}, inside the replayer's reserved range"
        ),
        hint: "this program cannot be replayed by this version".into(),
    }
}

impl Replayer<'_> {
    /// A process other than the main one sent SIGKILL to itself (its kill, tgkill or tkill
    /// event, written at entry): end it now, as at record. Its robust futexes are marked
    /// with the recorded tids first; its death clears its CLONE_CHILD_CLEARTID word and
    /// wakes that futex, which the processes that share its memory see next.
    fn end_own_kill(&mut self, recorded: i32, th: &mut RThread) -> Result<Step> {
        // With the others of its process, all killed at once (the leader is collected
        // last, once the others are gone).
        let tgid = th.tgid;
        self.threads
            .insert(recorded, RThread::new(Task::new(th.task.tid), tgid));
        self.end_killed(tgid)?;
        self.forget_process(tgid);
        Ok(Step::Gone)
    }

    /// Whether a successful kill, tgkill or tkill sent SIGKILL to the caller's own
    /// process (`tgid`, recorded).
    fn kills_own_process(&self, s: &SyscallEvent, tgid: i32) -> bool {
        // The caller named them in its own pid namespace.
        let global = |pid: u64| {
            i32::try_from(pid)
                .ok()
                .filter(|&p| p > 0)
                .and_then(|p| self.pidns.global(s.tid, p))
        };
        let is_tgid = |pid: u64| global(pid) == Some(tgid);
        let member = |tid: u64| {
            global(tid)
                .is_some_and(|t| t == s.tid || self.threads.get(&t).is_some_and(|x| x.tgid == tgid))
        };
        let sigkill = libc::SIGKILL as u64;
        s.ret == 0
            && match s.nr {
                nr::KILL => is_tgid(s.args[0]) && s.args[1] == sigkill,
                nr::TGKILL => is_tgid(s.args[0]) && member(s.args[1]) && s.args[2] == sigkill,
                nr::TKILL => member(s.args[0]) && s.args[1] == sigkill,
                _ => false,
            }
    }
}

/// The process a successful `kill(pid, SIGKILL)` or `tgkill(tgid, tid, SIGKILL)` ended,
/// by its recorded tgid (the caller named it in its own pid namespace).
pub(super) fn sigkilled_process(s: &SyscallEvent, pidns: &PidNamespaces) -> Option<i32> {
    let (target, sig) = match s.nr {
        nr::KILL => (s.args[0] as i32, s.args[1] as i32),
        nr::TGKILL => (s.args[0] as i32, s.args[2] as i32),
        _ => return None,
    };
    (s.ret == 0 && sig == libc::SIGKILL && target > 0)
        .then(|| pidns.global(s.tid, target))
        .flatten()
}

/// The child a wait-family call reaped: wait4's result, or waitid's `si_pid` (from the
/// siginfo it wrote) unless it only looked (`WNOWAIT`); by its recorded tid (the caller
/// saw its pid in its own pid namespace).
pub(super) fn reaped_child(s: &SyscallEvent, pidns: &PidNamespaces) -> Option<i32> {
    let pid = match s.nr {
        nr::WAIT4 if s.ret > 0 => s.ret as i32,
        nr::WAITID if s.ret == 0 && s.args[3] & libc::WNOWAIT as u64 == 0 => {
            let info = s.writes.iter().find(|w| w.addr == s.args[2])?;
            let pid = info.data.get(16..20)?;
            Some(i32::from_le_bytes(pid.try_into().ok()?)).filter(|&p| p > 0)?
        }
        _ => return None,
    };
    pidns.global(s.tid, pid)
}

/// Whether a recorded syscall runs for real at replay (otherwise it is emulated).
pub(super) fn runs_at_replay(s: &SyscallEvent) -> bool {
    let Some(desc) = syscalls::lookup(s.nr) else {
        return false;
    };
    let creates_task = matches!(s.nr, nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK);
    let sysv_shm = matches!(s.nr, nr::SHMAT | nr::SHMDT);
    if desc.answer.is_some() || ((syscalls::is_exec(s.nr) || creates_task || sysv_shm) && s.ret < 0)
    {
        // A failed execve or clone changed nothing: its error is injected like any
        // result (a clone that failed has no new-task event to follow).
        return false;
    }
    let (class, _, _) = syscalls::resolve_request(desc, &s.args);
    matches!(class, Class::Executed)
}

/// Whether an executed call must return at replay what it returned at record (its
/// row's `same_result`).
pub(super) fn compares_result(sysno: u64) -> bool {
    syscalls::lookup(sysno).map_or(true, |d| d.same_result)
}

pub(super) fn describe_call(sysno: u64, args: &[u64; 6]) -> String {
    let a: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
    format!("{}({})", syscalls::name_of(sysno), a.join(", "))
}

/// Whether the kernel restarted an interrupted call (the thread at its exit, `regs`,
/// with the restart code as its result) right away at record, given the thread's next
/// recorded event: not when a signal handler ran next (the kernel decides again at
/// replay), nor when the interruption was the watchdog's SIGSTOP and the thread was
/// preempted at this exit (the point is found first, and the restart done then, see
/// `preempt::restart_after_stop`).
fn restarts_now(next: Option<&Event>, regs: &crate::ptrace::Regs) -> bool {
    match next {
        Some(Event::Signal { .. }) => false,
        Some(Event::Preempted { state, .. } | Event::Preempt { state, .. }) => {
            // The point is this exit: its rip and the interrupted result.
            let now = crate::preempt::comparable(regs);
            !(now.get(16) == state.regs.get(16) && now.get(10) == state.regs.get(10))
        }
        _ => true,
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;
    use crate::preempt::PreemptState;
    use crate::trace::Event;

    fn at_exit(rax: i64) -> crate::ptrace::Regs {
        // SAFETY: plain integers.
        let mut r: crate::ptrace::Regs = unsafe { std::mem::zeroed() };
        r.rip = 0x7fff_0000_1016;
        r.orig_rax = 202;
        r.rax = rax as u64;
        r
    }

    fn preempted(regs: &crate::ptrace::Regs) -> Event {
        Event::Preempt {
            tid: 7,
            state: Box::new(PreemptState {
                regs: crate::preempt::comparable(regs),
                fpu_hash: 0,
                stack_hash: 0,
                memory_hash: 0,
            }),
        }
    }

    #[test]
    fn a_call_interrupted_by_a_preemption_restarts_at_the_point() {
        let regs = at_exit(crate::kernel::restart::ERESTARTSYS);
        // The watchdog's SIGSTOP interrupted the futex wait; the thread was preempted
        // at its exit (libtest's join, bench of issue 13): restarting it now would put
        // the thread before the syscall instruction, and the point is never reached.
        assert!(!restarts_now(Some(&preempted(&regs)), &regs));
        // A point elsewhere: the kernel had restarted the call first.
        let mut later = regs;
        later.rip += 0x40;
        assert!(restarts_now(Some(&preempted(&later)), &regs));
        assert!(restarts_now(None, &regs));
    }
}
