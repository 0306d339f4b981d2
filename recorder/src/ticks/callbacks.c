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
 *
 * The callbacks are one body written in assembly, so that their machine code has a
 * fixed shape the debugger relies on to stop a thread after any number of ticks (see
 * `TickLayout` in ticks/mod.rs): the fast path is the 15 bytes just before the refill,
 *
 *     movq chaos_budget@gottpoff(%rip), %rax   (7 bytes; the linker may relax it to
 *                                               movq $tpoff, %rax, also 7 bytes)
 *     subq $1, %fs:(%rax)                      (5)
 *     jle  chaos_tick_refill                   (2)
 *     ret                                      (1)
 *
 * and the refill makes the call with rdi = the address of the thread's budget, rsi =
 * the refill's own address and rdx = CHAOS_TICK_MAGIC, so each recorded call says where
 * the budget lives and where the refill is. The callbacks clobber only rax and the
 * flags (the refill also rdi, rsi, rdx, rcx, r11), all caller-saved.
 */
#include <stdint.h>

#ifndef CHAOS_TICK_NR
#error "compile with -DCHAOS_TICK_NR=<the recorder's chaos_tick number>"
#endif

#define CHAOS_STR2(x) #x
#define CHAOS_STR(x) CHAOS_STR2(x)

/* A marker the recorder can look for in a binary. */
__attribute__((used)) const char cargo_chaos_ticks_abi[] = "cargo-chaos-ticks-v2";

void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
    (void)start;
    (void)stop;
}

/* Every callback is the same code. */
#define CHAOS_ALIAS(name) \
    ".globl " #name "\n.type " #name ",@function\n.set " #name ", chaos_tick_fast\n"

__asm__(
    /* static __thread int64_t chaos_budget; (0 at first: the first tick asks) */
    ".pushsection .tbss,\"awT\",@nobits\n"
    ".p2align 3\n"
    ".type chaos_budget,@tls_object\n"
    ".size chaos_budget,8\n"
    "chaos_budget:\n"
    ".zero 8\n"
    ".popsection\n"
    ".pushsection .text\n"
    ".p2align 4\n"
    ".type chaos_tick_fast,@function\n"
    "chaos_tick_fast:\n"
    "movq chaos_budget@gottpoff(%rip), %rax\n"
    "subq $1, %fs:(%rax)\n"
    "jle chaos_tick_refill\n"
    "ret\n"
    /* The budget ran out: ask for the next one (ENOSYS outside the recorder: never
     * ask again). */
    "chaos_tick_refill:\n"
    "movq chaos_budget@gottpoff(%rip), %rdi\n"
    "addq %fs:0, %rdi\n"
    "leaq chaos_tick_refill(%rip), %rsi\n"
    "movabsq $0x6b6369745f736f61, %rdx\n" /* CHAOS_TICK_MAGIC */
    "movl $" CHAOS_STR(CHAOS_TICK_NR) ", %eax\n"
    "syscall\n"
    "testq %rax, %rax\n"
    "jg 1f\n"
    "movabsq $0x7fffffffffffffff, %rax\n"
    "1: movq %rax, (%rdi)\n"
    "ret\n"
    "chaos_tick_end:\n"
    ".size chaos_tick_fast, chaos_tick_end - chaos_tick_fast\n"
    CHAOS_ALIAS(__sanitizer_cov_trace_pc_guard)
    CHAOS_ALIAS(__sanitizer_cov_load1)
    CHAOS_ALIAS(__sanitizer_cov_load2)
    CHAOS_ALIAS(__sanitizer_cov_load4)
    CHAOS_ALIAS(__sanitizer_cov_load8)
    CHAOS_ALIAS(__sanitizer_cov_load16)
    CHAOS_ALIAS(__sanitizer_cov_store1)
    CHAOS_ALIAS(__sanitizer_cov_store2)
    CHAOS_ALIAS(__sanitizer_cov_store4)
    CHAOS_ALIAS(__sanitizer_cov_store8)
    CHAOS_ALIAS(__sanitizer_cov_store16)
    ".popsection\n");
