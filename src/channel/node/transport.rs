//! Where a node reads the repository from: a directory, a `file://` URL, or `http://` (a small
//! blocking client). Every read has a size cap; a directory read opens regular files only (a
//! FIFO in the repository is refused, not waited on); an HTTP read has a deadline (see
//! [`crate::http::Limits`]).

use std::io::Read;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use crate::channel::error::{ChannelError, UsageError};
use crate::fsio::{self, Links};
use crate::http::{HttpError, Limits};

#[derive(Debug, Clone)]
pub enum Source {
    Dir(PathBuf),
    Http {
        host: String,
        port: u16,
        base: String,
        limits: Limits,
    },
}

fn too_large(rel: &str, cap: u64) -> ChannelError {
    ChannelError::TooLarge {
        rel: rel.to_owned(),
        cap,
    }
}

fn bad_url(url: &str, why: &'static str) -> ChannelError {
    UsageError::BadRepoUrl {
        url: url.to_owned(),
        why,
    }
    .into()
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, ChannelError> {
        if let Some(rest) = s.strip_prefix("http://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad_url(s, "bad port"))?),
                None => (authority.to_owned(), 80),
            };
            if host.is_empty() {
                return Err(bad_url(s, "no host"));
            }
            let base = format!("/{}", path.trim_end_matches('/'));
            return Ok(Source::Http {
                host,
                port,
                base: if base == "/" { String::new() } else { base },
                limits: Limits::default(),
            });
        }
        if s.starts_with("https://") {
            return Err(bad_url(s, "https is not supported by this client; serve the repository over http (metadata and objects are signed and content-addressed) or mount it as a path"));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        Ok(Source::Dir(PathBuf::from(path)))
    }

    /// The same source with `timeout` for connecting, for any silence and as the grace period
    /// before the minimum transfer rate applies (HTTP only; directories do not wait).
    pub fn with_timeout(self, timeout: Duration) -> Source {
        match self {
            Source::Http {
                host,
                port,
                base,
                limits,
            } => Source::Http {
                host,
                port,
                base,
                limits: Limits { timeout, ..limits },
            },
            dir => dir,
        }
    }

    /// Reads `rel` (like `channels/stable.json`); more than `cap` bytes is a rejection.
    /// `Ok(None)` when it does not exist.
    pub fn fetch(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, ChannelError> {
        match self {
            Source::Dir(d) => {
                let p = d.join(rel);
                // A mirror may link files (root.json to roots/N.root.json): links are
                // followed, but only to regular files, and the contents are verified anyway.
                let (f, _) = match fsio::open_regular(&p, Links::Follow) {
                    Ok(f) => f,
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(ChannelError::RefusedFile(e)),
                };
                let mut out = Vec::new();
                f.take(cap + 1)
                    .read_to_end(&mut out)
                    .map_err(ChannelError::io(format!("reading {}", p.display())))?;
                if out.len() as u64 > cap {
                    return Err(too_large(rel, cap));
                }
                Ok(Some(out))
            }
            Source::Http {
                host,
                port,
                base,
                limits,
            } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(ChannelError::io(format!("resolving {host}")))?
                    .next()
                    .ok_or_else(|| bad_url(host, "no address"))?;
                let path = format!("{base}/{rel}");
                // Headers are small; allow them on top of the body cap.
                let r =
                    crate::http::request(addr, "GET", host, &path, &[], limits, cap + 16 * 1024)
                        .map_err(|e| match e {
                            HttpError::TooLarge(..) => too_large(rel, cap),
                            other => ChannelError::Http(other),
                        })?;
                match r.status {
                    200 => {
                        if r.body.len() as u64 > cap {
                            return Err(too_large(rel, cap));
                        }
                        Ok(Some(r.body))
                    }
                    404 => Ok(None),
                    s => Err(ChannelError::Http(HttpError::Io(
                        format!("{addr}{path}"),
                        std::io::Error::other(format!("the server answered HTTP {s}")),
                    ))),
                }
            }
        }
    }
}
