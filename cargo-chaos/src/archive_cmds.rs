//! `cargo chaos pack | unpack | upload | download | inspect`, and [`resolve_trace`], which
//! turns whatever a user hands to `replay` (a recording directory, an archive, a URL)
//! into a recording directory.
//!
//! Glue only: the work is done by the `packer` crate. This module parses arguments,
//! renders `packer`'s progress events (indicatif bars on a terminal, plain lines in CI or
//! when stderr is not a terminal), prints results, and maps failures to exit codes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use packer::compat::{self, Incompatibility};
use packer::manifest::{Manifest, TestIdentity};
use packer::transport::{self, TransportOptions};
use packer::{Phase, ProgressEvent};

use crate::exit_codes;

/// `cargo chaos pack`: pack recordings into one archive.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// Recording directories. Several go into one archive; files they share are stored once.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// A directory to write `NAME-<hash>.chaos.tar.zst` into, or a file name
    /// [default: the current directory].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The archive name's stem [default: the test name or the recording's directory name].
    #[arg(long)]
    pub name: Option<String>,
    /// The cargo package of the recorded test (goes into the manifest).
    #[arg(long)]
    pub package: Option<String>,
    /// The test binary of the recorded test.
    #[arg(long)]
    pub binary: Option<String>,
    /// The recorded test's name.
    #[arg(long = "test", value_name = "NAME")]
    pub test_name: Option<String>,
    /// zstd level, 1 to 22 [default: 6 for one recording, 10 for several].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: Option<i32>,
    /// Accept a recording whose environment holds this variable although it looks like a
    /// secret, as `record --keep-env NAME` let it through (repeatable).
    #[arg(long = "keep-env", alias = "allow-env", value_name = "NAME")]
    pub allow_env: Vec<String>,
    /// Also upload the archive here (see `cargo chaos upload`).
    #[arg(long, value_name = "LOCATION")]
    pub upload: Option<String>,
    /// Upload the archive even if it holds credentials of a well-known shape (a GitHub
    /// or AWS token the program read...).
    #[arg(long)]
    pub allow_secrets: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `cargo chaos unpack`: unpack and verify an archive.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The archive (`NAME-<hash>.chaos.tar.zst`).
    pub archive: PathBuf,
    /// A new or empty directory [default: ./NAME, from the archive's name].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Accept archives that unpack to up to SIZE in all, and members up to SIZE each
    /// (e.g. `8GiB`) [default: 4 GiB in all, 1 GiB a member].
    #[arg(long, alias = "max-size", value_name = "SIZE", value_parser = crate::sizes::parse)]
    pub max_unpacked_size: Option<u64>,
}

/// `cargo chaos upload`: put an archive where CI keeps artifacts.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The archive.
    pub archive: PathBuf,
    /// Where: a directory or `file://` URL, an `http(s)://` URL (presigned, or WebDAV; a
    /// header from $CHAOS_UPLOAD_HEADER is added), or `s3://bucket/key` (AWS_* variables).
    /// A location ending in `/` gets the archive's file name appended.
    pub location: String,
    /// Upload the archive even if its manifest lists credentials found when it was packed.
    #[arg(long)]
    pub allow_secrets: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `cargo chaos download`: fetch and verify an archive.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// A URL, `s3://bucket/key`, or GitHub Actions artifact URL ($GITHUB_TOKEN).
    pub location: String,
    /// The directory to save it in [default: the current directory].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `cargo chaos inspect`: what an archive holds, and whether this machine can replay it.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An archive, a URL, or an unpacked archive's directory.
    pub archive: String,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Accept an archive that unpacks to up to SIZE in all, and members up to SIZE each
    /// (e.g. `8GiB`) [default: 4 GiB in all, 1 GiB a member].
    #[arg(long, value_name = "SIZE", value_parser = crate::sizes::parse)]
    pub max_unpacked_size: Option<u64>,
}

/// Whether to draw progress bars: only on a terminal and outside CI.
fn fancy() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Renders `packer` progress events on stderr.
pub struct ProgressRenderer {
    fancy: bool,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
    started: Instant,
    next_plain_percent: u64,
}

impl Default for ProgressRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressRenderer {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        ProgressRenderer {
            fancy: fancy(),
            bar: None,
            phase: None,
            started: Instant::now(),
            next_plain_percent: 0,
        }
    }

    /// A status line, cargo style: the word right-aligned in 12 columns.
    fn status(&self, word: &str, rest: &str) {
        let line = format!("{word:>12} {rest}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn start(&mut self, phase: Phase, total: Option<u64>) {
        self.end_bar();
        self.phase = Some(phase);
        self.started = Instant::now();
        self.next_plain_percent = 25;
        if self.fancy {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
            } else {
                "{prefix:>12.cyan.bold} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(phase.verb());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
    }

    fn end_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Handles one event.
    pub fn event(&mut self, e: &ProgressEvent) {
        match e {
            ProgressEvent::Bytes { phase, done, total } => {
                if self.phase != Some(*phase) {
                    self.start(*phase, *total);
                }
                if let Some(bar) = &self.bar {
                    bar.set_position(*done);
                } else if let Some(t) = total.filter(|t| *t > 64 << 20) {
                    // Plain mode: a line at each quarter of large transfers only.
                    let pct = done * 100 / t.max(1);
                    if pct >= self.next_plain_percent && pct < 100 {
                        self.status(
                            phase.verb(),
                            &format!("{pct}% ({} of {})", HumanBytes(*done), HumanBytes(t)),
                        );
                        self.next_plain_percent = (pct / 25 + 1) * 25;
                    }
                }
            }
            ProgressEvent::Retrying {
                attempt,
                delay,
                reason,
                ..
            } => {
                self.status(
                    "Retrying",
                    &format!("after attempt {attempt} failed, in {delay:.1?}: {reason}"),
                );
            }
            ProgressEvent::Finished { phase, bytes } => {
                let secs = self.started.elapsed().as_secs_f64();
                self.end_bar();
                self.phase = None;
                if *phase != Phase::Hashing {
                    self.status(
                        phase.verb(),
                        &format!("{} in {secs:.1}s", HumanBytes(*bytes)),
                    );
                }
            }
            _ => {}
        }
    }

    /// Clears any bar still drawn.
    pub fn finish(&mut self) {
        self.end_bar();
    }
}

/// Runs `f` with a renderer's callback.
fn with_progress<T>(f: impl FnOnce(&mut dyn FnMut(&ProgressEvent)) -> T) -> T {
    let mut r = ProgressRenderer::new();
    let out = f(&mut |e: &ProgressEvent| r.event(e));
    r.finish();
    out
}

/// In GitHub Actions, records the archive (and its URL) in `$GITHUB_OUTPUT` and a replay
/// command in `$GITHUB_STEP_SUMMARY`. Does nothing elsewhere; failures are ignored (a
/// summary is not worth failing a job for).
pub fn report_to_github(archive: &Path, url: Option<&str>) {
    if std::env::var_os("GITHUB_ACTIONS").is_none() {
        return;
    }
    let append = |var: &str, text: &str| {
        if let Some(path) = std::env::var_os(var) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                let _ = f.write_all(text.as_bytes());
            }
        }
    };
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut outputs = format!("archive={}\n", archive.display());
    if let Some(u) = url {
        outputs.push_str(&format!("archive_url={u}\n"));
    }
    append("GITHUB_OUTPUT", &outputs);
    let target = url
        .map(str::to_string)
        .unwrap_or_else(|| format!("<artifact URL or downloaded {name}>"));
    append(
        "GITHUB_STEP_SUMMARY",
        &format!(
            "### cargo-chaos captured a failing run\n\nArchive: `{name}`\n\n\
             Replay it on any Linux x86_64 machine:\n\n```\ncargo replay-artifact {target}\n```\n"
        ),
    );
}

/// Prints a library error the way the binaries do and returns the exit code for it.
fn fail(e: impl Into<anyhow::Error>, code: i32) -> i32 {
    eprintln!("error: {:#}", e.into());
    code
}

/// `cargo chaos pack`.
pub fn run_pack(args: PackArgs) -> anyhow::Result<i32> {
    crate::signals::remove_partial_files_on_signal();
    let out = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut opts = packer::PackOptions::default();
    opts.name = args.name.clone();
    opts.level = args.level;
    opts.allow_env = args.allow_env.clone();
    let test = TestIdentity {
        package: args.package.clone(),
        binary: args.binary.clone(),
        test_name: args.test_name.clone(),
    };
    let inputs: Vec<packer::PackInput> = args
        .traces
        .iter()
        .map(|t| packer::PackInput {
            trace: t.clone(),
            test: test.clone(),
        })
        .collect();
    let packed = match with_progress(|p| packer::pack_many(&inputs, &out, &opts, p)) {
        Ok(p) => p,
        Err(e) => return Ok(fail(e, exit_codes::TOOL_ERROR)),
    };
    let ratio = packed.content_size as f64 / packed.size.max(1) as f64;
    eprintln!(
        "{:>12} {} ({}, {} recording{}, {} files, {:.1}x)",
        "Wrote",
        packed.path.display(),
        HumanBytes(packed.size),
        packed.manifest.recordings.len(),
        if packed.manifest.recordings.len() == 1 {
            ""
        } else {
            "s"
        },
        packed.manifest.members.len(),
        ratio
    );
    let credentials = crate::credentials::describe(
        (args.traces.len() == 1).then(|| args.traces[0].as_path()),
        &packed.manifest.tokens,
    );
    let mut url = None;
    if !credentials.is_empty() && (args.upload.is_none() || args.allow_secrets) {
        eprintln!(
            "warning: {} holds credentials{}:",
            packed.path.display(),
            if args.upload.is_some() {
                ", uploaded as allowed by --allow-secrets"
            } else {
                " (an upload will need --allow-secrets)"
            }
        );
        for l in &credentials {
            eprintln!("  - {l}");
        }
    } else if !credentials.is_empty() {
        crate::credentials::print_held(&packed.path, &credentials);
        return Ok(exit_codes::TOOL_ERROR);
    }
    if let Some(location) = &args.upload {
        let topts = TransportOptions::from_env()?;
        match with_progress(|p| transport::upload(&packed.path, location, &topts, p)) {
            Ok(up) => {
                eprintln!("{:>12} {}", "Uploaded", up.display);
                eprintln!("{:>12} cargo replay-artifact {}", "Replay", up.display);
                url = Some(up.location);
            }
            Err(e) => {
                report_to_github(&packed.path, None);
                return Ok(fail(e, exit_codes::TOOL_ERROR));
            }
        }
    }
    report_to_github(&packed.path, url.as_deref());
    if args.json {
        let v = serde_json::json!({
            "path": packed.path,
            "hash": packed.hash,
            "size": packed.size,
            "content_size": packed.content_size,
            "url": url,
        });
        println!("{v}");
    }
    Ok(exit_codes::OK)
}

/// `cargo chaos unpack`.
pub fn run_unpack(args: UnpackArgs) -> anyhow::Result<i32> {
    let dest = match &args.output {
        Some(d) => d.clone(),
        None => {
            let name = args
                .archive
                .file_name()
                .and_then(|n| n.to_str())
                .context("the archive path has no file name")?;
            PathBuf::from(packer::hash::stem_of_file_name(name))
        }
    };
    let limits = crate::sizes::unpack_limits(args.max_unpacked_size);
    let unpacked = match with_progress(|p| packer::unpack(&args.archive, &dest, &limits, p)) {
        Ok(u) => u,
        Err(e) => return Ok(fail(e, exit_codes::REPLAY_FAILED)),
    };
    for t in &unpacked.traces {
        eprintln!("{:>12} {} -> {}", "Unpacked", t.name, t.path.display());
    }
    warn_incompatibilities(&compat::check(&unpacked.manifest));
    Ok(exit_codes::OK)
}

/// `cargo chaos upload`.
pub fn run_upload(args: UploadArgs) -> anyhow::Result<i32> {
    crate::signals::remove_partial_files_on_signal();
    if !args.allow_secrets {
        let manifest = match packer::read_manifest(&args.archive) {
            Ok(m) => m,
            Err(e) => return Ok(fail(e, exit_codes::TOOL_ERROR)),
        };
        if !manifest.tokens.is_empty() {
            let lines = crate::credentials::describe(None, &manifest.tokens);
            crate::credentials::print_held(&args.archive, &lines);
            return Ok(exit_codes::TOOL_ERROR);
        }
    }
    let topts = TransportOptions::from_env()?;
    match with_progress(|p| transport::upload(&args.archive, &args.location, &topts, p)) {
        Ok(up) => {
            eprintln!(
                "{:>12} {} ({})",
                "Uploaded",
                up.display,
                HumanBytes(up.size)
            );
            eprintln!("{:>12} cargo replay-artifact {}", "Replay", up.display);
            report_to_github(&args.archive, Some(&up.location));
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"location": up.location, "size": up.size})
                );
            }
            Ok(exit_codes::OK)
        }
        Err(e) => Ok(fail(e, exit_codes::TOOL_ERROR)),
    }
}

/// `cargo chaos download`.
pub fn run_download(args: DownloadArgs) -> anyhow::Result<i32> {
    crate::signals::remove_partial_files_on_signal();
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let topts = TransportOptions::from_env()?;
    match with_progress(|p| transport::download(&args.location, &dir, &topts, p)) {
        Ok(d) => {
            let how = if d.verified_by_name {
                "verified against its name"
            } else {
                "its name carried no hash; members are verified when unpacked"
            };
            eprintln!("{:>12} {} ({how})", "Downloaded", d.path.display());
            Ok(exit_codes::OK)
        }
        Err(e) => Ok(fail(e, exit_codes::TOOL_ERROR)),
    }
}

/// `cargo chaos inspect`: exits 0 when this machine can replay the archive, 125 when the
/// archive is damaged (it is read in full and every hash checked first) or something
/// stands in the way.
pub fn run_inspect(args: InspectArgs) -> anyhow::Result<i32> {
    let limits = crate::sizes::unpack_limits(args.max_unpacked_size);
    let (manifest, damage) = match inspect_manifest(&args.archive, &limits) {
        Ok(found) => found,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "damage": format!("{e:#}")})
                );
            }
            eprintln!("error: {} cannot be replayed: {e:#}", args.archive);
            return Ok(exit_codes::REPLAY_FAILED);
        }
    };
    let problems = match &damage {
        None => compat::check(&manifest),
        Some(_) => Vec::new(),
    };
    if args.json {
        let mut v = serde_json::to_value(&manifest)?;
        v["verified"] = serde_json::json!(damage.is_none());
        v["damage"] = serde_json::json!(damage.as_ref().map(|e| format!("{e:#}")));
        v["compatibility"] = serde_json::json!(problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>());
        println!("{v}");
    } else {
        print_summary(&manifest);
        if let Some(e) = &damage {
            println!("\n{} (see the error below).", damage_verdict(e));
        } else if problems.is_empty() {
            println!("This machine can replay it (archive verified; no known obstacle).");
        } else {
            println!("This machine may not replay it:");
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    if let Some(e) = &damage {
        eprintln!("error: {e}");
    }
    Ok(if damage.is_none() && problems.is_empty() {
        exit_codes::OK
    } else {
        exit_codes::REPLAY_FAILED
    })
}

/// What `inspect` says of an archive that failed verification.
fn damage_verdict(e: &packer::UnpackError) -> &'static str {
    match e {
        packer::UnpackError::LimitExceeded { .. } => {
            "This archive is larger than the unpack limits: it cannot be replayed without \
             --max-unpacked-size"
        }
        packer::UnpackError::Io { .. } => "This archive cannot be read: it cannot be replayed",
        _ => "This archive is damaged: it cannot be replayed",
    }
}

/// The manifest of what `inspect` was given, and why the archive cannot be used if it
/// is damaged. A local archive is read in full and verified ([`packer::verify`]); a URL
/// is downloaded and unpacked into the cache (which verifies it); an unpacked directory
/// was verified when it was unpacked. `Err` when not even the manifest can be read.
fn inspect_manifest(
    what: &str,
    limits: &packer::UnpackLimits,
) -> anyhow::Result<(Manifest, Option<packer::UnpackError>)> {
    let path = Path::new(what);
    if !what.contains("://") && path.is_dir() {
        let bytes =
            std::fs::read(path.join(packer::manifest::MANIFEST_NAME)).with_context(|| {
                format!("{what} is not an unpacked archive (no chaos-manifest.json)")
            })?;
        return Ok((Manifest::from_json(&bytes)?, None));
    }
    if !what.contains("://") || what.starts_with("file://") {
        let local = transport::impls::local::Local::new(what)?;
        let archive = local.path();
        return match with_progress(|p| packer::verify(archive, limits, p)) {
            Ok(m) => Ok((m, None)),
            Err(damage) => match packer::read_manifest(archive) {
                Ok(m) => Ok((m, Some(damage))),
                Err(_) => Err(damage.into()),
            },
        };
    }
    let resolved = resolve(what, limits)?;
    Ok((resolved.manifest.expect("archives have manifests"), None))
}

fn print_summary(m: &Manifest) {
    println!(
        "Archive format {} written by {} {} on {} ({})",
        m.format_version,
        m.tool.name,
        m.tool.version,
        m.packed_on.hostname.as_deref().unwrap_or("?"),
        m.created
    );
    if let Some(rev) = &m.git_revision {
        println!("Revision: {rev}");
    }
    if let Some(ci) = &m.ci {
        println!(
            "CI: {}{}",
            ci.provider,
            ci.job_url
                .as_ref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default()
        );
    }
    println!(
        "{} member(s), {} unpacked",
        m.members.len(),
        HumanBytes(m.total_size())
    );
    for r in &m.recordings {
        println!("\nRecording {}: {}", r.name, r.summary());
        if let Some(cpu) = &r.recorded_on.cpu_model {
            println!(
                "  recorded on {} ({cpu})",
                r.recorded_on.hostname.as_deref().unwrap_or("?")
            );
        }
        if !r.removed_env.is_empty() {
            println!(
                "  environment variables removed: {}",
                r.removed_env.join(", ")
            );
        }
        let tail: String = {
            let t = r.stderr.text.trim_end();
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(8)..].join("\n    ")
        };
        if !tail.is_empty() {
            println!("  stderr (end):\n    {tail}");
        }
    }
}

fn warn_incompatibilities(problems: &[Incompatibility]) {
    for p in problems {
        eprintln!("warning: {p}");
    }
}

/// A recording directory resolved from what the user passed.
#[derive(Debug)]
pub struct ResolvedTrace {
    /// Keeps an archive's cache entry in use (not pruned) while this value lives.
    pub unpacked: Option<packer::UnpackedArchive>,
    /// The recording directory, ready for replay.
    pub dir: PathBuf,
    /// The archive's manifest, when it came from an archive.
    pub manifest: Option<Manifest>,
    /// Why this machine may not replay it (empty for plain directories).
    pub problems: Vec<Incompatibility>,
}

fn single(unpacked: packer::UnpackedArchive, what: &str) -> anyhow::Result<ResolvedTrace> {
    let dir = match unpacked.single_trace() {
        Some(d) => d.to_path_buf(),
        None => bail!(
            "{what} holds {} recordings ({}); pass one of the directories under {}",
            unpacked.traces.len(),
            unpacked
                .traces
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            unpacked.root.display()
        ),
    };
    let problems = compat::check(&unpacked.manifest);
    Ok(ResolvedTrace {
        dir,
        manifest: Some(unpacked.manifest.clone()),
        problems,
        unpacked: Some(unpacked),
    })
}

/// Resolves a recording directory, an archive, or a URL (`file://`, `http(s)://`,
/// `s3://`, GitHub artifact) into a recording directory. Archives are verified and
/// unpacked into the user's cache (reused next time) within `limits`; URLs are downloaded
/// into it first. The cache is then pruned to its size cap (`CHAOS_CACHE_MAX_SIZE`).
pub fn resolve(path_or_url: &str, limits: &packer::UnpackLimits) -> anyhow::Result<ResolvedTrace> {
    let is_url = path_or_url.contains("://") && !path_or_url.starts_with("file://");
    let cache = crate::sizes::user_cache(limits.clone())?;
    if is_url {
        let topts = TransportOptions::from_env()?;
        let unpacked = with_progress(|p| cache.open_url(path_or_url, &topts, p))?;
        return single(unpacked, path_or_url);
    }
    let path = match path_or_url.strip_prefix("file://") {
        Some(_) => transport::impls::local::Local::new(path_or_url)?
            .path()
            .to_path_buf(),
        None => PathBuf::from(path_or_url),
    };
    if path.is_dir() {
        if path.join("version").is_file() {
            let manifest = std::fs::read(path.join(packer::manifest::MANIFEST_NAME))
                .ok()
                .and_then(|b| Manifest::from_json(&b).ok());
            let problems = manifest.as_ref().map(compat::check).unwrap_or_default();
            return Ok(ResolvedTrace {
                dir: path,
                manifest,
                problems,
                unpacked: None,
            });
        }
        if path.join(packer::manifest::MANIFEST_NAME).is_file() {
            let unpacked = packer::UnpackedArchive::load(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            return single(unpacked, path_or_url);
        }
        bail!(
            "{} is neither a recording nor an unpacked archive (hint: pass the directory \
             `cargo chaos record` wrote, or an archive)",
            path.display()
        );
    }
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let unpacked = with_progress(|p| cache.open_archive(&path, p))?;
    single(unpacked, path_or_url)
}

/// Like [`resolve`]; compatibility problems are printed as warnings.
pub fn resolve_trace(
    path_or_url: &str,
    limits: &packer::UnpackLimits,
) -> anyhow::Result<ResolvedTrace> {
    let r = resolve(path_or_url, limits)?;
    warn_incompatibilities(&r.problems);
    Ok(r)
}
