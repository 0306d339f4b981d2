//! The scheduler: which thread of the recorded program runs next.
//!
//! Exactly one thread runs at a time. The engine asks the scheduler at each scheduling
//! point (a syscall exit, a blocking syscall's entry, a thread's exit). Decisions come
//! from a seeded random source, so the seed (printed and recorded) names the schedule;
//! the trace records the resulting order, so replay never needs the scheduler.

/// A small deterministic PRNG (SplitMix64). Hand-written on purpose: a seed must give
/// the same schedule with every version of this tool, which a general-purpose RNG crate
/// does not promise across releases.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Why the engine asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The running thread finished a syscall.
    SyscallExit,
    /// The running thread yielded (`sched_yield`).
    Yield,
    /// Instrumented code used up its tick budget (see [`crate::ticks`]).
    Tick,
}

/// Scheduling policy.
#[derive(Debug, Clone)]
pub struct Scheduler {
    rng: SplitMix64,
    /// Chance, out of 1024, of switching threads after an ordinary syscall.
    switch_per_1024: u64,
}

impl Scheduler {
    /// The default policy with this seed.
    pub fn new(seed: u64) -> Self {
        Scheduler {
            rng: SplitMix64::new(seed),
            switch_per_1024: 64,
        }
    }

    /// Whether the running thread should give way at this point, when others can run.
    pub fn should_switch(&mut self, point: Point) -> bool {
        match point {
            Point::Yield | Point::Tick => true,
            Point::SyscallExit => self.rng.below(1024) < self.switch_per_1024,
        }
    }

    /// The next tick budget of instrumented code: uniform in `1..=ticks::MAX_BUDGET`, so
    /// a preemption point can fall on any load, store or edge.
    pub fn tick_budget(&mut self) -> u64 {
        1 + self.rng.below(crate::ticks::MAX_BUDGET)
    }

    /// Picks the next thread among the runnable ones (non-empty), avoiding `previous`
    /// when there is a choice.
    pub fn pick(&mut self, runnable: &[i32], previous: Option<i32>) -> i32 {
        let others: Vec<i32> = runnable
            .iter()
            .copied()
            .filter(|t| Some(*t) != previous)
            .collect();
        let from = if others.is_empty() { runnable } else { &others };
        from[self.rng.below(from.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let mut a = Scheduler::new(7);
        let mut b = Scheduler::new(7);
        for _ in 0..100 {
            assert_eq!(a.pick(&[1, 2, 3], Some(1)), b.pick(&[1, 2, 3], Some(1)));
            assert_eq!(
                a.should_switch(Point::SyscallExit),
                b.should_switch(Point::SyscallExit)
            );
        }
    }

    #[test]
    fn pick_avoids_previous_when_possible() {
        let mut s = Scheduler::new(1);
        for _ in 0..50 {
            assert_eq!(s.pick(&[4, 5], Some(4)), 5);
            assert_eq!(s.pick(&[4], Some(4)), 4);
        }
    }
}
