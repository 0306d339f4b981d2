//! Replay in a changed environment: another cwd, another environment, another
//! RLIMIT_STACK, the program and its input files deleted, the recorded copies of the
//! output damaged. The replay must show exactly what the recording showed.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use super::common::*;

/// Writes the input file the fixtures read.
fn input_in(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("input.txt");
    std::fs::write(&p, "the recorded input\nline two\n").unwrap();
    p
}

/// The hard RLIMIT_STACK limit of this process ("unlimited" or bytes).
fn stack_hard_limit() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max stack size"))
        .expect("stack limit line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max stack size  SOFT  HARD  bytes"
    fields[fields.len() - 2].to_string()
}

fn with_fixture_var(value: &'static str) -> impl FnOnce(&mut Command) {
    move |c| {
        c.env("CHAOS_FIXTURE_VAR", value);
    }
}

#[test]
fn other_cwd() {
    let dir = temp();
    let rec_cwd = dir.path().join("recorded-here");
    let input = input_in(&rec_cwd);
    let cwd = rec_cwd.clone();
    let rec = RecordSpec::new(&fixture("fileio"), dir.path().join("trace"))
        .args([&input])
        .configure(move |c| {
            c.current_dir(cwd);
        })
        .record();
    assert!(rec
        .program
        .stdout_str()
        .contains(&format!("cwd={}", rec_cwd.display())));
    let elsewhere = temp();
    let replayed = replay_with(&rec.trace, &[], |c| {
        c.current_dir(elsewhere.path());
    });
    assert_same("fileio in another cwd", &rec.program, &replayed);
}

#[test]
fn other_environment() {
    let dir = temp();
    let input = input_in(dir.path());
    let rec = RecordSpec::new(&fixture("fileio"), dir.path().join("trace"))
        .args([&input])
        .configure(with_fixture_var("recorded"))
        .record();
    assert!(
        rec.program
            .stdout_str()
            .contains("CHAOS_FIXTURE_VAR=recorded"),
        "{}",
        rec.program.show()
    );
    let tmp = temp();
    let replayed = replay_with(&rec.trace, &[], |c| {
        c.env_clear()
            .env("CHAOS_FIXTURE_VAR", "changed at replay")
            .env("PATH", "/nonexistent")
            .env("HOME", "/nonexistent")
            .env("LD_LIBRARY_PATH", "/nonexistent")
            .env("LANG", "C")
            .env("TZ", "Pacific/Kiritimati")
            .env("TMPDIR", tmp.path());
    });
    assert_same("fileio in another environment", &rec.program, &replayed);
    let replayed = replay_with(&rec.trace, &[], |c| {
        c.env_clear();
    });
    assert_same("fileio with an empty environment", &rec.program, &replayed);
}

#[test]
fn other_stack_limit() {
    // Record under an 8 MiB soft limit; replay under 1 MiB and under the hard limit
    // (usually unlimited, which also switches the kernel to the legacy mmap layout).
    let dir = temp();
    let input = input_in(dir.path());
    for name in ["mmap", "fileio"] {
        let rec = RecordSpec::new(&fixture(name), dir.path().join(format!("trace-{name}")))
            .args([&input])
            .wrapper(["prlimit", "--stack=8388608:"])
            .record();
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        for limit in ["1048576".to_string(), stack_hard_limit()] {
            let arg = format!("--stack={limit}:");
            let replayed = replay_with(
                &rec.trace,
                &[OsStr::new("prlimit"), OsStr::new(&arg)],
                |_| {},
            );
            assert_same(
                &format!("{name} replayed with RLIMIT_STACK {limit}"),
                &rec.program,
                &replayed,
            );
        }
    }
}

#[test]
fn program_and_inputs_deleted() {
    let dir = temp();
    let bin_dir = dir.path().join("bin");
    let input_dir = dir.path().join("inputs");
    let input = input_in(&input_dir);
    for name in ["fileio", "mmap"] {
        let program = fixture_copy(name, &bin_dir);
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{name}")))
            .args([&input])
            .record();
        assert!(
            rec.program.stdout_str().contains("input"),
            "{}",
            rec.program.show()
        );
        std::fs::remove_dir_all(&bin_dir).unwrap();
        std::fs::remove_dir_all(&input_dir).unwrap();
        let replayed = replay(&rec.trace);
        assert_same(
            &format!("{name} with the program and its input deleted"),
            &rec.program,
            &replayed,
        );
        input_in(&input_dir);
    }
}

#[test]
fn recorded_output_copies_are_not_what_replay_prints() {
    // The trace keeps copies of the program's stdout and stderr for reports; replay must
    // produce its output from the program's own writes, so damaging the copies changes
    // nothing.
    let dir = temp();
    let rec = record(dir.path(), &fixture("random"), &[]);
    for name in ["stdout", "stderr"] {
        let p = rec.trace.join(name);
        if p.exists() {
            std::fs::write(&p, b"NOT WHAT THE PROGRAM WROTE\n").unwrap();
        }
    }
    let replayed = replay(&rec.trace);
    assert_same("random with damaged output copies", &rec.program, &replayed);
}

#[test]
fn everything_changed_at_once() {
    let dir = temp();
    let rec_cwd = dir.path().join("cwd");
    let input = input_in(&dir.path().join("inputs"));
    std::fs::create_dir_all(&rec_cwd).unwrap();
    let mut recordings = Vec::new();
    for name in ["fileio", "mmap", "time", "tcp", "random"] {
        let program = fixture_copy(name, &dir.path().join("bin"));
        let cwd = rec_cwd.clone();
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{name}")))
            .args([&input])
            .wrapper(["prlimit", "--stack=8388608:"])
            .configure(move |c| {
                c.current_dir(cwd).env("CHAOS_FIXTURE_VAR", "recorded");
            })
            .record();
        recordings.push((name, rec));
    }
    std::fs::remove_dir_all(dir.path().join("bin")).unwrap();
    std::fs::remove_dir_all(dir.path().join("inputs")).unwrap();
    std::fs::remove_dir_all(&rec_cwd).unwrap();
    let elsewhere = temp();
    let arg = "--stack=2097152:";
    for (name, rec) in &recordings {
        let replayed = replay_with(&rec.trace, &[OsStr::new("prlimit"), OsStr::new(arg)], |c| {
            c.current_dir(elsewhere.path())
                .env_clear()
                .env("CHAOS_FIXTURE_VAR", "changed");
        });
        assert_same(
            &format!("{name} in a changed environment"),
            &rec.program,
            &replayed,
        );
    }
}
