//! Chaos scheduling: the policy a flake hunt records under by default.
//!
//! Serialized, a program's threads interleave only where the engine switches them, and
//! the default policy switches rarely and evenly, which hides races that a loaded
//! machine shows. Chaos mode varies the schedule from run to run, each run's variation
//! drawn from its seed:
//!
//! - **Priorities** (after PCT, Burckhardt et al., ASPLOS 2010): each thread gets a
//!   random priority when first seen; whenever the engine switches, the highest-priority
//!   thread that can run goes next (the one that just gave way only if no other can).
//!   Threads whose blocking calls returned together thus resume in a random order, and a
//!   low-priority thread waits while others can run. A thread that yields, or that the
//!   watchdog preempts, drops below all others, so spinning threads cannot starve the
//!   one they wait for.
//! - **Change points**: one to three scheduling decisions (at syscalls and tick
//!   budgets), at random positions from 1 to 5,000, log-uniform, where the running
//!   thread drops below every other and gives way.
//! - **Switch rate**: the chance of a switch after an ordinary syscall is drawn per run
//!   (from 1/64 to 1/2, log-uniform) instead of a fixed 1/16.
//! - **Tick switch rate**: when a tick budget runs out the running thread gives way
//!   with a chance drawn per run (from 1/32 to 1, log-uniform), so one thread may run
//!   far ahead of another between change points. The decisions are taken ahead, when a
//!   budget is given: the budget is the sum of the ordinary draws up to the first one
//!   whose end is a switch ([`ChaosPolicy::tick_budget_until_switch`]), so a tick stop
//!   at which the thread would go on is never made (each costs a stop of the thread).
//! - **Tick budgets** of instrumented code: heavy-tailed (log-uniform up to a per-run
//!   maximum itself drawn between 1,000 and 400,000 ticks), so some runs preempt very
//!   often and most preempt about as often as the default policy.
//! - **Watchdog slices** of code without syscalls: log-uniform between 50 ms (the
//!   default policy's slice) and 200 ms, or **short**: each slice is short with a
//!   chance drawn per run between 1/16 and 1/2, log-uniform between 20 µs and 2 ms,
//!   so that a loop without syscalls in code that was not instrumented (a lost update
//!   on an atomic, a check-then-act) is preempted in its window. At most 1 to 8 short
//!   slices (drawn per run) may end in a preemption: each preemption point in
//!   uninstrumented code costs a state capture at record and a search at replay. A
//!   short slice that the thread ends itself (a syscall) costs only a wake-up of the
//!   watchdog thread.
//! - **Starvation**: in one run in four, once, a thread about to run while another sits
//!   in a blocking call is held back for 1 to 200 ms (log-uniform), so that a timeout
//!   in the other thread can fire first (the engine leaves it for a later pick while
//!   no blocked call has a timer that could end it within that time).
//!
//! What the seed fixes exactly: priorities, change points, the switch rate, every
//! decision taken at a syscall, the tick budgets, and which thread is starved at which
//! decision for how long. What wall-clock time decides: where a watchdog slice ends in
//! code without syscalls, and what other threads' blocking calls do during a
//! starvation (a timeout fires or not).

use std::collections::HashMap;
use std::time::Duration;

use super::SplitMix64;

/// A draw log-uniform in `lo..=hi` (`1 <= lo <= hi`): as likely between 1 and 10 as
/// between 10 and 100, a heavy tail towards `hi`.
pub fn log_uniform(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(lo.max(1)) as f64).ln());
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((l + u * (h - l)).exp() as u64).clamp(lo.max(1), hi.max(lo.max(1)))
}

/// The shortest watchdog slice in chaos mode.
pub const MIN_SLICE: Duration = Duration::from_millis(50);
/// The longest watchdog slice in chaos mode.
pub const MAX_SLICE: Duration = Duration::from_millis(200);
/// The shortest of the few short watchdog slices of a run.
pub const MIN_SHORT_SLICE: Duration = Duration::from_micros(20);
/// The longest of the few short watchdog slices of a run.
pub const MAX_SHORT_SLICE: Duration = Duration::from_millis(2);
/// The most short slices in one run.
pub const MAX_SHORT_SLICES: u64 = 8;
/// Priorities given at change points and demotions count down from here; initial
/// priorities lie above.
const INITIAL: u64 = 1 << 62;
/// The longest starvation.
pub const MAX_STARVATION: Duration = Duration::from_millis(200);
/// How many times longer a tick budget is when it runs out while no other thread can
/// run (see [`ChaosPolicy::tick_budget_alone`]).
pub const ALONE_FACTOR: u64 = 16;
/// The most ordinary draws one tick budget adds up (see
/// [`ChaosPolicy::tick_budget_until_switch`]); at the lowest tick switch rate (1/32) a
/// budget reaches it once in about 10^14.
pub const MAX_MERGED: u32 = 1024;

/// One run's chaos parameters and state.
#[derive(Debug, Clone)]
pub struct ChaosPolicy {
    rng: SplitMix64,
    /// Draws whose number depends on wall-clock time (watchdog slices), kept apart so
    /// that they never shift the seeded decisions.
    wall_rng: SplitMix64,
    /// Chance, out of 1024, of a switch after an ordinary syscall.
    pub switch_per_1024: u64,
    /// Chance, out of 1024, of a switch when a tick budget runs out.
    pub tick_switch_per_1024: u64,
    /// Decisions (counted from 1) at which the running thread drops to the lowest
    /// priority, in increasing order.
    pub change_points: Vec<u64>,
    /// The largest tick budget of this run.
    pub max_budget: u64,
    /// The pick (counted from 1) from which on a thread is starved, and for how long.
    pub starvation: Option<(u64, Duration)>,
    /// Short watchdog slices that may still end in a preemption this run.
    pub short_slices_left: u64,
    /// The last slice given was a short one.
    last_slice_short: bool,
    /// Chance, out of 1024, that a watchdog slice is a short one.
    pub short_slice_per_1024: u64,
    priorities: HashMap<i32, u64>,
    /// The last switch was this policy's decision (a change point or a random switch),
    /// not a yield, a blocking call or the watchdog.
    decided: bool,
    /// Each thread's largest tick budget.
    thread_budgets: HashMap<i32, u64>,
    /// Per thread, the decision taken ahead for the end of the budget it was given last
    /// (`true`: at a change point), if that end is a switch.
    tick_ahead: HashMap<i32, bool>,
    /// Per thread, the decision taken ahead for the tick stop it is in (moved from
    /// `tick_ahead` when it asks for its next budget).
    tick_due: HashMap<i32, bool>,
    /// The next priority given at a change point (below every initial one).
    next_low: u64,
    decisions: u64,
    picks: u64,
    running: Option<i32>,
}

impl ChaosPolicy {
    /// The parameters of the run with this seed.
    pub fn new(seed: u64) -> Self {
        // A stream of its own, so the default policy's draws are not shifted.
        let mut rng = SplitMix64::new(seed ^ 0x6368_616f_735f_7063);
        let switch_per_1024 = log_uniform(&mut rng, 16, 512);
        let tick_switch_per_1024 = log_uniform(&mut rng, 32, 1024);
        let n = 1 + rng.below(3);
        let mut change_points: Vec<u64> = (0..n).map(|_| log_uniform(&mut rng, 1, 5_000)).collect();
        change_points.sort_unstable();
        change_points.dedup();
        let max_budget = log_uniform(&mut rng, 10_000, 4 * crate::ticks::MAX_BUDGET);
        let starvation = (rng.below(4) == 0).then(|| {
            let at = log_uniform(&mut rng, 1, 1_000);
            let ms = log_uniform(&mut rng, 1, MAX_STARVATION.as_millis() as u64);
            (at, Duration::from_millis(ms))
        });
        let mut wall_rng = SplitMix64::new(seed ^ 0x7761_6c6c_636c_6f63);
        let short_slices_left = 1 + wall_rng.below(MAX_SHORT_SLICES);
        let short_slice_per_1024 = log_uniform(&mut wall_rng, 64, 512);
        ChaosPolicy {
            rng,
            wall_rng,
            short_slices_left,
            short_slice_per_1024,
            last_slice_short: false,
            switch_per_1024,
            tick_switch_per_1024,
            change_points,
            max_budget,
            starvation,
            priorities: HashMap::new(),
            decided: false,
            thread_budgets: HashMap::new(),
            tick_ahead: HashMap::new(),
            tick_due: HashMap::new(),
            next_low: INITIAL,
            decisions: 0,
            picks: 0,
            running: None,
        }
    }

    fn priority(&mut self, tid: i32) -> u64 {
        if let Some(p) = self.priorities.get(&tid) {
            return *p;
        }
        // Initial priorities lie above every change point's.
        let p = INITIAL + (self.rng.next_u64() >> 2);
        self.priorities.insert(tid, p);
        p
    }

    /// Whether the running thread should give way after an ordinary syscall.
    pub fn should_switch_after_syscall(&mut self) -> bool {
        self.decide(self.switch_per_1024)
    }

    /// Whether the running thread should give way when its tick budget ran out: the
    /// decision taken when the budget was given, if there was one (see
    /// [`Self::tick_budget_until_switch`]), else one taken now.
    pub fn should_switch_at_tick(&mut self) -> bool {
        let tid = self.running.unwrap_or(0);
        match self.tick_due.remove(&tid) {
            Some(change_point) => {
                self.apply_switch(change_point);
                true
            }
            None => self.decide(self.tick_switch_per_1024),
        }
    }

    /// A decision: the running thread gives way at a change point (dropping to the
    /// lowest priority), otherwise with a chance of `per_1024` in 1024.
    fn decide(&mut self, per_1024: u64) -> bool {
        match self.draw_decision(per_1024) {
            Some(change_point) => {
                self.apply_switch(change_point);
                true
            }
            None => {
                self.decided = false;
                false
            }
        }
    }

    /// A decision's draw, with no effect yet: `Some(at a change point)` for a switch.
    fn draw_decision(&mut self, per_1024: u64) -> Option<bool> {
        self.decisions += 1;
        if self.change_points.binary_search(&self.decisions).is_ok() {
            return Some(true);
        }
        (self.rng.below(1024) < per_1024).then_some(false)
    }

    /// The running thread gives way by this policy's decision (at a change point it
    /// first drops below every other thread).
    fn apply_switch(&mut self, change_point: bool) {
        if change_point {
            if let Some(tid) = self.running {
                self.demote(tid);
            }
        }
        self.decided = true;
    }

    /// Drops `tid` below every other thread.
    fn demote(&mut self, tid: i32) {
        self.next_low -= 1;
        self.priorities.insert(tid, self.next_low);
    }

    /// The running thread yields: it gives way, and drops below every other thread (a
    /// thread that yields in a loop waits for another that would otherwise never get
    /// to run).
    pub fn yielded(&mut self) {
        self.decided = false;
    }

    /// The next tick budget of the running thread: log-uniform between a 64th of its
    /// largest budget and that budget, drawn when the thread asks first (log-uniform between 1,000 and
    /// `max_budget`), so that one thread may run far ahead of another.
    pub fn tick_budget(&mut self) -> u64 {
        let tid = self.running.unwrap_or(0);
        let max = match self.thread_budgets.get(&tid) {
            Some(m) => *m,
            None => {
                let m = log_uniform(&mut self.rng, 1_000, self.max_budget);
                self.thread_budgets.insert(tid, m);
                m
            }
        };
        log_uniform(&mut self.rng, (max / 64).max(1), max)
    }

    /// The next tick budget of the running thread when no other thread can run (all of
    /// them sit in blocking calls whose results are not recorded yet): [`ALONE_FACTOR`]
    /// times the ordinary draw, which it makes all the same (the seeded stream goes on
    /// as it would). A budget that runs out then is a stop where nobody could take over;
    /// the longer budget saves most of those, and it stays within the thread's next few
    /// ordinary budgets once another thread can run again.
    pub fn tick_budget_alone(&mut self) -> u64 {
        self.tick_stop();
        self.tick_budget().saturating_mul(ALONE_FACTOR)
    }

    /// The next tick budget of the running thread while another thread can run: the
    /// ordinary draws ([`Self::tick_budget`]) added up to the first whose end the
    /// thread gives way at, the decisions for the ends of the others (it would go on)
    /// and for that one (kept for [`Self::should_switch_at_tick`]) taken now, at most
    /// [`MAX_MERGED`] draws (the decision at the end of the last is then taken there).
    /// The ticks between two switches are distributed as when each draw ended in a
    /// stop of its own, without the stops at which the thread would go on: they cost a
    /// ptrace stop each and changed nothing (a budget of its own each).
    pub fn tick_budget_until_switch(&mut self) -> u64 {
        self.tick_stop();
        let tid = self.running.unwrap_or(0);
        let mut budget = self.tick_budget();
        for _ in 1..MAX_MERGED {
            if let Some(change_point) = self.draw_decision(self.tick_switch_per_1024) {
                self.tick_ahead.insert(tid, change_point);
                break;
            }
            budget = budget.saturating_add(self.tick_budget());
        }
        budget
    }

    /// The running thread is at a tick stop (it asks for its next budget): the
    /// decision taken ahead for the end of its last budget, if any, is the one due now.
    fn tick_stop(&mut self) {
        let tid = self.running.unwrap_or(0);
        match self.tick_ahead.remove(&tid) {
            Some(d) => self.tick_due.insert(tid, d),
            None => self.tick_due.remove(&tid),
        };
    }

    /// The highest-priority runnable thread, `previous` only if it is the only one.
    /// A `previous` that can still run but gave way without a decision of this policy
    /// (it yielded, or the watchdog preempted it) first drops below every other
    /// thread: threads that spin waiting for another then take turns below that one,
    /// which gets to run. A thread that blocked keeps its priority.
    pub fn pick(&mut self, runnable: &[i32], previous: Option<i32>) -> i32 {
        self.picks += 1;
        let decided = std::mem::take(&mut self.decided);
        if let Some(p) = previous.filter(|p| !decided && runnable.contains(p)) {
            self.demote(p);
        }
        let mut best: Option<(u64, i32)> = None;
        for &t in runnable {
            if Some(t) == previous && runnable.len() > 1 {
                continue;
            }
            let p = self.priority(t);
            let higher = match best {
                None => true,
                Some((q, _)) => q < p,
            };
            if higher {
                best = Some((p, t));
            }
        }
        let tid = best.map(|(_, t)| t).unwrap_or(runnable[0]);
        self.running = Some(tid);
        tid
    }

    /// How long to hold back the thread just picked, when another thread sits in a
    /// blocking call (`others_blocked`): `Some` once per run at most.
    pub fn starvation(&mut self, others_blocked: bool) -> Option<Duration> {
        let d = self.starvation_due(others_blocked)?;
        self.starvation = None;
        Some(d)
    }

    /// [`Self::starvation`] without using it up: the engine first checks that it can
    /// change anything (see `Recorder::pick`).
    pub fn starvation_due(&self, others_blocked: bool) -> Option<Duration> {
        let (at, d) = self.starvation?;
        (others_blocked && self.picks >= at).then_some(d)
    }

    /// The last slice ended in a preemption (the watchdog stopped the thread).
    pub fn preempted(&mut self) {
        if std::mem::take(&mut self.last_slice_short) {
            self.short_slices_left = self.short_slices_left.saturating_sub(1);
        }
    }

    /// The watchdog slice for a thread while others are ready.
    pub fn slice(&mut self) -> Duration {
        self.last_slice_short =
            self.short_slices_left > 0 && self.wall_rng.below(1024) < self.short_slice_per_1024;
        if self.last_slice_short {
            return Duration::from_micros(log_uniform(
                &mut self.wall_rng,
                MIN_SHORT_SLICE.as_micros() as u64,
                MAX_SHORT_SLICE.as_micros() as u64,
            ));
        }
        Duration::from_millis(log_uniform(
            &mut self.wall_rng,
            MIN_SLICE.as_millis() as u64,
            MAX_SLICE.as_millis() as u64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget drawn while the thread runs alone is the ordinary draw made longer, and
    /// the seeded stream after it is the one without it.
    #[test]
    fn a_budget_alone_is_the_ordinary_draw_longer_and_shifts_nothing() {
        for seed in 0..32 {
            let (mut a, mut b) = (ChaosPolicy::new(seed), ChaosPolicy::new(seed));
            for i in 0..60 {
                if i % 3 == 0 {
                    assert_eq!(a.tick_budget_alone(), b.tick_budget() * ALONE_FACTOR);
                } else {
                    assert_eq!(a.tick_budget(), b.tick_budget());
                }
                assert_eq!(a.should_switch_at_tick(), b.should_switch_at_tick());
            }
        }
    }

    /// While another thread can run, every tick budget ends in a switch: the stops at
    /// which the thread would have gone on are merged into the budget (issue 15: each
    /// is a ptrace stop that changes nothing). At a tick stop the budget is given
    /// first (the call's entry), then the decision for the end of the last one is
    /// taken (its exit).
    #[test]
    fn every_tick_budget_with_others_ready_ends_in_a_switch() {
        for seed in 0..64 {
            let mut p = ChaosPolicy::new(seed);
            p.pick(&[1, 2], None);
            let mut merged = 0;
            let mut asked = std::collections::HashSet::new();
            for i in 0..200 {
                let b = p.tick_budget_until_switch();
                assert!(b >= 1, "seed {seed}");
                let tid = p.running.unwrap();
                merged += (b > p.thread_budgets[&tid]) as u32;
                let switch = p.should_switch_at_tick();
                // A thread's first stop ends no budget given ahead: it decides then.
                assert!(switch || asked.insert(tid), "seed {seed}, stop {i}");
                asked.insert(tid);
                if switch {
                    p.pick(&[1, 2], p.running);
                }
            }
            if p.tick_switch_per_1024 < 512 {
                assert!(merged > 0, "seed {seed}: no budget added up draws");
            }
            // A budget given alone takes no decision ahead: its end decides.
            p.tick_budget_alone();
            p.should_switch_at_tick();
            p.tick_budget_alone();
            let fresh = p.clone().decide(p.tick_switch_per_1024);
            assert_eq!(p.should_switch_at_tick(), fresh, "seed {seed}");
        }
    }

    /// The ticks a thread runs between two switches are distributed as when every
    /// ordinary draw ended in a stop with its own decision.
    #[test]
    fn merged_tick_budgets_run_as_long_between_switches_as_single_draws() {
        for seed in 0..16 {
            let (mut old, mut new) = (ChaosPolicy::new(seed), ChaosPolicy::new(seed));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut run = 0;
            while a.len() < 3000 {
                run += old.tick_budget();
                if old.should_switch_at_tick() {
                    a.push(run);
                    run = 0;
                }
            }
            for i in 0..3000 {
                b.push(new.tick_budget_until_switch());
                assert!(new.should_switch_at_tick() || i == 0);
            }
            let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
            let (ma, mb) = (mean(&a), mean(&b));
            assert!(
                (mb / ma - 1.0).abs() < 0.1,
                "seed {seed}: {ma} against {mb}"
            );
        }
    }

    /// A change point met while a budget is given takes effect at the budget's end: the
    /// thread drops below the others there, not before.
    #[test]
    fn a_change_point_taken_ahead_demotes_at_the_stop() {
        let seed = (0..1000u64)
            .find(|&s| {
                let p = ChaosPolicy::new(s);
                p.change_points[0] > 3 && p.tick_switch_per_1024 < 64
            })
            .expect("a seed with a late change point and a low tick switch rate");
        let mut p = ChaosPolicy::new(seed);
        let first = p.pick(&[1, 2, 3], None);
        let at = p.change_points[0];
        while p.decisions + 1 < at {
            p.should_switch_after_syscall();
        }
        // The next decision, taken ahead, is the change point: no demotion yet.
        p.tick_budget_until_switch();
        assert_eq!(p.decisions, at);
        assert!(p.priorities[&first] >= INITIAL);
        // At the budget's end the thread gives way and drops below the others.
        p.tick_budget_until_switch();
        assert!(p.should_switch_at_tick());
        assert!(p.priorities[&first] < INITIAL);
        assert_ne!(p.pick(&[1, 2, 3], Some(first)), first);
    }

    /// Short slices come within their bounds, only as many end in a preemption as the
    /// run allows, and slices the thread ended itself cost none of that allowance.
    #[test]
    fn short_slices_are_bounded_and_only_preemptions_use_them_up() {
        let mut seen_short = 0;
        for seed in 0..64 {
            let mut p = ChaosPolicy::new(seed);
            let allowed = p.short_slices_left;
            assert!((1..=MAX_SHORT_SLICES).contains(&allowed), "{allowed}");
            // Slices the thread ends itself: the allowance stays.
            let mut short = 0;
            for _ in 0..2_000 {
                let s = p.slice();
                if s < MIN_SLICE {
                    assert!((MIN_SHORT_SLICE..=MAX_SHORT_SLICE).contains(&s), "{s:?}");
                    short += 1;
                } else {
                    assert!((MIN_SLICE..=MAX_SLICE).contains(&s), "{s:?}");
                }
            }
            assert!(short > 0, "seed {seed}: no short slice in 2000");
            assert_eq!(p.short_slices_left, allowed);
            seen_short += short;
            // Each preemption after a short slice uses one up; then slices are long.
            let mut preempted = 0;
            for _ in 0..100_000 {
                if p.slice() < MIN_SLICE {
                    p.preempted();
                    preempted += 1;
                }
                if p.short_slices_left == 0 {
                    break;
                }
            }
            assert_eq!(preempted, allowed, "seed {seed}");
            assert!((0..1_000).all(|_| p.slice() >= MIN_SLICE), "seed {seed}");
            // A preemption after a long slice uses nothing.
            p.preempted();
            assert_eq!(p.short_slices_left, 0);
        }
        assert!(seen_short > 0);
    }
}
