//! Stopping a recording from outside: Ctrl-C and the time limit (`Interrupter`,
//! the timeout `Watchdog`), and ending the recording cleanly when either comes: the
//! calls already finished in the kernel written down, then the tree killed.

use super::*;

impl Recorder {
    /// Whether the signal `tid` stopped with came from the terminal (Ctrl-C: the tty
    /// driver sends it with `SI_KERNEL`, to the recording's first process group; a
    /// program's own `kill` says `SI_USER`).
    pub(super) fn signal_is_from_terminal(&self, tid: i32) -> bool {
        self.threads
            .get(&tid)
            .and_then(|t| t.task.siginfo().ok())
            .is_some_and(|si| si.si_code == libc::SI_KERNEL)
            && self.in_first_group(tid)
    }

    /// Ends a recording that was asked to stop (Ctrl-C, time limit); `tid` just reported
    /// `stop`. Blocking calls that finished in the kernel did happen (their bytes may be
    /// on the terminal already): they are written down before the tree is killed.
    pub(super) fn end_interrupted(&mut self, tid: i32, stop: Stop) -> Result<ExitKind> {
        // The calls the running thread buffered since its last stop happened (a write
        // may be in a file already): into the trace first. Best effort, the recording
        // ends either way.
        if let Err(e) = self.flush_buffer(tid) {
            tracing::debug!("syscall buffer of thread {tid} not read at the end: {e}");
        }
        if let (Stop::Syscall, Some(t)) = (&stop, self.threads.get_mut(&tid)) {
            if t.state == Where::Blocked {
                if let Ok(SyscallStop::Exit { ret, rip }) = t.task.syscall_stop() {
                    t.state = Where::Unblocked(ret);
                    t.exit_rip = Some(rip);
                }
            }
        }
        // A blocked call may have finished in the kernel without its exit stop being seen
        // yet (its bytes can already be on the terminal). Stop every such thread: each
        // reports its call's exit first, finished or cut short.
        let blocked: Vec<(i32, i32)> = self
            .threads
            .iter()
            .filter(|(_, t)| t.state == Where::Blocked)
            .map(|(tid, t)| (*tid, t.tgid))
            .collect();
        for &(tid, tgid) in &blocked {
            // SAFETY: plain syscall to our own tracee.
            unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, libc::SIGSTOP) };
        }
        // Collect what they report, for a bounded time: a task in an uninterruptible
        // wait (a vfork parent) does not stop for SIGSTOP, and a dying process reports
        // its leader only after its other threads.
        let mut waiting: HashSet<i32> = blocked.iter().map(|b| b.0).collect();
        let deadline = std::time::Instant::now() + STOP_COLLECT;
        while !waiting.is_empty() && std::time::Instant::now() < deadline {
            match crate::ptrace::try_wait_own() {
                Ok(Some((tid, Stop::Syscall))) => {
                    if waiting.remove(&tid) {
                        if let Some(t) = self.threads.get_mut(&tid) {
                            if let Ok(SyscallStop::Exit { ret, rip }) = t.task.syscall_stop() {
                                t.state = Where::Unblocked(ret);
                                t.exit_rip = Some(rip);
                            }
                        }
                    }
                }
                Ok(Some((tid, Stop::Exited(_) | Stop::Killed(_)))) => {
                    // Collected by this wait: kill_all must not wait for it again.
                    waiting.remove(&tid);
                    self.threads.remove(&tid);
                    self.zombies.remove(&tid);
                }
                Ok(Some(_)) => {}
                Ok(None) => std::thread::sleep(std::time::Duration::from_micros(200)),
                Err(_) => break,
            }
        }
        let finished: Vec<(i32, i64)> = self
            .threads
            .iter()
            .filter_map(|(tid, t)| match t.state {
                // ERESTART*: the call was cut short by our stop, it did not finish.
                Where::Unblocked(ret) if !crate::kernel::restart::is_restart(ret) => {
                    Some((*tid, ret))
                }
                _ => None,
            })
            .collect();
        for (tid, ret) in finished {
            if let Some(t) = self.threads.get_mut(&tid) {
                t.state = Where::Ready(0);
            }
            // Best effort: a task may be gone already.
            if let Err(e) = self.on_exit(tid, ret) {
                tracing::debug!("cannot write down thread {tid}'s last call: {e}");
            }
        }
        self.kill_all();
        let how = ExitKind::Signaled(libc::SIGKILL);
        self.events.push(&Event::Exit {
            tid: self.leader,
            how,
        })?;
        self.events.flush();
        Ok(how)
    }
}

/// How long an interrupted recording waits for its blocked threads to report whether
/// their calls finished.
pub(super) const STOP_COLLECT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long an interrupted recording may take to write down its last calls before the
/// tree is killed regardless.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Stops a running recording from another thread (Ctrl-C, a time limit). The trace is
/// kept, marked with the reason, and replays up to the point where it was stopped.
#[derive(Debug, Default)]
pub struct Interrupter {
    state: std::sync::Mutex<(Option<i32>, Option<Outcome>)>,
    /// Set with the outcome: the engine checks it at every stop, without the lock.
    asked: std::sync::atomic::AtomicBool,
    /// Every task id the recording has had, kept after the task is gone: a signal's
    /// sender may have exited by the time its signal is looked at. Shared with the
    /// interrupters made by [`Interrupter::sharing_members`].
    members: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i32>>>,
}

impl Interrupter {
    /// A new, unarmed interrupter.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// A new, unarmed interrupter whose tasks count as members of this one too (and
    /// the other way round): for a series of recordings (a flake hunt's runs) where a
    /// signal from any of them, even one that ended already, is to be told apart from
    /// one sent from outside.
    pub fn sharing_members(&self) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            members: std::sync::Arc::clone(&self.members),
            ..Self::default()
        })
    }

    /// Stops the recording (if one is running) and marks it with `why`
    /// ([`Outcome::Interrupted`] or [`Outcome::TimedOut`]).
    ///
    /// The first request stops the program (SIGSTOP), so that the engine can still write
    /// down the calls that finished in the kernel (a write whose bytes already reached
    /// the terminal must be in the trace, or the replay would not print them), then
    /// kills the tree. A second request kills it at once.
    ///
    /// Should the engine not get to it (the SIGSTOP reached no task it is waiting for),
    /// the tree is killed after [`STOP_GRACE`] all the same.
    pub fn interrupt(self: &std::sync::Arc<Self>, why: Outcome) {
        self.mark(why, |pid, first| {
            let sig = if first { libc::SIGSTOP } else { libc::SIGKILL };
            // SAFETY: plain syscall; the pid is the live leader of the recording (it is
            // unregistered, under the lock `mark` holds, before it is reaped).
            unsafe { libc::kill(pid, sig) };
            if first {
                let me = std::sync::Arc::clone(self);
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_GRACE);
                    me.abort(why);
                });
            }
        });
    }

    /// Kills the recorded program at once and marks the recording with `why`: for a
    /// recording nobody will replay (a flake hunt stopping its other runs).
    pub fn abort(&self, why: Outcome) {
        // SAFETY: as in `interrupt`.
        self.mark(why, |pid, _| unsafe {
            libc::kill(pid, libc::SIGKILL);
        });
    }

    /// Marks the recording as stopped with `why` without signalling anything: for the
    /// engine, which stops it itself (a second `interrupt` would kill at once).
    pub(super) fn note(&self, why: Outcome) {
        self.mark(why, |_, _| {});
    }

    /// Records `why` unless a reason is recorded already, then, if a recording is
    /// running, calls `signal` with its leader and whether this was the first request,
    /// still holding the lock.
    pub(super) fn mark(&self, why: Outcome, signal: impl FnOnce(i32, bool)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = st.1.is_none();
        if first {
            st.1 = Some(why);
            self.asked.store(true, std::sync::atomic::Ordering::Release);
        }
        if let Some(pid) = st.0 {
            signal(pid, first);
        }
    }

    /// Whether a stop was asked for.
    pub(super) fn requested(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether `pid` is, or was, a task of the recording this interrupter stops (so a
    /// signal it sent the recorder comes from the recorded program itself).
    pub fn is_member(&self, pid: i32) -> bool {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&pid)
    }

    /// Notes a new task of the recording (see [`Interrupter::is_member`]).
    pub(super) fn add_member(&self, tid: i32) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tid);
    }

    pub(super) fn arm(&self, pid: i32) -> bool {
        self.add_member(pid);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = Some(pid);
        st.1.is_some()
    }

    pub(super) fn disarm(&self) -> Option<Outcome> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = None;
        st.1
    }
}

/// Interrupts a recording when its time is up, unless dropped first.
pub(super) struct Watchdog {
    cancel: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub(super) fn start(
        limit: std::time::Duration,
        interrupter: std::sync::Arc<Interrupter>,
    ) -> Self {
        let cancel = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let c = cancel.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*c;
            let deadline = std::time::Instant::now() + limit;
            let mut cancelled = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*cancelled {
                let now = std::time::Instant::now();
                if now >= deadline {
                    interrupter.interrupt(Outcome::TimedOut);
                    return;
                }
                cancelled = cv
                    .wait_timeout(cancelled, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        });
        Watchdog {
            cancel,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.cancel;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
