//! Packing recordings into one archive.
//!
//! Two passes over the input. The first hashes every file (checking that captured files
//! still match the hash they are named by, and scanning for leaked secrets) and builds the
//! manifest; the second streams the manifest and then every member into a tar stream,
//! compressed by multithreaded zstd, into a temporary file beside the output. Each member
//! is hashed again as it is written, so a file that changed between the passes fails the
//! pack instead of producing an archive whose manifest lies. The temporary file is renamed
//! into place only when complete, under a name that carries its hash.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::cpu::{CpuFeatures, CpuSource};
use crate::errors::PackError;
use crate::frames::{self, FrameCache, FrameParams, FrameStats, Tee};
use crate::hash::{archive_file_name, HashingWriter};
use crate::manifest::{
    CapturedOutput, Manifest, Member, Outcome, Recording, TestIdentity, TokenFinding, ToolInfo,
    FILES_DIR, FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME,
};
use crate::progress::{Meter, Phase, ProgressEvent};
use crate::secrets::tokens::TokenScanner;
use crate::secrets::{self, SecretScanner};
use crate::sysinfo::{self, CiInfo, HostInfo};
use crate::trace::{self, TraceScan};
use crate::zstd_window::long_window_log;
use recorder::trace::Outcome as RunOutcome;

/// The zstd level for several recordings in one solid frame, unless
/// [`PackOptions::level`] says otherwise.
///
/// Chosen with the pack bench (`cargo bench -p cargo-chaos --bench pack`) (see docs/benchmarks.md, "Packer"): the lowest level that keeps
/// the bench's several-recordings archive (five different test binaries, one solid frame)
/// within 1.1x of `zstd -19 --long` (level 9 lands just above).
pub const DEFAULT_LEVEL: i32 = 10;

/// The zstd level for one recording (a frame per captured file: the archive of a failing
/// run, packed while a CI job waits), unless [`PackOptions::level`] says otherwise.
///
/// Chosen with the pack bench (`cargo bench -p cargo-chaos --bench pack`): the highest level at which packing a failing run of the Rust
/// fixture suite with an empty frame cache still takes less time than recording it; its
/// archive is ~1.08x `zstd -19 --long` (level 10: ~1.06x at three times the cold time).
/// With the captured files' frames cached (see [`warm`]) any level packs in a fraction of
/// the record time.
pub const SINGLE_RUN_LEVEL: i32 = 6;

/// How much of stdout and stderr the manifest quotes (the full text is a member).
pub const DEFAULT_OUTPUT_CAP: usize = 64 << 10;

/// How to pack.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PackOptions {
    /// The test the recording ran (used by [`pack`]; [`pack_many`] takes one per input).
    pub test: TestIdentity,
    /// The archive name's stem; by default the test name or the recording directory's name.
    pub name: Option<String>,
    /// zstd level (1..=22); `None`: [`SINGLE_RUN_LEVEL`] for one recording (a frame per
    /// captured file), [`DEFAULT_LEVEL`] for several (one solid frame).
    pub level: Option<i32>,
    /// zstd worker threads; `None` means one per available core.
    pub threads: Option<u32>,
    /// Variables allowed in the recorded environment even though they look like secrets
    /// (by name, or a password inside a URL): the recorder's caller let them through on
    /// purpose (`--keep-env`), so their values are not searched for in the archive either.
    pub allow_env: Vec<String>,
    /// The source revision; by default taken from CI variables or `git rev-parse HEAD`
    /// in the recording's working directory.
    pub git_revision: Option<String>,
    /// The packing environment, for CI metadata and the secret scan; `None` reads the
    /// process environment.
    pub environment: Option<Vec<(String, String)>>,
    /// Bytes of stdout and of stderr quoted in the manifest.
    pub output_cap: usize,
    /// How the tar stream is cut into zstd frames.
    pub framing: Framing,
    /// Where compressed frames of captured files are cached (see [`crate::frames`]);
    /// `None` disables the cache. By default the user's cache directory.
    pub frame_cache: Option<PathBuf>,
}

/// How the archive's tar stream is cut into zstd frames. Every choice is the same tar
/// stream and reads the same; they differ in size, speed and what can be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framing {
    /// [`Framing::PerMember`] for one recording, [`Framing::Solid`] for several.
    #[default]
    Auto,
    /// Each captured file's content is a frame of its own, compressed on its own (several
    /// cores work on large files) and cached, so later archives with the same file reuse
    /// it. The rest (manifest, tar headers, the recording's own files) are small frames
    /// between them. Costs ~0.5% of size on one recording, but files cannot share matches:
    /// several different test binaries in one archive compress much worse.
    PerMember,
    /// One frame for the whole stream, single-threaded with long-distance matching above
    /// [`LDM_THRESHOLD`](crate::LDM_THRESHOLD), so different files share matches (several test binaries linking
    /// the same std). Not cached.
    Solid,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            test: TestIdentity::default(),
            name: None,
            level: None,
            threads: None,
            allow_env: Vec::new(),
            git_revision: None,
            environment: None,
            output_cap: DEFAULT_OUTPUT_CAP,
            framing: Framing::Auto,
            frame_cache: frames::user_frame_cache(),
        }
    }
}

impl PackOptions {
    /// Options with the test identity set.
    pub fn for_test(test: TestIdentity) -> Self {
        PackOptions {
            test,
            ..PackOptions::default()
        }
    }
}

/// One recording to pack, with the test it ran.
#[derive(Debug, Clone)]
pub struct PackInput {
    /// The recording directory.
    pub trace: PathBuf,
    /// The test it ran, when known.
    pub test: TestIdentity,
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct PackedArchive {
    /// Where it is.
    pub path: PathBuf,
    /// BLAKE3 of the archive file, 64 hex digits (its name carries the first 32).
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// Total size of the members, uncompressed.
    pub content_size: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// What became of the captured files' frames (all zero with [`Framing::Solid`]).
    pub frames: FrameStats,
}

/// Packs one recording. `out` is a directory (the archive is created in it, named
/// `NAME-<hash>.chaos.tar.zst`) or a file path (used as given; replaced if it exists).
///
/// ```no_run
/// use packer::{pack, PackOptions};
/// let archive = pack(
///     "target/chaos/my-test.trace".as_ref(),
///     "target/chaos".as_ref(),
///     &PackOptions::default(),
///     &mut |_| {},
/// )?;
/// println!("{} ({} bytes)", archive.path.display(), archive.size);
/// # Ok::<(), packer::errors::PackError>(())
/// ```
pub fn pack(
    trace: &Path,
    out: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<PackedArchive, PackError> {
    let input = PackInput {
        trace: trace.to_path_buf(),
        test: opts.test.clone(),
    };
    pack_many(std::slice::from_ref(&input), out, opts, progress)
}

struct Prepared {
    manifest: Manifest,
    /// Archive path -> source file, in write order.
    sources: Vec<(String, PathBuf)>,
}

/// Packs several recordings into one archive. Captured files they share (libc, ld.so,
/// the same test binary) are stored once.
pub fn pack_many(
    inputs: &[PackInput],
    out: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<PackedArchive, PackError> {
    if inputs.is_empty() {
        return Err(PackError::NoRecordings);
    }
    let env: Vec<(String, String)> = match &opts.environment {
        Some(e) => e.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let needles = secrets::secret_needles(env.clone(), &opts.allow_env);
    let scans = inputs
        .iter()
        .map(|i| trace::scan(&i.trace))
        .collect::<Result<Vec<_>, _>>()?;

    let prepared = prepare(inputs, &scans, opts, &env, &needles, progress)?;
    let stem = archive_stem(inputs, &prepared.manifest, opts);
    write_archive(prepared, out, &stem, opts, &needles, progress)
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> PackError + 'p {
    move |source| PackError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reduces a name to `[A-Za-z0-9._-]`, at most 64 characters, never `.` or `..`.
pub(crate) fn sanitize_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    let s = s.trim_matches(|c| c == '_' || c == '.').to_string();
    let s: String = s.chars().take(64).collect();
    if s.is_empty() {
        "recording".to_string()
    } else {
        s
    }
}

fn recording_base_name(input: &PackInput) -> String {
    if let Some(t) = &input.test.test_name {
        return sanitize_name(t);
    }
    let dir_name = input
        .trace
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let dir_name = dir_name.strip_suffix(".trace").unwrap_or(&dir_name);
    sanitize_name(dir_name)
}

fn archive_stem(inputs: &[PackInput], manifest: &Manifest, opts: &PackOptions) -> String {
    if let Some(n) = &opts.name {
        return sanitize_name(n);
    }
    if inputs.len() == 1 {
        return manifest.recordings[0].name.clone();
    }
    "recordings".to_string()
}

/// Hashes a file, feeding the meter, the secret scanner and the token scanner.
fn hash_and_scan(
    path: &Path,
    meter: &mut Meter,
    scanner: &mut SecretScanner,
    tokens: &mut TokenScanner,
    member: &str,
) -> Result<String, PackError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    scanner.reset();
    tokens.reset();
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tokens.feed(&buf[..n]);
        if let Some(name) = scanner.feed(&buf[..n]) {
            return Err(PackError::SecretValueFound {
                name: name.to_string(),
                member: member.to_string(),
            });
        }
        meter.add(n as u64);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Quotes captured output, cut in the middle when longer than `cap`.
fn capture_output(path: &Path, cap: usize) -> Result<CapturedOutput, PackError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CapturedOutput::default()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let size = bytes.len() as u64;
    if bytes.len() <= cap {
        return Ok(CapturedOutput {
            size,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            truncated: false,
        });
    }
    // Keep the start (what ran) and, mostly, the end (the panic and the summary).
    let head = cap / 8;
    let tail = cap - head;
    let omitted = bytes.len() - head - tail;
    let text = format!(
        "{}\n[... {omitted} bytes omitted ...]\n{}",
        String::from_utf8_lossy(&bytes[..head]),
        String::from_utf8_lossy(&bytes[bytes.len() - tail..])
    );
    Ok(CapturedOutput {
        size,
        text,
        truncated: true,
    })
}

/// The manifest's name for how a recording ended: result.json's own spelling.
fn outcome_name(o: RunOutcome) -> String {
    match serde_json::to_value(o) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{o:?}"),
    }
}

fn describe_recording(
    input: &PackInput,
    scan: &TraceScan,
    name: String,
    opts: &PackOptions,
) -> Result<Recording, PackError> {
    // A trace whose recorder stopped before writing header.json packs with the header's
    // facts unknown.
    let h = scan.header.clone().unwrap_or_default();
    for (k, v) in &h.env {
        if let Some(reason) = secrets::removal_reason(k, v, &opts.allow_env) {
            return Err(PackError::SecretInEnvironment {
                path: scan.dir.join(recorder::trace::HEADER_FILE),
                name: k.clone(),
                reason,
            });
        }
    }
    let leaves = scan
        .result
        .as_ref()
        .map(|r| r.cpuid_leaves.clone())
        .unwrap_or_default();
    // The recorder says in header.json whether it armed CPUID faulting; the answers the
    // program got are in result.json.
    let needs_cpuid_faulting = !leaves.is_empty() || h.cpuid_faulting;
    let cpu = if leaves.is_empty() {
        CpuFeatures::host()
    } else {
        CpuFeatures::from_leaves(CpuSource::Recording, leaves)
    };
    let outcome = match &scan.result {
        Some(r) => Outcome {
            kind: outcome_name(r.outcome),
            exit_code: r.exit_code.map(i64::from),
            signal: r.signal.map(i64::from),
            status: Some(i64::from(r.status)),
            events: Some(r.events),
            message: r.message.clone(),
        },
        None => Outcome {
            kind: "incomplete".to_string(),
            ..Outcome::default()
        },
    };
    // Facts the header does not hold (empty, zero) are left out of the manifest.
    let text = |s: String| (!s.is_empty()).then_some(s);
    let number = |n: u64| (n != 0).then_some(n);
    Ok(Recording {
        name,
        test: input.test.clone(),
        trace_format_version: number(u64::from(h.format_version)),
        recorder_version: text(h.tool_version),
        recorded_on: HostInfo {
            hostname: text(h.hostname),
            kernel: text(h.kernel),
            cpu_model: text(h.cpu_model),
        },
        cpu,
        needs_cpuid_faulting,
        argv: h.argv,
        exe: text(h.exe),
        cwd: text(h.cwd),
        env: h.env,
        removed_env: h.removed_env,
        seed: scan.header.as_ref().map(|h| h.seed),
        started_unix_ms: number(h.started_unix_ms),
        outcome,
        stdout: capture_output(&scan.dir.join("stdout"), opts.output_cap)?,
        stderr: capture_output(&scan.dir.join("stderr"), opts.output_cap)?,
        files: scan.captured.iter().map(|c| c.hash.clone()).collect(),
    })
}

fn prepare(
    inputs: &[PackInput],
    scans: &[TraceScan],
    opts: &PackOptions,
    env: &[(String, String)],
    needles: &[(String, Vec<u8>)],
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<Prepared, PackError> {
    // Unique recording names.
    let mut used = HashSet::new();
    let mut recordings = Vec::new();
    for (input, scan) in inputs.iter().zip(scans) {
        let base = recording_base_name(input);
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        recordings.push(describe_recording(input, scan, name, opts)?);
    }

    // Members, deduplicated: captured files by hash, own files by recording.
    let mut sources: BTreeMap<String, (PathBuf, u64, Option<String>)> = BTreeMap::new();
    for (rec, scan) in recordings.iter().zip(scans) {
        for f in &scan.own {
            let path = format!("{}{}", rec.member_prefix(), f.rel);
            sources.insert(path, (f.path.clone(), f.size, None));
        }
        for c in &scan.captured {
            let path = format!("{FILES_DIR}/{}", c.hash);
            sources
                .entry(path)
                .or_insert((c.path.clone(), c.size, Some(c.hash.clone())));
        }
    }

    let total: u64 = sources.values().map(|(_, s, _)| *s).sum();
    let mut meter = Meter::new(Phase::Hashing, Some(total), progress);
    let mut scanner = SecretScanner::new(needles);
    let mut token_scanner = TokenScanner::new();
    let mut tokens = Vec::new();
    let mut members = Vec::with_capacity(sources.len());
    for (path, (src, _, named)) in &sources {
        let hash = hash_and_scan(src, &mut meter, &mut scanner, &mut token_scanner, path)?;
        let mut found = token_scanner.take();
        if named.is_none() && path.ends_with("/events") {
            // What the program read is compressed in there.
            found.extend(secrets::scan_events_file(src).map_err(io_err("read", src))?);
        }
        found.sort();
        found.dedup();
        tokens.extend(found.into_iter().map(|kind| TokenFinding {
            member: path.clone(),
            kind,
        }));
        if let Some(expected) = named {
            if *expected != hash {
                return Err(PackError::CapturedFileChanged {
                    path: src.clone(),
                    expected: expected.clone(),
                    actual: hash,
                });
            }
        }
        let size = fs::metadata(src).map_err(io_err("inspect", src))?.len();
        members.push(Member {
            path: path.clone(),
            size,
            blake3: hash,
        });
    }
    meter.finish();

    let ci = CiInfo::from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let git_revision = opts
        .git_revision
        .clone()
        .or_else(|| ci.as_ref().and_then(|c| c.revision().map(str::to_string)))
        .or_else(|| {
            recordings.iter().find_map(|r| {
                r.cwd
                    .as_deref()
                    .and_then(|c| sysinfo::git_revision(Path::new(c)))
            })
        });
    let created_unix_ms = sysinfo::now_unix_ms();
    let manifest = Manifest {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        tool: ToolInfo::default(),
        created_unix_ms,
        created: sysinfo::rfc3339_utc(created_unix_ms),
        packed_on: HostInfo::current(),
        git_revision,
        ci,
        recordings,
        members,
        tokens,
    };
    let sources = manifest
        .members
        .iter()
        .map(|m| (m.path.clone(), sources[&m.path].0.clone()))
        .collect();
    Ok(Prepared { manifest, sources })
}

/// Reads exactly `remaining` bytes from a file, hashing them, and fails if the file is
/// shorter than that: tar has already written the size into the member's header.
struct ExactReader<'m, 'a, 'b> {
    file: File,
    remaining: u64,
    hasher: blake3::Hasher,
    meter: &'m mut Meter<'a, 'b>,
}

impl Read for ExactReader<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while packing",
            ));
        }
        self.remaining -= n as u64;
        self.hasher.update(&buf[..n]);
        self.meter.add(n as u64);
        Ok(n)
    }
}

fn member_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

const FILES_PREFIX: &str = "files/";

/// How a frame of tar bytes (everything but per-member frames) is compressed.
#[derive(Debug, Clone, Copy)]
struct GlueParams {
    level: i32,
    threads: u32,
    /// Long-distance matching with this window.
    window_log: Option<u32>,
    /// Collect the frame in memory and compress it in one call with a reused context, up
    /// to [`GLUE_BUFFER`] bytes: with per-member framing most frames between captured
    /// files are one 512-byte tar header, and a fresh streaming context at a high level
    /// would allocate and clear tables sized for megabytes each time.
    buffered: bool,
}

/// Largest frame collected in memory (see [`GlueParams::buffered`]).
const GLUE_BUFFER: usize = 4 << 20;

enum FramerState<W: Write> {
    Raw(W),
    Buffered(W, Vec<u8>),
    Frame(zstd::stream::write::Encoder<'static, W>),
    Broken,
}

/// The archive's output as a sequence of zstd frames. Tar bytes written to it go into the
/// current frame, started on demand with `params`; [`Framer::raw`] ends that frame and
/// hands out the file, for a member's frame to be written there.
struct Framer<W: Write> {
    state: FramerState<W>,
    params: GlueParams,
    /// Compresses buffered frames; reused across them.
    bulk: Option<zstd::bulk::Compressor<'static>>,
}

fn broken() -> io::Error {
    io::Error::other("archive writer broken by an earlier error")
}

impl<W: Write> Framer<W> {
    fn new(out: W, params: GlueParams) -> Self {
        Framer {
            state: FramerState::Raw(out),
            params,
            bulk: None,
        }
    }

    fn start_stream(&self, w: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
        let p = self.params;
        let mut enc = zstd::stream::write::Encoder::new(w, p.level)?;
        enc.include_checksum(true)?;
        if p.threads > 1 {
            enc.multithread(p.threads)?;
        }
        if let Some(window) = p.window_log {
            enc.long_distance_matching(true)?;
            enc.window_log(window)?;
        }
        Ok(enc)
    }

    fn write_frame(&mut self, buf: &[u8]) -> io::Result<usize> {
        let state = std::mem::replace(&mut self.state, FramerState::Broken);
        self.state = match state {
            FramerState::Raw(w) if self.params.buffered => {
                FramerState::Buffered(w, Vec::with_capacity(4096))
            }
            FramerState::Raw(w) => FramerState::Frame(self.start_stream(w)?),
            FramerState::Buffered(w, b) if b.len() + buf.len() > GLUE_BUFFER => {
                let mut enc = self.start_stream(w)?;
                enc.write_all(&b)?;
                FramerState::Frame(enc)
            }
            other => other,
        };
        match &mut self.state {
            FramerState::Buffered(_, b) => {
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
            FramerState::Frame(e) => e.write(buf),
            _ => Err(broken()),
        }
    }

    /// Ends the current frame, if any, and returns the output.
    fn raw(&mut self) -> io::Result<&mut W> {
        let state = std::mem::replace(&mut self.state, FramerState::Broken);
        self.state = match state {
            FramerState::Frame(enc) => FramerState::Raw(enc.finish()?),
            FramerState::Buffered(mut w, b) => {
                let bulk = match &mut self.bulk {
                    Some(c) => c,
                    None => {
                        let mut c = zstd::bulk::Compressor::new(self.params.level)?;
                        c.include_checksum(true)?;
                        self.bulk.insert(c)
                    }
                };
                w.write_all(&bulk.compress(&b)?)?;
                FramerState::Raw(w)
            }
            other => other,
        };
        match &mut self.state {
            FramerState::Raw(w) => Ok(w),
            _ => Err(broken()),
        }
    }

    fn finish(mut self) -> io::Result<W> {
        self.raw()?;
        match self.state {
            FramerState::Raw(w) => Ok(w),
            _ => Err(broken()),
        }
    }
}

impl<W: Write> Write for Framer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_frame(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Flushing a zstd frame ends a block early; the frame is finished at the end.
        Ok(())
    }
}

/// Feeds the progress meter.
struct Metered<'m, 'a, 'b> {
    file: File,
    meter: &'m mut Meter<'a, 'b>,
}

impl Read for Metered<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

/// Writes a captured file as its tar header (in the current frame) and a frame of its own
/// holding its content and padding: from the cache when a verified entry exists, else
/// compressed now (and stored in the cache).
#[allow(clippy::too_many_arguments)]
fn write_member_frame<W: Write>(
    framer: &mut Framer<W>,
    h: &mut tar::Header,
    member: &Member,
    src: &Path,
    cache: Option<&FrameCache>,
    params: FrameParams,
    stats: &mut FrameStats,
    meter: &mut Meter,
    tmp_path: &Path,
) -> Result<(), PackError> {
    let write_err = io_err("write", tmp_path);
    h.set_path(&member.path)
        .map_err(io_err("write", tmp_path))?;
    h.set_cksum();
    framer.write_all(h.as_bytes()).map_err(write_err)?;
    let out = framer.raw().map_err(io_err("write", tmp_path))?;
    if let Some(mut cached) =
        cache.and_then(|c| c.get(&member.blake3, member.size, params.level, stats))
    {
        io::copy(&mut cached, out).map_err(io_err("write", tmp_path))?;
        stats.reused += 1;
        meter.add(member.size);
        return Ok(());
    }
    let file = File::open(src).map_err(io_err("open", src))?;
    let mut entry = cache.and_then(FrameCache::begin);
    let mut tee = Tee {
        first: out,
        second: entry.as_mut().map(|t| t.as_file_mut()),
        failed: false,
    };
    let mut input = Metered { file, meter };
    let hash = match frames::compress_frame(&mut input, member.size, params, &mut tee) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(PackError::ChangedWhilePacking {
                path: src.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("write", tmp_path)(e)),
    };
    let cache_ok = !tee.failed;
    if hash != member.blake3 {
        return Err(PackError::ChangedWhilePacking {
            path: src.to_path_buf(),
        });
    }
    stats.compressed += 1;
    if let (Some(c), Some(entry)) = (cache, entry) {
        if cache_ok {
            c.commit(entry, &member.blake3, params.level, stats);
        }
    }
    Ok(())
}

fn write_archive(
    prepared: Prepared,
    out: &Path,
    stem: &str,
    opts: &PackOptions,
    needles: &[(String, Vec<u8>)],
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<PackedArchive, PackError> {
    let Prepared { manifest, sources } = prepared;
    let manifest_json = manifest.to_json();
    // The manifest quotes output, environment and CI variables: scan it too.
    if let Some(name) = SecretScanner::new(needles).feed(&manifest_json) {
        return Err(PackError::SecretValueFound {
            name: name.to_string(),
            member: "the manifest".to_string(),
        });
    }

    let (dir, explicit_file) = if out.is_dir() {
        (out.to_path_buf(), None)
    } else if out.as_os_str().to_string_lossy().ends_with('/') {
        fs::create_dir_all(out).map_err(io_err("create directory", out))?;
        (out.to_path_buf(), None)
    } else {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?;
        (parent, Some(out.to_path_buf()))
    };
    let tmp = crate::partial::Partial::create(&dir, "chaos-pack-")
        .map_err(io_err("create a temporary file in", &dir))?;
    let file = tmp.reopen().map_err(io_err("open", tmp.path()))?;
    let tmp_path = tmp.path().to_path_buf();

    let content_size = manifest.total_size();
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    });
    let framing = match opts.framing {
        Framing::Auto if manifest.recordings.len() == 1 => Framing::PerMember,
        Framing::Auto => Framing::Solid,
        f => f,
    };
    let per_member = framing == Framing::PerMember;
    let level = opts.level.unwrap_or(if per_member {
        SINGLE_RUN_LEVEL
    } else {
        DEFAULT_LEVEL
    });
    let glue = if per_member {
        GlueParams {
            level,
            threads,
            window_log: None,
            buffered: true,
        }
    } else if let Some(window_log) = long_window_log(content_size) {
        // Long-distance matching finds repeats further apart than the level's window
        // (the same std code in two test binaries, debug info). Single-threaded: zstd's
        // jobs would each see only the previous one's tail and lose those matches
        // (docs/benchmarks.md).
        GlueParams {
            level,
            threads: 1,
            window_log: Some(window_log),
            buffered: false,
        }
    } else {
        GlueParams {
            level,
            threads,
            window_log: None,
            buffered: false,
        }
    };
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut builder = tar::Builder::new(Framer::new(hashing, glue));
    let cache = opts
        .frame_cache
        .as_ref()
        .filter(|_| per_member)
        .map(|d| FrameCache::new(d.clone()));
    let mut stats = FrameStats::default();
    let frame_params = FrameParams { level, threads };
    let mtime = manifest.created_unix_ms / 1000;
    let tar_err = io_err("write", &tmp_path);
    let mut h = member_header(manifest_json.len() as u64, 0o644, mtime);
    builder
        .append_data(&mut h, MANIFEST_NAME, &manifest_json[..])
        .map_err(tar_err)?;

    let mut meter = Meter::new(Phase::Packing, Some(content_size), progress);
    for (member, (path, src)) in manifest.members.iter().zip(&sources) {
        debug_assert_eq!(&member.path, path);
        let exec = fs::metadata(src)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
            .map_err(io_err("inspect", src))?;
        let mut h = member_header(member.size, if exec { 0o755 } else { 0o644 }, mtime);
        if per_member && path.starts_with(FILES_PREFIX) {
            write_member_frame(
                builder.get_mut(),
                &mut h,
                member,
                src,
                cache.as_ref(),
                frame_params,
                &mut stats,
                &mut meter,
                &tmp_path,
            )?;
            continue;
        }
        let file = File::open(src).map_err(io_err("open", src))?;
        let mut reader = ExactReader {
            file,
            remaining: member.size,
            hasher: blake3::Hasher::new(),
            meter: &mut meter,
        };
        match builder.append_data(&mut h, path, &mut reader) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(PackError::ChangedWhilePacking { path: src.clone() })
            }
            Err(e) => return Err(io_err("write", &tmp_path)(e)),
        }
        if reader.hasher.finalize().to_hex().as_str() != member.blake3 {
            return Err(PackError::ChangedWhilePacking { path: src.clone() });
        }
    }
    if stats.stored > 0 {
        if let Some(c) = &cache {
            c.prune(frames::FRAME_CACHE_MAX_BYTES);
        }
    }
    let framer = builder.into_inner().map_err(io_err("write", &tmp_path))?;
    let hashing = framer.finish().map_err(io_err("write", &tmp_path))?;
    let hash = hashing.hasher.finalize().to_hex().to_string();
    let size = hashing.count;
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| io_err("write", &tmp_path)(e.into_error()))?;
    file.sync_all().map_err(io_err("sync", &tmp_path))?;
    drop(file);
    meter.finish();

    let final_path = match explicit_file {
        Some(p) => p,
        None => dir.join(archive_file_name(stem, &hash)),
    };
    tmp.persist(&final_path)
        .map_err(io_err("rename into", &final_path))?;
    Ok(PackedArchive {
        path: final_path,
        hash,
        size,
        content_size,
        manifest,
        frames: stats,
    })
}

/// What [`warm`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WarmReport {
    /// Captured files looked at.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Files whose content did not match their name (skipped).
    pub skipped: usize,
    /// Frames already cached (`reused`), compressed and `stored` now, or `rejected`.
    pub frames: FrameStats,
}

/// Compresses captured files into the frame cache (see [`crate::frames`]), so that packing
/// a recording that uses them later costs little more than copying their frames.
///
/// `dir` is a recording (its `files/` are warmed) or a directory of files named by their
/// BLAKE3 (the recorder's shared capture directory of a flake hunt). Uses `opts.level`
/// (by default [`SINGLE_RUN_LEVEL`], the level of a one-recording pack),
/// `opts.threads` and `opts.frame_cache` (nothing happens without a cache); an archive
/// packed later with the same level reuses the frames. Files already cached are verified,
/// not compressed again; files whose content does not match their name are skipped.
///
/// ```no_run
/// // In a flake hunt, once the first run is recorded, on a background thread:
/// let mut opts = packer::PackOptions::default();
/// opts.threads = Some(1);
/// packer::warm("target/chaos/runs/captured-files".as_ref(), &opts)?;
/// # Ok::<(), packer::errors::PackError>(())
/// ```
pub fn warm(dir: &Path, opts: &PackOptions) -> Result<WarmReport, PackError> {
    let mut report = WarmReport::default();
    let Some(root) = &opts.frame_cache else {
        return Ok(report);
    };
    let cache = FrameCache::new(root.clone());
    let files_dir = dir.join(FILES_DIR);
    let files_dir = if files_dir.is_dir() {
        files_dir
    } else {
        dir.to_path_buf()
    };
    let mut files = Vec::new();
    for e in fs::read_dir(&files_dir)
        .map_err(io_err("read", &files_dir))?
        .flatten()
    {
        let path = e.path();
        let Some(hash) = frames::hash_name(&path) else {
            continue;
        };
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => files.push((hash, path, m.len())),
            _ => {}
        }
    }
    files.sort();
    let params = FrameParams {
        level: opts.level.unwrap_or(SINGLE_RUN_LEVEL),
        threads: opts.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        }),
    };
    for (hash, path, size) in files {
        report.files += 1;
        report.bytes += size;
        if cache
            .get(&hash, size, params.level, &mut report.frames)
            .is_some()
        {
            report.frames.reused += 1;
            continue;
        }
        let mut input = File::open(&path).map_err(io_err("open", &path))?;
        let Some(mut entry) = cache.begin() else {
            return Err(PackError::Io {
                op: "create a cache entry in",
                path: root.clone(),
                source: io::Error::other("cannot create a temporary file"),
            });
        };
        let actual = match frames::compress_frame(&mut input, size, params, entry.as_file_mut()) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                report.skipped += 1;
                continue;
            }
            Err(e) => return Err(io_err("write", entry.path())(e)),
        };
        if actual != hash {
            report.skipped += 1;
            continue;
        }
        report.frames.compressed += 1;
        cache.commit(entry, &hash, params.level, &mut report.frames);
    }
    if report.frames.stored > 0 {
        cache.prune(frames::FRAME_CACHE_MAX_BYTES);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("tests::it_works"), "tests_it_works");
        assert_eq!(sanitize_name(".."), "recording");
        assert_eq!(sanitize_name("a/b\\c d"), "a_b_c_d");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
    }
}
