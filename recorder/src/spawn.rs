//! Starting a traced child: clone (sharing memory until exec), prepare,
//! `PTRACE_TRACEME`, execve; the child stops with `SIGTRAP` after its exec.

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
    /// Make rdtsc/rdtscp fault (`PR_SET_TSC`) and set `no_new_privs` before the exec
    /// (recording): both survive exec and fork, so every process of the tree has them,
    /// and the recorder need not inject them after each exec. The program cannot undo
    /// either (the table refuses `PR_SET_TSC`).
    pub trap_tsc_no_new_privs: bool,
    /// A Landlock ruleset (see [`crate::replay::sandbox`]) the child enters, with
    /// `no_new_privs`, just before it execs; the whole tree it starts stays in it.
    pub landlock: Option<std::os::fd::RawFd>,
    /// Start the program in another process group than the engine's (recording): what it
    /// sends to its group (`kill(0, sig)`) must not reach the recorder. `Some(0)`: a group
    /// of its own, which it leads; `Some(pgid)`: the group a [`GroupHolder`] leads, so
    /// that the program is no group leader and its `setsid()` succeeds as it would
    /// natively.
    pub process_group: Option<libc::pid_t>,
    /// With `process_group`: the terminal whose foreground group the program's
    /// becomes (the recorder was in the foreground of it), so that it reads the terminal
    /// and gets Ctrl-C as it would natively. See [`ForegroundGuard`].
    pub foreground_tty: Option<std::os::fd::RawFd>,
}

/// Gives a terminal's foreground back to the recorder's process group when dropped,
/// after [`SpawnSpec::foreground_tty`] handed it to the program's.
pub struct ForegroundGuard {
    tty: std::os::fd::RawFd,
    pgrp: libc::pid_t,
}

impl ForegroundGuard {
    /// The terminal on stdin, when this process's group is its foreground group (a
    /// shell's foreground job): the program then takes the foreground while it runs.
    pub fn for_stdin() -> Option<ForegroundGuard> {
        // SAFETY: plain syscalls on fd 0.
        unsafe {
            let pgrp = libc::getpgrp();
            (libc::isatty(0) == 1 && libc::tcgetpgrp(0) == pgrp)
                .then_some(ForegroundGuard { tty: 0, pgrp })
        }
    }

    /// The terminal's descriptor.
    pub fn tty(&self) -> std::os::fd::RawFd {
        self.tty
    }
}

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        // A background group that sets the foreground gets SIGTTOU unless it blocks it.
        // SAFETY: signal-mask calls on locals and tcsetpgrp on our own terminal.
        unsafe {
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, &mut old);
            libc::tcsetpgrp(self.tty, self.pgrp);
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::Spawn {
        program: PathBuf::from(s),
        reason: "an argument contains a NUL byte".into(),
    })
}

/// Starts a traced child and returns its pid once it is stopped just after its execve
/// succeeded (a `SIGTRAP` signal-delivery stop; resuming it with signal 0 discards the
/// trap). The caller sets the ptrace options there.
///
/// The child shares the engine's memory until it execs (`CLONE_VM | CLONE_VFORK`, as
/// `posix_spawn` does), so starting it copies no page tables: a fork of the engine
/// process cost ~0.3 ms per recording and held its address space's lock meanwhile,
/// which stalled the other recordings of a parallel hunt. Between clone and exec the
/// child only makes raw system calls on data prepared here; the engine thread is
/// suspended meanwhile and all signals are blocked, so no handler of the engine runs on
/// the child's stack.
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
    let child = Child {
        path: path.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: env_p.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        cpu: spec.cpu,
        no_aslr: spec.no_aslr,
        null_stdio: spec.null_stdio,
        stdio_fds: spec.stdio_fds,
        no_core: spec.no_core,
        trap_tsc_no_new_privs: spec.trap_tsc_no_new_privs,
        landlock: spec.landlock.unwrap_or(-1),
        process_group: spec.process_group.unwrap_or(-1),
        foreground_tty: spec.foreground_tty.unwrap_or(-1),
        // SAFETY: plain syscall.
        parent: unsafe { libc::getpid() },
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack is ours and outlives the child's use of it (CLONE_VFORK returns
    // only once the child has exec'd or exited); `child` and everything it points to
    // stay alive and unchanged until then. Signals are blocked around the clone (see
    // the function's docs) and the previous mask is restored afterwards.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let top = stack.as_mut_ptr().add(CHILD_STACK & !15) as *mut libc::c_void;
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &child as *const Child as *mut libc::c_void,
        );
        let err = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(Error::Spawn {
                program: spec.path.to_owned(),
                reason: err.to_string(),
            });
        }
        pid
    };
    drop(stack);
    match crate::ptrace::wait_for(pid)? {
        crate::ptrace::Stop::Signal(libc::SIGTRAP) => {
            // The program starts with an empty signal mask (see `child_main`).
            crate::ptrace::Task::new(pid).set_sigmask(0)?;
            Ok(pid)
        }
        crate::ptrace::Stop::Exited(127) => Err(Error::Spawn {
            program: spec.path.to_owned(),
            reason: "execve failed".into(),
        }),
        crate::ptrace::Stop::Exited(126) => Err(Error::Spawn {
            program: spec.path.to_owned(),
            reason:
                "could not prepare the child (working directory, rdtsc trapping, sandbox or ptrace)"
                    .into(),
        }),
        other => Err(Error::Spawn {
            program: spec.path.to_owned(),
            reason: format!("the child did not stop after its exec as expected ({other:?})"),
        }),
    }
}

/// Stack for the child between clone and exec: it runs a handful of system calls.
const CHILD_STACK: usize = 64 * 1024;

/// What the child needs, prepared by the engine before the clone.
struct Child {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    cpu: Option<usize>,
    no_aslr: bool,
    null_stdio: bool,
    stdio_fds: Option<[i32; 3]>,
    no_core: bool,
    trap_tsc_no_new_privs: bool,
    /// Landlock ruleset descriptor, or -1.
    landlock: i32,
    /// The process group to join (0: a new one of its own), or -1.
    process_group: libc::pid_t,
    /// Terminal to take the foreground of, or -1.
    foreground_tty: i32,
    /// The engine's process id, what the child's getppid must say.
    parent: libc::pid_t,
}

/// The child's side of [`spawn_traced`]: prepare, `PTRACE_TRACEME`, execve. With no
/// ptrace options set yet, the kernel stops it with `SIGTRAP` once the exec succeeded.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `Child` of `spawn_traced`, alive while the engine
    // thread is suspended in clone; only raw system calls follow.
    unsafe {
        let c = &*(arg as *const Child);
        // Default dispositions and an empty mask: the program must not inherit the
        // recorder's (Rust ignores SIGPIPE, for one).
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        // Every signal stays blocked until the exec, but the SIGTRAP it raises: one
        // delivered to the traced child before that would stop it while its tracer still
        // waits in clone for the exec. `spawn_traced` empties the mask at the SIGTRAP
        // stop, and a signal held meanwhile is delivered then.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, libc::SIGTRAP);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if c.no_aslr {
            let cur = libc::personality(0xffff_ffff);
            if cur != -1 {
                libc::personality((cur | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong);
            }
        }
        if let Some(cpu) = c.cpu {
            let mut cs: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut cs);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cs);
        }
        if c.no_core {
            let rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
        }
        if c.null_stdio {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if fd >= 0 {
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
                if fd > 2 {
                    libc::close(fd);
                }
            }
        }
        if let Some(fds) = c.stdio_fds {
            for (target, fd) in fds.iter().enumerate() {
                libc::dup2(*fd, target as i32);
            }
        }
        if c.process_group >= 0 {
            libc::setpgid(0, c.process_group);
            // Every signal is blocked here, SIGTTOU included: a background group may
            // take the foreground.
            if c.foreground_tty >= 0 {
                libc::tcsetpgrp(c.foreground_tty, libc::getpgrp());
            }
        }
        if !c.cwd.is_null() && libc::chdir(c.cwd) != 0 {
            libc::_exit(126);
        }
        if c.trap_tsc_no_new_privs {
            if libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0) != 0 {
                libc::_exit(126);
            }
            // A failure only means no seccomp filter later (see `record::seccomp`).
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }
        // Until the engine sets PTRACE_O_EXITKILL at the post-exec stop, an engine killed
        // meanwhile would leave the program running untraced: it dies with the engine's
        // thread instead (checked against a parent that died before the prctl).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != c.parent {
            libc::_exit(126);
        }
        if c.landlock >= 0
            && (libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_landlock_restrict_self, c.landlock, 0) != 0)
        {
            libc::_exit(126);
        }
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            libc::_exit(126);
        }
        // ETXTBSY: another thread of the engine wrote an executable (a replay's stub)
        // and a child it cloned meanwhile still holds a copy of that writable fd until
        // its own exec closes it (close-on-exec). That lasts until the other child's
        // exec: try again a little later, a bounded number of times.
        for _ in 0..1000 {
            libc::execve(c.path, c.argv, c.envp);
            if *libc::__errno_location() != libc::ETXTBSY {
                break;
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        libc::_exit(127);
    }
}

/// A process of the engine's that leads the process group the recorded program joins,
/// and waits there, blocking every signal, until dropped.
///
/// The program must run in another group than the recorder's (what it sends to its
/// group, `kill(0, sig)`, or a terminal's Ctrl-C to the foreground group, must not
/// reach the recorder as such), but must not lead that group either: natively it is
/// no group leader (a shell made its group before the exec, or it runs in its parent's),
/// so its `setsid()` succeeds, which a group leader's fails with `EPERM`.
///
/// The holder is a child of the thread that creates it (it dies with that thread,
/// `PR_SET_PDEATHSIG`), shares the engine's memory (`CLONE_VM`: no page tables are
/// copied, as in [`spawn_traced`]) and runs on a stack of its own, only `pause()`. With
/// every signal blocked, only SIGKILL ends it (the program's `kill(0, SIGKILL)` does):
/// a wait loop of that thread then reaps it and must pass it over ([`GroupHolder::pid`]).
pub struct GroupHolder {
    pid: libc::pid_t,
    /// Refers to the holder even once reaped by someone else (no pid reuse).
    pidfd: std::os::fd::OwnedFd,
    /// The holder's stack, in use until it is dead.
    _stack: Vec<u8>,
}

impl GroupHolder {
    /// Starts the holder and makes it the leader of a new process group (its pid).
    pub fn start() -> Result<GroupHolder> {
        use std::os::fd::FromRawFd;
        let mut stack = vec![0u8; HOLDER_STACK];
        // SAFETY: the child only runs `holder_main` (raw syscalls) on `stack`, which
        // lives in the returned value until the child is dead (see `Drop`); every signal
        // is blocked around the clone, so it starts with all of them blocked.
        unsafe {
            let parent = libc::getpid();
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = stack.as_mut_ptr().add(HOLDER_STACK & !15) as *mut libc::c_void;
            let pid = libc::clone(
                holder_main,
                top,
                libc::CLONE_VM | libc::SIGCHLD,
                parent as usize as *mut libc::c_void,
            );
            let err = std::io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            let fail = |reason: String| Error::Spawn {
                program: PathBuf::from("(process group holder)"),
                reason,
            };
            if pid < 0 {
                return Err(fail(err.to_string()));
            }
            // It cannot have died yet (only SIGKILL ends it): the pid is still its own.
            let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
            if fd < 0 {
                let err = std::io::Error::last_os_error();
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
                return Err(fail(format!("pidfd_open: {err}")));
            }
            let holder = GroupHolder {
                pid,
                pidfd: std::os::fd::OwnedFd::from_raw_fd(fd),
                _stack: stack,
            };
            // The parent may set its child's group (before any exec): the group exists
            // as soon as this returns, whenever the child first runs.
            if libc::setpgid(pid, pid) != 0 {
                return Err(fail(format!(
                    "setpgid: {}",
                    std::io::Error::last_os_error()
                )));
            }
            Ok(holder)
        }
    }

    /// Its pid, which is also the process group's id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}

impl Drop for GroupHolder {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscalls on our own pidfd; `waitid` fails with ECHILD when a wait
        // loop reaped the holder already.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            let mut info: libc::siginfo_t = std::mem::zeroed();
            while libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WALL,
            ) != 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
    }
}

/// Stack of a [`GroupHolder`]: it makes three system calls.
const HOLDER_STACK: usize = 16 * 1024;

/// The holder's side of [`GroupHolder::start`]: dies with its parent thread, then
/// sleeps (every signal blocked) until killed.
extern "C" fn holder_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: raw system calls only (the memory is the engine's: nothing is written).
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL,
            0,
            0,
            0,
        );
        if libc::syscall(libc::SYS_getppid) as usize != arg as usize {
            libc::syscall(libc::SYS_exit, 0);
        }
        loop {
            libc::syscall(libc::SYS_pause);
        }
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

/// The calling thread pinned to some CPUs until this is dropped, which gives the
/// thread its earlier set back. A hunt's worker records run after run on one thread:
/// each recording must read (and show the program) the set the thread had before the
/// previous one pinned it.
#[derive(Debug)]
pub struct Pinned {
    before: Vec<usize>,
}

impl Pinned {
    /// Pins the calling thread to `cpus`; `before` is the set to restore.
    pub fn pin(cpus: &[usize], before: Vec<usize>) -> Self {
        pin_self(cpus);
        Pinned { before }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        pin_self(&self.before);
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
