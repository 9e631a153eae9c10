//! An EROFS image writer: the tree as an uncompressed, read-only EROFS filesystem (the format of
//! Linux's `fs/erofs/erofs_fs.h`), fed from the same [`Tree`] as the tar and cpio writers, so
//! owners, modes and times are exactly the tree's (no host files, no root needed) and the bytes
//! depend on nothing else.
//!
//! Layout: block 0 holds the superblock (at byte 1024); the metadata area starts at block 1
//! with the root directory's inode first (its nid must fit 16 bits), then every inode in path
//! order, each 64 bytes ("extended": 32-bit ids, the mtime) followed by its inline tail
//! (symlink targets, small directories; `FLAT_INLINE`, never across a block boundary); then
//! the data area: every regular file's blocks (`FLAT_PLAIN`, so file pages map 1:1 to disk
//! blocks), and large directories' full blocks.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ArchiveError;
use crate::rootfs::{ImagePath, Kind, Tree};

pub const BLOCK: usize = 4096;
const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: usize = 1024;
const INODE_SIZE: usize = 64;
const DIRENT_SIZE: usize = 12;
const NULL_ADDR: u32 = u32::MAX;
const META_BLKADDR: u32 = 1;

// i_format: bit 0 the inode version (1 = extended), bits 1-3 the data layout.
const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;
const VERSION_EXTENDED: u16 = 1;

// Directory entry file types (the generic FT_* values).
const FT_REG_FILE: u8 = 1;
const FT_DIR: u8 = 2;
const FT_CHRDEV: u8 = 3;
const FT_BLKDEV: u8 = 4;
const FT_SYMLINK: u8 = 7;

/// One inode to write.
struct Inode {
    path: ImagePath,
    kind: InodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    /// The bytes of a file or symlink; directories are laid out later.
    data: Vec<u8>,
    /// Children of a directory: (name, inode index).
    children: Vec<(String, usize)>,
    parent: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InodeKind {
    Dir,
    File,
    Symlink,
    Char(u32),
    Block(u32),
}

impl InodeKind {
    fn ft(self) -> u8 {
        match self {
            InodeKind::Dir => FT_DIR,
            InodeKind::File => FT_REG_FILE,
            InodeKind::Symlink => FT_SYMLINK,
            InodeKind::Char(_) => FT_CHRDEV,
            InodeKind::Block(_) => FT_BLKDEV,
        }
    }
}

/// Linux's `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// A directory's entries packed into blocks: per block, the dirents, then their names.
/// Returns the blocks' entries (name, inode index) so the caller can fill in nids.
fn pack_dir(entries: &[(String, usize)]) -> DirBlocks {
    let mut blocks: Vec<Vec<(String, usize)>> = vec![Vec::new()];
    let mut used = 0;
    for (name, ino) in entries {
        let need = DIRENT_SIZE + name.len();
        if used + need > BLOCK {
            blocks.push(Vec::new());
            used = 0;
        }
        used += need;
        blocks
            .last_mut()
            .expect("one block")
            .push((name.clone(), *ino));
    }
    blocks
}

/// The bytes a packed directory occupies: full blocks, the last one only as long as it is.
fn dir_size(blocks: &DirBlocks) -> usize {
    let last: usize = blocks
        .last()
        .map_or(0, |b| b.iter().map(|(n, _)| DIRENT_SIZE + n.len()).sum());
    (blocks.len() - 1) * BLOCK + last
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A directory's entries, block by block.
type DirBlocks = Vec<Vec<(String, usize)>>;

fn bad(path: &ImagePath, why: &str) -> ArchiveError {
    ArchiveError::Entry {
        path: path.to_string(),
        why: why.to_owned(),
    }
}

/// Writes the tree as an EROFS image; every mtime is `epoch`. The volume UUID is derived from
/// the tree's content.
pub fn write_erofs(tree: &Tree, epoch: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut inodes = collect_inodes(tree)?;
    link_entries(tree, &mut inodes)?;
    let layout = Layout::plan(&inodes)?;
    let mut img = vec![0u8; layout.total_blocks * BLOCK];
    for i in 0..inodes.len() {
        layout.write_inode(&inodes, i, epoch, &mut img);
    }
    write_superblock(&mut img, &layout, inodes.len(), epoch);
    Ok(img)
}

/// One inode per tree entry, in path order (the root first); hard links are left to
/// [`link_entries`], which gives them their target's inode.
fn collect_inodes(tree: &Tree) -> Result<Vec<Inode>, ArchiveError> {
    let mut inodes: Vec<Inode> = Vec::new();
    for (path, e) in tree.iter() {
        let (kind, data) = match &e.kind {
            Kind::Hardlink(_) => continue,
            Kind::Dir => (InodeKind::Dir, Vec::new()),
            Kind::File(d) => (InodeKind::File, d.as_slice().to_vec()),
            Kind::Symlink(t) => (InodeKind::Symlink, t.as_bytes().to_vec()),
            Kind::CharDevice { major, minor } => {
                (InodeKind::Char(encode_dev(*major, *minor)), Vec::new())
            }
            Kind::BlockDevice { major, minor } => {
                (InodeKind::Block(encode_dev(*major, *minor)), Vec::new())
            }
        };
        if kind == InodeKind::Symlink && data.len() >= BLOCK {
            return Err(bad(path, "symlink target longer than 4095 bytes"));
        }
        inodes.push(Inode {
            path: path.clone(),
            kind,
            mode: e.kind.type_bits() | (e.mode & 0o7777),
            uid: e.uid,
            gid: e.gid,
            nlink: if kind == InodeKind::Dir { 2 } else { 1 },
            data,
            children: Vec::new(),
            parent: 0,
        });
    }
    if !inodes.first().is_some_and(|i| i.path.is_root()) {
        return Err(bad(&ImagePath::root(), "the tree has no root directory"));
    }
    Ok(inodes)
}

/// Directory entries and link counts: every path becomes a name in its parent's directory.
fn link_entries(tree: &Tree, inodes: &mut [Inode]) -> Result<(), ArchiveError> {
    let index: BTreeMap<ImagePath, usize> = inodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.path.clone(), i))
        .collect();
    for (path, e) in tree.iter().filter(|(p, _)| !p.is_root()) {
        let ino = match &e.kind {
            Kind::Hardlink(t) => {
                let i = *index
                    .get(t)
                    .ok_or_else(|| bad(path, "hard link to a path not in the tree"))?;
                inodes[i].nlink += 1;
                i
            }
            _ => index[path],
        };
        let parent = *index
            .get(&path.parent().expect("not the root"))
            .ok_or_else(|| bad(path, "its parent is not in the tree"))?;
        if inodes[parent].kind != InodeKind::Dir {
            return Err(bad(path, "its parent is not a directory"));
        }
        let name = path.file_name().expect("not the root").to_owned();
        inodes[parent].children.push((name, ino));
        if inodes[ino].kind == InodeKind::Dir {
            inodes[ino].parent = parent;
            inodes[parent].nlink += 1;
        }
    }
    Ok(())
}

/// Where everything goes.
struct Layout {
    /// Per inode: its directory blocks (directories only).
    dirs: Vec<Option<DirBlocks>>,
    /// Per inode: bytes of content.
    sizes: Vec<usize>,
    /// Per inode: offset in the metadata area (the nid is this / 32).
    meta_off: Vec<usize>,
    /// Per inode: the first block of its data in the data area, or NULL_ADDR.
    blkaddr: Vec<u32>,
    total_blocks: usize,
}

impl Layout {
    fn plan(inodes: &[Inode]) -> Result<Layout, ArchiveError> {
        // Directory layouts first: their sizes only depend on names.
        let dirs: Vec<Option<DirBlocks>> = inodes
            .iter()
            .enumerate()
            .map(|(i, ino)| {
                (ino.kind == InodeKind::Dir).then(|| {
                    let mut entries = ino.children.clone();
                    entries.push((".".into(), i));
                    entries.push(("..".into(), ino.parent));
                    // Lookups binary-search names in byte order, "." and ".." included.
                    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    pack_dir(&entries)
                })
            })
            .collect();
        let sizes: Vec<usize> = inodes
            .iter()
            .zip(&dirs)
            .map(|(ino, d)| d.as_ref().map_or(ino.data.len(), dir_size))
            .collect();
        let mut layout = Layout {
            meta_off: vec![0; inodes.len()],
            blkaddr: vec![NULL_ADDR; inodes.len()],
            dirs,
            sizes,
            total_blocks: 0,
        };
        // Inodes with their inline tails in the metadata area...
        let mut cursor = 0usize;
        for i in 0..inodes.len() {
            let need = INODE_SIZE + layout.inline_len(inodes, i);
            if cursor % BLOCK + need > BLOCK {
                cursor = cursor.div_ceil(BLOCK) * BLOCK;
            }
            layout.meta_off[i] = cursor;
            cursor = (cursor + need).div_ceil(32) * 32;
        }
        if layout.nid(0) > u64::from(u16::MAX) {
            return Err(bad(&ImagePath::root(), "root inode out of range"));
        }
        // ...then every full block in the data area.
        let mut next_block = META_BLKADDR as usize + cursor.div_ceil(BLOCK).max(1);
        for i in 0..inodes.len() {
            let size = layout.sizes[i];
            let blocks =
                size / BLOCK + usize::from(layout.inline_len(inodes, i) == 0 && size % BLOCK != 0);
            if blocks > 0 {
                layout.blkaddr[i] = u32::try_from(next_block)
                    .map_err(|_| bad(&inodes[i].path, "the image is larger than EROFS's 16 TiB"))?;
                next_block += blocks;
            }
        }
        layout.total_blocks = next_block;
        Ok(layout)
    }

    /// A tail that fits after the inode in one block goes inline (symlinks, directories).
    fn inline_len(&self, inodes: &[Inode], i: usize) -> usize {
        let size = self.sizes[i];
        match inodes[i].kind {
            InodeKind::Symlink | InodeKind::Dir
                if size % BLOCK != 0 && size % BLOCK + INODE_SIZE <= BLOCK =>
            {
                size % BLOCK
            }
            _ => 0,
        }
    }

    fn nid(&self, i: usize) -> u64 {
        (self.meta_off[i] / 32) as u64
    }

    /// A file's or link's bytes, or a directory's blocks with the children's nids.
    fn content(&self, inodes: &[Inode], i: usize) -> Vec<u8> {
        let Some(blocks) = &self.dirs[i] else {
            return inodes[i].data.clone();
        };
        let mut out = Vec::with_capacity(self.sizes[i]);
        for (bi, entries) in blocks.iter().enumerate() {
            let mut block = vec![0u8; BLOCK];
            let mut nameoff = entries.len() * DIRENT_SIZE;
            for (k, (name, child)) in entries.iter().enumerate() {
                let d = k * DIRENT_SIZE;
                put64(&mut block, d, self.nid(*child));
                put16(&mut block, d + 8, nameoff as u16);
                block[d + 10] = inodes[*child].kind.ft();
                block[nameoff..nameoff + name.len()].copy_from_slice(name.as_bytes());
                nameoff += name.len();
            }
            // Every block but the last is whole; the last ends with its last name.
            let used = if bi + 1 < blocks.len() {
                BLOCK
            } else {
                nameoff
            };
            out.extend_from_slice(&block[..used]);
        }
        out
    }

    /// The 64-byte extended inode, its inline tail and its data blocks.
    fn write_inode(&self, inodes: &[Inode], i: usize, epoch: u64, img: &mut [u8]) {
        let ino = &inodes[i];
        let content = self.content(inodes, i);
        debug_assert_eq!(content.len(), self.sizes[i]);
        let tail = self.inline_len(inodes, i);
        let layout = if tail > 0 {
            LAYOUT_FLAT_INLINE
        } else {
            LAYOUT_FLAT_PLAIN
        };
        let at = META_BLKADDR as usize * BLOCK + self.meta_off[i];
        let h = &mut img[at..at + INODE_SIZE];
        put16(h, 0, VERSION_EXTENDED | (layout << 1));
        put16(h, 2, 0); // no xattrs
        put16(h, 4, (ino.mode & 0xffff) as u16);
        put64(h, 8, self.sizes[i] as u64);
        let i_u = match ino.kind {
            InodeKind::Char(d) | InodeKind::Block(d) => d,
            _ => self.blkaddr[i],
        };
        put32(h, 16, i_u);
        put32(h, 20, i as u32 + 1); // i_ino
        put32(h, 24, ino.uid);
        put32(h, 28, ino.gid);
        put64(h, 32, epoch);
        put32(h, 40, 0);
        put32(h, 44, ino.nlink);
        let full_len = content.len() - tail;
        if full_len > 0 {
            let start = self.blkaddr[i] as usize * BLOCK;
            img[start..start + full_len].copy_from_slice(&content[..full_len]);
        }
        if tail > 0 {
            img[at + INODE_SIZE..at + INODE_SIZE + tail].copy_from_slice(&content[full_len..]);
        }
    }
}

/// The superblock, with a UUID derived from everything else in the image.
fn write_superblock(img: &mut [u8], layout: &Layout, inodes: usize, epoch: u64) {
    let uuid: [u8; 16] = {
        let mut h = Sha256::new();
        h.update(b"stratos-erofs-uuid\0");
        h.update(&*img);
        let d = h.finalize();
        let mut u = [0u8; 16];
        u.copy_from_slice(&d[..16]);
        u[6] = (u[6] & 0x0f) | 0x50; // version 5 style (name-based, SHA)
        u[8] = (u[8] & 0x3f) | 0x80;
        u
    };
    let sb = &mut img[SUPER_OFFSET..SUPER_OFFSET + 128];
    put32(sb, 0, MAGIC);
    put32(sb, 4, 0); // no checksum (EROFS_FEATURE_COMPAT_SB_CHKSUM unset)
    put32(sb, 8, 0); // feature_compat
    sb[12] = 12; // blkszbits: 4 KiB
    sb[13] = 0; // sb_extslots
    put16(sb, 14, layout.nid(0) as u16);
    put64(sb, 16, inodes as u64);
    put64(sb, 24, epoch);
    put32(sb, 32, 0);
    put32(sb, 36, layout.total_blocks as u32);
    put32(sb, 40, META_BLKADDR);
    put32(sb, 44, 0); // xattr_blkaddr
    sb[48..64].copy_from_slice(&uuid);
    // volume_name (16 bytes) empty; feature_incompat 0: plain, uncompressed.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::{Entry, Origin};

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    #[test]
    fn directories_pack_into_blocks_in_name_order() {
        let many: Vec<(String, usize)> = (0..400).map(|i| (format!("file-{i:04}"), i)).collect();
        let blocks = pack_dir(&many);
        assert!(blocks.len() > 1);
        for b in &blocks {
            let used: usize = b.iter().map(|(n, _)| DIRENT_SIZE + n.len()).sum();
            assert!(used <= BLOCK);
        }
        assert_eq!(blocks.iter().map(Vec::len).sum::<usize>(), 400);
    }

    #[test]
    fn writes_a_superblock_and_is_deterministic() {
        let o = Origin::new("t");
        let mut t = Tree::new();
        t.insert(&p("/etc"), Entry::dir(0o755, &o)).unwrap();
        t.insert(&p("/etc/hostname"), Entry::file(b"x\n".to_vec(), 0o644, &o))
            .unwrap();
        t.insert(&p("/bin"), Entry::symlink("usr/bin", &o)).unwrap();
        let a = write_erofs(&t, 1_700_000_000).unwrap();
        let b = write_erofs(&t, 1_700_000_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len() % BLOCK, 0);
        assert_eq!(u32::from_le_bytes(a[1024..1028].try_into().unwrap()), MAGIC);
        assert_ne!(write_erofs(&t, 1).unwrap(), a);
    }
}
