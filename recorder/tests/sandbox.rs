//! The replay sandbox's second layer: a process started in the Landlock domain that
//! replay uses (read access to one directory, full access to a private one) cannot read
//! a host file outside them, connect to a TCP port of this machine, or signal a process
//! outside the tree. Skipped with a message where the kernel has no Landlock.

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::Path;

use recorder::ptrace::{wait_for, Resume, Stop, Task};
use recorder::replay::sandbox::{landlock_abi, Sandbox};
use recorder::spawn::{spawn_traced, SpawnSpec};

/// Runs `bash -c script` traced (but never stopped after its exec) inside `sandbox`;
/// returns its exit code and what it wrote to stdout and stderr.
fn run_in(sandbox: Option<&Sandbox>, script: &str) -> (i32, String) {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    let mut reader = std::fs::File::from(reader);
    let w = writer.as_raw_fd();
    let spec = SpawnSpec {
        path: Path::new("/usr/bin/bash"),
        argv: vec!["bash".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: None,
        cpu: None,
        no_aslr: false,
        null_stdio: false,
        stdio_fds: Some([0, w, w]),
        no_core: true,
        trap_tsc_no_new_privs: false,
        landlock: sandbox.map(|s| s.ruleset.as_raw_fd()),
        process_group: None,
        foreground_tty: None,
    };
    let pid = spawn_traced(&spec).expect("spawn bash");
    drop(writer);
    Task::new(pid).resume(Resume::Cont, 0).expect("resume");
    let code = loop {
        match wait_for(pid).expect("wait") {
            Stop::Exited(c) => break c,
            Stop::Killed(s) => panic!("bash was killed by signal {s}"),
            Stop::Signal(s) => Task::new(pid).resume(Resume::Cont, s).expect("resume"),
            _ => Task::new(pid).resume(Resume::Cont, 0).expect("resume"),
        }
    };
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read output");
    (code, out)
}

#[test]
fn the_replay_sandbox_confines_what_a_program_can_reach() {
    if landlock_abi() == 0 {
        eprintln!(
            "skipped: this kernel offers no Landlock (the replay then relies on the engine alone)"
        );
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary");
    std::fs::write(&canary, "canary-content-4f1d\n").unwrap();
    let private = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();
    let script = format!(
        "cat {canary}; echo cat=$?; \
         echo hi > {private}/made && echo write=ok; \
         echo x > /dev/tcp/127.0.0.1/{port}; echo tcp=$?; \
         kill -0 {me}; echo kill=$?",
        canary = canary.display(),
        private = private.path().display(),
    );

    // Outside the sandbox, the same script reaches everything: the test can fail.
    let (code, out) = run_in(None, &script);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("canary-content-4f1d") && out.contains("tcp=0") && out.contains("kill=0"),
        "{out}"
    );
    listener.accept().expect("the unconfined run connects");

    // The programs bash needs are readable, as the trace is at replay.
    let sandbox = Sandbox::new(
        &[
            Path::new("/usr"),
            Path::new("/lib"),
            Path::new("/lib64"),
            Path::new("/etc"),
        ],
        &[private.path()],
    )
    .expect("a Landlock ruleset");
    let (code, out) = run_in(Some(&sandbox), &script);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("canary-content-4f1d"),
        "the canary was read: {out}"
    );
    assert!(out.contains("cat=1"), "{out}");
    assert!(
        out.contains("write=ok"),
        "the private directory is writable: {out}"
    );
    assert!(private.path().join("made").is_file());
    if sandbox.abi >= 4 {
        assert!(!out.contains("tcp=0"), "{out}");
        assert!(listener.accept().is_err(), "the confined run connected");
    }
    if sandbox.abi >= 6 {
        assert!(!out.contains("kill=0"), "{out}");
    }
    eprintln!("{}", sandbox.describe());
}
