//! Can this machine replay that archive? Answered before replay, in plain words.
//!
//! Three things make a replay fail on another machine, each checked here:
//!
//! 1. **CPU features.** The recorded program chose its code paths from CPUID (glibc's
//!    string functions, `is_x86_feature_detected!`). Every instruction-set feature the
//!    recording could observe must exist here, or the replay dies of SIGILL where the
//!    recording ran fine. The XSAVE state components (XCR0) must be enabled here too.
//! 2. **CPUID faulting.** To hand the program the *recorded* CPUID answers, replay makes
//!    CPUID trap (`arch_prctl(ARCH_SET_CPUID, 0)`). Some hypervisors do not offer it.
//! 3. **Format version.** An archive written by a newer cargo-chaos may not be readable.

use std::fmt;

use crate::cpu::{self, CpuSource, CpuidLeaf, FEATURES};
use crate::manifest::{Manifest, FORMAT_VERSION};

/// What kind of obstacle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncompatibilityKind {
    /// The archive's format is newer than this build reads.
    NewerFormat {
        /// The archive's format version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// Instruction-set features the recording could use are missing here.
    MissingCpuFeatures {
        /// Their names.
        features: Vec<String>,
    },
    /// XSAVE state components enabled at record time are not enabled here.
    MissingXsaveComponents {
        /// Their names.
        components: Vec<String>,
    },
    /// The recording needs CPUID faulting, which this machine does not offer.
    NoCpuidFaulting,
}

/// One reason this machine may not replay an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The recording concerned, when it is about one.
    pub recording: Option<String>,
    /// What kind of obstacle.
    pub kind: IncompatibilityKind,
    /// A sentence for people.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What this machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCapabilities {
    /// This CPU's CPUID answers.
    pub cpuid_leaves: Vec<CpuidLeaf>,
    /// Whether CPUID faulting works.
    pub cpuid_faulting: bool,
}

impl HostCapabilities {
    /// Probes the running machine (forks once to test CPUID faulting).
    pub fn detect() -> HostCapabilities {
        HostCapabilities {
            cpuid_leaves: cpu::host_leaves(),
            cpuid_faulting: recorder::arch::cpuid_faulting_available(),
        }
    }
}

/// Checks an archive against this machine. An empty result means nothing known stands
/// in the way.
pub fn check(manifest: &Manifest) -> Vec<Incompatibility> {
    check_against(manifest, &HostCapabilities::detect())
}

/// Checks an archive against a given machine description.
pub fn check_against(manifest: &Manifest, host: &HostCapabilities) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    if manifest.format_version > FORMAT_VERSION {
        out.push(Incompatibility {
            recording: None,
            kind: IncompatibilityKind::NewerFormat {
                found: manifest.format_version,
                supported: FORMAT_VERSION,
            },
            message: format!(
                "the archive uses format {}, but this cargo-chaos reads formats up to {}; \
                 install a newer cargo-chaos",
                manifest.format_version, FORMAT_VERSION
            ),
        });
    }
    let host_xcr0 =
        cpu::lookup(&host.cpuid_leaves, 0xd, 0).map(|l| u64::from(l[2]) | (u64::from(l[5]) << 32));
    for rec in &manifest.recordings {
        let leaves = &rec.cpu.cpuid_leaves;
        let missing: Vec<String> = FEATURES
            .iter()
            .filter(|fb| {
                cpu::bit_set(leaves, fb) == Some(true)
                    && cpu::bit_set(&host.cpuid_leaves, fb) != Some(true)
            })
            .map(|fb| fb.name.to_string())
            .collect();
        if !missing.is_empty() {
            let certainty = match rec.cpu.source {
                CpuSource::Recording => "could use",
                CpuSource::PackingHost => {
                    "may have used (the recording did not say, \
                                           so this is the packing machine's CPU)"
                }
            };
            out.push(Incompatibility {
                recording: Some(rec.name.clone()),
                message: format!(
                    "recording {}: this CPU lacks {} that the recorded program {certainty}; \
                     replay would likely die of an illegal instruction: replay on a machine \
                     with these features, or record with them masked",
                    rec.name,
                    missing.join(", "),
                ),
                kind: IncompatibilityKind::MissingCpuFeatures { features: missing },
            });
        }
        if let (Some(rec_xcr0), Some(host_xcr0)) = (rec.cpu.xcr0, host_xcr0) {
            let lacking = rec_xcr0 & !host_xcr0;
            if lacking != 0 {
                let components: Vec<String> = (0..64)
                    .filter(|b| lacking & (1 << b) != 0)
                    .map(|b| cpu::xsave_component_name(b).to_string())
                    .collect();
                out.push(Incompatibility {
                    recording: Some(rec.name.clone()),
                    message: format!(
                        "recording {}: the recording machine saved register state that this \
                         machine does not enable ({}); replay could not restore it",
                        rec.name,
                        components.join(", ")
                    ),
                    kind: IncompatibilityKind::MissingXsaveComponents { components },
                });
            }
        }
        if rec.needs_cpuid_faulting && !host.cpuid_faulting {
            out.push(Incompatibility {
                recording: Some(rec.name.clone()),
                kind: IncompatibilityKind::NoCpuidFaulting,
                message: format!(
                    "recording {}: replay must hand the program the recorded CPUID answers, \
                     but this machine does not offer CPUID faulting (arch_prctl \
                     ARCH_SET_CPUID fails; common under some hypervisors): replay on another \
                     machine or VM type",
                    rec.name
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuFeatures;
    use crate::manifest::Recording;

    fn manifest_with(leaves: Vec<CpuidLeaf>, faulting: bool) -> Manifest {
        Manifest {
            recordings: vec![Recording {
                name: "r".into(),
                cpu: CpuFeatures::from_leaves(CpuSource::Recording, leaves),
                needs_cpuid_faulting: faulting,
                ..Recording::default()
            }],
            ..Manifest::default()
        }
    }

    #[test]
    fn reports_missing_features_in_words() {
        let m = manifest_with(vec![[7, 0, 0, (1 << 5) | (1 << 16), 0, 0]], true);
        let host = HostCapabilities {
            cpuid_leaves: vec![[7, 0, 0, 1 << 5, 0, 0]],
            cpuid_faulting: false,
        };
        let found = check_against(&m, &host);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].kind,
            IncompatibilityKind::MissingCpuFeatures {
                features: vec!["avx512f".into()]
            }
        );
        assert!(found[0].message.contains("lacks avx512f"));
        assert_eq!(found[1].kind, IncompatibilityKind::NoCpuidFaulting);
    }

    #[test]
    fn same_cpu_is_compatible_and_newer_format_is_not() {
        let host = HostCapabilities {
            cpuid_leaves: cpu::host_leaves(),
            cpuid_faulting: true,
        };
        let mut m = manifest_with(host.cpuid_leaves.clone(), true);
        assert!(check_against(&m, &host).is_empty());
        m.format_version = FORMAT_VERSION + 1;
        let found = check_against(&m, &host);
        assert!(matches!(
            found[0].kind,
            IncompatibilityKind::NewerFormat { .. }
        ));
        assert!(found[0].message.contains("newer cargo-chaos"));
    }

    #[test]
    fn hypervisor_bit_is_not_a_feature() {
        // Leaf 1 ECX bit 31 (hypervisor) set at record time only.
        let m = manifest_with(vec![[1, 0, 0, 0, 1 << 31, 1 << 26]], false);
        let host = HostCapabilities {
            cpuid_leaves: vec![[1, 0, 0, 0, 0, 1 << 26]],
            cpuid_faulting: false,
        };
        assert!(check_against(&m, &host).is_empty());
    }
}
