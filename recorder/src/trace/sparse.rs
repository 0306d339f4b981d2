//! Sparse captures: a huge file that is mostly holes, stored as its data extents.
//!
//! A recording captures every file the program maps, whole. A mapped file can be
//! huge and almost empty: a 1 TiB memfd with one page written, a 100 GiB database file
//! grown with `ftruncate`, the 20 GiB double-mapping memfd of the .NET runtime. Copied
//! and hashed byte by byte, such a file takes minutes and its zeros fill the archive.
//! Such a file is captured as a *sparse image* instead: a stored object that starts
//! with [`MAGIC`], then the file's size and its data extents (found with `SEEK_DATA` and
//! `SEEK_HOLE`), then the extents' bytes. Like any captured file it is named by the
//! BLAKE3 hash of what is stored, so the packer stores and checks it unchanged.
//!
//! An object starts with [`MAGIC`] exactly when it is an image: a small file that
//! happens to start with those bytes is captured as an image too (one extent), never
//! as itself. Replay builds the file again from the image ([`materialize`]), as a sparse
//! file in a directory of the user's, and maps that.
//!
//! Images come from traces and archives, which are untrusted: [`Image::read`] checks
//! that the extents are in order, inside the file, and account for every stored byte.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The first bytes of every sparse image, and of no other stored object.
pub const MAGIC: &[u8; 16] = b"cargo-chaos:sprs";

/// Files at least this large are captured as images when fewer than half of their
/// bytes are allocated.
pub const SPARSE_MIN: u64 = 64 << 20;

/// At most this many extents in one image (the header alone would be 16 MiB).
const MAX_EXTENTS: u64 = 1 << 20;

/// A sparse image's header: the file's size and its data extents `(offset, length)`,
/// in order and apart; everything else reads as zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The file's size.
    pub size: u64,
    /// Data extents, in order, not overlapping, inside `size`.
    pub extents: Vec<(u64, u64)>,
}

impl Image {
    /// The image of open file `file` of `size` bytes: its data extents, as the file
    /// system reports them (a file system without `SEEK_DATA` reports one extent).
    pub fn of(file: &File, size: u64) -> std::io::Result<Self> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        let mut extents = Vec::new();
        let mut at = 0u64;
        while at < size {
            // SAFETY: lseek on a descriptor we own; no memory is passed.
            let data = unsafe { libc::lseek(fd, at as i64, libc::SEEK_DATA) };
            if data < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENXIO) {
                    break; // only a hole from `at` on
                }
                return Err(e);
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            if hole < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let (data, hole) = (data as u64, (hole as u64).min(size));
            if hole <= data {
                break;
            }
            extents.push((data, hole - data));
            if extents.len() as u64 > MAX_EXTENTS {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_EXTENTS} data extents"
                )));
            }
            at = hole;
        }
        Ok(Image { size, extents })
    }

    /// The image of a whole file of `size` bytes, all data.
    pub fn dense(size: u64) -> Self {
        Image {
            size,
            extents: if size == 0 { vec![] } else { vec![(0, size)] },
        }
    }

    /// The bytes of data the image stores.
    pub fn data_len(&self) -> u64 {
        self.extents.iter().map(|e| e.1).sum()
    }

    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(32 + 16 * self.extents.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&self.size.to_le_bytes());
        h.extend_from_slice(&(self.extents.len() as u64).to_le_bytes());
        for (off, len) in &self.extents {
            h.extend_from_slice(&off.to_le_bytes());
            h.extend_from_slice(&len.to_le_bytes());
        }
        h
    }

    /// Writes the image of `src` to `out`: the header, then each extent's bytes read
    /// from `src`. Fails if `src` no longer has them (it shrank meanwhile).
    pub fn write(&self, src: &File, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.header())?;
        self.each_chunk(|chunk, at| {
            src.read_exact_at(chunk, at)?;
            out.write_all(chunk)
        })
    }

    /// Calls `step` on each extent in turn, a megabyte at a time, with a buffer of the
    /// chunk's length and the chunk's offset in the file.
    fn each_chunk<E>(
        &self,
        mut step: impl FnMut(&mut [u8], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buf = vec![0u8; 1 << 20];
        for &(off, len) in &self.extents {
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                step(&mut buf[..n], off + done)?;
                done += n as u64;
            }
        }
        Ok(())
    }

    /// Reads the header of stored object `obj`: `None` when it is not an image; an error
    /// saying why when it is one but does not hold together. On success `obj` is
    /// positioned at the first extent's bytes.
    pub fn read(obj: &mut File) -> Result<Option<Self>, String> {
        let mut magic = [0u8; 16];
        let total = obj.metadata().map_err(|e| e.to_string())?.len();
        obj.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        if total < 16 || obj.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Ok(None);
        }
        let mut word = || -> Result<u64, String> {
            let mut b = [0u8; 8];
            obj.read_exact(&mut b)
                .map_err(|_| "its header is cut short".to_string())?;
            Ok(u64::from_le_bytes(b))
        };
        let size = word()?;
        let count = word()?;
        if count > MAX_EXTENTS || 32 + 16 * count > total {
            return Err(format!("it claims {count} extents"));
        }
        let mut extents = Vec::with_capacity(count as usize);
        let mut end = 0u64;
        for _ in 0..count {
            let (off, len) = (word()?, word()?);
            let stop = off
                .checked_add(len)
                .filter(|&s| len > 0 && off >= end && s <= size)
                .ok_or_else(|| {
                    format!("extent {off}+{len} is empty, out of order or past its size {size}")
                })?;
            extents.push((off, len));
            end = stop;
        }
        let image = Image { size, extents };
        let stored = total - 32 - 16 * count;
        if image.data_len() != stored {
            return Err(format!(
                "its extents hold {} bytes and it stores {stored}",
                image.data_len()
            ));
        }
        Ok(Some(image))
    }
}

/// Whether a file of `len` bytes with `blocks` 512-byte blocks allocated is captured as
/// an image rather than copied.
pub fn worth_it(len: u64, blocks: u64) -> bool {
    len >= SPARSE_MIN && blocks.saturating_mul(512) < len / 2
}

/// Builds the file image `obj` describes at `dest` (created, or truncated): a sparse
/// file of the image's size with its extents' bytes written in. Returns `false`, leaving
/// `dest` alone, when `obj` is not an image.
pub fn materialize(obj: &Path, dest: &Path) -> Result<bool, String> {
    let mut f = File::open(obj).map_err(|e| format!("{}: {e}", obj.display()))?;
    let Some(image) = Image::read(&mut f)? else {
        return Ok(false);
    };
    let out = File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    out.set_len(image.size)
        .map_err(|e| format!("{}: a file of {} bytes: {e}", dest.display(), image.size))?;
    image.each_chunk(|chunk, at| {
        f.read_exact(chunk)
            .map_err(|e| format!("{}: {e}", obj.display()))?;
        out.write_all_at(chunk, at)
            .map_err(|e| format!("{}: {e}", dest.display()))
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_bytes(src: &File, image: &Image) -> Vec<u8> {
        let mut v = Vec::new();
        image.write(src, &mut v).unwrap();
        v
    }

    #[test]
    fn a_sparse_file_round_trips_through_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let src = File::create_new(&src_path).unwrap();
        let size = 1u64 << 40;
        src.set_len(size).unwrap();
        src.write_all_at(b"first", 0).unwrap();
        src.write_all_at(b"middle", size / 2).unwrap();
        let src = File::open(&src_path).unwrap();
        let image = Image::of(&src, size).unwrap();
        assert_eq!(image.extents.len(), 2, "{image:?}");
        assert!(image.data_len() < 1 << 20);
        let obj = dir.path().join("obj");
        std::fs::write(&obj, image_bytes(&src, &image)).unwrap();
        let out = dir.path().join("out");
        assert!(materialize(&obj, &out).unwrap());
        let out = File::open(&out).unwrap();
        assert_eq!(out.metadata().unwrap().len(), size);
        let mut b = [0u8; 6];
        out.read_exact_at(&mut b, size / 2).unwrap();
        assert_eq!(&b, b"middle");
        out.read_exact_at(&mut b[..5], 0).unwrap();
        assert_eq!(&b[..5], b"first");
        out.read_exact_at(&mut b, size / 4).unwrap();
        assert_eq!(b, [0; 6]);
    }

    #[test]
    fn an_ordinary_file_is_not_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("obj");
        std::fs::write(&obj, b"\x7fELF and so on, more than sixteen bytes").unwrap();
        assert!(!materialize(&obj, &dir.path().join("out")).unwrap());
        assert!(!dir.path().join("out").exists());
    }

    #[test]
    fn a_crafted_image_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("obj");
        let header = |size: u64, extents: &[(u64, u64)], data: usize| {
            let mut v = Image {
                size,
                extents: extents.to_vec(),
            }
            .header();
            v.extend(std::iter::repeat(7u8).take(data));
            v
        };
        for (bytes, why) in [
            (header(100, &[(90, 20)], 20), "past its size"),
            (header(100, &[(50, 10), (40, 10)], 20), "out of order"),
            (header(100, &[(0, 10)], 5), "stores 5"),
            (header(100, &[(0, 0)], 0), "empty"),
            (header(u64::MAX, &[(u64::MAX - 1, 2)], 2), "past its size"),
            (
                MAGIC[..].iter().chain(&[1u8; 12]).copied().collect(),
                "cut short",
            ),
        ] {
            std::fs::write(&obj, &bytes).unwrap();
            let err = materialize(&obj, &dir.path().join("out")).unwrap_err();
            assert!(err.contains(why), "{err} should say {why}");
        }
        let mut huge = header(100, &[], 0);
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&obj, &huge).unwrap();
        assert!(materialize(&obj, &dir.path().join("out"))
            .unwrap_err()
            .contains("extents"));
    }
}
