//! Time slices of the running thread: measured in its own CPU time by a perf event
//! (`preempt::cpu_clock`), with the wall-clock watchdog as a backstop; or, where perf
//! events are refused or `RecordOptions::slice_clock` says so, by the watchdog alone.
//!
//! The backstop: should the perf signal never come (its owner went stale with an exec
//! from another thread, a kernel that does not deliver it), the watchdog still ends the
//! slice, [`WALL_BACKSTOP`] after the slice's own length in wall-clock time, so a thread
//! spinning for another can never hang the recording. On a loaded machine the backstop
//! may end a long CPU slice early: a slice of another length, nothing worse.

use std::time::Duration;

use super::*;
use crate::preempt::cpu_clock::{CpuClock, OpenError};
use crate::preempt::Clock;

/// How much longer than its slice the wall-clock watchdog lets a thread on a CPU-time
/// slice run.
pub const WALL_BACKSTOP: Duration = Duration::from_millis(250);

/// How long a thread that holds a signal (one that arrived outside a syscall, see
/// `signal`) may run without a traced call before it is stopped to be given the signal
/// at a preemption point (`Recorder::give_held_signal`). A thread that makes a traced
/// call first gets the signal right after it, as always; one in a loop without syscalls
/// would otherwise never get it (rr's `sigprof` test: a handler counting `SIGPROF`s
/// while the main thread spins until enough arrived).
pub const HELD_SIGNAL_SLICE: Duration = Duration::from_millis(1);
/// The shortest such slice: what is left of [`HELD_SIGNAL_SLICE`] after the thread's
/// other stops (each new signal is a stop) is never less.
const MIN_HELD_SIGNAL_SLICE: Duration = Duration::from_micros(20);

impl Recorder {
    /// Starts a slice of `slice` for the running thread `cur` of process `tgid`.
    pub(super) fn start_slice(&mut self, tgid: i32, cur: i32, slice: Duration) {
        if self.arm_cpu_clock(cur, slice) {
            // A backstop far beyond the slice: the coarse clock is precise enough.
            self.watchdog.arm(
                tgid,
                cur,
                slice.saturating_add(WALL_BACKSTOP),
                Clock::Coarse,
            );
        } else {
            self.watchdog.arm(tgid, cur, slice, Clock::Precise);
        }
    }

    /// Starts the running thread `cur`'s slice: `ordinary` (while others wait to run),
    /// or the rest of its held signal's slice when that is shorter (see
    /// [`HELD_SIGNAL_SLICE`]); none when neither applies.
    pub(super) fn start_slices(&mut self, tgid: i32, cur: i32, ordinary: Option<Duration>) {
        let held = self.held_signal_slice(cur);
        let slice = match (ordinary, held) {
            (Some(o), Some(h)) if h < o => Some((h, true)),
            (None, Some(h)) => Some((h, true)),
            (Some(o), _) => Some((o, false)),
            (None, None) => None,
        };
        if let Some(t) = self.threads.get_mut(&cur) {
            t.delivery_slice = slice.is_some_and(|(_, delivery)| delivery);
            t.slice_ends = slice.map(|(s, _)| crate::arch::self_traps::monotonic_now() + s);
        }
        if let Some((slice, _)) = slice {
            self.start_slice(tgid, cur, slice);
        }
    }

    /// What is left of `cur`'s held signal's slice, if it holds a signal that the next
    /// preemption point could deliver.
    fn held_signal_slice(&self, cur: i32) -> Option<Duration> {
        if self.no_watchdog {
            return None;
        }
        let t = self.threads.get(&cur)?;
        if t.deferred.is_empty() || t.requeued.is_some() {
            return None;
        }
        let since = t.held_since?;
        Some(
            HELD_SIGNAL_SLICE
                .saturating_sub(crate::arch::self_traps::monotonic_now().saturating_sub(since))
                .max(MIN_HELD_SIGNAL_SLICE),
        )
    }

    /// Cuts the running slice of `cur` to end at most [`crate::preempt::SLICE`] from now
    /// (a blocked thread can run again).
    pub(super) fn shorten_slice(&mut self, cur: i32) {
        let slice = crate::preempt::SLICE;
        let on_cpu = match self.threads.get_mut(&cur).and_then(|t| t.clock.as_mut()) {
            Some(clock) => match clock.shorten(slice) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!("thread {cur}: shortening its CPU-time slice: {e}");
                    false
                }
            },
            None => false,
        };
        if on_cpu {
            self.watchdog.shorten(slice + WALL_BACKSTOP, Clock::Coarse);
        } else {
            self.watchdog.shorten(slice, Clock::Precise);
        }
    }

    /// The running thread `cur` stopped (or the recording ends): its slice is over.
    pub(super) fn end_slice(&mut self, cur: i32) {
        self.watchdog.disarm();
        if let Some(clock) = self.threads.get_mut(&cur).and_then(|t| t.clock.as_mut()) {
            clock.disarm();
        }
    }

    /// Whether a signal's siginfo says the recorder sent it to thread `tid`: the
    /// watchdog's or the interrupter's `tgkill`, or the thread's CPU-time clock.
    pub(super) fn sent_by_recorder(&self, tid: i32, si: &libc::siginfo_t) -> bool {
        signal::sent_by_recorder(si)
            || self
                .threads
                .get(&tid)
                .and_then(|t| t.clock.as_ref())
                .is_some_and(|c| c.sent(si))
    }

    /// Arms `cur`'s CPU-time clock (opened at its first slice); false when slices are
    /// measured in wall-clock time (refused, failed, or chosen so).
    fn arm_cpu_clock(&mut self, cur: i32, slice: Duration) -> bool {
        if !self.cpu_slices {
            return false;
        }
        let Some(t) = self.threads.get_mut(&cur) else {
            return false;
        };
        if t.clock.is_none() {
            match CpuClock::open(cur) {
                Ok(c) => {
                    tracing::debug!("thread {cur}: time slices in its CPU time (task-clock)");
                    t.clock = Some(c);
                }
                Err(OpenError::Refused(e)) => {
                    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "unknown".into());
                    tracing::debug!(
                        "no task-clock perf event for thread {cur} ({e}; \
                         kernel.perf_event_paranoid = {paranoid}): time slices in \
                         wall-clock time for this recording"
                    );
                    self.cpu_slices = false;
                    return false;
                }
                Err(OpenError::Failed(e)) => {
                    tracing::debug!("no task-clock perf event for thread {cur} ({e})");
                    return false;
                }
            }
        }
        let clock = t.clock.as_mut().expect("opened above");
        match clock.arm(slice) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("thread {cur}: arming its CPU-time slice: {e}");
                false
            }
        }
    }
}
