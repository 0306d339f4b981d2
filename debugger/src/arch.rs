//! The x86-64 Linux register set as gdb sees it over the remote protocol.
//!
//! `gdbstub_arch`'s x86-64 target carries the general and SSE registers only. gdb needs
//! more from a Linux process: `fs_base` (Rust and C thread-locals are addressed through
//! it), `orig_rax` (without the `org.gnu.gdb.i386.linux` feature gdb drops its Linux
//! specifics, syscall restart among them) and the upper halves of the AVX registers. So
//! this module declares its own target description and the byte layout of the `g`
//! packet that goes with it: registers are sent in the order of their `regnum`s below.

use gdbstub::arch::{Arch, RegId, Registers};
use recorder::ptrace::{FpuState, Regs};

/// The architecture: x86-64 Linux with segment bases, `orig_rax` and AVX.
pub enum X86_64Linux {}

impl Arch for X86_64Linux {
    type Usize = u64;
    type Registers = X86_64Regs;
    type BreakpointKind = usize;
    type RegId = NoSingleRegisters;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// gdb reads registers with `g` only; `p` (one register) is answered with an error,
/// after which gdb falls back to `g`.
#[derive(Debug)]
pub enum NoSingleRegisters {}

impl RegId for NoSingleRegisters {
    fn from_raw_id(_id: usize) -> Option<(Self, Option<std::num::NonZeroUsize>)> {
        None
    }
}

/// One thread's registers, in gdb's terms.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct X86_64Regs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8..r15 (gdb's order).
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags.
    pub eflags: u32,
    /// cs, ss, ds, es, fs, gs.
    pub segments: [u32; 6],
    /// x87 registers st0..st7 (80 bits each).
    pub st: [[u8; 10]; 8],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub x87_control: [u32; 8],
    /// xmm0..xmm15.
    pub xmm: [[u8; 16]; 16],
    /// SSE control and status.
    pub mxcsr: u32,
    /// Upper halves of ymm0..ymm15 (zero when the thread never used AVX).
    pub ymm_high: [[u8; 16]; 16],
    /// The thread pointer base (thread-locals).
    pub fs_base: u64,
    /// The gs base.
    pub gs_base: u64,
    /// The syscall number at a syscall stop, else -1.
    pub orig_rax: u64,
}

impl X86_64Regs {
    /// From ptrace's general registers and the extended state.
    pub fn from_ptrace(r: &Regs, fpu: Option<&FpuState>) -> Self {
        let mut out = X86_64Regs {
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
                r.r12, r.r13, r.r14, r.r15,
            ],
            rip: r.rip,
            eflags: r.eflags as u32,
            segments: [r.cs, r.ss, r.ds, r.es, r.fs, r.gs].map(|s| s as u32),
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            orig_rax: r.orig_rax,
            ..Default::default()
        };
        let Some(fpu) = fpu else { return out };
        let area = match fpu {
            FpuState::Xsave(b) | FpuState::Fxsave(b) => b.as_slice(),
        };
        if area.len() < 512 {
            return out;
        }
        let u16_at = |o: usize| u16::from_le_bytes([area[o], area[o + 1]]) as u32;
        let u32_at = |o: usize| u32::from_le_bytes(area[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(area[o..o + 8].try_into().unwrap());
        // The FXSAVE layout (Intel SDM vol. 1, 10.5.1, 64-bit form).
        let fip = u64_at(8);
        let fdp = u64_at(16);
        out.x87_control = [
            u16_at(0),
            u16_at(2),
            full_tag_word(area[4], (u16_at(2) >> 11) & 7, &area[32..160]),
            (fip >> 32) as u32,
            fip as u32,
            (fdp >> 32) as u32,
            fdp as u32,
            u16_at(6),
        ];
        for (i, st) in out.st.iter_mut().enumerate() {
            st.copy_from_slice(&area[32 + 16 * i..32 + 16 * i + 10]);
        }
        out.mxcsr = u32_at(24);
        for (i, x) in out.xmm.iter_mut().enumerate() {
            x.copy_from_slice(&area[160 + 16 * i..176 + 16 * i]);
        }
        // XSAVE: the header's XSTATE_BV (byte 512) says whether the AVX component (bit
        // 2) is in use; it sits at byte 576, 16 bytes per register.
        if let FpuState::Xsave(b) = fpu {
            if b.len() >= 576 + 256 && u64_at(512) & 4 != 0 {
                for (i, y) in out.ymm_high.iter_mut().enumerate() {
                    y.copy_from_slice(&b[576 + 16 * i..592 + 16 * i]);
                }
            }
        }
        out
    }
}

/// The x87 tag word as gdb shows it (two bits a register: 0 valid, 1 zero, 2 special, 3
/// empty) from FXSAVE's abridged one (one bit a register: in use or empty). In-use
/// registers are classified from their contents, as the hardware would. Tags are by
/// physical register; `st_space` holds the registers by stack position (ST(i) is
/// physical register `(top + i) % 8`).
fn full_tag_word(abridged: u8, top: u32, st_space: &[u8]) -> u32 {
    let mut tag = 0u32;
    for phys in 0..8 {
        let t = if abridged & (1 << phys) == 0 {
            3
        } else {
            let st = (phys + 8 - top as usize) % 8;
            let reg = &st_space[16 * st..16 * st + 10];
            let exponent = u16::from_le_bytes([reg[8], reg[9]]) & 0x7fff;
            let mantissa = u64::from_le_bytes(reg[..8].try_into().unwrap());
            if exponent == 0x7fff {
                2
            } else if exponent == 0 {
                if mantissa == 0 {
                    1
                } else {
                    2
                }
            } else if mantissa >> 63 == 0 {
                2
            } else {
                0
            }
        };
        tag |= t << (2 * phys);
    }
    tag
}

impl Registers for X86_64Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut put = |bytes: &[u8]| bytes.iter().for_each(|b| write_byte(Some(*b)));
        for r in self.gpr {
            put(&r.to_le_bytes());
        }
        put(&self.rip.to_le_bytes());
        put(&self.eflags.to_le_bytes());
        for s in self.segments {
            put(&s.to_le_bytes());
        }
        for st in &self.st {
            put(st);
        }
        for c in self.x87_control {
            put(&c.to_le_bytes());
        }
        for x in &self.xmm {
            put(x);
        }
        put(&self.mxcsr.to_le_bytes());
        put(&self.fs_base.to_le_bytes());
        put(&self.gs_base.to_le_bytes());
        put(&self.orig_rax.to_le_bytes());
        for y in &self.ymm_high {
            put(y);
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        // Parsed so that a `G` packet gets its proper answer (the target refuses the
        // write, see `target.rs`) rather than a protocol error that ends the session.
        if bytes.len() != G_PACKET_LEN {
            return Err(());
        }
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
        for r in self.gpr.iter_mut() {
            *r = u64_of(take(8));
        }
        self.rip = u64_of(take(8));
        self.eflags = u32_of(take(4));
        for s in self.segments.iter_mut() {
            *s = u32_of(take(4));
        }
        for st in self.st.iter_mut() {
            st.copy_from_slice(take(10));
        }
        for c in self.x87_control.iter_mut() {
            *c = u32_of(take(4));
        }
        for x in self.xmm.iter_mut() {
            x.copy_from_slice(take(16));
        }
        self.mxcsr = u32_of(take(4));
        self.fs_base = u64_of(take(8));
        self.gs_base = u64_of(take(8));
        self.orig_rax = u64_of(take(8));
        for y in self.ymm_high.iter_mut() {
            y.copy_from_slice(take(16));
        }
        Ok(())
    }
}

/// Size of the `g` packet's payload, in bytes.
pub const G_PACKET_LEN: usize =
    16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4 + 8 + 8 + 8 + 16 * 16;

/// The target description. Register numbers follow the `g` packet's order in
/// [`X86_64Regs::gdb_serialize`]; the feature and register names are the ones gdb's
/// amd64 Linux support looks for.
const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<osabi>GNU/Linux</osabi>
<feature name="org.gnu.gdb.i386.core">
  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/>
    <field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/>
    <field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/>
    <field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/>
    <field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/>
    <field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/>
    <field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/>
    <field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/>
    <field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>
  <reg name="rax" bitsize="64" type="int64" regnum="0"/>
  <reg name="rbx" bitsize="64" type="int64"/>
  <reg name="rcx" bitsize="64" type="int64"/>
  <reg name="rdx" bitsize="64" type="int64"/>
  <reg name="rsi" bitsize="64" type="int64"/>
  <reg name="rdi" bitsize="64" type="int64"/>
  <reg name="rbp" bitsize="64" type="data_ptr"/>
  <reg name="rsp" bitsize="64" type="data_ptr"/>
  <reg name="r8" bitsize="64" type="int64"/>
  <reg name="r9" bitsize="64" type="int64"/>
  <reg name="r10" bitsize="64" type="int64"/>
  <reg name="r11" bitsize="64" type="int64"/>
  <reg name="r12" bitsize="64" type="int64"/>
  <reg name="r13" bitsize="64" type="int64"/>
  <reg name="r14" bitsize="64" type="int64"/>
  <reg name="r15" bitsize="64" type="int64"/>
  <reg name="rip" bitsize="64" type="code_ptr"/>
  <reg name="eflags" bitsize="32" type="i386_eflags"/>
  <reg name="cs" bitsize="32" type="int32"/>
  <reg name="ss" bitsize="32" type="int32"/>
  <reg name="ds" bitsize="32" type="int32"/>
  <reg name="es" bitsize="32" type="int32"/>
  <reg name="fs" bitsize="32" type="int32"/>
  <reg name="gs" bitsize="32" type="int32"/>
  <reg name="st0" bitsize="80" type="i387_ext"/>
  <reg name="st1" bitsize="80" type="i387_ext"/>
  <reg name="st2" bitsize="80" type="i387_ext"/>
  <reg name="st3" bitsize="80" type="i387_ext"/>
  <reg name="st4" bitsize="80" type="i387_ext"/>
  <reg name="st5" bitsize="80" type="i387_ext"/>
  <reg name="st6" bitsize="80" type="i387_ext"/>
  <reg name="st7" bitsize="80" type="i387_ext"/>
  <reg name="fctrl" bitsize="32" type="int" group="float"/>
  <reg name="fstat" bitsize="32" type="int" group="float"/>
  <reg name="ftag" bitsize="32" type="int" group="float"/>
  <reg name="fiseg" bitsize="32" type="int" group="float"/>
  <reg name="fioff" bitsize="32" type="int" group="float"/>
  <reg name="foseg" bitsize="32" type="int" group="float"/>
  <reg name="fooff" bitsize="32" type="int" group="float"/>
  <reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
  <vector id="v8bf16" type="bfloat16" count="8"/>
  <vector id="v8h" type="ieee_half" count="8"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v8_bfloat16" type="v8bf16"/>
    <field name="v8_half" type="v8h"/>
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
  <flags id="i386_mxcsr" size="4">
    <field name="IE" start="0" end="0"/>
    <field name="DE" start="1" end="1"/>
    <field name="ZE" start="2" end="2"/>
    <field name="OE" start="3" end="3"/>
    <field name="UE" start="4" end="4"/>
    <field name="PE" start="5" end="5"/>
    <field name="DAZ" start="6" end="6"/>
    <field name="IM" start="7" end="7"/>
    <field name="DM" start="8" end="8"/>
    <field name="ZM" start="9" end="9"/>
    <field name="OM" start="10" end="10"/>
    <field name="UM" start="11" end="11"/>
    <field name="PM" start="12" end="12"/>
    <field name="FZ" start="15" end="15"/>
  </flags>
  <reg name="xmm0" bitsize="128" type="vec128"/>
  <reg name="xmm1" bitsize="128" type="vec128"/>
  <reg name="xmm2" bitsize="128" type="vec128"/>
  <reg name="xmm3" bitsize="128" type="vec128"/>
  <reg name="xmm4" bitsize="128" type="vec128"/>
  <reg name="xmm5" bitsize="128" type="vec128"/>
  <reg name="xmm6" bitsize="128" type="vec128"/>
  <reg name="xmm7" bitsize="128" type="vec128"/>
  <reg name="xmm8" bitsize="128" type="vec128"/>
  <reg name="xmm9" bitsize="128" type="vec128"/>
  <reg name="xmm10" bitsize="128" type="vec128"/>
  <reg name="xmm11" bitsize="128" type="vec128"/>
  <reg name="xmm12" bitsize="128" type="vec128"/>
  <reg name="xmm13" bitsize="128" type="vec128"/>
  <reg name="xmm14" bitsize="128" type="vec128"/>
  <reg name="xmm15" bitsize="128" type="vec128"/>
  <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
  <reg name="fs_base" bitsize="64" type="int"/>
  <reg name="gs_base" bitsize="64" type="int"/>
</feature>
<feature name="org.gnu.gdb.i386.linux">
  <reg name="orig_rax" bitsize="64" type="int" group="system"/>
</feature>
<feature name="org.gnu.gdb.i386.avx">
  <reg name="ymm0h" bitsize="128" type="uint128"/>
  <reg name="ymm1h" bitsize="128" type="uint128"/>
  <reg name="ymm2h" bitsize="128" type="uint128"/>
  <reg name="ymm3h" bitsize="128" type="uint128"/>
  <reg name="ymm4h" bitsize="128" type="uint128"/>
  <reg name="ymm5h" bitsize="128" type="uint128"/>
  <reg name="ymm6h" bitsize="128" type="uint128"/>
  <reg name="ymm7h" bitsize="128" type="uint128"/>
  <reg name="ymm8h" bitsize="128" type="uint128"/>
  <reg name="ymm9h" bitsize="128" type="uint128"/>
  <reg name="ymm10h" bitsize="128" type="uint128"/>
  <reg name="ymm11h" bitsize="128" type="uint128"/>
  <reg name="ymm12h" bitsize="128" type="uint128"/>
  <reg name="ymm13h" bitsize="128" type="uint128"/>
  <reg name="ymm14h" bitsize="128" type="uint128"/>
  <reg name="ymm15h" bitsize="128" type="uint128"/>
</feature>
</target>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        // SAFETY-free: user_regs_struct is plain integers.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        r.rax = 1;
        r.rbx = 2;
        r.rsp = 0x7fff_0000;
        r.r15 = 15;
        r.rip = 0x40_1000;
        r.eflags = 0x246;
        r.cs = 0x33;
        r.fs_base = 0x7f00_1234_5000;
        r.orig_rax = u64::MAX;
        r
    }

    fn serialized(r: &X86_64Regs) -> Vec<u8> {
        let mut out = Vec::new();
        r.gdb_serialize(|b| out.push(b.unwrap()));
        out
    }

    #[test]
    fn the_g_packet_follows_the_description_order() {
        let r = X86_64Regs::from_ptrace(&regs(), None);
        let g = serialized(&r);
        assert_eq!(g.len(), G_PACKET_LEN);
        let word = |i: usize| u64::from_le_bytes(g[i..i + 8].try_into().unwrap());
        assert_eq!(word(0), 1, "rax first");
        assert_eq!(word(8), 2, "then rbx");
        assert_eq!(word(7 * 8), 0x7fff_0000, "rsp is the eighth");
        assert_eq!(word(15 * 8), 15, "r15 the sixteenth");
        assert_eq!(word(16 * 8), 0x40_1000, "rip");
        let fs_base_at = 16 * 8 + 8 + 4 + 24 + 80 + 32 + 256 + 4;
        assert_eq!(word(fs_base_at), 0x7f00_1234_5000);
        assert_eq!(word(fs_base_at + 16), u64::MAX, "orig_rax after the bases");
    }

    #[test]
    fn a_g_packet_reads_back_into_the_same_registers() {
        let mut fpu = vec![0u8; 1024];
        fpu[160..176].copy_from_slice(&[5; 16]);
        let r = X86_64Regs::from_ptrace(&regs(), Some(&FpuState::Fxsave(fpu)));
        let mut back = X86_64Regs::default();
        back.gdb_deserialize(&serialized(&r)).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&[0; 8]).is_err());
    }

    #[test]
    fn every_register_of_the_description_is_in_the_g_packet() {
        let mut bits = 0;
        for line in TARGET_XML
            .lines()
            .filter(|l| l.trim_start().starts_with("<reg "))
        {
            let b = line.split("bitsize=\"").nth(1).unwrap();
            bits += b[..b.find('"').unwrap()].parse::<usize>().unwrap();
        }
        assert_eq!(bits / 8, G_PACKET_LEN);
    }

    #[test]
    fn fxsave_fields_land_in_their_registers() {
        let mut area = vec![0u8; 1024];
        area[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        area[160..176].copy_from_slice(&[7; 16]);
        area[576..592].copy_from_slice(&[9; 16]);
        area[512] = 4; // XSTATE_BV: AVX in use
        let r = X86_64Regs::from_ptrace(&regs(), Some(&FpuState::Xsave(area.clone())));
        assert_eq!(r.x87_control[0], 0x37f);
        assert_eq!(r.x87_control[2], 0xffff, "every x87 register empty");
        assert_eq!(r.mxcsr, 0x1f80);
        assert_eq!(r.xmm[0], [7; 16]);
        assert_eq!(r.ymm_high[0], [9; 16]);
        area[512] = 0;
        let r = X86_64Regs::from_ptrace(&regs(), Some(&FpuState::Xsave(area)));
        assert_eq!(r.ymm_high[0], [0; 16], "AVX state not in use reads as zero");
    }
}
