//! Reading a task's address space (`/proc/PID/maps`) and the replay stub.
//!
//! Replay does not let the kernel load the recorded program (it would pick the host's
//! ld.so and its own layout). It execs a tiny static stub at an address no program uses,
//! then rebuilds the recorded address space itself, mapping the trace's copies of the
//! files at the recorded addresses.

use crate::errors::{Error, Result};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub struct MapsEntry {
    /// Start.
    pub start: u64,
    /// End.
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: i32,
    /// Shared mapping.
    pub shared: bool,
    /// File offset.
    pub offset: u64,
    /// Device (major:minor as printed).
    pub dev: String,
    /// Inode (0 for anonymous).
    pub inode: u64,
    /// Path or pseudo-name; empty for anonymous.
    pub name: String,
}

impl MapsEntry {
    /// Whether this is a mapping of a file (not `[stack]`, `[vdso]`, anonymous...).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.name.starts_with('/')
    }
}

/// Parses `/proc/PID/maps`.
pub fn read_maps(pid: i32) -> Result<Vec<MapsEntry>> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::TaskGone { pid },
        _ => Error::io(&path, e),
    })?;
    Ok(text.lines().filter_map(parse_maps_line).collect())
}

fn parse_maps_line(line: &str) -> Option<MapsEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?.as_bytes();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let dev = it.next()?.to_string();
    let inode = it.next()?.parse().ok()?;
    let name = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let mut prot = 0;
    if perms.first() == Some(&b'r') {
        prot |= libc::PROT_READ;
    }
    if perms.get(1) == Some(&b'w') {
        prot |= libc::PROT_WRITE;
    }
    if perms.get(2) == Some(&b'x') {
        prot |= libc::PROT_EXEC;
    }
    Some(MapsEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        prot,
        shared: perms.get(3) == Some(&b's'),
        offset,
        dev,
        inode,
        name,
    })
}

/// Where the replay stub is loaded: far from where Linux puts executables (0x400000,
/// 0x55..., 0x56...), mmaps and stacks (0x7f...).
pub const STUB_BASE: u64 = 0x2000_0000_0000;
/// Size reserved for the stub: its code page plus a scratch page for injected syscall
/// arguments (paths).
pub const STUB_SIZE: u64 = 0x2000;
/// Offset of the `syscall` instruction the replayer uses for injected syscalls.
const STUB_CODE_OFFSET: u64 = 0x78;
/// The address of the stub's `syscall` instruction.
pub const STUB_SYSCALL: u64 = STUB_BASE + STUB_CODE_OFFSET;
/// A scratch page the replayer writes injected syscall arguments into.
pub const STUB_SCRATCH: u64 = STUB_BASE + 0x1000;

/// A minimal static ELF executable: one read+execute segment at [`STUB_BASE`] whose
/// entry is `syscall; ud2`. The replayer never lets it run freely: it only uses that
/// `syscall` instruction to make the stopped process issue the calls that rebuild the
/// recorded address space.
pub fn stub_elf() -> Vec<u8> {
    let code: [u8; 4] = [0x0f, 0x05, 0x0f, 0x0b];
    let filesz = STUB_CODE_OFFSET + code.len() as u64;
    let mut f = Vec::with_capacity(filesz as usize);
    // ELF header
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    f.extend_from_slice(&STUB_SYSCALL.to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // Program header: PT_LOAD, R+X, whole file at STUB_BASE.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&STUB_BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&STUB_BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&filesz.to_le_bytes());
    f.extend_from_slice(&filesz.to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    debug_assert_eq!(f.len() as u64, STUB_CODE_OFFSET);
    f.extend_from_slice(&code);
    f
}

/// Whether a range overlaps the stub's reserved range.
pub fn overlaps_stub(start: u64, end: u64) -> bool {
    start < STUB_BASE + STUB_SIZE && end > STUB_BASE
}
