//! Searching a recording's `events` file for credentials.
//!
//! The file is a sequence of chunks, each a `u32` little-endian length and one zstd frame
//! (see `docs/trace-format.md`); the data system calls gave the program (`read` results)
//! and the memory of each program image are in those frames as plain bytes, so the
//! decompressed frames are searched, one piece at a time (memory stays bounded whatever
//! a frame expands to).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::tokens::{TokenKind, TokenScanner};

/// Decompressed bytes handed to the scanner at a time.
const PIECE: usize = 1 << 20;

/// The kinds of credentials in the decompressed chunks of the events file at `path`.
///
/// A damaged chunk ends the search there (replay cannot read past it either; the
/// recorder leaves a truncated last chunk when it is killed). Only an error reading the
/// file is an error.
pub(crate) fn scan_events_file(path: &Path) -> io::Result<Vec<TokenKind>> {
    let mut file = BufReader::new(File::open(path)?);
    let mut scanner = TokenScanner::new();
    let mut piece = vec![0u8; PIECE];
    loop {
        let mut len = [0u8; 4];
        match file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u64::from(u32::from_le_bytes(len));
        let mut chunk = (&mut file).take(len);
        let complete = match zstd::stream::read::Decoder::with_buffer(BufReader::new(&mut chunk)) {
            Ok(decoder) => {
                let mut decoder = decoder.single_frame();
                scanner.reset();
                loop {
                    match decoder.read(&mut piece) {
                        Ok(0) => break true,
                        Ok(n) => scanner.feed(&piece[..n]),
                        Err(_) => break false,
                    }
                }
            }
            Err(_) => false,
        };
        if !complete {
            break;
        }
        // Skip whatever the frame did not use, to the next chunk.
        io::copy(&mut chunk, &mut io::sink())?;
        if chunk.limit() > 0 {
            break;
        }
    }
    Ok(scanner.finish())
}
