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
//! Whatever its name, a variable whose *value* holds a password inside a URL
//! (`DATABASE_URL=postgres://user:password@host/db`, see [`has_url_password`]) is removed
//! too. Removed, not redacted: a password replaced by a placeholder would still give the
//! test a well-formed URL, and the test would then fail against the real server with an
//! authentication error that a hunt captures as if it were the flake; a missing variable
//! is the same situation as for a secret-looking name, reported by the test itself, and
//! the whole value is gone, however its URLs are written.
//!
//! It errs on the side of removing: a test that needs, say, `MY_TOKEN_COUNT` gets it back
//! with an allow entry (`--keep-env MY_TOKEN_COUNT` when recording).
//!
//! A third layer looks at what the program read: [`tokens`] finds well-known credential
//! shapes (GitHub, AWS, GitLab, Slack tokens, an HTTP `Authorization` header as
//! `actions/checkout` leaves in `.git/config`) in everything an archive holds, including
//! the data the program read; packing lists them in the manifest
//! ([`Manifest::tokens`](crate::Manifest::tokens)) so that the caller keeps such an
//! archive local. A variable whose value has such a shape is removed before the program
//! starts, like a password inside a URL.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

mod events;
pub mod tokens;

pub(crate) use events::scan_events_file;

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
///
/// Looks at the name only; [`removal_reason`] also looks at the value.
pub fn is_removed(name: &str, allow: &[String]) -> bool {
    is_denied(name) && !allow.iter().any(|a| a == name)
}

/// Why a variable is kept out of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalReason {
    /// Its name is on the deny-list ([`is_denied`]).
    SecretName,
    /// Its value holds a password inside a URL ([`has_url_password`]).
    UrlPassword,
    /// Its value holds a credential of a well-known shape ([`tokens::find`]).
    TokenValue,
}

impl std::fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemovalReason::SecretName => "its name looks like a secret",
            RemovalReason::UrlPassword => "its value holds a password inside a URL",
            RemovalReason::TokenValue => "its value holds a credential of a well-known shape",
        })
    }
}

/// Why the variable `name=value` is removed from a recording, or `None` if it is kept.
/// A name in `allow` is always kept.
///
/// ```
/// use packer::secrets::{removal_reason, RemovalReason};
/// let url = "postgres://app:hunter2@db/app";
/// assert_eq!(removal_reason("DATABASE_URL", url, &[]), Some(RemovalReason::UrlPassword));
/// assert_eq!(removal_reason("DATABASE_URL", url, &["DATABASE_URL".into()]), None);
/// assert_eq!(removal_reason("DATABASE_URL", "postgres://app@db/app", &[]), None);
/// ```
pub fn removal_reason(
    name: &str,
    value: impl AsRef<OsStr>,
    allow: &[String],
) -> Option<RemovalReason> {
    if allow.iter().any(|a| a == name) {
        None
    } else if is_denied(name) {
        Some(RemovalReason::SecretName)
    } else if has_url_password(value.as_ref().as_bytes()) {
        Some(RemovalReason::UrlPassword)
    } else if !tokens::find(value.as_ref().as_bytes()).is_empty() {
        Some(RemovalReason::TokenValue)
    } else {
        None
    }
}

/// A URL with a non-empty password in its user information: `scheme://user:password@`,
/// anywhere in the text (a value may hold several URLs, or a URL inside options). The
/// user and password follow RFC 3986 (no unencoded `/`, `?`, `#` or `@`); a password
/// holding an unencoded `@` still matches, up to its first `@`.
fn url_password_pattern() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::bytes::Regex::new(r"(?i)[a-z][a-z0-9+.\-]*://[^\s/?#@:]*:[^\s/?#@]+@")
            .expect("the URL password pattern is valid")
    })
}

/// Whether `value` holds a URL with a password in it (`scheme://user:password@host`).
///
/// ```
/// use packer::secrets::has_url_password;
/// assert!(has_url_password(b"postgres://u:password@host/db"));
/// assert!(has_url_password(b"--index-url https://x:tok@example.com/simple"));
/// assert!(!has_url_password(b"https://example.com:8443/path"));
/// assert!(!has_url_password(b"ssh://git@example.com/repo"));
/// assert!(!has_url_password(b"https://user:@example.com/")); // an empty password
/// ```
pub fn has_url_password(value: &[u8]) -> bool {
    url_password_pattern().is_match(value)
}

/// Splits an environment into the variables to keep and the names removed (see
/// [`removal_reason`]: secret-looking names, and passwords inside URLs in any variable).
///
/// Works on `String`s and `OsString`s alike (anything that is `AsRef<OsStr>`).
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
    V: AsRef<OsStr>,
{
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for (k, v) in vars {
        let name = k.as_ref().to_string_lossy();
        if removal_reason(&name, &v, allow).is_some() {
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
/// credentials and whose values are long enough to be worth searching, except the names
/// in `allow` (let through on purpose, so their values are in the recording).
pub fn secret_needles<I>(vars: I, allow: &[String]) -> Vec<(String, Vec<u8>)>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut out: Vec<(String, Vec<u8>)> = vars
        .into_iter()
        .filter(|(k, v)| {
            holds_secret_value(k)
                && v.trim().len() >= MIN_SECRET_LEN
                && !allow.iter().any(|a| a == k)
        })
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
    fn passwords_inside_urls() {
        for value in [
            "postgres://u:password@host/db",
            "mysql://root:p@ss@127.0.0.1:3306/x",
            "HTTPS://user:tok%40en@example.com",
            "redis://:only-a-password@cache:6379",
            "amqp://guest:guest@rabbit",
            "a=1 b=https://x-access-token:abc123@github.com/o/r.git c=3",
        ] {
            assert!(has_url_password(value.as_bytes()), "{value}");
        }
        for value in [
            "postgres://u@host/db",
            "https://example.com:8443/a:b@c",
            "http://localhost:4873/@scope/pkg",
            "https://user:@example.com/",
            "user:pass@host",
            "mailto:someone@example.com",
            "/usr/bin:/bin",
        ] {
            assert!(!has_url_password(value.as_bytes()), "{value}");
        }
        let (kept, removed) = filter_env(
            vec![
                ("DATABASE_URL", "postgres://u:password@host/db"),
                ("HOMEPAGE", "https://example.com/"),
                ("PROXY", "http://user:pw@proxy:3128"),
            ],
            &["PROXY".to_string()],
        );
        assert_eq!(
            kept,
            vec![
                ("HOMEPAGE", "https://example.com/"),
                ("PROXY", "http://user:pw@proxy:3128")
            ]
        );
        assert_eq!(removed, vec!["DATABASE_URL"]);
    }

    #[test]
    fn token_shaped_values() {
        let pat = "ghp_Fake0Fake1Fake2Fake3Fake4Fake5Fake6Fa";
        assert_eq!(
            removal_reason("GH_PAT_FOR_TESTS", pat, &[]),
            Some(RemovalReason::TokenValue)
        );
        assert_eq!(
            removal_reason("GH_PAT_FOR_TESTS", pat, &["GH_PAT_FOR_TESTS".into()]),
            None
        );
        assert_eq!(removal_reason("GREETING", "ghp_ is a prefix", &[]), None);
    }

    #[test]
    fn scanner_finds_values_across_chunks() {
        let needles = secret_needles(
            vec![
                ("GITHUB_TOKEN".into(), "ghp_abcdefghijklmnop".into()),
                ("AWS_REGION".into(), "us-east-1-long-enough".into()),
                ("KEPT_TOKEN".into(), "kept-on-purpose-by-the-user".into()),
            ],
            &["KEPT_TOKEN".into()],
        );
        assert_eq!(needles.len(), 1);
        let mut s = SecretScanner::new(&needles);
        assert_eq!(s.feed(b"xxxxghp_abcdefg"), None);
        assert_eq!(s.feed(b"hij"), None);
        assert_eq!(s.feed(b"klmnop tail"), Some("GITHUB_TOKEN"));
        s.reset();
        assert_eq!(s.feed(b"us-east-1-long-enough"), None);
    }
}
