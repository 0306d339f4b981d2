//! Debugging a captured run with real gdb: `cargo-chaos replay TRACE --gdb` launches
//! gdb in batch mode on a script (`--gdb-arg`), and the tests assert on what gdb
//! prints. The C fixtures print the nondeterministic values they use; gdb must show the
//! recorded ones, going forwards and backwards.

#[path = "e2e/common.rs"]
#[allow(dead_code, unused_imports)]
mod common;

use std::path::Path;

use common::{chaos_cmd, fixture, record, run, temp, Run};

/// Runs `cargo-chaos replay TRACE --gdb [start...]` with gdb running `script`.
fn gdb(trace: &Path, start: &[&str], script: &str) -> Run {
    let dir = temp();
    let file = dir.path().join("script.gdb");
    std::fs::write(&file, script).unwrap();
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("replay")
        .arg(trace)
        .arg("--gdb")
        .arg("--quiet")
        .args(start)
        .args(["--gdb-arg=-batch", "--gdb-arg=-nx", "--gdb-arg=-x"])
        .arg(format!("--gdb-arg={}", file.display()));
    run(&mut cmd)
}

/// `cargo replay-artifact ARCHIVE --gdb`: the archive alone (its binaries, under their
/// recorded paths) is enough for gdb to stop on the function, show the recorded
/// arguments and go back to the earlier call.
#[test]
fn replay_artifact_serves_an_archive_to_gdb() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let archive = dir.path().join("captured.chaos.tar.zst");
    let packed = run(chaos_cmd(&[])
        .arg("pack")
        .arg(&rec.trace)
        .arg("-o")
        .arg(&archive));
    assert_eq!(packed.status, 0, "{}", packed.show());
    let script = dir.path().join("script.gdb");
    std::fs::write(
        &script,
        "break target\ncontinue\ncontinue\np a\nreverse-continue\np a\ninfo sharedlibrary\n",
    )
    .unwrap();
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_cargo-replay-artifact"))
            .arg("replay-artifact")
            .arg(&archive)
            .arg("--quiet")
            .arg("--gdb")
            .args(["--gdb-arg=-batch", "--gdb-arg=-nx", "--gdb-arg=-x"])
            .arg(format!("--gdb-arg={}", script.display()))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(std::process::Stdio::null()),
    );
    let text = all(&out);
    assert_eq!(out.status, 0, "{}", out.show());
    let printed = calls(&rec.program.stdout_str());
    assert_eq!(
        values(&out.stdout_str()),
        [printed[1].0.to_string(), printed[0].0.to_string()],
        "{text}"
    );
    // libc comes from the archive (linked under its soname), not from the host.
    let libc = text
        .lines()
        .find(|l| l.contains("libc.so.6"))
        .unwrap_or_else(|| panic!("no libc in the library list: {text}"));
    assert!(libc.contains("chaos-gdb-"), "{libc}");
    // Every library has its symbols, the syscall-buffering one too (`LD_PRELOAD` loads
    // it by a name made of its hash, not by its soname).
    assert!(
        !text.contains("Could not load shared library symbols"),
        "{text}"
    );
}

/// gdb's machine interface, what IDEs drive (`gdb --interpreter=mi`, commands on its
/// standard input): breakpoint stops forwards and backwards, with the recorded values.
#[test]
fn the_machine_interface_reverse_continues_too() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let commands = dir.path().join("commands.mi");
    std::fs::write(
        &commands,
        "-break-insert target\n-exec-continue\n-exec-continue\n-data-evaluate-expression a\n\
         -exec-continue --reverse\n-data-evaluate-expression a\n-gdb-exit\n",
    )
    .unwrap();
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("replay")
        .arg(&rec.trace)
        .args([
            "--quiet",
            "--gdb",
            "--gdb-arg=--interpreter=mi",
            "--gdb-arg=-nx",
        ])
        .stdin(std::fs::File::open(&commands).unwrap());
    let out = run(&mut cmd);
    let text = all(&out);
    let hits = text
        .lines()
        .filter(|l| l.starts_with("*stopped,reason=\"breakpoint-hit\""))
        .count();
    assert_eq!(hits, 3, "two forwards, one backwards: {text}");
    let printed = calls(&rec.program.stdout_str());
    let evaluated: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("^done,value=\""))
        .map(|v| v.trim_end_matches('"'))
        .collect();
    assert_eq!(
        evaluated,
        [printed[1].0.to_string(), printed[0].0.to_string()],
        "{text}"
    );
}

/// The `(a, b)` of each "call N: target(a, b)" line of breakpoint_target.
fn calls(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter_map(|l| {
            let args = l.split_once("target(")?.1.strip_suffix(')')?;
            let (a, b) = args.split_once(", ")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// What gdb printed, both streams (in batch mode the `monitor` replies go to stderr).
fn all(out: &Run) -> String {
    out.stdout_str() + &out.stderr_str()
}

/// gdb's `$N = V` lines, values only.
fn values(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with('$'))
        .filter_map(|l| Some(l.split_once(" = ")?.1.to_string()))
        .collect()
}

fn when_lines(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Current event: ")?.trim().parse().ok())
        .collect()
}

/// A breakpoint on a function of the program shows the arguments it printed; going
/// back with reverse-continue shows the earlier call's, and the start of the
/// recording ends the way back. The same positions every time.
#[test]
fn breakpoints_forwards_then_reverse_continue_to_the_earlier_calls() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let printed = calls(&rec.program.stdout_str());
    assert_eq!(printed.len(), 5);
    let script = "\
break target
continue
continue
continue
p a
p b
bt
monitor when
reverse-continue
p a
p b
monitor when
reverse-continue
p a
reverse-continue
monitor when
continue
p a
";
    let mut first: Option<String> = None;
    for round in 0..2 {
        let out = gdb(&rec.trace, &[], script);
        let text = out.show();
        assert_eq!(out.status, 0, "{text}");
        let v = values(&out.stdout_str());
        let want: Vec<String> = [
            printed[2].0,
            printed[2].1,
            printed[1].0,
            printed[1].1,
            printed[0].0,
            printed[0].0,
        ]
        .iter()
        .map(|n| n.to_string())
        .collect();
        assert_eq!(v, want, "{text}");
        assert!(text.contains(" in main ("), "bt shows the caller: {text}");
        assert!(
            text.contains("No more reverse-execution history"),
            "the way back ends at the start: {text}"
        );
        let when = when_lines(&all(&out));
        assert_eq!(when.len(), 3, "{text}");
        assert!(when[0] > when[1], "{when:?}");
        // Repeatable: the second session prints exactly what the first did.
        let shown = format!("{v:?} {when:?}");
        match &first {
            None => first = Some(shown),
            Some(f) => assert_eq!(f, &shown, "round {round}"),
        }
    }
}

/// The lines of gdb_threads' output: (thread number, tid, value stored).
fn stores(out: &str) -> Vec<(u64, u64, i64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("thread ")?;
            let (n, rest) = rest.split_once(" (tid ")?;
            let (tid, rest) = rest.split_once(") stored ")?;
            Some((n.parse().ok()?, tid.parse().ok()?, rest.parse().ok()?))
        })
        .collect()
}

/// A watchpoint going backwards from the end, in code not built with `--instrument`
/// and with two threads: each reverse-continue stops just before the previous store,
/// on the thread that made it (the value is the one before the store); continue goes
/// forward over the store again.
#[test]
fn a_watchpoint_in_reverse_finds_each_earlier_store_on_its_thread() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("gdb_threads"), &[]);
    let s = stores(&rec.program.stdout_str());
    assert_eq!(s.len(), 6, "{}", rec.program.stdout_str());
    let script = "\
watch shared
reverse-continue
p shared
p id
thread
reverse-continue
p shared
p id
thread
reverse-continue
p shared
continue
p shared
";
    let out = gdb(&rec.trace, &["--gdb-at-end"], script);
    let text = out.show();
    assert_eq!(out.status, 0, "{text}");
    let v = values(&out.stdout_str());
    let want: Vec<String> = vec![
        s[4].2.to_string(), // before the last store
        s[5].0.to_string(), // by the last storer
        s[3].2.to_string(),
        s[4].0.to_string(),
        s[2].2.to_string(),
        s[3].2.to_string(), // forward over the store of s[3]
    ];
    assert_eq!(v, want, "{text}");
    // gdb names threads by their recorded tids: the stops are on the storers.
    let current: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("[Current thread is"))
        .collect();
    assert_eq!(current.len(), 2, "{text}");
    assert!(
        current[0].contains(&format!("(Thread 1.{})", s[5].1)),
        "{text}"
    );
    assert!(
        current[1].contains(&format!("(Thread 1.{})", s[4].1)),
        "{text}"
    );
    assert!(text.contains("Hardware watchpoint 1: shared"), "{text}");
}

/// Stepping back: from a stop reached by `continue`, N reverse-stepi land where a
/// fresh session run forward to the same stop lands after N fewer stepi: same
/// registers, same position.
#[test]
fn reverse_stepi_retraces_forward_stepi_exactly() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let fwd = "\
break target
continue
continue
stepi
info registers rip rsp rax rdi
monitor where
stepi
stepi
stepi
info registers rip rsp rax rdi
monitor when
";
    let back = "\
break target
continue
continue
stepi
stepi
stepi
stepi
info registers rip rsp rax rdi
reverse-stepi
reverse-stepi
reverse-stepi
info registers rip rsp rax rdi
monitor where
monitor when
";
    let regs = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| {
                ["rip ", "rsp ", "rax ", "rdi "]
                    .iter()
                    .any(|r| l.starts_with(r))
            })
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let f = gdb(&rec.trace, &[], fwd);
    let b = gdb(&rec.trace, &[], back);
    let (ft, bt) = (all(&f), all(&b));
    let (fr, br) = (regs(&ft), regs(&bt));
    assert_eq!(fr.len(), 8, "{}", f.show());
    assert_eq!(br.len(), 8, "{}", b.show());
    assert_eq!(fr[4..], br[..4], "four steps forward agree:\n{ft}\n{bt}");
    assert_eq!(
        fr[..4],
        br[4..],
        "three steps back land on step one:\n{ft}\n{bt}"
    );
    let where_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("event "))
            .map(str::to_string)
    };
    assert_eq!(where_line(&ft), where_line(&bt), "the same position");
    assert_eq!(when_lines(&ft), when_lines(&bt));
}

/// gdb's line-level reverse commands, built from reverse steps and reverse-continue:
/// `reverse-finish` from inside `target` lands in `main` at the call; `reverse-next`
/// from after the call goes back over it to the line before without entering it.
#[test]
fn reverse_finish_and_reverse_next_stay_in_the_caller() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let script = "\
break target
continue
continue
reverse-finish
frame
delete
next
reverse-next
frame
reverse-next
frame
";
    let out = gdb(&rec.trace, &[], script);
    let text = all(&out);
    assert_eq!(out.status, 0, "{}", out.show());
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with("#0 ")).collect();
    assert_eq!(frames.len(), 3, "{text}");
    for f in &frames {
        assert!(f.contains(" main ("), "in the caller: {f}\n{text}");
    }
    // The line of main's call (the fixture's last `sum += target(a, b);`).
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/c/breakpoint_target.c"),
    )
    .unwrap();
    let call = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("sum += target(a, b);"))
        .map(|(i, _)| i as u32 + 1)
        .last()
        .unwrap();
    let line = |f: &str| -> u32 { f.rsplit(':').next().unwrap().trim().parse().unwrap() };
    assert_eq!(
        line(frames[0]),
        call,
        "reverse-finish stops at the call: {text}"
    );
    assert_eq!(
        line(frames[1]),
        call,
        "back to the call's line, over the call: {text}"
    );
    assert!(line(frames[2]) < call, "over the call, not into it: {text}");
    assert!(!text.contains("#0  target"), "{text}");
}

/// `monitor when` names the event `cargo chaos dump` shows at that point;
/// `monitor goto N` then `monitor when` prints N; `--gdb-at-event` starts there.
#[test]
fn monitor_when_and_goto_agree_with_dump() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let dump = run(chaos_cmd(&[]).arg("dump").arg(&rec.trace)).stdout_str();
    // The boundary before event N: a break on `write` stops inside the first printf's
    // write, whose event is the first `syscall write` of the dump.
    let first_write: u64 = dump
        .lines()
        .find(|l| l.contains("syscall write(0x1"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("a write in the dump");
    let out = gdb(
        &rec.trace,
        &[],
        "set breakpoint pending on\nbreak write\ncontinue\nmonitor when\nmonitor goto 5\nmonitor when\nmonitor goto 100000\n",
    );
    let text = out.show();
    assert_eq!(when_lines(&all(&out)), [first_write, 5], "{text}");
    assert!(text.contains("outside the recording"), "{text}");
    let out = gdb(&rec.trace, &["--gdb-at-event", "7"], "monitor when\n");
    assert_eq!(when_lines(&all(&out)), [7], "{}", out.show());
}

/// `--events` prefixes each line with the number of the event that wrote it: the
/// dump shows a write of that line at that number.
#[test]
fn events_flag_numbers_each_line_with_its_write_event() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let out = run(chaos_cmd(&[]).arg("replay").arg("--events").arg(&rec.trace));
    assert_eq!(out.status, 0, "{}", out.show());
    let dump = run(chaos_cmd(&[]).arg("dump").arg(&rec.trace)).stdout_str();
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6, "{}", out.show());
    for (line, plain) in lines.iter().zip(rec.program.stdout_str().lines()) {
        let (n, rest) = line
            .strip_prefix("[event ")
            .and_then(|l| l.split_once("] "))
            .unwrap_or_else(|| panic!("no event number: {line}"));
        assert_eq!(rest, plain);
        let ev = dump
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("event {n} not in the dump"));
        assert!(
            ev.contains("syscall write(0x1"),
            "event {n} is a write: {ev}"
        );
    }
}

/// `--gdb-server` serves until gdb kills the program: a gdb that detaches and a
/// second one that connects find the session where the first left it.
#[test]
fn a_second_gdb_finds_the_session_where_the_first_left_it() {
    use std::io::{BufRead, BufReader};
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let mut cmd = chaos_cmd(&[]);
    cmd.arg("replay")
        .arg(&rec.trace)
        .arg("--quiet")
        .arg("--gdb-server")
        .arg("127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut server = cmd.spawn().unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut command = None;
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("gdb ") || line.contains("gdb -q") {
            command = Some(line.trim().to_string());
            break;
        }
    }
    let command = command.unwrap_or_else(|| panic!("no gdb command line printed:\n{seen}"));
    assert!(seen.contains("127.0.0.1:"), "{seen}");
    let session = |extra: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} -batch -nx {extra}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let one = session(
        "-ex 'break target' -ex continue -ex continue -ex 'p a' -ex 'monitor when' -ex detach",
    );
    let two = session("-ex 'p a' -ex 'monitor when' -ex kill");
    let printed = calls(&rec.program.stdout_str());
    assert_eq!(values(&one), [printed[1].0.to_string()], "{one}");
    assert_eq!(values(&two), [printed[1].0.to_string()], "{one}\n{two}");
    assert_eq!(when_lines(&one), when_lines(&two), "{one}\n{two}");
    let status = server.wait().unwrap();
    assert!(
        status.success(),
        "the server ends when gdb kills the program"
    );
}

#[path = "threads/suite.rs"]
#[allow(dead_code)]
mod suite;

/// An unmodified libtest binary whose test panics (the Rust fixture crate): a
/// breakpoint on `rust_panic` is hit on the test's thread, the backtrace shows the test
/// function and the recorded value in the panicking frame, libtest's threads are
/// listed, and reverse-continue goes back from there.
#[test]
fn rust_panic_breakpoint_shows_the_test_and_its_recorded_value() {
    let dir = temp();
    let exe = suite::suite().test("panic");
    let rec = common::RecordSpec::new(exe, dir.path().join("trace"))
        .args(["panics_with_a_backtrace"])
        .configure(|c| {
            c.env("RUST_BACKTRACE", "0");
        })
        .record();
    assert_eq!(rec.program.status, 101, "{}", rec.program.show());
    let value = all(&rec.program)
        .lines()
        .find_map(|l| {
            l.split_once("deliberate failure with value ")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no panic message: {}", rec.program.show()));
    let script = "\
set breakpoint pending on
break rust_panic
continue
bt
info threads
reverse-continue
monitor when
";
    let out = gdb(&rec.trace, &[], script);
    let text = all(&out);
    assert_eq!(out.status, 0, "{}", out.show());
    assert!(text.contains("rust_panic ()"), "{text}");
    assert!(
        text.contains("panic::panics_with_a_backtrace () at tests/panic.rs:"),
        "the test function in the backtrace: {text}"
    );
    assert!(
        text.contains(&format!("panic::innermost (value={value})")),
        "the recorded value {value} in the panicking frame: {text}"
    );
    let threads = text.lines().filter(|l| l.contains("Thread 1.")).count();
    assert!(threads >= 2, "libtest's main thread and the test's: {text}");
    // Named as the program named them: libtest names the test's thread after the test
    // (the kernel keeps 15 bytes); the main thread keeps its executable's name.
    assert!(
        text.lines()
            .any(|l| l.contains("Thread 1.") && l.contains("(panics_with_a_b)")),
        "the test's thread by name: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("Thread 1.") && l.contains("(panic-")),
        "the main thread by its executable's name: {text}"
    );
    assert!(text.contains("No more reverse-execution history"), "{text}");
}

/// `monitor stats`' counters: (events replayed, checkpoints restored).
fn stats_lines(out: &str) -> Vec<(u64, u64)> {
    let replayed = out.lines().filter_map(|l| {
        let rest = l.split_once("events replayed: ")?.1;
        rest.split(',').next()?.trim().parse::<u64>().ok()
    });
    let restored = out.lines().filter_map(|l| {
        let rest = l.strip_prefix("checkpoints: ")?;
        rest.split(", ")
            .last()?
            .strip_suffix(" restored")?
            .parse::<u64>()
            .ok()
    });
    replayed.zip(restored).collect()
}

/// Checkpoints: a watchpoint reverse-continued from the end of a long run (three threads,
/// thousands of events) goes back about 10% of it to the last store, and re-executes
/// fewer than 20% of the run's events to get there, because it starts from a
/// checkpoint taken on the way to the end, not from the start. The value before and
/// after the store are the recorded ones, the same in two sessions.
#[test]
fn reverse_continue_from_checkpoints_re_executes_a_fraction_of_the_run() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("long_run"), &["3000"]);
    let stored: Vec<String> = rec
        .program
        .stdout_str()
        .lines()
        .filter_map(|l| {
            Some(
                l.strip_prefix("marker stored ")?
                    .split(' ')
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(stored.len(), 2, "{}", rec.program.stdout_str());
    let script = "\
monitor when
monitor stats
watch marker
reverse-continue
p marker
monitor when
monitor stats
continue
p marker
";
    let mut first: Option<String> = None;
    for round in 0..2 {
        let out = gdb(&rec.trace, &["--gdb-at-end"], script);
        let text = out.show();
        assert_eq!(out.status, 0, "{text}");
        assert_eq!(
            values(&out.stdout_str()),
            [stored[0].clone(), stored[1].clone()],
            "before the last store, then after it: {text}"
        );
        let when = when_lines(&all(&out));
        let stats = stats_lines(&all(&out));
        assert_eq!((when.len(), stats.len()), (2, 2), "{text}");
        let (end, hit) = (when[0], when[1]);
        assert!(end > 3000, "a long run: {end} events");
        let back = end - hit;
        assert!(
            back * 20 >= end && back * 5 <= end,
            "the last store lies about 10% back: event {hit} of {end}"
        );
        let re_executed = stats[1].0 - stats[0].0;
        assert!(
            re_executed * 5 < end,
            "reverse-continue re-executed {re_executed} of the run's {end} events: {text}"
        );
        assert!(stats[1].1 > stats[0].1, "a checkpoint was restored: {text}");
        let shown = format!("{when:?}");
        match &first {
            None => first = Some(shown),
            Some(f) => assert_eq!(f, &shown, "round {round}"),
        }
    }
}

/// Ctrl-C from an IDE: gdb's machine interface in asynchronous mode (`mi-async`, as
/// IDEs run it) sends `-exec-interrupt` during a long `-exec-continue`; the replay
/// stops between two events with SIGINT, well before the end, and a second
/// `-exec-continue` goes on to the end of the recording.
#[test]
fn the_machine_interface_interrupts_a_long_continue() {
    use std::io::{BufRead, BufReader, Write};
    let dir = temp();
    let rec = record(dir.path(), &fixture("long_run"), &["20000"]);
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let mut child = chaos_cmd(&[])
        .arg("replay")
        .arg(&rec.trace)
        .args([
            "--quiet",
            "--gdb",
            "--gdb-arg=--interpreter=mi",
            "--gdb-arg=-nx",
            "--gdb-arg=-iex",
            "--gdb-arg=set mi-async on",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cargo-chaos starts");
    let mut input = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut until = |prefix: &str, seen: &mut String| -> String {
        for line in lines.by_ref() {
            let line = line.expect("gdb's output");
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("gdb ended before `{prefix}`:\n{seen}");
    };
    until("(gdb)", &mut seen);
    writeln!(input, "-exec-continue").unwrap();
    until("*running", &mut seen);
    writeln!(input, "-exec-interrupt").unwrap();
    let interrupted = until("*stopped", &mut seen);
    writeln!(input, "-interpreter-exec console \"monitor when\"").unwrap();
    let when_interrupted = until("@\"Current event: ", &mut seen);
    writeln!(input, "-exec-continue").unwrap();
    let ended = until("*stopped", &mut seen);
    writeln!(input, "-interpreter-exec console \"monitor when\"").unwrap();
    let when_ended = until("@\"Current event: ", &mut seen);
    writeln!(input, "-gdb-exit").unwrap();
    drop(input);
    for line in lines {
        seen.push_str(&line.unwrap_or_default());
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}");
    assert!(
        interrupted.contains("reason=\"signal-received\",signal-name=\"SIGINT\""),
        "{seen}"
    );
    assert!(!ended.contains("SIGINT"), "{seen}");
    assert!(
        seen.contains("No more reverse-execution history"),
        "the end: {seen}"
    );
    let event = |l: &str| -> u64 {
        l.trim_start_matches("@\"Current event: ")
            .trim_end_matches("\\n\"")
            .parse()
            .unwrap_or_else(|_| panic!("not an event number: {l}"))
    };
    let (at, end) = (event(&when_interrupted), event(&when_ended));
    assert!(end > 20000, "{seen}");
    assert!(at < end, "interrupted at event {at} of {end}: {seen}");
}

/// `--source-dir`: the debug info names sources under the directory the program was
/// built and recorded in (CI's checkout); with that directory gone, gdb finds them in
/// the local checkout given, and without it says they are missing.
#[test]
fn source_dir_maps_the_recorded_checkout_to_a_local_one() {
    let dir = temp();
    let ci = dir.path().join("ci-checkout");
    let local = dir.path().join("my-checkout");
    std::fs::create_dir_all(&ci).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let source = test_support::fixture::fixture_source_dir().join("breakpoint_target.c");
    std::fs::copy(&source, ci.join("prog.c")).unwrap();
    let built = std::process::Command::new("cc")
        .current_dir(&ci)
        .args(["-O1", "-g", "-pthread", "-o", "prog", "prog.c"])
        .status()
        .unwrap();
    assert!(built.success());
    let rec = common::RecordSpec::new(&ci.join("prog"), dir.path().join("trace"))
        .configure({
            let ci = ci.clone();
            move |c| {
                c.current_dir(&ci);
            }
        })
        .record();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    std::fs::copy(&source, local.join("prog.c")).unwrap();
    std::fs::remove_file(ci.join("prog.c")).unwrap();
    let script = "break target\ncontinue\nlist target\n";
    let wanted = "long target(long a, long b) {";
    let without = gdb(&rec.trace, &[], script);
    assert_eq!(without.status, 0, "{}", without.show());
    assert!(!all(&without).contains(wanted), "{}", without.show());
    let with = gdb(
        &rec.trace,
        &[&format!("--source-dir={}", local.display())],
        script,
    );
    assert_eq!(with.status, 0, "{}", with.show());
    assert!(all(&with).contains(wanted), "{}", with.show());
}

/// `--gdb-pid`: gdb on a forked child of the recording. A breakpoint on a function that
/// both processes call (the parent first) stops in the child's call only, with the
/// value the child printed; the root process is the default, and stops in the
/// parent's; a pid the recording does not have is refused with the list of its
/// processes.
#[test]
fn gdb_pid_debugs_a_forked_child() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("gdb_fork"), &[]);
    let out = rec.program.stdout_str();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let field = |prefix: &str, key: &str| -> i64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line: {out}"));
        let (_, rest) = line.split_once(key).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (child, child_value) = (field("child ", "child "), field("child ", " value "));
    let parent_value = field("parent ", " value ");
    let script = "break work\ncontinue\np v\ninfo inferiors\ncontinue\n";
    let on_child = gdb(&rec.trace, &[&format!("--gdb-pid={child}")], script);
    let text = on_child.show();
    assert_eq!(on_child.status, 0, "{text}");
    assert_eq!(
        values(&on_child.stdout_str()),
        [child_value.to_string()],
        "{text}"
    );
    assert!(
        text.contains(&format!("gdb debugs process {child}")),
        "the tree is shown: {text}"
    );
    assert!(text.contains("not followed"), "{text}");
    // After the child's call, forward runs end before its exit.
    assert!(
        text.contains("No more reverse-execution history"),
        "the child's end: {text}"
    );
    let on_root = gdb(&rec.trace, &[], "break work\ncontinue\np v\n");
    assert_eq!(on_root.status, 0, "{}", on_root.show());
    assert_eq!(
        values(&on_root.stdout_str()),
        [parent_value.to_string()],
        "{}",
        on_root.show()
    );
    let wrong = gdb(&rec.trace, &["--gdb-pid=1"], "p 1\n");
    assert_ne!(wrong.status, 0, "{}", wrong.show());
    assert!(
        wrong
            .stderr_str()
            .contains("the recording has no process 1"),
        "{}",
        wrong.show()
    );
}

/// The options that only mean something to a gdb session (`--gdb-pid`, `--gdb-at-end`...)
/// given without `--gdb` or `--gdb-server` are a usage error, not a plain replay that
/// ignores them.
#[test]
fn gdb_options_without_gdb_are_a_usage_error() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("breakpoint_target"), &[]);
    let plain = run(chaos_cmd(&[]).arg("replay").arg(&rec.trace).arg("--quiet"));
    assert_eq!(plain.status, 0, "{}", plain.show());
    for option in [
        "--gdb-pid=1",
        "--gdb-at-end",
        "--gdb-at-event=3",
        "--gdb-arg=-batch",
    ] {
        let out = run(chaos_cmd(&[])
            .arg("replay")
            .arg(&rec.trace)
            .arg("--quiet")
            .arg(option));
        assert_eq!(out.status, 2, "{option}: {}", out.show());
        let err = out.stderr_str();
        assert!(
            err.contains("--gdb") && err.contains("--gdb-server"),
            "{option}: the error names what is missing: {}",
            out.show()
        );
    }
}

/// Thread-local variables print (gdb asks the server `qGetTLSAddr`): at each thread's
/// call of show(), `tls_var` is that thread's recorded value, and is again going back.
#[test]
fn thread_local_variables_print_the_recorded_values() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("gdb_tls"), &[]);
    let out = rec.program.stdout_str();
    assert_eq!(rec.program.status, 0, "{}", rec.program.show());
    let value = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no `{prefix}` line: {out}"))
            .to_string()
    };
    let (main, thread) = (value("main "), value("thread "));
    let script = "\
break show
continue
p tls_var
continue
p tls_var
reverse-continue
p tls_var
";
    let run = gdb(&rec.trace, &[], script);
    let text = run.show();
    assert_eq!(run.status, 0, "{text}");
    assert_eq!(
        values(&run.stdout_str()),
        [main.clone(), thread, main],
        "{text}"
    );
}

/// Signals are stops: the SIGUSR1 the program sends itself stops gdb with that signal
/// before its handler runs; `continue` delivers it (a breakpoint in the handler is
/// hit, with the signal number); the SIGSEGV that ends the program stops gdb at the
/// faulting store, and `continue` from there reaches the end of the recording.
#[test]
fn signals_stop_gdb_and_continue_delivers_them() {
    let dir = temp();
    let rec = record(dir.path(), &fixture("gdb_signal"), &[]);
    let out = rec.program.stdout_str();
    let value: String = out
        .lines()
        .find_map(|l| l.strip_prefix("value "))
        .unwrap_or_else(|| panic!("{}", rec.program.show()))
        .to_string();
    let script = "\
break on_usr1
continue
continue
p signo
continue
p value
continue
";
    let run = gdb(&rec.trace, &[], script);
    let text = run.show();
    assert_eq!(run.status, 0, "{text}");
    let usr1 = text
        .find("received signal SIGUSR1")
        .unwrap_or_else(|| panic!("{text}"));
    let handler = text
        .find("Breakpoint 1, on_usr1")
        .unwrap_or_else(|| panic!("{text}"));
    let segv = text
        .find("received signal SIGSEGV")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(usr1 < handler && handler < segv, "{text}");
    assert_eq!(
        values(&run.stdout_str()),
        ["10".to_string(), value],
        "{text}"
    );
    assert!(text.contains("No more reverse-execution history"), "{text}");
}

/// Thread-local variables of libraries loaded after a `dlclose`: the fixture loads
/// libtls_a.so and libtls_b.so, unloads libtls_a.so and loads libtls_c.so, which glibc
/// gives libtls_a.so's TLS module id, so the ids no longer follow the link map's order.
/// At the abort that ends the run, gdb prints each library's variable with its
/// recorded value (numbering the modules in link-map order instead swaps the two).
#[test]
fn thread_local_variables_of_libraries_loaded_after_a_dlclose() {
    let dir = temp();
    let libs = dir.path().join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    let source = test_support::fixture::fixture_source_dir()
        .join("solib")
        .join("tls_module.c");
    for name in ["a", "b", "c"] {
        let lib = format!("libtls_{name}.so");
        let cc = std::env::var_os("CC")
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "cc".into());
        let built = std::process::Command::new(cc)
            .args(["-O1", "-g", "-shared", "-fPIC"])
            .arg(format!("-DNAME={name}"))
            .arg(format!("-Wl,-soname,{lib}"))
            .arg("-o")
            .arg(libs.join(&lib))
            .arg(&source)
            .output()
            .expect("run the C compiler");
        assert!(built.status.success(), "{built:?}");
    }
    let rec = record(
        dir.path(),
        &fixture("gdb_dlclose_tls"),
        &[libs.to_str().unwrap()],
    );
    let out = rec.program.stdout_str();
    let value = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line: {}", rec.program.show()))
            .to_string()
    };
    let (b, c) = (value("tls_b "), value("tls_c "));
    let script = "\
continue
p tls_b
p tls_c
";
    let run = gdb(&rec.trace, &[], script);
    let text = run.show();
    assert_eq!(run.status, 0, "{text}");
    assert!(text.contains("received signal SIGABRT"), "{text}");
    assert_eq!(values(&run.stdout_str()), [b, c], "{text}");
}

/// `monitor stats`' count of buffered calls fed without a stop each.
fn fed_lines(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| {
            let rest = l.split_once(", fed: ")?.1;
            rest.split(',').next()?.trim().parse().ok()
        })
        .collect()
}

/// The debugger on a recording with syscall buffering: forward runs feed the runs of
/// buffered calls without a stop each, yet every breakpoint and watchpoint stop, every
/// value and every event number is the one a session replaying the calls one by one
/// (`CARGO_CHAOS_REPLAY_FEED=0`) shows, and the values are the recorded ones: a
/// breakpoint on a function called between buffered calls, hit forwards and in
/// reverse; a watchpoint on a variable only the calls write (never a stop: the feed's
/// own copies into it are not the program's) next to one on a variable the program
/// writes, forwards and in reverse; `monitor goto` into the middle of a run.
#[test]
fn buffered_calls_are_fed_and_stops_are_those_of_a_call_by_call_replay() {
    let dir = temp();
    let rec = common::RecordSpec::new(&fixture("gdb_buffered"), dir.path().join("trace"))
        .args(["1200"])
        .configure(|c| {
            c.arg("--syscallbuf");
        })
        .record();
    let visits: Vec<(String, String)> = rec
        .program
        .stdout_str()
        .lines()
        .filter_map(|l| {
            let (round, value) = l.strip_prefix("visit ")?.split_once(' ')?;
            Some((round.to_string(), value.to_string()))
        })
        .collect();
    assert_eq!(visits.len(), 20, "{}", rec.program.stdout_str());
    let dump = run(chaos_cmd(&[]).arg("dump").arg(&rec.trace));
    let buffered = dump.stdout_str().matches("getrandom").count();
    assert!(buffered >= 3600, "{}", dump.stdout_str());
    let mut script = String::from("break visit\n");
    let stop = "p round\np value % 1000000\nmonitor when\n";
    for _ in 0..5 {
        script += "continue\n";
        script += stop;
    }
    script += "monitor stats\n";
    for _ in 0..4 {
        script += "reverse-continue\n";
        script += stop;
    }
    script += "delete\nwatch last\nwatch drawn\n";
    for _ in 0..3 {
        script += "continue\np last\np drawn % 1000000\nmonitor when\n";
    }
    for _ in 0..2 {
        script += "reverse-continue\np last\np drawn % 1000000\nmonitor when\n";
    }
    script += "monitor goto 1001\nmaint flush register-cache\np drawn\nmonitor when\n";
    script += "continue\np last\nmonitor when\nreverse-continue\np last\nmonitor when\n";
    script += "monitor stats\n";
    let session = |feed: &str| {
        let file = dir.path().join("script.gdb");
        std::fs::write(&file, &script).unwrap();
        let mut cmd = chaos_cmd(&[]);
        cmd.arg("replay")
            .arg(&rec.trace)
            .args(["--gdb", "--quiet"])
            .args(["--gdb-arg=-batch", "--gdb-arg=-nx", "--gdb-arg=-x"])
            .arg(format!("--gdb-arg={}", file.display()))
            .env("CARGO_CHAOS_REPLAY_FEED", feed);
        let out = run(&mut cmd);
        assert_eq!(out.status, 0, "{}", out.show());
        out
    };
    let fed = session("1");
    let by_call = session("0");
    let text = all(&fed);
    // The recorded values, forwards then in reverse.
    let v = values(&fed.stdout_str());
    let mut want = Vec::new();
    for k in (0..5).chain((0..4).rev()) {
        want.push(visits[k].0.clone());
        want.push(visits[k].1.clone());
    }
    assert_eq!(v[..want.len()], want[..], "{text}");
    // The program's variable: stored by visits 0, 1 and 2 going forwards; in reverse,
    // before the stores of visits 2 and 1.
    let last: Vec<&String> = v[want.len()..].iter().step_by(2).take(5).collect();
    assert_eq!(
        last,
        [
            &visits[0].1,
            &visits[1].1,
            &visits[2].1,
            &visits[1].1,
            &visits[0].1
        ],
        "{text}"
    );
    // Set once, never hit.
    assert_eq!(text.matches("watchpoint 3: drawn").count(), 1, "{text}");
    // Event for event, value for value, the session replaying call by call.
    let (w1, w2) = (when_lines(&text), when_lines(&all(&by_call)));
    assert_eq!(w1.len(), 9 + 5 + 3, "{text}");
    assert_eq!(w1, w2, "{text}\n{}", all(&by_call));
    assert_eq!(values(&fed.stdout_str()), values(&by_call.stdout_str()));
    assert!(text.contains("At event 1001."), "{text}");
    // And the runs were fed, all but a few calls of them.
    let (f1, f2) = (fed_lines(&text), fed_lines(&all(&by_call)));
    assert_eq!(f2, [0, 0], "{}", all(&by_call));
    assert!(f1.len() == 2 && f1[0] > 600, "{text}");
}
