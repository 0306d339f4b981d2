//! Every error the packer returns.
//!
//! One enum per operation (packing, unpacking, the cache, transports). Messages name the
//! path or URL they are about and end with `(hint: ...)` when a fix is known, so the CLI can
//! print them with `{:#}` and nothing else. All enums are `#[non_exhaustive]`: new failure
//! modes are added without a breaking change.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Why [`pack`](crate::pack()) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PackError {
    /// The directory is not a recording.
    #[error(
        "{path} is not a recording: it has no `version` file \
         (hint: pass the directory that `cargo chaos record` wrote, not a subdirectory of it)"
    )]
    NotATrace {
        /// The directory given.
        path: PathBuf,
    },
    /// The recording's `version` file names a format this packer does not know.
    #[error(
        "{path}: unknown trace format {found:?} (expected one of {expected:?}) \
         (hint: pack it with the cargo-chaos that recorded it)",
        expected = recorder::trace::READABLE_VERSION_LINES
    )]
    UnsupportedTrace {
        /// The `version` file.
        path: PathBuf,
        /// Its first line.
        found: String,
    },
    /// A file system operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done ("read", "create", ...).
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `header.json` or `result.json` is not JSON.
    #[error("{path} is not valid JSON (hint: the recording may be damaged; record it again)")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A captured file's content no longer matches the hash it is named by.
    #[error(
        "{path}: content hash is {actual}, but the file is named by {expected} \
         (hint: the file changed after it was captured, e.g. rebuilt in place; record again)"
    )]
    CapturedFileChanged {
        /// The captured file.
        path: PathBuf,
        /// The hash in its name.
        expected: String,
        /// The hash of its content.
        actual: String,
    },
    /// A file changed between the hashing pass and the writing pass.
    #[error("{path} changed while it was being packed (hint: wait for the recording to finish and pack again)")]
    ChangedWhilePacking {
        /// The file.
        path: PathBuf,
    },
    /// The recording holds something other than regular files and directories.
    #[error(
        "{path} is a {kind}; a recording holds only regular files and directories \
         (hint: remove it, or record again)"
    )]
    UnsupportedEntry {
        /// The entry.
        path: PathBuf,
        /// What it is ("symbolic link", "fifo", ...).
        kind: &'static str,
    },
    /// The recorded environment holds a variable that looks like a secret (by its name,
    /// or a password inside a URL in its value).
    #[error(
        "{path}: the recorded environment holds {name}, which looks like a secret \
         ({reason}); refusing to put it in an archive \
         (hint: record again (the recorder removes such variables before the program \
         starts), or let it through with --keep-env {name} if it is not a secret)"
    )]
    SecretInEnvironment {
        /// The header that lists it.
        path: PathBuf,
        /// The variable's name (never its value).
        name: String,
        /// Why it looks like a secret.
        reason: crate::secrets::RemovalReason,
    },
    /// The value of a secret variable of the packing process occurs in the archive's content.
    #[error(
        "the value of ${name} occurs in {member}; refusing to write an archive that leaks it \
         (hint: record without that variable in the environment, or unset it before packing \
         if the match is a coincidence)"
    )]
    SecretValueFound {
        /// The secret variable's name (never its value).
        name: String,
        /// Where its value was found: a member path or "the manifest".
        member: String,
    },
    /// No recording was given.
    #[error("nothing to pack (hint: pass at least one recording directory)")]
    NoRecordings,
    /// zstd refused a parameter.
    #[error("zstd: cannot set {what}")]
    Compressor {
        /// The parameter.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why [`unpack`](crate::unpack()) refused an archive.
///
/// Every variant but [`UnpackError::Io`] on the destination means the archive itself is
/// bad; nothing is left in the destination in any case.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// A file system operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The compressed stream or the tar structure is damaged (often: truncated).
    #[error("{archive} is damaged: {reason} (hint: download or copy it again)")]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The archive's content hash differs from the one in its file name.
    #[error(
        "{archive}: content hash is {actual}, but its name says {expected} \
         (hint: the file is truncated or was modified; download or copy it again)"
    )]
    ArchiveHashMismatch {
        /// The archive.
        archive: PathBuf,
        /// The hash (prefix) from the name.
        expected: String,
        /// The hash of the content.
        actual: String,
    },
    /// The first member is not the manifest.
    #[error("{archive} is not a cargo-chaos archive: its first member is {first:?}, not chaos-manifest.json")]
    NotAnArchive {
        /// The archive.
        archive: PathBuf,
        /// What came first.
        first: String,
    },
    /// The manifest does not parse.
    #[error("{archive}: the manifest is not valid: {source}")]
    BadManifest {
        /// The archive.
        archive: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest names a format version newer than this build knows.
    #[error(
        "{archive} uses archive format {found}, newer than this cargo-chaos reads (up to {supported}) \
         (hint: install a newer cargo-chaos)"
    )]
    NewerFormat {
        /// The archive.
        archive: PathBuf,
        /// The archive's format version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A member would be written outside the destination, or is not a regular file.
    #[error("{archive}: refusing member {member:?}: {reason}")]
    UnsafeMember {
        /// The archive.
        archive: PathBuf,
        /// The member's path as stored.
        member: String,
        /// Why it is refused.
        reason: String,
    },
    /// A member's content does not match its manifest entry or its content-addressed name.
    #[error(
        "{archive}: member {member} has hash {actual}, expected {expected} \
         (hint: the archive was modified; get a fresh copy)"
    )]
    MemberHashMismatch {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// What the manifest (or the name) says.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A member listed in the manifest is missing (usually: truncated archive).
    #[error("{archive}: member {member} listed in the manifest is missing (hint: the archive is probably truncated; get a fresh copy)")]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The missing member.
        member: String,
    },
    /// A size limit was exceeded (decompression bomb protection).
    #[error(
        "{archive}: {} at member {member:?} (hint: {})",
        describe_limit(what, *size, *limit),
        limit_hint(what, *size, *limit)
    )]
    LimitExceeded {
        /// The archive.
        archive: PathBuf,
        /// The member being read.
        member: String,
        /// Which limit.
        what: &'static str,
        /// The size found or announced, when known.
        size: Option<u64>,
        /// The limit.
        limit: u64,
    },
    /// The destination exists and is not empty.
    #[error("{path} exists and is not empty (hint: pass a new or empty directory)")]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
}

/// "WHAT (SIZE) exceeds the limit of LIMIT", sizes in bytes shown as `1.0 GiB`; the
/// number of members as a plain number.
fn describe_limit(what: &str, size: Option<u64>, limit: u64) -> String {
    let show = |n: u64| {
        if what.contains("number") {
            n.to_string()
        } else {
            bytesize::ByteSize(n).to_string()
        }
    };
    match size {
        Some(s) => format!("{what} ({}) exceeds the limit of {}", show(s), show(limit)),
        None => format!("{what} exceeds the limit of {}", show(limit)),
    }
}

/// How to get past a limit: `--max-unpacked-size` with a value that admits `size` (or
/// twice `limit` when the size is unknown), in whole GiB. The manifest's size and the
/// number of members are far past anything a capture holds: no flag raises them.
fn limit_hint(what: &str, size: Option<u64>, limit: u64) -> String {
    if what.contains("number") || what.contains("manifest") {
        return "no real capture comes near this limit: the archive is not one cargo-chaos \
                wrote, or it was tampered with"
            .to_string();
    }
    let want = size
        .unwrap_or(limit.saturating_mul(2))
        .max(limit.saturating_add(1));
    let gib = want.div_ceil(1 << 30).max(1);
    format!(
        "if the archive is trusted, raise the limit with --max-unpacked-size SIZE, \
         e.g. --max-unpacked-size {gib}GiB; UnpackLimits in the library"
    )
}

/// A duration in seconds for messages: `31.2 s`.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// An error's message followed by those of its causes, `: `-separated (a cause whose
/// message is already in the text is left out).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

/// The last failure of a [`TransportError::GaveUp`], causes included, without the URL
/// that the outer message already names.
fn last_failure(url: &str, last: &TransportError) -> String {
    let text = error_chain(last);
    match text.strip_prefix(url).and_then(|t| t.strip_prefix(": ")) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Why the trace cache could not serve an archive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("no cache directory (hint: set XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    /// A file system operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Unpacking into the cache failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// Downloading failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Why an upload or download failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No backend handles this URL.
    #[error(
        "{url}: unsupported location \
         (hint: use a path, file://, http(s)://, s3://bucket/key, or a GitHub Actions artifact URL)"
    )]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// The URL does not parse or lacks a part the backend needs.
    #[error("{url}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Nothing listens at the server's address.
    #[error(
        "{url}: connection refused (hint: is the server running, and is the host and port right?)"
    )]
    ConnectionRefused {
        /// The URL.
        url: String,
    },
    /// The server did not answer in time.
    #[error(
        "{url}: no answer within {} (the limit for this attempt: {}) \
         (hint: check the network, or raise the timeout)",
        seconds(*after),
        seconds(*limit)
    )]
    Timeout {
        /// The URL.
        url: String,
        /// How long this attempt waited (since the request started, or since the last
        /// bytes arrived in a download) before it was abandoned.
        after: Duration,
        /// How long it was allowed to wait (for an upload: the timeout plus the time the
        /// body may take at the slowest acceptable speed).
        limit: Duration,
    },
    /// The connection broke while an upload was being sent or before its answer came.
    #[error(
        "{url}: the connection closed before the upload finished ({} of {} sent, after {}): \
         {cause}",
        bytesize::ByteSize(*sent),
        bytesize::ByteSize(*total),
        seconds(*after)
    )]
    ConnectionClosed {
        /// The URL.
        url: String,
        /// Bytes of the body handed to the connection before it broke.
        sent: u64,
        /// The body's size.
        total: u64,
        /// How long the attempt had run.
        after: Duration,
        /// The underlying errors, innermost last (e.g. "connection closed before message
        /// completed", "Connection reset by peer (os error 104)").
        cause: String,
    },
    /// 401 or 403.
    #[error("{url}: access denied (HTTP {status}{detail}) (hint: {hint})")]
    Forbidden {
        /// The URL, without its query (a presigned URL's signature is a secret).
        url: String,
        /// 401 or 403.
        status: u16,
        /// The server's error code and message, if any, as ": CODE: message".
        detail: String,
        /// What to check.
        hint: &'static str,
    },
    /// The server rejected the credentials (S3 `InvalidAccessKeyId`, `SignatureDoesNotMatch`).
    #[error(
        "{url}: the server rejected the credentials ({code}: {message}) \
         (hint: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION)"
    )]
    BadCredentials {
        /// The URL.
        url: String,
        /// The S3 error code.
        code: String,
        /// The S3 error message.
        message: String,
    },
    /// 404.
    #[error("{url}: not found (HTTP 404{detail}) (hint: check the URL; artifacts and presigned URLs expire)")]
    NotFound {
        /// The URL.
        url: String,
        /// The server's error code and message, if any.
        detail: String,
    },
    /// 413.
    #[error(
        "{url}: the server refused a body of {size} bytes as too large (HTTP 413) \
         (hint: raise the server's upload limit, e.g. nginx client_max_body_size)"
    )]
    TooLarge {
        /// The URL.
        url: String,
        /// The body size.
        size: u64,
    },
    /// Any other unexpected HTTP status.
    #[error("{url}: HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The server's error code and message, if any.
        detail: String,
    },
    /// A network error without a more specific variant.
    #[error("{url}: {what}")]
    Network {
        /// The URL.
        url: String,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke during the transfer.
    #[error("{url}: transfer interrupted: {source}")]
    Interrupted {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A transient failure persisted through every retry.
    #[error(
        "{url}: gave up after {attempts} attempts; the last one: {}",
        last_failure(url, last)
    )]
    GaveUp {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure (its message and causes are part of this error's message).
        last: Box<TransportError>,
    },
    /// An `s3://` download without credentials (the request went unsigned, which only
    /// a public bucket serves) failed.
    #[error(
        "{url}: no AWS credentials are set (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), so \
         the download went unsigned, which only a public bucket serves; it failed: {} \
         (hint: export the credentials the upload used, and AWS_ENDPOINT_URL_S3 for an \
         S3-compatible store)",
        last_failure(url, cause)
    )]
    UnsignedDownloadFailed {
        /// The URL.
        url: String,
        /// Why the unsigned request failed (in the message, not a `source`: it is
        /// not printed twice).
        cause: Box<TransportError>,
    },
    /// Credentials are needed but not configured.
    #[error("{url}: {what} not set (hint: {hint})")]
    MissingCredentials {
        /// The URL.
        url: String,
        /// What is missing.
        what: &'static str,
        /// How to provide it.
        hint: &'static str,
    },
    /// A presigned URL cannot take an archive this large.
    #[error(
        "{url}: the archive is {size} bytes, but a presigned URL takes one PUT of at most 5 GiB \
         (hint: upload to s3://bucket/key with AWS credentials, which uses a multipart upload)"
    )]
    PresignedTooLarge {
        /// The URL.
        url: String,
        /// The archive size.
        size: u64,
    },
    /// The downloaded bytes do not hash to the value in the archive's name.
    #[error(
        "{url}: downloaded content hashes to {actual}, but the name says {expected} \
         (hint: the transfer was damaged or the remote file was replaced; try again)"
    )]
    HashMismatch {
        /// The URL.
        url: String,
        /// The hash (prefix) from the name.
        expected: String,
        /// The hash of the downloaded bytes.
        actual: String,
    },
    /// A GitHub artifact zip does not hold exactly one archive.
    #[error("{url}: {reason}")]
    BadArtifact {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server answered something this client does not understand.
    #[error("{url}: unexpected answer: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was unexpected.
        reason: String,
    },
    /// This kind of location can be read but not written.
    #[error("{url}: cannot upload here (hint: {hint})")]
    UploadUnsupported {
        /// The URL.
        url: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// An environment variable that configures a transport is malformed.
    #[error("${var} is malformed: {reason}")]
    BadSetting {
        /// The variable.
        var: &'static str,
        /// What is wrong (never its value).
        reason: &'static str,
    },
}

impl TransportError {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Status { status, .. } => {
                matches!(*status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            TransportError::Network { source, .. } => {
                !source.is_builder() && !source.is_redirect() && !source.is_decode()
            }
            TransportError::Timeout { .. }
            | TransportError::Interrupted { .. }
            | TransportError::ConnectionClosed { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_name_the_sizes_and_the_way_past() {
        let e = UnpackError::LimitExceeded {
            archive: PathBuf::from("a.chaos.tar.zst"),
            member: "files/x".into(),
            what: "a member's size",
            size: Some(3 << 29),
            limit: 1 << 30,
        };
        let msg = e.to_string();
        assert!(
            msg.contains("(1.5 GiB) exceeds the limit of 1.0 GiB"),
            "{msg}"
        );
        assert!(msg.contains("--max-unpacked-size 2GiB"), "{msg}");
        let e = UnpackError::LimitExceeded {
            archive: PathBuf::from("a.chaos.tar.zst"),
            member: String::new(),
            what: "the number of members",
            size: None,
            limit: 1_000_000,
        };
        let msg = e.to_string();
        assert!(msg.contains("exceeds the limit of 1000000"), "{msg}");
        assert!(!msg.contains("--max-unpacked-size"), "{msg}");
    }

    #[test]
    fn gave_up_names_the_last_failure_once() {
        let e = TransportError::GaveUp {
            url: "http://h/a".into(),
            attempts: 4,
            last: Box::new(TransportError::Timeout {
                url: "http://h/a".into(),
                after: Duration::from_millis(31_200),
                limit: Duration::from_secs(107),
            }),
        };
        assert_eq!(
            e.to_string(),
            "http://h/a: gave up after 4 attempts; the last one: no answer within 31.2 s \
             (the limit for this attempt: 107.0 s) (hint: check the network, or raise the timeout)"
        );
    }
}
