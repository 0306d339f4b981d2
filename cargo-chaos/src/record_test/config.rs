//! The configuration file of `cargo record-test`: defaults per profile, as nextest's
//! `.config/nextest.toml` has them.
//!
//! Read from `.config/chaos.toml` at the cargo workspace's root, or else from
//! `[workspace.metadata.chaos]` in its Cargo.toml (both at once is refused: one would
//! be ignored). Profiles are `[profile.NAME]` tables; `-P/--profile NAME` (or
//! `CHAOS_PROFILE`) picks one, `default` otherwise. A named profile takes what it does
//! not set from `default`, and the command line overrides both.
//!
//! ```toml
//! [profile.default]
//! max-runs = 500
//! max-duration = "40m"
//!
//! [profile.ci]
//! until-fail = true
//! keep-going = true
//! upload = "s3://my-bucket/flaky/"
//! keep-env = ["DATABASE_URL"]
//! partition = "hash:1/2"
//! junit = "target/chaos/junit.xml"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::args::RecordTestArgs;

/// The file, relative to the workspace root.
pub const FILE: &str = ".config/chaos.toml";
/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// One profile's settings; every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Profile {
    /// `--until-fail`.
    pub until_fail: Option<bool>,
    /// `--max-runs`.
    pub max_runs: Option<u64>,
    /// `--max-duration` (e.g. `"40m"`).
    pub max_duration: Option<String>,
    /// `--test-timeout`.
    pub test_timeout: Option<String>,
    /// `-j/--test-threads`.
    pub test_threads: Option<u32>,
    /// `--upload`.
    pub upload: Option<String>,
    /// `--keep-env`.
    pub keep_env: Option<Vec<String>>,
    /// `--instrument`.
    pub instrument: Option<bool>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--keep-going`.
    pub keep_going: Option<bool>,
    /// `--per-test`.
    pub per_test: Option<bool>,
    /// `--junit` (relative to the workspace root).
    pub junit: Option<PathBuf>,
}

impl Profile {
    /// `self`, with what it leaves unset taken from `base`.
    fn over(self, base: &Profile) -> Profile {
        let b = base.clone();
        Profile {
            until_fail: self.until_fail.or(b.until_fail),
            max_runs: self.max_runs.or(b.max_runs),
            max_duration: self.max_duration.or(b.max_duration),
            test_timeout: self.test_timeout.or(b.test_timeout),
            test_threads: self.test_threads.or(b.test_threads),
            upload: self.upload.or(b.upload),
            keep_env: self.keep_env.or(b.keep_env),
            instrument: self.instrument.or(b.instrument),
            partition: self.partition.or(b.partition),
            keep_going: self.keep_going.or(b.keep_going),
            per_test: self.per_test.or(b.per_test),
            junit: self.junit.or(b.junit),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
}

/// Where the configuration came from, for messages.
fn load(
    workspace_root: &Path,
    metadata: &serde_json::Value,
) -> anyhow::Result<Option<(Config, String)>> {
    let file = workspace_root.join(FILE);
    let in_manifest = metadata.get("chaos").filter(|v| !v.is_null());
    match (file.is_file(), in_manifest) {
        (true, Some(_)) => bail!(
            "both {} and [workspace.metadata.chaos] in Cargo.toml configure cargo record-test: keep one",
            file.display()
        ),
        (true, None) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let c: Config =
                toml::from_str(&text).with_context(|| format!("in {}", file.display()))?;
            Ok(Some((c, file.display().to_string())))
        }
        (false, Some(v)) => {
            let c: Config = serde_json::from_value(v.clone())
                .context("in [workspace.metadata.chaos] of Cargo.toml")?;
            Ok(Some((c, "[workspace.metadata.chaos] in Cargo.toml".into())))
        }
        (false, None) => Ok(None),
    }
}

/// The profile `name` (or `CHAOS_PROFILE`, or `default`) of the workspace's
/// configuration, merged over `default`. No configuration: an empty profile, unless a
/// profile other than `default` was asked for.
pub fn profile(
    workspace_root: &Path,
    metadata: &serde_json::Value,
    name: Option<&str>,
) -> anyhow::Result<Profile> {
    let env_name = std::env::var("CHAOS_PROFILE")
        .ok()
        .filter(|n| !n.is_empty());
    let name = name
        .map(str::to_string)
        .or(env_name)
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    let Some((config, source)) = load(workspace_root, metadata)? else {
        if name != DEFAULT_PROFILE {
            bail!(
                "profile `{name}` asked for, but there is no {} (or [workspace.metadata.chaos]) in {}",
                FILE,
                workspace_root.display()
            );
        }
        return Ok(Profile::default());
    };
    let base = config
        .profile
        .get(DEFAULT_PROFILE)
        .cloned()
        .unwrap_or_default();
    if name == DEFAULT_PROFILE {
        return Ok(base);
    }
    match config.profile.get(&name) {
        Some(p) => Ok(p.clone().over(&base)),
        None => bail!(
            "no profile `{name}` in {source} (it has: {})",
            config
                .profile
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Fills what the command line left unset in `a` from `p`; relative paths are taken
/// from `workspace_root`.
pub fn apply(a: &mut RecordTestArgs, p: &Profile, workspace_root: &Path) -> anyhow::Result<()> {
    let bad = |key: &str, e: String| anyhow::anyhow!("{key} in the configuration: {e}");
    a.until_fail |= p.until_fail.unwrap_or(false);
    a.keep_going |= p.keep_going.unwrap_or(false);
    a.per_test |= p.per_test.unwrap_or(false);
    a.cargo.instrument |= p.instrument.unwrap_or(false);
    if a.max_runs.is_none() {
        if p.max_runs == Some(0) {
            bail!(bad(
                "max-runs",
                "0 would do nothing: give at least 1".into()
            ));
        }
        a.max_runs = p.max_runs;
    }
    if a.jobs.is_none() {
        if p.test_threads == Some(0) {
            bail!(bad(
                "test-threads",
                "0 would do nothing: give at least 1".into()
            ));
        }
        a.jobs = p.test_threads;
    }
    if a.max_duration.is_none() {
        if let Some(d) = &p.max_duration {
            a.max_duration =
                Some(crate::duration::parse_nonzero(d).map_err(|e| bad("max-duration", e))?);
        }
    }
    if a.test_timeout.is_none() {
        if let Some(d) = &p.test_timeout {
            a.test_timeout =
                Some(crate::duration::parse_nonzero(d).map_err(|e| bad("test-timeout", e))?);
        }
    }
    if a.partition.is_none() {
        if let Some(s) = &p.partition {
            a.partition = Some(s.parse().map_err(|e| bad("partition", e))?);
        }
    }
    if a.upload.is_none() {
        a.upload = p.upload.clone();
    }
    if a.keep_env.is_empty() {
        a.keep_env = p.keep_env.clone().unwrap_or_default();
    }
    if a.junit.is_none() {
        a.junit = p.junit.as_ref().map(|j| workspace_root.join(j));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_profiles_fall_back_to_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".config")).unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "[profile.default]\nmax-runs = 5\nupload = \"/a\"\n[profile.ci]\nupload = \"/b\"\nkeep-going = true\n",
        )
        .unwrap();
        let none = serde_json::Value::Null;
        let p = profile(dir.path(), &none, Some("ci")).unwrap();
        assert_eq!(p.max_runs, Some(5));
        assert_eq!(p.upload.as_deref(), Some("/b"));
        assert_eq!(p.keep_going, Some(true));
        let d = profile(dir.path(), &none, None).unwrap();
        assert_eq!(d.upload.as_deref(), Some("/a"));
        assert_eq!(d.keep_going, None);
        let e = profile(dir.path(), &none, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no profile `nope`") && e.contains("ci, default"),
            "{e}"
        );

        std::fs::write(dir.path().join(FILE), "[profile.default]\nmax-run = 5\n").unwrap();
        let e = format!("{:#}", profile(dir.path(), &none, None).unwrap_err());
        assert!(e.contains("max-run"), "{e}");
    }
}
