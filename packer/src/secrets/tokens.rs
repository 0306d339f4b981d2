//! Well-known credential shapes in arbitrary bytes.
//!
//! The environment filter ([`super::filter_env`]) only sees variables. A test can also read
//! a credential from a file (a token that `actions/checkout` leaves in `.git/config`, a
//! cloud key in a config file) or map a file holding one, and then it is in the recording:
//! in a captured file or in the data a system call returned. These shapes are specific
//! enough to find in binaries without drowning in false matches:
//!
//! | kind | shape |
//! |---|---|
//! | GitHub tokens | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more letters and digits; `github_pat_` + 40 or more |
//! | AWS access key IDs | `AKIA` or `ASIA` + 16 upper-case letters and digits (AWS's documented example key, ending in `EXAMPLE`, is ignored) |
//! | GitLab tokens | `glpat-` + 20 or more |
//! | Slack tokens | `xoxb-`, `xoxp-`, `xoxa-`, `xoxo-`, `xoxs-`, `xoxr-` + digits, `-`, 10 or more |
//! | HTTP credentials | `Authorization: Basic` or `Bearer` + 20 or more base64 characters (what `actions/checkout` writes as `extraheader` into `.git/config` unless `persist-credentials: false`) |
//!
//! Private keys (`-----BEGIN ... PRIVATE KEY-----`) are not searched for: test binaries of
//! TLS code embed test keys, and every capture of them would be held back.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

/// A kind of credential found in bytes. The description names the kind, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TokenKind {
    /// `ghp_…`: a GitHub personal access token (classic).
    GithubPersonal,
    /// `gho_…`: a GitHub OAuth token.
    GithubOauth,
    /// `ghu_…`: a GitHub App user-to-server token.
    GithubUser,
    /// `ghs_…`: a GitHub App installation token (what `GITHUB_TOKEN` is in Actions).
    GithubServer,
    /// `ghr_…`: a GitHub refresh token.
    GithubRefresh,
    /// `github_pat_…`: a fine-grained GitHub personal access token.
    GithubFineGrained,
    /// `AKIA…`/`ASIA…`: an AWS access key ID.
    AwsAccessKey,
    /// `glpat-…`: a GitLab personal access token.
    GitlabPersonal,
    /// `xoxb-…` and friends: a Slack token.
    Slack,
    /// `Authorization: Basic …` or `Bearer …` with a value.
    HttpAuthorization,
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenKind::GithubPersonal => "a GitHub personal access token (ghp_)",
            TokenKind::GithubOauth => "a GitHub OAuth token (gho_)",
            TokenKind::GithubUser => "a GitHub user-to-server token (ghu_)",
            TokenKind::GithubServer => "a GitHub installation token (ghs_, as GITHUB_TOKEN)",
            TokenKind::GithubRefresh => "a GitHub refresh token (ghr_)",
            TokenKind::GithubFineGrained => "a fine-grained GitHub token (github_pat_)",
            TokenKind::AwsAccessKey => "an AWS access key ID (AKIA/ASIA)",
            TokenKind::GitlabPersonal => "a GitLab personal access token (glpat-)",
            TokenKind::Slack => "a Slack token (xox?-)",
            TokenKind::HttpAuthorization => "an HTTP Authorization header with credentials",
        })
    }
}

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Exact-case alternatives rather than (?i): they keep the literal prefilter fast
        // on the megabytes of binaries scanned.
        Regex::new(
            r"(?x-u)
            \bgh[pousr]_[A-Za-z0-9]{36,251}
            | \bgithub_pat_[A-Za-z0-9_]{40,244}
            | \b(?:AKIA|ASIA)[A-Z0-9]{16}\b
            | \bglpat-[A-Za-z0-9_\-]{20,64}
            | \bxox[abposr]-[0-9]+-[A-Za-z0-9\-]{10,250}
            | (?:AUTHORIZATION|Authorization|authorization):[\ \t]*
              (?:BASIC|Basic|basic|BEARER|Bearer|bearer)[\ \t]+[A-Za-z0-9+/=._\-]{20,}
            ",
        )
        .expect("the token pattern is valid")
    })
}

/// The longest match worth carrying from one piece of a stream to the next.
const CARRY: usize = 512;

fn classify(m: &[u8]) -> Option<TokenKind> {
    let kind = match m {
        [b'g', b'h', b'p', b'_', ..] => TokenKind::GithubPersonal,
        [b'g', b'h', b'o', b'_', ..] => TokenKind::GithubOauth,
        [b'g', b'h', b'u', b'_', ..] => TokenKind::GithubUser,
        [b'g', b'h', b's', b'_', ..] => TokenKind::GithubServer,
        [b'g', b'h', b'r', b'_', ..] => TokenKind::GithubRefresh,
        [b'g', b'i', ..] => TokenKind::GithubFineGrained,
        [b'A', ..] if m.ends_with(b"EXAMPLE") => return None,
        [b'A', b'K', ..] | [b'A', b'S', ..] => TokenKind::AwsAccessKey,
        [b'g', b'l', ..] => TokenKind::GitlabPersonal,
        [b'x', ..] => TokenKind::Slack,
        _ => TokenKind::HttpAuthorization,
    };
    Some(kind)
}

/// The kinds of credentials in `bytes`, sorted, each once.
///
/// ```
/// use packer::secrets::tokens::{find, TokenKind};
/// let config = b"[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX2Zha2U=\n";
/// assert_eq!(find(config), vec![TokenKind::HttpAuthorization]);
/// assert!(find(b"Authorization: Bearer {}").is_empty());
/// assert!(find(b"AKIAIOSFODNN7EXAMPLE").is_empty());
/// ```
pub fn find(bytes: &[u8]) -> Vec<TokenKind> {
    let mut s = TokenScanner::new();
    s.feed(bytes);
    s.finish()
}

/// Finds credentials in a stream of bytes fed in pieces; a credential split between two
/// pieces is found.
#[derive(Debug, Default)]
pub struct TokenScanner {
    carry: Vec<u8>,
    found: BTreeSet<TokenKind>,
}

impl TokenScanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn scan(&mut self, hay: &[u8]) {
        for m in pattern().find_iter(hay) {
            if let Some(kind) = classify(m.as_bytes()) {
                self.found.insert(kind);
            }
        }
    }

    /// Feeds the next piece of the stream.
    pub fn feed(&mut self, piece: &[u8]) {
        if !self.carry.is_empty() {
            // The seam: the end of the previous piece and the start of this one.
            let mut seam = std::mem::take(&mut self.carry);
            seam.extend_from_slice(&piece[..piece.len().min(CARRY)]);
            self.scan(&seam);
            self.carry = seam;
        }
        self.scan(piece);
        if piece.len() >= CARRY {
            self.carry.clear();
            self.carry.extend_from_slice(&piece[piece.len() - CARRY..]);
        } else {
            // `carry` already ends with `piece` when it held a seam.
            if self.carry.is_empty() {
                self.carry.extend_from_slice(piece);
            }
            let excess = self.carry.len().saturating_sub(CARRY);
            self.carry.drain(..excess);
        }
    }

    /// Starts a new stream (another file), keeping what was found.
    pub fn reset(&mut self) {
        self.carry.clear();
    }

    /// Whether anything was found so far.
    pub fn found_any(&self) -> bool {
        !self.found.is_empty()
    }

    /// The kinds found, sorted, each once.
    pub fn finish(self) -> Vec<TokenKind> {
        self.found.into_iter().collect()
    }

    /// The kinds found so far, and forgets them (and the carried bytes).
    pub fn take(&mut self) -> Vec<TokenKind> {
        self.carry.clear();
        std::mem::take(&mut self.found).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHP: &str = "ghp_Zq8Xw2Lr5Tn0Vb7Mk3Jh6Gf1Dc4Sa9Pe2Ry5";

    #[test]
    fn shapes() {
        let cases: &[(&str, TokenKind)] = &[
            (GHP, TokenKind::GithubPersonal),
            (
                "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
                TokenKind::GithubServer,
            ),
            (
                "github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
                TokenKind::GithubFineGrained,
            ),
            ("key=AKIAZ7Q2L4M6N8P0R2T4;", TokenKind::AwsAccessKey),
            ("ASIAZ7Q2L4M6N8P0R2T4", TokenKind::AwsAccessKey),
            ("glpat-Ab3dE6gH9jK2mN5pQ8sT", TokenKind::GitlabPersonal),
            (
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
                TokenKind::Slack,
            ),
            (
                "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
                TokenKind::HttpAuthorization,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(find(text.as_bytes()), vec![*kind], "{text}");
        }
        for text in [
            "ghp_short",
            "xghp_Zq8Xw2Lr5Tn0Vb7Mk3Jh6Gf1Dc4Sa9Pe2Ry5",
            "AKIAZ7Q2L4M6N8P0R2T4X",
            "AKIAIOSFODNN7EXAMPLE",
            "Authorization: Basic {}",
            "authorization: bearer <token>",
            "github_pat_",
        ] {
            assert!(find(text.as_bytes()).is_empty(), "{text}");
        }
    }

    #[test]
    fn a_token_split_between_pieces_is_found() {
        for split in 1..GHP.len() {
            let mut s = TokenScanner::new();
            s.feed(&vec![b'.'; 1000]);
            s.feed(&GHP.as_bytes()[..split]);
            s.feed(&GHP.as_bytes()[split..]);
            s.feed(b" and more");
            assert_eq!(
                s.finish(),
                vec![TokenKind::GithubPersonal],
                "split at {split}"
            );
        }
        let mut s = TokenScanner::new();
        for b in GHP.bytes() {
            s.feed(&[b]);
        }
        s.feed(b"\n");
        assert_eq!(s.finish(), vec![TokenKind::GithubPersonal]);
    }

    #[test]
    fn reset_forgets_the_seam_but_not_the_findings() {
        let mut s = TokenScanner::new();
        s.feed(&GHP.as_bytes()[..20]);
        s.reset();
        s.feed(&GHP.as_bytes()[20..]);
        assert!(!s.found_any());
        s.feed(GHP.as_bytes());
        s.reset();
        assert_eq!(s.finish(), vec![TokenKind::GithubPersonal]);
    }
}
