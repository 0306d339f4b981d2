//! What the debugger needs from a replay: a session that stops at event boundaries,
//! breakpoints, watchpoints and single instructions, and shows registers and memory.
//!
//! The recorder's `ReplaySession` implements it (see `session_impl.rs`); the tests of
//! the timeline implement it with a small machine of their own, so the position
//! bookkeeping is tested without ptrace.

use recorder::ptrace::{FpuState, Regs};
use recorder::ticks::TickLayout;
use recorder::trace::ExitKind;

/// Where a session stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// At the boundary before event [`Session::event_index`]: every thread stopped
    /// between two events.
    Event,
    /// The running thread arrived at an inserted breakpoint (its `rip` is `addr`, the
    /// instruction there not executed).
    Breakpoint {
        /// The thread.
        tid: i32,
        /// The breakpoint's address.
        addr: u64,
    },
    /// The running thread executed an instruction that touched a watched range (its
    /// `rip` is after that instruction).
    Watchpoint {
        /// The thread.
        tid: i32,
        /// Which watchpoint (index into the slots given to [`Session::set_watchpoint`]).
        slot: usize,
    },
    /// At the boundary after a signal was given to a thread of the debugged process
    /// (queued to it, or the fault it raised): the next event delivers it as at
    /// record (its handler runs, or it ends the process).
    Signal {
        /// The thread.
        tid: i32,
        /// The signal (Linux numbering).
        signo: i32,
    },
    /// One instruction was executed by [`Session::single_step`].
    Stepped {
        /// The thread.
        tid: i32,
    },
    /// The program ended.
    Exited(ExitKind),
}

/// What a hardware watchpoint watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Watch {
    /// First byte.
    pub addr: u64,
    /// 1, 2, 4 or 8 bytes, aligned to its size.
    pub len: u8,
    /// What triggers it.
    pub kind: WatchKind,
}

/// What access triggers a watchpoint. x86 debug registers cannot watch reads alone:
/// a read watchpoint triggers on reads and writes (gdb checks the value to tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    /// Writes.
    Write,
    /// Reads or writes.
    Access,
}

/// The tick counter of a thread running code built with `--instrument` (see
/// `recorder::ticks`), checked against the thread's code and TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickCounter {
    /// The address of the thread's budget (an `i64`).
    pub budget: u64,
    /// Where the callbacks are.
    pub layout: TickLayout,
}

/// Hardware watchpoints available to the debugger: DR1 to DR3 (DR0 belongs to the
/// replay's preemption search).
pub const WATCH_SLOTS: usize = 3;

/// A replay that the debugger can drive. Every method leaves the session stopped.
///
/// Between two events exactly one thread runs (the recording ran one thread at a time);
/// [`Session::running_thread`] names it, and [`Session::resume`] and
/// [`Session::single_step`] move only it.
pub trait Session {
    /// The error of the session's operations.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A stopped copy of the session at an event boundary ([`Session::checkpoint`]).
    type Checkpoint;

    /// Copies the session where it stands (an event boundary, with no breakpoint or
    /// watchpoint set); `None` when it cannot be copied there.
    fn checkpoint(&mut self) -> Result<Option<Self::Checkpoint>, Self::Error>;

    /// Number of the next event to replay (the position of the current boundary).
    fn event_index(&self) -> u64;

    /// Runs the running thread to the next event and replays it, stopping early when
    /// the thread arrives at an inserted breakpoint or triggers a watchpoint. A thread
    /// standing on an inserted breakpoint when this is called executes that instruction
    /// first without stopping (it was already reported).
    fn resume(&mut self) -> Result<Stop, Self::Error>;

    /// [`Session::resume`], which may replay several events at once where that meets
    /// exactly the stops event-by-event resumes would (the recorder feeds a run of
    /// buffered calls without a ptrace stop each): it stops at a boundary no later
    /// than `limit`, or at a breakpoint or watchpoint at the position where repeated
    /// [`Session::resume`] calls would have stopped. By default, one event.
    fn resume_before(&mut self, limit: u64) -> Result<Stop, Self::Error> {
        let _ = limit;
        self.resume()
    }

    /// Executes one instruction of the running thread (replaying the event it makes,
    /// if any: a syscall instruction replays its event). Breakpoints do not stop it;
    /// a watchpoint it triggers is reported as [`Stop::Watchpoint`]. When
    /// [`Session::ready_to_step`] is `false`, replays the next event instead and
    /// returns [`Stop::Event`].
    fn single_step(&mut self) -> Result<Stop, Self::Error>;

    /// Whether [`Session::single_step`] would execute an instruction of the running
    /// thread now; `false` when the next event runs none of its code (a note, a signal
    /// queued, a blocked call completing, a preemption point reached), which
    /// `single_step` then replays alone, as [`Session::resume`] would.
    fn ready_to_step(&mut self) -> Result<bool, Self::Error>;

    /// The thread that runs until the next event; `None` when no event is left.
    fn running_thread(&self) -> Option<i32>;

    /// The live threads, by recorded tid.
    fn threads(&self) -> Vec<i32>;

    /// A thread's name (`comm`), as the program set it.
    fn thread_name(&self, _tid: i32) -> Option<String> {
        None
    }

    /// A thread's general registers.
    fn regs(&mut self, tid: i32) -> Result<Regs, Self::Error>;

    /// A thread's extended register state.
    fn fpu_state(&mut self, tid: i32) -> Result<FpuState, Self::Error>;

    /// Reads the debugged process's memory at `addr` into `buf`, as the program sees it
    /// (inserted breakpoints hidden); returns how many bytes were readable.
    fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Inserts a software breakpoint.
    fn insert_breakpoint(&mut self, addr: u64) -> Result<(), Self::Error>;

    /// Removes a software breakpoint.
    fn remove_breakpoint(&mut self, addr: u64) -> Result<(), Self::Error>;

    /// Arms (`Some`) or disarms (`None`) watchpoint `slot` (`0..WATCH_SLOTS`) on every
    /// thread.
    fn set_watchpoint(&mut self, slot: usize, watch: Option<Watch>) -> Result<(), Self::Error>;

    /// Thread `tid`'s tick counter, when its process runs tick callbacks with the shape
    /// [`TickLayout`] describes (the timeline then lands after any number of ticks
    /// instead of single-stepping there); `None` otherwise.
    fn tick_counter(&mut self, _tid: i32) -> Result<Option<TickCounter>, Self::Error> {
        Ok(None)
    }

    /// Writes the debugged process's memory (data only: a tick budget).
    fn write_memory(&mut self, tid: i32, addr: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Sets a thread's general registers.
    fn set_regs(&mut self, tid: i32, regs: &Regs) -> Result<(), Self::Error>;
}

/// Opens fresh sessions of one recording, at its first event boundary (just after the
/// first exec), or from a checkpoint. Going backwards restores the nearest earlier
/// checkpoint (or re-opens) and runs forward.
pub trait Opener {
    /// The sessions it opens.
    type Session: Session;

    /// A new session at the start.
    fn open(&self) -> Result<Self::Session, <Self::Session as Session>::Error>;

    /// A new session where `checkpoint` was taken; the checkpoint stays usable.
    fn restore(
        &self,
        checkpoint: &mut <Self::Session as Session>::Checkpoint,
    ) -> Result<Self::Session, <Self::Session as Session>::Error>;

    /// The first boundary of the debugged process: where it exists and runs the
    /// program gdb was given (0: wherever a new session stands).
    fn begin(&self) -> u64 {
        0
    }

    /// Whether the event at [`Opener::end`] is the debugged process's exit call (or
    /// exec): forward runs then go on from that boundary through the instructions
    /// leading to the call, and end on its `syscall` instruction.
    fn end_at_call(&self) -> bool {
        false
    }

    /// The last boundary a forward run goes to: just before the program's exit (its
    /// `exit_group`, or its last event).
    fn end(&self) -> u64;
}
