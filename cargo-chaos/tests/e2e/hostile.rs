//! Hostile traces: a trace or archive is untrusted input. Each test alters a real
//! recording the way an attacker could (the program under test can write into its own
//! trace directory in CI) and checks that the replay refuses it with 125 and a message
//! naming the problem, without a panic, and without acting on this machine: a canary
//! file outside the trace is never opened (an inotify watch) and its content never
//! printed, no file is created, no connection reaches a listener on 127.0.0.1.

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::common::*;
use recorder::trace::Event;

/// Syscall numbers the hostile fixture uses.
use recorder::syscalls::nr::{CREAT, PWRITE64, READ};

/// The host's side of a test: a canary file with unique content, a listener, and the
/// path of a file the program must not create.
struct Host {
    dir: tempfile::TempDir,
    canary: PathBuf,
    secret: String,
    listener: TcpListener,
    new_file: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = temp();
        let secret = format!("canary-{}-{:x}", std::process::id(), rand_u64());
        let canary = dir.path().join("canary.txt");
        std::fs::write(&canary, format!("{secret}\n")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let new_file = dir.path().join("created-by-replay");
        Host {
            dir,
            canary,
            secret,
            listener,
            new_file,
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Records the hostile fixture reading `mode` from its mode file.
    fn record(&self, mode: &str) -> Recording {
        let mode_file = self.dir.path().join(format!("mode-{mode}"));
        std::fs::write(&mode_file, mode).unwrap();
        let port = self.port().to_string();
        let rec = RecordSpec::new(
            &fixture("hostile"),
            self.dir.path().join(format!("trace-{mode}")),
        )
        .args([
            mode_file.as_os_str(),
            self.canary.as_os_str(),
            OsStr::new(&port),
            self.new_file.as_os_str(),
        ])
        .record();
        assert_eq!(rec.program.status, 0, "{}", rec.program.show());
        assert_eq!(rec.program.stdout_str(), format!("mode {mode}\n"));
        // What the recording itself did on this machine does not count.
        let _ = std::fs::remove_file(&self.new_file);
        while self.listener.accept().is_ok() {}
        rec
    }

    /// Runs `replay` with an inotify watch on the canary, then checks that nothing
    /// touched this machine and that the replay was refused with 125.
    #[track_caller]
    fn assert_no_effect(&self, what: &str, replay: impl FnOnce() -> Run) -> Run {
        let watch = Inotify::watch(&self.canary);
        let replayed = replay();
        assert_eq!(replayed.status, FAILED, "{what}\n{}", replayed.show());
        assert_no_panic(&replayed);
        let shown = format!("{}{}", replayed.stdout_str(), replayed.stderr_str());
        assert!(
            !shown.contains(&self.secret),
            "{what}: the canary's content was printed\n{}",
            replayed.show()
        );
        assert_eq!(watch.events(), 0, "{what}: the canary was opened or read");
        assert!(
            !self.new_file.exists(),
            "{what}: the replay created {}",
            self.new_file.display()
        );
        assert!(
            self.listener.accept().is_err(),
            "{what}: the replay connected to a port of this machine"
        );
        replayed
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u64::from_le_bytes(b)
}

/// An inotify watch for opens and reads of one file.
struct Inotify(i32);

impl Inotify {
    fn watch(path: &Path) -> Inotify {
        let mut c = path.as_os_str().as_bytes().to_vec();
        c.push(0);
        // SAFETY: plain syscalls with a NUL-terminated path.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify_init1");
            let w = libc::inotify_add_watch(fd, c.as_ptr().cast(), libc::IN_OPEN | libc::IN_ACCESS);
            assert!(w >= 0, "inotify_add_watch");
            Inotify(fd)
        }
    }

    /// Number of events seen so far.
    fn events(&self) -> usize {
        let mut buf = [0u8; 4096];
        let mut n = 0;
        loop {
            // SAFETY: reads into a local buffer.
            let got = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return n;
            }
            let mut off = 0usize;
            while off + 16 <= got as usize {
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap());
                off += 16 + len as usize;
                n += 1;
            }
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn copy_of(trace: &Path, name: &str) -> PathBuf {
    let dest = trace.with_file_name(name);
    copy_tree(trace, &dest).unwrap();
    dest
}

fn edit_header(trace: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = trace.join("header.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// The first report: `creat` and `pwrite64` added to the header's list of calls
/// that run natively, and their events removed, made `replay-artifact` create and write
/// a file on the replaying machine and call the replay a match.
#[test]
fn a_header_cannot_widen_the_calls_that_run_natively() {
    let host = Host::new();
    let rec = host.record("3");
    let trace = copy_of(&rec.trace, "widened");
    edit_header(&trace, |h| {
        let list = h["untraced"].as_array_mut().expect("untraced list");
        list.push(CREAT.into());
        list.push(PWRITE64.into());
    });
    let events: Vec<Event> = read_events(&trace)
        .into_iter()
        .filter(|e| !matches!(e, Event::Syscall(s) if s.nr == CREAT || s.nr == PWRITE64))
        .collect();
    write_events(&trace, &events).unwrap();

    // As a trace directory...
    let replayed = host.assert_no_effect("widened list, trace", || replay(&trace));
    assert!(
        replayed.stderr_str().contains("header.json") && replayed.stderr_str().contains("creat"),
        "the message should name the header and the call\n{}",
        replayed.show()
    );

    // ... and as an archive, as the issue found it.
    let archives = host.dir.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let mut pack = chaos_cmd(&[]);
    pack.arg("pack").arg(&trace).arg("-o").arg(&archives);
    let packed = run(&mut pack);
    assert_eq!(packed.status, 0, "{}", packed.show());
    let archive = std::fs::read_dir(&archives)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".chaos.tar.zst"))
        .expect("an archive");
    let cache = host.dir.path().join("cache");
    host.assert_no_effect("widened list, archive", || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-replay-artifact"));
        // As cargo runs it: the subcommand's name first (without it, this was a usage
        // error, which exited 125 too before usage errors exited 2).
        cmd.arg("replay-artifact")
            .arg(&archive)
            .env("XDG_CACHE_HOME", &cache)
            .stdin(std::process::Stdio::null());
        run(&mut cmd)
    });
}

/// The byte the program read is changed in the trace: the program then tries to open a
/// host file, connect to a local port or create a file. Those calls are not in the
/// trace, so the replay stops at the first with a divergence, and none of them runs.
#[test]
fn a_program_turned_hostile_by_an_altered_trace_achieves_nothing() {
    let host = Host::new();
    let rec = host.record("0");
    let events = read_events(&rec.trace);
    for (mode, call) in [("1", "open"), ("2", "socket"), ("3", "creat")] {
        let trace = copy_of(&rec.trace, &format!("turned-{mode}"));
        let mut changed = 0;
        let altered: Vec<Event> = events
            .iter()
            .cloned()
            .map(|mut e| {
                if let Event::Syscall(s) = &mut e {
                    if s.nr == READ && s.ret == 1 && s.writes.len() == 1 {
                        s.writes[0].data = mode.as_bytes().to_vec();
                        changed += 1;
                    }
                }
                e
            })
            .collect();
        assert_eq!(changed, 1, "the trace should hold one one-byte read");
        write_events(&trace, &altered).unwrap();
        let replayed = host.assert_no_effect(&format!("mode {mode}"), || replay(&trace));
        assert!(replayed.stdout.is_empty(), "{}", replayed.show());
        let err = replayed.stderr_str();
        assert!(
            err.contains("diverged") && err.contains(call),
            "mode {mode}: the message should name the divergence at {call}\n{}",
            replayed.show()
        );
    }
}

/// A captured file named by a path instead of a content hash, in the image of an exec
/// and in an mmap event: the replay used to map the file it named.
#[test]
fn captured_files_are_named_by_content_hash_only() {
    let host = Host::new();
    let rec = host.record("0");
    let events = read_events(&rec.trace);
    let relative = format!(
        "../../{}",
        host.canary.strip_prefix("/").unwrap().to_string_lossy()
    );
    let names = [
        host.canary.to_string_lossy().into_owned(),
        relative.clone(),
        "../header.json".to_string(),
    ];
    for (i, name) in names.iter().enumerate() {
        for in_exec in [true, false] {
            let trace = copy_of(&rec.trace, &format!("named-{i}-{in_exec}"));
            let mut done = false;
            let altered: Vec<Event> = events
                .iter()
                .cloned()
                .map(|mut e| {
                    match &mut e {
                        Event::Exec(state) if in_exec && !done => {
                            let m = state.mappings.iter_mut().find(|m| m.file.is_some());
                            m.expect("a file mapping").file = Some(name.clone());
                            done = true;
                        }
                        Event::Syscall(s) if !in_exec && !done && s.file.is_some() => {
                            s.file = Some(name.clone());
                            done = true;
                        }
                        _ => {}
                    }
                    e
                })
                .collect();
            assert!(done, "no captured file to rename (exec: {in_exec})");
            write_events(&trace, &altered).unwrap();
            let replayed = host.assert_no_effect(&format!("file named {name}"), || replay(&trace));
            assert!(
                replayed.stderr_str().contains("content hash"),
                "{}",
                replayed.show()
            );
            assert!(replayed.stdout.is_empty(), "{}", replayed.show());
        }
    }
}

/// A zstd frame of `size` zero bytes made of RLE blocks: a few bytes per 128 KiB, so a
/// bomb of any size is cheap to make. `declared` puts the size in the frame header.
fn rle_frame(size: u64, declared: bool) -> Vec<u8> {
    const BLOCK: u64 = 128 << 10;
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    if declared {
        // Frame_Content_Size of 8 bytes, single segment (no window descriptor).
        f.push(0xe0);
        f.extend_from_slice(&size.to_le_bytes());
    } else {
        // No content size; a 128 KiB window.
        f.push(0x00);
        f.push(0x38);
    }
    let mut left = size;
    loop {
        let n = left.min(BLOCK);
        left -= n;
        let last = u32::from(left == 0);
        let header = last | (1 << 1) | ((n as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0);
        if left == 0 {
            return f;
        }
    }
}

/// Decompression bombs in the event stream: refused before they take the memory they
/// ask for, under an address-space limit that a full expansion would break.
#[test]
fn event_stream_bombs_are_refused_within_bounded_memory() {
    let host = Host::new();
    let rec = host.record("0");
    let bombs = [
        ("8 GiB declared", rle_frame(8 << 30, true), "expands to"),
        ("1 GiB declared", rle_frame(1 << 30, true), "memory"),
        ("no declared size", rle_frame(2 << 30, false), "declare"),
    ];
    for (what, frame, says) in bombs {
        let trace = copy_of(&rec.trace, &format!("bomb-{}", what.replace(' ', "-")));
        let mut f = std::fs::File::create(trace.join("events")).unwrap();
        f.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&frame).unwrap();
        drop(f);
        let replayed = host.assert_no_effect(what, || {
            replay_with(
                &trace,
                &[OsStr::new("prlimit"), OsStr::new("--as=805306368")],
                |_| {},
            )
        });
        assert!(
            replayed.stderr_str().contains(says) && replayed.stderr_str().contains("chunk"),
            "{what}: the message should say what is wrong with the chunk\n{}",
            replayed.show()
        );
    }
}

/// The image of an exec with a `[stack]` mapping whose end is below its start, or that
/// is larger than the replay's stack reserve: refused or replayed, never a panic.
#[test]
fn impossible_stack_mappings_never_panic() {
    let host = Host::new();
    let rec = host.record("0");
    let events = read_events(&rec.trace);
    let edit = |name: &str, f: &dyn Fn(&mut recorder::trace::Mapping)| -> PathBuf {
        let trace = copy_of(&rec.trace, name);
        let altered: Vec<Event> = events
            .iter()
            .cloned()
            .map(|mut e| {
                if let Event::Exec(state) = &mut e {
                    let stack = state.mappings.iter_mut().find(|m| m.name == "[stack]");
                    f(stack.expect("a [stack] mapping"));
                }
                e
            })
            .collect();
        write_events(&trace, &altered).unwrap();
        trace
    };
    let backwards = edit("stack-backwards", &|m| {
        std::mem::swap(&mut m.start, &mut m.end)
    });
    let replayed = host.assert_no_effect("a stack ending below its start", || replay(&backwards));
    assert!(
        replayed.stderr_str().contains("impossible range"),
        "{}",
        replayed.show()
    );

    let huge = edit("stack-huge", &|m| m.start = m.end - (256 << 20));
    let replayed = replay(&huge);
    assert_no_panic(&replayed);
    assert!(
        replayed.status == 0 || replayed.status == FAILED,
        "a 256 MiB stack: {}",
        replayed.show()
    );
}
