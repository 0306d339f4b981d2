//! Replay of buffered syscalls without a ptrace stop per call (issue 17, item 3).
//!
//! At record the preload library `call`s the untraced entry ([`abi::ENTRY`], `syscall;
//! ret`) and the engine writes each buffered call into the trace at the thread's next
//! stop, so a thread's buffered calls come in the trace as a run of consecutive
//! `Syscall` events before that stop's event. At replay the engine (trusted code: the
//! library comes from the archive and runs unchanged) maps its own code at the entry
//! page instead, and a *feed* after it: the recorded calls of the run, loaded before it
//! resumes the thread. For each call the code compares the number and the six argument
//! registers (the `r9` mark included) with the next record of the feed, copies the
//! call's input bytes (write's data) into the feed's log, the recorded output bytes
//! into the program's buffer, sets `rax` to the recorded result and returns, leaving the
//! registers, the flags and the stack as the `syscall` left them at record (`rcx` the
//! address after it, `r11` the flags). On a mismatch, or once the feed is empty, it
//! makes the `syscall` after all: that stops under `PTRACE_SYSEMU` like any call and the
//! engine checks it against the event at the feed's position, as without the feed (so a
//! divergence is reported at that event, in the usual words).
//!
//! The engine loads all but the last call of a run (the last one stops, so the thread's
//! next stop is an ordinary syscall stop), and at that stop reads how many records were
//! consumed, checks each consumed call's input hash over the bytes in the log, forwards
//! buffered writes to stdout/stderr from the log (the replayed program's data), and
//! empties the feed. The program's memory is the same as at record (the library still
//! appends its own records from the results), and the feed is left out of the memory
//! digest of preemption points. No preemption point lies inside a run (a preemption is
//! a stop, which ends the run at record), and the feed is empty whenever the session
//! stands between events, so checkpoints (a fork of the process) and the debugger never
//! see a half-consumed feed. The debugger's breakpoints and watchpoints leave it on: a
//! thread that meets one between two fed calls stops there, the calls it consumed are
//! checked and counted, the feed is emptied, and the session stands in the interval of
//! the next call, where a replay call by call would have stopped too. Watchpoint
//! triggers inside the entry code (its copies into and out of the program's memory,
//! which a replay call by call makes through ptrace) are passed over.
//!
//! Feed layout at [`FEED`] (header page, records, log): header words `next` (address of
//! the next record), `end` (past the last one), `log` (where the next input bytes go),
//! `done` (records consumed) and the code's save slots; each record is
//! [`REC_WORDS`] words (nr, args\[6\], ret, input address, input length, output address,
//! output length, the next record's address) and the output bytes, padded to 8.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, Register,
};

use super::tree::RThread;
use super::Replayer;
use crate::errors::{Error, Result};
use crate::inject::{inject_syscall, with_syscall_at};
use crate::ptrace::{Resume, Stop, Task};
use crate::syscallbuf::abi;
use crate::syscalls::{self, Size};
use crate::trace::{Event, SyscallEvent};

/// The feed: right after the entry page, so that the code reaches it `rip`-relative.
pub const FEED: u64 = abi::ENTRY_PAGE + 4096;
/// Bytes of the feed's header page.
const HEADER: u64 = 4096;
/// Bytes of record space.
const RECORDS: u64 = 1 << 20;
/// Bytes of log space (input bytes).
const LOG: u64 = 1 << 20;
/// Bytes of the whole feed mapping.
pub const FEED_SIZE: u64 = HEADER + RECORDS + LOG;
// The feed is within reach of rip-relative addressing from the entry page.
const _: () = assert!(FEED + FEED_SIZE - abi::ENTRY_PAGE < 1 << 31);
/// The most calls loaded at once.
const MAX_CALLS: usize = 4096;
/// The largest output or input of one fed call (larger ones take the stop).
const MAX_BYTES: u64 = 64 << 10;

const H_NEXT: u64 = FEED;
const H_END: u64 = FEED + 8;
const H_LOG: u64 = FEED + 16;
const H_DONE: u64 = FEED + 24;
const S_FLAGS: u64 = FEED + 32;
const S_RSI: u64 = FEED + 40;
const S_RDI: u64 = FEED + 48;
const RECORDS_AT: u64 = FEED + HEADER;
const LOG_AT: u64 = FEED + HEADER + RECORDS;

/// Words of a record before its output bytes.
pub const REC_WORDS: u64 = 13;
const R_RET: i32 = 56;
const R_IN_ADDR: i32 = 64;
const R_IN_LEN: i32 = 72;
const R_OUT_ADDR: i32 = 80;
const R_OUT_LEN: i32 = 88;
const R_NEXT: i32 = 96;
const R_DATA: i32 = (REC_WORDS * 8) as i32;

/// Whether a mapping is the feed (left out of the memory digest).
pub fn is_feed(start: u64, end: u64) -> bool {
    start >= FEED && end <= FEED + FEED_SIZE
}

/// Whether the fast path is on: `CARGO_CHAOS_REPLAY_FEED=0` turns it off (every buffered
/// call then stops, as before; for benchmarks and tests comparing the two).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("CARGO_CHAOS_REPLAY_FEED").as_deref() != Some(std::ffi::OsStr::new("0"))
    })
}

/// The replay entry code, assembled for [`abi::ENTRY_PAGE`].
pub fn entry_code() -> std::result::Result<Vec<u8>, String> {
    const SLOW: u64 = 0x1_0000;
    let rip = |addr: u64| MemoryOperand::with_base_displ(Register::RIP, addr as i64);
    let at = |reg: Register, d: i32| MemoryOperand::with_base_displ(reg, d as i64);
    let red = || MemoryOperand::with_base_displ(Register::RSP, -8);
    let mut code: Vec<Instruction> = Vec::new();
    fn emit(
        code: &mut Vec<Instruction>,
        i: std::result::Result<Instruction, iced_x86::IcedError>,
    ) -> std::result::Result<(), String> {
        code.push(i.map_err(|e| format!("cannot assemble the replay entry: {e}"))?);
        Ok(())
    }
    macro_rules! push {
        ($i:expr) => {
            emit(&mut code, $i)
        };
    }
    // The flags into r11 and a save slot, through the word below the stack pointer
    // (kept in rcx and put back: the recorded `syscall` wrote no memory).
    push!(Instruction::with2(Code::Mov_r64_rm64, Register::RCX, red()))?;
    push!(Ok(Instruction::with(Code::Pushfq)))?;
    push!(Instruction::with1(Code::Pop_r64, Register::R11))?;
    push!(Instruction::with2(Code::Mov_rm64_r64, red(), Register::RCX))?;
    push!(Instruction::with2(
        Code::Mov_rm64_r64,
        rip(S_FLAGS),
        Register::R11
    ))?;
    push!(Ok(Instruction::with(Code::Cld)))?;
    // The next record, if any, and the call against it.
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::R11,
        rip(H_NEXT)
    ))?;
    push!(Instruction::with2(
        Code::Cmp_r64_rm64,
        Register::R11,
        rip(H_END)
    ))?;
    push!(Instruction::with_branch(Code::Jae_rel32_64, SLOW))?;
    for (i, reg) in [
        Register::RAX,
        Register::RDI,
        Register::RSI,
        Register::RDX,
        Register::R10,
        Register::R8,
        Register::R9,
    ]
    .into_iter()
    .enumerate()
    {
        push!(Instruction::with2(
            Code::Cmp_r64_rm64,
            reg,
            at(Register::R11, 8 * i as i32),
        ))?;
        push!(Instruction::with_branch(Code::Jne_rel32_64, SLOW))?;
    }
    // A match: the input into the log, the output into the program.
    push!(Instruction::with2(
        Code::Mov_rm64_r64,
        rip(S_RSI),
        Register::RSI
    ))?;
    push!(Instruction::with2(
        Code::Mov_rm64_r64,
        rip(S_RDI),
        Register::RDI
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RSI,
        at(Register::R11, R_IN_ADDR),
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RCX,
        at(Register::R11, R_IN_LEN),
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RDI,
        rip(H_LOG)
    ))?;
    push!(Instruction::with_rep_movsb(64))?;
    push!(Instruction::with2(
        Code::Mov_rm64_r64,
        rip(H_LOG),
        Register::RDI
    ))?;
    push!(Instruction::with2(
        Code::Lea_r64_m,
        Register::RSI,
        at(Register::R11, R_DATA),
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RDI,
        at(Register::R11, R_OUT_ADDR),
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RCX,
        at(Register::R11, R_OUT_LEN),
    ))?;
    push!(Instruction::with_rep_movsb(64))?;
    // Consumed: the result, the registers and the flags back.
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RCX,
        at(Register::R11, R_NEXT),
    ))?;
    push!(Instruction::with2(
        Code::Mov_rm64_r64,
        rip(H_NEXT),
        Register::RCX
    ))?;
    push!(Instruction::with2(Code::Add_rm64_imm8, rip(H_DONE), 1))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RAX,
        at(Register::R11, R_RET),
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RSI,
        rip(S_RSI)
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RDI,
        rip(S_RDI)
    ))?;
    let restore_flags = |code: &mut Vec<Instruction>| -> std::result::Result<(), String> {
        emit(
            code,
            Instruction::with2(Code::Mov_r64_rm64, Register::RCX, red()),
        )?;
        emit(code, Instruction::with1(Code::Push_rm64, rip(S_FLAGS)))?;
        emit(code, Ok(Instruction::with(Code::Popfq)))?;
        emit(
            code,
            Instruction::with2(Code::Mov_rm64_r64, red(), Register::RCX),
        )
    };
    restore_flags(&mut code)?;
    push!(Instruction::with2(
        Code::Mov_r64_rm64,
        Register::R11,
        rip(S_FLAGS)
    ))?;
    push!(Instruction::with2(
        Code::Mov_r64_imm64,
        Register::RCX,
        abi::ENTRY_IP,
    ))?;
    push!(Ok(Instruction::with(Code::Retnq)))?;
    // The stop: the flags as they came, the call, rcx as after the recorded one.
    let slow_at = code.len();
    restore_flags(&mut code)?;
    push!(Ok(Instruction::with(Code::Syscall)))?;
    push!(Instruction::with2(
        Code::Mov_r64_imm64,
        Register::RCX,
        abi::ENTRY_IP,
    ))?;
    push!(Ok(Instruction::with(Code::Retnq)))?;
    // Fake addresses: branches name SLOW, the first slow instruction carries it.
    for (n, i) in code.iter_mut().enumerate() {
        i.set_ip(if n == slow_at { SLOW } else { 0x10 + n as u64 });
    }
    let block = InstructionBlock::new(&code, abi::ENTRY_PAGE);
    let out = BlockEncoder::encode(64, block, BlockEncoderOptions::NONE)
        .map_err(|e| format!("cannot assemble the replay entry: {e}"))?;
    Ok(out.code_buffer)
}

/// The replay code at the quiet entry ([`abi::QUIET_ENTRY`]), where the library arms and
/// disarms the desched event of a call that may block (not recorded): it answers 0, the
/// result of those ioctls at record, and leaves `rcx`, `r11`, the flags and the word
/// below the stack pointer as the `syscall` did.
pub fn quiet_code() -> std::result::Result<Vec<u8>, String> {
    let red = || MemoryOperand::with_base_displ(Register::RSP, -8);
    let fail = |e: iced_x86::IcedError| format!("cannot assemble the replay quiet entry: {e}");
    let code = vec![
        Instruction::with2(Code::Mov_r64_rm64, Register::RCX, red()).map_err(fail)?,
        Instruction::with(Code::Pushfq),
        Instruction::with1(Code::Pop_r64, Register::R11).map_err(fail)?,
        Instruction::with2(Code::Mov_rm64_r64, red(), Register::RCX).map_err(fail)?,
        Instruction::with2(Code::Mov_r32_imm32, Register::EAX, 0u32).map_err(fail)?,
        Instruction::with2(Code::Mov_r64_imm64, Register::RCX, abi::QUIET_IP).map_err(fail)?,
        Instruction::with(Code::Retnq),
    ];
    let block = InstructionBlock::new(&code, abi::QUIET_ENTRY);
    let out = BlockEncoder::encode(64, block, BlockEncoderOptions::NONE)
        .map_err(|e| format!("cannot assemble the replay quiet entry: {e}"))?;
    Ok(out.code_buffer)
}

/// Maps the replay entry page (the code above) and an empty feed into a task stopped
/// after an exec, borrowing the `syscall` instruction at `at`.
pub fn map(task: &mut Task, at: u64) -> Result<()> {
    let (code, quiet) = entry_code()
        .and_then(|c| Ok((c, quiet_code()?)))
        .map_err(|what| Error::Unsupported {
            what,
            hint: "report this as a bug".into(),
        })?;
    let mapped = with_syscall_at(task, at, |task| -> Result<(i64, i64)> {
        let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
        let page = inject_syscall(
            task,
            at,
            libc::SYS_mmap as u64,
            &[
                abi::ENTRY_PAGE,
                4096,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                anon,
                u64::MAX,
                0,
            ],
        )?;
        let feed = inject_syscall(
            task,
            at,
            libc::SYS_mmap as u64,
            &[
                FEED,
                FEED_SIZE,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                anon,
                u64::MAX,
                0,
            ],
        )?;
        Ok((page, feed))
    })??;
    if mapped != (abi::ENTRY_PAGE as i64, FEED as i64) {
        return Err(Error::Unsupported {
            what: format!("cannot map the syscall-buffering replay entry ({mapped:?})"),
            hint: "report this as a bug".into(),
        });
    }
    // ptrace writes go through read-only protections.
    task.write_mem(abi::ENTRY_PAGE, &code)?;
    task.write_mem(abi::QUIET_ENTRY, &quiet)?;
    clear(task)
}

/// Empties the feed.
fn clear(task: &mut Task) -> Result<()> {
    let words: Vec<u8> = [RECORDS_AT, RECORDS_AT, LOG_AT, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    task.write_mem(FEED, &words)
}

/// Where a fed call's input is and how long: its row's one input (write's buffer),
/// sized by an argument or a constant; nothing after `EFAULT` (as the library copies).
fn input_of(s: &SyscallEvent) -> Option<(u64, u64)> {
    let desc = syscalls::lookup(s.nr)?;
    match desc.inputs {
        [] => Some((0, 0)),
        [i] => {
            let addr = s.args[i.arg as usize];
            let len = match i.size {
                Size::Arg(n) => s.args[n as usize],
                Size::Fixed(n) => n as u64,
                _ => return None,
            };
            if addr == 0 || s.ret == -(libc::EFAULT as i64) {
                Some((addr, 0))
            } else {
                Some((addr, len))
            }
        }
        _ => None,
    }
}

/// Whether `ev` is a call the library made at the entry that the feed can replay.
fn feedable(ev: &Event, tid: i32) -> bool {
    let Event::Syscall(s) = ev else { return false };
    s.tid == tid
        && s.args[5] == abi::MARK
        && s.file.is_none()
        && s.writes.len() <= 1
        && s.writes.iter().all(|w| (w.data.len() as u64) <= MAX_BYTES)
        && !crate::kernel::restart::is_restart(s.ret)
        && crate::syscallbuf::is_buffered(s.nr, &s.args)
        && input_of(s).is_some_and(|(_, len)| len <= MAX_BYTES)
}

impl Replayer<'_> {
    /// Before `ev` is replayed: if it starts a run of its thread's buffered calls,
    /// replays all but the last of the run through the feed (the thread runs to the
    /// stop of the first call not fed), checks them, and returns the event the thread's
    /// stop belongs to, with that stop kept for it ([`RThread::fed_stop`]). Otherwise
    /// returns `ev`.
    pub(super) fn feed_run(&mut self, ev: Event) -> Result<Event> {
        let Event::Syscall(first) = &ev else {
            return Ok(ev);
        };
        let tid = first.tid;
        let eligible = self.syscallbuf
            && enabled()
            // The debugger's breakpoints and watchpoints stay: a stop inside the run is
            // taken where it falls (see `run_fed`). Not in the entry code, which runs
            // another path when the feed is empty.
            && !self.bps.any_in(abi::ENTRY_PAGE, abi::ENTRY_PAGE + 4096)
            && feedable(&ev, tid)
            && self.threads.get(&tid).is_some_and(|t| {
                t.held.is_none()
                    && t.in_fork.is_none()
                    && t.signal == 0
                    && !t.at_dropped_stop
                    && t.temporary_mask.is_none()
                    && t.fed_stop.is_none()
            });
        if !eligible {
            return Ok(ev);
        }
        // How many calls may be fed: the run's length less its last call, within the
        // feed's room and before the session's limit.
        let room = self.batch_limit.saturating_sub(self.index + 1);
        let mut records = RECORDS;
        let mut log = LOG;
        let mut fed = 0usize;
        let mut calls: Vec<&SyscallEvent> = Vec::new();
        let mut i = 0usize;
        loop {
            if i == self.ahead.len() {
                match self.events.next_event()? {
                    Some(e) => self.ahead.push_back(e),
                    None => break,
                }
            }
            if !feedable(&self.ahead[i], tid) {
                break;
            }
            i += 1;
        }
        // `ev` and ahead[..i] are the run; feed ev and ahead[..i-1].
        let run_rest = i;
        for k in 0..run_rest.min(MAX_CALLS) {
            if fed as u64 >= room {
                break;
            }
            let s = if k == 0 {
                first
            } else {
                match &self.ahead[k - 1] {
                    Event::Syscall(s) => s,
                    _ => unreachable!("checked feedable"),
                }
            };
            let out = s.writes.first().map_or(0, |w| w.data.len() as u64);
            let size = REC_WORDS * 8 + out.div_ceil(8) * 8;
            let (_, in_len) = input_of(s).expect("checked feedable");
            if size > records || in_len > log {
                break;
            }
            records -= size;
            log -= in_len;
            calls.push(s);
            fed += 1;
        }
        if calls.is_empty() {
            return Ok(ev);
        }
        // The feed's bytes.
        let mut bytes: Vec<u8> = Vec::with_capacity((RECORDS - records) as usize);
        for s in &calls {
            let (in_addr, in_len) = input_of(s).expect("checked feedable");
            let (out_addr, out): (u64, &[u8]) = s
                .writes
                .first()
                .map_or((0, &[][..]), |w| (w.addr, &w.data[..]));
            let at = RECORDS_AT + bytes.len() as u64;
            let next = at + REC_WORDS * 8 + (out.len() as u64).div_ceil(8) * 8;
            let mut words = vec![s.nr];
            words.extend_from_slice(&s.args);
            words.extend_from_slice(&[
                s.ret as u64,
                in_addr,
                in_len,
                out_addr,
                out.len() as u64,
                next,
            ]);
            bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
            bytes.extend_from_slice(out);
            bytes.resize((next - RECORDS_AT) as usize, 0);
        }
        let n = calls.len();
        let end = RECORDS_AT + bytes.len() as u64;
        let mut th = self.threads.remove(&tid).expect("checked above");
        let ran = self.run_fed(&mut th, &bytes, end);
        self.threads.insert(tid, th);
        let (done, log_bytes, stop) = match ran {
            Ok(r) => r,
            Err(e) => {
                self.pending = Some(ev);
                return Err(e);
            }
        };
        if done > n as u64 {
            return Err(Error::Unsupported {
                what: format!("the replay entry consumed {done} of {n} calls"),
                hint: "report this as a bug".into(),
            });
        }
        self.stats.fed += done;
        // Check the consumed calls, in order, as emulated calls are checked.
        let mut ev = ev;
        let mut log_at = 0usize;
        for _ in 0..done {
            let Event::Syscall(s) = &ev else {
                unreachable!("checked feedable")
            };
            let (_, in_len) = input_of(s).expect("checked feedable");
            let input = log_bytes
                .get(log_at..log_at + in_len as usize)
                .unwrap_or_default();
            log_at += in_len as usize;
            self.commit_fed(&ev, s, input, tid)?;
            self.index += 1;
            ev = self.next_event()?.expect("read ahead above");
        }
        match stop {
            Ok(stop) => {
                if let Some(th) = self.threads.get_mut(&tid) {
                    th.fed_stop = Some(stop);
                }
                Ok(ev)
            }
            // A debugger's breakpoint or watchpoint between two fed calls: the session
            // stands in the interval of the first call not consumed, as it would have
            // replaying the run call by call; going on feeds the rest of the run.
            Err(e) => {
                self.pending = Some(ev);
                Err(e)
            }
        }
    }

    /// Loads the feed, resumes `th` to its next stop and empties the feed: the records
    /// consumed, the log's bytes and the stop, or the debugger's breakpoint or
    /// watchpoint ([`Error::Breakpoint`], [`Error::Watchpoint`]) the thread met after
    /// the records consumed.
    #[allow(clippy::type_complexity)]
    fn run_fed(
        &mut self,
        th: &mut RThread,
        records: &[u8],
        end: u64,
    ) -> Result<(u64, Vec<u8>, Result<Stop>)> {
        th.task.write_mem(RECORDS_AT, records)?;
        let header: Vec<u8> = [RECORDS_AT, end, LOG_AT, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        th.task.write_mem(FEED, &header)?;
        let stop = match self.resume_to_next(th, Resume::Sysemu, 0) {
            Err(e) if !matches!(e, Error::Breakpoint { .. } | Error::Watchpoint { .. }) => {
                return Err(e)
            }
            stop => stop,
        };
        let word =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
        let h = th.task.read_mem(FEED, 32)?;
        let (log_end, done) = (word(&h, 2), word(&h, 3));
        let log_len = log_end
            .checked_sub(LOG_AT)
            .filter(|&l| l <= LOG)
            .ok_or_else(|| Error::Unsupported {
                what: "the replay feed's log was overwritten".into(),
                hint: "report this as a bug".into(),
            })?;
        let log = th.task.read_mem(LOG_AT, log_len as usize)?;
        clear(&mut th.task)?;
        Ok((done, log, stop))
    }

    /// What replay does at a fed call's event besides what the entry code did: the
    /// observer, the input hash, the program's output.
    fn commit_fed(&mut self, ev: &Event, s: &SyscallEvent, input: &[u8], tid: i32) -> Result<()> {
        let Some(th) = self.threads.get(&tid) else {
            return Ok(());
        };
        let (pid, files) = (th.task.tid, th.files);
        (self.observer)(pid, self.index);
        let desc = syscalls::lookup(s.nr).expect("checked feedable");
        let hash = crate::syscallbuf::input_hash(desc.inputs, &s.args, input);
        if hash != s.input_hash {
            return Err(self.diverge(
                ev,
                format!(
                    "passed different data to {} (input hash {hash:#x}, recorded {:#x})",
                    desc.name, s.input_hash
                ),
            ));
        }
        if s.ret >= 0 {
            if let (Some(crate::output::WriteKind::Buffer), Some(stream)) = (
                crate::output::OutputFds::write_kind(s.nr),
                self.fd_tables.stream(files, s.args[0]),
            ) {
                let n = (s.ret as usize).min(input.len());
                (self.sink)(stream, &input[..n]);
            }
        }
        self.fd_tables.after_syscall(files, s.nr, &s.args, s.ret);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn the_entry_code_decodes_and_ends_in_the_recorded_syscall() {
        let code = entry_code().unwrap();
        assert!((code.len() as u64) < abi::QUIET_ENTRY - abi::ENTRY_PAGE);
        let mut d = Decoder::with_ip(64, &code, abi::ENTRY_PAGE, DecoderOptions::NONE);
        let insns: Vec<_> = d.iter().collect();
        assert!(insns.iter().all(|i| !i.is_invalid()));
        let syscalls: Vec<_> = insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Syscall)
            .collect();
        assert_eq!(syscalls.len(), 1);
        assert_eq!(
            insns
                .iter()
                .filter(|i| i.mnemonic() == Mnemonic::Ret)
                .count(),
            2
        );
        // Every memory operand is the stack's red-zone word, the feed or a record.
        for i in &insns {
            if i.memory_base() == Register::RIP {
                let a = i.ip_rel_memory_address();
                assert!((FEED..FEED + 64).contains(&a), "{:?} at {a:#x}", i.code());
            }
        }
    }

    #[test]
    fn the_quiet_entry_answers_zero_without_a_syscall_or_a_memory_write() {
        let code = quiet_code().unwrap();
        assert!(abi::QUIET_ENTRY + code.len() as u64 <= abi::ENTRY_PAGE + 4096);
        let mut d = Decoder::with_ip(64, &code, abi::QUIET_ENTRY, DecoderOptions::NONE);
        let insns: Vec<_> = d.iter().collect();
        assert!(insns.iter().all(|i| !i.is_invalid()));
        assert!(insns.iter().all(|i| i.mnemonic() != Mnemonic::Syscall));
        assert_eq!(insns.last().unwrap().mnemonic(), Mnemonic::Ret);
        assert!(insns
            .iter()
            .any(|i| i.mnemonic() == Mnemonic::Mov && i.immediate64() == abi::QUIET_IP));
    }
}
