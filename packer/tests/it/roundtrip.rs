//! Pack, unpack, and get back exactly what was recorded.

use std::fs;

use packer::cache::Cache;
use packer::hash::{hash_file, hash_from_file_name};
use packer::manifest::TestIdentity;
use packer::{pack, pack_many, unpack, PackInput, PackOptions, UnpackLimits};

use crate::util::*;

#[test]
fn pack_unpack_roundtrip_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("run-1"), &TraceSpec::new("roundtrip"));
    let mut opts = fast_options();
    opts.test = TestIdentity {
        package: Some("my-crate".into()),
        binary: Some("integration".into()),
        test_name: Some("net::reconnects".into()),
    };
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut events = Vec::new();
    let packed = pack(&trace, &out, &opts, &mut |e| events.push(e.clone())).unwrap();

    // The name carries the hash of the content.
    let name = packed
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("net_reconnects-"), "{name}");
    assert_eq!(hash_from_file_name(&name).unwrap(), &packed.hash[..32]);
    assert_eq!(hash_file(&packed.path).unwrap(), packed.hash);
    assert_eq!(fs::metadata(&packed.path).unwrap().len(), packed.size);
    assert_eq!(
        dir_names(&out),
        vec![name.clone()],
        "no temporary file left"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        packer::ProgressEvent::Finished {
            phase: packer::Phase::Packing,
            ..
        }
    )));

    // The manifest says what the recording is.
    let m = &packed.manifest;
    assert_eq!(m.format, "cargo-chaos-archive");
    assert_eq!(m.format_version, 1);
    assert_eq!(m.recordings.len(), 1);
    let r = &m.recordings[0];
    assert_eq!(r.test.test_name.as_deref(), Some("net::reconnects"));
    assert_eq!(r.test.package.as_deref(), Some("my-crate"));
    assert_eq!(r.outcome.kind, "exited");
    assert_eq!(r.outcome.exit_code, Some(101));
    assert_eq!(r.argv[1], "net::reconnects");
    assert_eq!(r.recorded_on.hostname.as_deref(), Some("ci-runner-7"));
    assert!(r.stderr.text.contains("panicked at"));
    assert_eq!(r.cpu.source, packer::cpu::CpuSource::Recording);
    assert!(r.cpu.features.iter().any(|f| f == "sse2"));
    assert!(r.needs_cpuid_faulting);
    assert_eq!(r.files.len(), 3);
    assert_eq!(
        m.git_revision.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert!(m.packed_on.kernel.is_some());
    for member in &m.members {
        assert_eq!(member.blake3.len(), 64);
    }
    // The manifest is the first member, then everything it lists.
    let listed = list_members(&packed.path);
    assert_eq!(listed[0].0, "chaos-manifest.json");
    assert_eq!(listed.len(), m.members.len() + 1);
    assert_eq!(packer::read_manifest(&packed.path).unwrap(), *m);

    // Unpacked elsewhere: byte-identical recording.
    let dest = tmp.path().join("elsewhere/replay");
    let unpacked = unpack(&packed.path, &dest, &UnpackLimits::default(), &mut quiet()).unwrap();
    assert_eq!(unpacked.single_trace(), Some(dest.as_path()));
    let mut original = read_tree(&trace);
    let mut restored = read_tree(&dest);
    assert!(restored.remove("chaos-manifest.json").is_some());
    original.remove("chaos-manifest.json");
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        restored.keys().collect::<Vec<_>>()
    );
    assert!(original == restored, "content differs after the roundtrip");

    // Unpacked again into a non-empty directory: refused.
    let err = unpack(&packed.path, &dest, &UnpackLimits::default(), &mut quiet()).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");

    // An unpacked recording packs again (its saved manifest is not a member).
    let again = pack(&dest, &out, &opts, &mut quiet()).unwrap();
    assert_eq!(again.manifest.members, packed.manifest.members);
}

#[test]
fn recording_without_result_is_incomplete_and_cpu_comes_from_host() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("killed");
    spec.with_result = false;
    spec.captured.truncate(1);
    let trace = make_trace(&tmp.path().join("killed.trace"), &spec);
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let r = &packed.manifest.recordings[0];
    assert_eq!(r.name, "killed");
    assert_eq!(r.outcome.kind, "incomplete");
    assert_eq!(r.cpu.source, packer::cpu::CpuSource::PackingHost);
    assert!(!r.needs_cpuid_faulting);
    assert!(r.summary().contains("incomplete"));
    assert!(packer::compat::check(&packed.manifest).is_empty());
}

#[test]
fn not_a_trace_is_refused_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let err = pack(tmp.path(), tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("is not a recording") && msg.contains("(hint:"),
        "{msg}"
    );
}

#[test]
fn captured_file_changed_after_recording_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("changed"));
    let victim = fs::read_dir(trace.join("files"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let err = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    assert!(
        matches!(err, packer::PackError::CapturedFileChanged { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("record again"));
}

#[test]
fn symlink_in_recording_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("link"));
    std::os::unix::fs::symlink("/etc/passwd", trace.join("sneaky")).unwrap();
    let err = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn explicit_output_file_and_default_level() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("explicit"));
    let target = tmp.path().join("sub/dir/mine.chaos.tar.zst");
    let mut opts = PackOptions::default();
    opts.environment = Some(vec![]);
    opts.frame_cache = Some(tmp.path().join("frames"));
    let packed = pack(&trace, &target, &opts, &mut quiet()).unwrap();
    assert_eq!(packed.path, target);
    // Unnamed by hash, still verifiable member by member.
    let dest = tmp.path().join("u");
    unpack(&target, &dest, &UnpackLimits::default(), &mut quiet()).unwrap();
    // The stock tools read it too.
    let status = std::process::Command::new("zstd")
        .args(["-t", "-q"])
        .arg(&target)
        .status()
        .expect("zstd is installed (run .ci/packer-deps.sh)");
    assert!(status.success());
}

#[test]
fn cache_unpacks_once_and_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("cache"));
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let cache = Cache::new(tmp.path().join("cache"));
    let first = cache.open_archive(&packed.path, &mut quiet()).unwrap();
    assert_eq!(
        first.root,
        cache.traces_dir().join(&packed.hash[..32]),
        "keyed by the archive hash"
    );
    assert!(first.single_trace().unwrap().join("events").is_file());
    // The second open does not even read the archive.
    fs::remove_file(&packed.path).unwrap();
    let second = cache.open_archive(&packed.path, &mut quiet()).unwrap();
    assert_eq!(second.root, first.root);
    assert_eq!(
        dir_names(&cache.traces_dir()),
        vec![packed.hash[..32].to_string()]
    );
}

#[test]
fn cache_refuses_a_renamed_tampered_archive_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t"), &TraceSpec::new("tamper-cache"));
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let mut bytes = fs::read(&packed.path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    fs::write(&packed.path, bytes).unwrap();
    let cache = Cache::new(tmp.path().join("cache"));
    assert!(cache.open_archive(&packed.path, &mut quiet()).is_err());
    assert!(dir_names(&cache.traces_dir()).is_empty());
}

#[test]
fn several_recordings_unpack_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let a = make_trace(&tmp.path().join("a"), &TraceSpec::new("a"));
    let b = make_trace(&tmp.path().join("b"), &TraceSpec::new("b"));
    let inputs = [
        PackInput {
            trace: a.clone(),
            test: TestIdentity::default(),
        },
        PackInput {
            trace: b.clone(),
            test: TestIdentity::default(),
        },
    ];
    let packed = pack_many(&inputs, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let dest = tmp.path().join("both");
    let u = unpack(&packed.path, &dest, &UnpackLimits::default(), &mut quiet()).unwrap();
    assert_eq!(u.traces.len(), 2);
    assert_eq!(u.single_trace(), None);
    for (orig, t) in [a, b].iter().zip(&u.traces) {
        let mut restored = read_tree(&t.path);
        restored.remove("chaos-manifest.json");
        assert!(read_tree(orig) == restored, "{} differs", t.name);
    }
    assert_eq!(dir_names(&dest), vec!["a", "b", "chaos-manifest.json"]);
}
