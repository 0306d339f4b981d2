//! Starting a traced child: fork, prepare, `PTRACE_TRACEME`, stop, execve.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// How the child is prepared before it execs.
pub struct SpawnSpec<'a> {
    /// Executable path (already resolved).
    pub path: &'a Path,
    /// argv, including argv[0].
    pub argv: Vec<OsString>,
    /// Environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: Option<&'a Path>,
    /// Core to pin the child to.
    pub cpu: Option<usize>,
    /// Try to turn off address-space randomisation.
    pub no_aslr: bool,
    /// Redirect stdin, stdout and stderr to /dev/null.
    pub null_stdio: bool,
    /// Or to these open descriptors (stdin, stdout, stderr), dup2'ed in the child.
    pub stdio_fds: Option<[i32; 3]>,
    /// Set RLIMIT_CORE to 0 (replay must not drop core files).
    pub no_core: bool,
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::Spawn {
        program: PathBuf::from(s),
        reason: "an argument contains a NUL byte".into(),
    })
}

/// Forks a child that stops itself with SIGSTOP under `PTRACE_TRACEME` and then execs.
/// Returns its pid once it is in that first stop. Only async-signal-safe calls run in the
/// child between fork and exec.
pub fn spawn_traced(spec: &SpawnSpec) -> Result<i32> {
    let path = cstr(spec.path.as_os_str())?;
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect::<Result<_>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstr(&kv)
        })
        .collect::<Result<_>>()?;
    let cwd = spec.cwd.map(|c| cstr(c.as_os_str())).transpose()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_p.push(std::ptr::null());
    let devnull = c"/dev/null";

    // SAFETY: between fork and exec the child only makes raw syscalls on data prepared
    // above; it never allocates or takes locks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Spawn {
            program: spec.path.to_owned(),
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    if pid == 0 {
        unsafe {
            // Default dispositions and an empty mask: the program must not inherit the
            // recorder's (Rust ignores SIGPIPE, for one).
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if spec.no_aslr {
                let cur = libc::personality(0xffff_ffff);
                if cur != -1 {
                    libc::personality((cur | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong);
                }
            }
            if let Some(cpu) = spec.cpu {
                let mut cs: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut cs);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cs);
            }
            if spec.no_core {
                let rl = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &rl);
            }
            if spec.null_stdio {
                let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
                if fd >= 0 {
                    libc::dup2(fd, 0);
                    libc::dup2(fd, 1);
                    libc::dup2(fd, 2);
                    if fd > 2 {
                        libc::close(fd);
                    }
                }
            }
            if let Some(fds) = spec.stdio_fds {
                for (target, fd) in fds.iter().enumerate() {
                    libc::dup2(*fd, target as i32);
                }
            }
            if let Some(cwd) = &cwd {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    libc::_exit(126);
                }
            }
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(126);
            }
            libc::raise(libc::SIGSTOP);
            libc::execve(path.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
            libc::_exit(127);
        }
    }
    match crate::ptrace::wait_for(pid)? {
        crate::ptrace::Stop::Signal(libc::SIGSTOP) => Ok(pid),
        other => Err(Error::Spawn {
            program: spec.path.to_owned(),
            reason: format!("the child did not stop as expected ({other:?})"),
        }),
    }
}

/// Resolves a program name the way `execvp` would.
pub fn resolve_program(program: &Path, env_path: Option<&OsStr>) -> Result<PathBuf> {
    let s = program.as_os_str().as_bytes();
    if s.contains(&b'/') {
        return std::fs::canonicalize(program).map_err(|e| Error::Spawn {
            program: program.to_owned(),
            reason: e.to_string(),
        });
    }
    let path = env_path
        .map(|p| p.to_owned())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return std::fs::canonicalize(&cand).map_err(|e| Error::Spawn {
                    program: cand,
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(Error::Spawn {
        program: program.to_owned(),
        reason: "not found in PATH".into(),
    })
}

/// The CPUs this thread may run on.
pub fn cpu_set() -> Vec<usize> {
    // SAFETY: plain syscall into a local.
    unsafe {
        let mut cs: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut cs) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &cs))
            .collect()
    }
}

/// Pins the calling thread to a set of CPUs.
pub fn pin_self(cpus: &[usize]) {
    // SAFETY: plain syscall from a local.
    unsafe {
        let mut cs: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut cs);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cs);
    }
}
