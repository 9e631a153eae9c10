//! Reading an EROFS image back into a tree: what [`write_erofs`](super::erofs::write_erofs)
//! writes (uncompressed, `FLAT_PLAIN`/`FLAT_INLINE`, no extended attributes; compact or
//! extended inodes), so an image whose only root is `rootfs.erofs` (a node's copy) can still be
//! exported. Everything is bounds-checked: a damaged image is an error naming the path, never
//! a panic or a loop.
//!
//! EROFS keeps one inode per file, so which path of a hard-linked file was the file and which
//! the links is not stored; the inode numbers are in path order of the files, and the paths are
//! chosen to keep that order (which is all that writing the image again depends on).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::erofs::BLOCK;
use super::ArchiveError;
use crate::rootfs::{Entry, ImagePath, Kind, Origin, Tree};

const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: usize = 1024;
const DIRENT_SIZE: usize = 12;

fn err(path: &str, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Entry {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn get<const N: usize>(img: &[u8], at: usize) -> Option<[u8; N]> {
    img.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn u16_at(img: &[u8], at: usize) -> Option<u16> {
    get::<2>(img, at).map(u16::from_le_bytes)
}
fn u32_at(img: &[u8], at: usize) -> Option<u32> {
    get::<4>(img, at).map(u32::from_le_bytes)
}
fn u64_at(img: &[u8], at: usize) -> Option<u64> {
    get::<8>(img, at).map(u64::from_le_bytes)
}

/// One inode as read.
struct Inode {
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u32,
    /// The device number (devices), else the first data block.
    raw: u32,
    content: Vec<u8>,
}

struct Reader<'a> {
    img: &'a [u8],
    meta: usize,
    /// Bytes of content read so far, against the limit.
    budget: u64,
}

impl Reader<'_> {
    fn inode(&mut self, nid: u64, path: &str) -> Result<Inode, ArchiveError> {
        let damaged = || err(path, "damaged EROFS inode");
        let at = usize::try_from(nid)
            .ok()
            .and_then(|n| n.checked_mul(32)?.checked_add(self.meta))
            .ok_or_else(damaged)?;
        let format = u16_at(self.img, at).ok_or_else(damaged)?;
        let extended = format & 1 == 1;
        let layout = (format >> 1) & 0x7;
        if u16_at(self.img, at + 2).ok_or_else(damaged)? != 0 {
            return Err(err(path, "extended attributes are not supported"));
        }
        let mode = u32::from(u16_at(self.img, at + 4).ok_or_else(damaged)?);
        let (size, raw, ino, uid, gid, header) = if extended {
            (
                u64_at(self.img, at + 8),
                u32_at(self.img, at + 16),
                u32_at(self.img, at + 20),
                u32_at(self.img, at + 24),
                u32_at(self.img, at + 28),
                64,
            )
        } else {
            (
                u32_at(self.img, at + 8).map(u64::from),
                u32_at(self.img, at + 16),
                u32_at(self.img, at + 20),
                u16_at(self.img, at + 24).map(u32::from),
                u16_at(self.img, at + 26).map(u32::from),
                32,
            )
        };
        let (size, raw, ino, uid, gid) = (
            size.ok_or_else(damaged)?,
            raw.ok_or_else(damaged)?,
            ino.ok_or_else(damaged)?,
            uid.ok_or_else(damaged)?,
            gid.ok_or_else(damaged)?,
        );
        let is_device = matches!(mode & 0o170000, 0o020000 | 0o060000);
        let content = if is_device || size == 0 {
            Vec::new()
        } else {
            self.budget = self
                .budget
                .checked_sub(size)
                .ok_or_else(|| err(path, "larger than the limit for an image's tree"))?;
            let size = usize::try_from(size).map_err(|_| damaged())?;
            // Uncompressed content lies in the image: it cannot be larger.
            if size > self.img.len() {
                return Err(damaged());
            }
            let tail = match layout {
                0 => 0,
                2 => size % BLOCK,
                other => {
                    return Err(err(
                        path,
                        format!("EROFS data layout {other} is not supported (compressed?)"),
                    ))
                }
            };
            let full = size - tail;
            let mut out = Vec::with_capacity(size);
            if full > 0 {
                let start = (raw as usize).checked_mul(BLOCK).ok_or_else(damaged)?;
                let end = start.checked_add(full).ok_or_else(damaged)?;
                out.extend_from_slice(self.img.get(start..end).ok_or_else(damaged)?);
            }
            if tail > 0 {
                let start = at + header;
                out.extend_from_slice(self.img.get(start..start + tail).ok_or_else(damaged)?);
            }
            out
        };
        Ok(Inode {
            mode,
            uid,
            gid,
            ino,
            raw,
            content,
        })
    }
}

/// A directory's entries (name, nid, without `.` and `..`).
fn dirents(content: &[u8], path: &str) -> Result<Vec<(String, u64)>, ArchiveError> {
    let damaged = || err(path, "damaged EROFS directory");
    let mut out = Vec::new();
    for block in content.chunks(BLOCK) {
        let first = usize::from(u16_at(block, 8).ok_or_else(damaged)?);
        if first == 0 || first % DIRENT_SIZE != 0 || first > block.len() {
            return Err(damaged());
        }
        let count = first / DIRENT_SIZE;
        for k in 0..count {
            let d = k * DIRENT_SIZE;
            let nid = u64_at(block, d).ok_or_else(damaged)?;
            let start = usize::from(u16_at(block, d + 8).ok_or_else(damaged)?);
            let end = if k + 1 < count {
                usize::from(u16_at(block, d + DIRENT_SIZE + 8).ok_or_else(damaged)?)
            } else {
                let rest = block.get(start..).ok_or_else(damaged)?;
                start + rest.iter().position(|&b| b == 0).unwrap_or(rest.len())
            };
            let name = block.get(start..end).ok_or_else(damaged)?;
            let name = std::str::from_utf8(name).map_err(|_| damaged())?;
            if name != "." && name != ".." {
                out.push((name.to_owned(), nid));
            }
        }
    }
    Ok(out)
}

/// Reads an EROFS image (the filesystem part: without a verity tree after it) into a tree,
/// every entry attributed to `origin`, at most `limit` bytes of content.
pub fn read_erofs(img: &[u8], origin: &str, limit: u64) -> Result<Tree, ArchiveError> {
    let bad_sb = |why: &str| err("(superblock)", why);
    if u32_at(img, SUPER_OFFSET) != Some(MAGIC) {
        return Err(bad_sb("not an EROFS image (no magic)"));
    }
    if img.get(SUPER_OFFSET + 12) != Some(&12) {
        return Err(bad_sb("only 4 KiB blocks are supported"));
    }
    let root = u64::from(u16_at(img, SUPER_OFFSET + 14).ok_or_else(|| bad_sb("truncated"))?);
    let meta = u32_at(img, SUPER_OFFSET + 40).ok_or_else(|| bad_sb("truncated"))? as usize * BLOCK;
    let mut r = Reader {
        img,
        meta,
        budget: limit,
    };
    let origin = Origin::new(origin);
    // Every path of every inode, then one tree entry per path.
    let mut paths: BTreeMap<u64, (Inode, Vec<ImagePath>)> = BTreeMap::new();
    let mut dirs: Vec<(ImagePath, u64)> = vec![(ImagePath::root(), root)];
    let mut seen_dirs = BTreeSet::new();
    let mut tree = Tree::new();
    while let Some((path, nid)) = dirs.pop() {
        if !seen_dirs.insert(nid) {
            return Err(err(
                path.as_str(),
                "a directory that appears twice (a loop)",
            ));
        }
        let inode = r.inode(nid, path.as_str())?;
        if inode.mode & 0o170000 != 0o040000 {
            return Err(err(path.as_str(), "not a directory"));
        }
        tree.insert(
            &path,
            Entry::dir(inode.mode, &origin).owned_by(inode.uid, inode.gid),
        )
        .map_err(|e| err(path.as_str(), e.to_string()))?;
        for (name, child) in dirents(&inode.content, path.as_str())? {
            let p = path
                .join(&name)
                .map_err(|e| err(path.as_str(), e.to_string()))?;
            let ci = r.inode(child, p.as_str())?;
            if ci.mode & 0o170000 == 0o040000 {
                dirs.push((p, child));
            } else {
                paths
                    .entry(child)
                    .or_insert_with(|| (ci, Vec::new()))
                    .1
                    .push(p);
            }
        }
    }
    // The file of a hard-linked inode: the first of its paths after the previous inode's file
    // (inode numbers follow the files' path order).
    let mut inodes: Vec<(Inode, Vec<ImagePath>)> = paths.into_values().collect();
    inodes.sort_by_key(|(i, _)| i.ino);
    let mut last: Option<ImagePath> = None;
    for (inode, mut ps) in inodes {
        ps.sort();
        let pick = ps
            .iter()
            .position(|p| last.as_ref().map_or(true, |l| p > l))
            .unwrap_or(0);
        let file = ps.remove(pick);
        let kind = kind_of(&inode, file.as_str())?;
        tree.insert(
            &file,
            Entry::new(kind, inode.mode, &origin).owned_by(inode.uid, inode.gid),
        )
        .map_err(|e| err(file.as_str(), e.to_string()))?;
        for p in ps {
            let link = Entry::new(Kind::Hardlink(file.clone()), inode.mode, &origin)
                .owned_by(inode.uid, inode.gid);
            tree.insert(&p, link)
                .map_err(|e| err(p.as_str(), e.to_string()))?;
        }
        last = Some(file);
    }
    tree.check_links()
        .map_err(|e| err("(hard links)", e.to_string()))?;
    Ok(tree)
}

fn kind_of(inode: &Inode, path: &str) -> Result<Kind, ArchiveError> {
    let dev = inode.raw;
    let (major, minor) = ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00));
    Ok(match inode.mode & 0o170000 {
        0o100000 => Kind::File(Arc::new(inode.content.clone())),
        0o120000 => Kind::Symlink(
            String::from_utf8(inode.content.clone())
                .map_err(|_| err(path, "a symlink target that is not UTF-8"))?,
        ),
        0o020000 => Kind::CharDevice { major, minor },
        0o060000 => Kind::BlockDevice { major, minor },
        other => return Err(err(path, format!("file type {other:o} is not supported"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::erofs::write_erofs;

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    #[test]
    fn an_image_read_back_writes_the_same_image() {
        let o = Origin::new("t");
        let mut t = Tree::new();
        t.insert(&p("/etc/hostname"), Entry::file(b"x\n".to_vec(), 0o644, &o))
            .unwrap();
        t.insert(&p("/bin"), Entry::symlink("usr/bin", &o)).unwrap();
        t.insert(
            &p("/usr/bin/b"),
            Entry::file(vec![3; 9000], 0o4755, &o).owned_by(7, 8),
        )
        .unwrap();
        // A hard link whose path sorts before its file's.
        t.insert(
            &p("/usr/bin/a"),
            Entry::new(Kind::Hardlink(p("/usr/bin/b")), 0o4755, &o),
        )
        .unwrap();
        t.insert(
            &p("/dev/null"),
            Entry::new(Kind::CharDevice { major: 1, minor: 3 }, 0o666, &o),
        )
        .unwrap();
        for i in 0..300 {
            t.insert(
                &p(&format!("/many/f{i:03}")),
                Entry::file(vec![i as u8; i], 0o600, &o),
            )
            .unwrap();
        }
        let img = write_erofs(&t, 1_700_000_000).unwrap();
        let back = read_erofs(&img, "rootfs.erofs", 1 << 30).unwrap();
        assert_eq!(write_erofs(&back, 1_700_000_000).unwrap(), img);
        // The same entries (of the hard-linked pair, which one is the file is not stored).
        let listing = |t: &Tree| -> Vec<(String, u32, u32, u32, u64)> {
            t.iter()
                .map(|(p, e)| (p.to_string(), e.mode, e.uid, e.gid, e.size()))
                .collect()
        };
        let (a, b) = (listing(&back), listing(&t));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            if !x.0.starts_with("/usr/bin/") {
                assert_eq!(x, y);
            }
        }
        let dev = back.get(&p("/dev/null")).unwrap();
        assert_eq!(dev.kind, Kind::CharDevice { major: 1, minor: 3 });
    }

    #[test]
    fn a_damaged_image_is_an_error_not_a_panic() {
        let o = Origin::new("t");
        let mut t = Tree::new();
        t.insert(&p("/etc/hostname"), Entry::file(b"x\n".to_vec(), 0o644, &o))
            .unwrap();
        let img = write_erofs(&t, 1).unwrap();
        for at in (1024..img.len()).step_by(7) {
            let mut bad = img.clone();
            bad[at] ^= 0xff;
            let _ = read_erofs(&bad, "x", 1 << 20);
        }
        assert!(read_erofs(&img[..2000], "x", 1 << 20).is_err());
        assert!(read_erofs(&img, "x", 1).is_err());
    }
}
