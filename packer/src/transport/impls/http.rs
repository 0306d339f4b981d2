//! `http(s)://` locations: presigned URLs (S3, GCS, R2, Artifactory) and WebDAV servers.
//!
//! Uploads are one `PUT` with a `Content-Length` header: S3's presigned PUT rejects
//! chunked transfer encoding, and a presigned URL allows at most 5 GiB in one PUT (larger
//! archives need `s3://` with credentials, which uses a multipart upload). An optional
//! extra header comes from `CHAOS_UPLOAD_HEADER` (`Authorization: Bearer …` for an
//! Artifactory or a private WebDAV share).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use reqwest::blocking::{Body, Client, RequestBuilder};

use crate::errors::TransportError;
use crate::progress::{Phase, ProgressEvent};
use crate::transport::http_util::{
    check_status, client, request_error, save_body, send_with_progress, upload_deadline,
    upload_error, Attempt, CountingReader,
};
use crate::transport::{redact, with_retries, Fetched, Transport, TransportOptions};

/// The most one presigned PUT accepts (S3's single-PUT limit).
pub const PRESIGNED_PUT_LIMIT: u64 = 5 << 30;

const FORBIDDEN_HINT: &str = "presigned URLs expire and are bound to one method; \
    check the URL, and CHAOS_UPLOAD_HEADER if the server wants credentials";

/// An http(s) URL.
#[derive(Debug, Clone)]
pub struct Http {
    url: String,
    display: String,
    presigned: bool,
    client: Client,
    opts: TransportOptions,
}

impl Http {
    /// Checks the URL and sets up the client.
    pub fn new(location: &str, opts: &TransportOptions) -> Result<Http, TransportError> {
        let parsed = url::Url::parse(location).map_err(|e| TransportError::InvalidUrl {
            url: redact(location),
            reason: e.to_string(),
        })?;
        let presigned = parsed.query_pairs().any(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "x-amz-signature" || k == "x-goog-signature" || k == "signature" || k == "sig"
        });
        let display = redact(location);
        Ok(Http {
            client: client(&display, opts)?,
            url: location.to_string(),
            display,
            presigned,
            opts: opts.clone(),
        })
    }

    fn endpoint<'a>(
        &'a self,
        decorate: &'a dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Endpoint<'a> {
        Endpoint {
            client: &self.client,
            url: &self.url,
            display: &self.display,
            opts: &self.opts,
            decorate,
            forbidden_hint: FORBIDDEN_HINT,
            probe: None,
        }
    }

    fn with_header(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.opts.extra_header {
            Some((k, v)) => req.header(k.as_str(), v.as_str()),
            None => req,
        }
    }
}

/// One remote object addressed over HTTP, with what every request to it needs.
/// Shared by the http, s3 and github backends.
pub(crate) struct Endpoint<'a> {
    pub(crate) client: &'a Client,
    /// The URL requests go to (may hold a signature).
    pub(crate) url: &'a str,
    /// The URL for messages.
    pub(crate) display: &'a str,
    pub(crate) opts: &'a TransportOptions,
    /// Adds headers to each request.
    pub(crate) decorate: &'a dyn Fn(RequestBuilder) -> RequestBuilder,
    pub(crate) forbidden_hint: &'static str,
    /// Asked when an upload breaks off mid-body: a server that rejects a request (bad
    /// credentials, say) often answers before reading the body and closes the
    /// connection, and the client then sees only a broken pipe. The probe makes a small
    /// request that can carry the real answer; `Some` replaces the network error.
    pub(crate) probe: Option<&'a dyn Fn() -> Option<TransportError>>,
}

impl Endpoint<'_> {
    /// One PUT of a whole file with Content-Length, retried on transient failures.
    pub(crate) fn put_file(
        &self,
        src: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        let size = std::fs::metadata(src)
            .map_err(|source| TransportError::Io {
                op: "read",
                path: src.to_path_buf(),
                source,
            })?
            .len();
        with_retries(
            self.opts,
            Phase::Uploading,
            self.display,
            progress,
            |progress| {
                let file = File::open(src).map_err(|source| TransportError::Io {
                    op: "open",
                    path: src.to_path_buf(),
                    source,
                })?;
                let counter = Arc::new(AtomicU64::new(0));
                let body = Body::sized(
                    CountingReader {
                        inner: file,
                        counter: counter.clone(),
                    },
                    size,
                );
                let deadline = upload_deadline(self.opts, size);
                let req = (self.decorate)(self.client.put(self.url).timeout(deadline).body(body));
                let attempt = Attempt::start(deadline);
                let resp = send_with_progress(req, Phase::Uploading, 0, size, &counter, progress)
                    .map_err(|e| {
                    let sent = counter.load(std::sync::atomic::Ordering::Relaxed);
                    self.explain(upload_error(
                        self.display,
                        "upload failed",
                        e,
                        attempt,
                        sent,
                        size,
                    ))
                })?;
                check_status(self.display, resp, Some(size), self.forbidden_hint)?;
                Ok(())
            },
        )?;
        progress(&ProgressEvent::Finished {
            phase: Phase::Uploading,
            bytes: size,
        });
        Ok(())
    }

    /// Replaces a broken-off upload's error by what the probe learns, if anything.
    pub(crate) fn explain(&self, e: TransportError) -> TransportError {
        match (&e, self.probe) {
            (
                TransportError::Network { .. }
                | TransportError::Interrupted { .. }
                | TransportError::ConnectionClosed { .. },
                Some(probe),
            ) => probe().unwrap_or(e),
            _ => e,
        }
    }

    /// One GET into a file, retried on transient failures.
    pub(crate) fn get_file(
        &self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<u64, TransportError> {
        with_retries(
            self.opts,
            Phase::Downloading,
            self.display,
            progress,
            |progress| {
                let attempt = Attempt::start(self.opts.timeout);
                let resp = (self.decorate)(self.client.get(self.url))
                    .send()
                    .map_err(|e| request_error(self.display, "download failed", e, attempt))?;
                let resp = check_status(self.display, resp, None, self.forbidden_hint)?;
                save_body(
                    self.display,
                    resp,
                    dest,
                    self.opts.max_download_bytes,
                    self.opts,
                    progress,
                )
            },
        )
    }
}

impl Transport for Http {
    type Error = TransportError;

    fn location(&self) -> String {
        self.display.clone()
    }

    fn max_put_size(&self) -> Option<u64> {
        self.presigned.then_some(PRESIGNED_PUT_LIMIT)
    }

    fn put(
        &mut self,
        src: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        self.endpoint(&|r| self.with_header(r))
            .put_file(src, progress)
    }

    fn get(
        &mut self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, TransportError> {
        let size = self
            .endpoint(&|r| self.with_header(r))
            .get_file(dest, progress)?;
        Ok(Fetched { name: None, size })
    }
}
