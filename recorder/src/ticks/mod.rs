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
pub const ABI_MARKER: &str = "cargo-chaos-ticks-v2";

/// The third argument of every `chaos_tick` call of the callbacks (see [`CALLBACKS_C`]):
/// the first two are then the address of the calling thread's budget and the address of
/// the refill code, whose fast path has the shape [`TickLayout`] checks.
pub const TICK_MAGIC: u64 = 0x6b63_6974_5f73_6f61;

/// Bytes of the callbacks' fast path, which ends where the refill begins.
pub const FAST_LEN: u64 = 15;

/// Bytes of the refill code.
pub const REFILL_LEN: u64 = 59;

/// The callbacks' code as a debugger sees it, from the refill's address (the second
/// argument of a `chaos_tick` call made with [`TICK_MAGIC`]). A thread that runs the
/// fast path with a budget `b` set to `k` reaches the refill after exactly `k` ticks
/// with the state it would have after the `k`-th tick's `subq`, except for the budget,
/// the flags, and `rip`/`rsp` (the `ret` not yet done): [`TickLayout::sub1_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickLayout {
    /// The refill's first instruction (the fast path's `jle` target).
    pub refill: u64,
}

impl TickLayout {
    /// The fast path's first instruction.
    pub fn fast(&self) -> u64 {
        self.refill - FAST_LEN
    }

    /// The fast path's `jle` (the `subq` is done when a thread stands there or later).
    pub fn jle(&self) -> u64 {
        self.refill - 3
    }

    /// The fast path's `ret`.
    pub fn ret(&self) -> u64 {
        self.refill - 1
    }

    /// Whether `rip` lies in the callbacks' code (fast path or refill).
    pub fn contains(&self, rip: u64) -> bool {
        rip >= self.fast() && rip < self.refill + REFILL_LEN
    }

    /// Whether a thread at `rip` has done the current tick's `subq` but not returned
    /// from the callback yet (the `jle`, the `ret`, or the refill).
    pub fn after_sub(&self, rip: u64) -> bool {
        rip >= self.jle() && rip < self.refill + REFILL_LEN
    }

    /// The thread-pointer offset of the budget, from the fast path's code (`code`: the
    /// [`FAST_LEN`] bytes at [`TickLayout::fast`]; `got`: reads the 8 bytes of the GOT
    /// entry when the first instruction loads from it); `None` when the code does not
    /// have the callbacks' shape.
    pub fn tpoff(&self, code: &[u8], got: impl FnOnce(u64) -> Option<u64>) -> Option<u64> {
        const TAIL: [u8; 8] = [0x64, 0x48, 0x83, 0x28, 0x01, 0x7e, 0x01, 0xc3];
        if code.len() != FAST_LEN as usize || code[7..] != TAIL {
            return None;
        }
        let imm = i32::from_le_bytes(code[3..7].try_into().ok()?);
        match code[..3] {
            // movq disp(%rip), %rax: from the GOT.
            [0x48, 0x8b, 0x05] => got(self.fast().wrapping_add(7).wrapping_add(imm as i64 as u64)),
            // movq $imm, %rax (the linker relaxed the GOT load).
            [0x48, 0xc7, 0xc0] => Some(imm as i64 as u64),
            _ => None,
        }
    }

    /// The flags after `subq $1` turned `result + 1` into `result`, the other bits of
    /// `eflags` kept: CF, PF, AF, ZF, SF and OF as the instruction sets them.
    pub fn sub1_flags(eflags: u64, result: i64) -> u64 {
        const CF: u64 = 1;
        const PF: u64 = 1 << 2;
        const AF: u64 = 1 << 4;
        const ZF: u64 = 1 << 6;
        const SF: u64 = 1 << 7;
        const OF: u64 = 1 << 11;
        let before = result.wrapping_add(1) as u64;
        let after = result as u64;
        let mut f = eflags & !(CF | PF | AF | ZF | SF | OF);
        if before == 0 {
            f |= CF; // borrow: 0 - 1
        }
        if (after as u8).count_ones() % 2 == 0 {
            f |= PF;
        }
        if (before ^ 1 ^ after) & 0x10 != 0 {
            f |= AF;
        }
        if after == 0 {
            f |= ZF;
        }
        if (after as i64) < 0 {
            f |= SF;
        }
        if before == 1 << 63 {
            f |= OF; // i64::MIN - 1
        }
        f
    }
}

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
            "CHAOS_ALIAS(__sanitizer_cov_trace_pc_guard)",
            "CHAOS_ALIAS(__sanitizer_cov_load8)",
            "CHAOS_ALIAS(__sanitizer_cov_store16)",
        ] {
            assert!(CALLBACKS_C.contains(hook), "{hook}");
        }
        assert_eq!(TICK_SYSCALL, 1000);
        assert!(CALLBACKS_C.contains(&format!("{TICK_MAGIC:#x}")));
    }

    /// The flags `subq $1` leaves, as the processor computes them: run the instruction.
    fn real_sub1_flags(before: i64) -> u64 {
        let mut v = before;
        let flags: u64;
        // SAFETY: subtracts from a local and reads the flags; the stack is balanced.
        unsafe {
            std::arch::asm!("sub qword ptr [{p}], 1", "pushfq", "pop {f}",
                p = in(reg) &mut v, f = out(reg) flags);
        }
        assert_eq!(v, before.wrapping_sub(1));
        flags
    }

    #[test]
    fn sub1_flags_match_the_processor() {
        const STATUS: u64 = 0x8d5;
        for before in [
            2i64,
            1,
            0,
            -1,
            16,
            17,
            0x10,
            0x100,
            0x7f,
            0x80,
            255,
            256,
            1000,
            99_999,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ]
        .into_iter()
        .chain((0..300).map(|i| i * 37 - 2000))
        {
            let after = before.wrapping_sub(1);
            let real = real_sub1_flags(before);
            for other in [0x202u64, 0x202 | STATUS] {
                let got = TickLayout::sub1_flags(other, after);
                assert_eq!(got & STATUS, real & STATUS, "{before}");
                assert_eq!(got & !STATUS, other & !STATUS, "{before}");
            }
        }
    }

    #[test]
    fn the_layout_reads_the_fast_path() {
        let l = TickLayout { refill: 0x1000 };
        assert_eq!((l.fast(), l.jle(), l.ret()), (0xff1, 0xffd, 0xfff));
        let tail = [0x64, 0x48, 0x83, 0x28, 0x01, 0x7e, 0x01, 0xc3];
        let mut relaxed = vec![0x48, 0xc7, 0xc0, 0xf8, 0xff, 0xff, 0xff];
        relaxed.extend(tail);
        assert_eq!(l.tpoff(&relaxed, |_| None), Some((-8i64) as u64));
        let mut got = vec![0x48, 0x8b, 0x05, 0x10, 0, 0, 0];
        got.extend(tail);
        assert_eq!(
            l.tpoff(&got, |a| (a == 0xff1 + 7 + 0x10).then_some(42)),
            Some(42)
        );
        got[9] = 0x29;
        assert_eq!(l.tpoff(&got, |_| Some(42)), None);
        assert!(l.contains(0xff1) && l.contains(0x1000 + REFILL_LEN - 1));
        assert!(!l.contains(0xff0) && !l.contains(0x1000 + REFILL_LEN));
        assert!(!l.after_sub(0xff8) && l.after_sub(0xffd) && l.after_sub(0x1010));
    }
}
