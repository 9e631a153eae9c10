//! cpio "newc" (SVR4, no CRC) as the kernel's initramfs unpacker reads it
//! (`init/initramfs.c`): directories before their contents, inode numbers assigned in path
//! order, hard links sharing an inode with the data on the last member (GNU cpio's layout,
//! which the kernel also accepts), `mtime` = the source date epoch.

use std::collections::HashMap;

use super::ArchiveError;
use crate::rootfs::{Entry, ImagePath, Kind, Tree};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev_major: u32,
    rdev_minor: u32,
    name: &'a str,
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn push_header(out: &mut Vec<u8>, h: &Header) {
    use std::fmt::Write;
    let mut s = String::with_capacity(110);
    let namesize = h.name.len() as u32 + 1;
    // c_magic c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_devmajor c_devminor
    // c_rdevmajor c_rdevminor c_namesize c_check
    let _ = write!(
        s,
        "{MAGIC}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        h.filesize,
        0,
        0,
        h.rdev_major,
        h.rdev_minor,
        namesize,
        0
    );
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(h.name.as_bytes());
    out.push(0);
    pad4(out);
}

/// Writes the tree as an uncompressed newc archive. Names are root-relative (`etc/passwd`);
/// the root itself is `.`.
pub fn write_cpio(tree: &Tree, mtime: u64) -> Result<Vec<u8>, ArchiveError> {
    let mtime = u32::try_from(mtime).map_err(|_| ArchiveError::Entry {
        path: "/".into(),
        why: "cpio newc cannot store dates after 2106".into(),
    })?;
    let inodes = Inodes::assign(tree)?;
    let mut out = Vec::new();
    for (path, e) in tree.iter() {
        push_member(&mut out, tree, &inodes, path, e, mtime)?;
    }
    push_header(
        &mut out,
        &Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev_major: 0,
            rdev_minor: 0,
            name: TRAILER,
        },
    );
    Ok(out)
}

/// Inode numbers, link counts, and which member of a shared inode carries the data.
struct Inodes<'a> {
    ino: HashMap<&'a ImagePath, u32>,
    nlink: HashMap<u32, u32>,
    /// For each shared inode, the last member in path order: it carries the data.
    data_on: HashMap<u32, &'a ImagePath>,
}

impl<'a> Inodes<'a> {
    /// Inodes in path order; hard links share their target's inode.
    fn assign(tree: &'a Tree) -> Result<Inodes<'a>, ArchiveError> {
        let mut inodes = Inodes {
            ino: HashMap::new(),
            nlink: HashMap::new(),
            data_on: HashMap::new(),
        };
        let mut next = 1u32;
        for (path, e) in tree.iter() {
            if let Kind::Hardlink(_) = e.kind {
                continue;
            }
            inodes.ino.insert(path, next);
            let links = if matches!(e.kind, Kind::Dir) { 2 } else { 1 };
            inodes.nlink.insert(next, links);
            next += 1;
        }
        for (_, e) in tree.iter() {
            if let Kind::Hardlink(target) = &e.kind {
                let ino = *inodes.ino.get(target).ok_or_else(|| ArchiveError::Entry {
                    path: target.to_string(),
                    why: "hard link target missing".into(),
                })?;
                *inodes.nlink.get_mut(&ino).expect("every inode has a count") += 1;
            }
        }
        for (path, e) in tree.iter() {
            let ino = match &e.kind {
                Kind::Hardlink(t) => inodes.ino[t],
                Kind::File(_) => inodes.ino[path],
                _ => continue,
            };
            if inodes.nlink[&ino] > 1 {
                inodes.data_on.insert(ino, path);
            }
        }
        Ok(inodes)
    }
}

/// One member: its header, then its data (a file's bytes, a link's target) unless another
/// member of the same inode carries them.
fn push_member(
    out: &mut Vec<u8>,
    tree: &Tree,
    inodes: &Inodes,
    path: &ImagePath,
    e: &Entry,
    mtime: u32,
) -> Result<(), ArchiveError> {
    let name = if path.is_root() { "." } else { path.relative() };
    let (ino, data): (u32, &[u8]) = match &e.kind {
        Kind::File(d) => (inodes.ino[path], d.as_slice()),
        Kind::Hardlink(t) => match &tree.get(t).map(|t| &t.kind) {
            Some(Kind::File(d)) => (inodes.ino[t], d.as_slice()),
            _ => {
                return Err(ArchiveError::Entry {
                    path: path.to_string(),
                    why: "hard link target is not a regular file".into(),
                })
            }
        },
        Kind::Symlink(t) => (inodes.ino[path], t.as_bytes()),
        _ => (inodes.ino[path], &[]),
    };
    let nlink = inodes.nlink[&ino];
    let data =
        if nlink > 1 && !matches!(e.kind, Kind::Dir) && inodes.data_on.get(&ino) != Some(&path) {
            &[][..]
        } else {
            data
        };
    let filesize = u32::try_from(data.len()).map_err(|_| ArchiveError::Entry {
        path: path.to_string(),
        why: "cpio newc cannot store files of 4 GiB or more".into(),
    })?;
    let (rdev_major, rdev_minor) = match e.kind {
        Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => (major, minor),
        _ => (0, 0),
    };
    push_header(
        out,
        &Header {
            ino,
            mode: e.kind.type_bits() | e.mode,
            uid: e.uid,
            gid: e.gid,
            nlink,
            mtime,
            filesize,
            rdev_major,
            rdev_minor,
            name,
        },
    );
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// A member of a newc archive, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub mode: u32,
    pub ino: u32,
    pub nlink: u32,
    pub data: Vec<u8>,
}

/// Reads a newc archive back (for tests and `inspect`). Stops at the trailer.
pub fn read_cpio(mut bytes: &[u8]) -> Result<Vec<Member>, ArchiveError> {
    let bad = |why: &str| ArchiveError::Entry {
        path: "initramfs".into(),
        why: why.into(),
    };
    let total = bytes.len();
    let mut out = Vec::new();
    loop {
        if bytes.len() < 110 || &bytes[..6] != MAGIC.as_bytes() {
            return Err(bad("not a newc member header"));
        }
        let field = |i: usize| -> Result<u32, ArchiveError> {
            let s = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8])
                .map_err(|_| bad("bad header"))?;
            u32::from_str_radix(s, 16).map_err(|_| bad("bad header"))
        };
        let (ino, mode, nlink, filesize, namesize) = (
            field(0)?,
            field(1)?,
            field(4)?,
            field(6)? as usize,
            field(11)? as usize,
        );
        let name_end = 110 + namesize;
        if namesize == 0 || bytes.len() < name_end {
            return Err(bad("truncated name"));
        }
        let name = String::from_utf8_lossy(&bytes[110..name_end - 1]).into_owned();
        let data_start = (name_end + 3) & !3;
        let data_end = data_start + filesize;
        if bytes.len() < data_end {
            return Err(bad("truncated data"));
        }
        let data = bytes[data_start..data_end].to_vec();
        let next = ((data_end + 3) & !3).min(bytes.len());
        bytes = &bytes[next..];
        if name == TRAILER {
            return Ok(out);
        }
        out.push(Member {
            name,
            mode,
            ino,
            nlink,
            data,
        });
        if bytes.is_empty() {
            return Err(bad(&format!("no trailer after {} bytes", total)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Origin;
    use sha2::{Digest, Sha256};

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    /// Every kind of member: directories, files, a symlink, devices, and a file with two hard
    /// links (the data goes on the last of the three in path order).
    fn sample() -> Tree {
        let o = Origin::new("t");
        let mut t = Tree::new();
        t.insert(&p("/bin"), Entry::dir(0o755, &o)).unwrap();
        t.insert(&p("/bin/a"), Entry::file(b"shared\n".to_vec(), 0o755, &o))
            .unwrap();
        t.insert(
            &p("/bin/b"),
            Entry::new(Kind::Hardlink(p("/bin/a")), 0o755, &o),
        )
        .unwrap();
        t.insert(
            &p("/bin/c"),
            Entry::new(Kind::Hardlink(p("/bin/a")), 0o755, &o),
        )
        .unwrap();
        t.insert(&p("/dev"), Entry::dir(0o755, &o)).unwrap();
        let console = Kind::CharDevice { major: 5, minor: 1 };
        t.insert(&p("/dev/console"), Entry::new(console, 0o600, &o))
            .unwrap();
        let vda = Kind::BlockDevice {
            major: 254,
            minor: 0,
        };
        t.insert(&p("/dev/vda"), Entry::new(vda, 0o600, &o))
            .unwrap();
        t.insert(
            &p("/etc/passwd"),
            Entry::file(b"root:x:0:0::/:/bin/sh\n".to_vec(), 0o644, &o).owned_by(0, 0),
        )
        .unwrap();
        t.insert(&p("/sbin"), Entry::symlink("bin", &o)).unwrap();
        t
    }

    #[test]
    fn the_archive_bytes_are_pinned() {
        let a = write_cpio(&sample(), 1_700_000_000).unwrap();
        // Any change to these bytes changes every initramfs: it must be deliberate.
        assert_eq!(
            hex::encode(Sha256::digest(&a)),
            "5303351e9d77df9963e7d4404dd37d1d4dac058e55532432d0e24b33973d334b"
        );
        let members = read_cpio(&a).unwrap();
        let get = |n: &str| members.iter().find(|m| m.name == n).unwrap();
        let (x, y, z) = (get("bin/a"), get("bin/b"), get("bin/c"));
        assert_eq!((x.ino, x.nlink), (y.ino, 3));
        assert_eq!(y.ino, z.ino);
        assert!(x.data.is_empty() && y.data.is_empty());
        assert_eq!(z.data, b"shared\n");
    }

    #[test]
    fn a_hard_link_to_a_missing_file_is_refused() {
        let o = Origin::new("t");
        let mut t = Tree::new();
        t.insert(&p("/b"), Entry::new(Kind::Hardlink(p("/a")), 0o644, &o))
            .unwrap();
        assert!(write_cpio(&t, 0).is_err());
    }
}
