//! The replay sandbox's second layer: Landlock.
//!
//! The first layer is the engine itself: a replayed program's system calls are skipped
//! and their recorded results injected, except the calls the engine's own table marks
//! `executed` (they shape the program's own address space, signal state and tasks) and
//! `untraced` (a trace may only narrow that list, see [`crate::trace::validate`]); a
//! call the trace does not expect is a divergence and never runs. Files are opened only
//! by the engine, by content hash, inside the trace.
//!
//! In case that layer has a hole, the replayed tree also runs in a Landlock domain,
//! where the kernel offers one (Linux 5.13 and later, with Landlock enabled): it may
//! read the trace and use the replay's private work directory (the stub it execs, the
//! writable copies of files it maps shared), and nothing else of the file system; with
//! Landlock ABI 4 (Linux 6.7) it can neither bind nor connect TCP sockets; with ABI 6
//! (Linux 6.12) it can send no signal and reach no abstract UNIX socket outside the
//! replayed tree. The domain is entered in the spawned child just before it execs (see
//! [`crate::spawn::SpawnSpec::landlock`]) and is inherited by every process of the tree.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, ABI,
};

/// The Landlock ABI version this kernel offers (0: none).
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no pointer.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

/// A Landlock ruleset, ready for a child to enter.
#[derive(Debug)]
pub struct Sandbox {
    /// The ruleset's descriptor (close-on-exec).
    pub ruleset: OwnedFd,
    /// The kernel's Landlock ABI version, which says what the ruleset enforces.
    pub abi: u32,
}

impl Sandbox {
    /// A ruleset that lets the tree read `read_only` (directories or files) and read,
    /// write and execute inside `private`, and nothing else; no TCP and no signals or
    /// abstract sockets outside its domain where the kernel can enforce that. `None`
    /// when this kernel has no Landlock.
    pub fn new(read_only: &[&Path], private: &[&Path]) -> Option<Sandbox> {
        let abi = landlock_abi();
        if abi == 0 {
            return None;
        }
        let target = ABI::V6;
        let created = Ruleset::default()
            .handle_access(AccessFs::from_all(target))
            .and_then(|r| r.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp))
            .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal))
            .and_then(|r| r.create())
            .and_then(|r| r.add_rules(path_beneath_rules(read_only, AccessFs::from_read(target))))
            .and_then(|r| r.add_rules(path_beneath_rules(private, AccessFs::from_all(target))));
        match created {
            Ok(r) => Option::<OwnedFd>::from(r).map(|ruleset| Sandbox { ruleset, abi }),
            Err(e) => {
                tracing::warn!("cannot set up the Landlock sandbox: {e}");
                None
            }
        }
    }

    /// What the sandbox enforces, in words.
    pub fn describe(&self) -> String {
        let mut what = vec!["file system limited to the trace"];
        if self.abi >= 4 {
            what.push("no TCP");
        }
        if self.abi >= 6 {
            what.push("no signals out of the tree");
        }
        format!("Landlock ABI {}: {}", self.abi, what.join(", "))
    }
}
