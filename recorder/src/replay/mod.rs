//! Replay: re-execute the program from its trace.
//!
//! The replayer execs a tiny static stub (see [`crate::address_space`]), rebuilds the
//! recorded address space from the trace's copies of the files, sets the recorded
//! registers and lets the program run. Recorded syscalls are skipped with
//! `PTRACE_SYSEMU` and their results and written memory injected; the calls that shape
//! the address space, the signal state or the task run for real (mmap against the
//! trace's copy of the file, at the recorded address). Every event is checked: tid,
//! syscall number, argument registers, a hash of the memory passed in, rdtsc/cpuid
//! sites, signals, and the final status.

mod breakpoints;
pub mod checkpoint;
pub(crate) mod feed;
mod preempt_search;
mod preemption;
mod rebuild;
mod robust;
pub mod sandbox;
pub mod session;
pub(crate) mod signal;
mod syscall;
mod sysv_shm;
mod tree;
pub mod watch;

pub use checkpoint::Checkpoint;
pub use session::{ReplayOptions, ReplaySession, SessionStop, ThreadInfo};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::tree::ThreadStop;
use signal::drop_if_stop;
use syscall::{describe_call, runs_at_replay};
use tree::RThread;

use crate::address_space::{STUB_SCRATCH, STUB_SYSCALL};
use crate::arch::Trapped;
use crate::errors::{Error, Result};
use crate::inject::inject_syscall;
use crate::output::{FdTables, OutputFds, Stream};
use crate::ptrace::{Resume, Stop, SyscallStop, Task};
use crate::syscalls::{self, nr, Class};
use crate::trace::{signal_name, Event, EventReader, ExitKind, SyscallEvent, TraceDir};

/// Receives what the replayed program writes to its stdout and stderr.
pub type OutputSink<'a> = dyn FnMut(Stream, &[u8]) + 'a;

/// How a replay ended.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// Events replayed (all of them, when the replay matched).
    pub events: u64,
    /// How the replayed program ended.
    pub exit: ExitKind,
    /// The recording was stopped from outside (time limit, Ctrl-C): the replay ran up
    /// to that point and then killed the program.
    pub cut_short: bool,
    /// Counters about the replay.
    pub stats: ReplayStats,
}

/// Counters about a replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayStats {
    /// Preemption points found again.
    pub preemptions: u64,
    /// Breakpoint hits it took to find them.
    pub preemption_traps: u64,
    /// Time spent running threads to their preemption points (breakpoints, state
    /// comparisons and the code run in between).
    pub preemption_time: std::time::Duration,
    /// Calls run that the recording let through without recording them
    /// (`Header::untraced`).
    pub untraced: u64,
    /// Buffered calls replayed from the feed, without a stop of their own
    /// ([`feed`]).
    pub fed: u64,
    /// Times a thread of the program was resumed to its next stop (the injected calls
    /// of the engine and single steps not counted).
    pub resumes: u64,
}

/// Called at every syscall event of a replay with the replayed process's pid and the
/// event number, while the process is stopped (tests inspect `/proc/PID/maps` there).
pub type Observer<'a> = dyn FnMut(i32, u64) + 'a;

/// Replays a trace. What the program writes to fds 1 and 2 goes to `sink` as it writes.
pub fn replay(trace_path: &Path, sink: &mut OutputSink<'_>) -> Result<ReplaySummary> {
    replay_observed(trace_path, sink, &mut |_, _| {})
}

/// [`replay`], calling `observer` at every syscall event.
pub fn replay_observed(
    trace_path: &Path,
    sink: &mut OutputSink<'_>,
    observer: &mut Observer<'_>,
) -> Result<ReplaySummary> {
    let options = ReplayOptions {
        sink: Box::new(sink),
        observer: Box::new(observer),
    };
    let mut session = ReplaySession::open(trace_path, options)?;
    match session.run_to_end()? {
        SessionStop::Exited { summary, .. } => Ok(summary),
        SessionStop::Diverged(e) => Err(e),
        other => Err(Error::Unsupported {
            what: format!("the replay stopped with {other:?} with no breakpoint set"),
            hint: "report this as a bug".into(),
        }),
    }
}

struct Replayer<'a> {
    trace: TraceDir,
    /// The leader until `run` starts; afterwards unused (threads live in `threads`).
    task: Task,
    /// Threads by their recorded tid.
    threads: HashMap<i32, RThread>,
    /// Recorded tid of the thread group leader.
    leader: i32,
    /// Process leaders that called `exit` while their other threads lived on, by tgid.
    zombies: HashMap<i32, Task>,
    /// The stub executable, exec'ed again when the program execs.
    stub_path: PathBuf,
    /// How the process ended at replay, once it has.
    ended: Option<ExitKind>,
    events: EventReader,
    /// Events read ahead by [`Replayer::next_of_thread`], not replayed yet.
    ahead: std::collections::VecDeque<Event>,
    /// Number of the next event.
    index: u64,
    /// Each process's program break, by recorded tgid (brk is replayed as mappings).
    brk: HashMap<i32, u64>,
    /// Each fd table's view of which fds are the original stdout and stderr (keyed by
    /// `RThread::files`).
    fd_tables: FdTables,
    sink: Box<OutputSink<'a>>,
    observer: Box<Observer<'a>>,
    /// The next event to replay (`None`: the trace has no more).
    pending: Option<Event>,
    /// The replay is over: the program ended (how: `summary`), or it failed.
    over: bool,
    /// How the replay ended, once it has.
    summary: Option<ReplaySummary>,
    /// Software breakpoints written into the program.
    bps: breakpoints::Breakpoints,
    /// The debugger's watchpoints (DR1 to DR3).
    watches: watch::Watches,
    stats: ReplayStats,
    /// Writable copies of the files the program maps `MAP_SHARED`, by record-time path:
    /// every mapping of one file maps the same copy, as at record.
    shared_copies: HashMap<String, PathBuf>,
    /// The System V segments the program created, by recorded id: their sizes (see
    /// [`sysv_shm`]).
    shm_segments: HashMap<i64, u64>,
    /// Captured files kept open in a replayed process for its private file mappings, by
    /// (fd table, the program's fd): the trace file's hash and the fd at replay (see
    /// `Replayer::trace_file_for`).
    mapped_fds: HashMap<(i32, i32), (String, i64)>,
    /// Calls the recording let through without a stop (`Header::untraced`): not in the
    /// trace, run whenever the program makes them.
    untraced: std::collections::HashSet<u64>,
    /// The recording ran with the syscall-buffering library (`Header::syscallbuf`): its
    /// entry page is mapped at every exec, where the library's calls stop and are
    /// emulated like any other.
    syscallbuf: bool,
    /// How the trace defines the memory digest of its preemption points (by its format
    /// version, `Header::format_version`).
    memory_digest: crate::preempt::memory::Definition,
    /// The recording cleared the stale fault fields of asynchronous signals' frames
    /// (format 9 on, `record::signal::clear_fault_fields`): replay clears them too.
    clean_frames: bool,
    /// The tasks that lived in the program's own pid namespaces at record, and their
    /// pids there ([`Event::PidNamespace`]; replay creates no namespace).
    pidns: crate::pidns::PidNamespaces,
    /// Processes of the tree that were sent SIGKILL (see [`Replayer::end_killed`]).
    sigkilled: std::collections::HashSet<i32>,
    /// The call (number, arguments) of the [`Event::Filtered`] being replayed: an
    /// untraced call that the program's seccomp filter refused stops like any other.
    filtered_call: Option<(u64, [u64; 6])>,
    /// Events numbered from here on are not replayed by the current call of
    /// [`Replayer::advance`] (the feed runs only up to there; see [`feed`]).
    batch_limit: u64,
}

impl Replayer<'_> {
    /// If `th` triggered one of the debugger's watchpoints, returns
    /// [`Error::Watchpoint`] (the event it was running is not finished; running it
    /// again goes on from there).
    fn check_watchpoint_hit(&mut self, th: &mut RThread) -> Result<()> {
        if let Some(slot) = self.watches.triggered(&th.task)? {
            // As for a breakpoint: the preemption search re-arms DR0 when it goes on.
            crate::preempt::set_breakpoint(&th.task, None)?;
            return Err(Error::Watchpoint {
                tid: th.task.tid,
                slot,
            });
        }
        Ok(())
    }

    /// Whether `th` stands in the replay's syscall-buffering entry page (the engine's
    /// code, see [`feed`]): a watchpoint it triggers there is an access the recorded
    /// call did not make, or that a replay without the feed makes through ptrace.
    fn in_entry_code(&self, th: &RThread) -> Result<bool> {
        if !self.syscallbuf {
            return Ok(false);
        }
        let page = crate::syscallbuf::abi::ENTRY_PAGE;
        Ok((page..page + 4096).contains(&th.task.regs()?.rip))
    }

    /// Resumes `th` with `mode` (and `sig`) and returns its next stop, running on the
    /// way the untraced calls it makes (see [`Replayer::untraced`]).
    fn resume_to_next(&mut self, th: &mut RThread, mode: Resume, sig: i32) -> Result<Stop> {
        let mut sig = sig;
        if let Some(stop) = self.enter_handler_first(th, sig)? {
            sig = 0;
            if mode == Resume::Step || stop != Stop::Signal(libc::SIGTRAP) {
                return Ok(stop);
            }
        }
        if th.watch_generation != self.watches.generation {
            self.watches.apply(&th.task)?;
            th.watch_generation = self.watches.generation;
        }
        let mut first = if self.bps.is_empty() {
            th.entered_handler = None;
            None
        } else {
            self.step_over_breakpoint(th, mode, &mut sig)?
        };
        if first.is_none() && self.watches.any() {
            // The stepped-over instruction may have triggered one.
            self.check_watchpoint_hit(th)?;
        }
        loop {
            let stop = match first.take() {
                Some(stop) => stop,
                None => {
                    self.stats.resumes += 1;
                    th.task.resume(mode, sig)?;
                    sig = 0;
                    th.task.wait_skipping_sigchld()?.0
                }
            };
            if stop == Stop::Signal(libc::SIGTRAP) && !self.bps.is_empty() {
                self.check_breakpoint_hit(th)?;
            }
            if stop == Stop::Signal(libc::SIGTRAP) && self.watches.any() {
                if self.in_entry_code(th)? && self.watches.triggered(&th.task)?.is_some() {
                    // The replay's own code, not the program's: passed over.
                    continue;
                }
                self.check_watchpoint_hit(th)?;
            }
            if stop != Stop::Syscall || self.untraced.is_empty() {
                return Ok(stop);
            }
            let (nr, args) = match th.task.syscall_stop()? {
                SyscallStop::Entry { nr, args }
                    if self.untraced.contains(&nr)
                        && crate::syscalls::untraced_call(nr, &args)
                        && self.filtered_call != Some((nr, args)) =>
                {
                    (nr, args)
                }
                _ => return Ok(stop),
            };
            if mode == Resume::Sysemu {
                // Skipped by the kernel: run it now, from its own instruction.
                let rip = th.task.regs()?.rip;
                let ret = inject_syscall(&mut th.task, rip - 2, nr, &args)?;
                th.task.set_rax(ret as u64)?;
            } else {
                th.task.resume(Resume::Syscall, 0)?;
                match th.task.wait_skipping_sigchld()?.0 {
                    Stop::Syscall => {}
                    other => {
                        return Err(Error::Unsupported {
                            what: format!(
                                "the replayed program stopped with {other:?} in {}",
                                describe_call(nr, &args)
                            ),
                            hint: "report this as a bug".into(),
                        })
                    }
                }
            }
            self.stats.untraced += 1;
        }
    }

    fn start(&mut self, first: &crate::trace::ExecState) -> Result<()> {
        // `spawn_traced` left the stub stopped just after its execve.
        self.task.set_options(crate::ptrace::OPTIONS)?;
        self.task.reopen_mem();
        let scratch = self.scratch().to_owned();
        rebuild::rebuild(
            &mut self.task,
            &self.trace,
            &scratch,
            first,
            self.syscallbuf,
        )?;
        let leader = std::mem::replace(&mut self.task, Task::new(0));
        self.threads
            .insert(self.leader, RThread::new(leader, self.leader));
        Ok(())
    }

    /// The replay's private temporary directory (the stub's): copies of shared-mapped
    /// files, and files built from sparse images.
    fn scratch(&self) -> &Path {
        self.stub_path.parent().unwrap_or(Path::new("/tmp"))
    }

    fn diverge(&self, expected: &Event, actual: String) -> Error {
        Error::Divergence {
            event: self.index,
            expected: expected.describe(),
            actual,
        }
    }

    /// Replays the next event (running its thread again after a spurious stop).
    /// Returns how the replay ended once the program's end was replayed. On an error
    /// the event stays the next one: after [`Error::Breakpoint`], replaying it again
    /// goes on from the breakpoint.
    fn advance(&mut self) -> Result<Option<ReplaySummary>> {
        loop {
            let Some(ev) = self.pending.take() else {
                return Err(Error::TraceEnded {
                    events: self.index,
                    detail: self.events.truncated.clone(),
                });
            };
            // A run of buffered calls: all but its last replayed from the feed.
            let ev = self.feed_run(ev)?;
            match self.replay_event(&ev) {
                Ok(Advanced::Retry) => self.pending = Some(ev),
                Ok(Advanced::Next) => {
                    self.index += 1;
                    self.pending = self.next_event()?;
                    return Ok(None);
                }
                Ok(Advanced::End(summary)) => return Ok(Some(summary)),
                Err(e) => {
                    self.pending = Some(ev);
                    return Err(e);
                }
            }
        }
    }

    fn replay_event(&mut self, ev: &Event) -> Result<Advanced> {
        if let Event::Exit {
            how: ExitKind::Signaled(libc::SIGKILL),
            ..
        } = ev
        {
            if self.ended.is_none() {
                // The recording was stopped here from outside: so is the replay.
                self.kill_all();
                return Ok(Advanced::End(ReplaySummary {
                    events: self.index + 1,
                    exit: ExitKind::Signaled(libc::SIGKILL),
                    cut_short: true,
                    stats: self.stats,
                }));
            }
        }
        if let Event::Exit { .. } = ev {
            let how = match self.ended {
                Some(h) => h,
                None => self.run_to_end(ev)?,
            };
            let summary = self.on_end(ev, how)?;
            if self.next_event()?.is_some() || self.events.truncated.is_some() {
                return Err(Error::BadTrace {
                    path: self.trace.path.clone(),
                    reason: format!(
                        "it has events after the program's exit (event {})",
                        self.index
                    ),
                });
            }
            return Ok(Advanced::End(summary));
        }
        let tid = ev.tid();
        let Some(mut th) = self.threads.remove(&tid) else {
            return Err(self.diverge(ev, format!("has no thread {tid} at this point")));
        };
        tracing::trace!("event {}: {}", self.index, ev.describe());
        let r = match self.step(ev, &mut th) {
            Ok(Step::Done)
                if matches!(ev, Event::Signal { .. } | Event::SignalAtPoint { .. })
                    && th.signal != 0 =>
            {
                drop_if_stop(&mut th);
                let init = self.pidns.depth(th.tgid) > 0 && self.pidns.own(th.tgid) == 1;
                if init {
                    signal::drop_if_init_ignores(&mut th);
                }
                if th.signal != 0 {
                    self.end_if_fatal(ev, &mut th)
                } else {
                    Ok(Step::Done)
                }
            }
            other => other,
        };
        match r {
            Ok(Step::Gone) => {}
            Ok(Step::Became(new)) => {
                self.threads.insert(new, th);
            }
            _ => {
                self.threads.insert(tid, th);
            }
        }
        Ok(match r? {
            Step::Retry => Advanced::Retry,
            Step::Done | Step::Gone | Step::Became(_) => Advanced::Next,
        })
    }

    fn next_event(&mut self) -> Result<Option<Event>> {
        match self.ahead.pop_front() {
            Some(ev) => Ok(Some(ev)),
            None => self.events.next_event(),
        }
    }

    /// The next event of thread `tid` after the current one, reading ahead (at most a
    /// bounded number of events, holding a bounded amount of data) without consuming
    /// anything.
    fn next_of_thread(&mut self, tid: i32) -> Result<Option<&Event>> {
        const LOOKAHEAD: usize = 1 << 16;
        const LOOKAHEAD_BYTES: usize = 256 << 20;
        let mut i = 0;
        let mut held: usize = self.ahead.iter().map(Event::payload_len).sum();
        loop {
            if i == self.ahead.len() {
                if i >= LOOKAHEAD || held >= LOOKAHEAD_BYTES {
                    return Ok(None);
                }
                match self.events.next_event()? {
                    Some(ev) => {
                        held += ev.payload_len();
                        self.ahead.push_back(ev);
                    }
                    None => return Ok(None),
                }
            }
            if self.ahead[i].tid() == tid {
                return Ok(self.ahead.get(i));
            }
            i += 1;
        }
    }

    /// Replays one event of thread `th`.
    fn step(&mut self, ev: &Event, th: &mut RThread) -> Result<Step> {
        match ev {
            // Notes about shared files: nothing for the thread to run.
            Event::SharedFile { name, .. } => {
                th.next_shared = Some(name.clone());
                return Ok(Step::Done);
            }
            Event::SharedFileWrite {
                name, offset, data, ..
            } => {
                self.write_shared(ev, name, *offset, data)?;
                return Ok(Step::Done);
            }
            // The thread stays where it is (held at its blocked call's entry).
            Event::KernelWrite { addr, data, .. } => {
                th.task.write_mem(*addr, data)?;
                return Ok(Step::Done);
            }
            Event::PidNamespace {
                child,
                namespaces,
                pids,
                ..
            } => {
                self.pidns.add(*child, namespaces, pids);
                return Ok(Step::Done);
            }
            _ => {}
        }
        // Every event below resumes the thread, except a signal given at this stop.
        let at_dropped_stop = std::mem::take(&mut th.at_dropped_stop);
        let at_point = std::mem::take(&mut th.at_point);
        if let Some((nr, args)) = th.held.take() {
            // Held at the entry of a blocked call: this event completes it.
            return self.on_syscall(ev, nr, args, th);
        }
        match ev {
            Event::NewTask {
                child,
                process,
                vfork,
                ..
            } => return self.new_task(ev, th, *child, *process, *vfork),
            Event::Syscall(s) if th.in_fork.is_some() => return self.finish_fork(ev, s, th),
            Event::Exec(state) => {
                // The files kept open for mappings were close-on-exec.
                let files = th.files;
                self.mapped_fds.retain(|(t, _), _| *t != files);
                self.own_table(th);
                rebuild::rebuild(
                    &mut th.task,
                    &self.trace,
                    self.scratch(),
                    state,
                    self.syscallbuf,
                )?;
                self.brk.insert(th.tgid, state.brk);
                if !self.bps.is_empty() {
                    self.bps.exec(th.tgid, &mut th.task)?;
                }
                return Ok(Step::Done);
            }
            Event::Preempt { state, .. } => return self.run_to_preemption(ev, th, state),
            Event::Preempted { state, point, .. } => {
                let step = self.run_to_preempted(ev, th, state, point);
                th.at_point = matches!(step, Ok(Step::Done));
                return step;
            }
            Event::SignalAtPoint {
                signo, rip, info, ..
            } => return self.signal_at_point(ev, th, at_point, *signo, *rip, info),
            Event::Signal {
                signo,
                rip,
                injected: true,
                info,
                ..
            } => {
                // After a call with a temporary mask (rt_sigsuspend, ppoll...) was
                // interrupted, the signal is delivered under that mask (emulated calls
                // do not set it).
                let saved_mask = match th.temporary_mask.take() {
                    Some(tmp) => {
                        let orig = th.task.sigmask()?;
                        th.task.set_sigmask(tmp)?;
                        Some(orig)
                    }
                    None => None,
                };
                // Queue it from the syscall stop the thread is in, as the recording did;
                // at the delivery stop of a stop signal not delivered, it is given there
                // (the recorded thread took it as it was continued, at that point).
                let stop = if at_dropped_stop && saved_mask.is_none() {
                    Stop::Signal(*signo)
                } else {
                    th.task.resume(Resume::Sysemu, *signo)?;
                    th.task.wait()?
                };
                return match stop {
                    Stop::Signal(sig) if sig == *signo => {
                        let regs = th.task.regs()?;
                        if regs.rip != *rip {
                            return Err(self.diverge(ev, format!("got it at {:#x}", regs.rip)));
                        }
                        if info.len() == std::mem::size_of::<libc::siginfo_t>() {
                            // SAFETY: 128 bytes of plain data, copied from a siginfo_t.
                            let si: libc::siginfo_t = unsafe {
                                std::ptr::read_unaligned(info.as_ptr() as *const libc::siginfo_t)
                            };
                            th.task.set_siginfo(&si)?;
                        }
                        th.signal = sig;
                        if let Some(orig) = saved_mask {
                            self.deliver_under_temporary_mask(ev, th, orig)?;
                        }
                        self.clean_frame_later(th);
                        Ok(Step::Done)
                    }
                    other => Err(self.diverge(ev, format!("stopped with {other:?} instead"))),
                };
            }
            _ => {}
        }
        let mode = match ev {
            Event::Syscall(s) if runs_at_replay(s) => Resume::Syscall,
            _ => Resume::Sysemu,
        };
        let sig = th.signal;
        th.signal = 0;
        if let Event::Filtered { nr, args, .. } = ev {
            self.filtered_call = Some((*nr, *args));
        }
        let stop = match th.fed_stop.take() {
            Some(stop) => Ok(stop),
            None => self.resume_to_next(th, mode, sig),
        };
        self.filtered_call = None;
        let stop = stop?;
        match ThreadStop::decode(&th.task, stop)? {
            ThreadStop::SyscallEntry { nr, args } => {
                if let Event::Blocked {
                    nr: rnr,
                    args: rargs,
                    ..
                } = ev
                {
                    if *rnr != nr || *rargs != args {
                        return Err(
                            self.diverge(ev, format!("made syscall {}", describe_call(nr, &args)))
                        );
                    }
                    th.held = Some((nr, args));
                    return Ok(Step::Done);
                }
                if let Event::Filtered { .. } = ev {
                    return self.on_filtered(ev, nr, args, th);
                }
                self.on_syscall(ev, nr, args, th)
            }
            // The exit of a call skipped at a SYSEMU stop: nothing to do.
            ThreadStop::SyscallExit { .. } | ThreadStop::SyscallUnknown => Ok(Step::Retry),
            ThreadStop::Signal(sig) => {
                let regs = th.task.regs()?;
                let insn = if sig == libc::SIGSEGV {
                    Trapped::decode(&self.read_code(th, regs.rip, 3)?)
                } else {
                    None
                };
                match (insn, ev) {
                    (Some(_), Event::Rdtsc { .. } | Event::Cpuid { .. }) => {
                        self.on_trapped(ev, &th.task, regs)?;
                        if th.segv_blocked {
                            crate::record::signal::reblock_segv(&th.task)?;
                        }
                    }
                    // A program that asked for PR_TSC_SIGSEGV gets its rdtsc's fault
                    // (recorded as its signal): a trapped instruction too.
                    (
                        _,
                        Event::Signal {
                            signo,
                            rip,
                            injected: false,
                            ..
                        },
                    ) if *signo == sig && *rip == regs.rip => th.signal = sig,
                    (Some(i), _) => {
                        return Err(self.diverge(ev, format!("executed {i:?} at {:#x}", regs.rip)))
                    }
                    (None, _) => {
                        return Err(self
                            .diverge(ev, format!("got {} at {:#x}", signal_name(sig), regs.rip)))
                    }
                }
                Ok(Step::Done)
            }
            ThreadStop::Exited(c) => Err(self.diverge(ev, format!("ended with exit code {c}"))),
            ThreadStop::Killed(s) => {
                Err(self.diverge(ev, format!("was killed by {}", signal_name(s))))
            }
            ThreadStop::Event(e) => Err(self.diverge(ev, format!("stopped with ptrace event {e}"))),
            ThreadStop::Seccomp => Err(self.diverge(
                ev,
                format!("stopped with ptrace event {}", libc::PTRACE_EVENT_SECCOMP),
            )),
            ThreadStop::Other(s) => Err(self.diverge(ev, format!("stopped with status {s}"))),
        }
    }

    fn on_end(&mut self, ev: &Event, how: ExitKind) -> Result<ReplaySummary> {
        match ev {
            Event::Exit { how: rec, .. } if *rec == how => Ok(ReplaySummary {
                events: self.index + 1,
                exit: how,
                cut_short: false,
                stats: self.stats,
            }),
            _ => {
                let what = match how {
                    ExitKind::Exited(c) => format!("exited with code {c}"),
                    ExitKind::Signaled(s) => format!("was killed by {}", signal_name(s)),
                };
                Err(self.diverge(ev, what))
            }
        }
    }
}

/// What became of an event.
enum Advanced {
    /// Replayed; on to the next.
    Next,
    /// A spurious stop; replay the same event again.
    Retry,
    /// The program's end was replayed.
    End(ReplaySummary),
}

/// What became of a thread's event.
enum Step {
    /// Replayed.
    Done,
    /// A spurious stop; replay the same event again.
    Retry,
    /// Replayed, and the thread is gone.
    Gone,
    /// Replayed, and the thread is now known under this recorded tid (it exec'ed from
    /// a thread other than its process's leader and took the leader's tid).
    Became(i32),
}

/// Runs one instruction of `task` (delivering `sig`: then it stops at the handler's
/// first instruction). From a syscall stop, the kernel first reports the end of the
/// call as a step (`TRAP_BRKPT`) without running anything: that report is passed.
fn single_step(task: &Task, sig: i32) -> Result<Stop> {
    task.resume(Resume::Step, sig)?;
    let mut stop = task.wait_skipping_sigchld()?.0;
    if stop == Stop::Signal(libc::SIGTRAP) && task.siginfo()?.si_code == libc::TRAP_BRKPT {
        task.resume(Resume::Step, 0)?;
        stop = task.wait_skipping_sigchld()?.0;
    }
    Ok(stop)
}
