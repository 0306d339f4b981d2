//! The captures a directory of archives holds, and `cargo chaos ls`, which lists them
//! (test, when, status, verified, size), like `rr ls` lists traces.
//!
//! What an archive's manifest does not say (whether the hunt replayed it before it
//! was captured, the panic) `cargo record-test` appends to `.captures.jsonl` in the
//! archives directory, one JSON object per archive: an append of one short line, so
//! hunts sharing the directory do not mix their lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

/// The index file in an archives directory.
pub const INDEX: &str = ".captures.jsonl";

/// What `cargo record-test` knew of a capture, one line of [`INDEX`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct IndexEntry {
    /// The archive's file name.
    pub archive: String,
    /// Whether the run was replayed once and matched before it was captured.
    pub verified: bool,
    /// The failing test.
    pub test: Option<String>,
    /// Where it panicked.
    pub panic_location: Option<String>,
    /// Where it was uploaded.
    pub url: Option<String>,
}

/// Appends `entry` to the index of `dir` (failures only logged: the index is a help).
pub fn append_index(dir: &Path, entry: &IndexEntry) {
    let path = dir.join(INDEX);
    let line = match serde_json::to_string(entry) {
        Ok(l) => l + "\n",
        Err(_) => return,
    };
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = r {
        tracing::warn!("writing {}: {e}", path.display());
    }
}

/// The index of `dir` by archive name (unreadable lines skipped: it is untrusted).
fn read_index(dir: &Path) -> HashMap<String, IndexEntry> {
    std::fs::read_to_string(dir.join(INDEX))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<IndexEntry>(l).ok())
        .map(|e| (e.archive.clone(), e))
        .collect()
}

/// `cargo chaos ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The archives directory [default: `<target-dir>/chaos/archives` of the cargo
    /// workspace here].
    pub dir: Option<PathBuf>,
    /// Path to Cargo.toml (to find the target directory).
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// One JSON object per capture on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One capture, as `ls` shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The archive.
    pub archive: String,
    /// The test (or the binary, or the recording's name).
    pub test: String,
    /// When it was packed (RFC 3339 UTC).
    pub created: String,
    /// How the run ended: `exit 101`, `signal 11`, `timed_out`...
    pub status: String,
    /// `yes`, `no`, or `unknown` (not captured by `cargo record-test`).
    pub verified: String,
    /// Size in bytes.
    pub size: u64,
    /// Where it panicked, when known.
    pub panic_location: Option<String>,
    /// Where it was uploaded, when known.
    pub url: Option<String>,
    /// Why its manifest could not be read (the other fields are then partial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The captures in `dir`, oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let index = read_index(dir);
    let mut out: Vec<((u64, String), Listed)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".chaos.tar.zst") {
            continue;
        }
        let path = e.path();
        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
        let known = index.get(&name);
        let verified = match known {
            Some(k) if k.verified => "yes",
            Some(_) => "no",
            None => "unknown",
        }
        .to_string();
        let (listed, created_ms) = match packer::read_manifest(&path) {
            Ok(m) => {
                let r = m.recordings.first();
                let test = r
                    .and_then(|r| r.test.test_name.clone().or_else(|| r.test.binary.clone()))
                    .or_else(|| r.map(|r| r.name.clone()))
                    .unwrap_or_default();
                let status = r
                    .map(|r| match (&r.outcome.exit_code, &r.outcome.signal) {
                        (Some(c), _) if r.outcome.kind == "exited" => format!("exit {c}"),
                        (_, Some(s)) if r.outcome.kind == "signaled" => format!("signal {s}"),
                        _ => r.outcome.kind.clone(),
                    })
                    .unwrap_or_default();
                let created = m.created.clone();
                (
                    Listed {
                        archive: path.display().to_string(),
                        test,
                        created,
                        status,
                        verified,
                        size,
                        panic_location: known.and_then(|k| k.panic_location.clone()),
                        url: known.and_then(|k| k.url.clone()),
                        error: None,
                    },
                    m.created_unix_ms,
                )
            }
            Err(err) => (
                Listed {
                    archive: path.display().to_string(),
                    test: known.and_then(|k| k.test.clone()).unwrap_or_default(),
                    created: String::new(),
                    status: String::new(),
                    verified,
                    size,
                    panic_location: None,
                    url: None,
                    error: Some(err.to_string()),
                },
                0,
            ),
        };
        out.push(((created_ms, name), listed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, l)| l).collect())
}

/// Runs `cargo chaos ls`.
pub fn run_ls(a: LsArgs) -> anyhow::Result<i32> {
    let dir = match a.dir {
        Some(d) => d,
        None => {
            let mut meta = cargo_metadata::MetadataCommand::new();
            meta.no_deps();
            if let Some(m) = &a.manifest_path {
                meta.manifest_path(m);
            }
            let md = meta.exec().context(
                "finding the target directory (`cargo metadata`); or name the archives directory",
            )?;
            md.target_directory
                .into_std_path_buf()
                .join("chaos")
                .join("archives")
        }
    };
    let listed = list(&dir)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        for l in &listed {
            let _ = writeln!(out, "{}", serde_json::to_string(l)?);
        }
        return Ok(0);
    }
    if listed.is_empty() {
        eprintln!("no captures in {}", dir.display());
        return Ok(0);
    }
    let w = listed
        .iter()
        .map(|l| l.test.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<w$}  {:<20}  {:<10}  {:<8}  {:>10}  ARCHIVE",
        "TEST", "WHEN", "STATUS", "VERIFIED", "SIZE"
    );
    for l in &listed {
        let when: String = l
            .created
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        let name = Path::new(&l.archive)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let status = l.error.as_ref().map(|_| "unreadable").unwrap_or(&l.status);
        if writeln!(
            out,
            "{:<w$}  {:<20}  {:<10}  {:<8}  {:>10}  {name}",
            l.test,
            when,
            status,
            l.verified,
            indicatif::HumanBytes(l.size).to_string()
        )
        .is_err()
        {
            break; // a closed pipe: the reader has seen enough
        }
    }
    Ok(0)
}
