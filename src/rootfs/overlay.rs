//! Reading host directories and files into the tree, without ever following a symlink out.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::path::{ImagePath, PathError};
use super::tree::{Entry, Origin, Tree, TreeError};
use super::ExpandLimits;
use crate::fsio::Shown;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error(
        "overlay {} does not exist; create it or fix the path in the profile",
        Shown(_0)
    )]
    NotFound(PathBuf),
    #[error("overlay {} is not a directory", Shown(_0))]
    NotDir(PathBuf),
    #[error("cannot read {}: {source}", Shown(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: file names and symlink targets must be UTF-8", Shown(_0))]
    NotUtf8(PathBuf),
    #[error("{}: {kind} cannot go into an image from an overlay (the builder creates /dev/console and /dev/null itself)", Shown(path))]
    Special { path: PathBuf, kind: &'static str },
    #[error(
        "{} is {kind}; a [[file]] source must be a regular file (use [[overlay]] for directories)",
        Shown(path)
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{}: {source}", Shown(path))]
    Path {
        path: PathBuf,
        #[source]
        source: PathError,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("{}: larger than the {} limit {why}; if it belongs in the image, raise {key} in the profile", Shown(path), crate::progress::human_bytes(*limit))]
    TooLarge {
        path: PathBuf,
        limit: u64,
        why: &'static str,
        key: &'static str,
    },
}

/// Reads one host file for the image: a regular file (checked on the open descriptor, so a
/// FIFO swapped in cannot hang the build), never more than the limits still allow.
fn read_limited(
    path: &Path,
    limits: ExpandLimits,
    image_used: u64,
    links: crate::fsio::Links,
) -> Result<Vec<u8>, OverlayError> {
    let left = limits.image.saturating_sub(image_used);
    let (cap, limit, why, key) = if limits.file <= left {
        (
            limits.file,
            limits.file,
            "for one file",
            "[image] max-file-size",
        )
    } else {
        (
            left,
            limits.image,
            "for the whole image",
            "[image] max-image-size",
        )
    };
    crate::fsio::read_regular(path, cap, "a file", links).map_err(|e| match e {
        crate::fsio::ReadError::TooLarge { .. } => OverlayError::TooLarge {
            path: path.to_owned(),
            limit,
            why,
            key,
        },
        crate::fsio::ReadError::NotRegular { kind, .. } => OverlayError::Special {
            path: path.to_owned(),
            kind,
        },
        crate::fsio::ReadError::Io { source, .. } => OverlayError::Io {
            path: path.to_owned(),
            source,
        },
        crate::fsio::ReadError::NotUtf8 { .. } => unreachable!("bytes are not decoded"),
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError + '_ {
    move |source| OverlayError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a host path the profile names is (following links the user named): missing is its own
/// error, naming the path.
fn host_metadata(src: &Path) -> Result<fs::Metadata, OverlayError> {
    fs::metadata(src).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            OverlayError::NotFound(src.to_owned())
        } else {
            OverlayError::Io {
                path: src.to_owned(),
                source: e,
            }
        }
    })
}

/// The image mode for a host file: git keeps only the executable bit, so neither does the
/// image (0755 or 0644; directories 0755). A profile sets other modes explicitly.
pub fn normalised_mode(host_mode: u32, is_dir: bool) -> u32 {
    if is_dir || host_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Copies the directory `src` into `tree` at `target`. Symlinks are copied as symlinks (their
/// targets are never read); directory entries are visited in name order.
pub fn load_overlay(
    tree: &mut Tree,
    src: &Path,
    target: &ImagePath,
    origin: &Origin,
    uid: u32,
    gid: u32,
    budget: super::Budget,
) -> Result<(), OverlayError> {
    let (limits, mut used) = (budget.limits, budget.image_used);
    let meta = host_metadata(src)?;
    if !meta.is_dir() {
        return Err(OverlayError::NotDir(src.to_owned()));
    }
    let walker = walkdir::WalkDir::new(src)
        .follow_links(false)
        .follow_root_links(true)
        .sort_by_file_name();
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(src).to_owned();
            OverlayError::Io {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            }
        })?;
        let host = item.path();
        let rel = host
            .strip_prefix(src)
            .expect("walkdir yields paths below its root");
        let rel = rel
            .to_str()
            .ok_or_else(|| OverlayError::NotUtf8(host.to_owned()))?;
        let mut dest = target.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dest = dest.join(part).map_err(|source| OverlayError::Path {
                path: host.to_owned(),
                source,
            })?;
        }
        let ft = item.file_type();
        let host_mode = if ft.is_symlink() {
            0o777
        } else {
            item.metadata()
                .map_err(|e| OverlayError::Io {
                    path: host.to_owned(),
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("stat failed")),
                })?
                .permissions()
                .mode()
        };
        let entry = if ft.is_dir() {
            Entry::dir(normalised_mode(host_mode, true), origin)
        } else if ft.is_symlink() {
            let t = fs::read_link(host).map_err(io(host))?;
            let t = t
                .into_os_string()
                .into_string()
                .map_err(|_| OverlayError::NotUtf8(host.to_owned()))?;
            Entry::symlink(t, origin)
        } else if ft.is_file() {
            let data = read_limited(host, limits, used, crate::fsio::Links::Refuse)?;
            used += data.len() as u64;
            Entry::file(data, normalised_mode(host_mode, false), origin)
        } else {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "a device node"
            };
            return Err(OverlayError::Special {
                path: host.to_owned(),
                kind,
            });
        };
        tree.insert(&dest, entry.owned_by(uid, gid))?;
    }
    Ok(())
}

/// Reads one host file for a `[[file]]` entry. A directory (or anything but a regular file,
/// after following symlinks the user named) is an error.
pub fn read_host_file(
    src: &Path,
    limits: ExpandLimits,
    image_used: u64,
) -> Result<(Vec<u8>, u32), OverlayError> {
    let meta = host_metadata(src)?;
    if !meta.is_file() {
        return Err(OverlayError::NotAFile {
            path: src.to_owned(),
            kind: if meta.is_dir() {
                "a directory"
            } else {
                "a special file"
            },
        });
    }
    let data = read_limited(src, limits, image_used, crate::fsio::Links::Follow)?;
    Ok((data, normalised_mode(meta.permissions().mode(), false)))
}
