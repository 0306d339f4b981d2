//! `s3://bucket/key`: SigV4-signed requests to S3 or an S3-compatible store.
//!
//! Signing is done by `rusty-s3`, which builds presigned URLs without doing any I/O;
//! the requests themselves go through the same HTTP client as the http backend.
//! Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`, the region from `AWS_REGION`. With `AWS_ENDPOINT_URL` set, the
//! store is addressed path-style (`http://host:port/bucket/key`), which every
//! S3-compatible server understands; without it, AWS virtual-hosted style.
//!
//! Archives above [`S3Settings::multipart_threshold`](crate::transport::S3Settings) (and
//! always above 5 GiB, S3's single-PUT limit) go up as a multipart upload: create, one
//! PUT per part (each retried on its own), complete; an upload that fails midway is
//! aborted so the store does not keep billing for orphaned parts.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Body, Client, RequestBuilder};
use rusty_s3::actions::{CreateMultipartUpload, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::errors::TransportError;
use crate::progress::{Phase, ProgressEvent};
use crate::transport::http_util::{
    check_status, client, request_error, send_with_progress, upload_deadline, upload_error,
    xml_tag, Attempt, CountingReader,
};
use crate::transport::impls::http::{Endpoint, PRESIGNED_PUT_LIMIT};
use crate::transport::{with_retries, Fetched, Transport, TransportOptions};

/// How long the signed URLs stay valid. Each request is signed just before it is sent.
const SIGNATURE_TTL: Duration = Duration::from_secs(3600);

/// S3 allows at most this many parts.
const MAX_PARTS: u64 = 10_000;

const FORBIDDEN_HINT: &str = "check that the credentials may write (s3:PutObject) \
    or read (s3:GetObject) this bucket and key";

/// An object in a bucket.
#[derive(Debug, Clone)]
pub struct S3 {
    bucket: Bucket,
    key: String,
    credentials: Option<Credentials>,
    display: String,
    client: Client,
    opts: TransportOptions,
}

fn identity(r: RequestBuilder) -> RequestBuilder {
    r
}

impl S3 {
    /// Parses `s3://bucket/key` and sets up signing.
    pub fn new(location: &str, opts: &TransportOptions) -> Result<S3, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidUrl {
            url: location.to_string(),
            reason: reason.to_string(),
        };
        let rest = location
            .get(5..)
            .filter(|_| location[..5].eq_ignore_ascii_case("s3://"))
            .ok_or_else(|| invalid("expected s3://bucket/key"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket name (expected s3://bucket/key)"));
        }
        if key.is_empty() {
            return Err(invalid(
                "no object key (end the location with / to use the archive's file name)",
            ));
        }
        let s = &opts.s3;
        let (endpoint, style) = match &s.endpoint {
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", s.region),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint_url = url::Url::parse(&endpoint).map_err(|e| TransportError::InvalidUrl {
            url: endpoint.clone(),
            reason: format!("AWS_ENDPOINT_URL: {e}"),
        })?;
        let bucket_obj = Bucket::new(endpoint_url, style, bucket.to_string(), s.region.clone())
            .map_err(|e| TransportError::InvalidUrl {
                url: location.to_string(),
                reason: e.to_string(),
            })?;
        let credentials = match (&s.access_key_id, &s.secret_access_key) {
            (Some(k), Some(sec)) => Some(match &s.session_token {
                Some(t) => Credentials::new_with_token(k.clone(), sec.clone(), t.clone()),
                None => Credentials::new(k.clone(), sec.clone()),
            }),
            _ => None,
        };
        let display = format!("s3://{bucket}/{key}");
        Ok(S3 {
            client: client(&display, opts)?,
            bucket: bucket_obj,
            key: key.to_string(),
            credentials,
            display,
            opts: opts.clone(),
        })
    }

    fn require_credentials(&self) -> Result<&Credentials, TransportError> {
        self.credentials
            .as_ref()
            .ok_or(TransportError::MissingCredentials {
                url: self.display.clone(),
                what: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                hint: "export them (and AWS_SESSION_TOKEN for temporary credentials), \
                       or upload to a presigned https:// URL instead",
            })
    }

    fn endpoint<'a>(
        &'a self,
        url: &'a str,
        probe: Option<&'a dyn Fn() -> Option<TransportError>>,
    ) -> Endpoint<'a> {
        Endpoint {
            client: &self.client,
            url,
            display: &self.display,
            opts: &self.opts,
            decorate: &identity,
            forbidden_hint: FORBIDDEN_HINT,
            probe,
        }
    }

    /// After an upload broke off: a signed one-byte GET of the object, whose error body
    /// (unlike a dropped PUT's) says whether the credentials are the problem.
    fn probe_credentials(&self) -> Option<TransportError> {
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &self.key)
            .sign(SIGNATURE_TTL);
        let resp = self
            .client
            .get(url.as_str())
            .header(reqwest::header::RANGE, "bytes=0-0")
            .send()
            .ok()?;
        match resp.status().as_u16() {
            401 | 403 => check_status(&self.display, resp, None, FORBIDDEN_HINT).err(),
            _ => None,
        }
    }

    /// Sends a small signed request (create, complete, abort) and returns the body.
    fn small_request(
        &self,
        method: reqwest::Method,
        url: &url::Url,
        body: Option<String>,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<String, TransportError> {
        with_retries(
            &self.opts,
            Phase::Uploading,
            &self.display,
            progress,
            |_| {
                let mut req = self.client.request(method.clone(), url.as_str());
                if let Some(b) = &body {
                    req = req.body(b.clone());
                }
                let attempt = Attempt::start(self.opts.timeout);
                let resp = req
                    .send()
                    .map_err(|e| request_error(&self.display, "request failed", e, attempt))?;
                let resp = check_status(&self.display, resp, None, FORBIDDEN_HINT)?;
                let text = resp.text().map_err(|e| {
                    request_error(&self.display, "reading the answer failed", e, attempt)
                })?;
                // S3 may answer 200 and put the error in the body (CompleteMultipartUpload).
                if let (Some(code), true) = (xml_tag(&text, "Code"), text.contains("<Error>")) {
                    let message = xml_tag(&text, "Message").unwrap_or("");
                    return Err(TransportError::Status {
                        url: self.display.clone(),
                        status: if code == "InternalError" || code == "SlowDown" {
                            503
                        } else {
                            400
                        },
                        detail: format!(": {code}: {message}"),
                    });
                }
                Ok(text)
            },
        )
    }

    fn put_multipart(
        &self,
        src: &Path,
        size: u64,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        let creds = self.require_credentials()?;
        let create = self.bucket.create_multipart_upload(Some(creds), &self.key);
        let text = self.small_request(
            reqwest::Method::POST,
            &create.sign(SIGNATURE_TTL),
            None,
            progress,
        )?;
        let upload_id = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| TransportError::Protocol {
                url: self.display.clone(),
                reason: format!("cannot read the multipart upload id: {e}"),
            })?
            .upload_id()
            .to_string();
        let result = self.upload_parts(src, size, creds, &upload_id, progress);
        match result {
            Ok(etags) => {
                let complete = self.bucket.complete_multipart_upload(
                    Some(creds),
                    &self.key,
                    &upload_id,
                    etags.iter().map(String::as_str),
                );
                let url = complete.sign(SIGNATURE_TTL);
                let body = complete.body();
                self.small_request(reqwest::Method::POST, &url, Some(body), progress)?;
                progress(&ProgressEvent::Finished {
                    phase: Phase::Uploading,
                    bytes: size,
                });
                Ok(())
            }
            Err(e) => {
                let abort = self
                    .bucket
                    .abort_multipart_upload(Some(creds), &self.key, &upload_id)
                    .sign(SIGNATURE_TTL);
                let _ = self.client.delete(abort.as_str()).send();
                Err(e)
            }
        }
    }

    fn upload_parts(
        &self,
        src: &Path,
        size: u64,
        creds: &Credentials,
        upload_id: &str,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Vec<String>, TransportError> {
        let part_size = self.opts.s3.part_size.max(size.div_ceil(MAX_PARTS)).max(1);
        let parts = size.div_ceil(part_size).max(1);
        let mut etags = Vec::with_capacity(parts as usize);
        for i in 0..parts {
            let offset = i * part_size;
            let len = part_size.min(size - offset);
            let number = u16::try_from(i + 1).expect("at most 10,000 parts");
            let etag = with_retries(
                &self.opts,
                Phase::Uploading,
                &self.display,
                progress,
                |progress| {
                    let url = self
                        .bucket
                        .upload_part(Some(creds), &self.key, number, upload_id)
                        .sign(SIGNATURE_TTL);
                    let mut file = File::open(src).map_err(|source| TransportError::Io {
                        op: "open",
                        path: src.to_path_buf(),
                        source,
                    })?;
                    file.seek(SeekFrom::Start(offset))
                        .map_err(|source| TransportError::Io {
                            op: "seek in",
                            path: src.to_path_buf(),
                            source,
                        })?;
                    let counter = Arc::new(AtomicU64::new(0));
                    let body = Body::sized(
                        CountingReader {
                            inner: file.take(len),
                            counter: counter.clone(),
                        },
                        len,
                    );
                    let deadline = upload_deadline(&self.opts, len);
                    let req = self.client.put(url.as_str()).timeout(deadline).body(body);
                    let attempt = Attempt::start(deadline);
                    let resp =
                        send_with_progress(req, Phase::Uploading, offset, size, &counter, progress)
                            .map_err(|e| {
                                let sent = counter.load(std::sync::atomic::Ordering::Relaxed);
                                let e = upload_error(
                                    &self.display,
                                    "uploading a part failed",
                                    e,
                                    attempt,
                                    sent,
                                    len,
                                );
                                match e {
                                    TransportError::Network { .. }
                                    | TransportError::Interrupted { .. }
                                    | TransportError::ConnectionClosed { .. } => {
                                        self.probe_credentials().unwrap_or(e)
                                    }
                                    e => e,
                                }
                            })?;
                    let resp = check_status(&self.display, resp, Some(len), FORBIDDEN_HINT)?;
                    resp.headers()
                        .get(reqwest::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| TransportError::Protocol {
                            url: self.display.clone(),
                            reason: format!("part {number} was accepted without an ETag"),
                        })
                },
            )?;
            etags.push(etag);
        }
        Ok(etags)
    }
}

impl Transport for S3 {
    type Error = TransportError;

    fn location(&self) -> String {
        self.display.clone()
    }

    fn put(
        &mut self,
        src: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        let creds = self.require_credentials()?;
        let size = std::fs::metadata(src)
            .map_err(|source| TransportError::Io {
                op: "read",
                path: src.to_path_buf(),
                source,
            })?
            .len();
        if size > self.opts.s3.multipart_threshold || size > PRESIGNED_PUT_LIMIT {
            return self.put_multipart(src, size, progress);
        }
        let url = self
            .bucket
            .put_object(Some(creds), &self.key)
            .sign(SIGNATURE_TTL);
        self.endpoint(url.as_str(), Some(&|| self.probe_credentials()))
            .put_file(src, progress)
    }

    fn get(
        &mut self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, TransportError> {
        // Without credentials the request goes unsigned: public buckets serve it.
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &self.key)
            .sign(SIGNATURE_TTL);
        let size = match self.endpoint(url.as_str(), None).get_file(dest, progress) {
            Ok(size) => size,
            // Missing credentials are the likely cause of anything but a missing object:
            // a private bucket refuses unsigned requests (and a wrong endpoint, which the
            // credentials' setup also names, fails to resolve).
            Err(e)
                if self.credentials.is_none() && !matches!(e, TransportError::NotFound { .. }) =>
            {
                return Err(TransportError::UnsignedDownloadFailed {
                    url: self.display.clone(),
                    cause: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        };
        Ok(Fetched { name: None, size })
    }
}
