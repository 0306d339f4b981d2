//! What a trace may say.
//!
//! A trace is untrusted input: archives travel from CI machines that ran a pull
//! request's code, and that code could write into its own trace directory. Everything a
//! reader takes from a trace is checked here against what this recorder can have
//! written, before any of it is used for arithmetic, a path or an allocation:
//!
//! - captured files are named by their BLAKE3 hash (64 lowercase hex digits), never by
//!   a path;
//! - addresses and lengths lie in the x86_64 user address range and do not overflow;
//! - register sets have the size of `user_regs_struct`;
//! - the header's list of calls that run natively at replay (`untraced`) is a subset of
//!   the engine's own list: a trace may narrow what runs natively, never widen it.
//!
//! A violation is [`Error::BadTrace`] naming the event and the problem.

use std::collections::HashSet;
use std::path::Path;

use super::event::{Event, ExecState, MemWrite};
use super::Header;
use crate::errors::{Error, Result};
use crate::syscalls;

/// One past the highest user-space address on x86_64 (five-level paging; four-level
/// machines stop lower, where an mmap at replay then fails with a message).
pub const USER_ADDRESS_END: u64 = 1 << 56;

/// Most mappings one image can have (the kernel's default `vm.max_map_count` is 65530).
pub const MAX_MAPPINGS: usize = 1 << 20;

/// `madvise` advice that acts on the machine's memory rather than the program's:
/// `MADV_HWPOISON` and `MADV_SOFT_OFFLINE` (madvise runs natively at replay).
const MACHINE_ADVICE: [u64; 2] = [100, 101];

/// Number of words in a recorded register set (`user_regs_struct`).
const REGS_WORDS: usize = 27;

/// Whether `name` is a captured file's name: a BLAKE3 hash as 64 lowercase hex digits.
/// Only such names are ever joined to the trace's `files/` directory.
pub fn is_file_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The calls a replay of this trace may run natively when the program makes them
/// without an event: the header's `untraced` list, which must name only calls the
/// engine itself lets through (`untraced` in `syscalls.toml`).
pub fn untraced_calls(trace: &Path, header: &Header) -> Result<HashSet<u64>> {
    let mut allowed = HashSet::new();
    for &nr in &header.untraced {
        match syscalls::lookup(nr) {
            Some(desc) if desc.untraced => {
                allowed.insert(nr);
            }
            _ => {
                return Err(Error::BadTrace {
                    path: trace.to_owned(),
                    reason: format!(
                        "header.json lists system call {nr} ({}) among the calls that run natively at replay, which this replayer never allows: the trace was altered or not written by cargo-chaos",
                        syscalls::name_of(nr)
                    ),
                })
            }
        }
    }
    Ok(allowed)
}

/// Checks one event read from a trace; `index` is its number, for the message.
pub fn event(index: u64, ev: &Event) -> std::result::Result<(), String> {
    let bad = |what: String| Err(format!("event {index} {what}"));
    match ev {
        Event::Exec(state) => exec_state(state).or_else(bad),
        Event::Syscall(s) if s.nr == syscalls::nr::MADVISE && MACHINE_ADVICE.contains(&s.args[2]) => {
            bad(format!(
                "asks replay to take memory pages out of service (madvise advice {}), which acts on the machine",
                s.args[2]
            ))
        }
        Event::Syscall(s)
            if syscalls::lookup(s.nr).is_none()
                && (s.ret != -(libc::ENOSYS as i64) || !s.writes.is_empty() || s.file.is_some()) =>
        {
            bad(format!(
                "says that {} returned {} or wrote memory, but this recorder answers every unknown system call with ENOSYS",
                syscalls::name_of(s.nr),
                s.ret
            ))
        }
        Event::Syscall(s) => {
            if let Some(f) = &s.file {
                if !is_file_name(f) {
                    return bad(format!(
                        "names a captured file `{}`, not a content hash",
                        printable(f)
                    ));
                }
            }
            writes(&s.writes).or_else(bad)
        }
        Event::Preempt { state, .. } if state.regs.len() != REGS_WORDS => bad(format!(
            "has {} registers instead of {REGS_WORDS}",
            state.regs.len()
        )),
        Event::Preempted { state, .. } if state.regs.len() != REGS_WORDS => bad(format!(
            "has {} registers instead of {REGS_WORDS}",
            state.regs.len()
        )),
        Event::Preempted { point, .. } => point.invalid().map_or(Ok(()), bad),
        Event::SharedFileWrite { offset, data, .. }
            if offset
                .checked_add(data.len() as u64)
                .map_or(true, |end| end > i64::MAX as u64) =>
        {
            bad(format!("writes past the largest file offset ({offset:#x})"))
        }
        Event::KernelWrite { addr, data, .. }
            if data.is_empty() || addr.checked_add(data.len() as u64).is_none() =>
        {
            bad(format!(
                "a kernel write of {} bytes at {addr:#x} (empty, or past the end of memory)",
                data.len()
            ))
        }
        _ => Ok(()),
    }
}

/// Checks the image of an exec: register set, mappings, memory.
fn exec_state(state: &ExecState) -> std::result::Result<(), String> {
    if state.regs.len() != REGS_WORDS {
        return Err(format!(
            "has {} registers instead of {REGS_WORDS}",
            state.regs.len()
        ));
    }
    if state.mappings.len() > MAX_MAPPINGS {
        return Err(format!("has {} mappings", state.mappings.len()));
    }
    for m in &state.mappings {
        let aligned = m.start % 4096 == 0 && m.end % 4096 == 0 && m.offset % 4096 == 0;
        if m.start >= m.end || m.end > USER_ADDRESS_END || !aligned {
            return Err(format!(
                "has a mapping `{}` with an impossible range {:#x}..{:#x} (offset {:#x})",
                printable(&m.name),
                m.start,
                m.end,
                m.offset
            ));
        }
        if let Some(f) = &m.file {
            if !is_file_name(f) {
                return Err(format!(
                    "maps `{}` from a captured file `{}`, not a content hash",
                    printable(&m.name),
                    printable(f)
                ));
            }
        }
    }
    writes(&state.memory)
}

fn writes(ws: &[MemWrite]) -> std::result::Result<(), String> {
    for w in ws {
        let end = w.addr.checked_add(w.data.len() as u64);
        if end.map_or(true, |e| e > USER_ADDRESS_END) {
            return Err(format!(
                "writes {} bytes at {:#x}, outside user memory",
                w.data.len(),
                w.addr
            ));
        }
    }
    Ok(())
}

/// `s` with control characters escaped, for messages: a name from a trace must not
/// reach the user's terminal as escape sequences.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = c.is_control();
            let out: Vec<char> = if escape {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Mapping;

    fn image(mappings: Vec<Mapping>) -> Event {
        Event::Exec(Box::new(ExecState {
            tid: 1,
            path: "/bin/x".into(),
            regs: vec![0; REGS_WORDS],
            mappings,
            memory: Vec::new(),
            brk: 0,
            stack_limit: 8 << 20,
        }))
    }

    fn mapping(start: u64, end: u64, file: Option<&str>) -> Mapping {
        Mapping {
            start,
            end,
            prot: 3,
            shared: false,
            offset: 0,
            file: file.map(str::to_owned),
            name: "m".into(),
        }
    }

    #[test]
    fn file_names_are_hashes_only() {
        let h = "0123456789abcdef".repeat(4);
        assert!(is_file_name(&h));
        for bad in [
            "../../x",
            "/etc/passwd",
            &h[..63],
            &h.to_uppercase(),
            &format!("{}/", &h[..63]),
            "",
        ] {
            assert!(!is_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn impossible_mappings_are_refused() {
        let h = "ab".repeat(32);
        assert!(event(0, &image(vec![mapping(0x1000, 0x3000, Some(&h))])).is_ok());
        for m in [
            mapping(0x3000, 0x1000, None),
            mapping(0x1000, 0x1000, None),
            mapping(0x1001, 0x3000, None),
            mapping(0x1000, !0xfff, None),
            mapping(0x1000, 0x2000, Some("/etc/passwd")),
        ] {
            let e = event(7, &image(vec![m.clone()])).unwrap_err();
            assert!(e.starts_with("event 7 "), "{e}");
        }
    }

    #[test]
    fn machine_wide_madvise_is_refused() {
        let call = |advice: u64| {
            Event::Syscall(crate::trace::SyscallEvent {
                tid: 1,
                nr: syscalls::nr::MADVISE,
                args: [0x1000, 0x1000, advice, 0, 0, 0],
                ret: 0,
                input_hash: 0,
                writes: Vec::new(),
                file: None,
            })
        };
        assert!(event(3, &call(4)).is_ok(), "MADV_DONTNEED");
        assert!(event(3, &call(100)).is_err(), "MADV_HWPOISON");
        assert!(event(3, &call(101)).is_err(), "MADV_SOFT_OFFLINE");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
