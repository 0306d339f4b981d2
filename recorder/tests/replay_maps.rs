//! During replay, every file-backed mapping of the replayed process lies inside the trace
//! directory (the trace's copies of the executable, its interpreter, the libraries and
//! every mapped file), apart from the replayer's own stub at `STUB_BASE`. Checked from
//! `/proc/PID/maps` at every syscall event, through `replay_observed`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use recorder::address_space::{STUB_BASE, STUB_SIZE};
use recorder::output::Stream;
use recorder::record::record;
use recorder::replay::replay_observed;
use recorder::trace::Event;
use test_support::{read_events, text_diff};

fn fixture_path(name: &str) -> PathBuf {
    test_support::fixture!(name)
}

/// One line of `/proc/PID/maps`.
struct MapLine {
    start: u64,
    end: u64,
    inode: u64,
    path: String,
    line: String,
}

fn parse_maps(text: &str) -> Vec<MapLine> {
    text.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode [path]
            let mut f = line.splitn(6, ' ');
            let range = f.next()?;
            let _perms = f.next()?;
            let _offset = f.next()?;
            let _dev = f.next()?;
            let inode = f.next()?.parse().ok()?;
            let path = f.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-')?;
            Some(MapLine {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                inode,
                path,
                line: line.to_string(),
            })
        })
        .collect()
}

/// Records `name args` with the trace in a fresh directory, then replays it checking the
/// mappings at every syscall event. Returns nothing; panics with every violation found.
fn check(name: &str, args: &[&str]) {
    let dir = tempfile::Builder::new()
        .prefix("chaos-maps-")
        .tempdir()
        .unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "mapped input\n").unwrap();
    let trace = dir.path().join("trace");
    let mut full_args: Vec<OsString> = args.iter().map(OsString::from).collect();
    if name == "mmap" || name == "fileio" {
        full_args.push(input.clone().into_os_string());
    }
    let program = dir.path().join(name);
    std::fs::copy(fixture_path(name), &program).unwrap();
    let opts = test_support::record_options_in(dir.path(), program.clone(), full_args);
    let summary = record(&opts).unwrap_or_else(|e| panic!("recording {name} failed: {e}"));
    assert_eq!(
        summary.result.status, 0,
        "{name} exited with {}",
        summary.result.status
    );

    // The program and its input are gone at replay: nothing may need them.
    std::fs::remove_file(&program).unwrap();
    std::fs::remove_file(&input).unwrap();

    let trace_root = trace.canonicalize().unwrap();
    let syscall_events = read_events(&trace)
        .iter()
        .filter(|e| matches!(e, Event::Syscall(_)))
        .count();
    let mut observed = 0usize;
    let mut file_mappings_seen = 0usize;
    let mut violations: Vec<String> = Vec::new();
    let mut stdout = Vec::new();
    let mut sink = |stream: Stream, data: &[u8]| {
        if let Stream::Stdout = stream {
            stdout.extend_from_slice(data);
        }
    };
    let mut observer = |pid: i32, event: u64| {
        observed += 1;
        let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            Ok(m) => m,
            Err(e) => {
                violations.push(format!("event {event}: cannot read /proc/{pid}/maps: {e}"));
                return;
            }
        };
        for m in parse_maps(&maps) {
            if m.inode == 0 || !m.path.starts_with('/') {
                continue; // anonymous, [stack], [vdso], [heap], ...
            }
            if m.start >= STUB_BASE && m.end <= STUB_BASE + STUB_SIZE {
                continue; // the replayer's stub
            }
            file_mappings_seen += 1;
            let path = m.path.strip_suffix(" (deleted)").unwrap_or(&m.path);
            // Files mapped MAP_SHARED are mapped from the replayer's own writable copy of
            // the trace's file (so that writes to them can be replayed), in its private
            // directory.
            let replayer_copy = Path::new(path).parent().is_some_and(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("chaos-replay-"))
            }) && Path::new(path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("shared-"));
            if !Path::new(path).starts_with(&trace_root) && !replayer_copy {
                violations.push(format!("event {event}: {}", m.line));
            }
        }
    };
    let result = replay_observed(&trace, &mut sink, &mut observer);
    let summary_replay = result.unwrap_or_else(|e| panic!("replaying {name} failed: {e}"));
    assert_eq!(
        summary_replay.exit.status(),
        0,
        "{name}: replay ended with another status"
    );
    violations.dedup();
    assert!(
        violations.is_empty(),
        "{name}: mappings outside the trace directory {} during replay:\n{}",
        trace_root.display(),
        violations.join("\n")
    );
    assert!(
        file_mappings_seen > 0,
        "{name}: no file-backed mapping was seen at all (the program maps at least itself)"
    );
    assert_eq!(
        observed, syscall_events,
        "{name}: the observer should be called once per syscall event"
    );
    if let Ok(recorded) = std::fs::read(trace.join("stdout")) {
        assert!(
            recorded == stdout,
            "{name}: replayed stdout differs from the recorded one:\n{}",
            text_diff(&recorded, &stdout)
        );
    }
}

#[test]
fn mmap_fixture_maps_only_trace_files() {
    check("mmap", &[]);
}

#[test]
fn fileio_fixture_maps_only_trace_files() {
    check("fileio", &[]);
}

#[test]
fn random_fixture_maps_only_trace_files() {
    check("random", &[]);
}

#[test]
fn time_fixture_maps_only_trace_files() {
    check("time", &[]);
}
