//! dm-verity hash trees, byte-identical to `veritysetup format` (format 1, sha256, 4 KiB data and
//! hash blocks) with the same salt: the superblock, then the tree's levels top first, each hash
//! block zero-padded; the root hash is sha256(salt ‖ top block).
//!
//! The salt is the image's, not the data's (never random): derived from the image's name, or
//! declared by its profile. The same image always gets the same tree and root hash, and two
//! builds of one image share every leaf hash of the blocks they share: the bottom level is a
//! per-block index of the data (docs/verified-root.md says why that is safe).

use sha2::{Digest, Sha256};

pub const BLOCK: usize = 4096;
const HASH: usize = 32;
const PER_BLOCK: usize = BLOCK / HASH;
/// `veritysetup format --salt` takes up to 256 bytes; ours is one sha256.
pub const SALT_LEN: usize = 32;

/// What the kernel's verity table and the manifest need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerityInfo {
    /// Bytes of data covered (a multiple of 4096): the filesystem image.
    pub data_size: u64,
    pub data_blocks: u64,
    /// Where the verity superblock starts in the file (= `data_size`).
    pub hash_offset: u64,
    /// The first hash block (4 KiB units) of the tree, past the superblock: the table's
    /// `hash_start_block`.
    pub hash_start_block: u64,
    pub algorithm: String,
    /// Hex.
    pub salt: String,
    /// Hex.
    pub root_hash: String,
}

/// The salt of the image named `name` when its profile declares none:
/// sha256("stratos-verity-salt\0" ‖ name).
pub fn name_salt(name: &str) -> [u8; SALT_LEN] {
    let mut h = Sha256::new();
    h.update(b"stratos-verity-salt\0");
    h.update(name.as_bytes());
    h.finalize().into()
}

fn hash_block(salt: &[u8], block: &[u8]) -> [u8; HASH] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The tree's levels for `data` (a whole number of blocks), bottom level first, each level a
/// sequence of zero-padded hash blocks; and the root hash.
fn levels(data: &[u8], salt: &[u8]) -> (Vec<Vec<u8>>, [u8; HASH]) {
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let mut below: Vec<[u8; HASH]> = data.chunks(BLOCK).map(|b| hash_block(salt, b)).collect();
    // One data block: no tree at all, the root hash is that block's hash (dm-verity's
    // `levels` is 0).
    if below.len() == 1 {
        return (levels, below[0]);
    }
    loop {
        let mut level = Vec::with_capacity(below.len().div_ceil(PER_BLOCK) * BLOCK);
        for chunk in below.chunks(PER_BLOCK) {
            let start = level.len();
            for h in chunk {
                level.extend_from_slice(h);
            }
            level.resize(start + BLOCK, 0);
        }
        below = level.chunks(BLOCK).map(|b| hash_block(salt, b)).collect();
        levels.push(level);
        if below.len() == 1 {
            return (levels, below[0]);
        }
    }
}

/// The 512-byte verity superblock, in a 4 KiB block.
fn superblock(data_blocks: u64, salt: &[u8], uuid: [u8; 16]) -> Vec<u8> {
    let mut sb = vec![0u8; BLOCK];
    sb[0..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // version
    sb[12..16].copy_from_slice(&1u32.to_le_bytes()); // hash type: normal (format 1)
    sb[16..32].copy_from_slice(&uuid);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    sb[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
    sb[88..88 + salt.len()].copy_from_slice(salt);
    sb
}

/// Appends the superblock and hash tree with `salt` to `data` (padded to whole blocks first)
/// and returns what the manifest and the kernel's table need.
pub fn append(data: &mut Vec<u8>, salt: &[u8; SALT_LEN]) -> VerityInfo {
    data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    let data_size = data.len() as u64;
    let data_blocks = data_size / BLOCK as u64;
    let (levels, root) = levels(data, salt);
    data.extend_from_slice(&superblock(data_blocks, salt, uuid_of(&root)));
    for level in levels.iter().rev() {
        data.extend_from_slice(level);
    }
    VerityInfo {
        data_size,
        data_blocks,
        hash_offset: data_size,
        hash_start_block: data_blocks + 1,
        algorithm: "sha256".into(),
        salt: hex::encode(salt),
        root_hash: hex::encode(root),
    }
}

/// Recomputes the tree of `file` (data, superblock, tree as [`append`] writes them) and checks
/// it against `info`: every stored hash block and the root hash. Returns why not, naming the
/// first data block whose hash differs when one does.
pub fn check(file: &[u8], info: &VerityInfo) -> Result<(), String> {
    let data_size = usize::try_from(info.data_size).map_err(|_| "data size out of range")?;
    if info.data_size % BLOCK as u64 != 0
        || info.hash_offset != info.data_size
        || info.data_blocks * BLOCK as u64 != info.data_size
        || info.algorithm != "sha256"
    {
        return Err("the manifest's verity parameters are not ones StratOS writes".into());
    }
    if file.len() < data_size + BLOCK {
        return Err(format!(
            "the file is {} bytes, shorter than its data and verity superblock",
            file.len()
        ));
    }
    let salt = hex::decode(&info.salt).map_err(|_| "salt is not hex")?;
    let (data, rest) = file.split_at(data_size);
    let (levels, root) = levels(data, &salt);
    let mut expected = Vec::new();
    for level in levels.iter().rev() {
        expected.extend_from_slice(level);
    }
    let stored = &rest[BLOCK..];
    if hex::encode(root) != info.root_hash {
        // Name the first data block that changed, if the stored tree still knows better.
        if stored.len() == expected.len() && !levels.is_empty() {
            let bottom_start = expected.len() - levels[0].len();
            for (i, b) in data.chunks(BLOCK).enumerate() {
                let at = bottom_start + i * HASH;
                if stored[at..at + HASH] != hash_block(&salt, b) {
                    return Err(format!(
                        "data block {i} (bytes {}..{}) does not match the hash tree",
                        i * BLOCK,
                        (i + 1) * BLOCK
                    ));
                }
            }
        }
        return Err(format!(
            "root hash {} does not match the manifest's {}",
            hex::encode(root),
            info.root_hash
        ));
    }
    if stored != expected.as_slice() {
        return Err("the stored hash tree differs from the one its data gives".into());
    }
    let sb = &rest[..BLOCK];
    if &sb[0..8] != b"verity\0\0" {
        return Err("no verity superblock at the hash offset".into());
    }
    Ok(())
}

/// The per-level block counts of the tree over `data_blocks` blocks, bottom level first
/// (empty for one block: no tree).
fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut below = data_blocks;
    while below > 1 {
        below = below.div_ceil(PER_BLOCK as u64);
        out.push(below);
    }
    out
}

/// Bytes after the data: the superblock's block and the tree ([`append`] writes them).
pub fn tail_len(data_blocks: u64) -> u64 {
    (1 + level_blocks(data_blocks).iter().sum::<u64>()) * BLOCK as u64
}

/// Where the bottom level of the tree over `data_blocks` blocks lies in the bytes after the
/// data: it is written last, so it starts at `tail_len - len` and is `len` bytes (0 for one
/// data block: no tree). What comes before it — the superblock and the upper levels — is the
/// "upper part" [`bottom_hashes`] checks.
pub fn bottom_level(data_blocks: u64) -> (u64, u64) {
    let len = level_blocks(data_blocks).first().copied().unwrap_or(0) * BLOCK as u64;
    (tail_len(data_blocks) - len, len)
}

/// The hash each hash block of the bottom level must have, checked: `upper` (the superblock and
/// the levels above the bottom one, as [`append`] writes them) must be exactly those of the
/// tree whose root is `info.root_hash`. So bottom-level hash blocks fetched from anywhere, or
/// found in another image's tree, are checked one by one against these. Empty for one data
/// block (no tree).
pub fn bottom_hashes(upper: &[u8], info: &VerityInfo) -> Result<Vec<[u8; HASH]>, String> {
    let (salt, root) = params(info)?;
    let (start, _) = bottom_level(info.data_blocks);
    if upper.len() as u64 != start {
        return Err(format!(
            "the upper part of the tree is {} bytes; {} data blocks need {start}",
            upper.len(),
            info.data_blocks
        ));
    }
    if upper[..BLOCK] != superblock(info.data_blocks, &salt, uuid_of(&root))[..] {
        return Err("the verity superblock is not the one of this tree".into());
    }
    let counts = level_blocks(info.data_blocks);
    match counts.len() {
        0 => return Ok(Vec::new()),
        // The bottom level is the top: one block, hashing to the root.
        1 => return Ok(vec![root]),
        _ => {}
    }
    // The upper levels as stored: top first, down to the level above the bottom one.
    let mut at = BLOCK;
    let mut stored: Vec<&[u8]> = Vec::new();
    for c in counts[1..].iter().rev() {
        let len = *c as usize * BLOCK;
        stored.push(&upper[at..at + len]);
        at += len;
    }
    if hash_block(&salt, stored[0]) != root {
        return Err("the top of the tree does not hash to the manifest's root hash".into());
    }
    for pair in stored.windows(2) {
        let (above, level) = (pair[0], pair[1]);
        for (i, b) in level.chunks(BLOCK).enumerate() {
            if above[i * HASH..(i + 1) * HASH] != hash_block(&salt, b) {
                return Err(format!(
                    "hash block {i} of a level does not match the level above"
                ));
            }
        }
        if above[level.len() / BLOCK * HASH..].iter().any(|&x| x != 0) {
            return Err("a hash block's padding is not zeros".into());
        }
    }
    let lowest = stored[stored.len() - 1];
    let n = counts[0] as usize;
    if lowest[n * HASH..].iter().any(|&x| x != 0) {
        return Err("a hash block's padding is not zeros".into());
    }
    Ok(lowest[..n * HASH]
        .chunks(HASH)
        .map(|h| h.try_into().expect("32 bytes"))
        .collect())
}

/// The hash of one data block under `salt`: its leaf in the tree.
pub fn leaf_hash(salt: &[u8], block: &[u8]) -> [u8; HASH] {
    hash_block(salt, block)
}

/// The hash of every data block, checked: `tail` (the bytes after the data, as [`append`]
/// writes them: superblock, then the levels top first) must be exactly the tree whose root is
/// `info.root_hash`, level by level, with the superblock [`append`] writes for it. So a tree
/// fetched from anywhere is as trustworthy as the manifest that names its root. Returns why not
/// otherwise.
pub fn leaves(tail: &[u8], info: &VerityInfo) -> Result<Vec<[u8; HASH]>, String> {
    let want_len = tail_len(info.data_blocks);
    if tail.len() as u64 != want_len {
        return Err(format!(
            "the tree is {} bytes; {} data blocks need {want_len}",
            tail.len(),
            info.data_blocks
        ));
    }
    let (start, _) = bottom_level(info.data_blocks);
    let (upper, bottom) = tail.split_at(start as usize);
    let (salt, root) = params(info)?;
    let want = bottom_hashes(upper, info)?;
    // One data block: no tree, its hash is the root.
    if want.is_empty() {
        return Ok(vec![root]);
    }
    for (i, (h, b)) in want.iter().zip(bottom.chunks(BLOCK)).enumerate() {
        if hash_block(&salt, b) != *h {
            return Err(format!(
                "hash block {i} of the bottom level does not match the level above"
            ));
        }
    }
    let n = usize::try_from(info.data_blocks).map_err(|_| "too many blocks")?;
    if bottom[n * HASH..].iter().any(|&x| x != 0) {
        return Err("a hash block's padding is not zeros".into());
    }
    Ok(bottom[..n * HASH]
        .chunks(HASH)
        .map(|h| h.try_into().expect("32 bytes"))
        .collect())
}

/// The salt and root hash of parameters StratOS writes.
fn params(info: &VerityInfo) -> Result<(Vec<u8>, [u8; HASH]), String> {
    if info.algorithm != "sha256" || info.data_blocks * BLOCK as u64 != info.data_size {
        return Err("the manifest's verity parameters are not ones StratOS writes".into());
    }
    let salt = hex::decode(&info.salt).map_err(|_| "salt is not hex")?;
    let root = hex::decode(&info.root_hash)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or("the root hash is not 32 bytes of hex")?;
    Ok((salt, root))
}

/// The superblock's UUID: from the root hash, like every other id here.
fn uuid_of(root: &[u8; HASH]) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&Sha256::digest(root)[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// The `dm-mod.create=` table (one device, `vroot`, read-only) and the root options for a
/// kernel that boots `/dev/vda` (this file) through dm-verity, `/init` as PID 1.
pub fn kernel_args(info: &VerityInfo) -> String {
    let sectors = info.data_size / 512;
    format!(
        "dm-mod.create=\"vroot,,,ro,0 {sectors} verity 1 /dev/vda /dev/vda {BLOCK} {BLOCK} {} {} sha256 {} {} 1 panic_on_corruption\" root=/dev/dm-0 rootfstype=erofs ro init=/init",
        info.data_blocks, info.hash_start_block, info.root_hash, info.salt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_is_found_and_named() {
        let mut img: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i % 251) as u8).collect();
        let info = append(&mut img, &name_salt("t"));
        assert_eq!(info.data_blocks, 4);
        assert_eq!(info.hash_start_block, 5);
        check(&img, &info).unwrap();
        let mut bad = img.clone();
        bad[2 * BLOCK + 7] ^= 1;
        let e = check(&bad, &info).unwrap_err();
        assert!(e.contains("data block 2"), "{e}");
        let mut bad_tree = img.clone();
        let last = bad_tree.len() - 1;
        bad_tree[last - 4000] ^= 1;
        assert!(check(&bad_tree, &info).is_err());
    }

    #[test]
    fn leaves_are_checked_level_by_level_against_the_root() {
        for blocks in [1usize, 2, 129, 300, 16_513] {
            let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 13 % 251) as u8).collect();
            let mut img = data.clone();
            let info = append(&mut img, &name_salt("t"));
            let salt = hex::decode(&info.salt).unwrap();
            let tail = &img[info.data_size as usize..];
            assert_eq!(tail.len() as u64, tail_len(info.data_blocks));
            let l = leaves(tail, &info).unwrap();
            assert_eq!(l.len(), blocks);
            for (i, b) in data.chunks(BLOCK).enumerate() {
                assert_eq!(l[i], leaf_hash(&salt, b), "{blocks} blocks: leaf {i}");
            }
            // Any flipped byte of the tail (superblock, any level, padding) is refused.
            for at in (0..tail.len())
                .step_by(tail.len() / 7 + 1)
                .chain([tail.len() - 1])
            {
                let mut bad = tail.to_vec();
                bad[at] ^= 0x40;
                assert!(leaves(&bad, &info).is_err(), "{blocks} blocks: byte {at}");
            }
            assert!(leaves(&tail[..tail.len() - 1], &info).is_err());
        }
    }

    #[test]
    fn the_bottom_levels_hash_blocks_are_checked_from_the_upper_part() {
        for blocks in [1usize, 2, 129, 300, 16_513] {
            let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 17 % 251) as u8).collect();
            let mut img = data.clone();
            let info = append(&mut img, &name_salt("t"));
            let salt = hex::decode(&info.salt).unwrap();
            let tail = &img[info.data_size as usize..];
            let (start, len) = bottom_level(info.data_blocks);
            assert_eq!(start + len, tail.len() as u64);
            let (upper, bottom) = tail.split_at(start as usize);
            let want = bottom_hashes(upper, &info).unwrap();
            assert_eq!(want.len(), bottom.len() / BLOCK, "{blocks} blocks");
            for (h, b) in want.iter().zip(bottom.chunks(BLOCK)) {
                assert_eq!(*h, hash_block(&salt, b), "{blocks} blocks");
            }
            for at in (0..upper.len()).step_by(upper.len() / 5 + 1) {
                let mut bad = upper.to_vec();
                bad[at] ^= 0x08;
                assert!(
                    bottom_hashes(&bad, &info).is_err(),
                    "{blocks} blocks: byte {at}"
                );
            }
        }
    }

    #[test]
    fn one_block_has_no_tree() {
        let mut img = vec![3u8; BLOCK];
        let info = append(&mut img, &name_salt("t"));
        assert_eq!(img.len(), 2 * BLOCK, "data and superblock only");
        assert_eq!(
            info.root_hash,
            hex::encode(hash_block(&hex::decode(&info.salt).unwrap(), &[3u8; BLOCK]))
        );
        check(&img, &info).unwrap();
    }

    #[test]
    fn the_salt_is_the_images_not_the_datas() {
        let salt = name_salt("python-fn");
        assert_eq!(
            hex::encode(salt),
            hex::encode(Sha256::digest(b"stratos-verity-salt\0python-fn"))
        );
        assert_ne!(salt, name_salt("python-fn-stock"));
        // 300 blocks (three leaf hash blocks, two levels); the second set differs in block 170.
        let a: Vec<u8> = (0..300 * BLOCK).map(|i| (i * 7 % 253) as u8).collect();
        let mut b = a.clone();
        b[170 * BLOCK + 99] ^= 0x10;
        let (mut ia, mut ib) = (a.clone(), b.clone());
        let (va, vb) = (append(&mut ia, &salt), append(&mut ib, &salt));
        assert_eq!(va.salt, vb.salt);
        assert_ne!(va.root_hash, vb.root_hash);
        // The leaf level is written last: one hash per data block, then zero padding.
        let leaves = |img: &[u8]| -> Vec<[u8; HASH]> {
            let start = img.len() - 300usize.div_ceil(PER_BLOCK) * BLOCK;
            img[start..]
                .chunks(HASH)
                .take(300)
                .map(|h| h.try_into().unwrap())
                .collect()
        };
        let (la, lb) = (leaves(&ia), leaves(&ib));
        assert_eq!(la[0], hash_block(&salt, &a[..BLOCK]));
        let changed: Vec<usize> = (0..300).filter(|&i| la[i] != lb[i]).collect();
        assert_eq!(changed, [170]);
        check(&ib, &vb).unwrap();
        // Another salt: every leaf differs.
        let mut ic = a.clone();
        append(&mut ic, &name_salt("other"));
        assert!((0..300).all(|i| leaves(&ic)[i] != la[i]));
    }

    #[test]
    fn levels_for_many_blocks() {
        // 129 data blocks: two bottom hash blocks, one top.
        let data = vec![7u8; 129 * BLOCK];
        let (levels, _) = levels(&data, &[1; 32]);
        assert_eq!(levels.len(), 2);
        assert_eq!(levels[0].len(), 2 * BLOCK);
        assert_eq!(levels[1].len(), BLOCK);
    }

    #[test]
    fn kernel_table() {
        let info = VerityInfo {
            data_size: 8 * BLOCK as u64,
            data_blocks: 8,
            hash_offset: 8 * BLOCK as u64,
            hash_start_block: 9,
            algorithm: "sha256".into(),
            salt: "ab".into(),
            root_hash: "cd".into(),
        };
        assert_eq!(
            kernel_args(&info),
            "dm-mod.create=\"vroot,,,ro,0 64 verity 1 /dev/vda /dev/vda 4096 4096 8 9 sha256 cd ab 1 panic_on_corruption\" root=/dev/dm-0 rootfstype=erofs ro init=/init"
        );
    }
}
