//! What the trace says about how a preemption point was chosen at record time and how
//! replay finds it again ([`PointInfo`], carried by [`crate::trace::Event::Preempted`]).
//!
//! Traces of format 2 and older carry [`crate::trace::Event::Preempt`] without this
//! information; replay treats those as [`Method::StateMatch`] with no stack words.

use serde::{Deserialize, Serialize};

/// Most stack words a point may carry (what the trampoline compares before it traps).
pub const MAX_STACK_WORDS: usize = 64;
/// Stack words recorded below `rsp` (the red zone, where leaf functions keep locals).
pub const WORDS_BELOW_RSP: usize = 16;
/// Stack words recorded from `rsp` up.
pub const WORDS_FROM_RSP: usize = 32;
/// Most memory words the stepped instructions wrote that a point carries.
pub const MAX_WRITTEN_WORDS: usize = 8;
/// Most memory words a point may carry: those written, from format 11 those the
/// registers point at (`steer::MAX_REGISTER_WORDS`), and from format 15 those the stack
/// words point at (`steer::MAX_STACK_POINTED_WORDS`).
pub const MAX_MEMORY_WORDS: usize =
    MAX_WRITTEN_WORDS + super::steer::MAX_REGISTER_WORDS + super::steer::MAX_STACK_POINTED_WORDS;

/// How replay finds a preemption point again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// The first time the thread is at the recorded `rip` with exactly the recorded
    /// state (registers, extended state, stack and memory hashes). Replay finds it with
    /// a conditional trap patched into the program when that is provably safe, and with
    /// a hardware execution breakpoint otherwise.
    StateMatch,
    /// The thread was stopped inside a `rep movs`/`rep stos`/`rep lods` (the recorded
    /// `rcx` is what was left to do). Replay stops at the instruction, runs only the
    /// iterations that had been done, and then compares the state.
    RepString,
    /// The point was counted by a hardware branch counter (a PMU): `count` retired
    /// conditional branches since the thread's previous event. No replayer of this
    /// version has one; reserved so that such traces are refused with a plain message
    /// rather than misread.
    BranchCount {
        /// Retired conditional branches.
        count: u64,
    },
}

impl Method {
    /// Why this machine cannot find points of this method, if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        match self {
            Method::StateMatch | Method::RepString => None,
            Method::BranchCount { .. } => Some(
                "its preemption points were counted with a hardware branch counter (PMU), which this replayer cannot use (this machine has none, or this version does not support it)".into(),
            ),
        }
    }

    /// A short name for messages and `dump`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::StateMatch => "state match",
            Method::RepString => "interrupted rep string instruction",
            Method::BranchCount { .. } => "branch count",
        }
    }
}

/// How a preemption point was found at record time and what helps find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInfo {
    /// How replay finds it.
    pub method: Method,
    /// Instructions the recorder single-stepped after the watchdog stopped the thread,
    /// to reach a point replay can find cheaply (0 when it stopped at one).
    pub steps: u32,
    /// Offset from `rsp` (bytes, a multiple of 8, may be negative) of `stack[0]`.
    pub stack_from: i32,
    /// Consecutive stack words from `rsp + stack_from`, as recorded (a filter replay
    /// applies before the full state comparison; they are also covered by the stack
    /// hash).
    pub stack: Vec<u64>,
    /// Words of memory (address, value at the point) that the instructions stepped
    /// over wrote: a loop's progress kept in memory (a counter in a global), which the
    /// trampoline compares too; from format 11, then the words the general registers
    /// point at, and from format 15 those the stack words point at
    /// (`steer::pointed_words`).
    pub memory: Vec<(u64, u64)>,
}

impl PointInfo {
    /// What a trace without this information means.
    pub fn legacy() -> Self {
        PointInfo {
            method: Method::StateMatch,
            steps: 0,
            stack_from: 0,
            stack: Vec::new(),
            memory: Vec::new(),
        }
    }

    /// Why the trace cannot hold this (for the trace validator), if it cannot.
    pub fn invalid(&self) -> Option<String> {
        if self.stack.len() > MAX_STACK_WORDS {
            return Some(format!(
                "carries {} stack words (at most {MAX_STACK_WORDS})",
                self.stack.len()
            ));
        }
        if self.memory.len() > MAX_MEMORY_WORDS {
            return Some(format!(
                "carries {} memory words (at most {MAX_MEMORY_WORDS})",
                self.memory.len()
            ));
        }
        let below = (WORDS_BELOW_RSP * 8) as i32;
        if self.stack_from % 8 != 0 || self.stack_from < -below || self.stack_from > 0 {
            return Some(format!(
                "has its stack words at rsp{:+} (must be a multiple of 8 from -{below} to 0)",
                self.stack_from
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_branch_counts_are_unavailable() {
        assert!(Method::StateMatch.unavailable().is_none());
        assert!(Method::RepString.unavailable().is_none());
        let why = Method::BranchCount { count: 7 }.unavailable().unwrap();
        assert!(why.contains("PMU"), "{why}");
    }

    #[test]
    fn validation() {
        let mut p = PointInfo::legacy();
        assert!(p.invalid().is_none());
        p.stack_from = -128;
        p.stack = vec![0; 48];
        assert!(p.invalid().is_none());
        p.stack_from = -136;
        assert!(p.invalid().is_some());
        p.stack_from = 4;
        assert!(p.invalid().is_some());
        p.stack_from = 0;
        p.stack = vec![0; MAX_STACK_WORDS + 1];
        assert!(p.invalid().is_some());
        p.stack = vec![];
        p.memory = vec![(8, 0); MAX_MEMORY_WORDS + 1];
        assert!(p.invalid().is_some());
    }
}
