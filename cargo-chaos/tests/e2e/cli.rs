//! The command line itself: `--quiet`, `dump`, the `cargo chaos` form, the default trace
//! directory, recorder errors.

use super::common::*;

#[test]
fn quiet_replay_shows_nothing_but_keeps_the_status() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("exit3"), &[]);
    assert_eq!(rec.program.status, 3, "{}", rec.program.show());
    assert!(!rec.program.stdout.is_empty() && !rec.program.stderr.is_empty());
    for flag in ["--quiet", "-q"] {
        let mut cmd = chaos_cmd(&[]);
        cmd.arg("replay").arg(flag).arg(&rec.trace);
        let replayed = run(&mut cmd);
        assert_eq!(replayed.status, 3, "{flag}\n{}", replayed.show());
        assert!(
            replayed.stdout.is_empty(),
            "{flag} printed the program's stdout\n{}",
            replayed.show()
        );
        assert!(
            replayed.stderr.is_empty(),
            "{flag} printed on stderr\n{}",
            replayed.show()
        );
    }
}

#[test]
fn dump_lists_every_event() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("random"), &[]);
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("dump").arg(&rec.trace);
    let dump = run(&mut cmd);
    assert_eq!(dump.status, 0, "{}", dump.show());
    let text = dump.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 3, "{text}");
    let mut tids = std::collections::BTreeSet::new();
    for (n, line) in lines.iter().enumerate() {
        // "   N tid=T description"
        let mut parts = line.split_whitespace();
        let num = parts.next().unwrap_or_default();
        assert_eq!(num, n.to_string(), "line {n} is not numbered {n}: {line}");
        let tid = parts.next().unwrap_or_default();
        assert!(
            tid.strip_prefix("tid=")
                .is_some_and(|t| t.parse::<u32>().is_ok()),
            "line {n} has no tid: {line}"
        );
        tids.insert(tid.to_string());
        assert!(
            parts.next().is_some(),
            "line {n} has no description: {line}"
        );
    }
    assert_eq!(
        tids.len(),
        1,
        "a single-threaded program has one tid: {tids:?}"
    );
    assert!(
        lines[0].contains(" exec "),
        "the first event is the exec: {}",
        lines[0]
    );
    assert!(
        lines.iter().any(|l| l.contains("syscall getrandom(")
            && l.contains("= 16")
            && l.contains("[wrote 16 bytes]")),
        "no getrandom line:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("syscall write(0x1,")),
        "no write to stdout:\n{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("syscall openat(")),
        "no openat:\n{text}"
    );
    assert!(
        lines.last().unwrap().ends_with("exit 0"),
        "the last event is the exit: {}",
        lines.last().unwrap()
    );
    let events = read_events(&rec.trace);
    assert_eq!(events.len(), lines.len(), "dump shows every event once");
    let result = recorder::trace::TraceDir::open(&rec.trace)
        .unwrap()
        .result()
        .unwrap()
        .expect("result.json");
    assert_eq!(
        result.events,
        lines.len() as u64,
        "result.json counts the events dump shows"
    );
}

#[test]
fn cargo_subcommand_form() {
    let dir = temp();
    let rec = RecordSpec::new(&fixture("random"), dir.path().join("trace"))
        .cargo_form()
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("chaos").arg("replay").arg(&rec.trace);
    let replayed = run(&mut cmd);
    assert_same("random via `cargo-chaos chaos`", &rec.program, &replayed);
}

#[test]
fn default_trace_directory() {
    let dir = temp();
    let data = dir.path().join("data");
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("record")
        .arg("--")
        .arg(fixture("exit3"))
        .env("XDG_DATA_HOME", &data);
    let raw = run(&mut cmd);
    assert_eq!(raw.status, 3, "{}", raw.show());
    let err = raw.stderr_str();
    let trace = err
        .lines()
        .find_map(|l| l.strip_prefix("chaos: trace written to "))
        .unwrap_or_else(|| {
            panic!(
                "the recorder did not say where the trace is\n{}",
                raw.show()
            )
        });
    let trace = std::path::PathBuf::from(trace);
    assert!(
        trace.starts_with(&data),
        "the trace {} is not under XDG_DATA_HOME",
        trace.display()
    );
    let program = split_record_output(&raw, &trace);
    assert_same(
        "exit3 from the default trace directory",
        &program,
        &replay(&trace),
    );
}

#[test]
fn unsupported_syscall_stops_the_recording() {
    // sysfs(2) (number 139) is in the table as unsupported.
    let dir = temp();
    let (raw, _) = RecordSpec::new(&fixture("rawsys"), dir.path().join("trace"))
        .args(["139", "3"])
        .record_raw();
    assert_eq!(raw.status, FAILED, "{}", raw.show());
    let err = raw.stderr_str();
    assert!(
        err.contains("sysfs"),
        "the message should name the syscall\n{}",
        raw.show()
    );
    assert!(
        err.to_lowercase().contains("hint"),
        "the message should give a hint\n{}",
        raw.show()
    );
}

/// The calls whose memory effects the recorder cannot handle yet are refused by their
/// rows (class "unsupported"), with the row's hint, before anything runs.
#[test]
fn calls_the_table_marks_unsupported_stop_the_recording_with_its_hint() {
    use recorder::syscalls::{by_name, Class};
    // A sample of the table's unsupported system calls. Not uprobe and uretprobe: the
    // kernel answers them only from a uprobe's trampoline, before seccomp and ptrace.
    for name in [
        "vmsplice",
        "name_to_handle_at",
        "migrate_pages",
        "io_setup",
        "move_pages",
        "remap_file_pages",
        "io_submit",
    ] {
        let row = by_name(name).expect(name);
        let Class::Unsupported { hint } = row.class else {
            panic!("{name} is not unsupported in syscalls.toml");
        };
        let dir = temp();
        let (raw, _) = RecordSpec::new(&fixture("rawsys"), dir.path().join("trace"))
            .args([row.nr.to_string().as_str()])
            .record_raw();
        assert_eq!(raw.status, FAILED, "{name}: {}", raw.show());
        let err = raw.stderr_str();
        assert!(
            err.contains(name) && err.contains(hint),
            "{name}: the message should name the call and give the table's hint `{hint}`\n{}",
            raw.show()
        );
        assert!(
            !raw.stdout_str().contains("returned"),
            "{name} ran\n{}",
            raw.show()
        );
    }
}

/// Every row of class "refused" (recorder/syscalls.toml) behaves as the table says: the
/// call never runs, the program gets the row's errno, and replay gives the same answer.
/// Backs the table-only check `classes_follow_the_design` (recorder/tests).
#[test]
fn calls_the_table_refuses_get_their_errno_in_record_and_replay() {
    use recorder::syscalls::{Class, SYSCALLS};
    let refused: Vec<_> = SYSCALLS
        .iter()
        .filter_map(|d| match d.class {
            Class::Refused { errno } => Some((d.name, d.nr, errno)),
            _ => None,
        })
        .collect();
    assert!(refused.len() >= 10, "refused rows: {refused:?}");
    for (name, nr, errno) in refused {
        let dir = temp();
        let trace = dir.path().join("trace");
        let (raw, _) = RecordSpec::new(&fixture("rawsys"), trace.clone())
            .args([nr.to_string().as_str()])
            .record_raw();
        let program = split_record_output(&raw, &trace);
        // strerror's text, as the C library words it (Rust's message adds " (os error N)").
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        assert!(
            program
                .stdout_str()
                .contains(&format!("syscall {nr} returned -1 ({text})")),
            "{name}: the program should get errno {errno} ({text})\n{}",
            program.show()
        );
        assert_same(name, &program, &replay(&trace));
    }
}

/// sched_setaffinity never runs (its row's `answer`): the recording stays pinned and the
/// program is told it worked, even with a mask the kernel would refuse (NULL); replay
/// gives the same answer.
#[test]
fn sched_setaffinity_is_answered_without_running() {
    use recorder::syscalls::by_name;
    let row = by_name("sched_setaffinity").expect("row");
    assert_eq!(row.answer, Some(0));
    let dir = temp();
    let trace = dir.path().join("trace");
    let nr = row.nr.to_string();
    let (raw, _) = RecordSpec::new(&fixture("rawsys"), trace.clone())
        .args([nr.as_str(), "0", "128", "0"])
        .record_raw();
    let program = split_record_output(&raw, &trace);
    assert!(
        program
            .stdout_str()
            .contains(&format!("syscall {nr} returned 0 (ok)")),
        "{}",
        program.show()
    );
    assert_same("sched_setaffinity", &program, &replay(&trace));
}

#[test]
fn a_32_bit_syscall_stops_the_recording() {
    let dir = temp();
    let (raw, _) = RecordSpec::new(&fixture("int80"), dir.path().join("trace")).record_raw();
    assert_eq!(raw.status, FAILED, "{}", raw.show());
    let err = raw.stderr_str();
    assert!(
        err.contains("32-bit system call") && err.to_lowercase().contains("hint"),
        "the message should say what the call was and give a hint\n{}",
        raw.show()
    );
}

#[test]
fn missing_program() {
    let dir = temp();
    let (raw, _) = RecordSpec::new(
        &dir.path().join("no-such-program"),
        dir.path().join("trace"),
    )
    .record_raw();
    assert_eq!(raw.status, FAILED, "{}", raw.show());
    assert!(
        raw.stderr_str().contains("no-such-program"),
        "the message should name the program\n{}",
        raw.show()
    );
}
