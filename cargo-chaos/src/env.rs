//! The environment a recorded program gets: ours, minus variables whose names look
//! secret (traces get uploaded). The names removed are recorded, never the values.

use std::ffi::OsString;

/// Our environment without secrets, and the names removed. `keep` lets named
/// variables through.
pub fn program_env(keep: &[String]) -> (Vec<(OsString, OsString)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy().into_owned();
        if packer::secrets::is_removed(&name, keep) {
            removed.push(name);
        } else {
            kept.push((k, v));
        }
    }
    removed.sort();
    (kept, removed)
}
