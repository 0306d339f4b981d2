//! CPU features: what a recording could observe through CPUID, and what this CPU has.
//!
//! A recording made where AVX2 exists may run AVX2 code (glibc picks its `memcpy` by
//! CPUID at startup); replayed where AVX2 is missing it dies of SIGILL. The recorder
//! stores the CPUID answers the program got (`cpuid_leaves` in result.json, possibly
//! masked); this module names the instruction-set bits in them so the compatibility
//! check can say, in words, which ones this CPU lacks.
//!
//! Only bits in [`FEATURES`] are compared. Other bits of the same registers describe the
//! machine rather than instructions the program can execute (`hypervisor`, `osxsave`,
//! APIC, speculation-control bits): comparing those would refuse a recording made in a
//! VM for a bare-metal replay for no reason.

use serde::{Deserialize, Serialize};

/// A CPUID register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// EAX
    Eax,
    /// EBX
    Ebx,
    /// ECX
    Ecx,
    /// EDX
    Edx,
}

/// One named feature bit: `(leaf, subleaf, register, bit, name)`.
#[derive(Debug, Clone, Copy)]
pub struct FeatureBit {
    /// CPUID leaf (EAX input).
    pub leaf: u32,
    /// CPUID subleaf (ECX input).
    pub subleaf: u32,
    /// Output register holding the bit.
    pub reg: Reg,
    /// Bit number.
    pub bit: u8,
    /// The name Linux's /proc/cpuinfo uses (mostly).
    pub name: &'static str,
}

const fn f(leaf: u32, subleaf: u32, reg: Reg, bit: u8, name: &'static str) -> FeatureBit {
    FeatureBit {
        leaf,
        subleaf,
        reg,
        bit,
        name,
    }
}

/// The instruction-set features compared between recording and replay machines.
pub const FEATURES: &[FeatureBit] = &[
    // Leaf 1 EDX
    f(1, 0, Reg::Edx, 0, "fpu"),
    f(1, 0, Reg::Edx, 4, "tsc"),
    f(1, 0, Reg::Edx, 8, "cx8"),
    f(1, 0, Reg::Edx, 15, "cmov"),
    f(1, 0, Reg::Edx, 19, "clflush"),
    f(1, 0, Reg::Edx, 23, "mmx"),
    f(1, 0, Reg::Edx, 24, "fxsr"),
    f(1, 0, Reg::Edx, 25, "sse"),
    f(1, 0, Reg::Edx, 26, "sse2"),
    // Leaf 1 ECX
    f(1, 0, Reg::Ecx, 0, "sse3"),
    f(1, 0, Reg::Ecx, 1, "pclmulqdq"),
    f(1, 0, Reg::Ecx, 9, "ssse3"),
    f(1, 0, Reg::Ecx, 12, "fma"),
    f(1, 0, Reg::Ecx, 13, "cx16"),
    f(1, 0, Reg::Ecx, 19, "sse4_1"),
    f(1, 0, Reg::Ecx, 20, "sse4_2"),
    f(1, 0, Reg::Ecx, 22, "movbe"),
    f(1, 0, Reg::Ecx, 23, "popcnt"),
    f(1, 0, Reg::Ecx, 25, "aes"),
    f(1, 0, Reg::Ecx, 26, "xsave"),
    f(1, 0, Reg::Ecx, 28, "avx"),
    f(1, 0, Reg::Ecx, 29, "f16c"),
    f(1, 0, Reg::Ecx, 30, "rdrand"),
    // Leaf 7.0 EBX
    f(7, 0, Reg::Ebx, 0, "fsgsbase"),
    f(7, 0, Reg::Ebx, 3, "bmi1"),
    f(7, 0, Reg::Ebx, 4, "hle"),
    f(7, 0, Reg::Ebx, 5, "avx2"),
    f(7, 0, Reg::Ebx, 8, "bmi2"),
    f(7, 0, Reg::Ebx, 9, "erms"),
    f(7, 0, Reg::Ebx, 11, "rtm"),
    f(7, 0, Reg::Ebx, 16, "avx512f"),
    f(7, 0, Reg::Ebx, 17, "avx512dq"),
    f(7, 0, Reg::Ebx, 18, "rdseed"),
    f(7, 0, Reg::Ebx, 19, "adx"),
    f(7, 0, Reg::Ebx, 21, "avx512ifma"),
    f(7, 0, Reg::Ebx, 23, "clflushopt"),
    f(7, 0, Reg::Ebx, 24, "clwb"),
    f(7, 0, Reg::Ebx, 26, "avx512pf"),
    f(7, 0, Reg::Ebx, 27, "avx512er"),
    f(7, 0, Reg::Ebx, 28, "avx512cd"),
    f(7, 0, Reg::Ebx, 29, "sha_ni"),
    f(7, 0, Reg::Ebx, 30, "avx512bw"),
    f(7, 0, Reg::Ebx, 31, "avx512vl"),
    // Leaf 7.0 ECX
    f(7, 0, Reg::Ecx, 1, "avx512vbmi"),
    f(7, 0, Reg::Ecx, 5, "waitpkg"),
    f(7, 0, Reg::Ecx, 6, "avx512_vbmi2"),
    f(7, 0, Reg::Ecx, 8, "gfni"),
    f(7, 0, Reg::Ecx, 9, "vaes"),
    f(7, 0, Reg::Ecx, 10, "vpclmulqdq"),
    f(7, 0, Reg::Ecx, 11, "avx512_vnni"),
    f(7, 0, Reg::Ecx, 12, "avx512_bitalg"),
    f(7, 0, Reg::Ecx, 14, "avx512_vpopcntdq"),
    f(7, 0, Reg::Ecx, 22, "rdpid"),
    f(7, 0, Reg::Ecx, 25, "cldemote"),
    f(7, 0, Reg::Ecx, 27, "movdiri"),
    f(7, 0, Reg::Ecx, 28, "movdir64b"),
    // Leaf 7.0 EDX
    f(7, 0, Reg::Edx, 2, "avx512_4vnniw"),
    f(7, 0, Reg::Edx, 3, "avx512_4fmaps"),
    f(7, 0, Reg::Edx, 4, "fsrm"),
    f(7, 0, Reg::Edx, 8, "avx512_vp2intersect"),
    f(7, 0, Reg::Edx, 14, "serialize"),
    f(7, 0, Reg::Edx, 22, "amx_bf16"),
    f(7, 0, Reg::Edx, 23, "avx512_fp16"),
    f(7, 0, Reg::Edx, 24, "amx_tile"),
    f(7, 0, Reg::Edx, 25, "amx_int8"),
    // Leaf 0x80000001
    f(0x8000_0001, 0, Reg::Ecx, 0, "lahf_lm"),
    f(0x8000_0001, 0, Reg::Ecx, 5, "abm"),
    f(0x8000_0001, 0, Reg::Ecx, 6, "sse4a"),
    f(0x8000_0001, 0, Reg::Ecx, 8, "3dnowprefetch"),
    f(0x8000_0001, 0, Reg::Ecx, 11, "xop"),
    f(0x8000_0001, 0, Reg::Ecx, 16, "fma4"),
    f(0x8000_0001, 0, Reg::Ecx, 21, "tbm"),
    f(0x8000_0001, 0, Reg::Edx, 27, "rdtscp"),
    f(0x8000_0001, 0, Reg::Edx, 29, "lm"),
];

/// One CPUID answer: `[leaf, subleaf, eax, ebx, ecx, edx]`, as result.json stores it.
pub type CpuidLeaf = [u32; 6];

/// The leaves and subleaves read for a host snapshot.
const HOST_LEAVES: &[(u32, u32)] = &[
    (0, 0),
    (1, 0),
    (7, 0),
    (7, 1),
    (0xd, 0),
    (0xd, 1),
    (0x8000_0000, 0),
    (0x8000_0001, 0),
];

/// Where a manifest's CPU description comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuSource {
    /// The CPUID answers the recorder gave the program (result.json `cpuid_leaves`):
    /// exactly what the recorded code could observe.
    Recording,
    /// The recording did not say; these are the packing host's answers, an upper bound
    /// when the recording was made on the same machine.
    #[default]
    PackingHost,
}

/// The CPU features a recording could observe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuFeatures {
    /// Where the answers come from.
    pub source: CpuSource,
    /// Names of the set bits among [`FEATURES`], for people.
    pub features: Vec<String>,
    /// The raw answers `[leaf, subleaf, eax, ebx, ecx, edx]`, for the compatibility check.
    pub cpuid_leaves: Vec<CpuidLeaf>,
    /// XCR0 (the XSAVE state components the OS enables), when leaf 0xD is present.
    pub xcr0: Option<u64>,
}

impl CpuFeatures {
    /// Builds the description from a set of CPUID answers.
    pub fn from_leaves(source: CpuSource, leaves: Vec<CpuidLeaf>) -> CpuFeatures {
        let features = FEATURES
            .iter()
            .filter(|fb| bit_set(&leaves, fb) == Some(true))
            .map(|fb| fb.name.to_string())
            .collect();
        let xcr0 = lookup(&leaves, 0xd, 0).map(|l| u64::from(l[2]) | (u64::from(l[5]) << 32));
        CpuFeatures {
            source,
            features,
            cpuid_leaves: leaves,
            xcr0,
        }
    }

    /// The running CPU's answers.
    pub fn host() -> CpuFeatures {
        CpuFeatures::from_leaves(CpuSource::PackingHost, host_leaves())
    }
}

/// Finds an answer for `(leaf, subleaf)`.
pub fn lookup(leaves: &[CpuidLeaf], leaf: u32, subleaf: u32) -> Option<&CpuidLeaf> {
    // Leaves without subleaves are sometimes stored with subleaf 0 and sometimes with the
    // subleaf the program happened to pass; prefer an exact match.
    leaves
        .iter()
        .find(|l| l[0] == leaf && l[1] == subleaf)
        .or_else(|| {
            if leaf == 1 || leaf == 0x8000_0001 {
                leaves.iter().find(|l| l[0] == leaf)
            } else {
                None
            }
        })
}

/// Whether a feature bit is set in a set of answers (`None` when its leaf is absent).
pub fn bit_set(leaves: &[CpuidLeaf], fb: &FeatureBit) -> Option<bool> {
    let l = lookup(leaves, fb.leaf, fb.subleaf)?;
    let v = match fb.reg {
        Reg::Eax => l[2],
        Reg::Ebx => l[3],
        Reg::Ecx => l[4],
        Reg::Edx => l[5],
    };
    Some(v & (1 << fb.bit) != 0)
}

/// Runs CPUID on this CPU for the leaves the check needs.
pub fn host_leaves() -> Vec<CpuidLeaf> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        // CPUID exists on every x86_64 CPU. The intrinsic is `unsafe` on older toolchains
        // and safe on newer ones.
        #[allow(unused_unsafe)]
        let cpuid = |leaf: u32, sub: u32| unsafe { __cpuid_count(leaf, sub) };
        let max_basic = cpuid(0, 0).eax;
        let max_ext = cpuid(0x8000_0000, 0).eax;
        HOST_LEAVES
            .iter()
            .filter(|(leaf, _)| {
                if *leaf >= 0x8000_0000 {
                    *leaf <= max_ext
                } else {
                    *leaf <= max_basic
                }
            })
            .map(|&(leaf, sub)| {
                let r = cpuid(leaf, sub);
                [leaf, sub, r.eax, r.ebx, r.ecx, r.edx]
            })
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// Names of XSAVE state components (bits of XCR0).
pub fn xsave_component_name(bit: u32) -> &'static str {
    match bit {
        0 => "x87",
        1 => "SSE",
        2 => "AVX",
        3 => "MPX bounds",
        4 => "MPX config",
        5 => "AVX-512 opmask",
        6 => "AVX-512 upper ZMM",
        7 => "AVX-512 high ZMM",
        9 => "PKRU",
        17 => "AMX tile config",
        18 => "AMX tile data",
        _ => "unnamed component",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_has_baseline_features() {
        let host = CpuFeatures::host();
        if cfg!(target_arch = "x86_64") {
            for name in ["sse2", "fxsr", "lm"] {
                assert!(
                    host.features.iter().any(|f| f == name),
                    "{name} missing from {:?}",
                    host.features
                );
            }
            assert!(host.xcr0.unwrap_or(0) & 0b11 == 0b11);
        }
    }

    #[test]
    fn decodes_named_bits() {
        let leaves = vec![[7, 0, 0, 1 << 5, 0, 0], [1, 0, 0, 0, 1 << 31, 1 << 26]];
        let f = CpuFeatures::from_leaves(CpuSource::Recording, leaves);
        assert_eq!(f.features, vec!["sse2", "avx2"]);
    }
}
