//! The archive's binaries and libraries where gdb looks for them.
//!
//! gdb finds the program's shared libraries by the paths the dynamic loader recorded
//! in memory (`link_map::l_name`, e.g. `/lib/x86_64-linux-gnu/libc.so.6`), under its
//! `sysroot`; it finds the interpreter by the program's `PT_INTERP`, also under the
//! sysroot. The host's files at those paths may be other builds than the recorded
//! ones (other symbols, other offsets), so gdb must never see them: the sysroot is a
//! temporary directory of links into the trace's captured files, and nothing else.
//!
//! - The files mapped at the first exec (the program and its interpreter) are linked
//!   under their recorded paths (`ExecState::mappings` names them).
//! - The libraries mapped later carry only their content hash in the trace, so every
//!   captured ELF shared object is also linked under its `DT_SONAME` in a second
//!   directory given to gdb as `solib-search-path`: when `sysroot/<l_name>` does not
//!   exist, gdb tries the search path with the name's last component, which is the
//!   soname for every library the loader found by soname. The syscall-buffering
//!   library is also linked under the name it is loaded by (`LD_PRELOAD` names it by
//!   its hash, see `recorder::syscallbuf::file_name`).
//!
//! Names come from an untrusted trace: only plain relative components are used, so a
//! link can never land outside the temporary directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use recorder::trace::{ExecState, TraceDir};

use crate::errors::{Error, Result};

/// A temporary sysroot; removed when dropped.
pub struct Sysroot {
    _dir: tempfile::TempDir,
    /// Give gdb `set sysroot` this.
    pub root: PathBuf,
    /// Give gdb `set solib-search-path` this.
    pub solib_dir: PathBuf,
    /// The program, under the sysroot (gdb's `file`).
    pub exe: Option<PathBuf>,
    /// Links made: recorded path or soname, and the captured file.
    pub links: BTreeMap<String, PathBuf>,
}

impl Sysroot {
    /// Builds the sysroot for a trace whose first exec is `exec`.
    pub fn build(trace: &TraceDir, exec: &ExecState) -> Result<Sysroot> {
        let dir = tempfile::Builder::new()
            .prefix("chaos-gdb-")
            .tempdir()
            .map_err(|e| Error::io("creating the sysroot directory", e))?;
        let root = dir.path().join("root");
        let solib_dir = dir.path().join("solibs");
        for d in [&root, &solib_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let mut links = BTreeMap::new();
        let mut exe = None;
        for m in &exec.mappings {
            let (Some(hash), Some(rel)) = (&m.file, relative(&m.name)) else {
                continue;
            };
            let target = trace.file_path(hash)?;
            let at = root.join(&rel);
            if link(&target, &at)? {
                links.insert(m.name.clone(), target.clone());
            }
            if m.name == exec.path {
                exe = Some(at);
            }
        }
        // The program's path may differ from its mapping's name (a symlink was run).
        if exe.is_none() {
            exe = exec
                .mappings
                .iter()
                .find(|m| m.file.is_some() && m.offset == 0)
                .and_then(|m| relative(&m.name))
                .map(|rel| root.join(rel));
        }
        let files = trace.path.join("files");
        if let Ok(entries) = std::fs::read_dir(&files) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(target) = trace.file_path(&name) else {
                    continue;
                };
                let Some(soname) = soname_of(&target) else {
                    continue;
                };
                // The syscall-buffering library is loaded by a name made of its hash,
                // not by its soname: link it under that name too.
                let loaded_as = (soname == recorder::syscallbuf::SONAME)
                    .then(|| recorder::syscallbuf::file_name(&name))
                    .flatten();
                for alias in [Some(soname), loaded_as].into_iter().flatten() {
                    if let Some(rel) = relative(&alias).filter(|r| r.components().count() == 1) {
                        if link(&target, &solib_dir.join(rel))? {
                            links.insert(alias, target.clone());
                        }
                    }
                }
            }
        }
        Ok(Sysroot {
            _dir: dir,
            root,
            solib_dir,
            exe,
            links,
        })
    }

    /// Where the recorded glibc keeps a link map's TLS module id: the
    /// `_thread_db_link_map_l_tls_modid` descriptor of the archive's libc.so.6 (or of
    /// another captured `libc*` library exporting it); `None` when none does.
    pub fn tls_modid_field(&self) -> Option<crate::tls::ModidField> {
        let libc = self.links.get("libc.so.6").into_iter();
        let others = self.links.iter().filter_map(|(name, file)| {
            let base = name.rsplit('/').next().unwrap_or(name);
            (base.starts_with("libc.") || base.starts_with("libc-")).then_some(file)
        });
        libc.chain(others).find_map(|file| {
            let data = std::fs::read(file).ok()?;
            crate::tls::ModidField::from_elf(&data)
        })
    }

    /// The gdb commands that make it use this sysroot (before `file` and `target`).
    pub fn gdb_commands(&self) -> Vec<String> {
        vec![
            format!("set sysroot {}", self.root.display()),
            format!("set solib-search-path {}", self.solib_dir.display()),
        ]
    }
}

/// `name` as a relative path of plain components (an absolute recorded path without
/// its leading `/`), or `None` for pseudo-names (`[stack]`) and anything with `..`.
fn relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if !path.is_absolute() && path.components().count() != 1 {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => out.push(p),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty() && !name.starts_with('[')).then_some(out)
}

/// Links `at` to `target` (made absolute: a relative target would be read from the
/// link's own directory); `false` when something is already there (the first wins).
fn link(target: &Path, at: &Path) -> Result<bool> {
    let target = std::fs::canonicalize(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    // A hard link where the file system allows it, so that gdb names the file by its
    // recorded path rather than by the captured file's hash; else a symbolic link.
    let made = std::fs::hard_link(&target, at).or_else(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Err(e)
        } else {
            std::os::unix::fs::symlink(&target, at)
        }
    });
    match made {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(format!("linking {}", at.display()), e)),
    }
}

/// The `DT_SONAME` of an ELF shared object; `None` for anything else.
fn soname_of(path: &Path) -> Option<String> {
    use object::read::elf::{Dyn, ElfFile64, FileHeader};
    use object::Endianness;
    let data = std::fs::read(path).ok()?;
    let elf = ElfFile64::<Endianness>::parse(&*data).ok()?;
    let endian = elf.endian();
    let header = elf.elf_header();
    let sections = header.sections(endian, &*data).ok()?;
    // The index returned with `.dynamic` is that of its string table.
    let (dynamic, strtab) = sections.dynamic(endian, &*data).ok()??;
    let strings = sections.strings(endian, &*data, strtab).ok()?;
    for d in dynamic {
        if d.tag32(endian) == Some(object::elf::DT_SONAME) {
            let name = strings.get(d.d_val(endian) as u32).ok()?;
            return String::from_utf8(name.to_vec()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_names_never_leave_the_sysroot() {
        assert_eq!(
            relative("/usr/lib/libc.so.6"),
            Some(PathBuf::from("usr/lib/libc.so.6"))
        );
        assert_eq!(relative("libc.so.6"), Some(PathBuf::from("libc.so.6")));
        assert_eq!(relative("/usr/../etc/passwd"), None);
        assert_eq!(relative("../x"), None);
        assert_eq!(relative("a/b"), None);
        assert_eq!(relative("[stack]"), None);
        assert_eq!(relative(""), None);
        assert_eq!(relative("/"), None);
    }

    /// The path of the test binary's own libc, found through /proc/self/maps.
    fn this_process_libc() -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so") || p.contains("libc-"))
            .expect("a dynamically linked test binary maps libc")
            .to_owned()
    }

    #[test]
    fn this_machine_s_libc_describes_l_tls_modid() {
        let libc = this_process_libc();
        let field = crate::tls::ModidField::from_elf(&std::fs::read(&libc).unwrap())
            .expect("glibc exports the descriptor for libthread_db");
        // A 64-bit size_t somewhere past the public part of struct link_map.
        assert_eq!(field.bits, 64);
        assert!(field.offset >= 40, "{field:?}");
        let exe = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(crate::tls::ModidField::from_elf(&exe), None);
    }

    #[test]
    fn the_soname_of_this_machine_s_libc_is_read() {
        let libc = this_process_libc();
        assert_eq!(soname_of(Path::new(&libc)).as_deref(), Some("libc.so.6"));
        assert_eq!(
            soname_of(Path::new("/proc/self/exe")),
            None,
            "an executable has no soname"
        );
    }
}
