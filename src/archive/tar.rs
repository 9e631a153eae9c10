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

/// Reads a tar back into a tree: directories, regular files, symlinks, hard links and device
/// nodes with their modes and owners, every entry attributed to `origin` (times are not kept:
/// a tree has one, the source date epoch). Paths must stay inside the root (`..` is refused);
/// every hard link must name a regular file of the archive; other entry types (FIFOs,
/// sockets, sparse files) are refused.
pub fn read_tar(mut reader: impl std::io::Read, origin: &str) -> Result<Tree, ArchiveError> {
    use crate::rootfs::{Entry, ImagePath, Origin};
    let origin = Origin::new(origin);
    let mut tree = Tree::new();
    let mut ar = ::tar::Archive::new(&mut reader);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let bad = |why: String| ArchiveError::Entry {
            path: name.clone(),
            why,
        };
        let path = ImagePath::parse_relative(&name).map_err(|e| bad(e.to_string()))?;
        let h = entry.header();
        let mode = h.mode()?;
        let (uid, gid) = (h.uid()?, h.gid()?);
        let id = |v: u64| u32::try_from(v).map_err(|_| bad(format!("owner id {v} is too large")));
        let (uid, gid) = (id(uid)?, id(gid)?);
        let link = || -> Result<String, ArchiveError> {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .ok_or_else(|| bad("a link without a target".into()))
        };
        let kind = match h.entry_type() {
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link()?),
            EntryType::Link => {
                Kind::Hardlink(ImagePath::parse_relative(&link()?).map_err(|e| bad(e.to_string()))?)
            }
            t @ (EntryType::Char | EntryType::Block) => {
                let dev = |v: Option<u32>| v.ok_or_else(|| bad("a device without numbers".into()));
                let (major, minor) = (dev(h.device_major()?)?, dev(h.device_minor()?)?);
                if t == EntryType::Char {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut data = Vec::with_capacity(h.size()?.min(64 << 10) as usize);
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                Kind::File(std::sync::Arc::new(data))
            }
            other => return Err(bad(format!("entry type {other:?} is not supported"))),
        };
        let entry = Entry::new(kind, mode, &origin).owned_by(uid, gid);
        tree.insert(&path, entry).map_err(|e| bad(e.to_string()))?;
    }
    tree.check_links().map_err(|e| ArchiveError::Entry {
        path: "(hard links)".into(),
        why: e.to_string(),
    })?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::{Entry, ImagePath, Origin};

    fn sample() -> Tree {
        let o = Origin::new("test");
        let mut t = Tree::new();
        let p = |s: &str| ImagePath::parse(s).unwrap();
        t.insert(&p("/etc"), Entry::dir(0o755, &o)).unwrap();
        t.insert(
            &p("/etc/passwd"),
            Entry::file(b"root:x:0:0\n".to_vec(), 0o644, &o),
        )
        .unwrap();
        t.insert(
            &p("/srv/fn/app"),
            Entry::file(vec![7; 5000], 0o4750, &o).owned_by(1000, 1000),
        )
        .unwrap();
        t.insert(
            &p("/srv/fn/link"),
            Entry::new(Kind::Hardlink(p("/srv/fn/app")), 0o4750, &o),
        )
        .unwrap();
        t.insert(&p("/bin"), Entry::symlink("usr/bin", &o)).unwrap();
        t.insert(
            &p("/dev/null"),
            Entry::new(Kind::CharDevice { major: 1, minor: 3 }, 0o666, &o),
        )
        .unwrap();
        t
    }

    #[test]
    fn a_tree_read_back_from_its_tar_writes_the_same_tar() {
        let t = sample();
        let tar = write_tar(&t, 1_700_000_000).unwrap();
        let back = read_tar(tar.as_slice(), "layer").unwrap();
        let strip = |t: &Tree| -> Vec<(String, Kind, u32, u32, u32)> {
            t.iter()
                .map(|(p, e)| (p.to_string(), e.kind.clone(), e.mode, e.uid, e.gid))
                .collect()
        };
        assert_eq!(strip(&back), strip(&t));
        assert_eq!(write_tar(&back, 1_700_000_000).unwrap(), tar);
    }

    #[test]
    fn a_tar_escaping_the_root_or_holding_a_fifo_is_refused() {
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        // `append_data` refuses `..` itself: write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let e = read_tar(b.into_inner().unwrap().as_slice(), "layer").unwrap_err();
        assert!(e.to_string().contains("../escape"), "{e}");
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Fifo);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "run/fifo", std::io::empty()).unwrap();
        let e = read_tar(b.into_inner().unwrap().as_slice(), "layer").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
