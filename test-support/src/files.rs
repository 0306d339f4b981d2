//! Byte-for-byte snapshots and copies of directory trees.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory and its permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file, its permission bits and its content.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        data: Vec<u8>,
    },
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// Anything else (socket, fifo, device).
    Other,
}

/// Every entry under `dir` (relative path → type, permission bits and content), for
/// byte-for-byte comparisons of directory trees.
pub fn snapshot(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let path = root.join(&rel_path);
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(rel_path.clone(), Entry::Dir { mode });
            walk(root, &rel_path, out)?;
        } else if ft.is_file() {
            out.insert(
                rel_path,
                Entry::File {
                    mode,
                    data: std::fs::read(&path)?,
                },
            );
        } else if ft.is_symlink() {
            out.insert(rel_path, Entry::Symlink(std::fs::read_link(&path)?));
        } else {
            out.insert(rel_path, Entry::Other);
        }
    }
    Ok(())
}

/// Describes how two snapshots differ (empty when they are equal).
pub fn snapshot_diff(
    before: &BTreeMap<PathBuf, Entry>,
    after: &BTreeMap<PathBuf, Entry>,
) -> String {
    let mut s = String::new();
    for (path, entry) in before {
        match after.get(path) {
            None => {
                let _ = writeln!(s, "removed: {}", path.display());
            }
            Some(other) if other != entry => {
                let what = match (entry, other) {
                    (Entry::File { mode: a, data: x }, Entry::File { mode: b, data: y })
                        if a == b =>
                    {
                        format!("content changed ({} -> {} bytes)", x.len(), y.len())
                    }
                    (Entry::File { mode: a, .. }, Entry::File { mode: b, .. }) => {
                        format!("mode changed ({a:o} -> {b:o})")
                    }
                    _ => "type or mode changed".to_string(),
                };
                let _ = writeln!(s, "changed: {}: {what}", path.display());
            }
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            let _ = writeln!(s, "added: {}", path.display());
        }
    }
    s
}

/// Copies the tree at `from` to `to` (created), as plain copies (never hard links, so a
/// test may damage its copy freely).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    let mode = std::fs::metadata(from)?.permissions().mode();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
}
