//! `--gdb` and `--gdb-server`: from a trace directory to a served replay.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use recorder::output::Stream;

use crate::errors::{Error, Result};
use crate::live::TraceOpener;
use crate::recording::Recording;
use crate::server::{self, GdbCommand};
use crate::sysroot::Sysroot;
use crate::target::ReplayTarget;
use crate::timeline::Timeline;

/// Where the session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Just after the program's exec (its first instruction), as rr does.
    #[default]
    Start,
    /// The boundary before this event (`cargo chaos dump` numbers).
    Event(u64),
    /// Just before the program's exit.
    End,
}

/// How to serve.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Launch gdb connected to the server on an ephemeral local port.
    Launch {
        /// More arguments for gdb, after the connecting ones (tests pass `-batch -x
        /// SCRIPT`).
        gdb_args: Vec<String>,
    },
    /// Only serve on this address, printing how to connect; gdb may connect again
    /// after disconnecting, until it kills the program.
    Serve {
        /// `HOST:PORT` (a port of 0 picks a free one).
        addr: String,
    },
}

/// Options of a debugging session.
#[derive(Debug, Clone)]
pub struct DebugOptions {
    /// Where to start.
    pub start: StartAt,
    /// Launch gdb or only serve.
    pub mode: Mode,
    /// Do not show the program's output.
    pub quiet: bool,
    /// A local checkout of the recorded program's sources: gdb maps the recorded
    /// working directory (the package's root under `cargo test`) to it
    /// (`set substitute-path`).
    pub source_dir: Option<std::path::PathBuf>,
    /// The recorded process to debug (`--gdb-pid`); `None`: the first one.
    pub pid: Option<i32>,
}

/// Serves the replay of the trace at `trace` to gdb. Returns gdb's exit status when
/// it launched gdb, else 0.
pub fn debug(trace: &Path, options: &DebugOptions) -> Result<i32> {
    let started = std::time::Instant::now();
    let recording = Recording::open(trace, options.pid)?;
    if let Some(note) = processes_note(&recording) {
        eprintln!("{note}");
    }
    let sysroot = Sysroot::build(&recording.trace, &recording.exec)?;
    let mut extra = Vec::new();
    if let Some(dir) = &options.source_dir {
        let recorded = recording
            .trace
            .header()
            .map_err(|e| Error::io("reading the trace's header", std::io::Error::other(e)))?
            .cwd;
        extra.push(format!(
            "set substitute-path {} {}",
            gdb_quote(&recorded),
            gdb_quote(&dir.display().to_string())
        ));
    }
    let quiet = options.quiet;
    let output: crate::live::Output = Rc::new(move |stream, data: &[u8]| {
        if quiet {
            return;
        }
        let _ = match stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(data).and_then(|_| o.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    });
    let opener = TraceOpener::new(
        &recording.trace.path,
        options.pid,
        (recording.begin, recording.end, recording.end_at_call),
        output,
    )
    .with_ticks(Rc::new(recording.ticks.clone()));
    let mut timeline = Timeline::new(opener)?;
    match options.start {
        StartAt::Start => {}
        StartAt::Event(n) => {
            timeline.go_to_event(n)?;
        }
        StartAt::End => {
            timeline.go_to_end()?;
        }
    }
    let mut target = ReplayTarget::new(timeline, &recording.exec.path, recording.auxv.clone())
        .with_modid_field(sysroot.tls_modid_field());
    tracing::info!(
        "replay ready for gdb in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    match &options.mode {
        Mode::Serve { addr } => {
            let listener = server::listen(Some(addr))?;
            let local = listener
                .local_addr()
                .map_err(|e| Error::io("reading the listening address", e))?;
            let gdb = GdbCommand::new(local, &sysroot, &extra);
            eprintln!("chaos: gdb server listening on {local}");
            eprintln!("chaos: connect with:\n{}", gdb.shell_line());
            eprintln!(
                "chaos: or, in VS Code, a launch.json configuration:\n{}",
                GdbCommand::vscode_launch(local, &sysroot)
            );
            server::serve(&mut target, &listener)?;
            Ok(0)
        }
        Mode::Launch { gdb_args } => {
            let listener = server::listen(None)?;
            let local = listener
                .local_addr()
                .map_err(|e| Error::io("reading the listening address", e))?;
            let gdb = GdbCommand::new(local, &sysroot, &extra);
            launch_and_serve(&gdb, gdb_args, &listener, &mut target)
        }
    }
}

fn launch_and_serve(
    gdb: &GdbCommand,
    extra: &[String],
    listener: &TcpListener,
    target: &mut ReplayTarget<TraceOpener>,
) -> Result<i32> {
    let mut cmd = Command::new(&gdb.program);
    cmd.args(&gdb.args).args(extra);
    recorder::arch::self_traps::untrapped_child(&mut cmd);
    let terminal = Terminal::take_for_child(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", gdb.program.display()), e))?;
    terminal.give_to(child.id() as i32);
    // gdb connects at once. If it exits first (it could not start, or a script
    // failed), a watcher connects in its place so that `accept` returns.
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(status);
        let _ = std::net::TcpStream::connect(local);
    });
    let (conn, _) = listener
        .accept()
        .map_err(|e| Error::io("accepting gdb's connection", e))?;
    let early = rx.try_recv().ok();
    let served = match early {
        Some(_) => Ok(()),
        None => server::serve_connection(target, conn).map(|_| ()),
    };
    let _ = watcher.join();
    terminal.restore();
    served?;
    let status = match early {
        Some(s) => s,
        None => rx
            .recv()
            .map_err(|_| Error::io("waiting for gdb", std::io::ErrorKind::Other.into()))?,
    };
    Ok(status
        .map_err(|e| Error::io("waiting for gdb", e))?
        .code()
        .unwrap_or(1))
}

/// The terminal's foreground process group: gdb gets it while it runs, so that Ctrl-C
/// reaches gdb only (which sends it to the server as an interrupt) and not the
/// replayed program, which shares our process group.
struct Terminal {
    fd: Option<i32>,
    ours: i32,
}

impl Terminal {
    fn take_for_child(cmd: &mut Command) -> Terminal {
        use std::io::IsTerminal;
        use std::os::unix::process::CommandExt;
        if !std::io::stdin().is_terminal() {
            return Terminal { fd: None, ours: 0 };
        }
        cmd.process_group(0);
        // SAFETY: getpgrp has no arguments and cannot fail.
        let ours = unsafe { libc::getpgrp() };
        Terminal { fd: Some(0), ours }
    }

    fn give_to(&self, pgid: i32) {
        if let Some(fd) = self.fd {
            set_foreground(fd, pgid);
        }
    }

    fn restore(&self) {
        if let Some(fd) = self.fd {
            set_foreground(fd, self.ours);
        }
    }
}

fn set_foreground(fd: i32, pgid: i32) {
    // A background process group calling tcsetpgrp gets SIGTTOU: ignored meanwhile.
    // SAFETY: signal with SIG_IGN and the previous handler; tcsetpgrp on a terminal fd.
    unsafe {
        let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::tcsetpgrp(fd, pgid);
        libc::signal(libc::SIGTTOU, old);
    }
}

/// What the user should know about a recording of several processes: which one gdb
/// debugs, the others, and that a session does not follow forks. `None` for one
/// process.
pub fn processes_note(recording: &Recording) -> Option<String> {
    if recording.processes.len() < 2 {
        return None;
    }
    let mut note = format!(
        "chaos: the recording has {} processes; gdb debugs process {}:",
        recording.processes.len(),
        recording.pid
    );
    for p in &recording.processes {
        let origin = match p.parent {
            None => "the first".to_string(),
            Some(parent) => format!("forked by {parent}"),
        };
        let marker = if p.pid == recording.pid { "*" } else { " " };
        note.push_str(&format!(
            "\n  {marker} {} ({origin}) {}",
            p.pid,
            p.programs.join(" then ")
        ));
    }
    note.push_str(
        "\nchaos: a session follows one process: the processes it forks are not followed \
         (gdb's `follow-fork-mode child` and `inferior N` do nothing here); debug another \
         with --gdb-pid PID",
    );
    Some(note)
}

/// A path as one argument of a gdb command (quoted when it has spaces or quotes).
fn gdb_quote(path: &str) -> String {
    if path.contains([' ', '"', '\\', '\'']) {
        format!("\"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        path.to_string()
    }
}
