//! A hunt's worker records run after run on one thread, which each recording pins to one
//! core. Every recording must show the program the CPU set the thread had before any of
//! them (it used to pin the thread for good: from the second run on, programs saw one
//! CPU, and libtest ran their tests one at a time, so races between tests never showed).

use std::path::Path;

use recorder::record::{record_on_this_thread, RecordOptions, Stdio};

fn cpus_shown(scratch: &Path) -> String {
    let out = std::fs::read_to_string(scratch.join("stdout")).unwrap();
    out.lines()
        .find(|l| l.starts_with("cpus "))
        .unwrap_or_else(|| panic!("no cpu count in {out:?}"))
        .to_owned()
}

#[test]
fn every_recording_on_a_thread_shows_the_programs_the_same_cpus() {
    let dir = tempfile::Builder::new()
        .prefix("chaos-worker-")
        .tempdir()
        .unwrap();
    let program = test_support::fixture!("cpu_count");
    let before = recorder::spawn::cpu_set();
    let scratch = dir.path().to_owned();
    let (shown, after) = std::thread::spawn(move || {
        let shown: Vec<String> = (0..3)
            .map(|run| {
                let opts = RecordOptions {
                    program: program.clone(),
                    env: std::env::vars_os().collect(),
                    trace_dir: scratch.join("trace"),
                    reuse_trace_dir: true,
                    seed: Some(run),
                    stdio: Stdio::Files {
                        stdout: scratch.join("stdout"),
                        stderr: scratch.join("stderr"),
                    },
                    ..Default::default()
                };
                let summary = record_on_this_thread(&opts)
                    .unwrap_or_else(|e| panic!("recording {run} failed: {e}"));
                assert_eq!(summary.result.status, 0);
                cpus_shown(&scratch)
            })
            .collect();
        (shown, recorder::spawn::cpu_set())
    })
    .join()
    .unwrap();
    let expected = format!("cpus {}", before.len());
    assert_eq!(shown, vec![expected.clone(), expected.clone(), expected]);
    assert_eq!(after, before, "the worker thread gets its CPU set back");
}
