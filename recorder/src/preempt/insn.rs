//! What kind of instruction sits at a preemption point: whether the recorder may
//! single-step over it, whether replay may patch it with a jump, and whether it is an
//! interruptible `rep` string instruction. Decoding is `iced-x86`'s.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};

/// Bytes read at an address to decode the instruction there (the longest x86
/// instruction is 15 bytes).
pub const MAX_LEN: usize = 15;
/// Bytes a `jmp rel32` patch overwrites.
pub const JMP_LEN: usize = 5;

/// Decodes the instruction at the start of `bytes`, which were read at `rip`.
pub fn decode(bytes: &[u8], rip: u64) -> Option<Instruction> {
    let mut d = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE);
    let i = d.decode();
    (!i.is_invalid()).then_some(i)
}

/// Instructions that trap, touch the flags in a way a single step would show, enter
/// the kernel, or whose result is nondeterministic: the recorder never steps over
/// them (a preemption point stays before them).
fn special(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Syscall
            | Mnemonic::Sysenter
            | Mnemonic::Int
            | Mnemonic::Int1
            | Mnemonic::Int3
            | Mnemonic::Into
            | Mnemonic::Cpuid
            | Mnemonic::Rdtsc
            | Mnemonic::Rdtscp
            | Mnemonic::Rdpid
            | Mnemonic::Rdrand
            | Mnemonic::Rdseed
            | Mnemonic::Pushf
            | Mnemonic::Pushfq
            | Mnemonic::Popf
            | Mnemonic::Popfq
            | Mnemonic::Iret
            | Mnemonic::Iretd
            | Mnemonic::Iretq
            | Mnemonic::Hlt
            | Mnemonic::Ud0
            | Mnemonic::Ud1
            | Mnemonic::Ud2
            | Mnemonic::Xbegin
            | Mnemonic::Xend
            | Mnemonic::Xabort
            | Mnemonic::Xgetbv
    ) || matches!(
        i.flow_control(),
        FlowControl::Interrupt | FlowControl::Exception | FlowControl::XbeginXabortXend
    )
}

/// A `rep` string instruction that the CPU interrupts between iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepString {
    /// Bytes per iteration.
    pub size: u64,
    /// Whether it advances `rsi` (movs, lods) besides `rdi` (movs, stos).
    pub uses_rsi: bool,
    /// Whether it advances `rdi`.
    pub uses_rdi: bool,
}

/// The `rep movs`/`rep stos`/`rep lods` at hand, if it is one (the forms without an
/// early exit, whose iterations done follow from `rcx`).
pub fn rep_string(i: &Instruction) -> Option<RepString> {
    if !i.has_rep_prefix() {
        return None;
    }
    let (size, uses_rsi, uses_rdi) = match i.code() {
        Code::Movsb_m8_m8 => (1, true, true),
        Code::Movsw_m16_m16 => (2, true, true),
        Code::Movsd_m32_m32 => (4, true, true),
        Code::Movsq_m64_m64 => (8, true, true),
        Code::Stosb_m8_AL => (1, false, true),
        Code::Stosw_m16_AX => (2, false, true),
        Code::Stosd_m32_EAX => (4, false, true),
        Code::Stosq_m64_RAX => (8, false, true),
        Code::Lodsb_AL_m8 => (1, true, false),
        Code::Lodsw_AX_m16 => (2, true, false),
        Code::Lodsd_EAX_m32 => (4, true, false),
        Code::Lodsq_RAX_m64 => (8, true, false),
        _ => return None,
    };
    // A 32-bit address size would use ecx/esi/edi: not worth the cases.
    let addr32 = (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            iced_x86::OpKind::MemorySegESI | iced_x86::OpKind::MemoryESEDI
        )
    });
    (!addr32).then_some(RepString {
        size,
        uses_rsi,
        uses_rdi,
    })
}

/// Whether the instruction repeats with a `rep`/`repe`/`repne` prefix (a single step
/// runs one iteration of it, so the recorder does not step over it).
pub fn repeats(i: &Instruction) -> bool {
    (i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix())
        && matches!(
            i.mnemonic(),
            Mnemonic::Movsb
                | Mnemonic::Movsw
                | Mnemonic::Movsd
                | Mnemonic::Movsq
                | Mnemonic::Stosb
                | Mnemonic::Stosw
                | Mnemonic::Stosd
                | Mnemonic::Stosq
                | Mnemonic::Lodsb
                | Mnemonic::Lodsw
                | Mnemonic::Lodsd
                | Mnemonic::Lodsq
                | Mnemonic::Cmpsb
                | Mnemonic::Cmpsw
                | Mnemonic::Cmpsd
                | Mnemonic::Cmpsq
                | Mnemonic::Scasb
                | Mnemonic::Scasw
                | Mnemonic::Scasd
                | Mnemonic::Scasq
                | Mnemonic::Insb
                | Mnemonic::Insw
                | Mnemonic::Insd
                | Mnemonic::Outsb
                | Mnemonic::Outsw
                | Mnemonic::Outsd
        )
}

/// Whether `i` is `loop` onto itself (`1: loop 1b`, a delay loop): each pass only
/// lowers `rcx` (no flags, no memory), so a pass with `rcx` = n is the same state as the
/// first with `rcx` lowered to n.
pub fn loops_onto_itself(i: &Instruction) -> bool {
    i.code() == Code::Loop_rel8_64_RCX && i.near_branch_target() == i.ip()
}

/// Whether the recorder may single-step over the instruction while it looks for a
/// better preemption point.
pub fn steppable(i: &Instruction) -> bool {
    !special(i) && !repeats(i)
}

/// Why replay may not displace this instruction with a `jmp rel32` to a trampoline,
/// if it may not.
///
/// Only a single instruction of at least [`JMP_LEN`] bytes is displaced: the jump
/// then overwrites no other instruction, so no branch, landing pad, return address or
/// other thread can be inside the patched bytes (all of them point at instruction
/// starts), and no analysis of the surrounding function is needed.
pub fn unpatchable(i: &Instruction) -> Option<&'static str> {
    if i.len() < JMP_LEN {
        return Some("the instruction is shorter than a 5-byte jump");
    }
    if special(i) || repeats(i) {
        return Some("the instruction traps, enters the kernel or repeats");
    }
    match i.flow_control() {
        FlowControl::Call | FlowControl::IndirectCall => {
            Some("a displaced call would push the trampoline's address")
        }
        _ => None,
    }
}

/// The instructions a `jmp rel32` at `at` would displace, in a function whose code is
/// `code` (read at `start`; bounds from `.eh_frame`), or why it may not patch there.
///
/// The whole function is decoded: it must decode cleanly, hold no indirect `jmp` other
/// than through a RIP-relative slot (a jump table's targets are unknown), and no
/// direct branch of it may land inside the patched bytes after `at`. The displaced
/// instructions must be movable ([`unpatchable`] apart from their length).
pub fn displaced(code: &[u8], start: u64, at: u64) -> Result<Vec<Instruction>, String> {
    let mut all = Vec::new();
    let mut targets = Vec::new();
    for i in Decoder::with_ip(64, code, start, DecoderOptions::NONE).iter() {
        if i.is_invalid() {
            return Err(format!("the function does not decode at {:#x}", i.ip()));
        }
        match i.flow_control() {
            FlowControl::IndirectBranch if !i.is_ip_rel_memory_operand() => {
                return Err(format!(
                    "the function has an indirect jmp at {:#x} (a jump table?)",
                    i.ip()
                ));
            }
            FlowControl::ConditionalBranch
            | FlowControl::UnconditionalBranch
            | FlowControl::Call => {
                if matches!(
                    i.op0_kind(),
                    iced_x86::OpKind::NearBranch64 | iced_x86::OpKind::NearBranch32
                ) {
                    targets.push(i.near_branch_target());
                }
            }
            _ => {}
        }
        all.push(i);
    }
    let first = all
        .iter()
        .position(|i| i.ip() == at)
        .ok_or_else(|| format!("{at:#x} is not an instruction start of its function"))?;
    let mut out = Vec::new();
    let mut end = at;
    for i in &all[first..] {
        if end >= at + JMP_LEN as u64 {
            break;
        }
        if special(i)
            || repeats(i)
            || matches!(
                i.flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            )
        {
            return Err(format!("cannot displace the instruction at {:#x}", i.ip()));
        }
        out.push(*i);
        end = i.next_ip();
    }
    if end < at + JMP_LEN as u64 {
        return Err("the function ends within 5 bytes".into());
    }
    if let Some(t) = targets.iter().find(|&&t| t > at && t < end) {
        return Err(format!(
            "a branch lands at {t:#x}, inside the patched bytes"
        ));
    }
    Ok(out)
}

/// Whether the arithmetic flags are dead at the start of `code` (decoded at `at`): the
/// instructions from there on, in a straight line, write all six status flags before
/// any of them is read, and before any branch, call, return or instruction that
/// traps. A trampoline may then compare with `cmp` without saving the flags. Any doubt
/// (code that does not decode, runs out, branches first) says they are live.
pub fn flags_dead_at(code: &[u8], at: u64) -> bool {
    use iced_x86::RflagsBits as F;
    let status = F::OF | F::SF | F::ZF | F::AF | F::PF | F::CF;
    let mut written = 0;
    for i in Decoder::with_ip(64, code, at, DecoderOptions::NONE).iter() {
        if i.is_invalid() || special(&i) || repeats(&i) {
            return false;
        }
        if i.rflags_read() & status & !written != 0 {
            return false;
        }
        written |= i.rflags_modified() & status;
        if written == status {
            return true;
        }
        if i.flow_control() != FlowControl::Next {
            return false;
        }
    }
    false
}

/// The 8-byte-aligned words the instruction writes when it runs with `regs` (a loop's
/// progress that lives in memory: replay's trampoline compares them too).
pub fn written_words(i: &Instruction, regs: &crate::ptrace::Regs) -> Vec<u64> {
    use iced_x86::{InstructionInfoFactory, OpAccess, Register as R};
    let value = |reg: R, _: usize, _: usize| -> Option<u64> {
        Some(match reg {
            R::RAX => regs.rax,
            R::RBX => regs.rbx,
            R::RCX => regs.rcx,
            R::RDX => regs.rdx,
            R::RSI => regs.rsi,
            R::RDI => regs.rdi,
            R::RBP => regs.rbp,
            R::RSP => regs.rsp,
            R::R8 => regs.r8,
            R::R9 => regs.r9,
            R::R10 => regs.r10,
            R::R11 => regs.r11,
            R::R12 => regs.r12,
            R::R13 => regs.r13,
            R::R14 => regs.r14,
            R::R15 => regs.r15,
            // RIP-relative displacements are absolute in iced's instructions.
            R::RIP | R::ES | R::CS | R::SS | R::DS => 0,
            R::FS => regs.fs_base,
            R::GS => regs.gs_base,
            _ => return None,
        })
    };
    let mut factory = InstructionInfoFactory::new();
    let mut out = Vec::new();
    for m in factory.info(i).used_memory() {
        let writes = matches!(
            m.access(),
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        );
        if !writes || m.vsib_size() != 0 {
            continue;
        }
        if let Some(addr) = m.try_virtual_address(0, value) {
            let size = m.memory_size().size().max(1) as u64;
            let mut w = addr & !7;
            while w < addr + size && out.len() < 4 {
                out.push(w);
                w += 8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(bytes: &[u8]) -> Instruction {
        decode(bytes, 0x1000).expect("valid")
    }

    #[test]
    fn long_plain_instructions_are_patchable() {
        // add qword [rsp+8], 1
        assert_eq!(
            unpatchable(&at(&[0x48, 0x83, 0x44, 0x24, 0x08, 0x01])),
            None
        );
        // mov rax, [rip+0x100]: relocated by the block encoder
        assert_eq!(
            unpatchable(&at(&[0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00])),
            None
        );
        // jne rel32
        assert_eq!(unpatchable(&at(&[0x0f, 0x85, 0x10, 0, 0, 0])), None);
    }

    #[test]
    fn short_calls_and_traps_are_not() {
        assert!(unpatchable(&at(&[0x48, 0xff, 0xc0])).is_some()); // inc rax
        assert!(unpatchable(&at(&[0xe8, 0, 0, 0, 0])).is_some()); // call rel32
        assert!(unpatchable(&at(&[0x0f, 0x05])).is_some()); // syscall
        assert!(!steppable(&at(&[0x0f, 0x05])));
        assert!(!steppable(&at(&[0x0f, 0x31]))); // rdtsc
        assert!(!steppable(&at(&[0x9c]))); // pushf
        assert!(steppable(&at(&[0x48, 0xff, 0xc0])));
    }

    #[test]
    fn rep_strings() {
        let movsb = at(&[0xf3, 0xa4]);
        assert_eq!(
            rep_string(&movsb),
            Some(RepString {
                size: 1,
                uses_rsi: true,
                uses_rdi: true
            })
        );
        assert!(!steppable(&movsb));
        let stosq = at(&[0xf3, 0x48, 0xab]);
        assert_eq!(
            rep_string(&stosq).map(|r| (r.size, r.uses_rsi)),
            Some((8, false))
        );
        // repe cmpsb exits early: not a RepString, and not stepped over
        let cmpsb = at(&[0xf3, 0xa6]);
        assert_eq!(rep_string(&cmpsb), None);
        assert!(!steppable(&cmpsb));
        // movsb without rep is an ordinary instruction
        assert_eq!(rep_string(&at(&[0xa4])), None);
        assert!(steppable(&at(&[0xa4])));
    }

    #[test]
    fn written_words_of_a_counter_in_memory() {
        // addq $1, 0x2ebd(%rip) at 0x117b: writes the global at 0x4040
        let i = decode(&[0x48, 0x83, 0x05, 0xbd, 0x2e, 0x00, 0x00, 0x01], 0x117b).unwrap();
        let regs: crate::ptrace::Regs = unsafe { std::mem::zeroed() };
        assert_eq!(written_words(&i, &regs), vec![0x4040]);
        // mov [rsp+4], eax with rsp = 0x7000: the word at 0x7000
        let mut regs = regs;
        regs.rsp = 0x7000;
        let i = decode(&[0x89, 0x44, 0x24, 0x04], 0).unwrap();
        assert_eq!(written_words(&i, &regs), vec![0x7000]);
        // a read writes nothing
        let i = decode(&[0x8b, 0x44, 0x24, 0x04], 0).unwrap();
        assert!(written_words(&i, &regs).is_empty());
    }

    /// A tight loop (every instruction shorter than 5 bytes), as a release build makes:
    /// 0x00 mov rdx, rax; 0x03 shl rdx, 13; 0x07 xor rax, rdx; 0x0a add rcx, 1;
    /// 0x0e cmp rcx, rdi; 0x11 jne 0x00; 0x13 ret
    const LOOP: &[u8] = &[
        0x48, 0x89, 0xc2, 0x48, 0xc1, 0xe2, 0x0d, 0x48, 0x31, 0xd0, 0x48, 0x83, 0xc1, 0x01, 0x48,
        0x39, 0xf9, 0x75, 0xed, 0xc3,
    ];

    #[test]
    fn displacing_several_short_instructions() {
        let base = 0x1000;
        let d = displaced(LOOP, base, base + 0x3).unwrap();
        assert_eq!(
            d.iter().map(|i| i.ip() - base).collect::<Vec<_>>(),
            vec![0x3, 0x7]
        );
        // the loop's back edge goes to 0x00, the start of the patch: fine
        let d = displaced(LOOP, base, base).unwrap();
        assert_eq!(d.len(), 2);
        // the cmp and the jne: the relocated jne branches back to the original loop
        let d = displaced(LOOP, base, base + 0xe).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_back_edge_inside_the_patched_bytes_is_refused() {
        // The loop's head is at 0x03: patching at 0x00 would cover it.
        let mut code = LOOP.to_vec();
        code[0x12] = 0xf0; // jne 0x03
        let base = 0x1000;
        let why = displaced(&code, base, base).unwrap_err();
        assert!(why.contains("inside the patched bytes"), "{why}");
        // at 0x03 itself it is fine
        assert!(displaced(&code, base, base + 3).is_ok());
    }

    #[test]
    fn a_jump_table_is_refused() {
        // 0x00 jmp rax; then the loop
        let mut code = vec![0xff, 0xe0];
        code.extend_from_slice(LOOP);
        let why = displaced(&code, 0x1000, 0x1002).unwrap_err();
        assert!(why.contains("indirect jmp"), "{why}");
        // a jmp through a RIP-relative slot (a PLT-style tail call) is not a table
        let mut code = vec![0xff, 0x25, 0, 0, 0, 0];
        code.extend_from_slice(LOOP);
        assert!(displaced(&code, 0x1000, 0x1006).is_ok());
    }

    #[test]
    fn calls_and_mid_instruction_addresses_are_refused() {
        // call rel32 right after the patch address
        let code = [0x48, 0x89, 0xc2, 0xe8, 0, 0, 0, 0, 0xc3];
        assert!(displaced(&code, 0x1000, 0x1000).is_err());
        assert!(displaced(LOOP, 0x1000, 0x1001).is_err());
        // too close to the end
        assert!(displaced(LOOP, 0x1000, 0x1013).is_err());
    }

    #[test]
    fn flags_liveness() {
        // mov rax, [rip+x]; add rax, 1: the add writes every status flag
        assert!(flags_dead_at(
            &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0x48, 0x83, 0xc0, 0x01],
            0x1000
        ));
        // mov rax, [rip+x]; jb: read before written
        assert!(!flags_dead_at(
            &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0x72, 0xe1],
            0x1000
        ));
        // adc rax, 1 reads CF
        assert!(!flags_dead_at(&[0x48, 0x83, 0xd0, 0x01], 0x1000));
        // inc rax leaves CF alone, then a jmp: live
        assert!(!flags_dead_at(&[0x48, 0xff, 0xc0, 0xeb, 0x00], 0x1000));
        // inc rax; cmp rdx, rax: all written by the cmp
        assert!(flags_dead_at(&[0x48, 0xff, 0xc0, 0x48, 0x39, 0xc2], 0x1000));
        // runs out of code
        assert!(!flags_dead_at(&[0x48, 0x89, 0xc2], 0x1000));
    }
}
