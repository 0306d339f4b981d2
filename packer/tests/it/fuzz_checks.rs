//! The properties that must hold for any input to the archive readers, checked the same
//! way by the bounded proptest runs (`fuzz.rs`, on CI) and by the libFuzzer targets in
//! `fuzz/` (which include this file). A broken property panics, with the reason.
//!
//! Kept free of proptest and of the other test modules so that both can use it.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use packer::compat::{self, HostCapabilities};
use packer::manifest::{Manifest, FILES_DIR, MANIFEST_NAME};
use packer::{read_manifest, unpack, UnpackLimits, UnpackedArchive};

/// Limits small enough that a run over arbitrary input stays fast and small.
pub fn fuzz_limits() -> UnpackLimits {
    let mut limits = UnpackLimits::with_sizes(4 << 20, 1 << 20);
    limits.max_members = 1000;
    limits.max_manifest_bytes = 1 << 20;
    limits
}

/// A sandbox for one unpack: `root/work/` holds the archive, `root/work/a/` the
/// destination's parent. Anything that appears in `root/` or `root/work/` besides those
/// escaped the destination.
pub struct Sandbox {
    _tmp: tempfile::TempDir,
    /// The outermost directory.
    pub root: PathBuf,
    /// Holds the archive and `a/`.
    pub work: PathBuf,
}

impl Sandbox {
    /// A fresh sandbox in the system's temporary directory.
    pub fn fresh() -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("chaos-fuzz-")
            .tempdir()
            .expect("temporary directory");
        let root = tmp.path().to_path_buf();
        let work = root.join("work");
        fs::create_dir_all(work.join("a")).expect("sandbox");
        Sandbox {
            _tmp: tmp,
            root,
            work,
        }
    }

    /// Where unpacks go.
    pub fn dest(&self) -> PathBuf {
        self.work.join("a/dest")
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every entry under `dir`: (path relative to `dir`, is a directory). Panics on
/// anything but regular files and directories.
fn tree(dir: &Path) -> Vec<(String, bool)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) {
        for e in fs::read_dir(dir).expect("list") {
            let p = e.expect("entry").path();
            let ft = fs::symlink_metadata(&p).expect("stat").file_type();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            assert!(
                ft.is_dir() || ft.is_file(),
                "unpack created a {ft:?} at {rel}"
            );
            out.push((rel, ft.is_dir()));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Unpacks `data` as an archive (named with its own hash when `hashed_name`, so that the
/// final name check passes, else without one) under [`fuzz_limits`], and checks:
///
/// - no panic, in `unpack` or `read_manifest`;
/// - refused: nothing is left anywhere (no destination, no staging directory);
/// - accepted: nothing was created outside the destination, which holds only regular
///   files and directories, within the limits; every captured file `files/<hash>` has
///   that BLAKE3; the manifest `read_manifest` sees is the one `unpack` returned.
///
/// Returns whether the archive was accepted.
pub fn check_unpack(data: &[u8], hashed_name: bool) -> bool {
    let name = if hashed_name {
        format!("x-{}.chaos.tar.zst", blake3::hash(data).to_hex())
    } else {
        "x.chaos.tar.zst".to_string()
    };
    check_unpack_named(data, &name)
}

/// [`check_unpack`] with the archive saved under `name`.
pub fn check_unpack_named(data: &[u8], name: &str) -> bool {
    let sb = Sandbox::fresh();
    let archive = sb.work.join(name);
    fs::write(&archive, data).expect("write the input");
    let dest = sb.dest();
    let limits = fuzz_limits();
    let peeked = read_manifest(&archive);
    let result = unpack(&archive, &dest, &limits, &mut |_| {});

    assert_eq!(
        names(&sb.root),
        ["work"],
        "something escaped into the sandbox root"
    );
    let mut work = names(&sb.work);
    work.retain(|n| *n != name);
    assert_eq!(work, ["a"], "something escaped next to the archive");
    match result {
        Err(_) => {
            assert!(
                names(&sb.work.join("a")).is_empty(),
                "a refused archive left {:?}",
                names(&sb.work.join("a"))
            );
            false
        }
        Ok(unpacked) => {
            assert_eq!(
                names(&sb.work.join("a")),
                ["dest"],
                "an accepted archive left more than its destination"
            );
            check_unpacked(&unpacked, &dest, &limits);
            let peeked = peeked.expect("read_manifest refused an archive that unpacks");
            assert_eq!(
                peeked, unpacked.manifest,
                "read_manifest and unpack disagree"
            );
            true
        }
    }
}

fn check_unpacked(unpacked: &UnpackedArchive, dest: &Path, limits: &UnpackLimits) {
    assert_eq!(unpacked.root, dest);
    assert_eq!(unpacked.traces.len(), unpacked.manifest.recordings.len());
    let entries = tree(dest);
    let mut total = 0u64;
    for (rel, is_dir) in &entries {
        if *is_dir {
            continue;
        }
        let path = dest.join(rel);
        let bytes = fs::read(&path).expect("read an unpacked file");
        if rel != MANIFEST_NAME {
            assert!(
                bytes.len() as u64 <= limits.max_member_bytes,
                "{rel} is larger than the member limit"
            );
            total += bytes.len() as u64;
        }
        // Captured files, of the single recording (files/H) or of one of several
        // (NAME/files/H), are named by their content's hash.
        let parts: Vec<&str> = rel.split('/').collect();
        let captured = match parts.as_slice() {
            [dir, h] if *dir == FILES_DIR => Some(*h),
            [_, dir, h] if *dir == FILES_DIR && unpacked.traces.len() > 1 => Some(*h),
            _ => None,
        };
        if let Some(h) = captured {
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                h,
                "unpacked {rel} does not have the content its name says"
            );
        }
    }
    // Shared captured files are hard-linked into each recording: count them once.
    assert!(
        total <= limits.max_total_bytes * unpacked.traces.len().max(1) as u64,
        "{total} bytes unpacked"
    );
    for t in &unpacked.traces {
        assert!(
            t.path.starts_with(dest),
            "{} outside the destination",
            t.path.display()
        );
    }
}

/// Wraps `manifest` as the first (and only) member of a `.chaos.tar.zst`, without the tar
/// crate's path checks, so that unpack's own validation of the manifest runs on it.
pub fn archive_with_manifest(manifest: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.include_checksum(true).expect("checksum");
    let mut b = tar::Builder::new(enc);
    let mut members = vec![(MANIFEST_NAME, manifest)];
    members.extend_from_slice(extra);
    for (path, data) in members {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        let n = path.len().min(name.len());
        name[..n].copy_from_slice(&path.as_bytes()[..n]);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("tar append");
    }
    let enc = b.into_inner().expect("tar finish");
    let mut out = enc.finish().expect("zstd finish");
    out.flush().expect("flush");
    out
}

/// Parses `data` as a manifest and checks what readers do with one:
///
/// - parsing never panics; a parsed manifest serializes and parses back to itself;
/// - the helpers `inspect` and `replay` call on an unvalidated manifest (sizes, lookups,
///   summaries, the compatibility check) never panic;
/// - as the first member of an archive, unpack validates it without panicking and
///   without writing outside the destination (see [`check_unpack`]).
///
/// Returns whether it parsed.
pub fn check_manifest(data: &[u8]) -> bool {
    let parsed = Manifest::from_json(data);
    if let Ok(m) = &parsed {
        let again = Manifest::from_json(&m.to_json()).expect("a written manifest parses");
        assert_eq!(&again, m, "the manifest does not survive a round trip");
        let _ = m.total_size();
        for member in &m.members {
            let _ = m.member(&member.path);
        }
        for r in &m.recordings {
            let _ = r.summary();
            let _ = r.member_prefix();
        }
        static HOST: std::sync::OnceLock<HostCapabilities> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| HostCapabilities {
            cpuid_leaves: packer::cpu::host_leaves(),
            cpuid_faulting: false,
        });
        for problem in compat::check_against(m, host) {
            let _ = problem.to_string();
        }
    }
    let archive = archive_with_manifest(data, &[]);
    check_unpack(&archive, false);
    parsed.is_ok()
}

/// Packs a small recording whose `version`, `header.json` and `result.json` (absent when
/// `None`) are given, as `pack` reads them on CI, and checks that packing never panics
/// and that an archive it writes unpacks (see [`check_unpack`]).
///
/// Returns whether packing succeeded.
pub fn check_pack_meta(version: &[u8], header: &[u8], result: Option<&[u8]>) -> bool {
    let tmp = tempfile::Builder::new()
        .prefix("chaos-fuzz-")
        .tempdir()
        .expect("temporary directory");
    let rec = tmp.path().join("rec");
    fs::create_dir_all(rec.join(FILES_DIR)).expect("files/");
    fs::write(rec.join("version"), version).expect("version");
    fs::write(rec.join("header.json"), header).expect("header.json");
    if let Some(r) = result {
        fs::write(rec.join("result.json"), r).expect("result.json");
    }
    fs::write(rec.join("events"), b"\0\0\0\0").expect("events");
    fs::write(rec.join("stdout"), b"out\n").expect("stdout");
    let captured = b"a captured file";
    let hash = blake3::hash(captured).to_hex();
    fs::write(rec.join(FILES_DIR).join(hash.as_str()), captured).expect("captured");

    let mut opts = packer::PackOptions::default();
    opts.level = Some(1);
    opts.threads = Some(1);
    opts.environment = Some(vec![]);
    opts.git_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
    opts.frame_cache = None;
    let out = tmp.path().join("out");
    let Ok(packed) = packer::pack(&rec, &out, &opts, &mut |_| {}) else {
        return false;
    };
    let bytes = fs::read(&packed.path).expect("read the archive");
    assert!(
        check_unpack(&bytes, true),
        "an archive written by pack is refused by unpack"
    );
    true
}
