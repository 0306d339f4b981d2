//! The trace's header (`header.json`): what it says about the run, and the program's
//! start, which fills in the rest (ASLR, CPUID faulting, the calls the seccomp filter
//! lets through) before it is written with the first `Exec` event.

use std::ffi::OsString;
use std::path::Path;

use super::*;

/// The header as known before the program starts.
pub(super) fn initial(
    opts: &RecordOptions,
    argv: &[OsString],
    cwd: &Path,
    exe: &Path,
    seed: u64,
    cpu_set: &[usize],
    pinned: usize,
) -> Header {
    Header {
        format_version: crate::trace::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        argv: argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        cwd: cwd.to_string_lossy().into_owned(),
        env: opts
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect(),
        removed_env: opts.removed_env.clone(),
        exe: exe.to_string_lossy().into_owned(),
        hostname: crate::host::hostname(),
        kernel: crate::host::kernel_version(),
        cpu_model: crate::host::cpu_model(),
        seed,
        chaos: opts.chaos,
        aslr_disabled: false,
        cpuid_faulting: false,
        cpu_set: cpu_set.to_vec(),
        pinned_cpu: pinned,
        untraced: Vec::new(),
        syscallbuf: false,
        desched: false,
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    }
}

impl Recorder {
    /// The program stands just after its first execve: set it up (ptrace options, the
    /// parent-death signal reset, the traps armed, the seccomp filter), capture its
    /// image, write the header and the first `Exec` event.
    pub(super) fn start(&mut self, mut header: Header) -> Result<()> {
        let leader = self.leader;
        let task = &mut self.threads.get_mut(&leader).expect("leader").task;
        // `spawn_traced` left it stopped just after its execve.
        task.set_options(crate::ptrace::OPTIONS)?;
        task.reopen_mem();
        let entry = task.regs()?.rip;
        // The spawn asked for SIGKILL at the engine's death until PTRACE_O_EXITKILL (set
        // just above) took over; the program must see the kernel's default, none.
        let reset = crate::inject::with_syscall_at(task, entry, |t| {
            crate::inject::inject_syscall(
                t,
                entry,
                libc::SYS_prctl as u64,
                &[libc::PR_SET_PDEATHSIG as u64, 0],
            )
        })?;
        if !matches!(reset, Ok(0)) {
            tracing::debug!("could not reset the parent-death signal: {reset:?}");
        }
        let setup = exec::arm_and_capture(task, &mut self.files, &header.exe, self.syscallbuf)?;
        header.aslr_disabled = setup.aslr_disabled;
        header.cpuid_faulting = setup.cpuid_faulting;
        let untraced = seccomp::untraced();
        let buffered = if self.syscallbuf {
            seccomp::buffered()
        } else {
            Vec::new()
        };
        if seccomp::install(task, entry, &untraced, &buffered)? {
            self.seccomp = true;
            header.untraced = untraced;
        } else {
            // Without the filter every call at the entry would stop anyway: the library
            // is told buffering is off when it registers.
            self.syscallbuf = false;
        }
        header.syscallbuf = self.syscallbuf;
        self.desched = self.syscallbuf && desched::available();
        header.desched = self.desched;
        if let Err(e) = self.trace.write_header(&header) {
            self.fault.note(e);
        }
        self.events.push(&Event::Exec(Box::new(setup.state)))?;
        self.events.flush();
        Ok(())
    }
}
