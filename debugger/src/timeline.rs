//! Positions in a replay, and going to any of them, forwards or backwards.
//!
//! The recording ran one thread at a time, so a replay is one line of execution: event
//! boundaries, and between two boundaries the instructions of one thread. A
//! [`Position`] names a point on that line exactly and repeatably without a hardware
//! counter: a boundary (event number) plus the moves that lead from it to the point,
//! each of which the replay reproduces identically: "run until the thread arrives at
//! one of these breakpoints or triggers one of these watchpoints" (the same stop every
//! time, since the thread's execution is the same every time) and "execute n
//! instructions".
//!
//! Going backwards re-opens the replay and runs forward: to the target position
//! directly when it is known (`monitor goto`, reverse-stepi), or first through a
//! *forward pass* that notes every breakpoint or watchpoint stop up to the current
//! position and then goes to the last one (reverse-continue). Without checkpoints each
//! backward move costs a replay from the start up to the target; [`Stats`] counts the
//! events re-executed.

use std::collections::{BTreeMap, BTreeSet};

use recorder::ptrace::Regs;
use recorder::ticks::TickLayout;

use crate::backend::{Opener, Session, Stop, TickCounter, Watch, WATCH_SLOTS};
use crate::errors::{Error, Result};

/// One move from a boundary (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// `times` times: run until the running thread arrives at one of `code` or
    /// triggers one of `watches`.
    RunTo {
        /// Breakpoint addresses.
        code: BTreeSet<u64>,
        /// Watched ranges.
        watches: Vec<Watch>,
        /// How many such stops.
        times: u64,
    },
    /// Execute this many instructions of the running thread.
    Steps(u64),
    /// Run until the running thread returns from this many more tick callbacks (code
    /// built with `--instrument`, see [`Session::tick_counter`]); it must not stand in
    /// the callbacks, and its budget must last longer (no refill on the way).
    Ticks(u64),
}

/// A point of the replay: the boundary before event `event`, then `moves`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Number of the next event at the boundary the moves start from.
    pub event: u64,
    /// How to get from the boundary to the point.
    pub moves: Vec<Move>,
}

impl Position {
    /// The boundary before event `event`.
    pub fn boundary(event: u64) -> Self {
        Position {
            event,
            moves: Vec::new(),
        }
    }

    fn push_run(&mut self, code: &BTreeSet<u64>, watches: &[Watch]) {
        if let Some(Move::RunTo {
            code: c,
            watches: w,
            times,
        }) = self.moves.last_mut()
        {
            if c == code && w == watches {
                *times += 1;
                return;
            }
        }
        self.moves.push(Move::RunTo {
            code: code.clone(),
            watches: watches.to_vec(),
            times: 1,
        });
    }

    fn push_steps(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(Move::Steps(s)) = self.moves.last_mut() {
            *s += n;
        } else {
            self.moves.push(Move::Steps(n));
        }
    }

    /// The position one move unit earlier (one step, or one run stop fewer), and the
    /// unit removed; `None` at a boundary.
    fn pop_unit(&self) -> Option<(Position, Move)> {
        let mut prefix = self.clone();
        let last = prefix.moves.pop()?;
        let unit = match last {
            Move::Steps(n) => {
                prefix.push_steps(n - 1);
                Move::Steps(1)
            }
            Move::Ticks(k) => {
                if k > 1 {
                    prefix.moves.push(Move::Ticks(k - 1));
                }
                Move::Ticks(1)
            }
            Move::RunTo {
                code,
                watches,
                times,
            } => {
                if times > 1 {
                    prefix.moves.push(Move::RunTo {
                        code: code.clone(),
                        watches: watches.clone(),
                        times: times - 1,
                    });
                }
                Move::RunTo {
                    code,
                    watches,
                    times: 1,
                }
            }
        };
        Some((prefix, unit))
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event {}", self.event)?;
        for m in &self.moves {
            match m {
                Move::Steps(n) => write!(f, " +{n} instructions")?,
                Move::RunTo { times, .. } => write!(f, " +{times} stops")?,
                Move::Ticks(k) => write!(f, " +{k} ticks")?,
            }
        }
        Ok(())
    }
}

/// Why the timeline stopped, for the stop reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At a breakpoint.
    Breakpoint {
        /// The thread.
        tid: i32,
    },
    /// At a watchpoint: after the access going forwards, just before it going
    /// backwards.
    Watch {
        /// The thread.
        tid: i32,
        /// The watchpoint.
        watch: Watch,
    },
    /// A signal was given to a thread (see [`Stop::Signal`]).
    Signal {
        /// The thread.
        tid: i32,
        /// The signal (Linux numbering).
        signo: i32,
    },
    /// One instruction done.
    Stepped {
        /// The thread.
        tid: i32,
    },
    /// The end of the recording: just before the last event (the program's exit).
    End {
        /// The thread that makes the last event.
        tid: i32,
    },
    /// The beginning: nothing earlier to go to.
    Begin {
        /// The thread that runs first.
        tid: i32,
    },
    /// Stopped because the user interrupted (Ctrl-C).
    Interrupted {
        /// The running thread.
        tid: i32,
    },
    /// At a position reached by `goto`.
    Arrived {
        /// The running thread.
        tid: i32,
    },
}

/// Counters of the timeline's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Replays opened (the first one included).
    pub opened: u64,
    /// Events replayed, by all replays.
    pub events_replayed: u64,
    /// Of those, events replayed inside a resume beyond the one it replays the usual
    /// way (buffered calls fed without a stop each, see [`Session::resume_before`]).
    pub fed: u64,
    /// Instructions single-stepped.
    pub steps: u64,
    /// Landings after a number of ticks ([`Move::Ticks`]).
    pub landed: u64,
    /// Sessions restored from a checkpoint.
    pub restored: u64,
    /// Checkpoints taken.
    pub taken: u64,
    /// Checkpoints held now.
    pub held: usize,
    /// Events between two checkpoints now.
    pub interval: u64,
}

/// Checkpoints a timeline aims at over a whole recording (taken every
/// `events / CHECKPOINTS_AIMED` events); it never holds more than
/// [`MAX_CHECKPOINTS`]: past that, every other one is dropped and the interval doubles.
pub const CHECKPOINTS_AIMED: u64 = 64;
/// The `syscall` instruction.
const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// Most checkpoints held at once.
pub const MAX_CHECKPOINTS: usize = 96;

/// A replay that can go to any position: the current session, where it stands, and
/// the breakpoints and watchpoints the debugger has set.
pub struct Timeline<O: Opener> {
    opener: O,
    session: O::Session,
    here: Position,
    start: u64,
    end: u64,
    /// The event at `end` is the debugged process's exit call (see [`Opener::end_at_call`]).
    end_at_call: bool,
    /// Breakpoints the debugger wants.
    pub breakpoints: BTreeSet<u64>,
    /// Watchpoints the debugger wants.
    pub watches: Vec<Watch>,
    inserted: BTreeSet<u64>,
    armed: [Option<Watch>; WATCH_SLOTS],
    stats: Stats,
    /// Checkpoints by the event boundary they stand at.
    checkpoints: BTreeMap<u64, <O::Session as Session>::Checkpoint>,
    /// A checkpoint is taken at boundaries that are multiples of this.
    interval: u64,
}

/// Asked between events during long runs; `true` stops the run (Ctrl-C in gdb).
pub type Interrupt<'a> = dyn FnMut() -> bool + 'a;

impl<O: Opener> Timeline<O> {
    /// Opens the first session, at the start of the recording.
    pub fn new(opener: O) -> Result<Self> {
        let session = opener.open().map_err(Error::session)?;
        let opened_at = session.event_index();
        let start = opened_at.max(opener.begin());
        let end = opener.end().max(start);
        let end_at_call = opener.end_at_call();
        let mut timeline = Timeline {
            opener,
            session,
            here: Position::boundary(start),
            start,
            end,
            end_at_call,
            breakpoints: BTreeSet::new(),
            watches: Vec::new(),
            inserted: BTreeSet::new(),
            armed: [None; WATCH_SLOTS],
            stats: Stats {
                opened: 1,
                ..Stats::default()
            },
            checkpoints: BTreeMap::new(),
            interval: (end.saturating_sub(start) / CHECKPOINTS_AIMED).max(1),
        };
        if start > opened_at {
            // A process created later (`--gdb-pid`): its first boundary.
            timeline.here = Position::boundary(opened_at);
            timeline.go_to(&Position::boundary(start))?;
        }
        Ok(timeline)
    }

    /// Where the replay stands.
    pub fn position(&self) -> &Position {
        &self.here
    }

    /// The event number of the current position (rr's `when`).
    pub fn when(&self) -> u64 {
        self.here.event
    }

    /// The first and last boundaries: just after the first exec, and just before the
    /// last event.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            held: self.checkpoints.len(),
            interval: self.interval,
            ..self.stats
        }
    }

    /// Takes checkpoints only every `interval` events from now on (tests and
    /// benchmarks; `u64::MAX`: none).
    pub fn set_checkpoint_interval(&mut self, interval: u64) {
        self.interval = interval.max(1);
        let keep = self.interval;
        self.checkpoints.retain(|k, _| k % keep == 0);
    }

    /// The current session (registers, memory, threads).
    pub fn session(&mut self) -> &mut O::Session {
        &mut self.session
    }

    /// The current session, to look at.
    pub fn session_ref(&self) -> &O::Session {
        &self.session
    }

    /// The thread to report a stop on: the running one when it belongs to the
    /// debugged process, else any of that process.
    pub fn current_thread(&self) -> i32 {
        let threads = self.session.threads();
        self.session
            .running_thread()
            .filter(|t| threads.contains(t))
            .or_else(|| threads.first().copied())
            .unwrap_or(1)
    }

    /// Stands at the latest checkpoint at or before boundary `event`, or at the start
    /// when there is none.
    fn rewind(&mut self, event: u64) -> Result<()> {
        let session = match self.checkpoints.range_mut(..=event).next_back() {
            Some((_, cp)) => {
                self.stats.restored += 1;
                self.opener.restore(cp)
            }
            None => {
                self.stats.opened += 1;
                self.opener.open()
            }
        };
        self.session = session.map_err(Error::session)?;
        self.inserted.clear();
        self.armed = [None; WATCH_SLOTS];
        self.here = Position::boundary(self.session.event_index());
        tracing::debug!("rewound to {} for event {event}", self.here);
        Ok(())
    }

    /// At a boundary that is a multiple of the interval, takes a checkpoint unless one
    /// is there (with no breakpoint or watchpoint set: they are set again before the
    /// next resume).
    fn maybe_checkpoint(&mut self) -> Result<()> {
        let event = self.here.event;
        if !self.here.moves.is_empty()
            || event % self.interval != 0
            || event <= self.start
            || event >= self.end
            || self.checkpoints.contains_key(&event)
        {
            return Ok(());
        }
        self.arm(&BTreeSet::new(), &[])?;
        let Some(cp) = self.session.checkpoint().map_err(Error::session)? else {
            return Ok(());
        };
        self.checkpoints.insert(event, cp);
        self.stats.taken += 1;
        if self.checkpoints.len() > MAX_CHECKPOINTS {
            self.interval = self.interval.saturating_mul(2);
            let keep = self.interval;
            self.checkpoints.retain(|k, _| k % keep == 0);
        }
        Ok(())
    }

    /// Makes the session's breakpoints and watchpoints exactly these.
    fn arm(&mut self, code: &BTreeSet<u64>, watches: &[Watch]) -> Result<()> {
        if watches.len() > WATCH_SLOTS {
            return Err(Error::TooManyWatchpoints {
                wanted: watches.len(),
            });
        }
        for a in self.inserted.difference(code).copied().collect::<Vec<_>>() {
            self.session.remove_breakpoint(a).map_err(Error::session)?;
            self.inserted.remove(&a);
        }
        for a in code
            .difference(&self.inserted.clone())
            .copied()
            .collect::<Vec<_>>()
        {
            self.session.insert_breakpoint(a).map_err(Error::session)?;
            self.inserted.insert(a);
        }
        for slot in 0..WATCH_SLOTS {
            let want = watches.get(slot).copied();
            if self.armed[slot] != want {
                self.session
                    .set_watchpoint(slot, want)
                    .map_err(Error::session)?;
                self.armed[slot] = want;
            }
        }
        Ok(())
    }

    /// One `resume` of the session with these breakpoints and watchpoints, keeping
    /// `here` up to date.
    fn resume_once(&mut self, code: &BTreeSet<u64>, watches: &[Watch]) -> Result<Stop> {
        self.resume_towards(code, watches, 0)
    }

    /// [`Timeline::resume_once`], letting the session replay in one go as many events
    /// as it can without missing a stop (see [`Session::resume_before`]), up to
    /// boundary `to` at most and never past the next boundary where a checkpoint is
    /// due; `to` not after the current boundary: one event.
    fn resume_towards(&mut self, code: &BTreeSet<u64>, watches: &[Watch], to: u64) -> Result<Stop> {
        self.arm(code, watches)?;
        let before = self.session.event_index();
        let due = (before / self.interval)
            .saturating_add(1)
            .saturating_mul(self.interval);
        let limit = to.min(due).max(before + 1);
        let stop = self.session.resume_before(limit).map_err(Error::session)?;
        let after = self.session.event_index();
        self.stats.events_replayed += after.saturating_sub(before);
        // A stop at a boundary replayed its last event the usual way; a breakpoint or
        // watchpoint stop came before the thread's next event.
        let usual = u64::from(matches!(stop, Stop::Event | Stop::Signal { .. }));
        self.stats.fed += after.saturating_sub(before).saturating_sub(usual);
        match stop {
            Stop::Event | Stop::Signal { .. } => {
                self.here = Position::boundary(after);
                self.maybe_checkpoint()?;
            }
            Stop::Breakpoint { .. } | Stop::Watchpoint { .. } => {
                if after != before {
                    self.here = Position::boundary(after);
                }
                self.here.push_run(code, watches)
            }
            Stop::Stepped { .. } | Stop::Exited(_) => self.here = Position::boundary(after),
        }
        Ok(stop)
    }

    /// One instruction, keeping `here` up to date.
    fn step_once(&mut self) -> Result<Stop> {
        let before = self.session.event_index();
        let stop = self.session.single_step().map_err(Error::session)?;
        let after = self.session.event_index();
        self.stats.steps += 1;
        self.stats.events_replayed += after.saturating_sub(before);
        if after != before {
            self.here = Position::boundary(after);
        } else {
            self.here.push_steps(1);
        }
        Ok(stop)
    }

    fn watch_of(&self, slot: usize) -> Option<Watch> {
        self.armed.get(slot).copied().flatten()
    }

    fn user_sets(&self) -> (BTreeSet<u64>, Vec<Watch>) {
        (self.breakpoints.clone(), self.watches.clone())
    }

    /// Whether the replay stands at the end of the recording: past its last boundary,
    /// or in the interval of the exit call (when [`Opener::end_at_call`]) where the
    /// running thread stands on the `syscall` instruction that makes it, or at the
    /// last boundary when that interval runs none of the debugged process's code.
    fn at_end(&mut self) -> Result<bool> {
        if self.here.event < self.end {
            return Ok(false);
        }
        if self.here.event > self.end || !self.end_at_call {
            return Ok(self.here.moves.is_empty() || self.here.event > self.end);
        }
        let Some(tid) = self.session.running_thread() else {
            return Ok(true);
        };
        if !self.session.threads().contains(&tid)
            || !self.session.ready_to_step().map_err(Error::session)?
        {
            return Ok(true);
        }
        let rip = self.session.regs(tid).map_err(Error::session)?.rip;
        let mut insn = [0u8; 2];
        let n = self
            .session
            .read_memory(rip, &mut insn)
            .map_err(Error::session)?;
        Ok(n != insn.len() || insn == SYSCALL)
    }

    /// In the exit call's interval: one instruction towards the call, as a forward
    /// run; `Some` when it stops at one of the user's breakpoints or watchpoints.
    fn step_towards_exit(
        &mut self,
        code: &BTreeSet<u64>,
        watches: &[Watch],
    ) -> Result<Option<Outcome>> {
        self.arm(code, watches)?;
        let stop = self.step_once()?;
        if self.here.moves.is_empty() {
            return Err(Error::Bookkeeping(format!(
                "stepping to the exit call crossed an event ({stop:?})"
            )));
        }
        match stop {
            Stop::Watchpoint { tid, slot } => Ok(self
                .watch_of(slot)
                .map(|watch| Outcome::Watch { tid, watch })),
            Stop::Stepped { tid } => {
                let rip = self.session.regs(tid).map_err(Error::session)?.rip;
                Ok(code.contains(&rip).then_some(Outcome::Breakpoint { tid }))
            }
            other => Err(Error::Bookkeeping(format!(
                "stepping to the exit call met {other:?}"
            ))),
        }
    }

    /// Goes to the end of the recording (`--gdb-at-end`): the boundary before the exit
    /// call, then up to its `syscall` instruction.
    pub fn go_to_end(&mut self) -> Result<Outcome> {
        self.go_to(&Position::boundary(self.end))?;
        while !self.at_end()? {
            self.step_towards_exit(&BTreeSet::new(), &[])?;
        }
        Ok(Outcome::End {
            tid: self.current_thread(),
        })
    }

    /// What a stop of a forward run means for the debugger; `None` to go on (an event
    /// boundary, and no interrupt asked for).
    fn forward_outcome(
        &self,
        stop: Stop,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<Option<Outcome>> {
        Ok(Some(match stop {
            Stop::Event => {
                if !interrupt() {
                    return Ok(None);
                }
                Outcome::Interrupted {
                    tid: self.current_thread(),
                }
            }
            Stop::Breakpoint { tid, .. } => Outcome::Breakpoint { tid },
            Stop::Watchpoint { tid, slot } => {
                let watch = self.watch_of(slot).ok_or(Error::Bookkeeping(format!(
                    "a watchpoint in slot {slot}, which is not armed"
                )))?;
                Outcome::Watch { tid, watch }
            }
            Stop::Signal { tid, signo } => Outcome::Signal { tid, signo },
            Stop::Stepped { tid } => Outcome::Stepped { tid },
            Stop::Exited(how) => return Err(Error::Exited(how)),
        }))
    }

    /// Runs forward until a breakpoint, a watchpoint, the end of the recording, or an
    /// interrupt.
    pub fn resume_forward(&mut self, interrupt: &mut Interrupt<'_>) -> Result<Outcome> {
        let (code, watches) = self.user_sets();
        loop {
            if self.at_end()? {
                return Ok(Outcome::End {
                    tid: self.current_thread(),
                });
            }
            if self.here.event == self.end {
                if let Some(outcome) = self.step_towards_exit(&code, &watches)? {
                    return Ok(outcome);
                }
                continue;
            }
            let stop = self.resume_towards(&code, &watches, self.end)?;
            if let Some(outcome) = self.forward_outcome(stop, interrupt)? {
                return Ok(outcome);
            }
        }
    }

    /// Executes one instruction of thread `tid`: if another thread runs now, runs
    /// forward until `tid` does (stopping at breakpoints on the way), then steps it.
    pub fn step_forward(&mut self, tid: i32, interrupt: &mut Interrupt<'_>) -> Result<Outcome> {
        let (code, watches) = self.user_sets();
        loop {
            let running = self.session.running_thread();
            if self.at_end()? || (self.here.event >= self.end && running != Some(tid)) {
                return Ok(Outcome::End {
                    tid: self.current_thread(),
                });
            }
            if !self.session.threads().contains(&tid) {
                break;
            }
            if running == Some(tid) && self.session.ready_to_step().map_err(Error::session)? {
                break;
            }
            // While another thread runs, its runs of buffered calls may be fed: every
            // boundary inside one is that thread's.
            let to = if running == Some(tid) { 0 } else { self.end };
            let stop = self.resume_towards(&code, &watches, to)?;
            if let Some(outcome) = self.forward_outcome(stop, interrupt)? {
                return Ok(outcome);
            }
        }
        self.arm(&code, &watches)?;
        let running = self.current_thread();
        match self.step_once()? {
            Stop::Watchpoint { tid, slot } => match self.watch_of(slot) {
                Some(watch) => Ok(Outcome::Watch { tid, watch }),
                None => Ok(Outcome::Stepped { tid }),
            },
            Stop::Stepped { tid } | Stop::Breakpoint { tid, .. } => Ok(Outcome::Stepped { tid }),
            Stop::Signal { tid, signo } => Ok(Outcome::Signal { tid, signo }),
            Stop::Event => Ok(Outcome::Stepped { tid: running }),
            Stop::Exited(how) => Err(Error::Exited(how)),
        }
    }

    /// Goes to `target`, re-opening the replay unless it lies ahead of a boundary where
    /// the replay stands.
    pub fn go_to(&mut self, target: &Position) -> Result<()> {
        if target.event < self.start || target.event > self.end {
            return Err(Error::NoSuchPosition(format!(
                "event {} is outside the recording (events {} to {})",
                target.event, self.start, self.end
            )));
        }
        let ahead = self.here.moves.is_empty() && self.here.event <= target.event;
        let nearer = self
            .checkpoints
            .range(..=target.event)
            .next_back()
            .is_some_and(|(k, _)| *k > self.here.event);
        if !ahead || nearer {
            self.rewind(target.event)?;
        }
        let none = BTreeSet::new();
        while self.here.event < target.event || !self.here.moves.is_empty() {
            match self.resume_towards(&none, &[], target.event)? {
                Stop::Event | Stop::Signal { .. } => {}
                other => {
                    return Err(Error::Bookkeeping(format!(
                        "running to event {} stopped with {other:?}",
                        target.event
                    )))
                }
            }
        }
        for m in &target.moves {
            match m {
                Move::RunTo {
                    code,
                    watches,
                    times,
                } => {
                    for _ in 0..*times {
                        match self.resume_once(code, watches)? {
                            Stop::Breakpoint { .. } | Stop::Watchpoint { .. } => {}
                            other => {
                                return Err(Error::Bookkeeping(format!(
                                    "going to {target} met {other:?} instead of a breakpoint"
                                )))
                            }
                        }
                    }
                }
                Move::Steps(n) => {
                    for _ in 0..*n {
                        self.step_once()?;
                        if self.here.moves.is_empty() {
                            return Err(Error::Bookkeeping(format!(
                                "going to {target}: a step crossed an event"
                            )));
                        }
                    }
                }
                Move::Ticks(k) => self.land(*k, &none, &[], &mut None)?,
            }
        }
        debug_assert_eq!(&self.here, target);
        Ok(())
    }

    /// Goes to the boundary before event `event` (`monitor goto`).
    pub fn go_to_event(&mut self, event: u64) -> Result<Outcome> {
        self.go_to(&Position::boundary(event))?;
        Ok(Outcome::Arrived {
            tid: self.current_thread(),
        })
    }

    /// Goes back to the last breakpoint or watchpoint stop before the current position
    /// (for a watchpoint: to just before the instruction that accessed the range), or
    /// to the start when there is none.
    pub fn reverse_continue(&mut self, interrupt: &mut Interrupt<'_>) -> Result<Outcome> {
        let goal = self.here.clone();
        let (user_code, user_watches) = self.user_sets();
        // From the nearest checkpoint to the goal; if no stop is met there, from the
        // one before to where that pass began, and so on back to the start.
        self.rewind(goal.event)?;
        let mut began = self.here.event;
        let mut last: Option<Found> = None;
        if let Some(interrupted) =
            self.scan_to(goal.event, &user_code, &user_watches, &mut last, interrupt)?
        {
            return Ok(interrupted);
        }
        if self.here.event != goal.event {
            return Err(Error::Bookkeeping(format!(
                "a forward pass to {goal} went past it (at {})",
                self.here
            )));
        }
        // Within the goal's interval: the goal's own moves, with the user's breakpoints
        // and watchpoints added; stops of the latter are candidates, the goal is not.
        let total_units: u64 = goal
            .moves
            .iter()
            .map(|m| match m {
                Move::RunTo { times, .. } => *times,
                Move::Steps(n) => *n,
                Move::Ticks(_) => 1,
            })
            .sum();
        let mut done_units = 0u64;
        for m in &goal.moves {
            match m {
                Move::RunTo {
                    code,
                    watches,
                    times,
                } => {
                    let all_code: BTreeSet<u64> = code.union(&user_code).copied().collect();
                    let mut all_watches = watches.clone();
                    for w in &user_watches {
                        if !all_watches.contains(w) {
                            all_watches.push(*w);
                        }
                    }
                    for _ in 0..*times {
                        done_units += 1;
                        loop {
                            let from = self.here.clone();
                            let stop = self.resume_once(&all_code, &all_watches)?;
                            let is_goal = done_units == total_units;
                            let (ends_move, candidate) = match stop {
                                Stop::Breakpoint { tid, addr } => (
                                    code.contains(&addr),
                                    user_code
                                        .contains(&addr)
                                        .then(|| Found::At(self.here.clone(), tid, None)),
                                ),
                                Stop::Watchpoint { slot, .. } => {
                                    let w = self.watch_of(slot);
                                    (
                                        w.is_some_and(|w| watches.contains(&w)),
                                        w.filter(|w| user_watches.contains(w))
                                            .map(|w| Found::BeforeTrigger(from, w)),
                                    )
                                }
                                other => {
                                    return Err(Error::Bookkeeping(format!(
                                        "re-running to {goal} met {other:?}"
                                    )))
                                }
                            };
                            if let Some(c) = candidate {
                                // A watchpoint's candidate lies before the stop, so it
                                // counts even when the stop is the goal itself.
                                if !(ends_move && is_goal) || matches!(c, Found::BeforeTrigger(..))
                                {
                                    last = Some(c);
                                }
                            }
                            if ends_move {
                                break;
                            }
                        }
                    }
                }
                Move::Ticks(k) => {
                    // The user's stops on the way are candidates; the landing is not.
                    done_units += 1;
                    self.land(*k, &user_code, &user_watches, &mut last)?;
                }
                Move::Steps(n) => {
                    for _ in 0..*n {
                        done_units += 1;
                        let from = self.here.clone();
                        let stop = self.step_once()?;
                        if self.here.moves.is_empty() {
                            return Err(Error::Bookkeeping(format!(
                                "re-running to {goal}: a step crossed an event"
                            )));
                        }
                        if let Stop::Watchpoint { slot, tid } = stop {
                            if let Some(w) =
                                self.watch_of(slot).filter(|w| user_watches.contains(w))
                            {
                                last = Some(Found::At(from, tid, Some(w)));
                                continue;
                            }
                        }
                        if done_units < total_units {
                            let tid = self.current_thread();
                            let rip = self.session.regs(tid).map_err(Error::session)?.rip;
                            if user_code.contains(&rip) {
                                last = Some(Found::At(self.here.clone(), tid, None));
                            }
                        }
                    }
                }
            }
        }
        while last.is_none() && began > self.start {
            self.rewind(began - 1)?;
            let end = began;
            began = self.here.event;
            if let Some(interrupted) =
                self.scan_to(end, &user_code, &user_watches, &mut last, interrupt)?
            {
                return Ok(interrupted);
            }
        }
        match last {
            None => {
                self.go_to(&Position::boundary(self.start))?;
                Ok(Outcome::Begin {
                    tid: self.current_thread(),
                })
            }
            Some(Found::At(pos, tid, watch)) => {
                self.go_to(&pos)?;
                Ok(match watch {
                    Some(watch) => Outcome::Watch { tid, watch },
                    None => Outcome::Breakpoint { tid },
                })
            }
            Some(Found::BeforeTrigger(from, watch)) => {
                let pos = self.before_trigger(&from, watch)?;
                self.go_to(&pos)?;
                Ok(Outcome::Watch {
                    tid: self.current_thread(),
                    watch,
                })
            }
        }
    }

    /// Runs forward to boundary `to` with the user's breakpoints and watchpoints,
    /// noting each stop in `last` (the latest wins). `Some`: interrupted.
    fn scan_to(
        &mut self,
        to: u64,
        user_code: &BTreeSet<u64>,
        user_watches: &[Watch],
        last: &mut Option<Found>,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<Option<Outcome>> {
        while self.here.event < to {
            let from = self.here.clone();
            match self.resume_towards(user_code, user_watches, to)? {
                Stop::Event | Stop::Signal { .. } => {
                    if interrupt() {
                        return Ok(Some(Outcome::Interrupted {
                            tid: self.current_thread(),
                        }));
                    }
                }
                Stop::Breakpoint { tid, .. } => {
                    *last = Some(Found::At(self.here.clone(), tid, None));
                }
                Stop::Watchpoint { slot, .. } => {
                    let watch = self.watch_of(slot).ok_or(Error::Bookkeeping(format!(
                        "a watchpoint in slot {slot}, which is not armed"
                    )))?;
                    // The resume may have replayed events before the trigger: it
                    // lies in the interval of the event the session stands in.
                    let from = if self.here.event == from.event {
                        from
                    } else {
                        Position::boundary(self.here.event)
                    };
                    *last = Some(Found::BeforeTrigger(from, watch));
                }
                other => {
                    return Err(Error::Bookkeeping(format!(
                        "a forward pass to event {to} met {other:?}"
                    )))
                }
            }
        }
        Ok(None)
    }

    /// The position just before the instruction that triggers `watch` first after
    /// `from`: goes to `from` and single-steps until the trigger.
    fn before_trigger(&mut self, from: &Position, watch: Watch) -> Result<Position> {
        self.go_to(from)?;
        let code = BTreeSet::new();
        self.arm(&code, &[watch])?;
        let mut steps = 0u64;
        loop {
            let before = self.here.clone();
            let stop = self.step_once()?;
            steps += 1;
            if let Stop::Watchpoint { .. } = stop {
                tracing::debug!("watchpoint trigger {steps} instructions after {from}");
                return Ok(before);
            }
            if self.here.moves.is_empty() {
                return Err(Error::Bookkeeping(format!(
                    "stepping from {from} to a watchpoint trigger crossed an event"
                )));
            }
        }
    }

    /// Goes back one instruction.
    pub fn reverse_step(&mut self) -> Result<Outcome> {
        let here = self.here.clone();
        if let Some(target) = self.reverse_step_by_ticks(&here)? {
            self.go_to(&target)?;
            return Ok(Outcome::Stepped {
                tid: self.current_thread(),
            });
        }
        let target = match here.pop_unit() {
            Some((prefix, Move::Steps(_))) => prefix,
            Some((prefix, Move::Ticks(k))) => self.before_landing(&prefix, k)?,
            Some((prefix, Move::RunTo { code, watches, .. })) => {
                // How many instructions the run took: step from its start until the
                // same stop.
                self.go_to(&prefix)?;
                self.arm(&BTreeSet::new(), &watches)?;
                let mut n = 0u64;
                loop {
                    let stop = self.step_once()?;
                    n += 1;
                    if self.here.moves.is_empty() {
                        return Err(Error::Bookkeeping(format!(
                            "stepping from {prefix} to {here} crossed an event"
                        )));
                    }
                    let arrived = match stop {
                        Stop::Watchpoint { slot, .. } => {
                            self.watch_of(slot).is_some_and(|w| watches.contains(&w))
                        }
                        _ => {
                            let tid = self.current_thread();
                            let rip = self.session.regs(tid).map_err(Error::session)?.rip;
                            code.contains(&rip)
                        }
                    };
                    if arrived {
                        break;
                    }
                }
                let mut t = prefix;
                t.push_steps(n - 1);
                t
            }
            None => {
                // The last instruction before this boundary: in the latest interval
                // that ran code (events such as notes and queued signals run none).
                let ends = self.tick_ends()?;
                let mut k = here.event;
                loop {
                    if k <= self.start {
                        return Ok(Outcome::Begin {
                            tid: self.current_thread(),
                        });
                    }
                    k -= 1;
                    let prev = Position::boundary(k);
                    self.go_to(&prev)?;
                    self.arm(&BTreeSet::new(), &[])?;
                    let mut n = 0u64;
                    // An interval run by another process's thread has none of the
                    // debugged process's instructions.
                    let ours = self
                        .session
                        .running_thread()
                        .is_some_and(|t| self.session.threads().contains(&t));
                    if ours {
                        if let Some(t) = self.last_step_by_ticks(&prev, &ends)? {
                            break t;
                        }
                        if self.here != prev {
                            self.go_to(&prev)?;
                            self.arm(&BTreeSet::new(), &[])?;
                        }
                    }
                    while ours && self.here.event == k {
                        match self.step_once()? {
                            Stop::Stepped { .. } | Stop::Watchpoint { .. } => n += 1,
                            Stop::Event | Stop::Signal { .. } => break,
                            other => {
                                return Err(Error::Bookkeeping(format!(
                                    "stepping through event {k} met {other:?}"
                                )))
                            }
                        }
                    }
                    if n > 0 {
                        let mut t = prev;
                        t.push_steps(n - 1);
                        break t;
                    }
                }
            }
        };
        self.go_to(&target)?;
        Ok(Outcome::Stepped {
            tid: self.current_thread(),
        })
    }
}

impl<O: Opener> Timeline<O> {
    /// The running thread's tick budget now.
    fn budget(&mut self, tid: i32, counter: &TickCounter) -> Result<i64> {
        let mut word = [0u8; 8];
        let n = self
            .session
            .read_memory(counter.budget, &mut word)
            .map_err(Error::session)?;
        if n != word.len() {
            return Err(Error::Bookkeeping(format!(
                "thread {tid}'s tick budget at {:#x} is not readable",
                counter.budget
            )));
        }
        Ok(i64::from_le_bytes(word))
    }

    /// The [`Move::Ticks`] move: the running thread goes on until it returns from its
    /// `k`-th tick callback from here, without single-stepping: its budget is set to
    /// `k`, so that the `k`-th callback jumps to the refill, where a breakpoint stops
    /// it; there its state is the real one after that callback's `subq` and not-taken
    /// `jle`, but for the budget, the flags and the `ret`, which are then set as they
    /// would be. With `user_code` or `user_watches`, the user's stops on the way are
    /// noted in `last` (the latest wins), as positions of runs to them from here.
    fn land(
        &mut self,
        k: u64,
        user_code: &BTreeSet<u64>,
        user_watches: &[Watch],
        last: &mut Option<Found>,
    ) -> Result<()> {
        let start = self.here.clone();
        let bad = |what: String| Error::Bookkeeping(format!("{k} ticks after {start}: {what}"));
        let tid = self
            .session
            .running_thread()
            .ok_or_else(|| bad("no thread runs".into()))?;
        let counter = self
            .session
            .tick_counter(tid)
            .map_err(Error::session)?
            .ok_or_else(|| bad(format!("thread {tid} has no tick counter")))?;
        let refill = counter.layout.refill;
        let rip = self.session.regs(tid).map_err(Error::session)?.rip;
        let b0 = self.budget(tid, &counter)?;
        if k == 0 || b0 <= k as i64 || counter.layout.contains(rip) {
            return Err(bad(format!(
                "thread {tid} at {rip:#x} with a budget of {b0} cannot land there"
            )));
        }
        self.write_budget(tid, &counter, k as i64)?;
        let mut code = user_code.clone();
        code.insert(refill);
        let at = |n: u64| {
            let mut p = start.clone();
            for _ in 0..n {
                p.push_run(user_code, user_watches);
            }
            p
        };
        let mut user_stops = 0u64;
        loop {
            self.arm(&code, user_watches)?;
            let before = self.session.event_index();
            let stop = self.session.resume().map_err(Error::session)?;
            if self.session.event_index() != before {
                return Err(bad(format!("the run crossed an event ({stop:?})")));
            }
            match stop {
                Stop::Breakpoint { tid: t, addr } if addr == refill && t == tid => break,
                Stop::Breakpoint { tid: t, addr } if user_code.contains(&addr) => {
                    user_stops += 1;
                    *last = Some(Found::At(at(user_stops), t, None));
                }
                Stop::Watchpoint { slot, .. } => {
                    if let Some(w) = self.watch_of(slot).filter(|w| user_watches.contains(w)) {
                        *last = Some(Found::BeforeTrigger(at(user_stops), w));
                        user_stops += 1;
                    }
                }
                other => return Err(bad(format!("the run met {other:?}"))),
            }
        }
        // As after the real callback: its `ret` done, the flags of `subq` leaving
        // b0 - k, and that budget.
        let real = b0 - k as i64;
        let mut regs = self.session.regs(tid).map_err(Error::session)?;
        let mut word = [0u8; 8];
        let n = self
            .session
            .read_memory(regs.rsp, &mut word)
            .map_err(Error::session)?;
        if regs.rip != refill || n != word.len() {
            return Err(bad(format!("the thread stopped at {:#x}", regs.rip)));
        }
        regs.rip = u64::from_le_bytes(word);
        regs.rsp += 8;
        regs.eflags = TickLayout::sub1_flags(regs.eflags, real);
        self.session.set_regs(tid, &regs).map_err(Error::session)?;
        self.write_budget(tid, &counter, real)?;
        self.arm(user_code, user_watches)?;
        self.stats.landed += 1;
        self.here = start;
        self.here.moves.push(Move::Ticks(k));
        Ok(())
    }

    fn write_budget(&mut self, tid: i32, counter: &TickCounter, value: i64) -> Result<()> {
        self.session
            .write_memory(tid, counter.budget, &value.to_le_bytes())
            .map_err(Error::session)
    }

    /// The position of the last instruction before `prefix` + [`Move::Ticks`]`(k)`:
    /// the `ret` of the `k`-th callback, stepped to from the landing before it.
    fn before_landing(&mut self, prefix: &Position, k: u64) -> Result<Position> {
        let mut base = prefix.clone();
        if k > 1 {
            base.moves.push(Move::Ticks(k - 1));
        }
        self.go_to(&base)?;
        let tid = self.current_thread();
        let counter = self
            .session
            .tick_counter(tid)
            .map_err(Error::session)?
            .ok_or_else(|| Error::Bookkeeping(format!("no tick counter at {base}")))?;
        self.arm(&BTreeSet::new(), &[])?;
        loop {
            let rip = self.session.regs(tid).map_err(Error::session)?.rip;
            if rip == counter.layout.ret() {
                return Ok(self.here.clone());
            }
            self.step_once()?;
            if self.here.moves.is_empty() {
                return Err(Error::Bookkeeping(format!(
                    "stepping from {base} to the next tick crossed an event"
                )));
            }
        }
    }

    /// [`Timeline::reverse_step`] in code built with `--instrument`: the position one
    /// instruction before `here` as a landing after some ticks (see [`Timeline::land`])
    /// and the few steps from there, found by stepping from that landing to the
    /// registers `here` has (the same budget: no tick on the way). `None` when the
    /// position already ends with steps from a landing (popping one step is cheap
    /// then), or the thread has no tick counter (the caller steps from the boundary).
    fn reverse_step_by_ticks(&mut self, here: &Position) -> Result<Option<Position>> {
        match here.moves.as_slice() {
            [] | [.., Move::Ticks(_), Move::Steps(_)] | [.., Move::Ticks(_)] => return Ok(None),
            _ => {}
        }
        let Some(tid) = self.session.running_thread() else {
            return Ok(None);
        };
        let Some(counter) = self.session.tick_counter(tid).map_err(Error::session)? else {
            return Ok(None);
        };
        let goal = self.session.regs(tid).map_err(Error::session)?;
        let b_now = self.budget(tid, &counter)?;
        let layout = counter.layout;
        let anchor = Position::boundary(here.event);
        self.go_to(&anchor)?;
        self.arm(&BTreeSet::new(), &[])?;
        if self.session.running_thread() != Some(tid)
            || self.session.tick_counter(tid).map_err(Error::session)? != Some(counter)
        {
            return Ok(None);
        }
        // The thread may stand in the refill, after its call: out of it first.
        let mut s0 = 0u64;
        loop {
            let regs = self.session.regs(tid).map_err(Error::session)?;
            if same_regs(&regs, &goal) && self.budget(tid, &counter)? == b_now {
                // `here` is one of these first steps: stepping is cheap.
                return Ok(None);
            }
            if !layout.contains(regs.rip) {
                break;
            }
            if s0 > 2 * recorder::ticks::REFILL_LEN {
                return Ok(None);
            }
            self.step_once()?;
            s0 += 1;
            if self.here.moves.is_empty() {
                return Ok(None);
            }
        }
        let b0 = self.budget(tid, &counter)?;
        let done = u64::from(layout.after_sub(goal.rip));
        let Some(j) = (b0 - b_now)
            .checked_sub(done as i64)
            .filter(|j| *j >= 0 && b_now + done as i64 >= 1)
        else {
            return Ok(None);
        };
        let j = j as u64;
        let mut base = self.here.clone();
        if j > 0 {
            self.land(j, &BTreeSet::new(), &[], &mut None)?;
            base = self.here.clone();
        }
        let mut m = 0u64;
        loop {
            let regs = self.session.regs(tid).map_err(Error::session)?;
            let budget = self.budget(tid, &counter)?;
            if same_regs(&regs, &goal) && budget == b_now {
                break;
            }
            if budget < b_now {
                return Err(Error::Bookkeeping(format!(
                    "stepping from {base} passed {here} (budget {budget}, wanted {b_now})"
                )));
            }
            self.step_once()?;
            m += 1;
            if self.here.moves.is_empty() {
                return Err(Error::Bookkeeping(format!(
                    "stepping from {base} to {here} crossed an event"
                )));
            }
        }
        tracing::debug!("{here} is {m} instructions after {base}");
        Ok(Some(match (m, j) {
            (0, 0) => {
                // `here` is the end of the first steps (out of the refill).
                let mut t = anchor;
                t.push_steps(s0.saturating_sub(1));
                t
            }
            (0, j) => {
                let mut prefix = anchor;
                prefix.push_steps(s0);
                self.before_landing(&prefix, j)?
            }
            (m, _) => {
                let mut t = base;
                t.push_steps(m - 1);
                t
            }
        }))
    }
}

/// A thread's tick counter, budget and `rip` at a boundary.
type TickEnd = (TickCounter, i64, u64);

impl<O: Opener> Timeline<O> {
    /// [`TickEnd`] of every thread of the debugged process that has a tick counter, here.
    fn tick_ends(&mut self) -> Result<BTreeMap<i32, TickEnd>> {
        let mut ends = BTreeMap::new();
        for tid in self.session.threads() {
            if let Some(c) = self.session.tick_counter(tid).map_err(Error::session)? {
                let rip = self.session.regs(tid).map_err(Error::session)?.rip;
                ends.insert(tid, (c, self.budget(tid, &c)?, rip));
            }
        }
        Ok(ends)
    }

    /// reverse-stepi from a boundary, in the interval before it at `prev` (where the
    /// timeline stands): its last instruction, as a landing and the steps from there to
    /// the event. `ends` are the threads' budgets at the boundary gone back from: the
    /// running thread's is its budget at the end of this interval (it has not run
    /// since). `None`: not landable (the caller steps through the interval).
    fn last_step_by_ticks(
        &mut self,
        prev: &Position,
        ends: &BTreeMap<i32, TickEnd>,
    ) -> Result<Option<Position>> {
        let Some(tid) = self.session.running_thread() else {
            return Ok(None);
        };
        let Some(&(counter, b_end, rip_end)) = ends.get(&tid) else {
            return Ok(None);
        };
        if self.session.tick_counter(tid).map_err(Error::session)? != Some(counter) {
            return Ok(None);
        }
        let layout = counter.layout;
        let mut s0 = 0u64;
        while layout.contains(self.session.regs(tid).map_err(Error::session)?.rip) {
            if s0 > 2 * recorder::ticks::REFILL_LEN {
                return Ok(None);
            }
            self.step_once()?;
            s0 += 1;
            if self.here.event != prev.event {
                return Ok(None);
            }
        }
        let b0 = self.budget(tid, &counter)?;
        let done = i64::from(layout.after_sub(rip_end));
        let j = b0 - b_end - done;
        if j < 0 || b_end + done < 1 {
            return Ok(None);
        }
        if j > 0 {
            self.land(j as u64, &BTreeSet::new(), &[], &mut None)?;
        }
        let base = self.here.clone();
        let mut n = 0u64;
        while self.here.event == prev.event {
            match self.step_once()? {
                Stop::Stepped { .. } | Stop::Watchpoint { .. } => n += 1,
                Stop::Event | Stop::Signal { .. } => break,
                other => {
                    return Err(Error::Bookkeeping(format!(
                        "stepping from {base} to the next event met {other:?}"
                    )))
                }
            }
        }
        tracing::debug!("the last of {prev}'s instructions is {n} after {base}");
        let mut out = prev.clone();
        out.push_steps(s0);
        Ok(match (n, j) {
            (0, 0) if s0 == 0 => None,
            (0, 0) => {
                let mut t = prev.clone();
                t.push_steps(s0 - 1);
                Some(t)
            }
            (0, j) => Some(self.before_landing(&out, j as u64)?),
            (n, _) => {
                let mut t = base;
                t.push_steps(n - 1);
                Some(t)
            }
        })
    }
}

/// Whether two register sets are the same.
fn same_regs(a: &Regs, b: &Regs) -> bool {
    let words = |r: &Regs| {
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base,
            r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    };
    words(a) == words(b)
}

/// A candidate stop of a forward pass.
enum Found {
    /// This exact position: a breakpoint arrival of this thread, or (with the
    /// watchpoint) just before an instruction that triggered it.
    At(Position, i32, Option<Watch>),
    /// Just before the first trigger of this watchpoint after this position.
    BeforeTrigger(Position, Watch),
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::backend::WatchKind;
    use crate::toy::{Insn, Program, ToyOpener};

    const X: u64 = 0x1000;

    fn op(rip: u64) -> Insn {
        Insn { rip, write: None }
    }

    fn store(rip: u64, value: u64) -> Insn {
        Insn {
            rip,
            write: Some((X, value)),
        }
    }

    /// Three intervals, two threads; in each, a loop of three iterations storing a
    /// counter at 0x20 and passing 0x30 (where the breakpoints go), then a syscall.
    fn program() -> Rc<Program> {
        let mut intervals = Vec::new();
        let mut value = 0;
        for b in 0..3u64 {
            let mut insns = vec![op(0x10)];
            for _ in 0..3 {
                value += 1;
                insns.push(store(0x20, value));
                insns.push(op(0x30));
                insns.push(op(0x38));
            }
            insns.push(op(0x40));
            intervals.push((if b == 1 { 2 } else { 1 }, insns));
        }
        Rc::new(Program { intervals })
    }

    fn timeline() -> Timeline<ToyOpener> {
        Timeline::new(ToyOpener(program())).unwrap()
    }

    fn x(t: &mut Timeline<ToyOpener>) -> u64 {
        let mut b = [0u8; 8];
        t.session().read_memory(X, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn rip(t: &mut Timeline<ToyOpener>) -> u64 {
        let tid = t.current_thread();
        t.session().regs(tid).unwrap().rip
    }

    fn never() -> impl FnMut() -> bool {
        || false
    }

    #[test]
    fn reverse_continue_goes_to_the_earlier_hits_in_order_then_to_the_start() {
        let mut t = timeline();
        t.breakpoints.insert(0x30);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let o = t.resume_forward(&mut never()).unwrap();
            assert!(matches!(o, Outcome::Breakpoint { .. }), "{o:?}");
            seen.push(x(&mut t));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        for want in [4, 3, 2, 1] {
            let o = t.reverse_continue(&mut never()).unwrap();
            assert!(matches!(o, Outcome::Breakpoint { .. }), "{o:?}");
            assert_eq!((x(&mut t), rip(&mut t)), (want, 0x30));
        }
        assert!(matches!(
            t.reverse_continue(&mut never()).unwrap(),
            Outcome::Begin { .. }
        ));
        assert_eq!(t.position(), &Position::boundary(0));
        // And forward again from there: the same stops.
        t.resume_forward(&mut never()).unwrap();
        assert_eq!(x(&mut t), 1);
    }

    #[test]
    fn a_forward_run_stops_before_the_last_event() {
        let mut t = timeline();
        let o = t.resume_forward(&mut never()).unwrap();
        assert!(matches!(o, Outcome::End { .. }), "{o:?}");
        assert_eq!(t.when(), 3);
        assert_eq!(x(&mut t), 9);
    }

    #[test]
    fn a_reverse_watchpoint_stops_before_the_write_with_the_old_value() {
        let mut t = timeline();
        t.resume_forward(&mut never()).unwrap();
        t.watches.push(Watch {
            addr: X,
            len: 8,
            kind: WatchKind::Write,
        });
        for want in (1..=8).rev() {
            let o = t.reverse_continue(&mut never()).unwrap();
            assert!(matches!(o, Outcome::Watch { .. }), "{o:?}");
            assert_eq!(
                (x(&mut t), rip(&mut t)),
                (want, 0x20),
                "before the store of {}",
                want + 1
            );
        }
        // Forwards, the watchpoint stops after the store.
        let o = t.resume_forward(&mut never()).unwrap();
        assert!(matches!(o, Outcome::Watch { .. }), "{o:?}");
        assert_eq!((x(&mut t), rip(&mut t)), (2, 0x30));
    }

    /// The position after a mixture of moves (a breakpoint added in the middle of an
    /// interval, steps, runs) is found again exactly by reverse-stepi: each step back
    /// equals a fresh replay run forward by one instruction fewer.
    #[test]
    fn reverse_step_retraces_exactly_what_forward_steps_did() {
        let mut t = timeline();
        t.breakpoints.insert(0x38);
        t.resume_forward(&mut never()).unwrap();
        let mut trail = vec![(t.position().clone(), rip(&mut t), x(&mut t))];
        for _ in 0..2 {
            let tid = t.current_thread();
            t.step_forward(tid, &mut never()).unwrap();
            trail.push((t.position().clone(), rip(&mut t), x(&mut t)));
        }
        t.breakpoints.insert(0x10);
        // Runs to the next 0x38 (the 0x10 breakpoint is in the next interval).
        t.resume_forward(&mut never()).unwrap();
        trail.push((t.position().clone(), rip(&mut t), x(&mut t)));
        for _ in 0..3 {
            let tid = t.current_thread();
            t.step_forward(tid, &mut never()).unwrap();
            trail.push((t.position().clone(), rip(&mut t), x(&mut t)));
        }
        // Back through all of it, one instruction at a time; the intermediate points
        // that were not stops are checked by a second timeline stepping forward.
        let (end_pos, end_rip, end_x) = trail.last().cloned().unwrap();
        assert_eq!((rip(&mut t), x(&mut t)), (end_rip, end_x));
        let mut back = Vec::new();
        for _ in 0..100 {
            back.push((rip(&mut t), x(&mut t), t.position().clone()));
            if t.position().event == 0 && t.position().moves.is_empty() {
                break;
            }
            let o = t.reverse_step().unwrap();
            assert!(matches!(o, Outcome::Stepped { .. }), "{o:?}");
        }
        assert!(back.len() < 100, "reverse-stepi never reached the start");
        back.reverse();
        let mut fresh = timeline();
        for (i, (r, v, _)) in back.iter().enumerate() {
            assert_eq!(
                (rip(&mut fresh), x(&mut fresh)),
                (*r, *v),
                "instruction {i}"
            );
            if i + 1 < back.len() {
                let tid = fresh.current_thread();
                fresh.step_forward(tid, &mut never()).unwrap();
            }
        }
        for (pos, r, v) in &trail {
            assert!(
                back.iter().any(|b| (b.0, b.1) == (*r, *v)),
                "{pos} not retraced"
            );
        }
        let _ = end_pos;
    }

    #[test]
    fn reverse_step_from_a_boundary_lands_on_the_previous_interval_s_last_instruction() {
        let mut t = timeline();
        t.go_to_event(2).unwrap();
        t.reverse_step().unwrap();
        assert_eq!((rip(&mut t), x(&mut t), t.when()), (0x40, 6, 1));
        assert_eq!(t.current_thread(), 2, "the thread of interval 1");
    }

    #[test]
    fn goto_then_when_gives_the_event_and_bad_events_are_refused() {
        let mut t = timeline();
        t.go_to_event(2).unwrap();
        assert_eq!(t.when(), 2);
        assert_eq!(x(&mut t), 6);
        t.go_to_event(1).unwrap();
        assert_eq!(x(&mut t), 3);
        assert!(matches!(t.go_to_event(9), Err(Error::NoSuchPosition(_))));
    }

    #[test]
    fn stepping_a_thread_that_does_not_run_runs_forward_to_it() {
        let mut t = timeline();
        let o = t.step_forward(2, &mut never()).unwrap();
        assert_eq!(o, Outcome::Stepped { tid: 2 });
        assert_eq!((t.when(), rip(&mut t)), (1, 0x20));
    }

    #[test]
    fn an_interrupt_stops_a_long_run_at_a_boundary() {
        let mut t = timeline();
        let mut n = 0;
        let o = t
            .resume_forward(&mut || {
                n += 1;
                n == 2
            })
            .unwrap();
        assert!(matches!(o, Outcome::Interrupted { .. }));
        assert_eq!(t.when(), 2);
    }

    /// 200 intervals of one thread each; interval b stores b+1 at X when b is a
    /// multiple of 7, and passes 0x30 (a breakpoint site) when b is a multiple of 11.
    fn long_program() -> Rc<Program> {
        let intervals = (0..200u64)
            .map(|b| {
                let mut insns = vec![op(0x10)];
                if b % 7 == 0 {
                    insns.push(store(0x20, b + 1));
                }
                if b % 11 == 0 {
                    insns.push(op(0x30));
                }
                insns.push(op(0x40));
                (1, insns)
            })
            .collect();
        Rc::new(Program { intervals })
    }

    /// Every reverse move lands where it lands without checkpoints (each one a replay
    /// from the start), and going back a little re-executes a little.
    #[test]
    fn checkpoints_change_the_cost_of_going_back_not_where_it_lands() {
        let mut with = Timeline::new(ToyOpener(long_program())).unwrap();
        let mut without = Timeline::new(ToyOpener(long_program())).unwrap();
        without.set_checkpoint_interval(u64::MAX);
        let watch = Watch {
            addr: X,
            len: 8,
            kind: WatchKind::Write,
        };
        for t in [&mut with, &mut without] {
            t.resume_forward(&mut never()).unwrap();
            t.watches.push(watch);
        }
        assert!(with.stats().held > 10, "{:?}", with.stats());
        assert_eq!(without.stats().held, 0);
        let mut trail = Vec::new();
        for i in 0..12 {
            let before = with.stats().events_replayed;
            let (a, b) = if i % 4 == 3 {
                (with.reverse_step(), without.reverse_step())
            } else if i == 6 {
                with.breakpoints.insert(0x30);
                without.breakpoints.insert(0x30);
                (
                    with.resume_forward(&mut never()),
                    without.resume_forward(&mut never()),
                )
            } else {
                (
                    with.reverse_continue(&mut never()),
                    without.reverse_continue(&mut never()),
                )
            };
            assert_eq!(format!("{:?}", a.unwrap()), format!("{:?}", b.unwrap()));
            assert_eq!(with.position(), without.position(), "move {i}");
            assert_eq!(x(&mut with), x(&mut without), "move {i}");
            assert_eq!(rip(&mut with), rip(&mut without), "move {i}");
            trail.push(with.when());
            // Stores are 7 events apart, breakpoints 11: a move back re-runs a few
            // intervals of about 200/64 events, never the whole run.
            let re_run = with.stats().events_replayed - before;
            assert!(re_run < 60, "move {i} re-ran {re_run} events");
        }
        assert!(with.stats().restored > 0);
        assert!(
            with.stats().events_replayed * 3 < without.stats().events_replayed,
            "{:?} vs {:?} ({trail:?})",
            with.stats(),
            without.stats()
        );
    }
}
