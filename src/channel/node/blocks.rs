//! A verity-protected root filesystem image fetched block by block: only the blocks the node
//! does not already hold cross the network.
//!
//! The image's dm-verity tree is a signed per-block index: its root hash is in the signed
//! manifest, and its bottom level holds the hash of every 4 KiB data block (the salt is the
//! image's, not the data's, so two builds of one image share the hashes of the blocks they
//! share). So the node
//!
//! 1. fetches the new image's tree (the bytes after the data: ~0.8% of the file): first its
//!    upper part (the superblock and the levels above the bottom one, a few blocks), checked
//!    level by level against the manifest's root hash, which then gives the hash of every
//!    hash block of the bottom level; then only the bottom-level hash blocks the trees it holds
//!    do not have (each checked against its hash); the whole tree is checked once more;
//! 2. indexes the blocks it holds: the trees of the root images it already has, verified the
//!    same way against their own manifests (reading a tree costs 0.8% of an image; no data
//!    block is hashed to build the index);
//! 3. copies every block whose hash it finds locally (checking the copy against the hash),
//!    keeps the blocks an interrupted fetch already wrote (checked the same way);
//! 4. fetches the rest with `Range` requests, neighbours and short gaps coalesced, and checks
//!    every block against its hash before writing it.
//!
//! The caller then checks the whole file's sha256 against the manifest, as for any artifact.
//! Anything served wrong (a tree that is not the signed one, a block that does not match, a
//! short range) or a server without `Range` support ends this with [`Outcome::Fallback`] and
//! why: the caller downloads the whole artifact instead.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::state::failpoint;
use super::transport::{Ranged, Source};
use crate::archive::verity::{self, VerityInfo, BLOCK};
use crate::channel::error::ChannelError;
use crate::fsio::{self, Links};
use crate::sign::manifest::Artifact;

/// Missing blocks at most this many blocks apart are fetched in one request, the blocks
/// between them included (a request costs more than 16 KiB on most links).
const GAP: u64 = 4;
/// The most blocks one request asks for (4 MiB: what is held in memory to be checked).
const MAX_RUN: u64 = 1024;

type Leaf = [u8; 32];

/// The data blocks of the root images a node holds, by their hash in their image's tree.
pub(super) struct BlockIndex {
    salt: Vec<u8>,
    files: Vec<File>,
    by_leaf: HashMap<Leaf, (usize, u64)>,
    /// The hash blocks of the held trees' bottom levels, by their own hash (what the level
    /// above holds for them): a new tree's bottom-level blocks found here are not fetched.
    hash_blocks: HashMap<Leaf, Vec<u8>>,
}

impl BlockIndex {
    /// The blocks of every root image in `roots` (its file and its manifest's verity
    /// parameters) whose salt is `salt` (others' hashes cannot match). An image whose tree
    /// does not check out against its manifest offers nothing (a note says why).
    pub(super) fn new(
        salt: &str,
        roots: impl IntoIterator<Item = (PathBuf, VerityInfo)>,
        notes: &mut Vec<String>,
    ) -> BlockIndex {
        let mut index = BlockIndex {
            salt: hex::decode(salt).unwrap_or_default(),
            files: Vec::new(),
            by_leaf: HashMap::new(),
            hash_blocks: HashMap::new(),
        };
        for (path, info) in roots {
            if info.salt != salt {
                continue;
            }
            match held_leaves(&path, &info) {
                Ok((file, leaves, tail)) => {
                    let (start, _) = verity::bottom_level(info.data_blocks);
                    for b in tail[start as usize..].chunks(BLOCK) {
                        let h = verity::leaf_hash(&index.salt, b);
                        index.hash_blocks.entry(h).or_insert_with(|| b.to_vec());
                    }
                    let f = index.files.len();
                    index.files.push(file);
                    for (i, leaf) in leaves.into_iter().enumerate() {
                        index.by_leaf.entry(leaf).or_insert((f, i as u64));
                    }
                }
                Err(why) => notes.push(format!(
                    "not reusing the blocks of {}: {why}",
                    path.display()
                )),
            }
        }
        index
    }

    /// How many distinct blocks the node holds.
    pub(super) fn len(&self) -> usize {
        self.by_leaf.len()
    }

    /// A held block whose hash is `leaf`, read and checked (a local copy damaged since it was
    /// staged is not used).
    fn block(&self, leaf: &Leaf) -> Option<Vec<u8>> {
        let (f, i) = self.by_leaf.get(leaf)?;
        let mut b = vec![0u8; BLOCK];
        self.files[*f]
            .read_exact_at(&mut b, i * BLOCK as u64)
            .ok()?;
        (verity::leaf_hash(&self.salt, &b) == *leaf).then_some(b)
    }
}

/// The file of a held root image and its blocks' hashes, read from its stored tree and checked
/// against its manifest's root hash.
#[allow(clippy::type_complexity)]
fn held_leaves(path: &Path, info: &VerityInfo) -> Result<(File, Vec<Leaf>, Vec<u8>), String> {
    let (file, meta) = fsio::open_regular(path, Links::Refuse).map_err(|e| e.to_string())?;
    let tail_len = verity::tail_len(info.data_blocks);
    if meta.len() != info.data_size.saturating_add(tail_len) {
        return Err(format!(
            "it is {} bytes, not the {} its manifest says",
            meta.len(),
            info.data_size.saturating_add(tail_len)
        ));
    }
    // The file's length was checked: the tree is there to read.
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, info.data_size)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let leaves = verity::leaves(&tail, info)?;
    Ok((file, leaves, tail))
}

/// How a block fetch went.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The file is assembled (its sha256 is yet to be checked).
    Done(Blocks),
    /// It could not be (why); the caller downloads the whole artifact. `received` bytes came
    /// from the repository before it stopped.
    Fallback { why: String, received: u64 },
}

/// What assembling a file took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Blocks {
    /// Bytes received: the tree and the fetched ranges.
    pub received: u64,
    /// Data blocks copied from images the node holds.
    pub local: u64,
    /// Data blocks already in place: written by an interrupted fetch, or zero blocks (a new
    /// file reads as zeros).
    pub kept: u64,
    /// Data blocks fetched (and blocks between them, fetched to save requests: `extra`).
    pub fetched: u64,
    pub extra: u64,
    /// Range requests made, the tree's included.
    pub requests: u64,
    /// Hash blocks of the tree's bottom level taken from the trees held, and fetched.
    pub tree_local: u64,
    pub tree_fetched: u64,
}

/// The file name, next to the artifact, where its fetched and checked tree is kept while the
/// artifact is assembled (so a resumed fetch does not fetch it again).
pub(super) fn tree_file(name: &str) -> String {
    format!("{name}.tree")
}

/// Assembles artifact `a` (the root image whose verity parameters are `info`) in `dir`, from
/// `index` and the object `rel` of `source` (see the module's doc).
pub(super) fn fetch(
    source: &Source,
    rel: &str,
    a: &Artifact,
    info: &VerityInfo,
    dir: &Path,
    index: &BlockIndex,
) -> Result<Outcome, ChannelError> {
    let mut got = Blocks::default();
    let job = Job {
        source,
        rel,
        a,
        info,
        dir,
        index,
    };
    match assemble(&job, &mut got)? {
        Ok(()) => Ok(Outcome::Done(got)),
        Err(why) => Ok(Outcome::Fallback {
            why,
            received: got.received,
        }),
    }
}

/// What [`fetch`] assembles, from where, with what.
#[derive(Clone, Copy)]
struct Job<'a> {
    source: &'a Source,
    rel: &'a str,
    a: &'a Artifact,
    info: &'a VerityInfo,
    dir: &'a Path,
    index: &'a BlockIndex,
}

/// [`fetch`]'s steps; `Ok(Err(why))` when the caller is to fall back to a full download.
fn assemble(job: &Job, got: &mut Blocks) -> Result<Result<(), String>, ChannelError> {
    let Job {
        source,
        rel,
        a,
        info,
        dir,
        index,
    } = *job;
    let tail_len = verity::tail_len(info.data_blocks);
    if a.size != info.data_size.saturating_add(tail_len) || info.hash_offset != info.data_size {
        return Ok(Err(
            "the manifest's verity parameters do not fit the artifact's size".into(),
        ));
    }
    let Ok(salt) = hex::decode(&info.salt) else {
        return Ok(Err("the manifest's salt is not hex".into()));
    };
    // 1. The tree: kept by an interrupted fetch, or fetched; checked either way.
    let (tree, leaves) = match tree(job, got)? {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    // 2. The file, at its full size; what an interrupted fetch wrote is kept where it checks.
    let path = dir.join(&a.name);
    let io = |what: &str| ChannelError::io(format!("{what} {}", path.display()));
    let existed = std::fs::symlink_metadata(&path).is_ok();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening"))?;
    file.set_len(a.size).map_err(io("sizing"))?;
    let zero_leaf = verity::leaf_hash(&salt, &[0u8; BLOCK]);
    let mut have = vec![false; leaves.len()];
    let mut block = vec![0u8; BLOCK];
    for (i, leaf) in leaves.iter().enumerate() {
        let ok = if existed {
            file.read_exact_at(&mut block, (i * BLOCK) as u64)
                .map_err(io("reading"))?;
            verity::leaf_hash(&salt, &block) == *leaf
        } else {
            // A new file reads as zeros.
            *leaf == zero_leaf
        };
        if ok {
            have[i] = true;
            got.kept += 1;
        }
    }
    // 3. Blocks the node holds.
    for (i, leaf) in leaves.iter().enumerate() {
        if have[i] {
            continue;
        }
        if let Some(b) = index.block(leaf) {
            file.write_all_at(&b, (i * BLOCK) as u64)
                .map_err(io("writing"))?;
            have[i] = true;
            got.local += 1;
        }
    }
    // 4. The rest, fetched and checked block by block before anything is written.
    let want = Expected {
        salt: &salt,
        hashes: &leaves,
        what: "data block",
    };
    for run in runs(&have) {
        let buf = match fetch_run(source, rel, 0, run, &want, got)? {
            Ok(b) => b,
            Err(why) => return Ok(Err(why)),
        };
        for (j, b) in (run.0..run.1).zip(buf.chunks(BLOCK)) {
            if have[j as usize] {
                got.extra += 1;
                continue;
            }
            file.write_all_at(b, j * BLOCK as u64)
                .map_err(io("writing"))?;
            have[j as usize] = true;
            got.fetched += 1;
        }
        failpoint("fetch:blocks-received");
    }
    // The tree goes after the data, as the kernel reads it.
    file.write_all_at(&tree, a.size - tail_len)
        .map_err(io("writing"))?;
    file.sync_all().map_err(io("writing"))?;
    Ok(Ok(()))
}

/// The artifact's tree and its leaves, checked against the manifest's root hash: the one an
/// interrupted fetch kept in `dir`, or fetched (and kept). Fetched in two steps: the upper part
/// (superblock and the levels above the bottom one: a few blocks), checked against the root
/// hash, which gives the hash of every bottom-level hash block; then only the bottom-level
/// blocks `index` does not hold (the trees of the images held share those whose 128 data blocks
/// did not change), each checked before it is used.
#[allow(clippy::type_complexity)]
fn tree(job: &Job, got: &mut Blocks) -> Result<Result<(Vec<u8>, Vec<Leaf>), String>, ChannelError> {
    let Job {
        source,
        rel,
        a,
        info,
        dir,
        index,
    } = *job;
    let tail_len = verity::tail_len(info.data_blocks);
    let tree_path = dir.join(tree_file(a.name.as_str()));
    let kept = fsio::read_regular(&tree_path, tail_len, "a hash tree", Links::Refuse)
        .ok()
        .and_then(|t| verity::leaves(&t, info).ok().map(|l| (t, l)));
    if let Some(x) = kept {
        return Ok(Ok(x));
    }
    let at = a.size - tail_len;
    let (upper_len, _) = verity::bottom_level(info.data_blocks);
    let mut tree = Vec::new();
    let r = source.fetch_range(rel, (at, Some(at + upper_len)), upper_len, &mut tree)?;
    got.requests += 1;
    if let Err(why) = received(r, rel, got)? {
        return Ok(Err(why));
    }
    let wanted = match verity::bottom_hashes(&tree, info) {
        Ok(w) => w,
        Err(why) => {
            return Ok(Err(format!(
                "the hash tree served is not the one the signed manifest names ({why})"
            )))
        }
    };
    // The bottom level: held hash blocks where the node has them, the rest fetched.
    let mut bottom: Vec<Option<Vec<u8>>> = wanted
        .iter()
        .map(|h| index.hash_blocks.get(h).cloned())
        .collect();
    let have: Vec<bool> = bottom.iter().map(Option::is_some).collect();
    got.tree_local = have.iter().filter(|h| **h).count() as u64;
    let want = Expected {
        salt: &index.salt,
        hashes: &wanted,
        what: "hash block of the tree's bottom level",
    };
    for run in runs(&have) {
        let buf = match fetch_run(source, rel, at + upper_len, run, &want, got)? {
            Ok(b) => b,
            Err(why) => return Ok(Err(why)),
        };
        for (j, b) in (run.0..run.1).zip(buf.chunks(BLOCK)) {
            let j = j as usize;
            if bottom[j].is_none() {
                bottom[j] = Some(b.to_vec());
                got.tree_fetched += 1;
            }
        }
    }
    for b in bottom {
        tree.extend_from_slice(&b.expect("held or fetched above"));
    }
    // The whole tree, once more against the root (and it gives the leaves).
    let leaves = match verity::leaves(&tree, info) {
        Ok(l) => l,
        Err(why) => {
            return Ok(Err(format!(
                "the hash tree served is not the one the signed manifest names ({why})"
            )))
        }
    };
    fsio::write_atomic(&tree_path, &tree, 0o600)
        .map_err(ChannelError::io(format!("writing {}", tree_path.display())))?;
    Ok(Ok((tree, leaves)))
}

/// What the blocks of a run must hash to, and what they are (for messages).
struct Expected<'a> {
    salt: &'a [u8],
    hashes: &'a [Leaf],
    what: &'static str,
}

/// The blocks `[start, end)` of the object `rel`, block 0 at offset `at`, fetched with one
/// range request; every block checked against its hash in `want` (the ones the node holds too:
/// an honest server serves those the same).
fn fetch_run(
    source: &Source,
    rel: &str,
    at: u64,
    (start, end): (u64, u64),
    want: &Expected,
    got: &mut Blocks,
) -> Result<Result<Vec<u8>, String>, ChannelError> {
    let from = at + start * BLOCK as u64;
    let len = (end - start) * BLOCK as u64;
    let mut buf = Vec::new();
    let r = source.fetch_range(rel, (from, Some(from + len)), len, &mut buf)?;
    got.requests += 1;
    if let Err(why) = received(r, rel, got)? {
        return Ok(Err(why));
    }
    if buf.len() as u64 != len {
        return Ok(Err(format!(
            "{} bytes came for a range of {len}",
            buf.len()
        )));
    }
    for (j, b) in (start..end).zip(buf.chunks(BLOCK)) {
        if verity::leaf_hash(want.salt, b) != want.hashes[j as usize] {
            return Ok(Err(format!(
                "{} {j} as served does not match its hash in the signed tree",
                want.what
            )));
        }
    }
    Ok(Ok(buf))
}

/// Counts what a range request received; `Ok(Err(why))` when the answer means falling back.
fn received(r: Ranged, rel: &str, got: &mut Blocks) -> Result<Result<(), String>, ChannelError> {
    match r {
        Ranged::Part(n) => {
            got.received += n;
            Ok(Ok(()))
        }
        Ranged::Unsupported => Ok(Err("the repository does not serve byte ranges".into())),
        Ranged::NotFound => Err(ChannelError::NotFound {
            rel: rel.to_owned(),
        }),
        Ranged::PastTheEnd => Ok(Err(
            "the repository's object is shorter than the manifest says".into(),
        )),
        Ranged::Bad(why) => Ok(Err(why)),
    }
}

/// The runs of blocks to fetch (`[start, end)`): every block `have` lacks, runs at most
/// [`GAP`] blocks apart merged, none longer than [`MAX_RUN`].
fn runs(have: &[bool]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, h) in have.iter().enumerate() {
        if *h {
            continue;
        }
        let i = i as u64;
        match out.last_mut() {
            Some((s, e)) if i - *e <= GAP && i + 1 - *s <= MAX_RUN => *e = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_coalesce_short_gaps_and_stay_bounded() {
        let have = |missing: &[usize], n: usize| {
            let mut h = vec![true; n];
            for &m in missing {
                h[m] = false;
            }
            h
        };
        assert_eq!(runs(&have(&[], 10)), []);
        assert_eq!(runs(&have(&[3], 10)), [(3, 4)]);
        // Four blocks between them: one request (the four fetched too); five: two.
        assert_eq!(runs(&have(&[1, 6], 10)), [(1, 7)]);
        assert_eq!(runs(&have(&[1, 7], 10)), [(1, 2), (7, 8)]);
        let all = runs(&vec![false; 2500]);
        assert_eq!(all, [(0, 1024), (1024, 2048), (2048, 2500)]);
    }
}
