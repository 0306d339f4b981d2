//! Serving a replay over TCP, and launching gdb on it.

use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, GdbStubError, MultiThreadStopReason};

use crate::backend::Opener;
use crate::errors::{Error, Result};
use crate::sysroot::Sysroot;
use crate::target::ReplayTarget;
use crate::tls::{frame, Filtered, PacketFilter};

struct EventLoop<O>(PhantomData<O>);

/// How often a long run looks for gdb's Ctrl-C.
const INTERRUPT_CHECK: std::time::Duration = std::time::Duration::from_millis(5);

impl<O: Opener> BlockingEventLoop for EventLoop<O> {
    type Target = ReplayTarget<O>;
    type Connection = TcpStream;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut ReplayTarget<O>,
        conn: &mut TcpStream,
    ) -> std::result::Result<Event<Self::StopReason>, WaitForStopReasonError<Error, std::io::Error>>
    {
        // Asked between events: anything from gdb while running is its Ctrl-C (0x03).
        // Looking costs two syscalls (gdbstub's `peek` makes the socket non-blocking
        // first), so it is done at most every INTERRUPT_CHECK, not at every event.
        let mut interrupted = false;
        // The clock by system call: the vDSO's `rdtsc` traps on the engine thread.
        let now = recorder::arch::self_traps::monotonic_now;
        let mut last_check = now();
        let mut check = || {
            let now = now();
            if now.saturating_sub(last_check) < INTERRUPT_CHECK {
                return false;
            }
            last_check = now;
            interrupted = matches!(conn.peek(), Ok(Some(_)));
            interrupted
        };
        let stop = target
            .run_pending(&mut check)
            .map_err(WaitForStopReasonError::Target)?;
        if interrupted {
            let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
            return Ok(Event::IncomingData(byte));
        }
        Ok(Event::TargetStopped(stop))
    }

    fn on_interrupt(
        target: &mut ReplayTarget<O>,
    ) -> std::result::Result<Option<Self::StopReason>, Error> {
        Ok(Some(MultiThreadStopReason::SignalWithThread {
            tid: std::num::NonZeroUsize::new(target.timeline().current_thread().max(1) as usize)
                .unwrap_or(std::num::NonZeroUsize::MIN),
            signal: Signal::SIGINT,
        }))
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// gdb detached or closed the connection; the session stays where it is.
    Disconnected,
    /// gdb killed the program (`kill`, or quitting gdb): the session is over.
    Killed,
}

/// Serves one gdb connection.
///
/// `gdbstub`'s blocking loop, with one addition: while the replay is stopped, the bytes
/// from gdb go through a [`PacketFilter`] that answers `qGetTLSAddr` (thread-local
/// variables, which `gdbstub` does not know) from the replay.
pub fn serve_connection<O: Opener>(target: &mut ReplayTarget<O>, conn: TcpStream) -> Result<Ended> {
    let _ = conn.set_nodelay(true);
    let stub = GdbStub::<ReplayTarget<O>, TcpStream>::new(conn);
    match run(stub, target) {
        Ok(DisconnectReason::Disconnect) => Ok(Ended::Disconnected),
        Ok(_) => Ok(Ended::Killed),
        Err(Failed::Target(e)) => Err(e),
        Err(Failed::Connection(e)) => {
            tracing::debug!("gdb connection ended: {e}");
            Ok(Ended::Disconnected)
        }
        Err(Failed::Stub(e)) if e.is_target_error() => Err(e
            .into_target_error()
            .unwrap_or(Error::Bookkeeping("unknown target error".into()))),
        Err(Failed::Stub(e)) if e.is_connection_error() => {
            tracing::debug!("gdb connection ended: {e}");
            Ok(Ended::Disconnected)
        }
        Err(Failed::Stub(e)) => Err(Error::Session(format!("gdb remote protocol: {e}").into())),
    }
}

/// Why [`run`] ended early.
enum Failed {
    Stub(GdbStubError<Error, std::io::Error>),
    Target(Error),
    Connection(std::io::Error),
}

impl From<GdbStubError<Error, std::io::Error>> for Failed {
    fn from(e: GdbStubError<Error, std::io::Error>) -> Self {
        Failed::Stub(e)
    }
}

fn run<O: Opener>(
    stub: GdbStub<'_, ReplayTarget<O>, TcpStream>,
    target: &mut ReplayTarget<O>,
) -> std::result::Result<DisconnectReason, Failed> {
    let mut filter = PacketFilter::default();
    // The last bytes passed on, to see gdb turn acknowledgments off
    // (`QStartNoAckMode`).
    let mut recent: Vec<u8> = Vec::new();
    let mut no_ack = false;
    let mut gdb = stub.run_state_machine(target)?;
    loop {
        gdb = match gdb {
            GdbStubStateMachine::Idle(mut gdb) => {
                let byte = gdb.borrow_conn().read().map_err(Failed::Connection)?;
                match filter.push(byte) {
                    Filtered::Held => gdb.into(),
                    Filtered::Tls(request) => {
                        let reply = target.tls_reply(request);
                        let conn = gdb.borrow_conn();
                        let mut out = Vec::new();
                        if !no_ack {
                            out.push(b'+');
                        }
                        out.extend(frame(&reply));
                        std::io::Write::write_all(conn, &out).map_err(Failed::Connection)?;
                        gdb.into()
                    }
                    Filtered::Pass(bytes) => {
                        recent.extend_from_slice(&bytes);
                        if recent.windows(16).any(|w| w == b"QStartNoAckMode#") {
                            no_ack = true;
                        }
                        let keep = recent.len().saturating_sub(16);
                        recent.drain(..keep);
                        let mut state = GdbStubStateMachine::Idle(gdb);
                        for b in bytes {
                            state = match state {
                                GdbStubStateMachine::Idle(g) => g.incoming_data(target, b)?,
                                GdbStubStateMachine::Running(g) => g.incoming_data(target, b)?,
                                other => other,
                            };
                        }
                        state
                    }
                }
            }
            GdbStubStateMachine::Disconnected(gdb) => break Ok(gdb.get_reason()),
            GdbStubStateMachine::CtrlCInterrupt(gdb) => {
                let stop = EventLoop::<O>::on_interrupt(target).map_err(Failed::Target)?;
                gdb.interrupt_handled(target, stop)?
            }
            GdbStubStateMachine::Running(mut gdb) => {
                match EventLoop::<O>::wait_for_stop_reason(target, gdb.borrow_conn()) {
                    Ok(Event::TargetStopped(stop)) => gdb.report_stop(target, stop)?,
                    Ok(Event::IncomingData(byte)) => gdb.incoming_data(target, byte)?,
                    Err(WaitForStopReasonError::Target(e)) => break Err(Failed::Target(e)),
                    Err(WaitForStopReasonError::Connection(e)) => break Err(Failed::Connection(e)),
                }
            }
        }
    }
}

/// Serves connections one after the other on `listener` until gdb kills the program:
/// a gdb that disconnects and connects again finds the session where it left it.
pub fn serve<O: Opener>(target: &mut ReplayTarget<O>, listener: &TcpListener) -> Result<()> {
    loop {
        let (conn, peer) = listener
            .accept()
            .map_err(|e| Error::io("accepting a gdb connection", e))?;
        tracing::info!("gdb connected from {peer}");
        if serve_connection(target, conn)? == Ended::Killed {
            return Ok(());
        }
    }
}

/// How to start gdb on a served replay.
#[derive(Debug, Clone)]
pub struct GdbCommand {
    /// The debugger: `rust-gdb` when found (Rust pretty printers), else `gdb`.
    pub program: PathBuf,
    /// Its arguments, `-ex` commands included.
    pub args: Vec<String>,
}

impl GdbCommand {
    /// The command that connects gdb to `addr`, with `sysroot`'s files.
    pub fn new(addr: SocketAddr, sysroot: &Sysroot, extra: &[String]) -> GdbCommand {
        let program = which("rust-gdb").unwrap_or_else(|| PathBuf::from("gdb"));
        let mut args = vec!["-q".to_string()];
        let mut commands = sysroot.gdb_commands();
        // The program and its libraries never change under a replay.
        commands.push("set auto-solib-add on".into());
        if let Some(exe) = &sysroot.exe {
            commands.push(format!("file {}", exe.display()));
        }
        commands.extend(extra.iter().cloned());
        commands.push(format!("target remote {addr}"));
        for c in commands {
            args.push("-ex".into());
            args.push(c);
        }
        GdbCommand { program, args }
    }

    /// As a shell command line, for the user to copy.
    pub fn shell_line(&self) -> String {
        let mut line = shell_quote(&self.program.to_string_lossy());
        for a in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        line
    }

    /// A VS Code `launch.json` configuration (the C/C++ extension's `cppdbg`) that
    /// connects to the same server.
    pub fn vscode_launch(addr: SocketAddr, sysroot: &Sysroot) -> String {
        let program = sysroot
            .exe
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let setup: Vec<String> = sysroot
            .gdb_commands()
            .iter()
            .map(|c| format!("        {{ \"text\": {} }}", json_string(c)))
            .collect();
        format!(
            "{{\n  \"name\": \"cargo-chaos replay\",\n  \"type\": \"cppdbg\",\n  \"request\": \"launch\",\n  \"program\": {},\n  \"cwd\": \"${{workspaceFolder}}\",\n  \"MIMode\": \"gdb\",\n  \"miDebuggerServerAddress\": \"{addr}\",\n  \"setupCommands\": [\n{}\n  ]\n}}",
            json_string(&program),
            setup.join(",\n")
        )
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Binds a local TCP port: `addr`, or an ephemeral port on 127.0.0.1.
pub fn listen(addr: Option<&str>) -> Result<TcpListener> {
    let addr = addr.unwrap_or("127.0.0.1:0");
    TcpListener::bind(addr).map_err(|e| Error::io(format!("listening on {addr}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real gdb against the toy machine: the protocol plumbing (registers, stepping
    /// both ways, monitor commands, a refused write) before any replay is involved.
    #[test]
    fn gdb_steps_forwards_and_backwards_on_the_toy_machine() {
        use crate::timeline::Timeline;
        use crate::toy::{Insn, Program, ToyOpener};
        let listener = listen(None).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let insns = (0..6u64)
                .map(|i| Insn {
                    rip: 0x40_1000 + 4 * i,
                    write: None,
                })
                .collect();
            let prog = std::rc::Rc::new(Program {
                intervals: vec![(7, insns)],
            });
            let timeline = Timeline::new(ToyOpener(prog)).unwrap();
            let mut target = ReplayTarget::new(timeline, "/bin/toy", Vec::new());
            let (conn, _) = listener.accept().unwrap();
            serve_connection(&mut target, conn).unwrap()
        });
        let out = std::process::Command::new("gdb")
            .args(["-batch", "-nx"])
            .args(["-ex", &format!("target remote {addr}")])
            .args([
                "-ex", "p/x $pc", "-ex", "stepi", "-ex", "stepi", "-ex", "p/x $pc",
            ])
            .args([
                "-ex",
                "reverse-stepi",
                "-ex",
                "p/x $pc",
                "-ex",
                "monitor when",
            ])
            .args([
                "-ex",
                "monitor where",
                "-ex",
                "info threads",
                "-ex",
                "set var $rax = 1",
            ])
            .args(["-ex", "continue", "-ex", "monitor when"])
            .output()
            .expect("gdb is installed (.ci/run installs it)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pcs: Vec<&str> = text.lines().filter(|l| l.starts_with('$')).collect();
        assert_eq!(
            pcs,
            ["$1 = 0x401000", "$2 = 0x401008", "$3 = 0x401004"],
            "{text}"
        );
        assert!(text.contains("Current event: 0"), "{text}");
        assert!(text.contains("event 0 +1 instructions"), "{text}");
        assert!(text.contains("Thread 1.7"), "the recorded tid: {text}");
        assert!(
            text.contains("Could not write register") || text.contains("Cannot"),
            "{text}"
        );
        assert!(text.contains("No more reverse-execution history"), "{text}");
        assert!(text.contains("Current event: 1"), "{text}");
        drop(server);
    }

    #[test]
    fn shell_and_json_quoting() {
        assert_eq!(
            shell_quote("target remote 127.0.0.1:9"),
            "'target remote 127.0.0.1:9'"
        );
        assert_eq!(shell_quote("-ex"), "-ex");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
