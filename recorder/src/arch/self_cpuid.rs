//! CPUID faulting for the engine's own thread.
//!
//! The kernel writes `MSR_MISC_FEATURES_ENABLES` on every context switch between a task
//! with CPUID faulting and one without. Inside a VM that write traps to the hypervisor;
//! measured here it made each ptrace stop several times slower. The tracer and its
//! tracees switch at every stop, so the engine thread arms CPUID faulting for itself
//! too: no switch then changes the setting, and no MSR is written.
//!
//! The engine (and the C libraries it links, zstd among them) may still execute
//! `cpuid`. A SIGSEGV handler emulates exactly that instruction: it turns faulting off,
//! executes it, turns faulting back on and skips it. Any other SIGSEGV gets the default
//! action again.

use std::sync::Once;

use crate::kernel::ARCH_SET_CPUID;

extern "C" fn on_sigsegv(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers; we only read
    // and write its general registers and read 2 bytes at its rip, which faulted on an
    // instruction fetch that succeeded (a GP fault), so the bytes are mapped.
    unsafe {
        let uc = &mut *(ctx as *mut libc::ucontext_t);
        let g = &mut uc.uc_mcontext.gregs;
        let rip = g[libc::REG_RIP as usize] as *const u8;
        if *rip == 0x0f && *rip.add(1) == 0xa2 {
            libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 1);
            let r = std::arch::x86_64::__cpuid_count(
                g[libc::REG_RAX as usize] as u32,
                g[libc::REG_RCX as usize] as u32,
            );
            libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0);
            g[libc::REG_RAX as usize] = r.eax as i64;
            g[libc::REG_RBX as usize] = r.ebx as i64;
            g[libc::REG_RCX as usize] = r.ecx as i64;
            g[libc::REG_RDX as usize] = r.edx as i64;
            g[libc::REG_RIP as usize] += 2;
            return;
        }
        // Not ours: fault again with the default action.
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
    }
}

/// Arms CPUID faulting for the calling thread (see the module docs). Does nothing if
/// CPUID faulting is unavailable.
pub fn arm_for_this_thread() {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: installing a handler that only touches the faulting context.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsegv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        }
    });
    if !ARMED.get() {
        // SAFETY: plain syscall affecting only this thread.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0) };
        ARMED.set(true);
    }
}

/// Disarms it again (for a thread that goes back to ordinary work).
pub fn disarm_for_this_thread() {
    // SAFETY: plain syscall affecting only this thread.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 1) };
    ARMED.set(false);
}

thread_local! {
    /// Whether this thread armed it (a hunt's worker records run after run: each write
    /// of the MSR is a trip to the hypervisor).
    static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
