//! Keeping secrets out of recordings and archives.
//!
//! A recording holds what the recorded program saw, its environment included, and
//! archives get uploaded to places many people can read. Two layers keep credentials out:
//!
//! 1. **Before the program starts**, the recorder's caller runs the environment through
//!    [`filter_env`]: variables whose names match the deny-list below are removed, and the
//!    recorder writes only their *names* to `header.json` (`removed_env`). The program
//!    never sees the values, so they cannot reach the trace through memory either.
//! 2. **When packing**, [`pack`](crate::pack()) refuses a recording whose environment
//!    still holds a denied name (unless allowed), and scans every byte it writes for the
//!    values of secret-looking variables of the packing process itself (a CI job's
//!    `GITHUB_TOKEN`, say). A match aborts the pack instead of publishing the secret.
//!
//! The deny-list matches names, case-insensitively:
//! - names containing any of [`DENY_SUBSTRINGS`] (`TOKEN`, `SECRET`, `PASSWORD`, ...);
//! - names starting with any of [`DENY_PREFIXES`] (`AWS_`, `ACTIONS_`, `CI_JOB_JWT`);
//! - the names in [`DENY_EXACT`].
//!
//! It errs on the side of removing: a test that needs, say, `MY_TOKEN_COUNT` gets it back
//! with an allow entry (`--allow-env MY_TOKEN_COUNT`).

use std::ffi::OsStr;

/// A name containing one of these (ignoring case) is removed.
pub const DENY_SUBSTRINGS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "PRIVATE",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "JWT",
];

/// A name starting with one of these (ignoring case) is removed.
pub const DENY_PREFIXES: &[&str] = &["AWS_", "ACTIONS_", "CI_JOB_JWT"];

/// These names are removed. Most are caught by the rules above too; they are listed so
/// the intent survives edits to those rules.
pub const DENY_EXACT: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "CI_JOB_TOKEN",
    "CI_JOB_JWT",
    "CI_JOB_JWT_V1",
    "CI_JOB_JWT_V2",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPLOY_PASSWORD",
    "CI_BUILD_TOKEN",
    "CI_REPOSITORY_URL", // GitLab puts the job token in this URL.
    "CARGO_REGISTRY_TOKEN",
    "NPM_TOKEN",
    "NODE_AUTH_TOKEN",
    // The header our own HTTP transport sends, typically "Authorization: Bearer ...".
    "CHAOS_UPLOAD_HEADER",
];

/// Whether the default deny-list removes a variable of this name.
pub fn is_denied(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    DENY_SUBSTRINGS.iter().any(|s| upper.contains(s))
        || DENY_PREFIXES.iter().any(|p| upper.starts_with(p))
        || DENY_EXACT.iter().any(|e| upper == *e)
}

/// Whether `name` is removed, taking an allow-list of exact names into account.
pub fn is_removed(name: &str, allow: &[String]) -> bool {
    is_denied(name) && !allow.iter().any(|a| a == name)
}

/// Splits an environment into the variables to keep and the names removed.
///
/// Works on `String`s and `OsString`s alike (anything whose key is `AsRef<OsStr>`).
/// A name in `allow` is kept even when the deny-list matches it. Order is preserved;
/// the removed names come back sorted and without duplicates, ready for `removed_env`.
///
/// ```
/// let env = vec![
///     ("PATH".to_string(), "/usr/bin".to_string()),
///     ("GITHUB_TOKEN".to_string(), "ghp_example".to_string()),
/// ];
/// let (kept, removed) = packer::secrets::filter_env(env, &[]);
/// assert_eq!(kept, vec![("PATH".to_string(), "/usr/bin".to_string())]);
/// assert_eq!(removed, vec!["GITHUB_TOKEN".to_string()]);
/// ```
pub fn filter_env<I, K, V>(vars: I, allow: &[String]) -> (Vec<(K, V)>, Vec<String>)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
{
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in vars {
        let name = k.as_ref().to_string_lossy();
        if is_removed(&name, allow) {
            removed.push(name.into_owned());
        } else {
            kept.push((k, v));
        }
    }
    removed.sort();
    removed.dedup();
    (kept, removed)
}

/// Whether a variable's *value* is a credential worth scanning an archive for.
///
/// Narrower than [`is_denied`]: `AWS_REGION` is removed from recordings, but its value
/// ("us-east-1") legitimately occurs in binaries and must not fail a pack.
fn holds_secret_value(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const WORDS: &[&str] = &[
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "PRIVATE",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
        "JWT",
    ];
    WORDS.iter().any(|w| upper.contains(w)) || upper == "CHAOS_UPLOAD_HEADER"
}

/// Shortest value scanned for: shorter values match by coincidence.
const MIN_SECRET_LEN: usize = 12;

/// The secret values to scan an archive for, taken from an environment.
///
/// Returns `(name, value)` pairs for variables whose names look like they hold
/// credentials and whose values are long enough to be worth searching.
pub fn secret_needles<I>(vars: I) -> Vec<(String, Vec<u8>)>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut out: Vec<(String, Vec<u8>)> = vars
        .into_iter()
        .filter(|(k, v)| holds_secret_value(k) && v.trim().len() >= MIN_SECRET_LEN)
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Streams bytes through a set of needles, remembering the first match.
///
/// Keeps the last `longest - 1` bytes of each chunk so matches that straddle chunk
/// boundaries are found.
pub(crate) struct SecretScanner<'a> {
    needles: &'a [(String, Vec<u8>)],
    carry: Vec<u8>,
    keep: usize,
}

impl<'a> SecretScanner<'a> {
    pub(crate) fn new(needles: &'a [(String, Vec<u8>)]) -> Self {
        let keep = needles
            .iter()
            .map(|(_, n)| n.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        SecretScanner {
            needles,
            carry: Vec::new(),
            keep,
        }
    }

    /// Feeds a chunk; returns the name of the first variable whose value is found.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Option<&'a str> {
        if self.needles.is_empty() {
            return None;
        }
        // Search carry+chunk without copying the whole chunk: the boundary region first,
        // then the chunk itself.
        if !self.carry.is_empty() {
            let head = &chunk[..chunk.len().min(self.keep)];
            let mut joined = Vec::with_capacity(self.carry.len() + head.len());
            joined.extend_from_slice(&self.carry);
            joined.extend_from_slice(head);
            if let Some(name) = self.find(&joined) {
                return Some(name);
            }
        }
        if let Some(name) = self.find(chunk) {
            return Some(name);
        }
        if chunk.len() >= self.keep {
            self.carry.clear();
            self.carry
                .extend_from_slice(&chunk[chunk.len() - self.keep..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let excess = self.carry.len().saturating_sub(self.keep);
            self.carry.drain(..excess);
        }
        None
    }

    fn find(&self, hay: &[u8]) -> Option<&'a str> {
        self.needles
            .iter()
            .find(|(_, n)| memchr::memmem::find(hay, n).is_some())
            .map(|(k, _)| k.as_str())
    }

    /// Forgets the carried bytes (a new file starts).
    pub(crate) fn reset(&mut self) {
        self.carry.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list() {
        for name in [
            "GITHUB_TOKEN",
            "github_token",
            "MY_SECRET_THING",
            "DB_PASSWORD",
            "AWS_REGION",
            "AWS_SECRET_ACCESS_KEY",
            "ACTIONS_RUNTIME_TOKEN",
            "ACTIONS_CACHE_URL",
            "CI_JOB_TOKEN",
            "CI_JOB_JWT_V2",
            "STRIPE_API_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "SSH_PRIVATE_KEY",
            "CHAOS_UPLOAD_HEADER",
            "CI_REPOSITORY_URL",
        ] {
            assert!(is_denied(name), "{name} should be denied");
        }
        for name in [
            "PATH",
            "HOME",
            "RUST_BACKTRACE",
            "GITHUB_SHA",
            "CI_COMMIT_SHA",
            "CI",
        ] {
            assert!(!is_denied(name), "{name} should be kept");
        }
    }

    #[test]
    fn allow_list_and_os_strings() {
        use std::ffi::OsString;
        let env = vec![
            (OsString::from("A_TOKEN_COUNT"), OsString::from("3")),
            (OsString::from("GH_TOKEN"), OsString::from("x")),
            (OsString::from("LANG"), OsString::from("C")),
        ];
        let (kept, removed) = filter_env(env, &["A_TOKEN_COUNT".to_string()]);
        assert_eq!(kept.len(), 2);
        assert_eq!(removed, vec!["GH_TOKEN"]);
    }

    #[test]
    fn scanner_finds_values_across_chunks() {
        let needles = secret_needles(vec![
            ("GITHUB_TOKEN".into(), "ghp_abcdefghijklmnop".into()),
            ("AWS_REGION".into(), "us-east-1-long-enough".into()),
        ]);
        assert_eq!(needles.len(), 1);
        let mut s = SecretScanner::new(&needles);
        assert_eq!(s.feed(b"xxxxghp_abcdefg"), None);
        assert_eq!(s.feed(b"hij"), None);
        assert_eq!(s.feed(b"klmnop tail"), Some("GITHUB_TOKEN"));
        s.reset();
        assert_eq!(s.feed(b"us-east-1-long-enough"), None);
    }
}
