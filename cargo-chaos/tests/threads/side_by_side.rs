//! Two recordings running side by side in one process (as libtest runs tests on
//! parallel threads): each of two threads calls `recorder::record::record` on its own
//! multi-threaded fixture at the same moment, three times in a row; then both sets of
//! traces are replayed, again side by side, and every replay must show what its
//! recording showed. A recorder that waited for "any child" would steal the other
//! recording's stops and hang or garble both.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use recorder::output::Stream;
use recorder::record::{record, RecordOptions, Stdio};
use recorder::trace::Outcome;

use super::common::*;

const ROUNDS: usize = 3;

struct Recorded {
    trace: PathBuf,
    /// What the program wrote to its stdout and stderr files while recorded.
    program: Run,
}

fn record_rounds(program: PathBuf, dir: PathBuf, start: Arc<Barrier>) -> Vec<Recorded> {
    let name = program
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let env: Vec<(OsString, OsString)> = std::env::var_os("PATH")
        .map(|p| vec![("PATH".into(), p)])
        .unwrap_or_default();
    (0..ROUNDS)
        .map(|round| {
            start.wait();
            let trace = dir.join(format!("{name}-{round}"));
            let opts = RecordOptions {
                program: program.clone(),
                args: Vec::new(),
                env: env.clone(),
                removed_env: Vec::new(),
                cwd: None,
                trace_dir: trace.clone(),
                reuse_trace_dir: false,
                seed: None,
                chaos: Default::default(),
                no_watchdog: false,
                slice_clock: Default::default(),
                cpu: None,
                stdio: Stdio::Files {
                    stdout: dir.join(format!("{name}-{round}.stdout")),
                    stderr: dir.join(format!("{name}-{round}.stderr")),
                },
                // A safety net against a hang, never a statement about speed.
                timeout: Some(Duration::from_secs(timeout_secs())),
                interrupter: None,
                capture_cache: None,
                syscallbuf: false,
            };
            let summary = record(&opts)
                .unwrap_or_else(|e| panic!("recording {name} (round {round}) failed: {e}"));
            assert!(
                matches!(summary.result.outcome, Outcome::Exited | Outcome::Signaled),
                "HANG or failure: recording {name} (round {round}) ended with {:?}: {:?}",
                summary.result.outcome,
                summary.result.message
            );
            let read = |ext: &str| {
                let p = dir.join(format!("{name}-{round}.{ext}"));
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
            };
            Recorded {
                trace,
                program: Run {
                    what: format!("recording {name} (round {round}) in this process"),
                    status: summary.result.status,
                    stdout: read("stdout"),
                    stderr: read("stderr"),
                },
            }
        })
        .collect()
}

/// Replays `trace` in this process and compares with what the program wrote while it
/// was recorded, and its status.
fn check_replay(rec: &Recorded) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let summary = recorder::replay::replay(&rec.trace, &mut |stream, data: &[u8]| match stream {
        Stream::Stdout => out.extend_from_slice(data),
        Stream::Stderr => err.extend_from_slice(data),
    })
    .unwrap_or_else(|e| panic!("replaying {} failed: {e}", rec.trace.display()));
    let recorded = &rec.program;
    let replayed = Run {
        what: format!("replay of {} in this process", rec.trace.display()),
        status: summary.exit.status(),
        stdout: out,
        stderr: err,
    };
    assert_same(&rec.trace.display().to_string(), recorded, &replayed);
    assert_eq!(recorded.status, 0, "{}", recorded.show());
}

#[test]
fn two_recordings_side_by_side() {
    let dir = temp();
    let start = Arc::new(Barrier::new(2));
    let spawn = |name: &str| {
        let program = c_fixture(name);
        let dir = dir.path().to_path_buf();
        let start = Arc::clone(&start);
        std::thread::Builder::new()
            .name(format!("record-{name}"))
            .spawn(move || record_rounds(program, dir, start))
            .expect("spawn a recording thread")
    };
    let a = spawn("threads_epoll");
    let b = spawn("threads_pipe");
    let a = a.join().expect("the first recording thread");
    let b = b.join().expect("the second recording thread");

    let replays: Vec<_> = [a, b]
        .into_iter()
        .map(|recs| {
            std::thread::spawn(move || {
                for rec in &recs {
                    check_replay(rec);
                }
            })
        })
        .collect();
    for r in replays {
        if let Err(e) = r.join() {
            std::panic::resume_unwind(e);
        }
    }
}
