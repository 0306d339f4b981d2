/*
 * cargo-chaos tick counter for instrumented code (see ticks/mod.rs in the recorder).
 *
 * Code built with LLVM's sanitizer coverage (edge callbacks, plus load and store
 * callbacks) calls these functions at every control-flow edge and before every memory
 * access. Each call counts one tick against the calling thread's budget; when the budget
 * runs out the thread asks the recorder for a new one through the `chaos_tick` system
 * call. That call is a preemption point: the recorder may run another thread first. The
 * point lies at an exact tick count, so replay reaches it again without traps.
 *
 * Outside the recorder the kernel answers ENOSYS and the thread never asks again.
 *
 * This file must stay C: a callback written in Rust inside an instrumented crate would
 * itself be instrumented and recurse.
 */
#include <stdint.h>

#ifndef CHAOS_TICK_NR
#error "compile with -DCHAOS_TICK_NR=<the recorder's chaos_tick number>"
#endif

/* A marker the recorder can look for in a binary. */
__attribute__((used)) const char cargo_chaos_ticks_abi[] = "cargo-chaos-ticks-v1";

static __thread int64_t chaos_budget;

__attribute__((noinline, cold)) static void chaos_refill(void) {
    int64_t ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"((int64_t)CHAOS_TICK_NR)
                     : "rcx", "r11", "memory");
    chaos_budget = ret > 0 ? ret : INT64_MAX;
}

static inline __attribute__((always_inline)) void chaos_tick(void) {
    if (__builtin_expect(--chaos_budget <= 0, 0))
        chaos_refill();
}

void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
    (void)start;
    (void)stop;
}

void __sanitizer_cov_trace_pc_guard(uint32_t *guard) {
    (void)guard;
    chaos_tick();
}

#define CHAOS_ACCESS(kind, n) \
    void __sanitizer_cov_##kind##n(void *addr) { (void)addr; chaos_tick(); }

CHAOS_ACCESS(load, 1)
CHAOS_ACCESS(load, 2)
CHAOS_ACCESS(load, 4)
CHAOS_ACCESS(load, 8)
CHAOS_ACCESS(load, 16)
CHAOS_ACCESS(store, 1)
CHAOS_ACCESS(store, 2)
CHAOS_ACCESS(store, 4)
CHAOS_ACCESS(store, 8)
CHAOS_ACCESS(store, 16)
