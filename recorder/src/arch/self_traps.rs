//! The tracees' instruction traps, armed for the engine's own thread too.
//!
//! Tracees run with `rdtsc`/`rdtscp` faulting (`PR_SET_TSC`, `PR_TSC_SIGSEGV`: the
//! CR4.TSD bit) and, where the CPU offers it, `cpuid` faulting (`ARCH_SET_CPUID`: a bit
//! of `MSR_MISC_FEATURES_ENABLES`). The kernel flips either setting on every context
//! switch between a task that has it and one that does not, and inside a VM both writes
//! (CR4, the MSR) exit to the hypervisor. The tracer and its tracee switch at every
//! ptrace stop, so with the traps in the tracee only, each stop paid those exits:
//! measured on an AMD EPYC VM, a pipe round trip between two processes on one core
//! takes 5 µs, and 15 µs when one of them has `PR_TSC_SIGSEGV`; recording 100,000
//! `getppid` calls took 4.4 s against strace's 2.2 s. (CPUID faulting did the same on
//! an Intel VM: a recording 5× slower than strace.)
//!
//! So the engine thread arms the same traps for itself, and no switch between it and a
//! tracee changes them. The engine (and the C libraries it links, zstd among them, and
//! the vDSO's `clock_gettime`) may still execute those instructions: a SIGSEGV handler
//! emulates exactly them (it turns the trap off, executes the instruction, turns the
//! trap back on and skips it). That costs a signal and two of the exits above, so the
//! engine's per-stop paths read the time with [`monotonic_now`], a system call that
//! executes no `rdtsc` in user space. Any other SIGSEGV gets the default action again.
//!
//! `CARGO_CHAOS_SHARED_TRAPS=0` leaves the engine thread's traps off (for A/B
//! measurements).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use crate::kernel::ARCH_SET_CPUID;

/// `si_code` of a fault the kernel raised itself (a general-protection fault such as a
/// trapped `rdtsc` or `cpuid`), as opposed to a page fault (`SEGV_MAPERR`/`ACCERR`).
const SI_KERNEL: libc::c_int = 0x80;

extern "C" fn on_sigsegv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t and ucontext_t to SA_SIGINFO handlers;
    // we read and write the general registers only, and read up to 3 bytes at rip only
    // after a GP fault (the instruction fetch there succeeded, so the bytes are mapped).
    unsafe {
        if (*info).si_code == SI_KERNEL {
            let uc = &mut *(ctx as *mut libc::ucontext_t);
            let g = &mut uc.uc_mcontext.gregs;
            let rip = g[libc::REG_RIP as usize] as *const u8;
            match (*rip, *rip.add(1)) {
                (0x0f, 0xa2) => {
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
                (0x0f, 0x31) => {
                    libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_ENABLE, 0, 0, 0);
                    let tsc = std::arch::x86_64::_rdtsc();
                    libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0);
                    g[libc::REG_RAX as usize] = (tsc & 0xffff_ffff) as i64;
                    g[libc::REG_RDX as usize] = (tsc >> 32) as i64;
                    g[libc::REG_RIP as usize] += 2;
                    return;
                }
                (0x0f, 0x01) if *rip.add(2) == 0xf9 => {
                    libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_ENABLE, 0, 0, 0);
                    let mut aux = 0u32;
                    let tsc = std::arch::x86_64::__rdtscp(&mut aux);
                    libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0);
                    g[libc::REG_RAX as usize] = (tsc & 0xffff_ffff) as i64;
                    g[libc::REG_RDX as usize] = (tsc >> 32) as i64;
                    g[libc::REG_RCX as usize] = aux as i64;
                    g[libc::REG_RIP as usize] += 3;
                    return;
                }
                _ => {}
            }
        }
        // Not ours: to the handler installed before (Rust's, which reports a stack
        // overflow), or fault again with the default action.
        let previous = PREVIOUS.load(Ordering::Relaxed);
        if previous != 0 && previous != libc::SIG_DFL && previous != libc::SIG_IGN {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(previous);
            handler(sig, info, ctx);
        } else {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }
}

/// The SIGSEGV handler installed before ours, if it takes a siginfo (0 otherwise).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);

/// Whether `CARGO_CHAOS_SHARED_TRAPS=0` turned this off.
fn turned_off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("CARGO_CHAOS_SHARED_TRAPS").is_some_and(|v| v == "0"))
}

/// Arms the tracees' traps for the calling thread (see the module docs): `rdtsc`
/// always, `cpuid` when `cpuid` is true (and the CPU has CPUID faulting).
pub fn arm_for_this_thread(cpuid: bool) {
    if turned_off() {
        return;
    }
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: installing a handler that only touches the faulting context.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsegv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGSEGV, &sa, &mut old) == 0
                && old.sa_flags & libc::SA_SIGINFO != 0
            {
                PREVIOUS.store(old.sa_sigaction, Ordering::Relaxed);
            }
        }
    });
    let (tsc_armed, cpuid_armed) = ARMED.get();
    if !tsc_armed {
        // SAFETY: plain syscall affecting only this thread.
        unsafe { libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0) };
    }
    if cpuid && !cpuid_armed {
        // SAFETY: plain syscall affecting only this thread.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0) };
    }
    ARMED.set((true, cpuid_armed || cpuid));
}

/// Disarms both again (for a thread that goes back to ordinary work).
pub fn disarm_for_this_thread() {
    let (tsc_armed, cpuid_armed) = ARMED.get();
    // SAFETY: plain syscalls affecting only this thread.
    unsafe {
        if tsc_armed {
            libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_ENABLE, 0, 0, 0);
        }
        if cpuid_armed {
            libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 1);
        }
    }
    ARMED.set((false, false));
}

/// The traps armed for the calling thread until this is dropped.
#[derive(Debug)]
pub struct ArmedHere(());

impl ArmedHere {
    /// Arms them (see [`arm_for_this_thread`]).
    pub fn new(cpuid: bool) -> Self {
        arm_for_this_thread(cpuid);
        ArmedHere(())
    }
}

impl Drop for ArmedHere {
    fn drop(&mut self) {
        disarm_for_this_thread();
    }
}

/// Makes a command spawned from an armed thread start without the rdtsc trap: the
/// trap is inherited across fork and exec (CPUID faulting is not: exec clears it), and
/// the child has no handler to emulate it (gdb, started by a replay's engine thread,
/// died of it).
pub fn untrapped_child(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_ENABLE, 0, 0, 0);
            Ok(())
        })
    }
}

/// `CLOCK_MONOTONIC` read with the system call rather than the vDSO, whose `rdtsc`
/// would trap on an engine thread (see the module docs). For the engine's per-stop
/// paths (time slices); elsewhere `Instant` is fine.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

thread_local! {
    /// Whether this thread armed the rdtsc and the cpuid trap (a hunt's worker records
    /// run after run: each arming is a trip to the hypervisor).
    static ARMED: Cell<(bool, bool)> = const { Cell::new((false, false)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the traps armed, the thread still reads the time stamp counter and the
    /// clock (through the handler), and both move forward.
    #[test]
    fn an_armed_thread_still_reads_the_clock_and_the_tsc() {
        std::thread::spawn(|| {
            arm_for_this_thread(true);
            // SAFETY: rdtsc/rdtscp have no memory effects.
            let (a, b) = unsafe {
                let a = std::arch::x86_64::_rdtsc();
                let mut aux = 0;
                (a, std::arch::x86_64::__rdtscp(&mut aux))
            };
            let t0 = std::time::Instant::now();
            let m0 = monotonic_now();
            let t1 = std::time::Instant::now();
            let m1 = monotonic_now();
            disarm_for_this_thread();
            assert!(b >= a, "rdtscp {b} before rdtsc {a}");
            assert!(t1 >= t0 && m1 >= m0);
        })
        .join()
        .unwrap();
    }

    /// While armed, `PR_GET_TSC` reports the trap (so the handler above really ran).
    #[test]
    fn arming_sets_the_threads_tsc_mode() {
        std::thread::spawn(|| {
            let mode = || {
                let mut m: libc::c_int = 0;
                // SAFETY: PR_GET_TSC writes an int through the pointer.
                unsafe { libc::prctl(libc::PR_GET_TSC, &mut m as *mut libc::c_int, 0, 0, 0) };
                m
            };
            arm_for_this_thread(false);
            let armed = mode();
            disarm_for_this_thread();
            assert_eq!(armed, libc::PR_TSC_SIGSEGV);
            assert_eq!(mode(), libc::PR_TSC_ENABLE);
        })
        .join()
        .unwrap();
    }
}
