//! Preemption points in code we compile: the software tick counter.
//!
//! Without a hardware branch counter, a thread that never makes a syscall can only be
//! stopped by the watchdog (see [`crate::preempt`]), and replay must then search for the
//! stop. For code that `cargo record-test --instrument` compiles, there is a cheaper and
//! exact way: LLVM's sanitizer coverage makes every control-flow edge, load and store call
//! a function of ours ([`CALLBACKS_C`]). Each call counts a tick against the thread's
//! budget; when the budget runs out the thread makes the `chaos_tick` system call
//! ([`TICK_SYSCALL`]).
//!
//! The recorder answers that call like any recorded syscall whose result it chooses: the
//! result is the next budget, drawn by the seeded scheduler, and the call is a point
//! where the scheduler switches threads. Because the budget is in the trace, replay
//! answers the same call with the same budget and the thread stops again after exactly
//! as many ticks: no breakpoints, no state matching. Load and store callbacks put
//! preemption points between a load and the store that depends on it, where lost updates
//! happen.
//!
//! Outside the recorder the kernel answers ENOSYS and the thread never asks again, so an
//! instrumented binary runs normally (a few percent slower).

use crate::syscalls::nr;

/// The number of the `chaos_tick` call (a row of `syscalls.toml`, far above the kernel's).
pub const TICK_SYSCALL: u64 = nr::CHAOS_TICK;

/// The callbacks, in C: compile with `-DCHAOS_TICK_NR=<TICK_SYSCALL>` and link the object
/// into the instrumented binaries (see [`rustflags`]).
pub const CALLBACKS_C: &str = include_str!("callbacks.c");

/// A string in every instrumented binary (the callbacks define it).
pub const ABI_MARKER: &str = "cargo-chaos-ticks-v1";

/// Budgets are drawn uniformly from `1..=MAX_BUDGET` ticks: about one preemption point
/// per 50,000 ticks on average, a few microseconds of recorder time against tens of
/// microseconds of program time.
pub const MAX_BUDGET: u64 = 100_000;

/// The `rustc` flags that instrument a crate and link `callbacks_object` (the compiled
/// [`CALLBACKS_C`]). Pass them for the target only (`cargo --target <host>`), so build
/// scripts and proc-macros, which run inside cargo, stay uninstrumented.
pub fn rustflags(callbacks_object: &std::path::Path) -> Vec<String> {
    [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=3",
        "-Cllvm-args=-sanitizer-coverage-trace-pc-guard",
        "-Cllvm-args=-sanitizer-coverage-trace-loads",
        "-Cllvm-args=-sanitizer-coverage-trace-stores",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-Clink-arg={}", callbacks_object.display())])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callbacks_define_the_marker_and_every_hook() {
        assert!(CALLBACKS_C.contains(ABI_MARKER));
        for hook in [
            "__sanitizer_cov_trace_pc_guard_init",
            "__sanitizer_cov_trace_pc_guard(",
            "CHAOS_ACCESS(load, 8)",
            "CHAOS_ACCESS(store, 16)",
        ] {
            assert!(CALLBACKS_C.contains(hook), "{hook}");
        }
        assert_eq!(TICK_SYSCALL, 1000);
    }
}
