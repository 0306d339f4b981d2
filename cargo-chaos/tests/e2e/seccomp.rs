//! Programs that install seccomp filters of their own (issue 16; rr's seccomp tests):
//! ERRNO, TRACE, TRAP and KILL_PROCESS verdicts, stacked filters, a verdict from the
//! accumulator, untraced and buffered calls refused, filters that would kill the calls
//! the recorder injects, an exec under filters, TSYNC with a thread blocked in the
//! kernel, SIGSYS forced while blocked. Each is recorded and replayed five times: the
//! recording must show what a native run shows (but for the random bytes and the time),
//! and every replay what its recording showed. What cannot be recorded (a
//! user-notification listener, strict mode) stops the recording with its reason.

use std::os::unix::process::CommandExt;
use std::process::Command;

use super::common::*;

/// The lines that do not differ from run to run (random bytes, times and pids do).
fn stable(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.contains("random "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn native(mode: &str) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let program = fixture("seccomp_filters");
    let out = Command::new(&program)
        .arg(mode)
        .process_group(0)
        .output()
        .expect("run the fixture");
    Run {
        what: format!("seccomp_filters {mode} (natively)"),
        status: out
            .status
            .code()
            .or_else(|| out.status.signal().map(|s| 128 + s))
            .expect("an exit code or a signal"),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn five_times(mode: &str, status: i32) {
    let program = fixture("seccomp_filters");
    let natively = native(mode);
    assert_eq!(natively.status, status, "{}", natively.show());
    let dir = temp();
    for i in 0..5 {
        let rec = RecordSpec::new(&program, dir.path().join(format!("trace-{i}")))
            .args([mode])
            .configure(|c| {
                c.process_group(0);
            })
            .record();
        assert_eq!(
            stable(&rec.program.stdout),
            stable(&natively.stdout),
            "recording {i} of {mode} differs from the native run\n{}\nnatively:\n{}",
            rec.program.show(),
            natively.show()
        );
        assert_eq!(rec.program.status, status, "{}", rec.program.show());
        let replayed = replay(&rec.trace);
        assert_same(&format!("recording {i} of {mode}"), &rec.program, &replayed);
    }
}

/// ERRNO from two stacked filters (the newer one's data wins), from `ret A`, for
/// mprotect (which the recorder lets through untraced), for a buffered getrandom and
/// for clone; TRACE without a tracer of the program's own (ENOSYS); a filter that kills
/// on the recorder's own injected calls (CPUID faulting and its scratch mapping at an
/// exec); then an exec of itself, where the filters still hold.
#[test]
fn errno_and_trace_verdicts_and_an_exec_under_filters() {
    five_times("errno", 0);
}

/// TRAP: the SIGSYS handler sees the kernel's siginfo (si_errno from the filter,
/// SYS_SECCOMP, the call's number, x86_64, the address after the call) and rax holding
/// the call's number, and its result is the one the handler writes; for an ordinary
/// call, an untraced one (sigaltstack) and one the recorder answers itself
/// (sched_setaffinity).
#[test]
fn trap_verdicts_deliver_sigsys_with_the_kernels_siginfo() {
    five_times("trap", 0);
}

/// TRAP while SIGSYS is blocked: the kernel unblocks it and the child dies of it.
#[test]
fn a_trap_with_sigsys_blocked_kills() {
    five_times("blocked", 0);
}

/// KILL_PROCESS in a forked child (its write before the call shows, the one after does
/// not), then in the main process.
#[test]
fn kill_process_verdicts() {
    five_times("kill", 128 + libc::SIGSYS);
}

/// TSYNC while another thread waits in read(): it is filtered when it wakes, and so are
/// a thread created later and a forked child.
#[test]
fn tsync_reaches_every_thread() {
    five_times("tsync", 0);
}

/// What cannot be recorded stops the recording with the reason.
#[test]
fn user_notification_and_strict_mode_stop_the_recording() {
    let program = fixture("seccomp_filters");
    let dir = temp();
    for (mode, reason) in [
        ("notify", "user-notification listener"),
        ("strict", "seccomp strict mode"),
    ] {
        let (raw, _) = RecordSpec::new(&program, dir.path().join(mode))
            .args([mode])
            .record_raw();
        assert_ne!(raw.status, 0, "{}", raw.show());
        assert!(
            String::from_utf8_lossy(&raw.stderr).contains(reason),
            "{mode}: {}",
            raw.show()
        );
    }
}
