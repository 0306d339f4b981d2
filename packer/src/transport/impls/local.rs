//! A local path or `file://` URL. Writes go to a temporary file beside the target and are
//! renamed into place, so a reader never sees a half-copied archive.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::errors::TransportError;
use crate::progress::{Meter, Phase, ProgressEvent};
use crate::transport::{Fetched, Transport};

/// A file on a mounted file system.
#[derive(Debug, Clone)]
pub struct Local {
    path: PathBuf,
}

impl Local {
    /// Accepts `/abs/path`, `rel/path` or `file:///abs/path`.
    pub fn new(location: &str) -> Result<Local, TransportError> {
        let path = if location.len() >= 7 && location[..7].eq_ignore_ascii_case("file://") {
            url::Url::parse(location)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| TransportError::InvalidUrl {
                    url: location.to_string(),
                    reason: "a file:// URL must hold an absolute path (file:///dir/name)".into(),
                })?
        } else {
            PathBuf::from(location)
        };
        Ok(Local { path })
    }

    /// The path this backend reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn copy(
    from: &mut File,
    to: &mut File,
    to_path: &Path,
    from_path: &Path,
    meter: &mut Meter,
) -> Result<u64, TransportError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).map_err(|source| TransportError::Io {
            op: "read",
            path: from_path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])
            .map_err(|source| TransportError::Io {
                op: "write",
                path: to_path.to_path_buf(),
                source,
            })?;
        meter.add(n as u64);
    }
    to.sync_all().map_err(|source| TransportError::Io {
        op: "sync",
        path: to_path.to_path_buf(),
        source,
    })?;
    Ok(meter.done)
}

impl Transport for Local {
    type Error = TransportError;

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn put(
        &mut self,
        src: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| TransportError::Io { op, path, source }
        };
        let parent = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io("create directory", &parent))?;
        let mut from = File::open(src).map_err(io("open", src))?;
        let total = from.metadata().map_err(io("inspect", src))?.len();
        let tmp = crate::partial::Partial::create(&parent, "chaos-upload-")
            .map_err(io("create a temporary file in", &parent))?;
        let mut to = tmp.reopen().map_err(io("open", tmp.path()))?;
        let mut meter = Meter::new(Phase::Uploading, Some(total), progress);
        copy(&mut from, &mut to, tmp.path(), src, &mut meter)?;
        tmp.persist(&self.path)
            .map_err(io("rename into", &self.path))?;
        meter.finish();
        Ok(())
    }

    fn get(
        &mut self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, TransportError> {
        let mut from = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TransportError::NotFound {
                    url: self.location(),
                    detail: String::new(),
                })
            }
            Err(source) => {
                return Err(TransportError::Io {
                    op: "open",
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let total = from.metadata().ok().map(|m| m.len());
        let mut to = File::create(dest).map_err(|source| TransportError::Io {
            op: "create",
            path: dest.to_path_buf(),
            source,
        })?;
        let mut meter = Meter::new(Phase::Downloading, total, progress);
        let size = copy(&mut from, &mut to, dest, &self.path, &mut meter)?;
        meter.finish();
        Ok(Fetched { name: None, size })
    }
}
