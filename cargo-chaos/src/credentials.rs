//! Archives that hold credentials: where they are, in words, and keeping such archives
//! local.
//!
//! Packing lists credentials of well-known shapes found in an archive's members
//! ([`packer::Manifest::tokens`]). A member name says little (`files/<hash>`,
//! `recordings/NAME/events`), so the recording is read again to say where the
//! credential came from: the path of a captured file, or the system call whose result
//! held it (a `read` of a file: the trace does not keep the paths of opened files, only
//! the file descriptor). The credential itself is never printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use packer::secrets::tokens::{self, TokenKind};
use packer::TokenFinding;
use recorder::trace::{Event, TraceDir};

/// The flag that lets an archive with credentials be uploaded.
pub const ALLOW_FLAG: &str = "--allow-secrets";

/// One line per finding: where, and what kind of credential.
pub fn describe(trace: Option<&Path>, findings: &[TokenFinding]) -> Vec<String> {
    let mut lines = Vec::new();
    let needs_events = findings.iter().any(|f| !f.member.starts_with("files/"));
    let places = trace
        .filter(|_| !findings.is_empty())
        .map(|t| read_places(t, needs_events))
        .unwrap_or_default();
    for f in findings {
        let kind = f.kind;
        if let Some(hash) = f.member.strip_prefix("files/") {
            match places.file_names.iter().find(|(h, _)| h == hash) {
                Some((_, name)) => lines.push(format!("{kind} in the file {name}")),
                None => lines.push(format!("{kind} in the captured file {}", f.member)),
            }
        } else if f.member.ends_with("/events") {
            let mut said = false;
            for (k, place) in &places.event_places {
                if *k == kind {
                    lines.push(format!("{kind} in {place}"));
                    said = true;
                }
            }
            if !said {
                lines.push(format!("{kind} in the recorded events ({})", f.member));
            }
        } else {
            let what = match f.member.rsplit('/').next() {
                Some("stdout") => "the program's standard output".to_string(),
                Some("stderr") => "the program's standard error".to_string(),
                Some("header.json") => "the recorded environment or command line".to_string(),
                _ => f.member.clone(),
            };
            lines.push(format!("{kind} in {what} ({})", f.member));
        }
    }
    lines.dedup();
    lines
}

#[derive(Default)]
struct Places {
    /// Captured file hash -> the path it was mapped from.
    file_names: Vec<(String, String)>,
    /// Kinds found in events, with a description of the event.
    event_places: BTreeSet<(TokenKind, String)>,
}

/// Reads the recording's events for the names of captured files and, when `scan`, the
/// events whose data hold credentials. A trace that cannot be read gives what was read.
fn read_places(trace: &Path, scan: bool) -> Places {
    let mut places = Places::default();
    let Ok(dir) = TraceDir::open(trace) else {
        return places;
    };
    let Ok(mut events) = dir.events() else {
        return places;
    };
    let mut count = 0u64;
    while let Ok(Some(ev)) = events.next_event() {
        let n = count;
        count += 1;
        match &ev {
            Event::Exec(e) => {
                for m in &e.mappings {
                    if let Some(h) = &m.file {
                        if !places.file_names.iter().any(|(k, _)| k == h) {
                            places.file_names.push((h.clone(), m.name.clone()));
                        }
                    }
                }
                if scan {
                    for w in &e.memory {
                        for kind in tokens::find(&w.data) {
                            places.event_places.insert((
                                kind,
                                format!("the memory of {} at its start (event {n})", e.path),
                            ));
                        }
                    }
                }
            }
            Event::Syscall(s) => {
                if let Some(h) = &s.file {
                    if !places.file_names.iter().any(|(k, _)| k == h) {
                        let what = format!(
                            "the program mapped with {}(fd {}) in thread {} (event {n}; the \
                             trace keeps no path for it)",
                            recorder::syscalls::name_of(s.nr),
                            s.args[4] as i64,
                            s.tid
                        );
                        places.file_names.push((h.clone(), what));
                    }
                }
                let writes = if scan { &s.writes[..] } else { &[] };
                for w in writes {
                    for kind in tokens::find(&w.data) {
                        places.event_places.insert((
                            kind,
                            format!(
                                "data the program read: the result of {}(fd {}) in thread {} \
                                 (event {n})",
                                recorder::syscalls::name_of(s.nr),
                                s.args[0] as i64,
                                s.tid
                            ),
                        ));
                    }
                }
            }
            Event::SharedFileWrite { name, data, .. } if scan => {
                for kind in tokens::find(data) {
                    places
                        .event_places
                        .insert((kind, format!("data written to {name} (event {n})")));
                }
            }
            _ => {}
        }
    }
    places
}

/// Where an archive that holds credentials is kept: beside the usual archive directory,
/// not in it, so that a CI step uploading that directory does not take it along.
pub fn held_dir(archives_dir: &Path) -> PathBuf {
    match archives_dir.parent() {
        Some(p) => p.join("held-back"),
        None => PathBuf::from("held-back"),
    }
}

/// Prints why an archive is not uploaded and where it is.
pub fn print_held(archive: &Path, lines: &[String]) {
    eprintln!(
        "{:>12} {} holds credentials, so it stays on this machine (not uploaded):",
        "Held back",
        archive.display()
    );
    for l in lines {
        eprintln!("             - {l}");
    }
    eprintln!(
        "             Check that it is safe to share (or record without the credential: for \
         actions/checkout, `persist-credentials: false`); {ALLOW_FLAG} uploads it anyway."
    );
}

/// In GitHub Actions, says in the job summary that a capture was held back and why
/// (never the credential). Writes no `archive=` output, so that steps uploading the
/// archive named there skip it. Failures are ignored.
pub fn report_held_to_github(archive: &Path, lines: &[String]) {
    use std::io::Write;
    if std::env::var_os("GITHUB_ACTIONS").is_none() {
        return;
    }
    let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let mut text = format!(
        "### cargo-chaos captured a failing run, but did not share it\n\n\
         The archive `{}` holds credentials, so it stays on the runner:\n\n",
        archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    for l in lines {
        text.push_str(&format!("- {l}\n"));
    }
    text.push_str(&format!(
        "\nRecord without the credential (for actions/checkout: `persist-credentials: false`), \
         or pass `{ALLOW_FLAG}` once you know it is safe to share.\n"
    ));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(summary)
    {
        let _ = f.write_all(text.as_bytes());
    }
}
