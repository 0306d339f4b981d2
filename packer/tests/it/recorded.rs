//! Recordings written by the recorder itself, read by the packer through the recorder's
//! trace format (`recorder::trace`): every field the manifest takes from header.json and
//! result.json arrives, an older recorder's files still read, and what the recorder never
//! writes is not read.

use std::fs;
use std::path::{Path, PathBuf};

use packer::{pack, PackError};
use recorder::record::{RecordOptions, Stdio};
use recorder::trace::TraceDir;
use serde_json::json;

use crate::util::{fast_options, make_trace, quiet, TraceSpec};

/// Records the C fixture `exit3` (it prints a line on each stream and exits with 3).
fn record_exit3(dir: &Path) -> PathBuf {
    let exe = test_support::fixture!("exit3");
    let trace = dir.join("exit3.trace");
    let opts = RecordOptions {
        program: exe,
        env: vec![("CHAOS_PACKER_TEST".into(), "yes".into())],
        removed_env: vec!["GITHUB_TOKEN".into()],
        cwd: Some(dir.to_path_buf()),
        trace_dir: trace.clone(),
        seed: Some(4242),
        stdio: Stdio::Files {
            stdout: trace.join("stdout"),
            stderr: trace.join("stderr"),
        },
        ..RecordOptions::default()
    };
    let summary = recorder::record::record(&opts).expect("recording exit3");
    assert_eq!(summary.result.status, 3);
    trace
}

#[test]
fn a_recorders_trace_packs_with_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = record_exit3(tmp.path());
    let dir = TraceDir::open(&trace).unwrap();
    let header = dir.header().unwrap();
    let result = dir.result().unwrap().expect("result.json");

    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let r = &packed.manifest.recordings[0];

    // header.json
    assert_eq!(
        r.trace_format_version,
        Some(u64::from(recorder::trace::FORMAT_VERSION))
    );
    assert_eq!(
        r.recorder_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(r.recorded_on.hostname, Some(recorder::host::hostname()));
    assert_eq!(r.recorded_on.kernel, Some(recorder::host::kernel_version()));
    assert_eq!(r.recorded_on.cpu_model, Some(recorder::host::cpu_model()));
    assert_eq!(r.argv, header.argv);
    assert!(r.argv[0].ends_with("exit3"), "{:?}", r.argv);
    assert_eq!(r.exe.as_deref(), Some(header.exe.as_str()));
    assert!(r.exe.as_deref().unwrap().ends_with("exit3"));
    assert_eq!(r.cwd.as_deref(), Some(tmp.path().to_str().unwrap()));
    assert_eq!(r.env, vec![("CHAOS_PACKER_TEST".into(), "yes".into())]);
    assert_eq!(r.removed_env, vec!["GITHUB_TOKEN".to_string()]);
    assert_eq!(r.seed, Some(4242));
    assert_eq!(r.started_unix_ms, Some(header.started_unix_ms));
    assert!(header.started_unix_ms > 1_700_000_000_000);
    // Set from header.json's `cpuid_faulting` (the recorder arms it where the machine
    // allows) or from result.json's answers.
    assert_eq!(
        r.needs_cpuid_faulting,
        header.cpuid_faulting || !result.cpuid_leaves.is_empty()
    );
    assert_eq!(
        header.cpuid_faulting,
        recorder::arch::cpuid_faulting_available()
    );

    // result.json
    assert_eq!(r.outcome.kind, "exited");
    assert_eq!(r.outcome.exit_code, Some(3));
    assert_eq!(r.outcome.signal, None);
    assert_eq!(r.outcome.status, Some(3));
    assert_eq!(r.outcome.events, Some(result.events));
    assert!(result.events > 0);
    assert_eq!(r.outcome.message, None);
    assert!(
        r.stdout.text.starts_with("exiting with 3"),
        "{:?}",
        r.stdout
    );
    assert_eq!(r.stderr.text, "exit3: goodbye\n");

    // files/: every captured file, named by the recorder's rule.
    let captured: Vec<String> = fs::read_dir(trace.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!captured.is_empty());
    assert!(captured.iter().all(|n| recorder::trace::is_file_name(n)));
    let mut listed = r.files.clone();
    let mut captured = captured;
    listed.sort();
    captured.sort();
    assert_eq!(listed, captured);

    // The packing machine's facts come from the same place.
    assert_eq!(
        packed.manifest.packed_on,
        packer::sysinfo::HostInfo::current()
    );
    assert_eq!(packed.manifest.packed_on.kernel, r.recorded_on.kernel);
}

/// header.json and result.json as the first recorder wrote them: without `untraced`
/// (header) and without `tick_requests`, `lookups_answered` and `trace_error` (result).
#[test]
fn an_older_recorders_files_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("old.trace");
    fs::create_dir_all(trace.join("files")).unwrap();
    fs::write(trace.join("version"), "chaos-trace 1\n").unwrap();
    let header = json!({
        "format_version": 1, "tool_version": "0.0.9",
        "argv": ["./prog"], "cwd": "/w", "env": [["A", "1"]], "removed_env": [],
        "exe": "/w/prog", "hostname": "old-host", "kernel": "5.10.0 #1", "cpu_model": "Old CPU",
        "seed": 7, "aslr_disabled": true, "cpuid_faulting": true, "cpu_set": [0],
        "pinned_cpu": 0, "started_unix_ms": 1_700_000_000_000u64,
    });
    let result = json!({
        "outcome": "signaled", "exit_code": null, "signal": 6, "status": 134,
        "events": 12, "cpuid_leaves": [], "message": null,
    });
    fs::write(trace.join("header.json"), header.to_string()).unwrap();
    fs::write(trace.join("result.json"), result.to_string()).unwrap();
    fs::write(trace.join("events"), b"").unwrap();

    let dir = TraceDir::open(&trace).unwrap();
    let h = dir.header().unwrap();
    assert!(h.untraced.is_empty());
    assert_eq!(h.seed, 7);
    let res = dir.result().unwrap().unwrap();
    assert_eq!((res.tick_requests, res.lookups_answered), (0, 0));
    assert_eq!(res.trace_error, None);

    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    let r = &packed.manifest.recordings[0];
    assert_eq!(r.trace_format_version, Some(1));
    assert_eq!(r.recorded_on.hostname.as_deref(), Some("old-host"));
    assert_eq!(r.outcome.kind, "signaled");
    assert_eq!(r.outcome.signal, Some(6));
    assert_eq!(r.outcome.status, Some(134));
    assert_eq!(r.outcome.events, Some(12));
    // No answers recorded, but header.json says CPUID faulting was armed.
    assert!(r.needs_cpuid_faulting);
}

/// `cpuid_faulting` is a header.json fact: the same key in result.json (where the
/// recorder never writes it) means nothing.
#[test]
fn cpuid_faulting_is_read_from_the_header_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = TraceSpec::new("no-faulting");
    spec.with_result = false;
    let trace = make_trace(&tmp.path().join("t.trace"), &spec);
    fs::write(
        trace.join("result.json"),
        json!({"outcome": "exited", "exit_code": 0, "status": 0, "cpuid_faulting": true})
            .to_string(),
    )
    .unwrap();
    let packed = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    assert!(!packed.manifest.recordings[0].needs_cpuid_faulting);
}

/// The recorder writes the environment as `[["KEY", "VALUE"], ...]`; the object form it
/// never wrote is a damaged header, not a second spelling.
#[test]
fn the_environment_has_the_recorders_form_only() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t.trace"), &TraceSpec::new("env-object"));
    let path = trace.join("header.json");
    let mut header: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    header["env"] = json!({"PATH": "/usr/bin"});
    fs::write(&path, header.to_string()).unwrap();
    match pack(&trace, tmp.path(), &fast_options(), &mut quiet()) {
        Err(PackError::BadJson { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a damaged header.json, got {other:?}"),
    }
}

/// The version lines are the recorder's.
#[test]
fn version_lines_are_the_recorders() {
    assert_eq!(packer::TRACE_VERSION_LINE, recorder::trace::VERSION_LINE);
    let tmp = tempfile::tempdir().unwrap();
    let trace = make_trace(&tmp.path().join("t.trace"), &TraceSpec::new("v"));
    // The next format, which this build cannot read.
    let next = format!("chaos-trace {}\n", recorder::trace::FORMAT_VERSION + 1);
    fs::write(trace.join("version"), next).unwrap();
    let err = pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap_err();
    assert!(matches!(err, PackError::UnsupportedTrace { .. }), "{err}");
    for line in recorder::trace::READABLE_VERSION_LINES {
        assert!(err.to_string().contains(line), "{err}");
        fs::write(trace.join("version"), format!("{line}\n")).unwrap();
        pack(&trace, tmp.path(), &fast_options(), &mut quiet()).unwrap();
    }
}
