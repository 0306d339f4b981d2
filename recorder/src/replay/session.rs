//! A replay as a session that a debugger drives: it stops at any event boundary, at
//! software breakpoints and after single instructions, and goes on from there.
//!
//! [`crate::replay::replay`] is a loop over [`ReplaySession::run_to_end`]. Events are
//! numbered from 0 as `dump` prints them; the session stands *before* event
//! [`ReplaySession::event_index`], with every earlier one replayed and checked.
//!
//! Threads are named by their recorded tids (what the program saw). A session uses
//! the thread that opened it as the tracer (ptrace requires one thread), so it is not
//! `Send`; it pins that thread to the replay's core while it lives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::breakpoints::Owner;
use super::tree::RThread;
use super::{sandbox, Observer, OutputSink, ReplayStats, ReplaySummary, Replayer};
use crate::errors::{Error, Result};
use crate::ptrace::{FpuState, Regs, Stop, Task};
use crate::spawn::{self, SpawnSpec};
use crate::trace::{Event, ExitKind, TraceDir};

/// What a session is given besides the trace.
pub struct ReplayOptions<'a> {
    /// Receives what the replayed program writes to its stdout and stderr, as it writes.
    pub sink: Box<OutputSink<'a>>,
    /// Called at every syscall event with the replayed process's pid and the event
    /// number, while the process is stopped.
    pub observer: Box<Observer<'a>>,
}

impl Default for ReplayOptions<'_> {
    /// Output discarded, no observer.
    fn default() -> Self {
        ReplayOptions {
            sink: Box::new(|_, _| {}),
            observer: Box::new(|_, _| {}),
        }
    }
}

/// Why a session stopped.
#[derive(Debug)]
pub enum SessionStop {
    /// Between events: the next one to replay is this one.
    Event(u64),
    /// Thread `tid` reached the breakpoint at `addr` (its `rip` is `addr`; the
    /// instruction there has not run).
    Breakpoint {
        /// Recorded tid of the thread.
        tid: i32,
        /// The breakpoint's address.
        addr: u64,
    },
    /// Thread `tid` triggered the debugger's watchpoint `slot` (see
    /// [`ReplaySession::set_watchpoint`]); the access has happened, `rip` is after the
    /// instruction that made it.
    Watchpoint {
        /// Recorded tid of the thread.
        tid: i32,
        /// Which watchpoint.
        slot: usize,
    },
    /// Thread `tid` ran one instruction (a `syscall` instruction with its recorded
    /// effects).
    Stepped {
        /// Recorded tid of the thread.
        tid: i32,
    },
    /// The program's end was replayed; the session is over.
    Exited {
        /// How the main process ended.
        status: ExitKind,
        /// The whole replay's summary.
        summary: ReplaySummary,
    },
    /// The replay did not do what the recording did ([`Error::Divergence`], which says
    /// at which event and how); the session is over.
    Diverged(Error),
}

/// A thread of the replayed program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThreadInfo {
    /// Recorded tid (the one the program saw).
    pub tid: i32,
    /// Recorded tgid of its process.
    pub tgid: i32,
    /// Its tid on this machine, now.
    pub real_tid: i32,
}

/// Undoes what [`ReplaySession::open`] did to the engine's thread.
struct EngineThread {
    cpu_set: Vec<usize>,
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        crate::arch::self_traps::disarm_for_this_thread();
        spawn::pin_self(&self.cpu_set);
    }
}

/// What a session and the checkpoints taken from it share: the engine thread's
/// settings, the sandbox and the stub executable (the program execs it again).
pub(super) struct Shared {
    _engine: EngineThread,
    _sandbox: Option<sandbox::Sandbox>,
    _stub: StubFile,
}

/// A replay in progress. See the module documentation.
pub struct ReplaySession<'a> {
    pub(super) r: Replayer<'a>,
    shared: std::rc::Rc<Shared>,
}

impl<'a> ReplaySession<'a> {
    /// Opens the trace at `trace_path`, starts the program and stands before event 1
    /// (event 0, the first exec, is replayed by starting).
    pub fn open(trace_path: &Path, options: ReplayOptions<'a>) -> Result<Self> {
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
                what: "this machine cannot trap cpuid (no CPUID faulting), which the recording relies on"
                    .into(),
                hint: "replay on a machine with CPUID faulting (most Intel CPUs, recent AMD ones)"
                    .into(),
            });
        }

        let stub = StubFile::create()?;
        let sandbox = sandbox::Sandbox::new(&[&trace.path], &[&stub.dir]);
        match &sandbox {
            Some(s) => tracing::debug!("replay sandbox: {}", s.describe()),
            None => tracing::info!(
                "this kernel offers no Landlock: the replay is confined by the engine alone"
            ),
        }
        let cpu_set = spawn::cpu_set();
        let pinned = replay_core(&header, &cpu_set);
        spawn::pin_self(&[pinned]);
        crate::arch::self_traps::arm_for_this_thread(header.cpuid_faulting);
        let engine = EngineThread { cpu_set };
        let spec = SpawnSpec {
            path: &stub.path,
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
            process_group: None,
            foreground_tty: None,
        };
        let pid = spawn::spawn_traced(&spec)?;
        let mut r = Replayer {
            trace: trace.clone(),
            task: Task::new(pid),
            threads: HashMap::new(),
            leader: first.tid,
            zombies: HashMap::new(),
            stub_path: stub.path.clone(),
            ended: None,
            events,
            index: 1,
            brk: HashMap::from([(first.tid, first.brk)]),
            fd_tables: crate::output::FdTables::default(),
            pidns: crate::pidns::PidNamespaces::default(),
            stats: ReplayStats::default(),
            shared_copies: HashMap::new(),
            shm_segments: HashMap::new(),
            mapped_fds: HashMap::new(),
            untraced,
            syscallbuf: header.syscallbuf,
            memory_digest: crate::preempt::memory::Definition::of_format(header.format_version),
            clean_frames: header.format_version >= 9,
            sigkilled: Default::default(),
            filtered_call: None,
            batch_limit: 0,
            ahead: Default::default(),
            sink: options.sink,
            observer: options.observer,
            pending: None,
            over: false,
            summary: None,
            bps: Default::default(),
            watches: Default::default(),
        };
        let started = r.start(&first).and_then(|_| r.next_event());
        match started {
            Ok(next) => r.pending = next,
            Err(e) => {
                r.kill_all();
                return Err(e);
            }
        }
        Ok(ReplaySession {
            r,
            shared: std::rc::Rc::new(Shared {
                _engine: engine,
                _sandbox: sandbox,
                _stub: stub,
            }),
        })
    }

    pub(super) fn from_parts(r: Replayer<'a>, shared: std::rc::Rc<Shared>) -> Self {
        ReplaySession { r, shared }
    }

    pub(super) fn shared(&self) -> std::rc::Rc<Shared> {
        self.shared.clone()
    }

    /// The number of the next event to replay (every earlier one is replayed).
    pub fn event_index(&self) -> u64 {
        self.r.index
    }

    /// The next event to replay, if the session is not over.
    pub fn next_event_peek(&self) -> Option<&Event> {
        if self.r.over {
            return None;
        }
        self.r.pending.as_ref()
    }

    /// [`ReplaySession::next_event_peek`] in words (as `dump` describes events).
    pub fn describe_next(&self) -> Option<String> {
        self.next_event_peek().map(Event::describe)
    }

    /// Whether the session is over (the program's end was replayed, the replay
    /// diverged or failed): nothing runs any more.
    pub fn is_over(&self) -> bool {
        self.r.over
    }

    /// Counters about the replay so far.
    pub fn stats(&self) -> ReplayStats {
        self.r.stats
    }

    /// How the replay ended, once the program's end was replayed.
    pub fn summary(&self) -> Option<&ReplaySummary> {
        self.r.summary.as_ref()
    }

    /// Replays the next event and stops after it ([`SessionStop::Event`]), unless a
    /// breakpoint is reached on the way, the program ends or the replay diverges.
    /// After a breakpoint stop, the same event goes on from the breakpoint.
    pub fn step_event(&mut self) -> Result<SessionStop> {
        self.step_events_before(self.r.index + 1)
    }

    /// [`ReplaySession::step_event`], letting one call replay as many events as come
    /// before event `limit` (a run of buffered calls replayed from the feed, see
    /// `replay/feed.rs`): it stops at a boundary no later than `limit` (and after at
    /// least one event, unless it stops earlier), or where a breakpoint or watchpoint
    /// is met, at the position where [`ReplaySession::step_event`] repeated would
    /// have met it. A `limit` not after the session's event is taken as the next one.
    pub fn step_events_before(&mut self, limit: u64) -> Result<SessionStop> {
        let limit = limit.max(self.r.index + 1);
        self.check_open()?;
        self.r.batch_limit = limit;
        let tid = self.r.pending.as_ref().map_or(0, Event::tid);
        match self.r.advance() {
            Ok(None) => Ok(SessionStop::Event(self.r.index)),
            Ok(Some(summary)) => {
                self.r.over = true;
                self.r.summary = Some(summary.clone());
                Ok(SessionStop::Exited {
                    status: summary.exit,
                    summary,
                })
            }
            Err(Error::Breakpoint { tid: real, addr }) => Ok(SessionStop::Breakpoint {
                tid: self.recorded_tid(real).unwrap_or(tid),
                addr,
            }),
            Err(Error::Watchpoint { tid: real, slot }) => Ok(SessionStop::Watchpoint {
                tid: self.recorded_tid(real).unwrap_or(tid),
                slot,
            }),
            Err(e @ Error::Divergence { .. }) => {
                self.fail();
                Ok(SessionStop::Diverged(e))
            }
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// Replays events until event `n` is the next one, unless a breakpoint, the end or
    /// a divergence comes first. The session cannot go back: `n` must not be behind it.
    pub fn run_to_event(&mut self, n: u64) -> Result<SessionStop> {
        self.check_open()?;
        if n < self.r.index {
            return Err(Error::Unsupported {
                what: format!(
                    "event {n} is behind the replay session, which stands at event {}",
                    self.r.index
                ),
                hint: "open the trace again: a session only goes forward".into(),
            });
        }
        while self.r.index < n {
            match self.step_events_before(n)? {
                SessionStop::Event(_) => {}
                other => return Ok(other),
            }
        }
        Ok(SessionStop::Event(self.r.index))
    }

    /// Replays until a breakpoint, the program's end or a divergence.
    pub fn run_to_end(&mut self) -> Result<SessionStop> {
        loop {
            match self.step_events_before(u64::MAX)? {
                SessionStop::Event(_) => {}
                other => return Ok(other),
            }
        }
    }

    /// Runs one instruction of thread `tid`. The events before its next one (those of
    /// other threads, and those that run none of its code: a signal queued, a shared
    /// file noted, a blocked call completed) are replayed first, as is a preemption
    /// point it stands at. A `syscall` instruction is run as its recorded event says
    /// (a call the recording let through runs for real).
    pub fn single_step(&mut self, tid: i32) -> Result<SessionStop> {
        self.check_open()?;
        loop {
            if !self.r.threads.contains_key(&tid) {
                return Err(Error::Unsupported {
                    what: format!("the replayed program has no thread {tid} at this point"),
                    hint: "list the threads the session has".into(),
                });
            }
            let Some(ev) = self.r.pending.as_ref() else {
                // The trace ends here: replaying says so.
                return self.step_event();
            };
            let own = ev.tid() == tid && !matches!(ev, Event::Exit { .. });
            let completes_call = own && self.r.completes_call(ev);
            if own && !self.r.runs_no_code(ev) && !self.r.at_preemption_point(tid)? {
                break;
            }
            match self.step_event()? {
                SessionStop::Event(_) if completes_call => return Ok(SessionStop::Stepped { tid }),
                SessionStop::Event(_) => {}
                other => return Ok(other),
            }
        }
        let mut th = self.r.threads.remove(&tid).expect("checked above");
        let stepped = self.r.step_instruction(&mut th);
        self.r.threads.insert(tid, th);
        match stepped {
            Ok(Instruction::Ran) => Ok(SessionStop::Stepped { tid }),
            Ok(Instruction::Watched(slot)) => Ok(SessionStop::Watchpoint { tid, slot }),
            // A syscall, or a trap the event replays (rdtsc, cpuid, a fault): its event
            // runs the instruction again.
            Ok(Instruction::Event) => loop {
                match self.step_event()? {
                    // A call recorded as blocked: the thread is held at its entry until
                    // the event that completes it, after other threads' events.
                    SessionStop::Event(_)
                        if self.r.threads.get(&tid).is_some_and(|t| t.held.is_some()) => {}
                    SessionStop::Event(_) => return Ok(SessionStop::Stepped { tid }),
                    other => return Ok(other),
                }
            },
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// Whether [`ReplaySession::single_step`] of `tid` would run one of its
    /// instructions right away, with no event replayed first (its next event is its own
    /// and runs its code, and it does not stand at a preemption point).
    pub fn can_step(&mut self, tid: i32) -> Result<bool> {
        self.check_open()?;
        let Some(ev) = self.r.pending.as_ref() else {
            return Ok(false);
        };
        let own = ev.tid() == tid && !matches!(ev, Event::Exit { .. });
        Ok(own
            && self.r.threads.contains_key(&tid)
            && !self.r.runs_no_code(ev)
            && !self.r.at_preemption_point(tid)?)
    }

    /// Arms (`Some`) or disarms (`None`) the debugger's watchpoint `slot`
    /// (`0..watch::SLOTS`, debug registers DR1 to DR3) on every thread. A thread that
    /// triggers it stops the session with [`SessionStop::Watchpoint`].
    pub fn set_watchpoint(
        &mut self,
        slot: usize,
        watch: Option<super::watch::Watchpoint>,
    ) -> Result<()> {
        if slot >= super::watch::SLOTS {
            return Err(Error::Unsupported {
                what: format!("watchpoint slot {slot}"),
                hint: format!("a session has {} watchpoints", super::watch::SLOTS),
            });
        }
        if let Some(w) = watch {
            if !matches!(w.len, 1 | 2 | 4 | 8) || w.addr % w.len as u64 != 0 {
                return Err(Error::Unsupported {
                    what: format!("a watchpoint of {} bytes at {:#x}", w.len, w.addr),
                    hint: "watch 1, 2, 4 or 8 bytes aligned to their size".into(),
                });
            }
        }
        self.r.watches.slots[slot] = watch;
        self.r.watches.generation += 1;
        Ok(())
    }

    /// The threads of the replayed program, by recorded tid.
    pub fn threads(&self) -> Vec<ThreadInfo> {
        let mut v: Vec<ThreadInfo> = self
            .r
            .threads
            .iter()
            .map(|(tid, t)| ThreadInfo {
                tid: *tid,
                tgid: t.tgid,
                real_tid: t.task.tid,
            })
            .collect();
        v.sort();
        v
    }

    /// The general registers of thread `tid` (recorded tid).
    pub fn regs(&self, tid: i32) -> Result<Regs> {
        self.thread(tid)?.task.regs()
    }

    /// The FPU/SSE/AVX state of thread `tid` (the xsave area where the kernel offers
    /// it).
    pub fn fpu_state(&self, tid: i32) -> Result<FpuState> {
        self.thread(tid)?.task.fpu_state()
    }

    /// Up to `len` bytes of thread `tid`'s memory at `addr` (fewer where it stops being
    /// readable), as the program has them: the engine's breakpoints hidden.
    pub fn read_memory(&mut self, tid: i32, addr: u64, len: usize) -> Result<Vec<u8>> {
        let th = self.thread_mut(tid)?;
        let tgid = th.tgid;
        let mut buf = th.task.read_mem_partial(addr, len)?;
        self.r.bps.hide(tgid, addr, &mut buf);
        Ok(buf)
    }

    /// Sets the general registers of thread `tid` (the debugger's landing after a number
    /// of ticks, see `recorder::ticks::TickLayout`).
    pub fn set_regs(&mut self, tid: i32, regs: &Regs) -> Result<()> {
        self.check_open()?;
        self.thread(tid)?.task.set_regs(regs)
    }

    /// Writes `data` into thread `tid`'s memory at `addr` (data, not code: a breakpoint
    /// of the engine there would be overwritten).
    pub fn write_memory(&mut self, tid: i32, addr: u64, data: &[u8]) -> Result<()> {
        self.check_open()?;
        self.thread_mut(tid)?.task.write_mem(addr, data)
    }

    /// Puts a software breakpoint at `addr` in every process of the program; it stays
    /// through new code mapped there (mmap, exec). Where nothing is mapped yet, it is
    /// written once something is.
    pub fn insert_breakpoint(&mut self, addr: u64) -> Result<()> {
        self.check_open()?;
        let procs = one_task_per_process(&mut self.r.threads);
        self.r.bps.add(addr, Owner::User, procs)
    }

    /// Takes out the breakpoint at `addr`; returns whether there was one.
    pub fn remove_breakpoint(&mut self, addr: u64) -> Result<bool> {
        self.check_open()?;
        let procs = one_task_per_process(&mut self.r.threads);
        self.r.bps.remove(addr, Owner::User, procs)
    }

    fn thread(&self, tid: i32) -> Result<&RThread> {
        self.r.threads.get(&tid).ok_or_else(|| no_thread(tid))
    }

    fn thread_mut(&mut self, tid: i32) -> Result<&mut RThread> {
        self.r.threads.get_mut(&tid).ok_or_else(|| no_thread(tid))
    }

    fn recorded_tid(&self, real: i32) -> Option<i32> {
        self.r
            .threads
            .iter()
            .find(|(_, t)| t.task.tid == real)
            .map(|(tid, _)| *tid)
    }

    fn check_open(&self) -> Result<()> {
        if self.r.over {
            return Err(Error::Unsupported {
                what: "the replay session is over".into(),
                hint: "open the trace again".into(),
            });
        }
        Ok(())
    }

    /// The replay failed: nothing of the program runs any more.
    fn fail(&mut self) {
        self.r.over = true;
        self.r.kill_all();
    }
}

impl Drop for ReplaySession<'_> {
    fn drop(&mut self) {
        self.r.kill_all();
    }
}

fn no_thread(tid: i32) -> Error {
    Error::Unsupported {
        what: format!("the replayed program has no thread {tid} at this point"),
        hint: "list the threads the session has".into(),
    }
}

fn one_task_per_process(threads: &mut HashMap<i32, RThread>) -> Vec<(i32, &mut Task)> {
    let mut seen = std::collections::HashSet::new();
    threads
        .values_mut()
        .filter(|t| seen.insert(t.tgid))
        .map(|t| (t.tgid, &mut t.task))
        .collect()
}

/// What a single step of a thread came to.
pub(super) enum Instruction {
    /// The instruction ran (or a pending signal's handler was entered).
    Ran,
    /// The instruction is a syscall or trapped: its event runs it.
    Event,
    /// The instruction ran and triggered the debugger's watchpoint in this slot.
    Watched(usize),
}

impl Replayer<'_> {
    /// Whether `ev` (of a thread that exists) runs none of its thread's code: a note,
    /// the rest of an exec, a signal queued at a syscall stop or given at a preemption
    /// point, the end of a call its thread is inside.
    fn runs_no_code(&self, ev: &Event) -> bool {
        matches!(
            ev,
            Event::SharedFile { .. }
                | Event::SharedFileWrite { .. }
                | Event::KernelWrite { .. }
                | Event::PidNamespace { .. }
                | Event::Exec(_)
                | Event::Signal { injected: true, .. }
                | Event::SignalAtPoint { .. }
        ) || self.completes_call(ev)
    }

    /// Whether `ev` completes a call its thread is already inside (held blocked, or a
    /// fork-family call whose child exists).
    fn completes_call(&self, ev: &Event) -> bool {
        self.threads.get(&ev.tid()).is_some_and(|t| {
            t.held.is_some() || (t.in_fork.is_some() && matches!(ev, Event::Syscall(_)))
        })
    }

    /// Whether the next event is a preemption of thread `tid` and the thread stands at
    /// that point.
    fn at_preemption_point(&mut self, tid: i32) -> Result<bool> {
        let state = match self.pending.as_ref() {
            Some(Event::Preempt { state, .. } | Event::Preempted { state, .. }) => state,
            _ => return Ok(false),
        };
        let Some((tgid, task)) = self.threads.get(&tid).map(|t| (t.tgid, t.task.tid)) else {
            return Ok(false);
        };
        let others = self.other_stacks(tid, tgid, task);
        let th = self.threads.get_mut(&tid).expect("checked above");
        let regs = th.task.regs()?;
        let rip = state.regs.get(16).copied().unwrap_or(0);
        Ok(regs.rip == rip
            && crate::preempt::matches(&mut th.task, &regs, state, self.memory_digest, &others)?)
    }

    /// Runs one instruction of `th`, unless it is a traced syscall (left to its event).
    fn step_instruction(&mut self, th: &mut RThread) -> Result<Instruction> {
        let regs = th.task.regs()?;
        let code = self.read_code(th, regs.rip, 2)?;
        if code == crate::arch::SYSCALL_INSN && th.signal == 0 {
            let nr = regs.rax;
            let args = crate::arch::syscall_args(&regs);
            // An untraced call the program's seccomp filter refused is an event too.
            let filtered = matches!(
                self.pending.as_ref(),
                Some(Event::Filtered { nr: n, args: a, rip, .. })
                    if *n == nr && *a == args && *rip == regs.rip + 2
            );
            if !self.untraced.contains(&nr)
                || !crate::syscalls::untraced_call(nr, &args)
                || filtered
            {
                return Ok(Instruction::Event);
            }
            // A call the recording let through: it runs now, for real.
            self.bps.lift(th.tgid, regs.rip, &mut th.task)?;
            let ret = crate::inject::inject_syscall(&mut th.task, regs.rip, nr, &args);
            self.bps.rearm(th.tgid, regs.rip, &mut th.task)?;
            let mut r = regs;
            r.rax = ret? as u64;
            r.rcx = regs.rip + 2;
            r.r11 = regs.eflags;
            r.rip += 2;
            th.task.set_regs(&r)?;
            self.stats.untraced += 1;
            return Ok(Instruction::Ran);
        }
        if th.watch_generation != self.watches.generation {
            self.watches.apply(&th.task)?;
            th.watch_generation = self.watches.generation;
        }
        self.bps.lift(th.tgid, regs.rip, &mut th.task)?;
        let sig = std::mem::take(&mut th.signal);
        let stepped = match self.enter_handler_first(th, sig) {
            // The step into the handler, its frame cleaned as at record.
            Ok(Some(stop)) => Ok(stop),
            Ok(None) => super::single_step(&th.task, sig),
            Err(e) => Err(e),
        };
        self.bps.rearm(th.tgid, regs.rip, &mut th.task)?;
        Ok(match stepped? {
            Stop::Signal(libc::SIGTRAP) if self.watches.any() => {
                match self.watches.triggered(&th.task)? {
                    // Not in the replay's own entry code (as when resumed).
                    Some(_) if self.in_entry_code(th)? => Instruction::Ran,
                    Some(slot) => Instruction::Watched(slot),
                    None => Instruction::Ran,
                }
            }
            Stop::Signal(libc::SIGTRAP) => Instruction::Ran,
            _ => Instruction::Event,
        })
    }
}

/// The core the replay runs on. A recording without CPUID faulting let the program run
/// cpuid natively, and some answers name the core (the APIC ids of leaves 1, 0xB and
/// 0x1F), so its replay runs on the recorded core when this machine has it. Without it,
/// or on another CPU model, the answers may differ; that is said, not hidden.
pub(super) fn replay_core(header: &crate::trace::Header, cpu_set: &[usize]) -> usize {
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
pub(super) struct StubFile {
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
