//! The `events` file: independent zstd frames of length-prefixed postcard records, so a
//! recording that was killed stays readable up to its last complete chunk.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::event::Event;
use crate::errors::{Error, Result};

/// Chunks are closed once their uncompressed records reach this size.
const CHUNK_BYTES: usize = 256 * 1024;
/// zstd level for chunks: the fastest, since the archive recompresses harder.
const LEVEL: i32 = 1;

/// Appends events to an `events` file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
    count: u64,
    /// Taken from [`COMPRESSORS`] at the first flush and given back on drop: setting up
    /// a compression context costs more than compressing a short recording's events.
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

/// Compression contexts of finished writers, for the next recordings of this process (a
/// flake hunt makes thousands).
static COMPRESSORS: std::sync::Mutex<Vec<zstd::bulk::Compressor<'static>>> =
    std::sync::Mutex::new(Vec::new());

impl EventWriter {
    /// Creates the file.
    pub fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(EventWriter {
            path: path.to_owned(),
            out: BufWriter::new(f),
            buf: Vec::new(),
            count: 0,
            compressor: None,
        })
    }

    /// Appends one event.
    pub fn push(&mut self, event: &Event) -> Result<()> {
        // Length prefix first, filled in once the record is encoded after it.
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(event, buf).map_err(|e| Error::BadTrace {
            path: self.path.clone(),
            reason: format!("cannot encode event: {e}"),
        })?;
        let len = (self.buf.len() - start - 4) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Number of events pushed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Closes the current chunk and writes it out.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.compressor.is_none() {
            let pooled = COMPRESSORS.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let c = match pooled {
                Some(c) => c,
                None => zstd::bulk::Compressor::new(LEVEL).map_err(|e| Error::io(&self.path, e))?,
            };
            self.compressor = Some(c);
        }
        let compressor = self.compressor.as_mut().expect("set above");
        let frame = compressor
            .compress(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.buf.clear();
        let w = &mut self.out;
        w.write_all(&(frame.len() as u32).to_le_bytes())
            .and_then(|_| w.write_all(&frame))
            .and_then(|_| w.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.flush();
        if let Some(c) = self.compressor.take() {
            COMPRESSORS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }
}

/// Most bytes one chunk may expand to. The recorder closes a chunk once it holds
/// [`CHUNK_BYTES`] of records, so only a chunk holding one large event is bigger (a
/// `read` of a whole file in one call; the kernel caps one call at 2 GiB). A chunk must
/// declare its size in its zstd frame header, as the recorder's always do, and is
/// decompressed into exactly that much memory, reserved fallibly: a damaged or hostile
/// chunk is refused, never allowed to exhaust memory.
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;
/// Most bytes a whole event stream may expand to.
pub const MAX_STREAM_BYTES: u64 = 64 << 30;

/// Reads events back. Every event is checked against what the recorder can have
/// written ([`super::validate`]) before it is returned.
pub struct EventReader {
    path: PathBuf,
    input: std::io::BufReader<File>,
    records: Vec<u8>,
    pos: usize,
    read: u64,
    /// Bytes of the file not read yet (a damaged length must not make us allocate more).
    left: u64,
    /// Bytes the chunks read so far expanded to.
    expanded: u64,
    /// Set when the stream ended in a damaged chunk.
    pub truncated: Option<String>,
}

impl EventReader {
    /// Opens the file.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| Error::BadTrace {
            path: path.parent().unwrap_or(path).to_owned(),
            reason: format!("its event stream `events` cannot be opened: {e}"),
        })?;
        let left = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(EventReader {
            left,
            path: path.to_owned(),
            input: std::io::BufReader::new(f),
            records: Vec::new(),
            pos: 0,
            read: 0,
            expanded: 0,
            truncated: None,
        })
    }

    /// A second reader of the same file standing where this one stands (a replay
    /// checkpoint goes on reading from there, independently).
    pub fn duplicate(&self) -> Result<Self> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(self.left)))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(EventReader {
            path: self.path.clone(),
            input: std::io::BufReader::new(f),
            records: self.records.clone(),
            pos: self.pos,
            read: self.read,
            left: self.left,
            expanded: self.expanded,
            truncated: self.truncated.clone(),
        })
    }

    fn next_chunk(&mut self) -> Result<bool> {
        let mut len = [0u8; 4];
        match read_full(&mut self.input, &mut len) {
            Ok(0) => return Ok(false),
            Ok(4) => {}
            Ok(_) => {
                self.truncated = Some("the last chunk's length is cut off".into());
                return Ok(false);
            }
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        let len = u32::from_le_bytes(len) as usize;
        self.left = self.left.saturating_sub(4);
        if len as u64 > self.left {
            self.truncated = Some(format!(
                "the last chunk says {len} bytes, but only {} remain",
                self.left
            ));
            return Ok(false);
        }
        self.left -= len as u64;
        let mut frame = vec![0u8; len];
        let got = read_full(&mut self.input, &mut frame).map_err(|e| Error::io(&self.path, e))?;
        if got < len {
            self.truncated = Some(format!("the last chunk has {got} of its {len} bytes"));
            return Ok(false);
        }
        let size = match zstd::zstd_safe::get_frame_content_size(&frame) {
            Ok(Some(size)) => size,
            Ok(None) => return Err(self.bad("a chunk does not declare its size".into())),
            Err(_) => {
                self.truncated = Some("a chunk does not decompress: no valid frame header".into());
                return Ok(false);
            }
        };
        self.expanded = self.expanded.saturating_add(size);
        if size > MAX_CHUNK_BYTES || self.expanded > MAX_STREAM_BYTES {
            return Err(self.bad(format!(
                "a chunk expands to {size} bytes, more than the {MAX_CHUNK_BYTES} a chunk or the {MAX_STREAM_BYTES} a trace may hold"
            )));
        }
        let mut records = Vec::new();
        if records.try_reserve_exact(size as usize).is_err() {
            return Err(self.bad(format!(
                "a chunk needs {size} bytes of memory, which cannot be had"
            )));
        }
        let decompressed = zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(&frame, &mut records));
        match decompressed {
            Ok(n) if n as u64 == size => {
                self.records = records;
                self.pos = 0;
                Ok(true)
            }
            Ok(n) => Err(self.bad(format!(
                "a chunk expands to {n} bytes, not the {size} its header declares"
            ))),
            Err(e) => {
                self.truncated = Some(format!("a chunk does not decompress: {e}"));
                Ok(false)
            }
        }
    }

    /// The next event, or `None` at the end (check [`EventReader::truncated`]).
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if self.pos + 4 <= self.records.len() {
                let len = u32::from_le_bytes(
                    self.records[self.pos..self.pos + 4]
                        .try_into()
                        .expect("4 bytes"),
                ) as usize;
                let start = self.pos + 4;
                let Some(bytes) = self.records.get(start..start + len) else {
                    return Err(
                        self.bad(format!("event {} is cut off inside its chunk", self.read))
                    );
                };
                let event: Event = postcard::from_bytes(bytes)
                    .map_err(|e| self.bad(format!("event {} cannot be decoded: {e}", self.read)))?;
                super::validate::event(self.read, &event).map_err(|e| self.bad(e))?;
                self.pos = start + len;
                self.read += 1;
                return Ok(Some(event));
            }
            if self.pos != self.records.len() {
                return Err(self.bad(format!("garbage after event {}", self.read)));
            }
            if !self.next_chunk()? {
                return Ok(None);
            }
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadTrace {
            path: self.path.clone(),
            reason,
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
