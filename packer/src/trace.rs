//! Reading a recording directory (see `docs/trace-format.md`) for packing.
//!
//! The format is the recorder's (`recorder::trace`): the same version lines, the same
//! `Header` and `RunResult` types for header.json and result.json (fields an older
//! recorder did not write take their defaults; fields a newer one adds are carried along
//! in the members and ignored here), and the same rule for the names in `files/`.

use std::fs;
use std::path::{Path, PathBuf};

use recorder::trace::{
    is_file_name, is_readable_version, Header, RunResult, FILES_DIR, HEADER_FILE, RESULT_FILE,
    VERSION_FILE,
};
use serde::de::DeserializeOwned;

use crate::errors::PackError;
use crate::manifest::MANIFEST_NAME;

/// A file of the recording itself (not a captured file).
#[derive(Debug, Clone)]
pub(crate) struct OwnFile {
    /// Path relative to the recording, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
}

/// A captured file, `files/<hash>`.
#[derive(Debug, Clone)]
pub(crate) struct CapturedFile {
    pub hash: String,
    pub path: PathBuf,
    pub size: u64,
}

/// What a recording directory holds.
#[derive(Debug)]
pub(crate) struct TraceScan {
    pub dir: PathBuf,
    /// `header.json`; `None` when the recorder stopped before writing it.
    pub header: Option<Header>,
    /// `result.json`; `None` when the recorder was killed.
    pub result: Option<RunResult>,
    pub own: Vec<OwnFile>,
    pub captured: Vec<CapturedFile>,
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> PackError + 'p {
    move |source| PackError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn kind_name(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, PackError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| PackError::BadJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Lists a recording directory and reads its JSON files.
pub(crate) fn scan(dir: &Path) -> Result<TraceScan, PackError> {
    let version_path = dir.join(VERSION_FILE);
    let version = match fs::read(&version_path) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackError::NotATrace {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("read", &version_path)(e)),
    };
    let first_line = String::from_utf8_lossy(&version)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !is_readable_version(&first_line) {
        return Err(PackError::UnsupportedTrace {
            path: version_path,
            found: first_line,
        });
    }
    let header_path = dir.join(HEADER_FILE);
    let header = if header_path.exists() {
        Some(read_json(&header_path)?)
    } else {
        None
    };
    let result_path = dir.join(RESULT_FILE);
    let result = if result_path.exists() {
        Some(read_json(&result_path)?)
    } else {
        None
    };

    let mut own = Vec::new();
    let mut captured = Vec::new();
    walk(dir, dir, &mut own, &mut captured)?;
    own.sort_by(|a, b| a.rel.cmp(&b.rel));
    captured.sort_by(|a, b| a.hash.cmp(&b.hash));
    Ok(TraceScan {
        dir: dir.to_path_buf(),
        header,
        result,
        own,
        captured,
    })
}

fn walk(
    root: &Path,
    dir: &Path,
    own: &mut Vec<OwnFile>,
    captured: &mut Vec<CapturedFile>,
) -> Result<(), PackError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
        let ft = meta.file_type();
        let rel_path = path.strip_prefix(root).expect("walk stays under root");
        let rel = rel_path
            .to_str()
            .ok_or(PackError::UnsupportedEntry {
                path: path.clone(),
                kind: "file whose name is not UTF-8",
            })?
            .to_string();
        let at_root = dir == root;
        if at_root && rel == MANIFEST_NAME {
            // Left by a previous unpack; the new archive gets a fresh one.
            continue;
        }
        if ft.is_dir() {
            if at_root && rel == FILES_DIR {
                scan_files_dir(&path, captured)?;
            } else {
                walk(root, &path, own, captured)?;
            }
        } else if ft.is_file() {
            own.push(OwnFile {
                rel,
                path,
                size: meta.len(),
            });
        } else {
            return Err(PackError::UnsupportedEntry {
                path,
                kind: kind_name(&ft),
            });
        }
    }
    Ok(())
}

fn scan_files_dir(dir: &Path, captured: &mut Vec<CapturedFile>) -> Result<(), PackError> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
        let ft = meta.file_type();
        if !ft.is_file() {
            return Err(PackError::UnsupportedEntry {
                kind: if ft.is_dir() {
                    "directory inside files/"
                } else {
                    kind_name(&ft)
                },
                path,
            });
        }
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        if !is_file_name(name) {
            return Err(PackError::UnsupportedEntry {
                path,
                kind: "captured file not named by its BLAKE3 hash",
            });
        }
        captured.push(CapturedFile {
            hash: name.to_string(),
            path,
            size: meta.len(),
        });
    }
    Ok(())
}
