//! Record and replay as an ordinary user: the binary runs under
//! `setpriv --reuid=65534 --regid=65534 --clear-groups`, with the fixtures and the traces
//! in a world-writable temporary directory.

use std::os::unix::fs::PermissionsExt;

use super::common::*;

const SETPRIV: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

#[test]
fn record_and_replay_as_nobody() {
    if !is_root() {
        eprintln!("skipped: not running as root, so every other test already records and replays unprivileged");
        return;
    }
    let dir = temp();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for (name, status) in [
        ("random", 0),
        ("fileio", 0),
        ("time", 0),
        ("tcp", 0),
        ("cpuid", 0),
        ("segv", 139),
    ] {
        let program = fixture_copy(name, dir.path());
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().to_path_buf();
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{name}")))
            .wrapper(SETPRIV)
            .configure(move |c| {
                c.current_dir(&home).env("HOME", &home);
            })
            .record();
        assert_eq!(
            rec.program.status,
            status,
            "{name} recorded as nobody\n{}",
            rec.program.show()
        );
        let uid = std::fs::metadata(rec.trace.join("version"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(
            uid.ok(),
            Some(65534),
            "{name}: the trace should belong to the unprivileged user"
        );
        let wrapper: Vec<&std::ffi::OsStr> =
            SETPRIV.iter().map(|s| std::ffi::OsStr::new(*s)).collect();
        let replayed = replay_with(&rec.trace, &wrapper, |c| {
            c.current_dir(dir.path()).env("HOME", dir.path());
        });
        assert_same(&format!("{name} as nobody"), &rec.program, &replayed);
    }
}

/// Chaos time slices as an ordinary user: under `perf_event_paranoid` 2 an unprivileged
/// task-clock event may count user time only (the first attempt, kernel time included,
/// is refused with EACCES and the clock is opened again without it); where perf events
/// are refused altogether the recorder falls back to wall-clock slices. Either way the
/// workers are preempted inside their syscall-free loop and the recording replays.
#[test]
fn cpu_time_slices_as_nobody() {
    if !is_root() {
        eprintln!("skipped: not running as root, so every other test already records unprivileged");
        return;
    }
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4);
    let expected = if paranoid <= 2 {
        "time slices in its CPU time (task-clock)"
    } else {
        "time slices in wall-clock time for this recording"
    };
    let dir = temp();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let program = fixture_copy("preempt_race", dir.path());
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Where a slice ends is timing: once in a CI run (under the suite's load) the
    // first worker ran its whole loop unpreempted. Up to three recordings, until one
    // has a point (each is checked as below).
    let mut attempt = 0;
    let (raw, trace) = loop {
        attempt += 1;
        let home = dir.path().to_path_buf();
        let (raw, trace) = RecordSpec::new(&program, dir.path().join(format!("trace-{attempt}")))
            .args(["200000000"])
            .wrapper(SETPRIV)
            .configure(move |c| {
                c.current_dir(&home)
                    .env("HOME", &home)
                    .env("CHAOS_LOG", "recorder::record::slices=debug");
            })
            .record_raw();
        assert_eq!(raw.status, 0, "{}", raw.show());
        assert!(
            raw.stderr_str().contains(expected),
            "perf_event_paranoid {paranoid}: the log should say `{expected}`\n{}",
            raw.show()
        );
        let events = run(chaos_cmd(&[]).arg("dump").arg(&trace)).stdout_str();
        if events.lines().any(|l| l.contains(" preempted at ")) {
            break (raw, trace);
        }
        assert!(
            attempt < 3,
            "no worker was preempted in 3 recordings\n{events}"
        );
    };
    let wrapper: Vec<&std::ffi::OsStr> = SETPRIV.iter().map(|s| std::ffi::OsStr::new(*s)).collect();
    let replayed = replay_with(&trace, &wrapper, |c| {
        c.current_dir(dir.path()).env("HOME", dir.path());
    });
    assert_eq!(replayed.status, 0, "{}", replayed.show());
    let recorded = raw.stdout_str();
    assert!(
        recorded.contains(replayed.stdout_str().trim_end()),
        "the replay's output differs\nrecorded:\n{recorded}\nreplayed:\n{}",
        replayed.stdout_str()
    );
}

/// Syscall buffering's desched event as an ordinary user: the context-switch counter
/// counts kernel events, refused under `perf_event_paranoid` 2 or more without
/// `CAP_PERFMON`. Then the header says `desched: false`, the ping-pong's pipe reads are
/// traced from the start (none buffered and interrupted, none asking for an event), and
/// the recording replays; at 1 or less the event is there (on by default, unless a
/// container refuses perf events).
#[test]
fn desched_event_as_nobody() {
    if !is_root() {
        eprintln!("skipped: not running as root, so every other test already records unprivileged");
        return;
    }
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4);
    let dir = temp();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let program = fixture_copy("threads_pingpong", dir.path());
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().to_path_buf();
    let rec = RecordSpec::new(&program, dir.path().join("trace"))
        .args(["100"])
        .wrapper(SETPRIV)
        .configure(move |c| {
            c.current_dir(&home)
                .env("HOME", &home)
                .env("CARGO_CHAOS_SYSCALLBUF", "1")
                .env_remove("CARGO_CHAOS_DESCHED");
        })
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let header: recorder::trace::Header =
        serde_json::from_str(&std::fs::read_to_string(rec.trace.join("header.json")).unwrap())
            .unwrap();
    assert!(header.syscallbuf);
    if paranoid >= 2 {
        assert!(!header.desched, "paranoid {paranoid}");
    }
    let events = read_events(&rec.trace);
    let blocked = syscalls(&events)
        .filter(|(_, s)| s.ret == recorder::syscallbuf::abi::DESCHED_RET)
        .count();
    let asked = syscalls(&events)
        .filter(|(_, s)| s.args[5] == recorder::syscallbuf::abi::ASK_MARK)
        .count();
    if !header.desched {
        assert_eq!(blocked, 0, "buffered calls interrupted without the event");
        assert_eq!(asked, 0, "reads asking for an event that cannot be opened");
    }
    let wrapper: Vec<&std::ffi::OsStr> = SETPRIV.iter().map(|s| std::ffi::OsStr::new(*s)).collect();
    let replayed = replay_with(&rec.trace, &wrapper, |c| {
        c.current_dir(dir.path()).env("HOME", dir.path());
    });
    assert_same("threads_pingpong as nobody", &rec.program, &replayed);
}
