//! The verified block-device root: our dm-verity tree against `veritysetup format` (cryptsetup),
//! our EROFS image against `fsck.erofs` (erofs-utils) and against the tar of the same tree,
//! reproducibility, and tampering caught by `stratos verify`.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::common::*;
use stratos::archive::verity;

fn data(blocks: usize, seed: u64) -> Vec<u8> {
    // Deterministic, incompressible-looking bytes (xorshift).
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(blocks * verity::BLOCK);
    while out.len() < blocks * verity::BLOCK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(blocks * verity::BLOCK);
    out
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}{}",
        cmd,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verity_tree_is_byte_identical_to_veritysetup_format() {
    require_tool("veritysetup");
    // One block (no tree), a partial bottom level, a second level, three levels.
    for blocks in [1usize, 100, 129, 16_513] {
        let dir = tempfile::tempdir().unwrap();
        let mut ours = data(blocks, blocks as u64);
        let info = verity::append(&mut ours, &verity::name_salt("t"));
        let uuid = &ours[info.hash_offset as usize + 16..info.hash_offset as usize + 32];
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            hex::encode(&uuid[0..4]),
            hex::encode(&uuid[4..6]),
            hex::encode(&uuid[6..8]),
            hex::encode(&uuid[8..10]),
            hex::encode(&uuid[10..16])
        );
        let theirs = dir.path().join("theirs.img");
        std::fs::write(&theirs, data(blocks, blocks as u64)).unwrap();
        let out = run(Command::new("veritysetup")
            .arg("format")
            .arg(&theirs)
            .arg(&theirs)
            .arg(format!("--hash-offset={}", info.hash_offset))
            .arg(format!("--salt={}", info.salt))
            .arg(format!("--uuid={uuid}"))
            .args([
                "--hash=sha256",
                "--format=1",
                "--data-block-size=4096",
                "--hash-block-size=4096",
            ])
            .arg(format!("--data-blocks={}", info.data_blocks)));
        assert!(
            out.contains(&format!("Root hash:      \t{}", info.root_hash)),
            "{blocks} blocks: {out}"
        );
        let theirs = std::fs::read(&theirs).unwrap();
        assert_eq!(theirs.len(), ours.len(), "{blocks} blocks: sizes differ");
        assert!(theirs == ours, "{blocks} blocks: bytes differ");
        // veritysetup accepts ours.
        let ours_path = dir.path().join("ours.img");
        std::fs::write(&ours_path, &ours).unwrap();
        run(Command::new("veritysetup")
            .arg("verify")
            .arg(&ours_path)
            .arg(&ours_path)
            .arg(&info.root_hash)
            .arg(format!("--hash-offset={}", info.hash_offset)));
    }
}

/// The fixture profile, with an EROFS root.
fn erofs_fixture() -> Fixture {
    let f = Fixture::new();
    let profile = PROFILE.replace(
        "source-date-epoch = 1700000000\n",
        "source-date-epoch = 1700000000\nroot = \"erofs\"\n",
    );
    f.write("profile.toml", profile.as_bytes());
    // Large enough for multi-block files and a directory that spans blocks.
    f.write("overlay/app/share/big.bin", &data(40, 7)[..40 * 4096 - 123]);
    for i in 0..300 {
        f.write(&format!("overlay/app/share/many/entry-{i:03}.txt"), b"x");
    }
    f
}

fn build(cache: &Path, f: &Fixture, out: &Path, key: Option<&Path>) {
    let mut c = stratos(cache);
    c.arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(out)
        .arg("-q");
    if let Some(k) = key {
        c.arg("--image-key").arg(k);
    }
    c.assert().success();
}

#[test]
fn erofs_image_passes_fsck_holds_the_tree_and_is_reproducible() {
    require_tool("fsck.erofs");
    let cache = tempfile::tempdir().unwrap();
    let f = erofs_fixture();
    let (a, b) = (f.path("out/a"), f.path("out/b"));
    build(cache.path(), &f, &a, None);
    build(cache.path(), &f, &b, None);
    assert_eq!(digests(&a), digests(&b), "two builds differ");
    assert!(!a.join("initramfs.cpio.zst").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let v = &m["root"]["verity"];
    assert_eq!(m["root"]["artifact"], "rootfs.erofs");
    let cmdline = m["kernel"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains(&format!(
            "sha256 {} {} 1 panic_on_corruption",
            v["root_hash"].as_str().unwrap(),
            v["salt"].as_str().unwrap()
        )),
        "{cmdline}"
    );
    assert!(cmdline.contains("root=/dev/dm-0 rootfstype=erofs ro init=/init"));

    // fsck.erofs reads the filesystem part (before the verity superblock) and extracts it.
    let img = std::fs::read(a.join("rootfs.erofs")).unwrap();
    let fs_only = f.path("fs.erofs");
    std::fs::write(&fs_only, &img[..v["data_size"].as_u64().unwrap() as usize]).unwrap();
    let extracted = f.path("extracted");
    run(Command::new("fsck.erofs")
        .arg(format!("--extract={}", extracted.display()))
        .arg(&fs_only));
    // The same tree as the tar of the same build: names, kinds, modes, contents.
    let from_tar = f.path("from-tar");
    std::fs::create_dir_all(&from_tar).unwrap();
    run(Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(a.join("rootfs.tar.zst"))
        .arg("-C")
        .arg(&from_tar)
        .arg("--exclude=./dev/*"));
    let strip_dev = |l: std::collections::BTreeMap<String, String>| {
        l.into_iter()
            .filter(|(k, _)| !k.starts_with("dev/"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        strip_dev(listing(&extracted)),
        strip_dev(listing(&from_tar))
    );
}

#[test]
fn tampered_erofs_is_rejected_by_verify_naming_the_block() {
    let cache = tempfile::tempdir().unwrap();
    let f = erofs_fixture();
    let keys = tempfile::tempdir().unwrap();
    stratos(cache.path())
        .args(["keygen", "--out"])
        .arg(keys.path().join("k"))
        .assert()
        .success();
    let out = f.path("out");
    build(cache.path(), &f, &out, Some(&keys.path().join("k.key")));
    stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.pub"))
        .assert()
        .success();
    // One byte of a file's data, found by its content.
    let path = out.join("rootfs.erofs");
    let mut img = std::fs::read(&path).unwrap();
    let needle = &data(40, 7)[4096 * 3..4096 * 3 + 64];
    let at = img.windows(64).position(|w| w == needle).unwrap();
    img[at + 10] ^= 0x40;
    std::fs::write(&path, &img).unwrap();
    let o = stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.pub"))
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("rootfs.erofs"), "{e}");

    // A manifest re-signed over the tampered file's digest still fails: the tree does not hold.
    let m_path = out.join("manifest.json");
    let mut m: stratos::sign::Manifest =
        serde_json::from_slice(&std::fs::read(&m_path).unwrap()).unwrap();
    for a in &mut m.artifacts {
        if a.name == "rootfs.erofs" {
            a.sha256 = stratos::digest::Sha256::of(&img);
        }
    }
    let bytes = m.to_canonical();
    std::fs::write(&m_path, &bytes).unwrap();
    let key = stratos::sign::SecretKey::load(&keys.path().join("k.key")).unwrap();
    let sig = serde_json::json!({
        "format": 1, "algorithm": "ed25519", "key_id": key.id().as_str(),
        "signature": hex::encode(key.sign(&bytes)),
    });
    std::fs::write(out.join("manifest.sig"), sig.to_string()).unwrap();
    let o = stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.pub"))
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("rootfs.erofs: dm-verity: data block")
            && e.contains("does not match the hash tree"),
        "{e}"
    );
}

/// The manifest's `root.verity` and the leaf level of `rootfs.erofs` in image directory `dir`:
/// one sha256 per data block, read from the last level of the tree (levels are written top
/// first after the verity superblock, each padded to whole hash blocks).
fn leaves(dir: &Path) -> (verity::VerityInfo, Vec<[u8; 32]>) {
    let m: stratos::sign::Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let info = m.root.expect("an EROFS root").verity;
    let img = std::fs::read(dir.join("rootfs.erofs")).unwrap();
    let blocks = info.data_blocks as usize;
    assert!(blocks > 1, "one data block has no tree");
    let leaf_bytes = blocks.div_ceil(verity::BLOCK / 32) * verity::BLOCK;
    let tree_start = info.hash_start_block as usize * verity::BLOCK;
    assert_eq!(tree_start, info.hash_offset as usize + verity::BLOCK);
    assert!(img.len() >= tree_start + leaf_bytes);
    let leaf_level = &img[img.len() - leaf_bytes..];
    let leaves: Vec<[u8; 32]> = leaf_level
        .chunks(32)
        .take(blocks)
        .map(|h| h.try_into().unwrap())
        .collect();
    // The bottom level really is the data's: block 0's hash is sha256(salt ‖ block 0).
    let mut h = Sha256::new();
    h.update(hex::decode(&info.salt).unwrap());
    h.update(&img[..verity::BLOCK]);
    assert_eq!(leaves[0], <[u8; 32]>::from(h.finalize()));
    (info, leaves)
}

#[test]
fn a_one_file_change_keeps_the_salt_and_most_leaf_hashes() {
    let cache = tempfile::tempdir().unwrap();
    let f = erofs_fixture();
    let (a, b) = (f.path("out/a"), f.path("out/b"));
    build(cache.path(), &f, &a, None);
    // One line more in one small file in the middle of the tree.
    f.write(
        "overlay/app/share/many/entry-150.txt",
        b"x\none line more\n",
    );
    build(cache.path(), &f, &b, None);
    let ((va, la), (vb, lb)) = (leaves(&a), leaves(&b));
    assert_eq!(va.salt, vb.salt, "the salt changed with the contents");
    assert_eq!(
        va.salt,
        hex::encode(verity::name_salt("fixture")),
        "the salt is the image name's"
    );
    assert_ne!(va.root_hash, vb.root_hash);
    let at_same_place =
        la.iter().zip(&lb).filter(|(x, y)| x != y).count() + la.len().abs_diff(lb.len());
    let old: std::collections::HashSet<&[u8; 32]> = la.iter().collect();
    let new = lb.iter().filter(|h| !old.contains(h)).count();
    println!(
        "data blocks {} -> {}; leaves changed in place: {at_same_place}; leaves of the new image not in the old: {new}",
        la.len(),
        lb.len()
    );
    assert!(at_same_place >= 1 && new >= 1, "the change is in the tree");
    assert!(
        at_same_place * 20 <= lb.len(),
        "{at_same_place} of {} leaf hashes changed for a one-file change",
        lb.len()
    );
}

#[test]
fn a_declared_verity_salt_is_the_trees() {
    let cache = tempfile::tempdir().unwrap();
    let f = erofs_fixture();
    let salt = "5a".repeat(32);
    let text = std::fs::read_to_string(f.profile()).unwrap();
    f.write(
        "profile.toml",
        text.replace(
            "root = \"erofs\"\n",
            &format!("root = \"erofs\"\nverity-salt = \"{salt}\"\n"),
        )
        .as_bytes(),
    );
    let out = f.path("out");
    build(cache.path(), &f, &out, None);
    let (info, _) = leaves(&out);
    assert_eq!(info.salt, salt);
    let img = std::fs::read(out.join("rootfs.erofs")).unwrap();
    verity::check(&img, &info).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(m["kernel"]["cmdline"]
        .as_str()
        .unwrap()
        .contains(&format!(" {salt} 1 panic_on_corruption")));

    // A salt that is not 64 hex digits is refused at its key.
    f.write(
        "profile.toml",
        text.replace(
            "root = \"erofs\"\n",
            "root = \"erofs\"\nverity-salt = \"not-a-salt\"\n",
        )
        .as_bytes(),
    );
    let o = stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("bad"))
        .arg("-q")
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("profile.toml:8:15: image.verity-salt: \"not-a-salt\" is not a salt"),
        "{e}"
    );
}
