//! The conditional trap that replay patches into the program to find a preemption
//! point: the instruction at the recorded `rip` is replaced by a `jmp rel32` to a
//! trampoline that compares the general registers and a few stack words with the
//! recorded ones. On a mismatch it runs the displaced instruction (relocated by
//! `iced-x86`'s block encoder) and jumps back, at the cost of a few dozen instructions;
//! on a match it executes `int3`, and the engine compares the full state (extended
//! state, stack and memory hashes). A loop that passes the point a million times then
//! costs milliseconds instead of a million debug traps.
//!
//! The trampoline keeps what it clobbers (`rax` and the arithmetic flags, saved with
//! `lahf`/`seto` and restored with `add al, 0x7f`/`sahf`) in a save area of its own,
//! never on the program's stack; with the recorded values it lives on a second page
//! ([`DATA_OFFSET`]) so that its stores do not land on the code's cache lines. Replay
//! maps both pages for the search only and leaves them out of the memory hash.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, Register,
};

use super::insn::JMP_LEN;

/// Size of the trampoline mapping: a code page and a data page.
pub const SIZE: u64 = 2 * 4096;
/// Offset of the data page (save area, then the recorded values).
pub const DATA_OFFSET: u64 = 4096;
/// How far a `jmp rel32` reaches, with a margin for the trampoline's own size.
const REACH: u64 = (1 << 31) - 2 * SIZE;

/// The general registers the trampoline compares, with their index in the recorded
/// register vector (`user_regs_struct` order, see [`crate::arch::regs_to_vec`]).
pub const COMPARED: [(Register, usize); 16] = [
    (Register::RAX, 10),
    (Register::RCX, 11),
    (Register::RDX, 12),
    (Register::RBX, 5),
    (Register::RSP, 19),
    (Register::RBP, 4),
    (Register::RSI, 13),
    (Register::RDI, 14),
    (Register::R8, 9),
    (Register::R9, 8),
    (Register::R10, 7),
    (Register::R11, 6),
    (Register::R12, 3),
    (Register::R13, 2),
    (Register::R14, 1),
    (Register::R15, 0),
];

/// What the trampoline compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The recorded general registers ([`COMPARED`] order).
    pub gprs: [u64; 16],
    /// Offset from `rsp` of the first stack word, and the words.
    pub stack_from: i32,
    /// Recorded stack words.
    pub stack: Vec<u64>,
    /// Recorded memory words (address, value).
    pub memory: Vec<(u64, u64)>,
    /// How many of the first memory words are always mapped (the thread's stack, a
    /// module's data) and may be read before the registers are compared.
    pub safe_words: usize,
    /// Whether the arithmetic flags are dead at the patched address
    /// ([`super::insn::flags_dead_at`]): the registers are then compared first with
    /// plain `cmp`s, and a pass whose registers differ costs two or three instructions.
    pub flags_dead: bool,
}

impl Want {
    /// From a recorded register vector and stack words.
    pub fn new(
        regs: &[u64],
        stack_from: i32,
        stack: &[u64],
        memory: &[(u64, u64)],
    ) -> Option<Want> {
        let mut gprs = [0; 16];
        for (slot, (_, index)) in gprs.iter_mut().zip(COMPARED) {
            *slot = *regs.get(index)?;
        }
        Some(Want {
            gprs,
            stack_from,
            stack: stack.to_vec(),
            memory: memory.to_vec(),
            safe_words: 0,
            flags_dead: false,
        })
    }
}

/// An assembled trampoline.
#[derive(Debug, Clone)]
pub struct Trampoline {
    /// Where it is to be mapped.
    pub base: u64,
    /// Bytes of the code page.
    pub code: Vec<u8>,
    /// Bytes of the data page.
    pub data: Vec<u8>,
    /// Address of its `int3` (the engine sees the trap with `rip` one past it).
    pub trap: u64,
    /// The `jmp rel32` to write at the patched address.
    pub jump: [u8; JMP_LEN],
}

/// Fake addresses of the trampoline's own instructions for the block encoder, which
/// resolves branches by instruction address: far from any code of the program.
const FAKE_IP: u64 = 0x10;
const MISS_IP: u64 = 0x8000;
const SLOW_IP: u64 = 0x9000;
const FAST_MISS_IP: u64 = 0xa000;
const REG_MISS_IP: u64 = 0xb000;
const REG_NEXT_IP: u64 = 0xc000;
/// The first displaced instruction's copy. Not the patched address itself: a branch of
/// the displaced instructions back to that address (a `loop` onto itself) must leave
/// the trampoline and pass the check again, not run on in the copy.
const DISPLACED_IP: u64 = 0xd000;
/// The order of the registers' quick comparison when the flags are dead (indices into
/// [`COMPARED`]): those a loop changes most often first, the stack and frame pointers
/// last.
const QUICK_ORDER: [usize; 16] = [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 3, 5, 4];
/// Memory words checked first, without touching the flags.
const FAST_WORDS: usize = 2;

/// Instructions with fake addresses, branch targets by fake address.
struct Asm {
    code: Vec<Instruction>,
    ip: u64,
}

impl Asm {
    fn push(&mut self, i: Result<Instruction, iced_x86::IcedError>) -> Result<(), String> {
        let mut i = i.map_err(|e| format!("cannot assemble the trampoline: {e}"))?;
        self.ip += 1;
        i.set_ip(self.ip);
        self.code.push(i);
        Ok(())
    }

    /// Gives the last instruction pushed the address `ip` (a branch target).
    fn label_last(&mut self, ip: u64) {
        if let Some(i) = self.code.last_mut() {
            i.set_ip(ip);
        }
    }
}

/// Assembles the trampoline for the instructions `insns` (decoded at the patched
/// address, consecutive, at least 5 bytes together) at `base`.
///
/// Layout: when there are memory words, a fast check of the first ones that leaves the
/// flags alone (`rcx`/`rdx` saved; `not`, `lea` and `jrcxz` compute and test the
/// difference), so that a loop whose progress is in memory passes the point with a
/// dozen extra instructions; then the full check (`rax` and the flags saved), the
/// trap, and the displaced instruction.
pub fn build(insns: &[Instruction], base: u64, want: &Want) -> Result<Trampoline, String> {
    let (Some(first), Some(last)) = (insns.first(), insns.last()) else {
        return Err("nothing to displace".into());
    };
    let rip = first.ip();
    let back = last.next_ip();
    let data = base + DATA_OFFSET;
    let save_rax = data;
    let save_flags = data + 8;
    let want_reg = |n: usize| data + 16 + 8 * n as u64;
    let want_word = |n: usize| data + 16 + 8 * (16 + n) as u64;
    let words = want.stack.len() + want.memory.len();
    let save_rcx = want_word(words);
    let save_rdx = want_word(words + 1);
    let mem = |addr: u64| MemoryOperand::with_base_displ(Register::RIP, addr as i64);
    let mov_load =
        |reg: Register, addr: u64| Instruction::with2(Code::Mov_r64_rm64, reg, mem(addr));
    let mov_store =
        |addr: u64, reg: Register| Instruction::with2(Code::Mov_rm64_r64, mem(addr), reg);
    let mut a = Asm {
        code: Vec::new(),
        ip: FAKE_IP,
    };
    let fast = want.safe_words.min(want.memory.len()) > 0;

    // The displaced instructions and the jump back.
    let displaced = |a: &mut Asm, fast_miss: bool| -> Result<(), String> {
        if fast_miss {
            a.push(mov_load(Register::RCX, save_rcx))?;
            a.label_last(FAST_MISS_IP);
            a.push(mov_load(Register::RDX, save_rdx))?;
        }
        let mut copies = insns.to_vec();
        copies[0].set_ip(DISPLACED_IP);
        a.code.extend_from_slice(&copies);
        a.push(Instruction::with_branch(Code::Jmp_rel32_64, back))
    };
    // rax and the flags back.
    let restore = |a: &mut Asm, label: Option<u64>| -> Result<(), String> {
        a.push(mov_load(Register::RAX, save_flags))?;
        if let Some(l) = label {
            a.label_last(l);
        }
        a.push(Instruction::with2(Code::Add_rm8_imm8, Register::AL, 0x7f))?;
        a.push(Ok(Instruction::with(Code::Sahf)))?;
        a.push(mov_load(Register::RAX, save_rax))
    };

    if want.flags_dead {
        // The quick check: the first register that differs sends the pass to the
        // displaced instructions (laid out after the first comparison, so that the
        // common case takes no branch in the trampoline).
        for (k, n) in QUICK_ORDER.iter().enumerate() {
            let cmp = Instruction::with2(Code::Cmp_r64_rm64, COMPARED[*n].0, mem(want_reg(*n)));
            if k == 0 {
                a.push(cmp)?;
                a.push(Instruction::with_branch(Code::Je_rel32_64, REG_NEXT_IP))?;
                // Addresses of their own (the block encoder wants each once; their
                // RIP-relative operands and branch targets are absolute).
                let mut moved = insns.to_vec();
                for (j, i) in moved.iter_mut().enumerate() {
                    i.set_ip(REG_MISS_IP + j as u64);
                }
                a.code.extend_from_slice(&moved);
                a.push(Instruction::with_branch(Code::Jmp_rel32_64, back))?;
            } else {
                a.push(cmp)?;
                if k == 1 {
                    a.label_last(REG_NEXT_IP);
                }
                a.push(Instruction::with_branch(Code::Jne_rel32_64, REG_MISS_IP))?;
            }
        }
    }
    if fast {
        a.push(mov_store(save_rcx, Register::RCX))?;
        a.push(mov_store(save_rdx, Register::RDX))?;
        let first = want.stack.len();
        for (n, (addr, _)) in want
            .memory
            .iter()
            .take(FAST_WORDS.min(want.safe_words))
            .enumerate()
        {
            // rcx = want - value, flags untouched.
            a.push(Instruction::with2(
                Code::Mov_r64_imm64,
                Register::RCX,
                *addr,
            ))?;
            a.push(Instruction::with2(
                Code::Mov_r64_rm64,
                Register::RCX,
                MemoryOperand::with_base(Register::RCX),
            ))?;
            a.push(Instruction::with1(Code::Not_rm64, Register::RCX))?;
            a.push(mov_load(Register::RDX, want_word(first + n)))?;
            a.push(Instruction::with2(
                Code::Lea_r64_m,
                Register::RCX,
                MemoryOperand::with_base_index_scale_displ_size(
                    Register::RCX,
                    Register::RDX,
                    1,
                    1,
                    1,
                ),
            ))?;
            let equal = 0x10_0000 + 0x1000 * n as u64;
            a.push(Instruction::with_branch(Code::Jrcxz_rel8_64, equal))?;
            a.push(Instruction::with_branch(Code::Jmp_rel32_64, FAST_MISS_IP))?;
            // The next instruction is where an equal word goes on.
            a.ip = equal - 1;
        }
        a.push(mov_load(Register::RCX, save_rcx))?;
        a.push(mov_load(Register::RDX, save_rdx))?;
        a.push(Instruction::with_branch(Code::Jmp_rel32_64, SLOW_IP))?;
        displaced(&mut a, true)?;
    }

    // The full check. Save rax and the flags.
    a.push(mov_store(save_rax, Register::RAX))?;
    if fast {
        a.label_last(SLOW_IP);
    }
    a.push(Ok(Instruction::with(Code::Lahf)))?;
    a.push(Instruction::with1(Code::Seto_rm8, Register::AL))?;
    a.push(mov_store(save_flags, Register::RAX))?;
    a.push(mov_load(Register::RAX, save_rax))?;
    let jne_miss = || Instruction::with_branch(Code::Jne_rel32_64, MISS_IP);
    // The registers, rax (restored above) included.
    for (n, (reg, _)) in COMPARED.iter().enumerate() {
        a.push(Instruction::with2(
            Code::Cmp_r64_rm64,
            *reg,
            mem(want_reg(n)),
        ))?;
        a.push(jne_miss())?;
    }
    // The stack words (rsp is the recorded one by now).
    for n in 0..want.stack.len() {
        let off = want.stack_from as i64 + 8 * n as i64;
        a.push(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RAX,
            MemoryOperand::with_base_displ(Register::RSP, off),
        ))?;
        a.push(Instruction::with2(
            Code::Cmp_r64_rm64,
            Register::RAX,
            mem(want_word(n)),
        ))?;
        a.push(jne_miss())?;
    }
    // The memory words (absolute 64-bit addresses: no reach limit).
    let first_mem = want.stack.len();
    for (n, (addr, _)) in want.memory.iter().enumerate() {
        a.push(Instruction::with2(
            Code::Mov_RAX_moffs64,
            Register::RAX,
            MemoryOperand::with_base_displ_size(Register::None, *addr as i64, 8),
        ))?;
        a.push(Instruction::with2(
            Code::Cmp_r64_rm64,
            Register::RAX,
            mem(want_word(first_mem + n)),
        ))?;
        a.push(jne_miss())?;
    }
    // A match: the program's registers back, then the trap; the engine resumes after it.
    restore(&mut a, None)?;
    let trap_index = a.code.len();
    a.push(Ok(Instruction::with(Code::Int3)))?;
    a.push(Instruction::with_branch(Code::Jmp_rel32_64, DISPLACED_IP))?;
    // A mismatch: the program's registers back, the displaced instruction, and back.
    restore(&mut a, Some(MISS_IP))?;
    if fast {
        a.push(Instruction::with_branch(Code::Jmp_rel32_64, DISPLACED_IP))?;
    } else {
        displaced(&mut a, false)?;
    }

    let encoded = BlockEncoder::encode(
        64,
        InstructionBlock::new(&a.code, base),
        BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )
    .map_err(|e| format!("cannot assemble the trampoline: {e}"))?;
    if encoded.code_buffer.len() as u64 > DATA_OFFSET {
        return Err("the trampoline does not fit its page".into());
    }
    let trap = base + u64::from(encoded.new_instruction_offsets[trap_index]);
    let mut values = vec![0u64, 0];
    values.extend_from_slice(&want.gprs);
    values.extend_from_slice(&want.stack);
    values.extend(want.memory.iter().map(|(_, v)| *v));
    values.extend([0, 0]);
    Ok(Trampoline {
        base,
        code: encoded.code_buffer,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        trap,
        jump: jump(rip, base).ok_or("the trampoline is out of a 5-byte jump's reach")?,
    })
}

/// The `jmp rel32` at `from` to `to`, if it reaches.
pub fn jump(from: u64, to: u64) -> Option<[u8; JMP_LEN]> {
    let rel = (to as i64).wrapping_sub(from as i64 + JMP_LEN as i64);
    let rel = i32::try_from(rel).ok()?;
    let mut j = [0xe9, 0, 0, 0, 0];
    j[1..].copy_from_slice(&rel.to_le_bytes());
    Some(j)
}

/// A free, page-aligned range of [`SIZE`] bytes within a 5-byte jump of `near`, given
/// the mapped ranges (any order), the closest to `near`.
pub fn place(mapped: &[(u64, u64)], near: u64) -> Option<u64> {
    // The lowest address Linux lets a program map by default, and the top of the
    // 47-bit user address space.
    const LOW: u64 = 0x10000;
    const HIGH: u64 = 0x7fff_ffff_f000;
    let mut spans: Vec<(u64, u64)> = mapped.to_vec();
    spans.sort_unstable();
    let lo = near.saturating_sub(REACH).max(LOW);
    let hi = near.saturating_add(REACH).min(HIGH);
    let mut best: Option<u64> = None;
    let mut consider = |at: u64| {
        if at >= lo && at + SIZE <= hi {
            let dist = |a: u64| a.abs_diff(near);
            if best.map_or(true, |b| dist(at) < dist(b)) {
                best = Some(at);
            }
        }
    };
    let mut gap_start = 0u64;
    for &(start, end) in spans.iter().chain(std::iter::once(&(HIGH, HIGH))) {
        let (g0, g1) = ((gap_start.max(lo) + 4095) & !4095, start.min(hi) & !4095);
        if g1 >= g0 + SIZE {
            consider(g0);
            consider(g1 - SIZE);
        }
        gap_start = gap_start.max(end);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    fn decode_all(bytes: &[u8], ip: u64) -> Vec<Instruction> {
        Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    fn want(words: usize) -> Want {
        Want {
            gprs: [7; 16],
            stack_from: -128,
            stack: vec![9; words],
            memory: vec![
                (0x5555_5555_8040, 3),
                (0x5555_5555_8048, 4),
                (0x5555_5555_8050, 5),
            ],
            safe_words: 3,
            flags_dead: false,
        }
    }

    const RIP: u64 = 0x5555_5555_1000;
    const BASE: u64 = 0x5555_5554_0000;

    #[test]
    fn trampoline_compares_traps_and_jumps_back() {
        // add qword [rsp+8], 1
        let insn =
            crate::preempt::insn::decode(&[0x48, 0x83, 0x44, 0x24, 0x08, 0x01], RIP).unwrap();
        let t = build(&[insn], BASE, &want(48)).unwrap();
        let code = decode_all(&t.code, BASE);
        assert!(code.iter().all(|i| !i.is_invalid()));
        let traps: Vec<_> = code
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Int3)
            .collect();
        assert_eq!(traps.len(), 1);
        assert_eq!(traps[0].ip(), t.trap);
        // 16 registers and 48 words compared, every mismatch to the same place
        let jne: Vec<_> = code
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Jne)
            .collect();
        assert_eq!(jne.len(), 16 + 48 + 3);
        assert!(code
            .iter()
            .any(|i| i.code() == Code::Mov_RAX_moffs64
                && i.memory_displacement64() == 0x5555_5555_8040));
        let miss = jne[0].near_branch_target();
        assert!(jne.iter().all(|j| j.near_branch_target() == miss));
        // the displaced instruction, then back to the next one
        let at = code.iter().position(|i| i.code() == insn.code()).unwrap();
        assert_eq!(code[at + 1].mnemonic(), Mnemonic::Jmp);
        assert_eq!(code[at + 1].near_branch_target(), RIP + 6);
        // nothing touches the stack but the compared reads
        assert!(code.iter().all(|i| !i.is_stack_instruction()));
        assert_eq!(t.data.len(), 8 * (2 + 16 + 48 + 3 + 2));
        // the fast check of the memory word, flags untouched
        assert_eq!(
            code.iter()
                .filter(|i| i.mnemonic() == Mnemonic::Jrcxz)
                .count(),
            2
        );
        // the patch jumps to the trampoline
        assert_eq!(t.jump[0], 0xe9);
        let rel = i32::from_le_bytes(t.jump[1..].try_into().unwrap()) as i64;
        assert_eq!((RIP as i64 + 5 + rel) as u64, BASE);
    }

    #[test]
    fn with_dead_flags_the_registers_are_compared_first() {
        // mov rax, [rip+0x2000]
        let insn =
            crate::preempt::insn::decode(&[0x48, 0x8b, 0x05, 0x00, 0x20, 0x00, 0x00], RIP).unwrap();
        let mut w = want(4);
        w.flags_dead = true;
        let t = build(&[insn], BASE, &w).unwrap();
        let code = decode_all(&t.code, BASE);
        assert!(code.iter().all(|i| !i.is_invalid()));
        // cmp rax; je over the displaced instruction and the jump back
        assert_eq!(code[0].mnemonic(), Mnemonic::Cmp);
        assert_eq!(code[0].op0_register(), Register::RAX);
        assert_eq!(code[1].mnemonic(), Mnemonic::Je);
        assert_eq!(code[2].mnemonic(), Mnemonic::Mov);
        assert_eq!(code[2].memory_displacement64(), RIP + 7 + 0x2000);
        assert_eq!(code[3].mnemonic(), Mnemonic::Jmp);
        assert_eq!(code[3].near_branch_target(), RIP + 7);
        assert_eq!(code[1].near_branch_target(), code[4].ip());
        // the other 15 registers, each to the displaced instruction on a difference
        for (k, i) in code[4..34].chunks(2).enumerate() {
            assert_eq!(i[0].mnemonic(), Mnemonic::Cmp, "{k}");
            assert_eq!(i[1].mnemonic(), Mnemonic::Jne, "{k}");
            assert_eq!(i[1].near_branch_target(), code[2].ip(), "{k}");
        }
        assert_eq!(code[32].op0_register(), Register::RSP);
        // then the full check as before, with its single trap
        assert_eq!(
            code.iter()
                .filter(|i| i.mnemonic() == Mnemonic::Int3)
                .count(),
            1
        );
        assert!(code.iter().all(|i| !i.is_stack_instruction()));
    }

    #[test]
    fn rip_relative_operands_are_relocated() {
        // mov rax, [rip+0x2000]
        let insn =
            crate::preempt::insn::decode(&[0x48, 0x8b, 0x05, 0x00, 0x20, 0x00, 0x00], RIP).unwrap();
        let target = insn.ip_rel_memory_address();
        let t = build(&[insn], BASE, &want(0)).unwrap();
        let code = decode_all(&t.code, BASE);
        let displaced = code
            .iter()
            .find(|i| i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == target)
            .expect("the displaced load keeps its target");
        assert_ne!(displaced.ip(), RIP);
    }

    #[test]
    fn relative_branches_are_relocated() {
        // jne rel32 back to RIP - 0x40 (a loop's back edge, 6 bytes)
        let insn =
            crate::preempt::insn::decode(&[0x0f, 0x85, 0xba, 0xff, 0xff, 0xff], RIP).unwrap();
        let t = build(&[insn], BASE, &want(4)).unwrap();
        let code = decode_all(&t.code, BASE);
        assert!(code
            .iter()
            .any(|i| i.is_jcc_short_or_near() && i.near_branch_target() == RIP + 6 - 0x46));
    }

    #[test]
    fn a_branch_back_to_the_patched_address_passes_the_check_again() {
        // `1: loop 1b` (rr's delay loop) and the `mov eax, 0` after it: at replay each
        // iteration must come back through the patched jump, or the loop would run on in
        // the trampoline's copy and never be compared.
        let insns = decode_all(&[0xe2, 0xfe, 0xb8, 0, 0, 0, 0], RIP);
        for (words, flags_dead) in [(0, false), (4, false), (4, true)] {
            let mut w = want(words);
            w.flags_dead = flags_dead;
            if words == 0 {
                w.memory.clear();
                w.safe_words = 0;
            }
            let t = build(&insns, BASE, &w).unwrap();
            let code = decode_all(&t.code, BASE);
            let ends_at = |target: u64| -> u64 {
                // The block encoder lengthens an out-of-reach `loop` with a near `jmp`.
                match code.iter().find(|i| i.ip() == target) {
                    Some(j) if j.mnemonic() == Mnemonic::Jmp => j.near_branch_target(),
                    _ => target,
                }
            };
            let loops: Vec<_> = code
                .iter()
                .filter(|i| i.mnemonic() == Mnemonic::Loop)
                .collect();
            assert!(!loops.is_empty(), "{words} {flags_dead}");
            for l in loops {
                assert_eq!(
                    ends_at(l.near_branch_target()),
                    RIP,
                    "words {words}, dead flags {flags_dead}: the copy branches to {:#x}",
                    l.near_branch_target()
                );
            }
        }
    }

    #[test]
    fn straddling_a_page_is_fine() {
        // a 7-byte instruction that starts 3 bytes before a page boundary
        let rip = RIP + 4096 - 3;
        let insn =
            crate::preempt::insn::decode(&[0x48, 0x8b, 0x05, 0x00, 0x20, 0x00, 0x00], rip).unwrap();
        let t = build(&[insn], BASE, &want(2)).unwrap();
        let code = decode_all(&t.code, BASE);
        assert!(code
            .iter()
            .any(|i| i.mnemonic() == Mnemonic::Jmp && i.near_branch_target() == rip + 7));
    }

    #[test]
    fn out_of_reach_is_refused() {
        let insn =
            crate::preempt::insn::decode(&[0x48, 0x83, 0x44, 0x24, 0x08, 0x01], RIP).unwrap();
        assert!(build(&[insn], RIP + (1 << 32), &want(0)).is_err());
        assert!(jump(RIP, RIP + (1 << 31) + 16).is_none());
        assert!(jump(RIP, RIP - (1 << 30)).is_some());
    }

    #[test]
    fn placement_picks_the_closest_free_pages_in_reach() {
        let exe = (0x5555_5555_0000, 0x5555_5556_0000);
        let heap = (0x5555_5556_0000, 0x5555_5560_0000);
        let libs = (0x7fff_f000_0000, 0x7fff_f800_0000);
        let at = place(&[libs, exe, heap], 0x5555_5555_1000).unwrap();
        assert_eq!(at, 0x5555_5555_0000 - SIZE);
        assert!(at.abs_diff(0x5555_5555_1000) < 1 << 31);
        // everything within reach taken: none
        let all = (0x4000_0000_0000, 0x7000_0000_0000);
        assert_eq!(place(&[all], 0x5555_5555_1000), None);
        // a gap too small is skipped
        let a = (0x1000_0000, 0x1000_5000);
        let b = (0x1000_6000, 0x2000_0000);
        let got = place(&[a, b], 0x1000_5800).unwrap();
        assert!(got + SIZE <= 0x1000_0000 || got >= 0x2000_0000);
    }
}
