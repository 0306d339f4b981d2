//! The environment a recorded program gets: ours, minus variables that look secret
//! (traces get uploaded): by their names, or by their values (a password inside a URL, a
//! token of a well-known shape), see [`packer::secrets`]. The names removed are
//! recorded, never the values.

use std::ffi::OsString;

use packer::secrets::RemovalReason;

/// Our environment without secrets, and the names removed. `keep` lets named
/// variables through.
///
/// A variable removed for its value rather than its name is announced on stderr (the
/// test may need it, and nothing in its name says why it is missing).
pub fn program_env(keep: &[String]) -> (Vec<(OsString, OsString)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy().into_owned();
        match packer::secrets::removal_reason(&name, &v, keep) {
            None => kept.push((k, v)),
            Some(reason) => {
                if reason != RemovalReason::SecretName {
                    eprintln!(
                        "chaos: {name} is not passed to the program: {reason} \
                         (--keep-env {name} passes it)"
                    );
                }
                tracing::debug!(%name, %reason, "variable removed from the program's environment");
                removed.push(name);
            }
        }
    }
    removed.sort();
    (kept, removed)
}
