//! What happens at the stop just after the initial execve: arm CPUID faulting and TSC
//! trapping (the kernel clears CPUID faulting on exec), hide the vDSO so time calls
//! become real syscalls, and capture the new address space.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::address_space::read_maps;
use crate::arch;
use crate::errors::{Error, Result};
use crate::inject::{inject_syscall, with_syscall_at};
use crate::ptrace::Task;
use crate::trace::{ExecState, FileStore, Mapping, MemWrite};

use super::redirect::{SCRATCH_BASE, SLOTS, SLOT_SIZE};

const SCRATCH_LEN: u64 = SLOTS * SLOT_SIZE;

use crate::kernel::ARCH_SET_CPUID;
const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;

/// What the exec stop produced.
pub struct ExecSetup {
    /// The image.
    pub state: ExecState,
    /// personality(ADDR_NO_RANDOMIZE) took effect.
    pub aslr_disabled: bool,
    /// CPUID faulting is armed.
    pub cpuid_faulting: bool,
}

/// Arms the traps and captures the image. The task is stopped just after an execve (the
/// first exec's `SIGTRAP` stop, or the exit stop of a later one).
/// With `syscallbuf`, the syscall-buffering entry page is mapped too (see
/// `crate::syscallbuf`).
pub fn arm_and_capture(
    task: &mut Task,
    files: &mut FileStore,
    exe: &str,
    syscallbuf: bool,
) -> Result<ExecSetup> {
    let regs = task.regs()?;
    let cpuid_faulting = arm_traps(task, regs.rip)?;
    if syscallbuf {
        crate::syscallbuf::map_entry_page(task, regs.rip)?;
    }
    hide_vdso(task, regs.rsp)?;
    let state = capture(task, files, exe)?;
    let personality =
        std::fs::read_to_string(format!("/proc/{}/personality", task.tid)).unwrap_or_default();
    let aslr_disabled = u32::from_str_radix(personality.trim(), 16)
        .map(|p| p & libc::ADDR_NO_RANDOMIZE as u32 != 0)
        .unwrap_or(false);
    Ok(ExecSetup {
        state,
        aslr_disabled,
        cpuid_faulting,
    })
}

/// Makes cpuid fault (SIGSEGV) so the recorder can emulate it, and maps the scratch
/// area. Returns whether CPUID faulting is available. (rdtsc/rdtscp fault already: the
/// recording's first process set `PR_SET_TSC` before its exec, and every process of the
/// tree inherits it across fork and exec, see `spawn::SpawnSpec`.)
pub fn arm_traps(task: &mut Task, at: u64) -> Result<bool> {
    let (cpuid, scratch) = with_syscall_at(task, at, |task| {
        let cpuid = inject_syscall(task, at, libc::SYS_arch_prctl as u64, &[ARCH_SET_CPUID, 0]);
        let scratch = inject_syscall(
            task,
            at,
            libc::SYS_mmap as u64,
            &[
                SCRATCH_BASE,
                SCRATCH_LEN,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE)
                    as u64,
                u64::MAX,
                0,
            ],
        );
        (cpuid, scratch)
    })?;
    if scratch? != SCRATCH_BASE as i64 {
        return Err(Error::Unsupported {
            what: "cannot map the recorder's scratch area into the program".into(),
            hint: "report this as a bug".into(),
        });
    }
    let cpuid = cpuid?;
    if cpuid != 0 {
        // Not a warning: most AMD machines and many VMs lack it, and the recording still
        // replays on this machine (replay runs on the recorded core, whose cpuid answers
        // are the same). The trace says so and `packer::compat` checks other machines.
        tracing::debug!("CPUID faulting is not available (arch_prctl returned {cpuid}): cpuid results are not recorded");
    }
    Ok(cpuid == 0)
}

/// Rewrites AT_SYSINFO_EHDR in the auxv to AT_IGNORE, so libc does not find the vDSO and
/// makes real (recordable) syscalls for clock_gettime and friends.
///
/// The initial stack (argc, argv, envp, auxv) is read in one piece: word by word it took
/// one `pread` per environment variable.
fn hide_vdso(task: &mut Task, rsp: u64) -> Result<()> {
    let mut stack = InitialStack {
        at: rsp,
        bytes: task.read_mem_partial(rsp, 16 * 1024)?,
    };
    let argc = stack.word(task, 0)?;
    let mut i = argc + 2; // argc, argv[0..argc], NULL
    while stack.word(task, i)? != 0 {
        i += 1;
    }
    i += 1;
    loop {
        let kind = stack.word(task, i)?;
        if kind == 0 {
            break;
        }
        if kind == AT_SYSINFO_EHDR {
            task.write_mem(rsp + i * 8, &AT_IGNORE.to_le_bytes())?;
        }
        i += 2;
    }
    Ok(())
}

/// The words at the top of a new program's stack, read in chunks.
struct InitialStack {
    at: u64,
    bytes: Vec<u8>,
}

impl InitialStack {
    /// The `i`th 8-byte word from the stack pointer.
    fn word(&mut self, task: &mut Task, i: u64) -> Result<u64> {
        let off = (i * 8) as usize;
        if off + 8 > self.bytes.len() {
            let more = task.read_mem(
                self.at + self.bytes.len() as u64,
                off + 8 - self.bytes.len(),
            )?;
            self.bytes.extend_from_slice(&more);
        }
        Ok(u64::from_le_bytes(
            self.bytes[off..off + 8].try_into().expect("8 bytes"),
        ))
    }
}

fn capture(task: &mut Task, files: &mut FileStore, exe: &str) -> Result<ExecState> {
    let tid = task.tid;
    let maps = read_maps(tid)?;
    let exe_link = PathBuf::from(format!("/proc/{tid}/exe"));
    let exe_ino = std::fs::metadata(&exe_link)
        .map_err(|e| Error::io(&exe_link, e))?
        .ino();
    let regs = task.regs()?;
    let mut mappings = Vec::new();
    let mut memory = Vec::new();
    for m in &maps {
        let ours = m.start >= SCRATCH_BASE && m.end <= SCRATCH_BASE + SCRATCH_LEN
            || crate::syscallbuf::is_entry_page(m.start, m.end);
        if ours || m.name == "[vsyscall]" || m.name == "[vdso]" || m.name.starts_with("[vvar") {
            continue;
        }
        let file = if m.is_file() {
            let path = if m.inode == exe_ino {
                exe_link.clone()
            } else {
                PathBuf::from(&m.name)
            };
            let ino = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .ino();
            if ino != m.inode {
                return Err(Error::Unsupported {
                    what: format!("{} changed on disk while the program was starting", m.name),
                    hint: "do not rebuild or replace files while recording".into(),
                });
            }
            Some(files.capture(&path)?)
        } else {
            None
        };
        if m.prot & libc::PROT_WRITE != 0 || m.name == "[stack]" {
            // A new stack is zero below the page the stack pointer is in (the kernel
            // put argv, envp and auxv at its top): replay maps it zeroed, so only the
            // used part is kept (a few KiB of ~132).
            let from = if m.name == "[stack]" && (m.start..m.end).contains(&regs.rsp) {
                regs.rsp & !0xfff
            } else {
                m.start
            };
            memory.push(MemWrite {
                addr: from,
                data: task.read_mem(from, (m.end - from) as usize)?,
            });
        }
        mappings.push(Mapping {
            start: m.start,
            end: m.end,
            prot: m.prot,
            shared: m.shared,
            offset: m.offset,
            file,
            name: m.name.clone(),
        });
    }
    Ok(ExecState {
        tid,
        path: exe.to_string(),
        regs: arch::regs_to_vec(&regs),
        mappings,
        memory,
        brk: start_brk(tid)?,
        stack_limit: stack_limit(tid),
    })
}

/// The `start_brk` field of `/proc/PID/stat` (field 47).
fn start_brk(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    fields
        .get(47 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Error::BadTrace {
            path: path.into(),
            reason: "cannot read start_brk".into(),
        })
}

fn stack_limit(pid: i32) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reading into a local.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_STACK, std::ptr::null(), &mut rl) };
    if r != 0 {
        8 << 20
    } else {
        // RLIM_INFINITY is u64::MAX: unlimited, as replay reads it.
        rl.rlim_cur
    }
}
