//! The recorder's [`ReplaySession`] as the debugger's [`Session`].

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use recorder::output::Stream;
use recorder::ptrace::{FpuState, Regs};
use recorder::replay::watch::Watchpoint;
use recorder::replay::{Checkpoint, ReplayOptions, ReplaySession, SessionStop};

use recorder::ticks::{TickLayout, FAST_LEN};

use crate::backend::{Opener, Session, Stop, TickCounter, Watch, WatchKind};

/// Where each thread's tick budget and the refill code are, by recorded tid, as its
/// `chaos_tick` calls said (see `recorder::ticks::TICK_MAGIC`).
pub type TickSites = Rc<HashMap<i32, (u64, u64)>>;

/// Where the replayed program's output goes while it is debugged.
pub type Output = Rc<dyn Fn(Stream, &[u8])>;

/// Opens sessions of one trace. The program's output is passed on once: a write is
/// shown the first time the replay reaches its event, not again when going backwards
/// re-runs it.
pub struct TraceOpener {
    path: PathBuf,
    pid: Option<i32>,
    begin: u64,
    end: u64,
    end_at_call: bool,
    output: Output,
    /// Events whose output was shown: those before this number.
    shown: Rc<Cell<u64>>,
    ticks: TickSites,
}

impl TraceOpener {
    /// Sessions of the trace at `path` showing process `pid` (recorded pid; `None`:
    /// the first process), which exists from boundary `begin` on; forward runs end at
    /// boundary `end`, then on to the exit call's instruction when `end_at_call` (the
    /// event at `end` is that call).
    pub fn new(
        path: &Path,
        pid: Option<i32>,
        (begin, end, end_at_call): (u64, u64, bool),
        output: Output,
    ) -> Self {
        TraceOpener {
            path: path.to_path_buf(),
            pid,
            begin,
            end,
            end_at_call,
            output,
            shown: Rc::new(Cell::new(0)),
            ticks: TickSites::default(),
        }
    }

    /// Threads' tick counters, for landing after a number of ticks (see
    /// [`Session::tick_counter`]).
    pub fn with_ticks(mut self, ticks: TickSites) -> Self {
        self.ticks = ticks;
        self
    }
}

impl TraceOpener {
    /// Output shown once per event (see [`TraceOpener`]).
    fn options(&self) -> ReplayOptions<'static> {
        let current = Rc::new(Cell::new(0u64));
        let (c1, c2, shown, output) = (
            current.clone(),
            current,
            self.shown.clone(),
            self.output.clone(),
        );
        ReplayOptions {
            // The observer is called at every syscall event before its output.
            observer: Box::new(move |_, event| c1.set(event)),
            sink: Box::new(move |stream, data| {
                let event = c2.get();
                if event >= shown.get() {
                    output(stream, data);
                    shown.set(event + 1);
                }
            }),
        }
    }
}

/// A checkpoint of a [`LiveSession`].
pub struct LiveCheckpoint {
    cp: Checkpoint,
    root: i32,
}

impl Opener for TraceOpener {
    type Session = LiveSession;

    fn open(&self) -> recorder::Result<LiveSession> {
        let s = ReplaySession::open(&self.path, self.options())?;
        let root = self
            .pid
            .unwrap_or_else(|| s.threads().first().map_or(0, |t| t.tgid));
        Ok(LiveSession {
            s,
            root,
            ticks: self.ticks.clone(),
        })
    }

    fn restore(&self, checkpoint: &mut LiveCheckpoint) -> recorder::Result<LiveSession> {
        let s = ReplaySession::restore(&mut checkpoint.cp, self.options())?;
        Ok(LiveSession {
            s,
            root: checkpoint.root,
            ticks: self.ticks.clone(),
        })
    }

    fn begin(&self) -> u64 {
        self.begin
    }

    fn end_at_call(&self) -> bool {
        self.end_at_call
    }

    fn end(&self) -> u64 {
        self.end
    }
}

/// A replay session of the recorder.
pub struct LiveSession {
    s: ReplaySession<'static>,
    /// The process gdb debugs (recorded tgid): the first one, or `--gdb-pid`'s.
    root: i32,
    ticks: TickSites,
}

impl LiveSession {
    fn map(&self, stop: SessionStop) -> recorder::Result<Stop> {
        Ok(match stop {
            SessionStop::Event(_) => Stop::Event,
            SessionStop::Breakpoint { tid, addr } => Stop::Breakpoint { tid, addr },
            SessionStop::Watchpoint { tid, slot } => Stop::Watchpoint { tid, slot },
            SessionStop::Stepped { tid } => Stop::Stepped { tid },
            SessionStop::Exited { status, .. } => Stop::Exited(status),
            SessionStop::Diverged(e) => return Err(e),
        })
    }

    /// Whether thread `tid` belongs to the debugged process.
    fn is_ours(&self, tid: i32) -> bool {
        self.s
            .threads()
            .iter()
            .any(|t| t.tid == tid && t.tgid == self.root)
    }

    /// A thread of the debugged process, for reading its memory.
    fn any_thread(&self) -> i32 {
        let threads = self.threads();
        self.running_thread()
            .filter(|t| threads.contains(t))
            .or_else(|| threads.first().copied())
            .unwrap_or(0)
    }
}

impl Session for LiveSession {
    type Error = recorder::Error;
    type Checkpoint = LiveCheckpoint;

    fn checkpoint(&mut self) -> recorder::Result<Option<LiveCheckpoint>> {
        Ok(self.s.checkpoint()?.map(|cp| LiveCheckpoint {
            cp,
            root: self.root,
        }))
    }

    fn event_index(&self) -> u64 {
        self.s.event_index()
    }

    fn resume(&mut self) -> recorder::Result<Stop> {
        self.resume_before(self.s.event_index() + 1)
    }

    fn resume_before(&mut self, limit: u64) -> recorder::Result<Stop> {
        // A signal given to a thread of the debugged process is a stop of its own.
        let signal = match self.s.next_event_peek() {
            Some(
                recorder::trace::Event::Signal { tid, signo, .. }
                | recorder::trace::Event::SignalAtPoint { tid, signo, .. },
            ) if self.is_ours(*tid) => Some((*tid, *signo)),
            _ => None,
        };
        loop {
            let stop = self.s.step_events_before(limit)?;
            if let (SessionStop::Event(_), Some((tid, signo))) = (&stop, signal) {
                return Ok(Stop::Signal { tid, signo });
            }
            // gdb sees one process: a breakpoint or watchpoint met by a thread of
            // another one (they are set in every process) is passed over, the same
            // way every time.
            if let SessionStop::Breakpoint { tid, .. } | SessionStop::Watchpoint { tid, .. } = stop
            {
                if !self.is_ours(tid) {
                    continue;
                }
            }
            return self.map(stop);
        }
    }

    fn single_step(&mut self) -> recorder::Result<Stop> {
        let Some(tid) = self.running_thread() else {
            return self.resume();
        };
        if !self.s.can_step(tid)? {
            // An event that runs no code of the thread (a note, a signal queued, a
            // blocked call completing, a preemption point reached): replayed alone.
            return self.resume();
        }
        let stop = self.s.single_step(tid)?;
        self.map(stop)
    }

    fn ready_to_step(&mut self) -> recorder::Result<bool> {
        match self.running_thread() {
            Some(tid) => self.s.can_step(tid),
            None => Ok(false),
        }
    }

    fn running_thread(&self) -> Option<i32> {
        self.s.next_event_peek().map(|e| e.tid())
    }

    fn threads(&self) -> Vec<i32> {
        // Only the debugged process's: gdb sees one process.
        self.s
            .threads()
            .iter()
            .filter(|t| t.tgid == self.root)
            .map(|t| t.tid)
            .collect()
    }

    fn thread_name(&self, tid: i32) -> Option<String> {
        // The replay gives each thread the name the recorded calls gave it.
        let real = self
            .s
            .threads()
            .into_iter()
            .find(|t| t.tid == tid)?
            .real_tid;
        let name = std::fs::read_to_string(format!("/proc/{real}/task/{real}/comm")).ok()?;
        Some(name.trim_end_matches('\n').to_string())
    }

    fn regs(&mut self, tid: i32) -> recorder::Result<Regs> {
        self.s.regs(tid)
    }

    fn fpu_state(&mut self, tid: i32) -> recorder::Result<FpuState> {
        self.s.fpu_state(tid)
    }

    fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> recorder::Result<usize> {
        let tid = self.any_thread();
        let data = self.s.read_memory(tid, addr, buf.len())?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn insert_breakpoint(&mut self, addr: u64) -> recorder::Result<()> {
        self.s.insert_breakpoint(addr)
    }

    fn remove_breakpoint(&mut self, addr: u64) -> recorder::Result<()> {
        self.s.remove_breakpoint(addr).map(|_| ())
    }

    fn set_watchpoint(&mut self, slot: usize, watch: Option<Watch>) -> recorder::Result<()> {
        self.s.set_watchpoint(
            slot,
            watch.map(|w| Watchpoint {
                addr: w.addr,
                len: w.len,
                write_only: w.kind == WatchKind::Write,
            }),
        )
    }

    fn tick_counter(&mut self, tid: i32) -> recorder::Result<Option<TickCounter>> {
        let Some(&(budget, refill)) = self.ticks.get(&tid) else {
            return Ok(None);
        };
        if !self.is_ours(tid) || refill < FAST_LEN {
            return Ok(None);
        }
        // The recorded addresses hold only if the thread still runs that code with that
        // TLS (a tid used again, an exec): check the code's shape and where it finds
        // the budget.
        let layout = TickLayout { refill };
        let code = self.s.read_memory(tid, layout.fast(), FAST_LEN as usize)?;
        let s = &mut self.s;
        let tpoff = layout.tpoff(&code, |got| {
            let word = s.read_memory(tid, got, 8).ok()?;
            Some(u64::from_le_bytes(word.try_into().ok()?))
        });
        let fs_base = self.s.regs(tid)?.fs_base;
        Ok(tpoff
            .filter(|t| fs_base.wrapping_add(*t) == budget)
            .map(|_| TickCounter { budget, layout }))
    }

    fn write_memory(&mut self, tid: i32, addr: u64, data: &[u8]) -> recorder::Result<()> {
        self.s.write_memory(tid, addr, data)
    }

    fn set_regs(&mut self, tid: i32, regs: &Regs) -> recorder::Result<()> {
        self.s.set_regs(tid, regs)
    }
}
