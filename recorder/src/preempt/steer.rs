//! Record time: moving a preempted thread to a point that replay finds cheaply.
//!
//! The watchdog stops a thread wherever it happens to be. Before its state is recorded,
//! the recorder single-steps it (at least [`MIN_STEPS`], at most [`MAX_STEPS`]
//! instructions, ~17 µs each) to an instruction replay can patch with a conditional
//! trap ([`super::insn::unpatchable`]), or to a `rep` string instruction (found by its
//! own method). The memory words the stepped instructions wrote are recorded with
//! their values at the point: where a loop keeps its progress in memory, they tell
//! its iterations apart where the registers do not. It never steps over an
//! instruction that enters the kernel, traps, reads the flags register onto the stack
//! or repeats, and never steps a thread that stopped in or right after a syscall.
//! The stop is still a preemption point: other threads run next.

use super::insn;
use super::point::{Method, PointInfo, MAX_WRITTEN_WORDS, WORDS_BELOW_RSP, WORDS_FROM_RSP};
use crate::errors::{Error, Result};
use crate::ptrace::{Regs, Resume, Stop, Task};

/// Most instructions stepped over at one preemption.
pub const MAX_STEPS: u32 = 64;
/// Instructions always stepped over (unless one cannot be), to see which memory words
/// the thread's loop writes ([`PointInfo::memory`]).
pub const MIN_STEPS: u32 = 16;

/// The signals blocked while the thread is stepped: all but the faults an instruction
/// raises (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV); SIGKILL and SIGSTOP cannot be.
const ASYNC_SIGNALS: u64 = !((1 << (libc::SIGILL - 1))
    | (1 << (libc::SIGTRAP - 1))
    | (1 << (libc::SIGBUS - 1))
    | (1 << (libc::SIGFPE - 1))
    | (1 << (libc::SIGSEGV - 1)));

/// Where a preempted thread was moved to.
#[derive(Debug)]
pub struct Steered {
    /// Its registers there.
    pub regs: Regs,
    /// What the trace says about the point.
    pub point: PointInfo,
    /// A signal that stopped it during a step (delivered to it by the kernel meanwhile:
    /// the caller handles it like any signal stop, after the preemption event).
    pub signal: Option<i32>,
}

/// Steps the thread, stopped by the watchdog with `regs`, to a point replay can find
/// cheaply, and reads the stack words the trace keeps. `stay`: it is not stepped at
/// all (a signal queued at the exit of the call it just made is on its way, and must
/// be delivered there: `rt_sigreturn` leaves no syscall number in `orig_rax` to tell).
pub fn steer(task: &mut Task, regs: Regs, stay: bool) -> Result<Steered> {
    let mut regs = regs;
    let mut steps = 0;
    let mut method = Method::StateMatch;
    let mut signal = None;
    let mut written: Vec<u64> = Vec::new();
    let mut funcs = Functions::default();
    // In or right after a syscall (orig_rax set), resuming would run or restart it.
    let in_syscall = regs.orig_rax != u64::MAX;
    let mut stepping = !in_syscall && !stay;
    // Signals that arrive meanwhile (a profiling timer's, every few steps) stay pending
    // until the point is reached, instead of ending the steps where replay can only
    // find the point with a trap per loop iteration; the thread takes them when it
    // next runs, at the point. Faults stay unblocked (a blocked one is forced on the
    // program with its default action). The program cannot see the mask: no syscall
    // is stepped over, and it is restored before the thread runs on.
    let mask = if stepping {
        let mask = task.sigmask()?;
        task.set_sigmask(mask | ASYNC_SIGNALS)?;
        Some(mask)
    } else {
        None
    };
    while stepping {
        let bytes = task.read_mem_partial(regs.rip, insn::MAX_LEN)?;
        let Some(i) = insn::decode(&bytes, regs.rip) else {
            break;
        };
        if insn::rep_string(&i).is_some() {
            method = Method::RepString;
            break;
        }
        let good = steps >= MIN_STEPS && funcs.patchable(task, &i);
        if good || steps >= MAX_STEPS || !insn::steppable(&i) {
            break;
        }
        for w in insn::written_words(&i, &regs) {
            if !written.contains(&w) && written.len() < MAX_WRITTEN_WORDS {
                written.push(w);
            }
        }
        task.resume(Resume::Step, 0)?;
        match task.wait()? {
            Stop::Signal(libc::SIGTRAP) => {}
            Stop::Signal(libc::SIGSTOP) if recorders_stop(task)? => {
                // A late SIGSTOP of the engine's (a slice's watchdog and clock both
                // fired), taken before the step ran: dropped, as at any stop, and the
                // steps go on (ending them here left a point only a trap per loop
                // iteration finds).
                regs = task.regs()?;
                continue;
            }
            Stop::Signal(sig) => signal = Some(sig),
            Stop::Exited(_) | Stop::Killed(_) => return Err(Error::TaskGone { pid: task.tid }),
            other => {
                return Err(Error::Unsupported {
                    what: format!(
                        "task {} stopped with {other:?} while the recorder single-stepped it",
                        task.tid
                    ),
                    hint: "report this as a bug".into(),
                })
            }
        }
        steps += 1;
        regs = task.regs()?;
        stepping = signal.is_none();
    }
    if let Some(mask) = mask {
        task.set_sigmask(mask)?;
    }
    let (stack_from, stack) = stack_words(task, regs.rsp)?;
    let mut memory = Vec::new();
    for w in written {
        if let Ok(b) = task.read_mem(w, 8) {
            memory.push((w, u64::from_le_bytes(b.try_into().expect("8 bytes"))));
        }
    }
    Ok(Steered {
        regs,
        point: PointInfo {
            method,
            steps,
            stack_from,
            stack,
            memory,
        },
        signal,
    })
}

/// Most words recorded from where the registers point ([`pointed_words`]).
pub const MAX_REGISTER_WORDS: usize = 16;
/// Most words recorded from where the stack words point, and from the cache lines
/// after what the registers and the stack words point at ([`pointed_words`], format
/// 15).
pub const MAX_STACK_POINTED_WORDS: usize = 32;
/// Offsets from a pointed address of the further words [`pointed_words`] takes: the
/// starts of the next cache lines (64 bytes) and of the next 128-byte blocks, where
/// concurrent structures padded against false sharing keep their second counter
/// (crossbeam's `CachePadded` is 128 bytes on x86_64: a list channel's tail index).
pub const PADDED_OFFSETS: [u64; 2] = [128, 64];

/// The words the general registers (but `rsp`, whose are the stack words) point at,
/// then (format 15) those the recorded stack words (`stack`, from `rsp + stack_from`)
/// point at, outside the stack words themselves, then the words one and two cache
/// lines on from each of those addresses ([`PADDED_OFFSETS`]), at the point (`regs`),
/// where they lie in memory the digest covers ([`super::memory::covered_words`];
/// `others`: the other threads' stacks). A loop whose registers and stack words repeat
/// may keep its progress there: a B-tree's node being emptied (issue 13) behind a
/// register, or a channel's index behind a pointer its caller keeps on the stack
/// (crossbeam-channel's list flavour, whose tail index is 128 bytes into the channel:
/// every pass of a sending loop had the same registers and stack, and replay hashed all
/// of memory at each one). The trampoline compares them with the other memory words,
/// so that such a pass does not trap and hash all of memory. Those already in `known`
/// (written by the stepped instructions) are left out.
pub fn pointed_words(
    task: &mut Task,
    regs: &Regs,
    stack_from: i32,
    stack: &[u64],
    others: &[super::memory::Preempted],
    known: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>> {
    let thread = super::memory::Preempted::of(regs);
    let (from_regs, from_stack) = pointed_candidates(regs, stack_from, stack, known);
    // One look at the mappings for both lists.
    let all: Vec<u64> = from_regs.iter().chain(&from_stack).copied().collect();
    let covered = super::memory::covered_words(task.tid, thread, others, &all)?;
    let mut words = Vec::new();
    for (addrs, most) in [
        (from_regs, MAX_REGISTER_WORDS),
        (from_stack, MAX_STACK_POINTED_WORDS),
    ] {
        let mut taken = 0;
        for a in addrs.into_iter().filter(|a| covered.contains(a)) {
            if taken == most {
                break;
            }
            if let Ok(b) = task.read_mem(a, 8) {
                words.push((a, u64::from_le_bytes(b.try_into().expect("8 bytes"))));
                taken += 1;
            }
        }
    }
    Ok(words)
}

/// The addresses [`pointed_words`] considers, in its order of preference, each once and
/// none of `known`: the registers' values; then the stack words' values outside the
/// stack words themselves, followed by the addresses [`PADDED_OFFSETS`] on from all of
/// those (the registers' first).
fn pointed_candidates(
    regs: &Regs,
    stack_from: i32,
    stack: &[u64],
    known: &[(u64, u64)],
) -> (Vec<u64>, Vec<u64>) {
    let mut seen: Vec<u64> = known.iter().map(|(a, _)| *a).collect();
    let mut fresh = |a: u64| {
        let new = !seen.contains(&a);
        if new {
            seen.push(a);
        }
        new
    };
    let from_regs: Vec<u64> = [
        regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp, regs.r8, regs.r9,
        regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ]
    .into_iter()
    .filter(|&a| fresh(a))
    .collect();
    // The compared stack words cover their own addresses already.
    let window = regs.rsp.wrapping_add(stack_from as i64 as u64);
    let window = window..window.saturating_add(8 * stack.len() as u64);
    let mut from_stack: Vec<u64> = stack
        .iter()
        .copied()
        .filter(|a| !window.contains(a))
        .filter(|&a| fresh(a))
        .collect();
    let mut further: Vec<u64> = Vec::new();
    for off in PADDED_OFFSETS {
        for &a in from_regs.iter().chain(&from_stack) {
            if let Some(b) = a.checked_add(off) {
                if !window.contains(&b) && fresh(b) {
                    further.push(b);
                }
            }
        }
    }
    from_stack.extend(further);
    (from_regs, from_stack)
}

/// Whether the thread's SIGSTOP stop is the engine's: a watchdog's `tgkill` from this
/// process, or a CPU-time clock's overflow signal.
fn recorders_stop(task: &Task) -> Result<bool> {
    let si = task.siginfo()?;
    let tkill = crate::pidns::tkill_from_this_process(&si);
    Ok(tkill || super::cpu_clock::from_a_clock(&si))
}

/// The stack words around `rsp` the trampoline compares: the red zone and the words
/// above, as far as they can be read.
fn stack_words(task: &mut Task, rsp: u64) -> Result<(i32, Vec<u64>)> {
    let below = (WORDS_BELOW_RSP * 8) as u64;
    let want = (WORDS_BELOW_RSP + WORDS_FROM_RSP) * 8;
    let (from, bytes) = match rsp.checked_sub(below) {
        Some(start) => {
            let b = task.read_mem_partial(start, want)?;
            if b.len() as u64 > below {
                (-(below as i32), b)
            } else {
                (0, task.read_mem_partial(rsp, WORDS_FROM_RSP * 8)?)
            }
        }
        None => (0, task.read_mem_partial(rsp, WORDS_FROM_RSP * 8)?),
    };
    let words = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok((from, words))
}

/// What the recorder learnt about the functions it stepped through (read once per
/// preemption: the module's unwind tables and the function's code).
#[derive(Default)]
struct Functions {
    maps: Option<Vec<crate::address_space::MapsEntry>>,
    /// The last function looked at and its code; `None` inside when it cannot be
    /// patched at all (no bounds, landing pads).
    last: Option<(u64, u64, Option<Vec<u8>>)>,
}

impl Functions {
    /// Whether replay can patch a jump at `i` (see `replay::preempt_search`).
    fn patchable(&mut self, task: &mut Task, i: &iced_x86::Instruction) -> bool {
        let Some(why) = insn::unpatchable(i) else {
            return true;
        };
        if i.len() >= insn::JMP_LEN || why.is_empty() {
            return false;
        }
        let rip = i.ip();
        let known = matches!(&self.last, Some((start, end, _)) if *start <= rip && rip < *end);
        if !known {
            if self.maps.is_none() {
                self.maps = crate::address_space::read_maps(task.tid).ok();
            }
            let Some(maps) = &self.maps else {
                return false;
            };
            self.last = match super::function::around(task, maps, rip) {
                Ok(f) => {
                    let code = if f.lsda {
                        None
                    } else {
                        task.read_mem(f.start, (f.end - f.start) as usize).ok()
                    };
                    Some((f.start, f.end, code))
                }
                // Not worth asking again for every step: a one-instruction range.
                Err(_) => Some((rip, rip + 1, None)),
            };
        }
        match &self.last {
            Some((start, _, Some(code))) => insn::displaced(code, *start, rip).is_ok(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointed_candidates_come_in_order_once_each_and_skip_the_stack_window() {
        let mut regs: Regs = unsafe { std::mem::zeroed() };
        regs.rsp = 0x7000_0000;
        regs.rax = 0x1000;
        regs.rbx = 0x1000; // the same value twice: once
        regs.rcx = 0x2000; // already written by the stepped instructions
                           // Stack words from rsp - 16: two inside that window (left out), one value a
                           // register holds, and two new ones.
        let stack = [0x7000_0000 - 8, 0x3000, 0x1000, 0x7000_0008, 0x4000];
        let known = [(0x2000, 7)];
        let (regs_first, then) = pointed_candidates(&regs, -16, &stack, &known);
        // rdx..r15 are 0: one candidate 0 (covered_words drops it later); rsp is not
        // among them (its words are the stack words).
        assert_eq!(regs_first, vec![0x1000, 0]);
        let mut want = vec![0x3000, 0x4000];
        for off in PADDED_OFFSETS {
            for a in [0x1000u64, 0, 0x3000, 0x4000] {
                let b = a + off;
                if !(0x7000_0000 - 16..0x7000_0000 + 24).contains(&b) && !want.contains(&b) {
                    want.push(b);
                }
            }
        }
        assert_eq!(then, want);
        assert!(
            then.contains(&(0x3000 + 128)),
            "a cache-padded field of a stack pointer"
        );
    }
}
