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
}
