//! Attacks on the image a channel names: swapped manifests and artifacts, oversized objects, a
//! relabelled image; and the images `publish` refuses.

use super::*;

fn object(w: &World, sha: &str) -> PathBuf {
    w.repo.join("objects/sha256").join(sha)
}

#[test]
fn attack_manifest_swapped() {
    let w = world();
    let n = w.node("n");
    let doc = w.channel_doc("stable");
    let p = object(&w, &doc.tracks[0].image.manifest_sha256.hex());
    let mut bytes = std::fs::read(&p).unwrap();
    // Same length, one byte different.
    let i = bytes.iter().position(|b| *b == b'1').unwrap();
    bytes[i] = b'9';
    std::fs::write(&p, &bytes).unwrap();
    assert_rejected!(&n, fetch, ChannelError::ManifestMismatch);
    // Shorter (a different, smaller manifest).
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    assert_rejected!(&n, fetch, ChannelError::ManifestMismatch);
    // The other image's manifest (longer or shorter; a signature by a trusted key).
    let other = std::fs::read(w.img_b.join("manifest.json")).unwrap();
    std::fs::write(&p, &other).unwrap();
    assert_rejected!(
        &n,
        fetch,
        ChannelError::ManifestMismatch | ChannelError::TooLarge { .. }
    );
}

#[test]
fn attack_artifact_swapped() {
    let w = world();
    let n = w.node("n");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.img_a.join("manifest.json")).unwrap()).unwrap();
    let kernel = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "kernel")
        .unwrap();
    let p = object(&w, kernel["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    // Its compressed copy first: the node notes it and falls back to the (swapped) object.
    let zst = p.with_file_name(format!("{}.zst", kernel["sha256"].as_str().unwrap()));
    let packed = zstd::stream::encode_all(&bytes[..], 3).unwrap();
    std::fs::write(&zst, &packed).unwrap();
    assert_rejected!(&n, fetch, ChannelError::ArtifactMismatch { name } if name == "kernel");
    std::fs::remove_file(&zst).unwrap();
    assert_rejected!(&n, fetch, ChannelError::ArtifactMismatch { name } if name == "kernel");
    // No staging directory is left behind.
    assert!(!std::fs::read_dir(&n.state).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".staging")));
    // `check` downloads nothing, so it is not fooled or blocked by it.
    assert!(n.check().unwrap().selected);
}

#[test]
fn attack_oversized_channel_document() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mut big = w.read("channels/stable.json");
    big.resize(3 << 20, b' ');
    w.write("channels/stable.json", &big);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::TooLarge { rel, cap: 1_048_576 } if rel == "channels/stable.json"
    );
    assert_eq!(
        e.to_string(),
        "channels/stable.json: larger than the 1048576-byte limit; aborted"
    );
}

#[test]
fn attack_oversized_artifact() {
    let w = world();
    let n = w.node("n");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.img_a.join("manifest.json")).unwrap()).unwrap();
    let a = &m["artifacts"][0];
    let p = object(&w, a["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 4 << 20));
    std::fs::write(&p, &bytes).unwrap();
    assert_rejected!(&n, fetch, ChannelError::TooLarge { .. });
    // And the node's own cap on any artifact.
    let small = Node {
        max_artifact_bytes: 1000,
        all_artifacts: false,
        ..w.node("n")
    };
    assert_rejected!(
        &small,
        fetch,
        ChannelError::ArtifactTooLarge { cap: 1000, .. }
    );
}

#[test]
fn publish_refuses_unsigned_and_untrusted_images() {
    let w = world_with(&[]);
    let f = Fixture::new();
    let unsigned = w.path("unsigned");
    w.cmd()
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&unsigned)
        .arg("-q")
        .env_remove("STRATOS_SIGNING_KEY")
        .assert()
        .success();
    let publish = |img: &Path| {
        w.cmd()
            .arg("publish")
            .arg(img)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "canary", "--channel-key"])
            .arg(&w.root_key)
            .assert()
    };
    publish(&unsigned)
        .code(1)
        .stderr(predicates::str::contains("the image is unsigned"));
    let other = w.keygen("other");
    let foreign = w.path("foreign");
    w.cmd()
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&foreign)
        .arg("--image-key")
        .arg(&other)
        .arg("-q")
        .assert()
        .success();
    publish(&foreign).code(1).stderr(predicates::str::contains(
        "which the repository's root does not trust",
    ));
    // A tampered image signed by a trusted key.
    let tampered = w.path("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    for e in std::fs::read_dir(&w.img_a).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tampered.join(e.file_name())).unwrap();
    }
    let k = tampered.join("kernel");
    let mut b = std::fs::read(&k).unwrap();
    b[0] ^= 1;
    std::fs::write(&k, b).unwrap();
    publish(&tampered)
        .code(1)
        .stderr(predicates::str::contains("kernel"));
    // Nothing was published.
    assert!(!w.repo.join("channels/canary.json").exists());
    assert!(!w.repo.join("objects").exists());
}

#[test]
fn attack_channel_relabels_an_old_image() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // The channel key alone re-announces image 1.2.3 as 9.9.9 (or as another image).
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.tracks[0].image.version = "9.9.9".into();
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    for f in [check, fetch] {
        let e = assert_rejected!(
            &n,
            f,
            ChannelError::Relabelled { version, signed_version, .. }
                if version == "9.9.9" && signed_version == "1.2.3"
        );
        assert_eq!(e.to_string(), "channels/stable.json: names the image fixture 9.9.9, but the signed manifest it points at is fixture 1.2.3; refusing a relabelled image");
    }
    doc.tracks[0].image.version = "1.2.3".into();
    doc.tracks[0].image.name = "payments".into();
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        fetch,
        ChannelError::Relabelled { name, signed_name, .. }
            if name == "payments" && signed_name == "fixture"
    );
}
