//! Writing the replayed program's output and our own messages.

use std::io::Write;

use recorder::output::Stream;

/// Forwards a replayed program's writes to our stdout and stderr, unless quiet.
pub fn forward(quiet: bool) -> impl FnMut(Stream, &[u8]) {
    move |stream, data| {
        if quiet {
            return;
        }
        // A closed pipe on our side must not fail the replay: ignore write errors.
        let _ = match stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(data).and_then(|_| o.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(data),
        };
    }
}

/// Wraps `sink` so that every line starts with `[event N] `, N being `current` when
/// the line's first byte was written (the replay's observer sets it at every syscall
/// event, before that event's output).
pub fn numbered<'a>(
    current: &'a std::cell::Cell<u64>,
    mut sink: impl FnMut(Stream, &[u8]) + 'a,
) -> impl FnMut(Stream, &[u8]) + 'a {
    // Whether each stream is at the start of a line.
    let mut at_start = [true, true];
    move |stream, data| {
        let i = matches!(stream, Stream::Stderr) as usize;
        let mut out = Vec::with_capacity(data.len() + 16);
        for &b in data {
            if at_start[i] {
                out.extend_from_slice(format!("[event {}] ", current.get()).as_bytes());
                at_start[i] = false;
            }
            out.push(b);
            if b == b'\n' {
                at_start[i] = true;
            }
        }
        sink(stream, &out);
    }
}

/// Whether to draw progress bars: only on a terminal and outside CI.
pub fn fancy() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Sets up `tracing` from `CHAOS_LOG` (e.g. `CHAOS_LOG=debug`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
