//! Moving archives to and from where CI keeps artifacts.
//!
//! # The trait
//!
//! A [`Transport`] is bound to one remote location (a URL or a path) and can
//! [`put`](Transport::put) a local file there or [`get`](Transport::get) it back. The
//! required surface is those two plus [`location`](Transport::location); the rest are
//! default methods that backends override when they know better (the largest single
//! upload a presigned URL accepts, the name of the file a GitHub artifact zip holds).
//! The associated `Error` lets a backend outside this crate keep its own error type;
//! the built-in ones all use [`TransportError`], and `Box<dyn Transport<Error = E>>` is a
//! `Transport` too, so callers hold "some backend" without generics.
//!
//! # Backends (one file each, under `impls/`)
//!
//! | location | backend |
//! |---|---|
//! | `/path`, `./path`, `file:///path` | [`impls::local::Local`] |
//! | `http(s)://…` | [`impls::http::Http`]: GET, and PUT with `Content-Length` (presigned URLs, WebDAV) |
//! | `s3://bucket/key` | [`impls::s3::S3`]: SigV4-signed, multipart above a threshold |
//! | `https://github.com/O/R/actions/runs/N/artifacts/ID`, `…/repos/O/R/actions/artifacts/ID[/zip]` | [`impls::github::GithubArtifact`]: download only |
//!
//! # The functions most callers want
//!
//! [`upload`] and [`download`] pick the backend, add the archive's file name to a location
//! ending in `/`, retry transient failures with exponential backoff, report progress
//! through a callback, and verify downloads against the hash in the archive's name.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::errors::TransportError;
use crate::hash::{archive_file_name, hash_file, hash_from_file_name, stem_of_file_name};
use crate::progress::{Phase, ProgressEvent};

pub(crate) mod http_util;
pub mod impls;

/// A place an archive can be put to and fetched from.
pub trait Transport {
    /// What can go wrong.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The location, fit for messages: never includes credentials or URL signatures.
    fn location(&self) -> String;

    /// Uploads the file at `src` to the location, replacing what is there.
    ///
    /// Postcondition on success: a later [`get`](Transport::get) returns the same bytes.
    fn put(
        &mut self,
        src: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), Self::Error>;

    /// Downloads the location's content into the file at `dest` (created or truncated).
    fn get(
        &mut self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, Self::Error>;

    /// The remote file's name, when the location names one (used to verify the hash).
    fn remote_name(&self) -> Option<String> {
        remote_file_name(&self.location())
    }

    /// The largest file one `put` accepts, when limited.
    fn max_put_size(&self) -> Option<u64> {
        None
    }
}

impl<E> Transport for Box<dyn Transport<Error = E>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    type Error = E;

    fn location(&self) -> String {
        (**self).location()
    }
    fn put(&mut self, src: &Path, progress: &mut dyn FnMut(&ProgressEvent)) -> Result<(), E> {
        (**self).put(src, progress)
    }
    fn get(&mut self, dest: &Path, progress: &mut dyn FnMut(&ProgressEvent)) -> Result<Fetched, E> {
        (**self).get(dest, progress)
    }
    fn remote_name(&self) -> Option<String> {
        (**self).remote_name()
    }
    fn max_put_size(&self) -> Option<u64> {
        (**self).max_put_size()
    }
}

/// What a download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The archive's file name, when the backend learned it (a GitHub artifact zip's
    /// member); otherwise the caller uses [`Transport::remote_name`].
    pub name: Option<String>,
    /// Bytes written.
    pub size: u64,
}

/// S3 settings, normally from the usual `AWS_*` variables.
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Settings {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), `us-east-1` by default.
    pub region: String,
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`): an S3-compatible store, addressed
    /// path-style (`http://host:port/bucket/key`).
    pub endpoint: Option<String>,
    /// Archives larger than this are sent as a multipart upload.
    pub multipart_threshold: u64,
    /// Size of each part (S3 wants at least 5 MiB for all parts but the last).
    pub part_size: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            region: "us-east-1".to_string(),
            endpoint: None,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// How transports behave. [`TransportOptions::from_env`] reads the usual variables;
/// tests build one by hand.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed without progress: waiting for an answer, or between two reads.
    pub timeout: Duration,
    /// Slowest acceptable upload speed, in bytes per second: an upload of `n` bytes may
    /// take `timeout + n / min_throughput` before it is abandoned.
    pub min_throughput: u64,
    /// Attempts per request, the first included, for transient failures (5xx, 429,
    /// timeouts, dropped connections).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one (capped at 30 s).
    pub backoff: Duration,
    /// An extra HTTP header for http(s) locations, from `CHAOS_UPLOAD_HEADER`
    /// (`Name: value`), e.g. `Authorization: Bearer …`.
    pub extra_header: Option<(String, String)>,
    /// S3 settings.
    pub s3: S3Settings,
    /// Token for GitHub artifact downloads (`GITHUB_TOKEN`, else `GH_TOKEN`).
    pub github_token: Option<String>,
    /// GitHub's API root (`GITHUB_API_URL`, else `https://api.github.com`).
    pub github_api_url: String,
    /// Largest archive a download may produce (the zip of a GitHub artifact included).
    pub max_download_bytes: u64,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: Duration::from_secs(15),
            timeout: Duration::from_secs(60),
            min_throughput: 64 << 10,
            max_attempts: 4,
            backoff: Duration::from_millis(500),
            extra_header: None,
            s3: S3Settings::default(),
            github_token: None,
            github_api_url: "https://api.github.com".to_string(),
            max_download_bytes: 64 << 30,
        }
    }
}

impl fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("min_throughput", &self.min_throughput)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field(
                "extra_header",
                &self.extra_header.as_ref().map(|(k, _)| (k, "<redacted>")),
            )
            .field("s3", &self.s3)
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "<redacted>"),
            )
            .field("github_api_url", &self.github_api_url)
            .field("max_download_bytes", &self.max_download_bytes)
            .finish()
    }
}

impl TransportOptions {
    /// Defaults, plus the process environment: `CHAOS_UPLOAD_HEADER`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, `GITHUB_TOKEN`/`GH_TOKEN`, `GITHUB_API_URL`.
    pub fn from_env() -> Result<TransportOptions, TransportError> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`from_env`](Self::from_env), with variables looked up through `var`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<TransportOptions, TransportError> {
        let mut o = TransportOptions::default();
        if let Some(h) = var("CHAOS_UPLOAD_HEADER") {
            let (name, value) = h.split_once(':').ok_or(TransportError::BadSetting {
                var: "CHAOS_UPLOAD_HEADER",
                reason: "expected `Name: value`",
            })?;
            let name = name.trim();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(TransportError::BadSetting {
                    var: "CHAOS_UPLOAD_HEADER",
                    reason: "the header name must be letters, digits and dashes",
                });
            }
            o.extra_header = Some((name.to_string(), value.trim().to_string()));
        }
        o.s3.access_key_id = var("AWS_ACCESS_KEY_ID");
        o.s3.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
        o.s3.session_token = var("AWS_SESSION_TOKEN");
        if let Some(r) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            o.s3.region = r;
        }
        o.s3.endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        o.github_token = var("GITHUB_TOKEN").or_else(|| var("GH_TOKEN"));
        if let Some(api) = var("GITHUB_API_URL") {
            o.github_api_url = api;
        }
        Ok(o)
    }
}

/// The last path segment of a location (without query), if it looks like a file name.
pub fn remote_file_name(location: &str) -> Option<String> {
    let no_query = location.split(['?', '#']).next().unwrap_or(location);
    let last = no_query.rsplit('/').next()?;
    (!last.is_empty() && last != "." && last != "..").then(|| last.to_string())
}

/// Removes the query and any user:password from a URL, for messages: presigned URLs
/// carry their signature in the query.
pub fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let had_query = u.query().is_some();
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        _ => location.to_string(),
    }
}

/// The backend for a location.
pub fn open(
    location: &str,
    opts: &TransportOptions,
) -> Result<Box<dyn Transport<Error = TransportError>>, TransportError> {
    let scheme = location
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        None | Some("file") => Ok(Box::new(impls::local::Local::new(location)?)),
        Some("http") | Some("https") => {
            if let Some(gh) = impls::github::GithubArtifact::recognize(location, opts)? {
                Ok(Box::new(gh))
            } else {
                Ok(Box::new(impls::http::Http::new(location, opts)?))
            }
        }
        Some("s3") => Ok(Box::new(impls::s3::S3::new(location, opts)?)),
        Some(_) => Err(TransportError::UnsupportedUrl {
            url: redact(location),
        }),
    }
}

/// Where an upload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The full location (with the file name appended when the target ended in `/`),
    /// as given, query included: this is what a later download needs.
    pub location: String,
    /// The same, fit for messages (no query, no credentials).
    pub display: String,
    /// Bytes sent.
    pub size: u64,
}

/// Joins a location ending in `/` (or naming an existing local directory) with a file name.
pub fn target_location(location: &str, file_name: &str) -> String {
    let is_local = !location.contains("://");
    if location.ends_with('/') || (is_local && Path::new(location).is_dir()) {
        format!("{}/{file_name}", location.trim_end_matches('/'))
    } else {
        location.to_string()
    }
}

/// Uploads an archive. A location ending in `/` is a directory or prefix: the archive's
/// file name is appended.
pub fn upload(
    archive: &Path,
    location: &str,
    opts: &TransportOptions,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<Uploaded, TransportError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = fs::metadata(archive)
        .map_err(|source| TransportError::Io {
            op: "read",
            path: archive.to_path_buf(),
            source,
        })?
        .len();
    let target = target_location(location, &name);
    let mut t = open(&target, opts)?;
    if let Some(max) = t.max_put_size() {
        if size > max {
            return Err(TransportError::PresignedTooLarge {
                url: t.location(),
                size,
            });
        }
    }
    t.put(archive, progress)?;
    Ok(Uploaded {
        display: t.location(),
        location: target,
        size,
    })
}

/// A downloaded archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Where it was saved: `DIR/NAME-<hash>.chaos.tar.zst`.
    pub path: PathBuf,
    /// Its BLAKE3, 64 hex digits.
    pub hash: String,
    /// Whether the remote name carried a hash that the content matched. `false` when the
    /// name carried none (the members are still verified against the manifest on unpack).
    pub verified_by_name: bool,
}

/// Downloads an archive into `dir` and verifies it against the hash in its name.
///
/// The file is written under a temporary name and renamed when verified, so `dir` never
/// holds a partial or unverified archive under an archive's name.
pub fn download(
    location: &str,
    dir: &Path,
    opts: &TransportOptions,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<Downloaded, TransportError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TransportError::Io { op, path, source }
    };
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let mut t = open(location, opts)?;
    let tmp = crate::partial::Partial::create(dir, "chaos-download-")
        .map_err(io("create a temporary file in", dir))?;
    let fetched = t.get(tmp.path(), progress)?;
    let name = fetched
        .name
        .or_else(|| t.remote_name())
        .map(|n| sanitize_file_name(&n))
        .unwrap_or_else(|| "download.chaos.tar.zst".to_string());
    let hash = hash_file(tmp.path()).map_err(io("read", tmp.path()))?;
    let (final_name, verified_by_name) = match hash_from_file_name(&name) {
        Some(expected) => {
            if !hash.starts_with(expected) {
                return Err(TransportError::HashMismatch {
                    url: t.location(),
                    expected: expected.to_string(),
                    actual: hash,
                });
            }
            (name.clone(), true)
        }
        None => (archive_file_name(stem_of_file_name(&name), &hash), false),
    };
    let path = dir.join(final_name);
    tmp.persist(&path).map_err(io("rename into", &path))?;
    Ok(Downloaded {
        path,
        hash,
        verified_by_name,
    })
}

/// Keeps a remote-supplied name from being a path: its last component, without a
/// leading dot, restricted to ordinary characters.
fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "download.chaos.tar.zst".to_string()
    } else {
        cleaned
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `opts.max_attempts` is
/// reached, sleeping with exponential backoff between tries.
pub(crate) fn with_retries<T>(
    opts: &TransportOptions,
    phase: Phase,
    url: &str,
    progress: &mut dyn FnMut(&ProgressEvent),
    mut attempt: impl FnMut(&mut dyn FnMut(&ProgressEvent)) -> Result<T, TransportError>,
) -> Result<T, TransportError> {
    let max = opts.max_attempts.max(1);
    let mut n = 1;
    loop {
        match attempt(progress) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && n < max => {
                let factor = 1u32 << (n - 1).min(16);
                let base = opts
                    .backoff
                    .saturating_mul(factor)
                    .min(Duration::from_secs(30));
                // A little jitter, so parallel CI jobs do not retry in lockstep.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let delay = base + base.mul_f64(f64::from(nanos % 250) / 1000.0);
                progress(&ProgressEvent::Retrying {
                    phase,
                    attempt: n,
                    delay,
                    reason: crate::errors::error_chain(&e),
                });
                std::thread::sleep(delay);
                n += 1;
            }
            Err(e) if e.is_transient() && n > 1 => {
                return Err(TransportError::GaveUp {
                    url: redact(url),
                    attempts: n,
                    last: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            remote_file_name("https://h/b/x-0123.chaos.tar.zst?X-Amz-Signature=s"),
            Some("x-0123.chaos.tar.zst".into())
        );
        assert_eq!(remote_file_name("s3://b/"), None);
        assert_eq!(
            redact("https://u:p@h/a.tar?X-Amz-Signature=secret"),
            "https://h/a.tar?…"
        );
        assert_eq!(target_location("s3://b/p/", "a.zst"), "s3://b/p/a.zst");
        assert_eq!(target_location("s3://b/p/k", "a.zst"), "s3://b/p/k");
        assert_eq!(sanitize_file_name("../../etc/x"), "x");
        assert_eq!(sanitize_file_name(".hidden"), "hidden");
    }

    #[test]
    fn options_from_vars() {
        let vars = |k: &str| match k {
            "CHAOS_UPLOAD_HEADER" => Some("Authorization: Bearer abc".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            "GH_TOKEN" => Some("t".to_string()),
            _ => None,
        };
        let o = TransportOptions::from_vars(vars).unwrap();
        assert_eq!(
            o.extra_header,
            Some(("Authorization".to_string(), "Bearer abc".to_string()))
        );
        assert_eq!(o.s3.region, "eu-west-1");
        assert_eq!(o.github_token.as_deref(), Some("t"));
        assert!(!format!("{o:?}").contains("Bearer abc"));
        let bad = TransportOptions::from_vars(|k| {
            (k == "CHAOS_UPLOAD_HEADER").then(|| "no colon".to_string())
        });
        assert!(bad.is_err());
    }
}
