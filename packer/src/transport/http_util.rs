//! HTTP plumbing shared by the http, s3 and github backends: the client, error mapping,
//! and transfers that report progress.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};

use crate::errors::TransportError;
use crate::progress::{Phase, ProgressEvent};
use crate::transport::TransportOptions;

/// The HTTP client: rustls, bounded connect time, a User-Agent (GitHub's API requires one).
pub(crate) fn client(url: &str, opts: &TransportOptions) -> Result<Client, TransportError> {
    Client::builder()
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .user_agent(concat!("cargo-chaos/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| TransportError::Network {
            url: url.to_string(),
            what: "cannot set up an HTTP client",
            source,
        })
}

/// Whether an error chain bottoms out in "connection refused".
fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Whether an error chain holds an I/O error (a socket's, or reading the file sent).
fn has_io_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<io::Error>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether the server of a failed request refuses connections. A streamed upload body
/// races with the connection: when the connection is refused, reqwest may report that
/// the body could not be sent instead, so a body error is checked with a plain connect.
fn server_refuses(e: &reqwest::Error) -> bool {
    let Some(url) = e.url() else {
        return false;
    };
    let Ok(addrs) = url.socket_addrs(|| None) else {
        return false;
    };
    addrs.iter().all(|a| {
        std::net::TcpStream::connect_timeout(a, Duration::from_secs(5))
            .is_err_and(|err| err.kind() == io::ErrorKind::ConnectionRefused)
    }) && !addrs.is_empty()
}

/// One attempt of a request: when it started and how long it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    started: Instant,
    limit: Duration,
}

impl Attempt {
    /// An attempt starting now that may wait `limit`.
    pub(crate) fn start(limit: Duration) -> Attempt {
        Attempt {
            started: Instant::now(),
            limit,
        }
    }

    fn timed_out(&self, url: &str) -> TransportError {
        TransportError::Timeout {
            url: url.to_string(),
            after: self.started.elapsed(),
            limit: self.limit,
        }
    }
}

/// Maps a failed request to the most specific error.
pub(crate) fn request_error(
    url: &str,
    what: &'static str,
    e: reqwest::Error,
    attempt: Attempt,
) -> TransportError {
    if is_refused(&e) || (e.is_body() && server_refuses(&e)) {
        TransportError::ConnectionRefused {
            url: url.to_string(),
        }
    } else if e.is_timeout() {
        attempt.timed_out(url)
    } else {
        TransportError::Network {
            url: url.to_string(),
            what,
            source: e,
        }
    }
}

/// Maps a failed upload: like [`request_error`], and a connection that broke while the
/// body was being sent, or before the answer, is [`TransportError::ConnectionClosed`]
/// with its causes and how much of the body had been sent.
pub(crate) fn upload_error(
    url: &str,
    what: &'static str,
    e: reqwest::Error,
    attempt: Attempt,
    sent: u64,
    total: u64,
) -> TransportError {
    let broke = e.is_body() || e.is_request();
    let in_body = e.is_body();
    match request_error(url, what, e, attempt) {
        TransportError::Network { source, .. } if broke => {
            // reqwest's own message repeats the URL: the causes under it say what broke.
            let inner = match std::error::Error::source(&source) {
                Some(inner) => crate::errors::error_chain(inner),
                None => source.to_string(),
            };
            // The blocking client feeds the body through a channel: when the connection
            // dies mid-body, the channel's closing is all it reports (the socket's error
            // goes to the answer, which is then never read).
            let cause = if in_body && !has_io_error(&source) {
                format!("the server closed or reset the connection while the body was being sent ({inner})")
            } else {
                inner
            };
            TransportError::ConnectionClosed {
                url: url.to_string(),
                sent,
                total,
                after: attempt.started.elapsed(),
                cause,
            }
        }
        other => other,
    }
}

/// Maps a failed body read (`attempt` started when the last bytes arrived).
pub(crate) fn read_error(url: &str, e: io::Error, attempt: Attempt) -> TransportError {
    let timed_out = e.kind() == io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        attempt.timed_out(url)
    } else {
        TransportError::Interrupted {
            url: url.to_string(),
            source: e,
        }
    }
}

/// Pulls `<Tag>value</Tag>` out of an XML error body (S3's `<Error>` documents).
pub(crate) fn xml_tag<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].trim())
}

/// S3 error codes that mean "these credentials are wrong".
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
    "NotSignedUp",
];

/// Turns a non-success response into an error; passes a success through.
pub(crate) fn check_status(
    url: &str,
    resp: Response,
    body_size: Option<u64>,
    forbidden_hint: &'static str,
) -> Result<Response, TransportError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut body = Vec::new();
    let _ = resp.take(8 << 10).read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    let code = xml_tag(&body, "Code").map(str::to_string);
    let message = xml_tag(&body, "Message").map(str::to_string).or_else(|| {
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
    });
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    };
    let url = url.to_string();
    Err(match status.as_u16() {
        401 | 403 => match code {
            Some(c) if CREDENTIAL_CODES.contains(&c.as_str()) => TransportError::BadCredentials {
                url,
                code: c,
                message: message.unwrap_or_default(),
            },
            _ => TransportError::Forbidden {
                url,
                status: status.as_u16(),
                detail,
                hint: forbidden_hint,
            },
        },
        404 => TransportError::NotFound { url, detail },
        413 => TransportError::TooLarge {
            url,
            size: body_size.unwrap_or(0),
        },
        s => TransportError::Status {
            url,
            status: s,
            detail,
        },
    })
}

/// A reader that counts what it hands out, so another thread can report progress.
pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How long an upload of `size` bytes may take.
pub(crate) fn upload_deadline(opts: &TransportOptions, size: u64) -> Duration {
    opts.timeout + Duration::from_secs(size / opts.min_throughput.max(1))
}

/// Sends a request whose body is a [`CountingReader`] over `counter`, reporting progress
/// (`base + counted` of `total`) from this thread while the client uploads from its own.
pub(crate) fn send_with_progress(
    request: RequestBuilder,
    phase: Phase,
    base: u64,
    total: u64,
    counter: &Arc<AtomicU64>,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<Response, reqwest::Error> {
    std::thread::scope(|s| {
        let handle = s.spawn(move || request.send());
        let mut last = u64::MAX;
        while !handle.is_finished() {
            let done = base + counter.load(Ordering::Relaxed);
            if done != last {
                last = done;
                progress(&ProgressEvent::Bytes {
                    phase,
                    done,
                    total: Some(total),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let result = handle.join().expect("request thread does not panic");
        progress(&ProgressEvent::Bytes {
            phase,
            done: base + counter.load(Ordering::Relaxed),
            total: Some(total),
        });
        result
    })
}

/// Copies a response body into `dest` (created or truncated), reporting progress and
/// refusing more than `limit` bytes.
pub(crate) fn save_body(
    url: &str,
    mut resp: Response,
    dest: &Path,
    limit: u64,
    opts: &TransportOptions,
    progress: &mut dyn FnMut(&ProgressEvent),
) -> Result<u64, TransportError> {
    let total = resp.content_length();
    if let Some(t) = total {
        if t > limit {
            return Err(TransportError::Protocol {
                url: url.to_string(),
                reason: format!("the download is {t} bytes, more than the limit of {limit}"),
            });
        }
    }
    let mut out = File::create(dest).map_err(|source| TransportError::Io {
        op: "create",
        path: dest.to_path_buf(),
        source,
    })?;
    let mut meter = crate::progress::Meter::new(Phase::Downloading, total, progress);
    let mut buf = vec![0u8; 256 << 10];
    // The client's timeout bounds each wait for more bytes.
    let mut waiting = Attempt::start(opts.timeout);
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(url, e, waiting)),
        };
        waiting = Attempt::start(opts.timeout);
        if meter.done + n as u64 > limit {
            return Err(TransportError::Protocol {
                url: url.to_string(),
                reason: format!("the download exceeds the limit of {limit} bytes"),
            });
        }
        out.write_all(&buf[..n])
            .map_err(|source| TransportError::Io {
                op: "write",
                path: dest.to_path_buf(),
                source,
            })?;
        meter.add(n as u64);
    }
    if let Some(t) = total {
        if meter.done != t {
            return Err(TransportError::Interrupted {
                url: url.to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("got {} of {t} bytes", meter.done),
                ),
            });
        }
    }
    out.sync_all().map_err(|source| TransportError::Io {
        op: "sync",
        path: dest.to_path_buf(),
        source,
    })?;
    meter.finish();
    Ok(meter.done)
}
