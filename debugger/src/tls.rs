//! Thread-local variables: gdb's `qGetTLSAddr` request, which `gdbstub` does not know.
//!
//! Over the remote protocol gdb does not compute a thread-local variable's address
//! itself: it asks the server with `qGetTLSAddr:THREAD,OFFSET,LM` (the variable's
//! offset in its module's TLS block, and the module's `struct link_map` address) and
//! reads the variable there. [`PacketFilter`] takes those packets out of the byte
//! stream before `gdbstub` sees them (every other byte goes on untouched) so that the
//! server answers them from the replay with [`tls_address`].
//!
//! The address is computed the way glibc lays TLS out on x86-64 (variant II): the
//! thread pointer is `fs_base`, the thread's control block holds the pointer to its
//! dynamic thread vector (DTV) at offset 8, and entry `modid` of the DTV (16 bytes
//! each, the block's address first) points at module `modid`'s block. Module ids are
//! given in the order of the link map to the modules that have a `PT_TLS` segment,
//! The module id is read from the module's `struct link_map` (`l_tls_modid`), at the
//! offset glibc publishes for libthread_db: libc.so.6 exports
//! `_thread_db_link_map_l_tls_modid`, three 32-bit words (the field's size in bits,
//! its count, its offset), and [`ModidField::from_elf`] reads them from the archive's
//! copy of libc. The id cannot be derived from the link map's order: after a
//! `dlclose`, glibc gives the next module loaded the lowest id free, which may be
//! lower than that of modules loaded before it. Without the descriptor (a libc that
//! does not export it) the ids are taken to be the ranks, from 1, of the modules with
//! a `PT_TLS` segment in link-map order, which is how the dynamic linker numbers the
//! modules it loads at startup, and right until a module with TLS is unloaded
//! ([`FALLBACK_NOTE`] says so once per session). A block not yet allocated for the
//! thread (a module loaded later whose variables it has not touched) is an error
//! reply, as it is with gdbserver.

use crate::backend::Session;

/// `PT_TLS`.
const PT_TLS: u32 = 7;
/// `AT_PHDR`, `AT_PHNUM` (auxv).
const AT_PHDR: u64 = 3;
const AT_PHNUM: u64 = 5;
/// A DTV entry not allocated yet (glibc's `TLS_DTV_UNALLOCATED`).
const DTV_UNALLOCATED: u64 = u64::MAX;
/// Link maps followed at most (a chain in replayed memory is untrusted).
const MAX_MODULES: usize = 4096;

/// The address of the thread-local variable at `offset` in the TLS block of the
/// module whose link map is at `lm`, for thread `tid`; `None` when the replayed
/// memory does not lead to one. `auxv` is the program's auxiliary vector (the
/// program's own program headers, which may not be mapped at its link map's
/// `l_addr`).
pub fn tls_address<S: Session>(
    session: &mut S,
    auxv: &[u8],
    field: Option<ModidField>,
    tid: i32,
    offset: u64,
    lm: u64,
) -> Option<u64> {
    let fs_base = session.regs(tid).ok()?.fs_base;
    let modid = match field {
        Some(field) => field.read(session, lm)?,
        None => module_rank(session, auxv, lm)?,
    };
    let dtv = read_u64(session, fs_base.checked_add(8)?)?;
    let block = read_u64(session, dtv.checked_add(modid.checked_mul(16)?)?)?;
    if block == 0 || block == DTV_UNALLOCATED {
        return None;
    }
    block.checked_add(offset)
}

/// What the session says once when it has no [`ModidField`] and gdb asks for a
/// thread-local variable.
pub const FALLBACK_NOTE: &str = "chaos: the recorded libc does not export \
_thread_db_link_map_l_tls_modid: thread-local variables are located by the order of the \
link map, which is wrong for libraries loaded after a library with thread-locals was \
dlclose()d";

/// Where `l_tls_modid` is in glibc's `struct link_map`, as libc describes it to
/// libthread_db (the `_thread_db_link_map_l_tls_modid` descriptor: size in bits,
/// count, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModidField {
    /// The field's size in bits (32 or 64).
    pub bits: u32,
    /// Its offset in `struct link_map`.
    pub offset: u32,
}

impl ModidField {
    /// The descriptor's dynamic symbol.
    pub const SYMBOL: &'static str = "_thread_db_link_map_l_tls_modid";

    /// The field as described by the descriptor's three words; `None` for a
    /// description this reader does not handle (not one 32- or 64-bit integer).
    pub fn from_words(bits: u32, count: u32, offset: u32) -> Option<ModidField> {
        (matches!(bits, 32 | 64) && count == 1).then_some(ModidField { bits, offset })
    }

    /// The field, from the descriptor exported by the ELF shared object `data` (the
    /// archive's libc.so.6); `None` when it exports none (or not a readable one).
    pub fn from_elf(data: &[u8]) -> Option<ModidField> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let file = object::File::parse(data).ok()?;
        let symbol = file
            .dynamic_symbols()
            .find(|s| s.name_bytes().ok() == Some(Self::SYMBOL.as_bytes()))?;
        let section = file.section_by_index(symbol.section_index()?).ok()?;
        let bytes = section.data_range(symbol.address(), 12).ok()??;
        let word =
            |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap_or_default());
        Self::from_words(word(0), word(1), word(2))
    }

    /// `l_tls_modid` of the link map at `lm`; `None` when it cannot be read or is 0
    /// (the module has no TLS).
    fn read<S: Session>(self, session: &mut S, lm: u64) -> Option<u64> {
        let at = lm.checked_add(u64::from(self.offset))?;
        let modid = if self.bits == 64 {
            read_u64(session, at)?
        } else {
            let mut b = [0u8; 4];
            (session.read_memory(at, &mut b).ok()? == 4).then_some(())?;
            u64::from(u32::from_le_bytes(b))
        };
        (modid != 0).then_some(modid)
    }
}

/// The TLS module id the dynamic linker gives the module at link map `lm` when it is
/// loaded at startup: its rank among the modules with a `PT_TLS` segment, in
/// link-map order, from 1.
fn module_rank<S: Session>(session: &mut S, auxv: &[u8], lm: u64) -> Option<u64> {
    // The chain back to its head (l_prev at offset 32 of the public part of struct
    // link_map: l_addr, l_name, l_ld, l_next, l_prev).
    let mut chain = vec![lm];
    let mut at = lm;
    loop {
        let prev = read_u64(session, at.checked_add(32)?)?;
        if prev == 0 {
            break;
        }
        if chain.len() >= MAX_MODULES || chain.contains(&prev) {
            return None;
        }
        chain.push(prev);
        at = prev;
    }
    chain.reverse();
    let mut modid = 0u64;
    for (i, &map) in chain.iter().enumerate() {
        let tls = if i == 0 {
            // The head is the program: its program headers are in the auxv.
            program_has_tls(session, auxv)?
        } else {
            let l_addr = read_u64(session, map)?;
            library_has_tls(session, l_addr)?
        };
        if tls {
            modid += 1;
        }
        if map == lm {
            return tls.then_some(modid);
        }
    }
    None
}

fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    auxv.chunks_exact(16).find_map(|e| {
        let k = u64::from_le_bytes(e[..8].try_into().ok()?);
        let v = u64::from_le_bytes(e[8..].try_into().ok()?);
        (k == key).then_some(v)
    })
}

fn program_has_tls<S: Session>(session: &mut S, auxv: &[u8]) -> Option<bool> {
    let phdr = auxv_value(auxv, AT_PHDR)?;
    let phnum = auxv_value(auxv, AT_PHNUM)?;
    phdrs_have_tls(session, phdr, phnum, 56)
}

/// Whether the shared object loaded at `l_addr` (its ELF header is there) has a
/// `PT_TLS` segment.
fn library_has_tls<S: Session>(session: &mut S, l_addr: u64) -> Option<bool> {
    let mut ehdr = [0u8; 64];
    if session.read_memory(l_addr, &mut ehdr).ok()? != ehdr.len() || &ehdr[..4] != b"\x7fELF" {
        // Nothing readable there (the vDSO's map may differ): no TLS to count.
        return Some(false);
    }
    let phoff = u64::from_le_bytes(ehdr[32..40].try_into().ok()?);
    let phentsize = u16::from_le_bytes(ehdr[54..56].try_into().ok()?) as u64;
    let phnum = u16::from_le_bytes(ehdr[56..58].try_into().ok()?) as u64;
    phdrs_have_tls(session, l_addr.checked_add(phoff)?, phnum, phentsize)
}

fn phdrs_have_tls<S: Session>(
    session: &mut S,
    phdr: u64,
    phnum: u64,
    phentsize: u64,
) -> Option<bool> {
    if phentsize < 4 || phnum > 0xffff {
        return None;
    }
    for i in 0..phnum {
        let mut ty = [0u8; 4];
        let at = phdr.checked_add(i.checked_mul(phentsize)?)?;
        if session.read_memory(at, &mut ty).ok()? != 4 {
            return None;
        }
        if u32::from_le_bytes(ty) == PT_TLS {
            return Some(true);
        }
    }
    Some(false)
}

fn read_u64<S: Session>(session: &mut S, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    (session.read_memory(addr, &mut b).ok()? == 8).then(|| u64::from_le_bytes(b))
}

/// A `qGetTLSAddr` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsRequest {
    /// The thread (recorded tid).
    pub tid: i32,
    /// The variable's offset in its module's block.
    pub offset: u64,
    /// The module's link map.
    pub lm: u64,
}

impl TlsRequest {
    /// Parses a packet's body (`qGetTLSAddr:THREAD,OFFSET,LM`; THREAD is `TID` or
    /// `pPID.TID` in hex).
    pub fn parse(body: &[u8]) -> Option<TlsRequest> {
        let rest = std::str::from_utf8(body.strip_prefix(b"qGetTLSAddr:")?).ok()?;
        let mut parts = rest.split(',');
        let thread = parts.next()?;
        let tid = thread.rsplit('.').next()?;
        let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
        let lm = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(TlsRequest {
            tid: i32::from_str_radix(tid.trim_start_matches('p'), 16).ok()?,
            offset,
            lm,
        })
    }
}

/// What [`PacketFilter::push`] makes of a byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Nothing yet (inside a packet that may be one to answer).
    Held,
    /// Bytes for `gdbstub`, in order.
    Pass(Vec<u8>),
    /// A whole `qGetTLSAddr` packet, taken out of the stream: answer it.
    Tls(Option<TlsRequest>),
}

/// Takes `qGetTLSAddr` packets out of the bytes gdb sends (see the module docs).
#[derive(Debug, Default)]
pub struct PacketFilter {
    /// The packet being received, from its `$`; `None` between packets.
    packet: Option<Vec<u8>>,
    /// Checksum digits still to come after `#`.
    checksum_left: Option<u8>,
}

/// Longest packet held back: anything longer cannot be a `qGetTLSAddr`.
const MAX_HELD: usize = 128;

impl PacketFilter {
    /// Takes one byte from gdb.
    pub fn push(&mut self, byte: u8) -> Filtered {
        let Some(packet) = self.packet.as_mut() else {
            if byte == b'$' {
                self.packet = Some(vec![byte]);
                self.checksum_left = None;
                return Filtered::Held;
            }
            return Filtered::Pass(vec![byte]);
        };
        packet.push(byte);
        match self.checksum_left {
            None if byte == b'#' => self.checksum_left = Some(2),
            None => {
                let prefix = b"$qGetTLSAddr:";
                let n = packet.len().min(prefix.len());
                if packet[..n] != prefix[..n] || packet.len() > MAX_HELD {
                    // Not ours: let gdbstub have it as it comes.
                    return Filtered::Pass(self.packet.take().unwrap_or_default());
                }
            }
            Some(left) => {
                if left > 1 {
                    self.checksum_left = Some(left - 1);
                } else {
                    let whole = self.packet.take().unwrap_or_default();
                    self.checksum_left = None;
                    if whole.starts_with(b"$qGetTLSAddr:") {
                        let body = &whole[1..whole.len() - 3];
                        return Filtered::Tls(TlsRequest::parse(body));
                    }
                    return Filtered::Pass(whole);
                }
            }
        }
        Filtered::Held
    }

    /// Whether a packet is being held (the stream is not between packets).
    pub fn holding(&self) -> bool {
        self.packet.is_some()
    }
}

/// A packet with `body` as the remote protocol frames it (`$BODY#CS`).
pub fn frame(body: &str) -> Vec<u8> {
    let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    format!("${body}#{sum:02x}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut PacketFilter, bytes: &[u8]) -> (Vec<u8>, Vec<Option<TlsRequest>>) {
        let mut passed = Vec::new();
        let mut tls = Vec::new();
        for &b in bytes {
            match f.push(b) {
                Filtered::Held => {}
                Filtered::Pass(v) => passed.extend(v),
                Filtered::Tls(r) => tls.push(r),
            }
        }
        (passed, tls)
    }

    #[test]
    fn only_tls_requests_are_taken_out() {
        let mut f = PacketFilter::default();
        let mut stream = b"+$qSupported:multiprocess+#c6".to_vec();
        stream.extend(frame("qGetTLSAddr:p2a.2b,10,7ffff7fc1000"));
        stream.extend(b"+\x03$m401000,4#00");
        stream.extend(frame("qGetTLSAddr:2b,zz,1"));
        let (passed, tls) = feed(&mut f, &stream);
        assert_eq!(passed, b"+$qSupported:multiprocess+#c6+\x03$m401000,4#00");
        assert_eq!(
            tls,
            [
                Some(TlsRequest {
                    tid: 0x2b,
                    offset: 0x10,
                    lm: 0x7fff_f7fc_1000
                }),
                None
            ]
        );
        assert!(!f.holding());
    }

    #[test]
    fn frames_carry_their_checksum() {
        assert_eq!(frame("OK"), b"$OK#9a");
        assert_eq!(frame(""), b"$#00");
    }
}
