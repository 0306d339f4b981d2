//! A hunt records run after run into one scratch directory (`reuse_trace_dir`): each
//! recording there must be exactly what a fresh directory would hold. Two different
//! programs are recorded into one directory, with a capture cache as a hunt has; the
//! second trace replays its own output, and its `files/` holds what the second program
//! captured and nothing the first left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use recorder::output::Stream;
use recorder::record::{record_on_this_thread, RecordOptions, Stdio};
use recorder::replay::replay;
use recorder::trace::{CaptureCache, Event};
use test_support::read_events;

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The hashes the trace's events refer to: the exec images' mappings and mmap'ed files.
fn referenced_files(trace: &Path) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for e in read_events(trace) {
        match e {
            Event::Exec(state) => {
                used.extend(state.mappings.iter().filter_map(|m| m.file.clone()));
            }
            Event::Syscall(s) => used.extend(s.file),
            _ => {}
        }
    }
    used
}

fn record_into(program: PathBuf, args: &[&str], scratch: &Path, cache: &CaptureCache) -> PathBuf {
    let trace = scratch.join("trace");
    let opts = RecordOptions {
        program,
        args: args.iter().map(Into::into).collect(),
        env: std::env::vars_os().collect(),
        trace_dir: trace.clone(),
        reuse_trace_dir: true,
        seed: Some(7),
        stdio: Stdio::Files {
            stdout: scratch.join("stdout"),
            stderr: scratch.join("stderr"),
        },
        capture_cache: Some(cache.clone()),
        ..Default::default()
    };
    // A thread of its own, as a hunt's worker is.
    let summary = std::thread::spawn(move || record_on_this_thread(&opts))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("recording failed: {e}"));
    assert_eq!(summary.result.status, 0);
    trace
}

#[test]
fn a_reused_directory_holds_only_the_last_recording() {
    let dir = tempfile::Builder::new()
        .prefix("chaos-reuse-")
        .tempdir()
        .unwrap();
    let scratch = dir.path().join("job-0");
    let cache = CaptureCache::new(dir.path().join("captured-files"));
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "mapped input\n").unwrap();

    // The first program maps an input file the second never opens.
    let first = record_into(
        test_support::fixture!("mmap"),
        &[input.to_str().unwrap()],
        &scratch,
        &cache,
    );
    let first_files = names_in(&first.join("files"));
    let trace = record_into(test_support::fixture!("random"), &[], &scratch, &cache);

    let files = names_in(&trace.join("files"));
    assert_eq!(
        files,
        referenced_files(&trace),
        "files/ must hold exactly what the last recording refers to"
    );
    assert!(
        first_files.difference(&files).next().is_some(),
        "the first recording captured files the second did not (the input at least)"
    );

    let recorded = std::fs::read(scratch.join("stdout")).unwrap();
    let mut replayed = Vec::new();
    let mut sink = |stream: Stream, data: &[u8]| {
        if let Stream::Stdout = stream {
            replayed.extend_from_slice(data);
        }
    };
    let summary = replay(&trace, &mut sink).unwrap_or_else(|e| panic!("replay failed: {e}"));
    assert_eq!(summary.exit.status(), 0);
    assert!(!recorded.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&replayed),
        String::from_utf8_lossy(&recorded),
        "the replay prints what the last recording printed"
    );
}
