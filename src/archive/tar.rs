//! A deterministic tar (GNU format) of a tree: headers built field by field, entries in
//! path order, `mtime` = the source date epoch, no user or group names.

use std::collections::BTreeMap;

use ::tar::{Builder, EntryType, Header};

use super::ArchiveError;
use crate::rootfs::{Kind, Tree};

/// Writes the whole tree as an uncompressed tar. Paths are `./`-relative; the root is `./`.
pub fn write_tar(tree: &Tree, mtime: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut b = Builder::new(Vec::new());
    b.mode(::tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    for (path, e) in tree.iter() {
        let name = if path.is_root() {
            "./".to_owned()
        } else if matches!(e.kind, Kind::Dir) {
            format!("./{}/", path.relative())
        } else {
            format!("./{}", path.relative())
        };
        let mut h = Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid.into());
        h.set_gid(e.gid.into());
        h.set_mtime(mtime);
        h.set_size(0);
        let err = |why: std::io::Error| ArchiveError::Entry {
            path: path.to_string(),
            why: why.to_string(),
        };
        match &e.kind {
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                b.append_data(&mut h, &name, std::io::empty())
                    .map_err(err)?;
            }
            Kind::File(data) => {
                h.set_entry_type(EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &name, data.as_slice()).map_err(err)?;
            }
            Kind::Symlink(target) => {
                h.set_entry_type(EntryType::Symlink);
                b.append_link(&mut h, &name, target).map_err(err)?;
            }
            Kind::Hardlink(target) => {
                h.set_entry_type(EntryType::Link);
                b.append_link(&mut h, &name, format!("./{}", target.relative()))
                    .map_err(err)?;
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                h.set_entry_type(if matches!(e.kind, Kind::CharDevice { .. }) {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                h.set_device_major(*major).map_err(err)?;
                h.set_device_minor(*minor).map_err(err)?;
                b.append_data(&mut h, &name, std::io::empty())
                    .map_err(err)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// One member of a tar, as listed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub kind: char,
}

/// Lists a tar's members (path without the leading `./`, size, type letter), for inspection.
pub fn list_tar(bytes: &[u8]) -> Result<Vec<Listed>, ArchiveError> {
    let mut out = Vec::new();
    let mut ar = ::tar::Archive::new(bytes);
    for entry in ar.entries()? {
        let entry = entry?;
        let h = entry.header();
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let kind = match h.entry_type() {
            EntryType::Regular => 'f',
            EntryType::Directory => 'd',
            EntryType::Symlink => 'l',
            EntryType::Link => 'h',
            EntryType::Char => 'c',
            EntryType::Block => 'b',
            _ => '?',
        };
        out.push(Listed {
            path,
            size: h.size()?,
            kind,
        });
    }
    Ok(out)
}

/// Bytes per top-level directory, for summaries.
pub fn bytes_by_top_dir(listed: &[Listed]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in listed {
        let top = l.path.split('/').next().unwrap_or("").to_owned();
        *m.entry(top).or_insert(0) += l.size;
    }
    m
}
