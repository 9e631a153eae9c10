//! Where a node reads the repository from: a directory, a `file://` URL, or `http://` (a small
//! blocking client). Every read has a size cap; a directory read opens regular files only (a
//! FIFO in the repository is refused, not waited on); an HTTP read has a deadline (see
//! [`crate::http::Limits`]). Metadata is read into memory ([`Source::fetch`]); artifacts
//! stream into a file, hashed and counted as they arrive ([`Source::fetch_to`], [`Download`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

use crate::channel::error::{ChannelError, UsageError};
use crate::digest::Sha256;
use crate::fsio::{self, Links};
use crate::http::{HttpError, Limits, RangeAnswer};

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
                let Some(f) = open_in_dir(&p)? else {
                    return Ok(None);
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
                let addr = resolve(host, *port)?;
                let path = format!("{base}/{rel}");
                // Headers are small; allow them on top of the body cap.
                let r = crate::http::request(
                    addr,
                    "GET",
                    host,
                    &path,
                    &[],
                    limits,
                    cap + crate::http::MAX_HEAD,
                )
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
                    s => Err(status_error(addr, &path, s)),
                }
            }
        }
    }

    /// Streams `rel` into `to` as it arrives; more than `cap` bytes is a rejection (stopped
    /// there; what `to` received by then is the caller's to throw away). `Ok(false)` when it
    /// does not exist (nothing was written).
    pub fn fetch_to(&self, rel: &str, cap: u64, to: &mut Download) -> Result<bool, ChannelError> {
        match self {
            Source::Dir(d) => {
                let p = d.join(rel);
                let Some(mut f) = open_in_dir(&p)? else {
                    return Ok(false);
                };
                let mut buf = vec![0u8; 64 << 10];
                let mut n = 0u64;
                loop {
                    let k = match f.read(&mut buf) {
                        Ok(0) => return Ok(true),
                        Ok(k) => k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(ChannelError::io(format!("reading {}", p.display()))(e))
                        }
                    };
                    n += k as u64;
                    if n > cap {
                        return Err(too_large(rel, cap));
                    }
                    to.take(&buf[..k])?;
                }
            }
            Source::Http {
                host,
                port,
                base,
                limits,
            } => {
                let addr = resolve(host, *port)?;
                let path = format!("{base}/{rel}");
                let (head, _) = crate::http::stream(addr, "GET", host, &path, &[], limits, cap, to)
                    .map_err(|e| match e {
                        HttpError::TooLarge(..) => too_large(rel, cap),
                        HttpError::Write(e) => to.write_error(e),
                        other => ChannelError::Http(other),
                    })?;
                match head.status {
                    200 => Ok(true),
                    404 => Ok(false),
                    s => Err(status_error(addr, &path, s)),
                }
            }
        }
    }
}

/// What a repository answered to a request for part of an object ([`Source::fetch_range`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The bytes asked for (to the end of the object when no end was given), written out; how
    /// many.
    Part(u64),
    /// The server does not do `Range` (it answered with the whole object, which was not read).
    Unsupported,
    /// The object is not there.
    NotFound,
    /// The range starts at or past the end of the object.
    PastTheEnd,
    /// An answer that is not the range asked for (another range, more bytes): why.
    Bad(String),
}

impl Source {
    /// Writes the bytes of `rel` from `start` to `end` (exclusive; to the end of the object
    /// when `None`, at most `cap` bytes) to `out`: a `Range` request over HTTP, a read at an
    /// offset from a directory.
    pub fn fetch_range(
        &self,
        rel: &str,
        (start, end): (u64, Option<u64>),
        cap: u64,
        out: &mut dyn Write,
    ) -> Result<Ranged, ChannelError> {
        match self {
            Source::Dir(d) => {
                use std::io::Seek;
                let p = d.join(rel);
                let Some(mut f) = open_in_dir(&p)? else {
                    return Ok(Ranged::NotFound);
                };
                let io = |e| ChannelError::io(format!("reading {}", p.display()))(e);
                let len = f.metadata().map_err(io)?.len();
                if start >= len {
                    return Ok(Ranged::PastTheEnd);
                }
                let want = end.unwrap_or(len).min(len).saturating_sub(start);
                if want > cap {
                    return Err(too_large(rel, cap));
                }
                f.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
                let n = std::io::copy(&mut f.take(want), out).map_err(io)?;
                Ok(Ranged::Part(n))
            }
            Source::Http {
                host,
                port,
                base,
                limits,
            } => {
                let addr = resolve(host, *port)?;
                let path = format!("{base}/{rel}");
                let r = crate::http::get_range(addr, host, &path, (start, end), cap, limits, out);
                let r = match r {
                    Err(HttpError::BadRange(_, why)) => return Ok(Ranged::Bad(why)),
                    Err(HttpError::TooLarge(..)) => {
                        return Ok(Ranged::Bad(format!(
                            "more than the {cap} bytes asked for came"
                        )))
                    }
                    // A short body is a transfer that failed (what arrived is kept to resume).
                    Err(other) => return Err(ChannelError::Http(other)),
                    Ok(r) => r,
                };
                match r {
                    RangeAnswer::Partial(n) => Ok(Ranged::Part(n)),
                    RangeAnswer::Ignored => Ok(Ranged::Unsupported),
                    RangeAnswer::Status(404) => Ok(Ranged::NotFound),
                    RangeAnswer::Status(416) => Ok(Ranged::PastTheEnd),
                    RangeAnswer::Status(s) => Err(status_error(addr, &path, s)),
                }
            }
        }
    }
}

/// A file of the repository directory, opened for reading; `None` when it does not exist. A
/// mirror may link files (root.json to roots/N.root.json): links are followed, but only to
/// regular files, and the contents are verified anyway.
fn open_in_dir(p: &Path) -> Result<Option<std::fs::File>, ChannelError> {
    match fsio::open_regular(p, Links::Follow) {
        Ok((f, _)) => Ok(Some(f)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ChannelError::RefusedFile(e)),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, ChannelError> {
    (host, port)
        .to_socket_addrs()
        .map_err(ChannelError::io(format!("resolving {host}")))?
        .next()
        .ok_or_else(|| bad_url(host, "no address"))
}

fn status_error(addr: SocketAddr, path: &str, status: u16) -> ChannelError {
    ChannelError::Http(HttpError::Status(format!("{addr}{path}"), status))
}

/// A new file a download streams into, hashed (sha256) and counted as it arrives.
pub struct Download {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    hasher: sha2::Sha256,
    len: u64,
}

impl Download {
    /// Creates `path`, which must not exist.
    pub fn create(path: &Path) -> Result<Download, ChannelError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(ChannelError::io(format!("creating {}", path.display())))?;
        Ok(Download {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(256 << 10, file),
            hasher: sha2::Sha256::new(),
            len: 0,
        })
    }

    /// Opens the existing file `path` to add to its end (a download resumed); what it held is
    /// not in the hash [`Download::finish`] returns.
    pub fn append(path: &Path) -> Result<Download, ChannelError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(ChannelError::io(format!("opening {}", path.display())))?;
        Ok(Download {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(256 << 10, file),
            hasher: sha2::Sha256::new(),
            len: 0,
        })
    }

    fn take(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.write_all(bytes).map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: std::io::Error) -> ChannelError {
        ChannelError::io(format!("writing {}", self.path.display()))(e)
    }

    /// Flushes the file to disk; returns the sha256 and the length of what it received.
    pub fn finish(self) -> Result<(Sha256, u64), ChannelError> {
        let err = ChannelError::io(format!("writing {}", self.path.display()));
        let file = self.file.into_inner().map_err(|e| err(e.into_error()))?;
        file.sync_all()
            .map_err(ChannelError::io(format!("writing {}", self.path.display())))?;
        Ok((Sha256::from_bytes(self.hasher.finalize().into()), self.len))
    }
}

impl Write for Download {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
