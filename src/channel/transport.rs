//! Where a node reads the repository from: a directory, a `file://` URL, or `http://` (a small
//! blocking client; every read has a size cap).

use std::io::Read;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use super::ChannelError;

#[derive(Debug, Clone)]
pub enum Source {
    Dir(PathBuf),
    Http {
        host: String,
        port: u16,
        base: String,
    },
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, ChannelError> {
        if let Some(rest) = s.strip_prefix("http://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| ChannelError::input(format!("{s}: bad port")))?,
                ),
                None => (authority.to_owned(), 80),
            };
            if host.is_empty() {
                return Err(ChannelError::input(format!("{s}: no host")));
            }
            let base = format!("/{}", path.trim_end_matches('/'));
            return Ok(Source::Http {
                host,
                port,
                base: if base == "/" { String::new() } else { base },
            });
        }
        if s.starts_with("https://") {
            return Err(ChannelError::input(format!(
                "{s}: https is not supported by this client; serve the repository over http (metadata and objects are signed and content-addressed) or mount it as a path"
            )));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        Ok(Source::Dir(PathBuf::from(path)))
    }

    /// Reads `rel` (like `channels/stable.json`); more than `cap` bytes is a rejection.
    /// `Ok(None)` when it does not exist.
    pub fn fetch(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, ChannelError> {
        match self {
            Source::Dir(d) => {
                let p = d.join(rel);
                let f = match std::fs::File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => {
                        return Err(ChannelError::Io {
                            what: format!("reading {}", p.display()),
                            source,
                        })
                    }
                };
                let mut out = Vec::new();
                f.take(cap + 1)
                    .read_to_end(&mut out)
                    .map_err(|source| ChannelError::Io {
                        what: format!("reading {}", p.display()),
                        source,
                    })?;
                if out.len() as u64 > cap {
                    return Err(ChannelError::rejected(format!(
                        "{rel}: larger than the {cap}-byte limit; aborted"
                    )));
                }
                Ok(Some(out))
            }
            Source::Http { host, port, base } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|source| ChannelError::Io {
                        what: format!("resolving {host}"),
                        source,
                    })?
                    .next()
                    .ok_or_else(|| ChannelError::input(format!("{host}: no address")))?;
                let path = format!("{base}/{rel}");
                // Headers are small; allow them on top of the body cap.
                let r = crate::http::request(
                    addr,
                    "GET",
                    host,
                    &path,
                    &[],
                    Duration::from_secs(30),
                    cap + 16 * 1024,
                )
                .map_err(|e| match e {
                    crate::http::HttpError::TooLarge(..) => ChannelError::rejected(format!(
                        "{rel}: larger than the {cap}-byte limit; aborted"
                    )),
                    other => ChannelError::Io {
                        what: format!("fetching {path}"),
                        source: std::io::Error::other(other.to_string()),
                    },
                })?;
                match r.status {
                    200 => {
                        if r.body.len() as u64 > cap {
                            return Err(ChannelError::rejected(format!(
                                "{rel}: larger than the {cap}-byte limit; aborted"
                            )));
                        }
                        Ok(Some(r.body))
                    }
                    404 => Ok(None),
                    s => Err(ChannelError::Io {
                        what: format!("fetching {path}"),
                        source: std::io::Error::other(format!("HTTP {s}")),
                    }),
                }
            }
        }
    }
}
