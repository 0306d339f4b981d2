//! The archive manifest: `chaos-manifest.json`, the first member of every archive.
//!
//! It says what the archive holds (every member with its size and BLAKE3 hash), where
//! and how the recordings were made, and how they ended, so that a person or a CI page can
//! read a failure without unpacking anything, and so that [`compat`](crate::compat) can
//! tell whether this machine can replay it. See `docs/archive-format.md` for the
//! field-by-field description.
//!
//! # Versioning
//!
//! `format_version` is bumped when a reader of the previous version would misread an
//! archive (a layout change, a member whose meaning changes). Adding fields does not bump
//! it: every struct here is `#[serde(default)]` and ignores unknown fields, so older
//! readers skip what they do not know and newer readers fill in what older writers did
//! not write. Readers refuse archives whose `format_version` is greater than
//! [`FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

use crate::cpu::CpuFeatures;
use crate::sysinfo::{CiInfo, HostInfo};

/// The archive format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The value of [`Manifest::format`].
pub const FORMAT_NAME: &str = "cargo-chaos-archive";

/// The manifest's member name.
pub const MANIFEST_NAME: &str = "chaos-manifest.json";

/// Directory of the content-addressed file store inside an archive.
pub const FILES_DIR: &str = "files";

/// Directory holding each recording's own files inside an archive.
pub const RECORDINGS_DIR: &str = "recordings";

/// Everything an archive says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// See the module docs.
    pub format_version: u32,
    /// The program that wrote the archive.
    pub tool: ToolInfo,
    /// When the archive was written, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The same instant as RFC 3339 UTC, for people.
    pub created: String,
    /// The machine that packed the archive.
    pub packed_on: HostInfo,
    /// The source revision, when known (caller, CI variables, or `git rev-parse HEAD`).
    pub git_revision: Option<String>,
    /// The CI job, when packed in one.
    pub ci: Option<CiInfo>,
    /// The recordings, in the order given to `pack`.
    pub recordings: Vec<Recording>,
    /// Every member but the manifest, sorted by path.
    pub members: Vec<Member>,
    /// Credentials of well-known shapes found in the members when packing (see
    /// [`crate::secrets::tokens`]): where and what kind, never the value. An archive that
    /// lists any is kept local unless the user allows its upload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenFinding>,
}

/// A credential found in an archive's member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenFinding {
    /// The member (`files/<hash>`, `recordings/NAME/events`, ...). In `events` the
    /// credential is in data a system call gave the program (a `read` of a file), or in
    /// the memory of a program image.
    pub member: String,
    /// What kind of credential.
    pub kind: crate::secrets::tokens::TokenKind,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            tool: ToolInfo::default(),
            created_unix_ms: 0,
            created: String::new(),
            packed_on: HostInfo::default(),
            git_revision: None,
            ci: None,
            recordings: Vec::new(),
            members: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

/// Name and version of a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: "cargo-chaos".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// One archive member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Its path inside the archive, `/`-separated, relative.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its content, 64 lowercase hex digits.
    pub blake3: String,
}

/// Which test a recording ran, when the caller knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TestIdentity {
    /// The cargo package.
    pub package: Option<String>,
    /// The test binary (target name, e.g. `integration`), or its path.
    pub binary: Option<String>,
    /// The test's full name (`module::test_name`).
    pub test_name: Option<String>,
}

impl TestIdentity {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.package.is_none() && self.binary.is_none() && self.test_name.is_none()
    }
}

/// How a recorded run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    /// `exited`, `signaled`, `interrupted`, `timed_out`, `recorder_error` (from result.json),
    /// or `incomplete` when result.json is missing (the recorder was killed).
    pub kind: String,
    /// The exit code, when the program exited.
    pub exit_code: Option<i64>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i64>,
    /// What `cargo chaos record` exited with.
    pub status: Option<i64>,
    /// Number of recorded events, when known.
    pub events: Option<u64>,
    /// The recorder's message, when it left one.
    pub message: Option<String>,
}

/// Captured program output, as much as the manifest keeps of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapturedOutput {
    /// The size of the complete output (the full text is the member `recordings/NAME/stdout`
    /// or `stderr`).
    pub size: u64,
    /// The text (invalid UTF-8 replaced), cut in the middle when longer than the cap.
    pub text: String,
    /// Whether `text` was cut.
    pub truncated: bool,
}

/// One recording in the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recording {
    /// Its directory under `recordings/`, and its name when unpacked next to others.
    pub name: String,
    /// The test it ran, when the caller said.
    pub test: TestIdentity,
    /// `format_version` from the recording's header.json.
    pub trace_format_version: Option<u64>,
    /// The recorder's version.
    pub recorder_version: Option<String>,
    /// The machine it was recorded on (from header.json).
    pub recorded_on: HostInfo,
    /// The CPU features the recorded code could observe.
    pub cpu: CpuFeatures,
    /// Whether replay must intercept CPUID (CPUID faulting): true when the recorder
    /// recorded CPUID answers.
    pub needs_cpuid_faulting: bool,
    /// The command line.
    pub argv: Vec<String>,
    /// The program path.
    pub exe: Option<String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// The environment as the program saw it (secrets already removed by the recorder).
    pub env: Vec<(String, String)>,
    /// Names of the variables removed before the program started (never their values).
    pub removed_env: Vec<String>,
    /// The recorder's seed (chaos scheduling), when any.
    pub seed: Option<u64>,
    /// When recording started, milliseconds since the Unix epoch.
    pub started_unix_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its standard output.
    pub stdout: CapturedOutput,
    /// Its standard error.
    pub stderr: CapturedOutput,
    /// Hashes of the `files/` members this recording uses.
    pub files: Vec<String>,
}

impl Recording {
    /// The archive path prefix of this recording's own members (`recordings/NAME/`).
    pub fn member_prefix(&self) -> String {
        format!("{RECORDINGS_DIR}/{}/", self.name)
    }

    /// A one-line description: test name or command line, and how it ended.
    pub fn summary(&self) -> String {
        let what = self
            .test
            .test_name
            .clone()
            .unwrap_or_else(|| self.argv.join(" "));
        let how = match (
            self.outcome.kind.as_str(),
            self.outcome.exit_code,
            self.outcome.signal,
        ) {
            ("exited", Some(code), _) => format!("exited with {code}"),
            ("signaled", _, Some(sig)) => format!("killed by signal {sig}"),
            ("incomplete", _, _) => "recording incomplete (recorder was killed)".to_string(),
            (kind, _, _) => kind.replace('_', " "),
        };
        format!("{what}: {how}")
    }
}

impl Manifest {
    /// Parses a manifest, leniently (unknown fields ignored, missing ones defaulted).
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Serializes a manifest (pretty-printed: people read it).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Looks a member up by path.
    pub fn member(&self, path: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.members[i])
    }

    /// Total size of all members (saturating: an unverified manifest may list any sizes).
    pub fn total_size(&self) -> u64 {
        self.members
            .iter()
            .fold(0u64, |total, m| total.saturating_add(m.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: `cargo chaos inspect` sums the sizes of a manifest read before
    /// any validation; sizes that overflow a u64 panicked (debug builds) or wrapped.
    #[test]
    fn total_size_of_absurd_sizes_saturates() {
        let member = |size| Member {
            path: "files/x".into(),
            size,
            blake3: String::new(),
        };
        let m = Manifest {
            members: vec![member(u64::MAX), member(1)],
            ..Manifest::default()
        };
        assert_eq!(m.total_size(), u64::MAX);
    }
}
