//! Syscall buffering (issue 17): the preload library that lets a recorded program make
//! common calls without a ptrace stop, and what record and replay need to know of it.
//!
//! The library (`syscallbuf/preload.c`, compiled by `build.rs`, embedded here) is put
//! into recorded programs with `LD_PRELOAD`. Its wrappers (read, write, pread64,
//! pwrite64, lseek, fstat, clock_gettime, getrandom) `call` the untraced entry, a `syscall; ret` the
//! recorder maps at [`abi::ENTRY_PAGE`] at every exec; the seccomp filter lets the
//! table's `buffered` calls through there without a stop (`record::seccomp`). Each call's
//! number, arguments, result and the bytes it moved go into the thread's buffer, which the
//! library maps itself and registers with a traced call ([`abi::INIT_SYSCALL`]). The
//! engine reads the buffer at the thread's next stop and writes every record into the
//! trace as an ordinary `Syscall` event ([`Record::event`]), so replay checks and
//! reproduces them like any other call. See docs/architecture.md, "Syscall buffering".

pub mod abi;

use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::inject::{inject_syscall, with_syscall_at};
use crate::ptrace::Task;
use crate::syscalls::{self, MemArg, Size};
use crate::trace::{MemWrite, SyscallEvent};

/// The compiled preload library.
pub const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libchaos_syscallbuf.so"));

/// The library's `DT_SONAME`.
pub const SONAME: &str = "libchaos_syscallbuf.so";

/// The name the library is loaded by (the name in the program's link map): the first 16
/// hex digits of its BLAKE3 hash, the whole of which (`hash_hex`) names its captured
/// copy in a trace. `None` when `hash_hex` is shorter.
pub fn file_name(hash_hex: &str) -> Option<String> {
    Some(format!("libchaos_syscallbuf-{}.so", hash_hex.get(..16)?))
}

/// Writes the library where the program can load it, once per content: a directory of
/// this user's in the temporary directory, the file named by its hash. The program maps
/// it like any library, so it is captured into the trace and replay loads the trace's
/// copy, never this file.
pub fn library_path() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: getuid has no failure mode.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("cargo-chaos-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::Unsupported {
            what: format!(
                "{} is not a directory only this user can write to",
                dir.display()
            ),
            hint: "remove it, or record with --no-syscallbuf".into(),
        });
    }
    let hash = blake3::hash(LIBRARY).to_hex();
    let tag = &hash[..16];
    let path = dir.join(file_name(&hash).expect("a BLAKE3 hash has 64 hex digits"));
    if std::fs::read(&path).is_ok_and(|b| b == LIBRARY) {
        return Ok(path);
    }
    let tmp = dir.join(format!(
        "libchaos_syscallbuf-{tag}.{}.tmp",
        std::process::id()
    ));
    std::fs::write(&tmp, LIBRARY).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// `LD_PRELOAD`'s new value: the library first, then what the program had. The value
/// is split at spaces and colons by the dynamic loader, so a path with either cannot be
/// preloaded.
pub fn ld_preload(
    library: &std::path::Path,
    old: Option<&std::ffi::OsStr>,
) -> Result<std::ffi::OsString> {
    let text = library.as_os_str();
    if text
        .as_encoded_bytes()
        .iter()
        .any(|&b| b == b' ' || b == b':')
    {
        return Err(Error::Unsupported {
            what: format!(
                "the preload library's path {} has a space or colon",
                library.display()
            ),
            hint: "set TMPDIR to a plain path, or record with --no-syscallbuf".into(),
        });
    }
    let mut v = text.to_os_string();
    if let Some(old) = old.filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    Ok(v)
}

/// Maps the untraced entry page into a task stopped after an exec (record; replay maps
/// its own code there, see `crate::replay::feed`),
/// borrowing the `syscall` instruction at `at`.
pub fn map_entry_page(task: &mut Task, at: u64) -> Result<()> {
    let page = abi::ENTRY_PAGE;
    let mapped = with_syscall_at(task, at, |task| {
        inject_syscall(
            task,
            at,
            libc::SYS_mmap as u64,
            &[
                page,
                4096,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64,
                u64::MAX,
                0,
            ],
        )
    })??;
    if mapped != page as i64 {
        return Err(Error::Unsupported {
            what: format!("cannot map the syscall-buffering entry page ({mapped})"),
            hint: "record with --no-syscallbuf".into(),
        });
    }
    // ptrace writes go through read-only protections.
    task.write_mem(page, &abi::ENTRY_CODE)?;
    task.write_mem(abi::QUIET_ENTRY, &abi::ENTRY_CODE)
}

/// Whether a mapping is the entry page (left out of exec captures).
pub fn is_entry_page(start: u64, end: u64) -> bool {
    start == abi::ENTRY_PAGE && end == abi::ENTRY_PAGE + 4096
}

/// One buffered call read back from a thread's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The call's number (a `buffered` row of the table).
    pub nr: u64,
    /// Its six argument registers.
    pub args: [u64; 6],
    /// Its result.
    pub ret: i64,
    /// The bytes it read from the program (write's buffer), empty after a failure.
    pub input: Vec<u8>,
    /// Where it wrote and what, if it wrote.
    pub output: Option<MemWrite>,
}

/// Parses the complete records in `bytes` (a buffer's record area from a record
/// boundary); refuses anything the library cannot have written.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<Record>> {
    let bad = |why: String| Error::Unsupported {
        what: format!("a syscall buffer the recorder cannot read: {why}"),
        hint: "the program overwrote the preload library's buffer; record with --no-syscallbuf"
            .into(),
    };
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
    let mut out = Vec::new();
    let mut at = 0usize;
    let head = (abi::RECORD_WORDS * 8) as usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < head {
            return Err(bad(format!("a record cut short at offset {at}")));
        }
        let size = word(rest, 0) as usize;
        if size < head || size > rest.len() || size % 8 != 0 {
            return Err(bad(format!("a record of {size} bytes at offset {at}")));
        }
        let nr = word(rest, 1);
        if !syscalls::lookup(nr).is_some_and(|d| d.buffered) {
            return Err(bad(format!("call number {nr} at offset {at}")));
        }
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = word(rest, 2 + i);
        }
        let ret = word(rest, 8) as i64;
        let in_len = word(rest, 9) as usize;
        let out_addr = word(rest, 10);
        let out_len = word(rest, 11) as usize;
        let pad = |n: usize| n.div_ceil(8) * 8;
        if head
            .checked_add(pad(in_len))
            .and_then(|n| n.checked_add(pad(out_len)))
            != Some(size)
        {
            return Err(bad(format!(
                "record sizes that do not add up at offset {at}"
            )));
        }
        let input = rest[head..head + in_len].to_vec();
        let o = head + pad(in_len);
        let output = (out_len > 0).then(|| MemWrite {
            addr: out_addr,
            data: rest[o..o + out_len].to_vec(),
        });
        out.push(Record {
            nr,
            args,
            ret,
            input,
            output,
        });
        at += size;
    }
    Ok(out)
}

impl Record {
    /// The call as the trace has it: the same event a traced call would have been, its
    /// input hash computed from the bytes the library copied.
    pub fn event(&self, tid: i32) -> SyscallEvent {
        let desc = syscalls::lookup(self.nr).expect("parse_records checked the number");
        SyscallEvent {
            tid,
            nr: self.nr,
            args: self.args,
            ret: self.ret,
            input_hash: input_hash(desc.inputs, &self.args, &self.input),
            writes: self.output.iter().cloned().collect(),
            file: None,
        }
    }
}

/// [`crate::syscalls::effects::input_hash`] for a buffered row (at most one input, sized
/// by an argument or a constant), over the bytes the library copied.
pub fn input_hash(inputs: &[MemArg], args: &[u64; 6], bytes: &[u8]) -> u64 {
    if inputs.is_empty() {
        return 0;
    }
    let mut h = blake3::Hasher::new();
    for i in inputs {
        h.update(&[i.arg]);
        if args[i.arg as usize] == 0 {
            h.update(b"null");
            continue;
        }
        match i.size {
            Size::Arg(_) | Size::Fixed(_) | Size::ArgTimes(..) => {
                h.update(bytes);
            }
            _ => {}
        }
    }
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8")) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        nr: u64,
        args: [u64; 6],
        ret: i64,
        input: &[u8],
        out: Option<(u64, &[u8])>,
    ) -> Vec<u8> {
        let pad = |n: usize| n.div_ceil(8) * 8;
        let out_len = out.map(|o| o.1.len()).unwrap_or(0);
        let size = 96 + pad(input.len()) + pad(out_len);
        let mut w: Vec<u64> = vec![size as u64, nr];
        w.extend_from_slice(&args);
        w.extend_from_slice(&[
            ret as u64,
            input.len() as u64,
            out.map(|o| o.0).unwrap_or(0),
            out_len as u64,
        ]);
        let mut b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        b.extend_from_slice(input);
        b.resize(96 + pad(input.len()), 0);
        if let Some((_, d)) = out {
            b.extend_from_slice(d);
        }
        b.resize(size, 0);
        b
    }

    #[test]
    fn records_parse_and_become_events() {
        let mut bytes = record(0, [3, 0x1000, 5, 0, 0, 0], 5, b"", Some((0x1000, b"hello")));
        bytes.extend(record(1, [4, 0x2000, 3, 0, 0, 0], 3, b"abc", None));
        let recs = parse_records(&bytes).unwrap();
        assert_eq!(recs.len(), 2);
        let read = recs[0].event(7);
        assert_eq!(
            read.writes,
            vec![MemWrite {
                addr: 0x1000,
                data: b"hello".to_vec()
            }]
        );
        assert_eq!(read.input_hash, 0);
        let write = recs[1].event(7);
        assert!(write.writes.is_empty());
        assert_ne!(write.input_hash, 0);
        assert_ne!(
            write.input_hash,
            Record {
                input: b"abd".to_vec(),
                ..recs[1].clone()
            }
            .event(7)
            .input_hash
        );
    }

    #[test]
    fn the_library_and_the_table_agree() {
        use crate::syscalls::nr;
        assert_eq!(abi::INIT_SYSCALL, nr::CHAOS_SYSCALLBUF_INIT);
        assert_eq!(abi::FLUSH_SYSCALL, nr::CHAOS_SYSCALLBUF_FLUSH);
        // The calls preload.c makes at the entry are exactly the table's buffered rows.
        let mut rows: Vec<&str> = syscalls::SYSCALLS
            .iter()
            .filter(|d| d.buffered)
            .map(|d| d.name)
            .collect();
        rows.sort();
        let source = include_str!("syscallbuf/preload.c");
        let mut made: Vec<&str> = source
            .match_indices("buffered(b, r, SYS_")
            .map(|(i, m)| {
                let rest = &source[i + m.len()..];
                &rest[..rest.find(',').expect("a comma")]
            })
            .collect();
        made.sort();
        made.dedup();
        assert_eq!(made, rows);
        assert!(LIBRARY.starts_with(b"\x7fELF"));
    }

    #[test]
    fn garbage_is_refused() {
        let good = record(0, [3, 0x1000, 5, 0, 0, 0], 5, b"", Some((0x1000, b"hello")));
        assert!(parse_records(&good[..good.len() - 8]).is_err());
        let mut bad_nr = good.clone();
        bad_nr[8] = 59; // execve is not buffered
        assert!(parse_records(&bad_nr).is_err());
        let mut bad_size = good.clone();
        bad_size[0] = 7;
        assert!(parse_records(&bad_size).is_err());
        let mut huge = good;
        huge[9 * 8 + 7] = 0xff; // in_len
        assert!(parse_records(&huge).is_err());
    }
}
