//! Preempting a thread that runs without syscalls, and finding the same point again at
//! replay, without a hardware performance counter.
//!
//! **Record.** While other threads exist, the running thread gets a time slice. A
//! watchdog thread sends it SIGSTOP (`tgkill`, so `si_pid` is ours) when the slice is
//! over; the engine suppresses that signal at its delivery stop and records the
//! thread's exact state there: every general register, the FPU/SSE/AVX state, a hash of
//! the stack around `rsp`, and a digest of all of the program's writable memory
//! ([`memory`]: incremental where the kernel tracks soft-dirty pages).
//!
//! **Replay.** A hardware execution breakpoint (DR0) at the recorded `rip`; at each hit
//! the state is compared: registers first (cheap), then the stack hash, then the extended
//! state and the memory hash. Equal state means an equal future, so any hit whose state
//! matches is as good as the recorded one: in a spin-wait the first hit matches, in a
//! counting loop only the right iteration does.

pub mod cpu_clock;
pub mod function;
pub mod insn;
pub mod memory;
pub mod patch;
pub mod point;
pub mod steer;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::arch::self_traps::monotonic_now;

use serde::{Deserialize, Serialize};

use crate::errors::Result;
use crate::ptrace::{Regs, Task};

/// How long a thread may run without a stop while others are ready to run. While the
/// others all sit in blocking syscalls it has no slice at all, since none of them can
/// run before it stops anyway; when one of their calls returns, the engine sees it and
/// starts a slice of this length. Not preempting then keeps preemption points out of
/// long computations (a panic symbolizing its backtrace while libtest's main thread
/// waits), where replay could not find them again cheaply.
pub const SLICE: Duration = Duration::from_millis(50);

/// Replay gives up finding a preemption point after this many breakpoint hits (at
/// ~18 µs a hit, about ten seconds) rather than appear to hang.
pub const MAX_TRAPS: u64 = 500_000;

/// Byte offset of `u_debugreg` in `struct user` (x86_64).
pub const DEBUGREG_OFFSET: usize = 848;

/// The state of a preempted thread, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreemptState {
    /// The 27 general registers.
    pub regs: Vec<u64>,
    /// Hash of the x87/SSE/AVX register state.
    pub fpu_hash: u64,
    /// Hash of the stack pages around `rsp`.
    pub stack_hash: u64,
    /// Hash of every writable mapping of the process.
    pub memory_hash: u64,
}

fn h64(h: blake3::Hasher) -> u64 {
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"))
}

/// Registers as compared: the resume and trap flags are the debugger's, not the
/// program's.
pub fn comparable(regs: &Regs) -> Vec<u64> {
    let mut r = *regs;
    r.eflags &= !(0x10000 | 0x100);
    r.orig_rax = u64::MAX;
    crate::arch::regs_to_vec(&r)
}

/// Hash of the FPU, SSE and AVX state (legacy area and YMM upper halves of XSAVE; the
/// XSAVE header is left out: it says which parts are in their initial state, which the
/// kernel may track differently for equal values).
pub fn fpu_hash(task: &Task) -> Result<u64> {
    let mut h = blake3::Hasher::new();
    match task.fpu_state()? {
        crate::ptrace::FpuState::Xsave(buf) => {
            h.update(&buf[..512.min(buf.len())]);
            if buf.len() >= 576 + 256 {
                h.update(&buf[576..576 + 256]);
            }
        }
        crate::ptrace::FpuState::Fxsave(buf) => {
            h.update(&buf);
        }
    }
    Ok(h64(h))
}

/// Hash of the stack around the stack pointer: the two pages from the one holding
/// `rsp - 128` (the bottom of the red zone). From trace format 6
/// ([`memory::Definition::LiveStack`]) the bytes below `rsp - 128` are left out (dead by
/// the ABI, see [`memory::dead_stack`]); older formats hash both pages whole.
pub fn stack_hash(task: &mut Task, rsp: u64, definition: memory::Definition) -> Result<u64> {
    let live_from = rsp.saturating_sub(memory::RED_ZONE);
    let start = live_from & !4095;
    let mut h = blake3::Hasher::new();
    if definition.live_stack_only() {
        h.update(&task.read_mem_partial(live_from, (start + 8192 - live_from) as usize)?);
    } else {
        h.update(&task.read_mem_partial(start, 8192)?);
    }
    Ok(h64(h))
}

/// The digest of every writable mapping of the task's process (the recorder's scratch
/// area and the replay stub excluded), as `definition` defines it (see [`memory`]);
/// `regs` are the task's, `others` the stacks of the other threads of its address space
/// (see [`memory::dead_stacks`]).
pub fn memory_hash(
    task: &mut Task,
    regs: &Regs,
    definition: memory::Definition,
    others: &[memory::Preempted],
) -> Result<u64> {
    memory::digest(task, None, definition, memory::Preempted::of(regs), others)
}

/// [`memory_hash`] without the mappings inside `skip` (replay's trampoline pages).
pub fn memory_hash_without(
    task: &mut Task,
    regs: &Regs,
    skip: Option<(u64, u64)>,
    definition: memory::Definition,
    others: &[memory::Preempted],
) -> Result<u64> {
    memory::digest(task, skip, definition, memory::Preempted::of(regs), others)
}

/// Everything about a stopped thread that determines its future (the stack and memory
/// hashes as this version records them, [`memory::Definition::recorded`]); `others`
/// are the stacks of the other threads of its address space, where they stand.
pub fn capture(task: &mut Task, regs: &Regs, others: &[memory::Preempted]) -> Result<PreemptState> {
    let definition = memory::Definition::recorded();
    Ok(PreemptState {
        regs: comparable(regs),
        fpu_hash: fpu_hash(task)?,
        stack_hash: stack_hash(task, regs.rsp, definition)?,
        memory_hash: memory_hash(task, regs, definition, others)?,
    })
}

/// Whether the stopped thread is in the recorded state; cheap checks first. `definition`
/// is the trace's memory digest, `others` as for [`memory_hash`].
pub fn matches(
    task: &mut Task,
    regs: &Regs,
    want: &PreemptState,
    definition: memory::Definition,
    others: &[memory::Preempted],
) -> Result<bool> {
    Ok(compare(task, regs, want, definition, others)? == Compared::Equal)
}

/// How a stopped thread's state compares with a recorded point's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// The same state: the point.
    Equal,
    /// Registers, stack hash or extended state differ (the memory was not hashed).
    Differs,
    /// Everything but the memory digest is equal; the digest found.
    MemoryDiffers(u64),
}

/// Compares the stopped thread's state with `want`; cheap checks first.
pub fn compare(
    task: &mut Task,
    regs: &Regs,
    want: &PreemptState,
    definition: memory::Definition,
    others: &[memory::Preempted],
) -> Result<Compared> {
    if comparable(regs) != want.regs
        || stack_hash(task, regs.rsp, definition)? != want.stack_hash
        || fpu_hash(task)? != want.fpu_hash
    {
        return Ok(Compared::Differs);
    }
    let memory = memory_hash(task, regs, definition, others)?;
    Ok(if memory == want.memory_hash {
        Compared::Equal
    } else {
        Compared::MemoryDiffers(memory)
    })
}

/// Recognises a search for a point that can never end: the thread stopped at the
/// point's address in a state that differs from the recorded one only in memory, and
/// that equals the state of an earlier stop of the same search. Between two stops the
/// thread runs alone, and nothing but its state decides what it does (no other thread
/// runs, no signal arrives, nondeterministic instructions trap), so it is in a cycle
/// that passes only through states already seen, none of them the recorded one: a spin
/// loop waiting for a flag that only the recorded point's aftermath (a signal given
/// there) would set. Replay reports that at once instead of spinning up to
/// [`MAX_TRAPS`] digests.
#[derive(Debug, Default)]
pub struct CycleCheck {
    seen: std::collections::HashSet<u64>,
}

impl CycleCheck {
    /// Whether the state just compared (`c`) was seen before in this search.
    pub fn repeats(&mut self, c: Compared) -> bool {
        match c {
            Compared::MemoryDiffers(memory) => !self.seen.insert(memory),
            _ => false,
        }
    }
}

/// What replay says when [`CycleCheck::repeats`].
pub const CYCLE: &str = "is in a loop whose state repeats without reaching the recorded one (its registers and stack match, its memory does not: something it depends on differs from the recording)";

/// If a thread stopped right after a syscall that returned one of the kernel's
/// "restart me" codes, the registers the kernel gives it when the stop's signal is
/// suppressed: the syscall is executed again (`restart_syscall` for
/// ERESTART_RESTARTBLOCK).
pub fn restart_after_stop(regs: &Regs) -> Option<Regs> {
    use crate::kernel::restart::*;
    if regs.orig_rax as i64 == -1 {
        return None;
    }
    let mut r = *regs;
    match regs.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => r.rax = regs.orig_rax,
        ERESTART_RESTARTBLOCK => r.rax = libc::SYS_restart_syscall as u64,
        _ => return None,
    }
    r.rip -= 2;
    Some(r)
}

/// Sets or clears the execution breakpoint DR0. DR1 to DR3 belong to the debugger's
/// watchpoints (`replay::watch`): their DR7 bits are kept.
pub fn set_breakpoint(task: &Task, at: Option<u64>) -> Result<()> {
    let others = task.peek_user(DEBUGREG_OFFSET + 7 * 8)? & !DR0_BITS;
    match at {
        Some(addr) => {
            task.poke_user(DEBUGREG_OFFSET, addr)?;
            task.poke_user(DEBUGREG_OFFSET + 7 * 8, others | 1)?; // L0, execute, 1 byte
        }
        None => task.poke_user(DEBUGREG_OFFSET + 7 * 8, others)?,
    }
    // Only DR0's status bit: a watchpoint's must survive until the debugger reads it.
    let status = task.peek_user(DEBUGREG_OFFSET + 6 * 8)?;
    task.poke_user(DEBUGREG_OFFSET + 6 * 8, status & !1)
}

/// DR7's bits for DR0: L0, G0, and its type and length (bits 16 to 19).
const DR0_BITS: u64 = 0b11 | 0xf << 16;

/// How the engine thread reads the time when it arms the watchdog. Both are
/// `CLOCK_MONOTONIC`; neither executes `rdtsc`, which traps on the engine thread (see
/// `arch::self_traps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system call (about a microsecond): for wall-clock slices, which may be tens
    /// of microseconds long.
    Precise,
    /// `CLOCK_MONOTONIC_COARSE` from the vDSO (no system call, no `rdtsc`; behind by at
    /// most one timer tick): for the wall-clock backstop of a CPU-time slice, hundreds
    /// of milliseconds away.
    Coarse,
}

impl Clock {
    fn now(self) -> Duration {
        match self {
            Clock::Precise => monotonic_now(),
            Clock::Coarse => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime writes the timespec we pass.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            }
        }
    }
}

/// The watchdog that ends time slices.
///
/// Its thread starts with the first slice: a program that never has two threads never
/// needs one, and a hunt of short single-threaded tests paid a thread start per run.
#[derive(Debug, Default)]
pub struct Watchdog {
    state: Mutex<Slice>,
    wake: Condvar,
    thread: std::sync::OnceLock<()>,
    /// The CPUs its thread may use: the recording's whole set, not the engine's pin.
    cpus: Vec<usize>,
}

#[derive(Debug, Default)]
struct Slice {
    /// (tgid, tid, deadline, generation) of the running slice.
    /// Deadlines are [`monotonic_now`] readings: `arm` and `shorten` run on the engine
    /// thread, whose vDSO clock would trap (see `arch::self_traps`).
    armed: Option<(i32, i32, Duration, u64)>,
    generation: u64,
    /// Generation of a slice whose thread was sent SIGSTOP.
    fired: Option<u64>,
    /// When the watchdog thread wakes next on its own.
    wakes_at: Option<Duration>,
    stop: bool,
}

impl Watchdog {
    /// A watchdog whose thread may run on `cpus` (the recording's CPU set); the thread
    /// starts with the first [`Watchdog::arm`].
    pub fn start(cpus: Vec<usize>) -> Arc<Self> {
        Arc::new(Watchdog {
            cpus,
            ..Watchdog::default()
        })
    }

    fn run(&self) {
        // Short slices (chaos mode) end in tens of microseconds: no timer slack (50 µs
        // by default) on this thread's waits.
        // SAFETY: prctl on the calling thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        // Any core: pinned with the program, it would wait for the scheduler to preempt
        // the very thread it is to stop (a signal to another core costs one IPI).
        // (It was spawned by the pinned engine thread, whose set it inherited.)
        crate::spawn::pin_self(&self.cpus);
        // Arming and disarming happen at every ptrace stop, so they only touch the mutex
        // (no wake-up, no syscall) unless a slice ends before this thread's next
        // wake-up; it checks on its own at least every slice.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.stop {
                return;
            }
            let now = monotonic_now();
            let mut wait = SLICE;
            if let Some((tgid, tid, deadline, generation)) = st.armed {
                if now >= deadline {
                    // SAFETY: plain syscall to a task of this recording.
                    unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, libc::SIGSTOP) };
                    st.fired = Some(generation);
                    st.armed = None;
                    continue;
                }
                // Checked at least every slice: a later `arm` or `shorten` does not
                // wake this thread.
                wait = (deadline - now).min(SLICE);
            }
            st.wakes_at = Some(now + wait);
            st = self
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A slice of length `slice` starts for `tid`, measured from `clock`'s now.
    pub fn arm(self: &Arc<Self>, tgid: i32, tid: i32, slice: Duration, clock: Clock) {
        self.thread.get_or_init(|| {
            let w = self.clone();
            std::thread::Builder::new()
                .name("chaos-watchdog".into())
                .spawn(move || w.run())
                .expect("spawning the watchdog thread");
        });
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.generation += 1;
        let deadline = clock.now() + slice;
        st.armed = Some((tgid, tid, deadline, st.generation));
        st.fired = None;
        if st.wakes_at.is_some_and(|w| deadline < w) {
            // A slice shorter than the watchdog's sleep (chaos mode's short slices):
            // the one case worth a wake-up.
            st.wakes_at = Some(deadline);
            self.wake.notify_one();
        }
    }

    /// Cuts the running slice to end at most `to` from `clock`'s now.
    pub fn shorten(&self, to: Duration, clock: Clock) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, deadline, _)) = st.armed.as_mut() {
            *deadline = (*deadline).min(clock.now() + to);
        }
    }

    /// The slice is over (the thread stopped). Returns whether SIGSTOP was sent.
    pub fn disarm(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.armed = None;
        st.fired.take().is_some()
    }

    /// Ends the watchdog thread.
    pub fn shutdown(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.stop = true;
        st.armed = None;
        self.wake.notify_all();
    }
}
