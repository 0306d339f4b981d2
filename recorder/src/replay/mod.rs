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

mod preempt_search;
mod rebuild;
mod robust;
pub mod sandbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::address_space::{STUB_SCRATCH, STUB_SYSCALL};
use crate::arch::Trapped;
use crate::errors::{Error, Result};
use crate::inject::inject_syscall;
use crate::output::{OutputFds, Stream};
use crate::ptrace::{Resume, Stop, SyscallStop, Task};
use crate::spawn::{self, SpawnSpec};
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
    let trace = TraceDir::open(trace_path)?;
    trace.check_complete()?;
    let header = trace.header()?;
    // What may run natively is the engine's list; the trace may only narrow it.
    let untraced = crate::trace::validate::untraced_calls(&trace.path, &header)?;
    let mut events = trace.events()?;
    let first = match events.next_event()? {
        Some(Event::Exec(state)) => state,
        Some(other) => {
            return Err(Error::BadTrace {
                path: trace.path.clone(),
                reason: format!("the first event is `{}`, not an exec", other.describe()),
            })
        }
        None => {
            return Err(Error::TraceEnded {
                events: 0,
                detail: events.truncated.clone(),
            });
        }
    };
    if header.cpuid_faulting && !crate::arch::cpuid_faulting_available() {
        return Err(Error::Unsupported {
            what:
                "this machine cannot trap cpuid (no CPUID faulting), which the recording relies on"
                    .into(),
            hint: "replay on a machine with CPUID faulting (most Intel CPUs, recent AMD ones)"
                .into(),
        });
    }

    let stub_dir = StubFile::create()?;
    let sandbox = sandbox::Sandbox::new(&[&trace.path], &[&stub_dir.dir]);
    match &sandbox {
        Some(s) => tracing::debug!("replay sandbox: {}", s.describe()),
        None => tracing::info!(
            "this kernel offers no Landlock: the replay is confined by the engine alone"
        ),
    }
    let cpu_set = spawn::cpu_set();
    let pinned = replay_core(&header, &cpu_set);
    spawn::pin_self(&[pinned]);
    if header.cpuid_faulting {
        crate::arch::self_cpuid::arm_for_this_thread();
    }
    let result = (|| {
        let spec = SpawnSpec {
            path: &stub_dir.path,
            argv: vec!["chaos-replay-stub".into()],
            env: Vec::new(),
            cwd: None,
            cpu: Some(pinned),
            no_aslr: true,
            null_stdio: true,
            stdio_fds: None,
            no_core: true,
            trap_tsc_no_new_privs: false,
            landlock: sandbox
                .as_ref()
                .map(|s| std::os::fd::AsRawFd::as_raw_fd(&s.ruleset)),
            own_process_group: false,
            foreground_tty: None,
        };
        let pid = spawn::spawn_traced(&spec)?;
        let mut r = Replayer {
            trace: trace.clone(),
            task: Task::new(pid),
            threads: HashMap::new(),
            leader: first.tid,
            zombies: HashMap::new(),
            stub_path: stub_dir.path.clone(),
            ended: None,
            events,
            index: 1,
            brk: HashMap::from([(first.tid, first.brk)]),
            out_fds: HashMap::new(),
            stats: ReplayStats::default(),
            shared_copies: HashMap::new(),
            untraced,
            sigkilled: Default::default(),
            ahead: Default::default(),
            sink,
            observer,
        };
        let res = r.start(&first).and_then(|_| r.run());
        if res.is_err() {
            r.kill_all();
        }
        res
    })();
    if header.cpuid_faulting {
        crate::arch::self_cpuid::disarm_for_this_thread();
    }
    spawn::pin_self(&cpu_set);
    result
}

/// The core the replay runs on. A recording without CPUID faulting let the program run
/// cpuid natively, and some answers name the core (the APIC ids of leaves 1, 0xB and
/// 0x1F), so its replay runs on the recorded core when this machine has it. Without it,
/// or on another CPU model, the answers may differ; that is said, not hidden.
fn replay_core(header: &crate::trace::Header, cpu_set: &[usize]) -> usize {
    if header.cpuid_faulting {
        return cpu_set[0];
    }
    let here = crate::host::cpu_model();
    if !header.cpu_model.is_empty() && header.cpu_model != here {
        tracing::warn!(
            "recorded without CPUID faulting on a {} and replayed on a {}: where the program \
             asked the CPU (cpuid), the replay may take another path and diverge",
            header.cpu_model,
            here
        );
    }
    if cpu_set.contains(&header.pinned_cpu) {
        header.pinned_cpu
    } else {
        tracing::warn!(
            "recorded on core {} without CPUID faulting; this machine has no such core, so \
             cpuid answers that name the core (APIC ids) may differ from the recording's",
            header.pinned_cpu
        );
        cpu_set[0]
    }
}

/// The stub executable, written to a private temporary directory for the replay.
struct StubFile {
    dir: PathBuf,
    path: PathBuf,
}

impl StubFile {
    fn create() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir();
        let mut n = 0;
        let dir = loop {
            let d = base.join(format!("chaos-replay-{}-{n}", std::process::id()));
            match std::fs::create_dir(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io(d, e)),
            }
        };
        let path = dir.join("stub");
        std::fs::write(&path, crate::address_space::stub_elf()).map_err(|e| Error::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&path, e))?;
        Ok(StubFile { dir, path })
    }
}

impl Drop for StubFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A thread of the replayed program.
struct RThread {
    task: Task,
    /// Recorded tgid of its process.
    tgid: i32,
    /// Held at the entry stop of a call recorded as [`Event::Blocked`].
    held: Option<(u64, [u64; 6])>,
    /// Signal to deliver when it is next resumed.
    signal: i32,
    /// Inside a fork-family call whose child was created ([`Event::NewTask`]): its
    /// number and arguments, and whether it waits in the kernel (vfork).
    in_fork: Option<(u64, [u64; 6], bool)>,
    /// The file its next mmap maps `MAP_SHARED` ([`Event::SharedFile`]).
    next_shared: Option<String>,
    /// The temporary mask of the call it just returned from interrupted (rt_sigsuspend,
    /// ppoll, pselect6, epoll_pwait: see [`temporary_mask`]); the signal that
    /// interrupted it must be delivered under that mask (see
    /// [`Replayer::deliver_under_temporary_mask`]).
    temporary_mask: Option<u64>,
}

impl RThread {
    fn new(task: Task, tgid: i32) -> Self {
        RThread {
            task,
            tgid,
            held: None,
            signal: 0,
            in_fork: None,
            next_shared: None,
            temporary_mask: None,
        }
    }
}

struct Replayer<'s, 'a> {
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
    /// Each process's view of which fds are the original stdout and stderr.
    out_fds: HashMap<i32, OutputFds>,
    sink: &'s mut OutputSink<'a>,
    observer: &'s mut Observer<'a>,
    stats: ReplayStats,
    /// Writable copies of the files the program maps `MAP_SHARED`, by record-time path:
    /// every mapping of one file maps the same copy, as at record.
    shared_copies: HashMap<String, PathBuf>,
    /// Calls the recording let through without a stop (`Header::untraced`): not in the
    /// trace, run whenever the program makes them.
    untraced: std::collections::HashSet<u64>,
    /// Processes of the tree that were sent SIGKILL (see [`Replayer::end_killed`]).
    sigkilled: std::collections::HashSet<i32>,
}

impl Replayer<'_, '_> {
    /// Resumes `th` with `mode` (and `sig`) and returns its next stop, running on the
    /// way the untraced calls it makes (see [`Replayer::untraced`]).
    fn resume_to_next(&mut self, th: &mut RThread, mode: Resume, sig: i32) -> Result<Stop> {
        let mut sig = sig;
        loop {
            th.task.resume(mode, sig)?;
            sig = 0;
            let stop = th.task.wait_skipping_sigchld()?.0;
            if stop != Stop::Syscall || self.untraced.is_empty() {
                return Ok(stop);
            }
            let (nr, args) = match th.task.syscall_stop()? {
                SyscallStop::Entry { nr, args } if self.untraced.contains(&nr) => (nr, args),
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
        rebuild::rebuild(&mut self.task, &self.trace, first)?;
        let leader = std::mem::replace(&mut self.task, Task::new(0));
        self.threads
            .insert(self.leader, RThread::new(leader, self.leader));
        Ok(())
    }

    fn diverge(&self, expected: &Event, actual: String) -> Error {
        Error::Divergence {
            event: self.index,
            expected: expected.describe(),
            actual,
        }
    }

    fn run(&mut self) -> Result<ReplaySummary> {
        let mut next = self.next_event()?;
        loop {
            let Some(ev) = next.take() else {
                return Err(Error::TraceEnded {
                    events: self.index,
                    detail: self.events.truncated.clone(),
                });
            };
            if let Event::Exit {
                how: ExitKind::Signaled(libc::SIGKILL),
                ..
            } = ev
            {
                if self.ended.is_none() {
                    // The recording was stopped here from outside: so is the replay.
                    self.kill_all();
                    return Ok(ReplaySummary {
                        events: self.index + 1,
                        exit: ExitKind::Signaled(libc::SIGKILL),
                        cut_short: true,
                        stats: self.stats,
                    });
                }
            }
            if let Event::Exit { .. } = ev {
                let how = match self.ended {
                    Some(h) => h,
                    None => self.run_to_end(&ev)?,
                };
                let summary = self.on_end(&ev, how)?;
                if self.next_event()?.is_some() || self.events.truncated.is_some() {
                    return Err(Error::BadTrace {
                        path: self.trace.path.clone(),
                        reason: format!(
                            "it has events after the program's exit (event {})",
                            self.index
                        ),
                    });
                }
                return Ok(summary);
            }
            let tid = ev.tid();
            let Some(mut th) = self.threads.remove(&tid) else {
                return Err(self.diverge(&ev, format!("has no thread {tid} at this point")));
            };
            let r = match self.step(&ev, &mut th) {
                Ok(Step::Done) if matches!(ev, Event::Signal { .. }) && th.signal != 0 => {
                    self.end_if_fatal(&ev, &mut th)
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
            match r? {
                Step::Retry => next = Some(ev),
                Step::Done | Step::Gone | Step::Became(_) => {
                    self.index += 1;
                    next = self.next_event()?;
                }
            }
        }
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

    fn kill_all(&mut self) {
        // Leaders last: a leader's end is only reported once its other threads are
        // collected.
        let mut tasks: Vec<(bool, Task)> = self
            .threads
            .drain()
            .map(|(tid, t)| (tid == t.tgid, t.task))
            .chain(self.zombies.drain().map(|(_, t)| (true, t)))
            .collect();
        tasks.sort_by_key(|(leader, _)| *leader);
        for (_, t) in &tasks {
            t.kill();
        }
        for (_, t) in &tasks {
            reap(t);
        }
    }

    /// The trace's next event is the process's end: let the thread with a (fatal)
    /// signal pending, or the leader, run until the end.
    fn run_to_end(&mut self, ev: &Event) -> Result<ExitKind> {
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
        let sig = th.signal;
        match self.resume_to_next(&mut th, Resume::Sysemu, sig)? {
            s @ (Stop::Exited(_) | Stop::Killed(_)) => Ok(self.reap_all(tid, s)),
            other => Err(self.diverge(ev, format!("stopped with {other:?} instead of ending"))),
        }
    }

    /// The main process ended: thread `tid` (already out of `threads`) reported
    /// `stop`. Collects its other threads, ends the other processes of the tree (as the
    /// recording did), and returns the main process's end (its leader's).
    fn reap_all(&mut self, tid: i32, stop: Stop) -> ExitKind {
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
    fn reap_followers(&mut self, tgid: i32) {
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

    /// A (non-main) process ended: collect what is left of it.
    fn forget_process(&mut self, tgid: i32) {
        let mut members: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, th)| th.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        // The leader last: its end is reported only once its other threads are reaped.
        members.sort_by_key(|&t| t == tgid);
        for t in members {
            if let Some(th) = self.threads.remove(&t) {
                reap(&th.task);
            }
        }
        if let Some(z) = self.zombies.remove(&tgid) {
            reap(&z);
        }
    }

    /// Thread `th` (recorded as `ev.tid()`) has just been given a signal (`th.signal`,
    /// event `ev`). If that signal ends a process other than the main one (no handler,
    /// not ignored, a default action that terminates), it is delivered now and the
    /// process reaped, as it died there at record: the kernel's cleanup of robust futexes
    /// at its end (see [`robust`]) is then done at the same point, with the recorded
    /// tids, which matters for futexes in memory it shared with others. The main
    /// process's end is replayed with the trace's end.
    fn end_if_fatal(&mut self, ev: &Event, th: &mut RThread) -> Result<Step> {
        let (sig, tgid, tid) = (th.signal, th.tgid, ev.tid());
        if tgid == self.leader
            || !terminates_by_default(sig)
            || caught(th.task.tid, sig)
            || ignored(th.task.tid, sig)
        {
            return Ok(Step::Done);
        }
        robust::owner_died(&mut th.task, tid)?;
        let others: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, x)| x.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        for t in &others {
            if let Some(x) = self.threads.get_mut(t) {
                robust::owner_died(&mut x.task, *t)?;
            }
        }
        th.signal = 0;
        th.task.resume(Resume::Cont, sig)?;
        // A leader's end is reported only once its other threads are collected.
        let mut tasks: Vec<(bool, Task)> = others
            .iter()
            .filter_map(|t| self.threads.remove(t).map(|x| (*t == tgid, x.task)))
            .chain(self.zombies.remove(&tgid).map(|z| (true, z)))
            .collect();
        tasks.push((tid == tgid, Task::new(th.task.tid)));
        tasks.sort_by_key(|(leader, _)| *leader);
        for (_, t) in &tasks {
            reap(t);
        }
        tracing::debug!(
            "process {tgid} ended by {} at replay, as at record",
            signal_name(sig)
        );
        Ok(Step::Gone)
    }

    /// A fork-family call created a task ([`Event::NewTask`]): run the parent into the
    /// call until the kernel reports the child, and take the child in.
    fn new_task(
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
        if process {
            // CLONE_CHILD_SETTID wrote the child's real tid into the child's own memory
            // (glibc's fork keeps its thread's tid there, the owner id of the mutexes
            // it locks): the program saw the recorded one.
            let (flags, ctid) = match nr {
                nr::CLONE => (args[0], args[3]),
                nr::CLONE3 => {
                    let b = th.task.read_mem(args[0], 24)?;
                    let q = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
                    (q(0), q(16))
                }
                _ => (0, 0),
            };
            if flags & libc::CLONE_CHILD_SETTID as u64 != 0 && ctid != 0 {
                task.write_mem(ctid, &child.to_le_bytes())?;
            }
        }
        self.threads.insert(child, RThread::new(task, tgid));
        if process {
            let fds = self.out_fds.entry(th.tgid).or_default().clone();
            self.out_fds.insert(child, fds);
            if let Some(b) = self.brk.get(&th.tgid).copied() {
                self.brk.insert(child, b);
            }
        }
        if vfork {
            // The parent waits in the kernel until the child execs or exits.
            th.task.resume(Resume::Syscall, 0)?;
        }
        th.in_fork = Some((nr, args, vfork));
        Ok(Step::Done)
    }

    /// Runs the thread to the first point whose state equals the recorded preemption
    /// point (a hardware breakpoint at its `rip`, then a state comparison at each hit).
    fn run_to_preemption(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        want: &crate::preempt::PreemptState,
    ) -> Result<Step> {
        use crate::preempt;
        let rip = want.regs.get(16).copied().unwrap_or(0);
        let mut traps = 0u64;
        let started = std::time::Instant::now();
        preempt::set_breakpoint(&th.task, Some(rip))?;
        loop {
            let regs = th.task.regs()?;
            if regs.rip == rip && preempt::matches(&mut th.task, &regs, want)? {
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
                Stop::Signal(libc::SIGTRAP) => {
                    traps += 1;
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

    /// The fork-family call of an earlier [`Event::NewTask`] returns.
    fn finish_fork(&mut self, ev: &Event, s: &SyscallEvent, th: &mut RThread) -> Result<Step> {
        let (nr, args, in_kernel) = th.in_fork.take().expect("checked by the caller");
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
    fn exec_stub(&mut self, ev: &Event, th: &mut RThread) -> Result<Step> {
        th.task.set_orig_rax(u64::MAX)?;
        self.run_to_exit(ev, &th.task)?;
        // The exec ends the other threads, and drops the exec'ing thread's robust list
        // after it took the leader's tid: the kernel's owner-died marking, redone with
        // the recorded tids (it matters for futexes in memory shared with others).
        let tgid = th.tgid;
        for (tid, other) in self.threads.iter_mut() {
            if other.tgid == tgid {
                robust::owner_died(&mut other.task, *tid)?;
            }
        }
        robust::owner_died(&mut th.task, tgid)?;
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

    /// `th` (recorded tid `ev.tid()`) was resumed into an exec: the kernel kills the
    /// other threads of its process and waits until the non-leaders are collected, which
    /// is done here. When `th` is not the leader, it takes the leader's tid (the leader
    /// is released without a report): `th` is then pointed at that tid, and the
    /// leader's recorded tid is returned.
    fn end_other_threads(&mut self, ev: &Event, th: &mut RThread) -> Result<Option<i32>> {
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
            _ => {}
        }
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
                rebuild::rebuild(&mut th.task, &self.trace, state)?;
                self.brk.insert(th.tgid, state.brk);
                return Ok(Step::Done);
            }
            Event::Preempt { state, .. } => return self.run_to_preemption(ev, th, state),
            Event::Preempted { state, point, .. } => {
                return self.run_to_preempted(ev, th, state, point)
            }
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
                // Queue it from the syscall stop the thread is in, as the recording did.
                th.task.resume(Resume::Sysemu, *signo)?;
                return match th.task.wait()? {
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
        let stop = self.resume_to_next(th, mode, sig)?;
        match stop {
            Stop::Syscall => match th.task.syscall_stop()? {
                SyscallStop::Entry { nr, args } => {
                    if let Event::Blocked {
                        nr: rnr,
                        args: rargs,
                        ..
                    } = ev
                    {
                        if *rnr != nr || *rargs != args {
                            return Err(self.diverge(
                                ev,
                                format!("made syscall {}", describe_call(nr, &args)),
                            ));
                        }
                        th.held = Some((nr, args));
                        return Ok(Step::Done);
                    }
                    self.on_syscall(ev, nr, args, th)
                }
                // The exit of a call skipped at a SYSEMU stop: nothing to do.
                _ => Ok(Step::Retry),
            },
            Stop::Signal(sig) => {
                let regs = th.task.regs()?;
                let insn = if sig == libc::SIGSEGV {
                    Trapped::decode(&th.task.read_mem_partial(regs.rip, 3)?)
                } else {
                    None
                };
                match (insn, ev) {
                    (Some(_), Event::Rdtsc { .. } | Event::Cpuid { .. }) => {
                        self.on_trapped(ev, &th.task, regs)?
                    }
                    (
                        None,
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
            Stop::Exited(c) => Err(self.diverge(ev, format!("ended with exit code {c}"))),
            Stop::Killed(s) => Err(self.diverge(ev, format!("was killed by {}", signal_name(s)))),
            Stop::Event(e) => Err(self.diverge(ev, format!("stopped with ptrace event {e}"))),
            Stop::Other(s) => Err(self.diverge(ev, format!("stopped with status {s}"))),
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

    fn on_trapped(&self, ev: &Event, task: &Task, mut regs: crate::ptrace::Regs) -> Result<()> {
        match *ev {
            Event::Rdtsc {
                rip,
                rdtscp,
                tsc,
                aux,
                ..
            } if rip == regs.rip => {
                crate::arch::apply_tsc(&mut regs, tsc, aux, rdtscp);
            }
            Event::Cpuid {
                rip,
                leaf,
                subleaf,
                out,
                ..
            } if rip == regs.rip => {
                if regs.rax as u32 != leaf || (regs.rcx as u32 != subleaf && needs_subleaf(leaf)) {
                    return Err(self.diverge(
                        ev,
                        format!(
                            "asked cpuid({:#x}, {:#x})",
                            regs.rax as u32, regs.rcx as u32
                        ),
                    ));
                }
                crate::arch::apply_cpuid(&mut regs, out);
            }
            _ => return Err(self.diverge(ev, format!("trapped an instruction at {:#x}", regs.rip))),
        }
        task.set_regs(&regs)
    }

    fn on_syscall(
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
            return self.execute(ev, s, th);
        }
        if s.ret >= 0 {
            if let (Some(kind), Some(stream)) = (
                OutputFds::write_kind(sysno),
                self.out_fds.entry(th.tgid).or_default().stream(args[0]),
            ) {
                let data = crate::output::written_bytes(&mut th.task, kind, &args, s.ret)?;
                (self.sink)(stream, &data);
            }
        }
        for w in &s.writes {
            th.task.write_mem(w.addr, &w.data)?;
        }
        th.task.set_rax(s.ret as u64)?;
        if crate::kernel::restart::is_restart(s.ret) {
            // Interrupted by a signal at record. Unless a handler ran next (a signal
            // event of this thread follows, and the kernel decides again at replay),
            // the kernel restarted the call on the way back to user mode: do that here,
            // where no signal is pending to make the kernel do it.
            let handler_next = matches!(self.next_of_thread(s.tid)?, Some(Event::Signal { .. }));
            if !handler_next {
                let regs = th.task.regs()?;
                if let Some(r) = crate::preempt::restart_after_stop(&regs) {
                    th.task.set_regs(&r)?;
                }
            }
        }
        self.out_fds
            .entry(th.tgid)
            .or_default()
            .after_syscall(sysno, &args, s.ret);
        if let Some(victim) = sigkilled_process(s) {
            if victim != th.tgid && victim != self.leader {
                self.sigkilled.insert(victim);
            }
        }
        if let Some(dead) = reaped_child(s) {
            if self.sigkilled.remove(&dead) {
                self.end_killed(dead)?;
            }
        }
        Ok(Step::Done)
    }

    /// A process of the tree that was sent SIGKILL has just been reaped by its parent
    /// (the wait that returned its status): at record it died when the signal arrived,
    /// with no stop the trace could hold, and the kernel marked the robust futexes it
    /// held as owner-died. Its events all came before that wait. End it the same way now
    /// (futexes marked with the recorded tids, then the tasks killed), so a mutex it held
    /// in shared memory reads as owner-died to the others, as it did.
    fn end_killed(&mut self, tgid: i32) -> Result<()> {
        let mut members: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, x)| x.tgid == tgid)
            .map(|(t, _)| *t)
            .collect();
        for t in &members {
            if let Some(x) = self.threads.get_mut(t) {
                match robust::owner_died(&mut x.task, *t) {
                    Ok(_) | Err(Error::TaskGone { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // The leader last: its end is reported once its other threads are collected.
        members.sort_by_key(|&t| t == tgid);
        let tasks: Vec<Task> = members
            .iter()
            .filter_map(|t| self.threads.remove(t).map(|x| x.task))
            .chain(self.zombies.remove(&tgid))
            .collect();
        for t in &tasks {
            t.kill();
        }
        for t in &tasks {
            reap(t);
        }
        Ok(())
    }

    /// Delivers the signal that interrupted a call with a temporary mask (`th.signal`, at
    /// its delivery stop, the thread's mask set to the call's temporary one) the way the
    /// kernel does: a handler runs under the temporary mask, and the mask from before the
    /// call is the one its signal frame saves, so `sigreturn` restores it. Emulated, the
    /// call never saved that mask; it is written into the frame here, at the handler's
    /// first instruction.
    fn deliver_under_temporary_mask(
        &mut self,
        ev: &Event,
        th: &mut RThread,
        orig: u64,
    ) -> Result<()> {
        let sig = th.signal;
        if !caught(th.task.tid, sig) {
            if ignored(th.task.tid, sig) {
                // No handler runs: the kernel discarded it and gave the caller its own
                // mask back (and restarted the call, which the restart code in the
                // result makes it do here too). Discarding is not delivering it.
                th.signal = 0;
                th.task.set_sigmask(orig)?;
            }
            // Otherwise its default action ends the process: the mask no longer matters.
            return Ok(());
        }
        th.task.resume(Resume::Step, sig)?;
        th.signal = 0;
        match th.task.wait()? {
            Stop::Signal(libc::SIGTRAP) => {
                // rsp: the frame's return address, then its ucontext; uc_sigmask is 296
                // bytes into the ucontext (flags, link, stack_t, 256-byte sigcontext).
                let rsp = th.task.regs()?.rsp;
                th.task.write_mem(rsp + 8 + 296, &orig.to_le_bytes())
            }
            other => Err(self.diverge(
                ev,
                format!("stopped with {other:?} instead of entering the handler"),
            )),
        }
    }

    /// Runs a call of the "executed at replay" class. The task is at a real (non-SYSEMU)
    /// entry stop; on return it is at the call's exit stop with the recorded result.
    fn execute(&mut self, ev: &Event, s: &SyscallEvent, th: &mut RThread) -> Result<Step> {
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
                    }
                } else if s.tid == tgid {
                    // A process leader stays a zombie until its other threads are gone.
                    self.zombies.insert(tgid, Task::new(th.task.tid));
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
            nr::EXECVE => return self.exec_stub(ev, th),
            nr::MMAP | nr::BRK => {
                // Cancel the call, then do what it did at record time by injection.
                th.task.set_orig_rax(u64::MAX)?;
                self.run_to_exit(ev, &th.task)?;
                if s.nr == nr::MMAP {
                    let shared = th.next_shared.take();
                    self.redo_mmap(ev, s, &mut th.task, shared)?;
                } else {
                    self.redo_brk(th.tgid, s.ret as u64, &mut th.task)?;
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
        let mut r = th.task.regs()?;
        crate::arch::set_syscall_args(&mut r, &crate::arch::syscall_args(&saved));
        r.rax = s.ret as u64;
        th.task.set_regs(&r)?;
        Ok(Step::Done)
    }

    /// Thread `th` ends (`exit`), or its whole process (`exit_group`): the kernel's
    /// owner-died marking of the robust futexes each ending thread owns is done here,
    /// with the recorded tids (see [`robust`]).
    fn robust_cleanup(&mut self, s: &SyscallEvent, th: &mut RThread) -> Result<()> {
        robust::owner_died(&mut th.task, s.tid)?;
        if s.nr == nr::EXIT_GROUP {
            let tgid = th.tgid;
            for (tid, other) in self.threads.iter_mut() {
                if other.tgid == tgid {
                    match robust::owner_died(&mut other.task, *tid) {
                        Ok(_) | Err(Error::TaskGone { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    fn run_to_exit(&self, ev: &Event, task: &Task) -> Result<i64> {
        task.resume(Resume::Syscall, 0)?;
        match task.wait_skipping_sigchld()?.0 {
            Stop::Syscall => match task.syscall_stop()? {
                SyscallStop::Exit { ret, .. } => Ok(ret),
                other => Err(self.diverge(ev, format!("stopped at {other:?}"))),
            },
            other => Err(self.diverge(ev, format!("stopped with {other:?} inside it"))),
        }
    }

    fn redo_mmap(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        task: &mut Task,
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
                let (fd, flags) = match shared {
                    Some(name) if base_flags & libc::MAP_SHARED != 0 => {
                        (self.open_shared_copy(&name, hash, task)?, base_flags)
                    }
                    _ => (
                        self.open_trace_file(hash, task)?,
                        (base_flags & !libc::MAP_SHARED & !libc::MAP_SHARED_VALIDATE)
                            | libc::MAP_PRIVATE,
                    ),
                };
                let got = inject(
                    task,
                    libc::SYS_mmap,
                    &[addr, len, prot, flags as u64, fd as u64, off],
                );
                inject(task, libc::SYS_close, &[fd as u64])?;
                got?
            }
            None => inject(
                task,
                libc::SYS_mmap,
                &[addr, len, prot, base_flags as u64, u64::MAX, 0],
            )?,
        };
        if got != s.ret {
            return Err(self.diverge(ev, format!("could not map it at replay ({got})")));
        }
        Ok(())
    }

    fn open_trace_file(&mut self, hash: &str, task: &mut Task) -> Result<i64> {
        let path = self.trace.file_path(hash)?;
        Self::open_in(task, &path, libc::O_RDONLY | libc::O_NOFOLLOW)
    }

    /// The writable copy of shared-mapped file `name` (made from its capture `hash` the
    /// first time), opened in `task`.
    fn open_shared_copy(&mut self, name: &str, hash: &str, task: &mut Task) -> Result<i64> {
        let path = match self.shared_copies.get(name) {
            Some(p) => p.clone(),
            None => {
                let from = self.trace.file_path(hash)?;
                let dir = self.stub_path.parent().unwrap_or(Path::new("/tmp"));
                let to = dir.join(format!("shared-{}", self.shared_copies.len()));
                std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
                self.shared_copies.insert(name.to_string(), to.clone());
                to
            }
        };
        Self::open_in(task, &path, libc::O_RDWR)
    }

    /// Replays a write-family call's change to a shared-mapped file.
    fn write_shared(&mut self, ev: &Event, name: &str, offset: u64, data: &[u8]) -> Result<()> {
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
    fn open_in(task: &mut Task, path: &Path, flags: i32) -> Result<i64> {
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
    fn redo_brk(&mut self, tgid: i32, new: u64, task: &mut Task) -> Result<()> {
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

fn inject(task: &mut Task, nr: i64, args: &[u64]) -> Result<i64> {
    inject_syscall(task, STUB_SYSCALL, nr as u64, args)
}

/// Waits until a task has ended.
fn reap(task: &Task) -> Stop {
    crate::ptrace::reap(task.tid)
}

fn stub_conflict(addr: u64) -> Error {
    Error::Unsupported {
        what: format!(
            "the recording mapped memory at {addr:#x}, inside the replayer's reserved range"
        ),
        hint: "this program cannot be replayed by this version".into(),
    }
}

use crate::kernel::restart::ERESTARTNOHAND;

/// The signal mask a call puts in force while it waits, if it returned interrupted by a
/// signal: the kernel then keeps that mask until the signal is delivered (its handler
/// runs under it, and its frame saves the caller's mask), where a call that returned
/// otherwise has already restored the caller's. Emulated at replay, the call sets no
/// mask, so replay sets it (see [`Replayer::deliver_under_temporary_mask`]); without
/// it, a signal the caller blocks outside the call would not even be delivered.
fn temporary_mask(task: &mut Task, sysno: u64, args: &[u64; 6], ret: i64) -> Result<Option<u64>> {
    let (ptr, interrupted) = match sysno {
        nr::RT_SIGSUSPEND => (args[0], ERESTARTNOHAND),
        nr::PPOLL => (args[3], ERESTARTNOHAND),
        nr::EPOLL_PWAIT | nr::EPOLL_PWAIT2 => (args[4], -(libc::EINTR as i64)),
        // Argument 5 points to { const sigset_t *ss; size_t ss_len; }.
        nr::PSELECT6 if args[5] != 0 && ret == ERESTARTNOHAND => {
            let b = task.read_mem(args[5], 8)?;
            (
                u64::from_le_bytes(b[..8].try_into().expect("8")),
                ERESTARTNOHAND,
            )
        }
        _ => return Ok(None),
    };
    if ptr == 0 || ret != interrupted {
        return Ok(None);
    }
    let b = task.read_mem(ptr, 8)?;
    Ok(Some(u64::from_le_bytes(b[..8].try_into().expect("8"))))
}

/// Whether signal `sig` ends a process when it has no handler and is not ignored.
fn terminates_by_default(sig: i32) -> bool {
    (1..=64).contains(&sig)
        && !matches!(
            sig,
            libc::SIGCHLD
                | libc::SIGCONT
                | libc::SIGURG
                | libc::SIGWINCH
                | libc::SIGSTOP
                | libc::SIGTSTP
                | libc::SIGTTIN
                | libc::SIGTTOU
        )
}

/// Whether signal `sig` has a handler in thread `tid`'s process (`SigCgt` in
/// `/proc/TID/status`).
fn caught(tid: i32, sig: i32) -> bool {
    status_mask(tid, "SigCgt:").is_some_and(|mask| has_signal(mask, sig))
}

/// Whether delivering signal `sig` to thread `tid` discards it: it is ignored
/// (`SigIgn`), or has its default action and that action is to ignore it (or, for
/// SIGCONT, only to continue a stopped process).
fn ignored(tid: i32, sig: i32) -> bool {
    status_mask(tid, "SigIgn:").is_some_and(|mask| has_signal(mask, sig))
        || (!caught(tid, sig)
            && matches!(
                sig,
                libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
            ))
}

/// A signal mask line (`SigCgt:`, `SigIgn:`...) of `/proc/TID/status`.
fn status_mask(tid: i32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}

fn has_signal(mask: u64, sig: i32) -> bool {
    (1..=64).contains(&sig) && mask & (1 << (sig - 1)) != 0
}

/// The process a successful `kill(pid, SIGKILL)` or `tgkill(tgid, tid, SIGKILL)` ended.
fn sigkilled_process(s: &SyscallEvent) -> Option<i32> {
    let (target, sig) = match s.nr {
        nr::KILL => (s.args[0] as i32, s.args[1] as i32),
        nr::TGKILL => (s.args[0] as i32, s.args[2] as i32),
        _ => return None,
    };
    (s.ret == 0 && sig == libc::SIGKILL && target > 0).then_some(target)
}

/// The child a wait-family call reaped: wait4's result, or waitid's `si_pid` (from the
/// siginfo it wrote) unless it only looked (`WNOWAIT`).
fn reaped_child(s: &SyscallEvent) -> Option<i32> {
    match s.nr {
        nr::WAIT4 if s.ret > 0 => Some(s.ret as i32),
        nr::WAITID if s.ret == 0 && s.args[3] & libc::WNOWAIT as u64 == 0 => {
            let info = s.writes.iter().find(|w| w.addr == s.args[2])?;
            let pid = info.data.get(16..20)?;
            Some(i32::from_le_bytes(pid.try_into().ok()?)).filter(|&p| p > 0)
        }
        _ => None,
    }
}

/// Whether a recorded syscall runs for real at replay (otherwise it is emulated).
fn runs_at_replay(s: &SyscallEvent) -> bool {
    let Some(desc) = syscalls::lookup(s.nr) else {
        return false;
    };
    let creates_task = matches!(s.nr, nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK);
    if desc.answer.is_some() || ((s.nr == nr::EXECVE || creates_task) && s.ret < 0) {
        // A failed execve or clone changed nothing: its error is injected like any
        // result (a clone that failed has no new-task event to follow).
        return false;
    }
    let (class, _, _) = syscalls::resolve_request(desc, &s.args);
    matches!(class, Class::Executed)
}

/// Whether an executed call must return at replay what it returned at record (its
/// row's `same_result`).
fn compares_result(sysno: u64) -> bool {
    syscalls::lookup(sysno).map_or(true, |d| d.same_result)
}

fn needs_subleaf(leaf: u32) -> bool {
    matches!(
        leaf,
        4 | 7
            | 0xb
            | 0xd
            | 0xf
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1d
            | 0x1e
            | 0x1f
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001d
            | 0x8000_0020
            | 0x8000_0026
    )
}

fn describe_call(sysno: u64, args: &[u64; 6]) -> String {
    let a: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
    format!("{}({})", syscalls::name_of(sysno), a.join(", "))
}
