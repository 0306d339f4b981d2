//! Facts about the packing host and its CI job, for the manifest.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::secrets;

/// Host name, kernel and CPU model of a machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInfo {
    /// The host name.
    pub hostname: Option<String>,
    /// Kernel release and version (`uname -rv`).
    pub kernel: Option<String>,
    /// The CPU's model name, from /proc/cpuinfo.
    pub cpu_model: Option<String>,
}

impl HostInfo {
    /// Reads the running machine's facts (`recorder::host`, as the recorder does for
    /// header.json). Missing facts are `None`, never an error.
    pub fn current() -> HostInfo {
        let known = |s: String| (!s.is_empty()).then_some(s);
        let kernel = recorder::host::kernel_version();
        HostInfo {
            hostname: known(recorder::host::hostname()),
            kernel: known(kernel.trim().to_string()),
            cpu_model: known(recorder::host::cpu_model()),
        }
    }
}

/// The CI job an archive was made in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CiInfo {
    /// `github-actions`, `gitlab-ci`, or `unknown` when only `CI` is set.
    pub provider: String,
    /// The job's non-secret variables (see [`CI_VARIABLES`]).
    pub variables: BTreeMap<String, String>,
    /// A link to the job's page, when it can be built from the variables.
    pub job_url: Option<String>,
}

/// The CI variables copied into manifests. An allow-list: anything not named here is
/// never copied, and every name is also checked against the secrets deny-list.
pub const CI_VARIABLES: &[&str] = &[
    // GitHub Actions
    "GITHUB_ACTIONS",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_REF_NAME",
    "GITHUB_HEAD_REF",
    "GITHUB_BASE_REF",
    "GITHUB_EVENT_NAME",
    "GITHUB_WORKFLOW",
    "GITHUB_JOB",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_ACTOR",
    "RUNNER_OS",
    "RUNNER_ARCH",
    "RUNNER_NAME",
    // GitLab CI
    "GITLAB_CI",
    "CI_SERVER_URL",
    "CI_PROJECT_PATH",
    "CI_PROJECT_URL",
    "CI_COMMIT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_TAG",
    "CI_MERGE_REQUEST_IID",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "CI_JOB_ID",
    "CI_JOB_NAME",
    "CI_JOB_STAGE",
    "CI_JOB_URL",
];

impl CiInfo {
    /// The CI facts in an environment, or `None` outside CI.
    pub fn from_env<'a, I>(vars: I) -> Option<CiInfo>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut variables = BTreeMap::new();
        let mut is_ci = false;
        for (k, v) in vars {
            if k == "CI" && !v.is_empty() && v != "false" {
                is_ci = true;
            }
            if CI_VARIABLES.contains(&k) && !secrets::is_denied(k) && !v.is_empty() {
                variables.insert(k.to_string(), v.to_string());
            }
        }
        let provider = if variables.contains_key("GITHUB_ACTIONS") {
            "github-actions"
        } else if variables.contains_key("GITLAB_CI") {
            "gitlab-ci"
        } else if is_ci {
            "unknown"
        } else {
            return None;
        };
        let job_url = match provider {
            "github-actions" => match (
                variables.get("GITHUB_SERVER_URL"),
                variables.get("GITHUB_REPOSITORY"),
                variables.get("GITHUB_RUN_ID"),
            ) {
                (Some(s), Some(r), Some(id)) => Some(format!("{s}/{r}/actions/runs/{id}")),
                _ => None,
            },
            "gitlab-ci" => variables.get("CI_JOB_URL").cloned(),
            _ => None,
        };
        Some(CiInfo {
            provider: provider.to_string(),
            variables,
            job_url,
        })
    }

    /// The commit the job runs on, when the CI says.
    pub fn revision(&self) -> Option<&str> {
        self.variables
            .get("GITHUB_SHA")
            .or_else(|| self.variables.get("CI_COMMIT_SHA"))
            .map(String::as_str)
    }
}

/// `git rev-parse HEAD` in `dir`, when `dir` is inside a git work tree and git is installed.
pub fn git_revision(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return None;
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && rev.len() >= 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(rev)
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as an RFC 3339 UTC timestamp (`2026-11-25T20:48:00.123Z`).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Gregorian (year, month, day) from days since 1970-01-01: the classic era-based
/// conversion (eras of 400 years, days counted from March so leap days fall last).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
    }

    #[test]
    fn ci_metadata_is_allow_listed() {
        let env = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_SHA", "abc"),
            ("GITHUB_TOKEN", "ghp_secret"),
            ("ACTIONS_RUNTIME_TOKEN", "x"),
        ];
        let ci = CiInfo::from_env(env).unwrap();
        assert_eq!(ci.provider, "github-actions");
        assert_eq!(ci.revision(), Some("abc"));
        assert_eq!(
            ci.job_url.as_deref(),
            Some("https://github.com/o/r/actions/runs/42")
        );
        assert!(!ci.variables.contains_key("GITHUB_TOKEN"));
        assert!(!ci.variables.contains_key("ACTIONS_RUNTIME_TOKEN"));
        assert!(CiInfo::from_env([("PATH", "/bin")]).is_none());
    }
}
