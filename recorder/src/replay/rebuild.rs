//! Rebuilding the recorded address space inside the stopped replay stub.

use crate::address_space::{overlaps_stub, read_maps, STUB_SCRATCH, STUB_SYSCALL};
use crate::arch;
use crate::errors::{Error, Result};
use crate::inject::inject_syscall;
use crate::ptrace::Task;
use crate::trace::{ExecState, TraceDir};

fn sys(task: &mut Task, nr: i64, args: &[u64]) -> Result<i64> {
    inject_syscall(task, STUB_SYSCALL, nr as u64, args)
}

fn check(what: &str, r: i64) -> Result<i64> {
    if r < 0 && r > -4096 {
        return Err(Error::Unsupported {
            what: format!(
                "{what} failed at replay: {}",
                nix::errno::Errno::from_raw(-r as i32)
            ),
            hint: "the trace may be damaged, or this machine cannot replay it".into(),
        });
    }
    Ok(r)
}

/// Replaces the stub's address space with the recorded one and sets the recorded
/// registers. The task is at the stub's execve exit stop.
/// With `syscallbuf`, the syscall-buffering entry page is mapped with replay's own code
/// and its feed after it (see [`super::feed`]). Files built from sparse images go into
/// `scratch` (see [`TraceDir::mappable_path`]).
pub fn rebuild(
    task: &mut Task,
    trace: &TraceDir,
    scratch: &std::path::Path,
    state: &ExecState,
    syscallbuf: bool,
) -> Result<()> {
    for m in &state.mappings {
        if overlaps_stub(m.start, m.end) {
            return Err(Error::Unsupported {
                what: format!(
                    "the recording has a mapping at {:#x}, inside the replayer's reserved range",
                    m.start
                ),
                hint: "this program cannot be replayed by this version".into(),
            });
        }
    }
    // Everything but the stub's code goes: its stack, the vDSO.
    for m in read_maps(task.tid)? {
        if overlaps_stub(m.start, m.end) || m.name == "[vsyscall]" {
            continue;
        }
        check(
            "munmap",
            sys(task, libc::SYS_munmap, &[m.start, m.end - m.start])?,
        )?;
    }
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let anon_fixed = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
    check(
        "mmap of the scratch page",
        sys(
            task,
            libc::SYS_mmap,
            &[STUB_SCRATCH, 4096, rw, anon_fixed, u64::MAX, 0],
        )?,
    )?;
    if syscallbuf {
        super::feed::map(task, STUB_SYSCALL)?;
    }

    for m in &state.mappings {
        let len = m.end - m.start;
        match &m.file {
            Some(hash) => {
                let path = trace.mappable_path(hash, scratch)?;
                let mut bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
                bytes.push(0);
                task.write_mem(STUB_SCRATCH, &bytes)?;
                let fd = check(
                    "open of a captured file",
                    sys(
                        task,
                        libc::SYS_openat,
                        &[
                            libc::AT_FDCWD as u64,
                            STUB_SCRATCH,
                            (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
                        ],
                    )?,
                )?;
                let flags = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
                let r = sys(
                    task,
                    libc::SYS_mmap,
                    &[m.start, len, m.prot as u64, flags, fd as u64, m.offset],
                )?;
                sys(task, libc::SYS_close, &[fd as u64])?;
                check(&format!("mmap of {}", m.name), r)?;
            }
            None => {
                // The stack grows down on demand as the kernel's own does (the same
                // RLIMIT_STACK and guard gap apply to it, see `set_stack_limit`), so
                // a program that overflows it does so at the same depth.
                let (start, flags) = if m.name == "[stack]" {
                    (m.start, anon_fixed | libc::MAP_GROWSDOWN as u64)
                } else {
                    (m.start, anon_fixed)
                };
                check(
                    &format!(
                        "mmap of {}",
                        if m.name.is_empty() {
                            "anonymous memory"
                        } else {
                            &m.name
                        }
                    ),
                    sys(
                        task,
                        libc::SYS_mmap,
                        &[start, m.end - start, m.prot as u64, flags, u64::MAX, 0],
                    )?,
                )?;
            }
        }
    }
    for w in &state.memory {
        task.write_mem(w.addr, &w.data)?;
    }
    set_stack_limit(task, state.stack_limit)?;
    // Same traps as at record: cpuid and rdtsc fault so recorded values can be injected.
    let cpuid = sys(
        task,
        libc::SYS_arch_prctl,
        &[crate::kernel::ARCH_SET_CPUID, 0],
    )?;
    if cpuid != 0 {
        tracing::debug!("CPUID faulting unavailable at replay ({cpuid})");
    }
    check(
        "prctl(PR_SET_TSC)",
        sys(
            task,
            libc::SYS_prctl,
            &[libc::PR_SET_TSC as u64, libc::PR_TSC_SIGSEGV as u64],
        )?,
    )?;
    // The name an exec gives (its file's, at most 15 bytes), not the stub's: a debugger
    // shows it.
    let base = state.path.rsplit('/').next().unwrap_or_default().as_bytes();
    let mut name = base[..base.len().min(15)].to_vec();
    name.push(0);
    task.write_mem(STUB_SCRATCH, &name)?;
    sys(
        task,
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, STUB_SCRATCH],
    )?;
    let regs = arch::regs_from_vec(&state.regs).ok_or_else(|| Error::BadTrace {
        path: trace.path.clone(),
        reason: "exec registers are damaged".into(),
    })?;
    task.set_regs(&regs)
}

/// Gives the replayed process the recorded RLIMIT_STACK soft limit, which bounds how far
/// its stack grows (`u64::MAX`: unlimited). The hard limit stays this machine's; where it
/// is lower than the recorded soft limit, the stack may overflow sooner than it did, and
/// the replay says so when it comes to that.
pub fn set_stack_limit(task: &mut Task, soft: u64) -> Result<()> {
    let mut current = [0u8; 16];
    let r = {
        // The scratch page holds the struct rlimit going in and out.
        task.write_mem(STUB_SCRATCH, &[0u8; 16])?;
        let r = sys(
            task,
            libc::SYS_prlimit64,
            &[0, libc::RLIMIT_STACK as u64, 0, STUB_SCRATCH],
        )?;
        current.copy_from_slice(&task.read_mem(STUB_SCRATCH, 16)?);
        r
    };
    check("reading RLIMIT_STACK", r)?;
    let hard = u64::from_le_bytes(current[8..16].try_into().expect("8 bytes"));
    let mut want = [0u8; 16];
    want[..8].copy_from_slice(&soft.min(hard).to_le_bytes());
    want[8..].copy_from_slice(&hard.to_le_bytes());
    if soft > hard {
        tracing::warn!(
            "the recording's stack limit ({soft} bytes) is above this machine's hard limit \
             ({hard}): a program that overflows its stack may do so sooner at replay"
        );
    }
    task.write_mem(STUB_SCRATCH, &want)?;
    let r = sys(
        task,
        libc::SYS_prlimit64,
        &[0, libc::RLIMIT_STACK as u64, STUB_SCRATCH, 0],
    )?;
    check("setting RLIMIT_STACK", r)?;
    Ok(())
}
