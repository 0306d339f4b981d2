//! Hostile archives are refused, nothing is written outside the destination, and nothing
//! is left behind.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use packer::manifest::{Manifest, Member, Recording};
use packer::{pack, unpack, UnpackError, UnpackLimits};

use crate::util::*;

/// One raw tar entry, written without the tar crate's path checks.
struct Raw {
    path: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
    /// Size to declare instead of `data.len()` (with `data` empty: a stream of zeros).
    declared: Option<u64>,
    link: Vec<u8>,
}

fn file(path: &str, data: &[u8]) -> Raw {
    Raw {
        path: path.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        declared: None,
        link: vec![],
    }
}

fn special(path: &str, kind: tar::EntryType, link: &str) -> Raw {
    Raw {
        path: path.as_bytes().to_vec(),
        kind,
        data: vec![],
        declared: Some(0),
        link: link.as_bytes().to_vec(),
    }
}

fn member(path: &str, data: &[u8]) -> Member {
    Member {
        path: path.to_string(),
        size: data.len() as u64,
        blake3: blake3::hash(data).to_hex().to_string(),
    }
}

fn manifest(mut members: Vec<Member>) -> Manifest {
    members.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest {
        recordings: vec![Recording {
            name: "r".into(),
            ..Recording::default()
        }],
        members,
        ..Manifest::default()
    }
}

/// Writes `manifest` then `entries` as a tar.zst at `path`.
fn craft(path: &Path, manifest: Option<&Manifest>, entries: Vec<Raw>) {
    let enc = zstd::stream::write::Encoder::new(fs::File::create(path).unwrap(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let mut all = Vec::new();
    if let Some(m) = manifest {
        all.push(file("chaos-manifest.json", &m.to_json()));
    }
    all.extend(entries);
    for e in all {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.path.len()].copy_from_slice(&e.path);
            gnu.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        let size = e.declared.unwrap_or(e.data.len() as u64);
        h.set_size(size);
        h.set_cksum();
        if e.data.is_empty() && size > 0 {
            b.append(&h, io::repeat(0).take(size)).unwrap();
        } else {
            b.append(&h, &e.data[..]).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// A sandbox: `root/work/` holds the archive and the destination's parent; anything
/// landing in `root/` outside `work/` escaped.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let work = root.join("work");
        fs::create_dir_all(work.join("a")).unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            work,
        }
    }

    fn archive(&self) -> PathBuf {
        self.work.join("evil.chaos.tar.zst")
    }

    /// Unpacks into work/a/dest, expects a refusal, and checks nothing was left anywhere.
    fn refuse(&self, limits: &UnpackLimits) -> UnpackError {
        let dest = self.work.join("a/dest");
        let err = unpack(&self.archive(), &dest, limits, &mut quiet())
            .expect_err("a hostile archive must be refused");
        assert!(!dest.exists(), "destination created despite: {err}");
        assert!(
            dir_names(&self.work.join("a")).is_empty(),
            "left behind: {:?}",
            dir_names(&self.work.join("a"))
        );
        assert_eq!(dir_names(&self.root), vec!["work"], "something escaped");
        let mut work = dir_names(&self.work);
        work.retain(|n| !n.ends_with(".chaos.tar.zst"));
        assert_eq!(work, vec!["a"], "something escaped into work/");
        err
    }
}

#[test]
fn member_with_dotdot_is_refused() {
    let sb = Sandbox::new();
    let version = b"chaos-trace 1\n";
    let m = manifest(vec![member("recordings/r/version", version)]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![
            file("recordings/r/version", version),
            file("../escaped", b"pwned"),
            file("../../escaped", b"pwned"),
        ],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(matches!(err, UnpackError::UnsafeMember { .. }), "{err}");
    assert!(err.to_string().contains(".."), "{err}");
}

#[test]
fn manifest_listing_dotdot_is_refused_before_extraction() {
    let sb = Sandbox::new();
    let m = manifest(vec![member("recordings/r/../../../escaped", b"pwned")]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![file("recordings/r/../../../escaped", b"pwned")],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(matches!(err, UnpackError::UnsafeMember { .. }), "{err}");
}

#[test]
fn absolute_member_is_refused() {
    let sb = Sandbox::new();
    let target = sb.root.join("abs-escaped");
    let m = manifest(vec![member("recordings/r/version", b"x")]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![
            file("recordings/r/version", b"x"),
            file(target.to_str().unwrap(), b"pwned"),
        ],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(err.to_string().contains("absolute path"), "{err}");
    assert!(!target.exists());
}

#[test]
fn symlink_escape_is_refused() {
    let sb = Sandbox::new();
    let outside = sb.root.join("outside");
    let m = manifest(vec![member("recordings/r/link/pwned", b"pwned")]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![
            special(
                "recordings/r/link",
                tar::EntryType::Symlink,
                outside.to_str().unwrap(),
            ),
            file("recordings/r/link/pwned", b"pwned"),
        ],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn hard_links_devices_and_fifos_are_refused() {
    for (kind, what) in [
        (tar::EntryType::Link, "hard link"),
        (tar::EntryType::Char, "device"),
        (tar::EntryType::Block, "device"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let sb = Sandbox::new();
        let m = manifest(vec![member("recordings/r/version", b"x")]);
        craft(
            &sb.archive(),
            Some(&m),
            vec![special("recordings/r/x", kind, "/etc/passwd")],
        );
        let err = sb.refuse(&UnpackLimits::default());
        assert!(err.to_string().contains(what), "{kind:?}: {err}");
    }
}

#[test]
fn member_whose_hash_does_not_match_is_refused() {
    let sb = Sandbox::new();
    let m = manifest(vec![member("recordings/r/events", b"the recorded events")]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![file("recordings/r/events", b"the altered  events")],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(
        matches!(err, UnpackError::MemberHashMismatch { .. }),
        "{err}"
    );

    // A captured file whose content is not what its name says, manifest consistent with
    // the (false) name.
    let sb = Sandbox::new();
    let real = b"real libc";
    let name = blake3::hash(real).to_hex().to_string();
    let path = format!("files/{name}");
    let m = manifest(vec![Member {
        path: path.clone(),
        size: 9,
        blake3: name,
    }]);
    craft(&sb.archive(), Some(&m), vec![file(&path, b"evil libc")]);
    let err = sb.refuse(&UnpackLimits::default());
    assert!(
        matches!(err, UnpackError::MemberHashMismatch { .. }),
        "{err}"
    );
}

#[test]
fn unlisted_member_and_missing_manifest_are_refused() {
    let sb = Sandbox::new();
    let m = manifest(vec![member("recordings/r/version", b"x")]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![
            file("recordings/r/version", b"x"),
            file("recordings/r/extra", b"?"),
        ],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(
        err.to_string().contains("not listed in the manifest"),
        "{err}"
    );

    let sb = Sandbox::new();
    craft(
        &sb.archive(),
        None,
        vec![file("recordings/r/version", b"x")],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(matches!(err, UnpackError::NotAnArchive { .. }), "{err}");
}

#[test]
fn missing_member_is_refused() {
    let sb = Sandbox::new();
    let m = manifest(vec![
        member("recordings/r/version", b"x"),
        member("recordings/r/events", b"y"),
    ]);
    craft(
        &sb.archive(),
        Some(&m),
        vec![file("recordings/r/version", b"x")],
    );
    let err = sb.refuse(&UnpackLimits::default());
    assert!(matches!(err, UnpackError::MissingMember { .. }), "{err}");
}

#[test]
fn newer_format_is_refused_with_a_hint() {
    let sb = Sandbox::new();
    let mut m = manifest(vec![]);
    m.format_version = 99;
    craft(&sb.archive(), Some(&m), vec![]);
    let err = sb.refuse(&UnpackLimits::default());
    assert!(
        matches!(err, UnpackError::NewerFormat { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("install a newer cargo-chaos"));
}

fn real_archive(sb: &Sandbox, seed: &str) -> PathBuf {
    let trace = make_trace(&sb.root.join("trace"), &TraceSpec::new(seed));
    let packed = pack(&trace, &sb.work, &fast_options(), &mut quiet()).unwrap();
    fs::remove_dir_all(&trace).unwrap();
    packed.path
}

#[test]
fn truncated_archives_are_refused() {
    // Renamed without a hash, so only the stream itself can tell.
    for cut in [0.1, 0.5, 0.9, 0.999] {
        let sb = Sandbox::new();
        let good = real_archive(&sb, "truncate");
        let bytes = fs::read(&good).unwrap();
        fs::remove_file(&good).unwrap();
        let keep = ((bytes.len() as f64) * cut) as usize;
        fs::write(sb.archive(), &bytes[..keep]).unwrap();
        let err = sb.refuse(&UnpackLimits::default());
        let msg = err.to_string();
        assert!(
            msg.contains("damaged") || msg.contains("missing") || msg.contains("truncated"),
            "cut at {cut}: {msg}"
        );
    }
    // Cut inside the last bytes, name kept: the name's hash catches what the stream may not.
    let sb = Sandbox::new();
    let good = real_archive(&sb, "truncate-tail");
    let bytes = fs::read(&good).unwrap();
    fs::write(&good, &bytes[..bytes.len() - 4]).unwrap();
    let dest = sb.work.join("a/dest");
    let err = unpack(&good, &dest, &UnpackLimits::default(), &mut quiet()).unwrap_err();
    assert!(!dest.exists(), "{err}");
    assert!(dir_names(&sb.work.join("a")).is_empty());
}

#[test]
fn tampered_archive_is_refused_by_its_name() {
    let sb = Sandbox::new();
    let good = real_archive(&sb, "tamper");
    // Re-pack the same content differently: members intact, archive hash differs.
    let bytes = super::util::tar_bytes(&good);
    let re = zstd::stream::encode_all(&bytes[..], 1).unwrap();
    fs::write(&good, re).unwrap();
    let dest = sb.work.join("a/dest");
    let err = unpack(&good, &dest, &UnpackLimits::default(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, UnpackError::ArchiveHashMismatch { .. }),
        "{err}"
    );
    assert!(!dest.exists());
    assert!(dir_names(&sb.work.join("a")).is_empty());
}

#[test]
fn member_past_the_size_limit_is_refused() {
    // A real archive: libc is ~2 MiB, over a 1 MiB per-member limit.
    let sb = Sandbox::new();
    let good = real_archive(&sb, "limits");
    fs::rename(&good, sb.archive()).unwrap();
    let err = sb.refuse(&UnpackLimits::with_sizes(1 << 40, 1 << 20));
    assert!(matches!(err, UnpackError::LimitExceeded { .. }), "{err}");
    assert!(err.to_string().contains("raise the limit"));
    let err = sb.refuse(&UnpackLimits::with_sizes(1 << 20, 1 << 40));
    assert!(err.to_string().contains("total size"), "{err}");
}

#[test]
fn decompression_bomb_is_refused_without_writing_it() {
    // 256 MiB of zeros compress to a few KiB. The manifest admits it: refused up front.
    let sb = Sandbox::new();
    let big = 256u64 << 20;
    let m = manifest(vec![Member {
        path: "recordings/r/events".into(),
        size: big,
        blake3: "0".repeat(64),
    }]);
    let bomb = Raw {
        declared: Some(big),
        ..file("recordings/r/events", b"")
    };
    craft(&sb.archive(), Some(&m), vec![bomb]);
    assert!(fs::metadata(sb.archive()).unwrap().len() < 1 << 20);
    let err = sb.refuse(&UnpackLimits::with_sizes(64 << 20, 64 << 20));
    assert!(matches!(err, UnpackError::LimitExceeded { .. }), "{err}");

    // The manifest lies (10 bytes): refused at the member's header.
    let sb = Sandbox::new();
    let m = manifest(vec![member("recordings/r/events", b"0123456789")]);
    let bomb = Raw {
        declared: Some(big),
        ..file("recordings/r/events", b"")
    };
    craft(&sb.archive(), Some(&m), vec![bomb]);
    let err = sb.refuse(&UnpackLimits::with_sizes(64 << 20, 64 << 20));
    assert!(matches!(err, UnpackError::LimitExceeded { .. }), "{err}");
}
