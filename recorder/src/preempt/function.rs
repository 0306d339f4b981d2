//! The bounds of the function around an address of a replayed program, from its
//! module's `.eh_frame_hdr` and `.eh_frame` (read from the process's memory, where the
//! loader mapped them; parsed with `gimli`). A patch that displaces several
//! instructions needs them to prove that no branch lands inside the patched bytes.

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, LittleEndian, Pointer, UnwindSection};

use crate::address_space::MapsEntry;
use crate::ptrace::Task;

/// A function's code range, and whether it has a language-specific data area (landing
/// pads, which the branch check does not see).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Whether its FDE names an LSDA.
    pub lsda: bool,
}

/// Most bytes of `.eh_frame` or of one function read.
const MAX_READ: u64 = 16 << 20;

fn read_u16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}
fn read_u32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}
fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The function containing `pc`, or why it cannot be told.
pub fn around(task: &mut Task, maps: &[MapsEntry], pc: u64) -> Result<Function, String> {
    let code = maps
        .iter()
        .find(|m| m.start <= pc && pc < m.end)
        .ok_or("the address is not mapped")?;
    if !code.is_file() {
        return Err("the code is not from a file".into());
    }
    // The module's first mapping holds its ELF header.
    let head = maps
        .iter()
        .filter(|m| m.inode == code.inode && m.dev == code.dev && m.offset == 0)
        .filter(|m| m.start <= code.start)
        .max_by_key(|m| m.start)
        .ok_or("the module's ELF header is not mapped")?;
    let base = head.start;
    let ehdr = task.read_mem(base, 64).map_err(|e| e.to_string())?;
    if ehdr.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("no ELF header at the module's start".into());
    }
    let bad = || "a malformed ELF header".to_string();
    let phoff = read_u64(&ehdr, 32).ok_or_else(bad)?;
    let phentsize = read_u16(&ehdr, 54).ok_or_else(bad)?;
    let phnum = read_u16(&ehdr, 56).ok_or_else(bad)?;
    if phentsize != 56 || phnum > 256 {
        return Err(bad());
    }
    let phdrs = task
        .read_mem(base + phoff, (phnum * phentsize) as usize)
        .map_err(|e| e.to_string())?;
    let mut bias = None;
    let mut hdr = None;
    for n in 0..phnum as usize {
        let p = &phdrs[n * 56..(n + 1) * 56];
        let kind = read_u32(p, 0).ok_or_else(bad)?;
        let offset = read_u64(p, 8).ok_or_else(bad)?;
        let vaddr = read_u64(p, 16).ok_or_else(bad)?;
        let memsz = read_u64(p, 40).ok_or_else(bad)?;
        if kind == 1 && offset == 0 && bias.is_none() {
            bias = Some(base.wrapping_sub(vaddr));
        }
        if kind == 0x6474_e550 {
            hdr = Some((vaddr, memsz));
        }
    }
    let bias = bias.ok_or("no loadable segment at offset 0")?;
    let (hdr_vaddr, hdr_size) = hdr.ok_or("the module has no .eh_frame_hdr")?;
    let hdr_addr = bias.wrapping_add(hdr_vaddr);
    let hdr_bytes = task
        .read_mem(hdr_addr, hdr_size.min(MAX_READ) as usize)
        .map_err(|e| e.to_string())?;
    let gerr = |e: gimli::Error| format!("unreadable unwind tables: {e}");
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr);
    let parsed = EhFrameHdr::new(&hdr_bytes, LittleEndian)
        .parse(&bases, 8)
        .map_err(gerr)?;
    let Pointer::Direct(frame_addr) = parsed.eh_frame_ptr() else {
        return Err("an indirect .eh_frame pointer".into());
    };
    let frame_end = maps
        .iter()
        .find(|m| m.start <= frame_addr && frame_addr < m.end)
        .ok_or(".eh_frame is not mapped")?
        .end;
    let frame_bytes = task
        .read_mem_partial(frame_addr, (frame_end - frame_addr).min(MAX_READ) as usize)
        .map_err(|e| e.to_string())?;
    let frame = EhFrame::new(&frame_bytes, LittleEndian);
    let bases = bases.set_eh_frame(frame_addr);
    let table = parsed.table().ok_or(".eh_frame_hdr has no search table")?;
    let fde = table
        .fde_for_address(&frame, &bases, pc, EhFrame::cie_from_offset)
        .map_err(gerr)?;
    let start = fde.initial_address();
    let end = start.saturating_add(fde.len());
    if end - start > MAX_READ {
        return Err("the function is too large".into());
    }
    Ok(Function {
        start,
        end,
        lsda: fde.lsda().is_some(),
    })
}
