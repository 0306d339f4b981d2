//! Reading a recording directory (see `docs/trace-format.md`) without depending on the
//! recorder crate: header.json and result.json are read as loose JSON, so fields the
//! recorder adds later are carried along in the members and ignored here.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::errors::PackError;
use crate::hash::is_blake3_hex;
use crate::manifest::{FILES_DIR, MANIFEST_NAME};

/// The first line of a recording's `version` file that this packer understands.
pub const TRACE_VERSION_LINE: &str = "chaos-trace 2";
/// Earlier formats it still packs (2 only added event kinds to 1).
pub const OLDER_TRACE_VERSION_LINES: &[&str] = &["chaos-trace 1"];

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
    pub header: Value,
    pub result: Option<Value>,
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

fn read_json(path: &Path) -> Result<Value, PackError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| PackError::BadJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Lists a recording directory and reads its JSON files.
pub(crate) fn scan(dir: &Path) -> Result<TraceScan, PackError> {
    let version_path = dir.join("version");
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
    if first_line != TRACE_VERSION_LINE && !OLDER_TRACE_VERSION_LINES.contains(&first_line.as_str())
    {
        return Err(PackError::UnsupportedTrace {
            path: version_path,
            found: first_line,
        });
    }
    let header_path = dir.join("header.json");
    let header = if header_path.exists() {
        read_json(&header_path)?
    } else {
        Value::Object(Default::default())
    };
    let result_path = dir.join("result.json");
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
        if !is_blake3_hex(name) {
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

// Lenient accessors: a field of the wrong type counts as absent.

pub(crate) fn get_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(crate) fn get_u64(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub(crate) fn get_i64(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(crate) fn get_bool(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

pub(crate) fn get_strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The environment as `[["K","V"], ...]` or `{"K": "V"}`.
pub(crate) fn get_env(v: &Value) -> Vec<(String, String)> {
    match v.get("env") {
        Some(Value::Array(pairs)) => pairs
            .iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                Some((
                    p.first()?.as_str()?.to_string(),
                    p.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// result.json `cpuid_leaves`: `[[leaf, subleaf, eax, ebx, ecx, edx], ...]`.
pub(crate) fn get_cpuid_leaves(v: &Value) -> Vec<[u32; 6]> {
    v.get("cpuid_leaves")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|row| {
                    let row = row.as_array()?;
                    if row.len() != 6 {
                        return None;
                    }
                    let mut out = [0u32; 6];
                    for (o, x) in out.iter_mut().zip(row) {
                        *o = u32::try_from(x.as_u64()?).ok()?;
                    }
                    Some(out)
                })
                .collect()
        })
        .unwrap_or_default()
}
