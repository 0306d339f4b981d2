//! System V shared memory at replay.
//!
//! The recording allows only segments created with `IPC_PRIVATE` (`shmget`), which no
//! process outside the recorded tree can find by key; their contents change only
//! through the tree's own mappings, so replay re-creates the sharing rather than the
//! data. Each recorded segment gets one zero-filled file of its size next to the replay
//! stub; `shmat` maps that file `MAP_SHARED` at the recorded address (every attachment
//! of a segment, in any process, maps the same file, as every attachment shares the
//! segment at record), and `shmdt` unmaps it. `shmget` and `shmctl` are only recorded:
//! their results are injected.

use super::syscall::{inject, stub_conflict};
use super::*;

/// The file that stands for segment `id` at replay, by name.
fn backing_name(id: i64) -> String {
    format!("sysv-shm-{id}")
}

impl Replayer<'_> {
    /// A recorded `shmget` created segment `s.ret` of `s.args[1]` bytes.
    pub(super) fn note_shmget(&mut self, s: &SyscallEvent) {
        if s.nr == nr::SHMGET && s.ret >= 0 {
            self.shm_segments.insert(s.ret, s.args[1]);
        }
    }

    /// Redoes a successful `shmat` (cancelled at its entry): maps the segment's file at
    /// the recorded address.
    pub(super) fn redo_shmat(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        task: &mut Task,
    ) -> Result<()> {
        let id = s.args[0] as i32 as i64;
        let Some(&size) = self.shm_segments.get(&id) else {
            return Err(self.diverge(
                ev,
                format!("attached System V segment {id}, whose shmget is not in the trace"),
            ));
        };
        let len = size.saturating_add(4095) & !4095;
        let addr = s.ret as u64;
        if crate::address_space::overlaps_stub(addr, addr.saturating_add(len)) {
            return Err(stub_conflict(addr));
        }
        let dir = self.scratch();
        let path = dir.join(backing_name(id));
        if !path.exists() {
            let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            f.set_len(len).map_err(|e| Error::io(&path, e))?;
        }
        const SHM_RDONLY: u64 = 0o10000;
        const SHM_EXEC: u64 = 0o100000;
        let mut prot = libc::PROT_READ;
        if s.args[2] & SHM_RDONLY == 0 {
            prot |= libc::PROT_WRITE;
        }
        if s.args[2] & SHM_EXEC != 0 {
            prot |= libc::PROT_EXEC;
        }
        let fd = Self::open_in(task, &path, libc::O_RDWR)?;
        let flags = libc::MAP_SHARED | libc::MAP_FIXED;
        let got = inject(
            task,
            libc::SYS_mmap,
            &[addr, len, prot as u64, flags as u64, fd as u64, 0],
        );
        inject(task, libc::SYS_close, &[fd as u64])?;
        if got? != s.ret {
            return Err(self.diverge(ev, "could not map the segment at replay".into()));
        }
        Ok(())
    }

    /// Redoes a successful `shmdt` (cancelled at its entry) as the kernel does it: the
    /// first mapping of a segment's file at or above the address whose file offset is
    /// its distance from the address names the segment; every mapping of that file
    /// within the segment's size from the address, at the offset that distance gives,
    /// is unmapped (pieces split off by mprotect or munmap included).
    pub(super) fn redo_shmdt(
        &mut self,
        ev: &Event,
        s: &SyscallEvent,
        task: &mut Task,
    ) -> Result<()> {
        let addr = s.args[0];
        let maps = crate::address_space::read_maps(task.tid)?;
        let attached = |m: &crate::address_space::MapsEntry| {
            m.start >= addr && m.offset == m.start - addr && segment_id(&m.name).is_some()
        };
        let Some(first) = maps.iter().find(|m| attached(m)) else {
            return Err(self.diverge(ev, format!("no segment attached at {addr:#x} at replay")));
        };
        let name = first.name.clone();
        let size = segment_id(&name)
            .and_then(|id| self.shm_segments.get(&id))
            .map_or(0, |&size| size.saturating_add(4095) & !4095);
        let end = addr.saturating_add(size);
        for m in maps
            .iter()
            .filter(|m| attached(m) && m.name == name && m.end <= end)
        {
            let r = inject(task, libc::SYS_munmap, &[m.start, m.end - m.start])?;
            if r != 0 {
                return Err(self.diverge(ev, format!("could not detach it at replay ({r})")));
            }
        }
        Ok(())
    }
}

/// The segment id a replay mapping's path stands for (see [`backing_name`]).
fn segment_id(path: &str) -> Option<i64> {
    Path::new(path)
        .file_name()?
        .to_str()?
        .strip_prefix("sysv-shm-")?
        .parse()
        .ok()
}
