//! Per-member zstd frames and the frame cache: archives read the same whichever way the
//! stream is cut, cached frames are reused only after verification, and a damaged or
//! tampered cache never makes a bad archive.

use std::fs;
use std::path::{Path, PathBuf};

use packer::manifest::TestIdentity;
use packer::{pack, pack_many, unpack, warm, Framing, PackInput, PackOptions, UnpackLimits};

use crate::util::*;

fn options(cache: &Path, framing: Framing) -> PackOptions {
    let mut o = fast_options();
    o.frame_cache = Some(cache.to_path_buf());
    o.framing = framing;
    o
}

fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zst"))
        .collect();
    v.sort();
    v
}

/// Number of zstd frames in a file (walking the frame headers).
fn frame_count(archive: &Path) -> usize {
    let bytes = fs::read(archive).unwrap();
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let len = zstd::zstd_safe::find_frame_compressed_size(&bytes[at..]).unwrap();
        at += len;
        n += 1;
    }
    n
}

/// Unpacks and compares every file with the recording it came from.
fn assert_unpacks_to(archive: &Path, trace: &Path, dest: &Path) {
    let unpacked = unpack(archive, dest, &UnpackLimits::default(), &mut quiet()).unwrap();
    let mut got = read_tree(unpacked.single_trace().unwrap());
    got.remove("chaos-manifest.json");
    assert_eq!(got, read_tree(trace));
}

#[test]
fn per_member_frames_unpack_identically_and_stock_zstd_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("frames"));
    let cache = tmp.path().join("frames");
    let packed = pack(
        &trace,
        tmp.path(),
        &options(&cache, Framing::PerMember),
        &mut quiet(),
    )
    .unwrap();
    // Three captured files, each its own frame, with frames for the tar bytes around them.
    assert_eq!(packed.frames.compressed, 3);
    assert_eq!(packed.frames.reused, 0);
    assert_eq!(packed.frames.stored, 3);
    assert_eq!(cache_entries(&cache).len(), 3);
    assert_eq!(frame_count(&packed.path), 7);
    assert_unpacks_to(&packed.path, &trace, &tmp.path().join("u"));
    let status = std::process::Command::new("zstd")
        .args(["-t", "-q"])
        .arg(&packed.path)
        .status()
        .expect("zstd is installed (run .ci/packer-deps.sh)");
    assert!(status.success());

    // The same tar stream as one frame: only the compression differs.
    let solid = pack(
        &trace,
        &tmp.path().join("solid.chaos.tar.zst"),
        &options(&cache, Framing::Solid),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(frame_count(&solid.path), 1);
    assert_eq!(solid.frames, Default::default());
    assert_unpacks_to(&solid.path, &trace, &tmp.path().join("u2"));
}

#[test]
fn warmed_frames_are_reused_and_the_archive_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let first = make_trace(&tmp.path().join("first"), &TraceSpec::new("first"));
    let second = make_trace(&tmp.path().join("second"), &TraceSpec::new("second"));
    let cache = tmp.path().join("frames");
    let opts = options(&cache, Framing::Auto);

    let report = warm(&first, &opts).unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.frames.compressed, 3);
    assert_eq!(report.frames.stored, 3);
    // Warming again finds them all.
    let again = warm(&first, &opts).unwrap();
    assert_eq!((again.frames.reused, again.frames.compressed), (3, 0));

    // A later recording of the same binary: every captured file comes from the cache.
    let packed = pack(&second, tmp.path(), &opts, &mut quiet()).unwrap();
    assert_eq!(packed.frames.reused, 3);
    assert_eq!(packed.frames.compressed, 0);
    assert_eq!(packed.frames.rejected, 0);
    assert_unpacks_to(&packed.path, &second, &tmp.path().join("u"));

    // Without the cache: the same content, compressed now.
    let cold = pack(
        &second,
        &tmp.path().join("cold.chaos.tar.zst"),
        &fast_options(),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(cold.frames.compressed, 3);
    assert_unpacks_to(&cold.path, &second, &tmp.path().join("u2"));
}

#[test]
fn warm_takes_the_recorders_shared_capture_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("shared"));
    // Files named by hash, as the recorder's capture cache keeps them; others are ignored,
    // and a file whose content does not match its name is skipped.
    let shared = tmp.path().join("captured-files");
    fs::create_dir(&shared).unwrap();
    for e in fs::read_dir(trace.join("files")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), shared.join(e.file_name())).unwrap();
    }
    fs::write(shared.join("notes.txt"), b"not captured").unwrap();
    fs::write(shared.join("0".repeat(64)), b"does not hash to zeros").unwrap();
    let cache = tmp.path().join("frames");
    let opts = options(&cache, Framing::Auto);
    let report = warm(&shared, &opts).unwrap();
    assert_eq!(report.files, 4);
    assert_eq!(report.skipped, 1);
    assert_eq!(report.frames.stored, 3);
    assert_eq!(cache_entries(&cache).len(), 3);
    let packed = pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap();
    assert_eq!(packed.frames.reused, 3);
}

#[test]
fn damaged_or_tampered_cache_entries_are_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("tamper"));
    let cache = tmp.path().join("frames");
    let opts = options(&cache, Framing::PerMember);
    warm(&trace, &opts).unwrap();
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 3);

    // 1. A flipped byte in the middle of a frame.
    let mut bytes = fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&entries[0], bytes).unwrap();
    // 2. A valid frame of other content, under the name of this one.
    let other = zstd::encode_all(&noise("other", 4096)[..], 3).unwrap();
    fs::write(&entries[1], other).unwrap();

    let packed = pack(&trace, tmp.path(), &opts, &mut quiet()).unwrap();
    assert_eq!(packed.frames.rejected, 2);
    assert_eq!(packed.frames.reused, 1);
    assert_eq!(packed.frames.compressed, 2);
    // The bad entries were replaced by good ones.
    assert_eq!(packed.frames.stored, 2);
    assert_unpacks_to(&packed.path, &trace, &tmp.path().join("u"));
    let again = pack(
        &trace,
        &tmp.path().join("again.chaos.tar.zst"),
        &opts,
        &mut quiet(),
    )
    .unwrap();
    assert_eq!((again.frames.reused, again.frames.rejected), (3, 0));

    // 3. A truncated frame.
    let bytes = fs::read(&entries[2]).unwrap();
    fs::write(&entries[2], &bytes[..bytes.len() - 5]).unwrap();
    let third = pack(
        &trace,
        &tmp.path().join("third.chaos.tar.zst"),
        &opts,
        &mut quiet(),
    )
    .unwrap();
    assert_eq!((third.frames.rejected, third.frames.reused), (1, 2));
    assert_unpacks_to(&third.path, &trace, &tmp.path().join("u3"));
}

#[test]
fn several_recordings_default_to_one_solid_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let a = make_trace(&tmp.path().join("a"), &TraceSpec::new("a"));
    let b = make_trace(&tmp.path().join("b"), &TraceSpec::new("b"));
    let inputs: Vec<PackInput> = [&a, &b]
        .iter()
        .map(|t| PackInput {
            trace: t.to_path_buf(),
            test: TestIdentity::default(),
        })
        .collect();
    let cache = tmp.path().join("frames");
    let packed = pack_many(
        &inputs,
        tmp.path(),
        &options(&cache, Framing::Auto),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(frame_count(&packed.path), 1);
    assert!(!cache.exists());
    let per_member = pack_many(
        &inputs,
        &tmp.path().join("pm.chaos.tar.zst"),
        &options(&cache, Framing::PerMember),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(per_member.frames.compressed, 3);
    let dest = tmp.path().join("u");
    let unpacked = unpack(
        &per_member.path,
        &dest,
        &UnpackLimits::default(),
        &mut quiet(),
    )
    .unwrap();
    assert_eq!(unpacked.traces.len(), 2);
}
