//! GitHub Actions artifacts, download only.
//!
//! A `run:` step cannot upload artifacts (the runtime token is handed only to JavaScript
//! actions), so CI writes archives to a directory and `actions/upload-artifact` picks them
//! up. Downloading goes through the REST API with a token (`GITHUB_TOKEN` or `GH_TOKEN`):
//! `GET /repos/OWNER/REPO/actions/artifacts/ID/zip` answers with a redirect to a zip that
//! holds the archive. Both the API URL and the artifact's web page URL
//! (`https://github.com/OWNER/REPO/actions/runs/RUN/artifacts/ID`) are accepted. When the
//! zip holds several archives, add `#NAME` to pick one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use reqwest::blocking::{Client, RequestBuilder};

use crate::errors::TransportError;
use crate::hash::ARCHIVE_SUFFIX;
use crate::progress::{Meter, Phase, ProgressEvent};
use crate::transport::http_util::client;
use crate::transport::impls::http::Endpoint;
use crate::transport::{redact, Fetched, Transport, TransportOptions};

const FORBIDDEN_HINT: &str = "the token needs read access to the repository's actions \
    (actions:read); `gh auth token` prints one that works";

/// A GitHub Actions artifact.
#[derive(Debug, Clone)]
pub struct GithubArtifact {
    api_url: String,
    member: Option<String>,
    client: Client,
    opts: TransportOptions,
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl GithubArtifact {
    /// Returns the backend when `location` is an artifact URL, `None` for other URLs.
    pub fn recognize(
        location: &str,
        opts: &TransportOptions,
    ) -> Result<Option<GithubArtifact>, TransportError> {
        let Ok(url) = url::Url::parse(location) else {
            return Ok(None);
        };
        let segs: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        let member = url.fragment().filter(|f| !f.is_empty()).map(str::to_string);
        // API form: .../repos/O/R/actions/artifacts/ID[/zip], on any host (GHES: /api/v3).
        let api = segs.iter().position(|s| *s == "repos").and_then(|i| {
            let rest = &segs[i..];
            let ok = rest.len() >= 6
                && rest[3] == "actions"
                && rest[4] == "artifacts"
                && digits(rest[5])
                && (rest.len() == 6 || (rest.len() == 7 && rest[6] == "zip"));
            ok.then(|| {
                let mut u = url.clone();
                u.set_query(None);
                u.set_fragment(None);
                let s = u.to_string();
                if rest.len() == 6 {
                    format!("{}/zip", s.trim_end_matches('/'))
                } else {
                    s
                }
            })
        });
        // Web form: github.com/O/R/actions/runs/RUN/artifacts/ID.
        let web = || {
            let host = url.host_str()?;
            let ok = (host == "github.com" || host == "www.github.com")
                && segs.len() == 7
                && segs[2] == "actions"
                && segs[3] == "runs"
                && digits(segs[4])
                && segs[5] == "artifacts"
                && digits(segs[6]);
            ok.then(|| {
                format!(
                    "{}/repos/{}/{}/actions/artifacts/{}/zip",
                    opts.github_api_url.trim_end_matches('/'),
                    segs[0],
                    segs[1],
                    segs[6]
                )
            })
        };
        let Some(api_url) = api.or_else(web) else {
            return Ok(None);
        };
        Ok(Some(GithubArtifact {
            client: client(&api_url, opts)?,
            api_url,
            member,
            opts: opts.clone(),
        }))
    }

    /// The REST API URL the zip is fetched from.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    fn bad(&self, reason: String) -> TransportError {
        TransportError::BadArtifact {
            url: self.location(),
            reason,
        }
    }

    /// Copies the one archive out of the artifact zip into `dest`.
    fn extract(
        &self,
        zip_path: &Path,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, TransportError> {
        let file = File::open(zip_path).map_err(|source| TransportError::Io {
            op: "open",
            path: zip_path.to_path_buf(),
            source,
        })?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| self.bad(format!("the artifact is not a readable zip: {e}")))?;
        let mut candidates = Vec::new();
        let mut all = Vec::new();
        for i in 0..zip.len() {
            let entry = zip
                .by_index(i)
                .map_err(|e| self.bad(format!("the artifact zip is damaged: {e}")))?;
            let name = entry.name().to_string();
            let base = name.rsplit('/').next().unwrap_or(&name).to_string();
            all.push(name.clone());
            let wanted = match &self.member {
                Some(m) => base == *m || name == *m,
                None => base.ends_with(ARCHIVE_SUFFIX),
            };
            if entry.is_file() && wanted {
                candidates.push((i, base));
            }
        }
        let (index, base) =
            match candidates.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(self.bad(format!(
                        "the artifact holds no {} (it holds: {})",
                        self.member.as_deref().unwrap_or(ARCHIVE_SUFFIX),
                        all.join(", ")
                    )))
                }
                many => {
                    return Err(self.bad(format!(
                    "the artifact holds several archives ({}); add #NAME to the URL to pick one",
                    many.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>().join(", ")
                )))
                }
            };
        let mut entry = zip
            .by_index(index)
            .map_err(|e| self.bad(format!("the artifact zip is damaged: {e}")))?;
        let size = entry.size();
        if size > self.opts.max_download_bytes {
            return Err(self.bad(format!(
                "{base} would unzip to {size} bytes, more than the limit of {}",
                self.opts.max_download_bytes
            )));
        }
        let mut out = File::create(dest).map_err(|source| TransportError::Io {
            op: "create",
            path: dest.to_path_buf(),
            source,
        })?;
        let mut meter = Meter::new(Phase::Unpacking, Some(size), progress);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.bad(format!("{base} in the zip is damaged: {e}"))),
            };
            if meter.done + n as u64 > size {
                return Err(self.bad(format!("{base} holds more data than its zip entry says")));
            }
            out.write_all(&buf[..n])
                .map_err(|source| TransportError::Io {
                    op: "write",
                    path: dest.to_path_buf(),
                    source,
                })?;
            meter.add(n as u64);
        }
        meter.finish();
        Ok(Fetched {
            name: Some(base),
            size: meter.done,
        })
    }
}

impl Transport for GithubArtifact {
    type Error = TransportError;

    fn location(&self) -> String {
        redact(&self.api_url)
    }

    fn remote_name(&self) -> Option<String> {
        self.member.clone()
    }

    fn put(
        &mut self,
        _src: &Path,
        _progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<(), TransportError> {
        Err(TransportError::UploadUnsupported {
            url: self.location(),
            hint: "a `run:` step cannot upload artifacts; write the archive to a directory \
                   and let actions/upload-artifact pick it up",
        })
    }

    fn get(
        &mut self,
        dest: &Path,
        progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Fetched, TransportError> {
        let token = self
            .opts
            .github_token
            .clone()
            .ok_or(TransportError::MissingCredentials {
                url: self.location(),
                what: "GITHUB_TOKEN",
                hint: "export GITHUB_TOKEN (or GH_TOKEN) with read access to the \
                       repository's actions; `gh auth token` prints one",
            })?;
        let decorate = move |r: RequestBuilder| {
            // reqwest drops Authorization when the API redirects to the blob store's host.
            r.bearer_auth(&token)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
        };
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let zip_tmp = tempfile::Builder::new()
            .prefix(".chaos-artifact-")
            .suffix(".zip")
            .tempfile_in(&parent)
            .map_err(|source| TransportError::Io {
                op: "create a temporary file in",
                path: parent.clone(),
                source,
            })?;
        let display = self.location();
        Endpoint {
            client: &self.client,
            url: &self.api_url,
            display: &display,
            opts: &self.opts,
            decorate: &decorate,
            forbidden_hint: FORBIDDEN_HINT,
            probe: None,
        }
        .get_file(zip_tmp.path(), progress)?;
        self.extract(zip_tmp.path(), dest, progress)
    }
}
