//! What `publish` writes besides the image: the compressed objects (`<sha256>.zst`) and the
//! kernel deltas listed in the channel, and what `promote` and `rollback` keep of them.

use super::*;
use stratos::archive::delta;

/// A pseudo-random stream over 16 byte values (xorshift): compressible to about half, as a
/// kernel is, and unlike the fixture's periodic bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x >> 60) as u8
        })
        .collect()
}

/// The fixture's kernel with 96 KiB of body; `edit` > 0 changes a few bytes of it and inserts
/// some (as a config option does), a different edit giving a different kernel.
fn kernel(edit: u8) -> Vec<u8> {
    let mut k = fake_kernel();
    let mut body = noise(7, 96 << 10);
    if edit > 0 {
        for i in 0..8 {
            body[20_000 + i * 4_000] ^= edit;
        }
        body.splice(50_000..50_000, noise(u64::from(edit), 300));
    }
    k.extend_from_slice(&body);
    k
}

/// Image `version` of the fixture with `kernel`, signed by the world's root key.
fn image(w: &World, version: &str, kernel: &[u8]) -> PathBuf {
    let f = Fixture::new();
    f.write("kernel/bzImage", kernel);
    f.write(
        "profile.toml",
        PROFILE
            .replace("version = \"1.2.3\"", &format!("version = \"{version}\""))
            .as_bytes(),
    );
    let out = w.path(&format!("img-{version}"));
    w.cmd()
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("--image-key")
        .arg(&w.root_key)
        .arg("-q")
        .assert()
        .success();
    out
}

/// Images 1.0.0 and 1.1.0, whose kernels differ.
fn two_kernels(w: &World) -> (PathBuf, PathBuf) {
    (image(w, "1.0.0", &kernel(0)), image(w, "1.1.0", &kernel(1)))
}

/// `stratos publish` to `stable` at 100%; its standard output.
fn publish(w: &World, img: &Path) -> String {
    let out = w
        .cmd()
        .arg("publish")
        .arg(img)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--percent", "100", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn object(w: &World, name: &str) -> PathBuf {
    w.repo.join("objects/sha256").join(name)
}

/// Every file of the object store: name → (inode, size).
fn objects(w: &World) -> BTreeMap<String, (u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(w.repo.join("objects/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (e.file_name().into_string().unwrap(), (m.ino(), m.len()))
        })
        .collect()
}

/// The image's manifest: artifact name → (sha256, size).
fn artifacts(img: &Path) -> BTreeMap<String, (String, u64)> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                (
                    a["sha256"].as_str().unwrap().to_owned(),
                    a["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn kernel_sha(img: &Path) -> String {
    artifacts(img)["kernel"].0.clone()
}

#[test]
fn every_artifact_that_compresses_is_stored_compressed_too() {
    let w = world_with(&[]);
    let img = image(&w, "1.0.0", &kernel(0));
    publish(&w, &img);
    let mut compressed = Vec::new();
    for (name, (sha, size)) in artifacts(&img) {
        let raw = std::fs::read(object(&w, &sha)).unwrap();
        assert_eq!(raw.len() as u64, size, "{name}: the object itself stays");
        let zst = object(&w, &format!("{sha}.zst"));
        if name.ends_with(".zst") {
            assert!(!zst.exists(), "{name} is compressed already");
            continue;
        }
        let packed = std::fs::read(&zst).unwrap_or_else(|e| panic!("{}: {e}", zst.display()));
        assert!(packed.len() < raw.len(), "{name}: {} bytes", packed.len());
        // One frame, with its content size, that the streaming decoder reads back.
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&packed).ok(),
            Some(Some(size))
        );
        assert_eq!(
            zstd::stream::decode_all(&packed[..]).unwrap(),
            raw,
            "{name}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&zst).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
        compressed.push(name);
    }
    assert!(
        compressed.contains(&"kernel".to_owned())
            && compressed.contains(&"sbom.cdx.json".to_owned()),
        "{compressed:?}"
    );
    // Published again: no object is rewritten.
    let before = objects(&w);
    assert!(
        before.keys().all(|n| !n.starts_with(".stratos-tmp")),
        "{before:?}"
    );
    publish(&w, &img);
    assert_eq!(objects(&w), before);
    // A damaged object is written again.
    let k = object(&w, &artifacts(&img)["kernel"].0);
    let mut bytes = std::fs::read(&k).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&k, &bytes).unwrap();
    publish(&w, &img);
    assert_eq!(
        sha256_hex(&std::fs::read(&k).unwrap()),
        artifacts(&img)["kernel"].0
    );
}

#[test]
fn publish_lists_kernel_deltas_from_the_images_the_track_carried() {
    let w = world_with(&[]);
    let (k1, k2, k3) = (kernel(0), kernel(1), kernel(2));
    let (a, b, c) = (
        image(&w, "1.0.0", &k1),
        image(&w, "1.1.0", &k2),
        image(&w, "1.2.0", &k3),
    );
    let out = publish(&w, &a);
    assert!(!out.contains("delta"), "{out}");
    assert!(w.channel_doc("stable").tracks[0].deltas.is_empty());

    let out = publish(&w, &b);
    let doc = w.channel_doc("stable");
    let deltas = &doc.tracks[0].deltas;
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    let d = &deltas[0];
    assert_eq!(
        (d.artifact.as_str(), d.from.hex(), d.to.hex()),
        ("kernel", kernel_sha(&a), kernel_sha(&b))
    );
    let bytes = std::fs::read(object(&w, &d.sha256.hex())).unwrap();
    assert_eq!(
        (bytes.len() as u64, sha256_hex(&bytes)),
        (d.size, d.sha256.hex())
    );
    let zst = std::fs::metadata(object(&w, &format!("{}.zst", kernel_sha(&b)))).unwrap();
    assert!(d.size < zst.len() / 10, "{} bytes vs {}", d.size, zst.len());
    let mut rebuilt = Vec::new();
    let n = delta::decode(&k1, &bytes[..], &mut rebuilt, k2.len() as u64).unwrap();
    assert_eq!((n, rebuilt == k2), (k2.len() as u64, true));
    assert_eq!(sha256_hex(&rebuilt), d.to.hex());
    assert!(
        out.contains(&format!(
            "kernel delta from fixture 1.0.0: {} bytes (",
            d.size
        )) && out.contains(&format!("of the compressed kernel's {})", zst.len())),
        "{out}"
    );
    // On disk, the x86_64 track's deltas sit at the top level of the document.
    let v: serde_json::Value = serde_json::from_slice(&w.read("channels/stable.json")).unwrap();
    assert_eq!(v["deltas"][0]["sha256"], d.sha256.hex());
    assert_eq!(v["deltas"][0]["artifact"], "kernel");

    // The same image again: no delta is computed or written, the one listed stays.
    let before = objects(&w);
    let out = publish(&w, &b);
    assert!(!out.contains("delta"), "{out}");
    assert_eq!(objects(&w), before);
    assert_eq!(&w.channel_doc("stable").tracks[0].deltas, deltas);

    // A third kernel: deltas from the track's image (b) and its previous one (a).
    let out = publish(&w, &c);
    let doc = w.channel_doc("stable");
    let from: Vec<String> = doc.tracks[0].deltas.iter().map(|d| d.from.hex()).collect();
    assert_eq!(from, [kernel_sha(&b), kernel_sha(&a)], "{out}");
    assert_eq!(out.matches("kernel delta from").count(), 2, "{out}");
    for (d, base) in doc.tracks[0].deltas.iter().zip([&k2, &k1]) {
        let bytes = std::fs::read(object(&w, &d.sha256.hex())).unwrap();
        let mut rebuilt = Vec::new();
        delta::decode(base, &bytes[..], &mut rebuilt, k3.len() as u64).unwrap();
        assert!(rebuilt == k3);
    }
    // A node reads the document with its deltas and fetches the image.
    let d = w.node("n").fetch_update().unwrap();
    assert_eq!(d.image_version, "1.2.0");
}

#[test]
fn an_image_with_the_same_kernel_gets_no_delta() {
    let w = world_with(&[]);
    // The world's two images differ, their kernels do not.
    publish(&w, &w.img_a);
    let out = publish(&w, &w.img_b);
    assert!(!out.contains("delta"), "{out}");
    assert!(w.channel_doc("stable").tracks[0].deltas.is_empty());
}

#[test]
fn promote_and_rollback_keep_only_the_deltas_to_the_new_kernel() {
    let w = world_with(&[]);
    let (a, b) = two_kernels(&w);
    publish(&w, &a);
    publish(&w, &b);
    let listed = w.channel_doc("stable").tracks[0].deltas.clone();
    assert_eq!(listed.len(), 1);
    let promote = || {
        w.cmd()
            .args(["promote", "--repo"])
            .arg(&w.repo)
            .args(["--from", "stable", "--to", "prod", "--percent", "100"])
            .arg("--channel-key")
            .arg(&w.root_key)
            .assert()
            .success();
    };
    let rollback = |channel: &str| {
        w.cmd()
            .args(["rollback", "--repo"])
            .arg(&w.repo)
            .args(["--channel", channel, "--channel-key"])
            .arg(&w.root_key)
            .assert()
            .success();
    };
    // Promoted, the image's deltas go with it (they rebuild its kernel).
    promote();
    assert_eq!(w.channel_doc("prod").tracks[0].deltas, listed);
    // Rolled back to a, whose kernel they do not rebuild: none stays.
    rollback("stable");
    let t = &w.channel_doc("stable").tracks[0];
    assert_eq!(t.image.version, "1.0.0");
    assert!(t.deltas.is_empty(), "{:?}", t.deltas);
    // Rolled back again (to b): rollback computes no delta.
    rollback("stable");
    let t = &w.channel_doc("stable").tracks[0];
    assert_eq!(t.image.version, "1.1.0");
    assert!(t.deltas.is_empty(), "{:?}", t.deltas);
    // Promoted onto prod, which carries b already: the deltas prod lists to b's kernel stay.
    promote();
    assert_eq!(w.channel_doc("prod").tracks[0].deltas, listed);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_base_kernel_missing_from_the_store_is_a_warning_not_a_failure() {
    let w = world_with(&[]);
    let (a, b) = two_kernels(&w);
    publish(&w, &a);
    std::fs::remove_file(object(&w, &kernel_sha(&a))).unwrap();
    let out = w
        .cmd()
        .arg("publish")
        .arg(&b)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--percent", "100", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        err.contains("stratos: warning: no kernel delta from fixture 1.0.0: ")
            && err.contains(&kernel_sha(&a)),
        "{err}"
    );
    let t = &w.channel_doc("stable").tracks[0];
    assert_eq!(t.image.version, "1.1.0");
    assert!(t.deltas.is_empty(), "{:?}", t.deltas);
}

/// How artifact `name` came in the fetch `d`, and the bytes received for it.
fn came(d: &Decision, name: &str) -> (stratos::channel::node::Method, u64) {
    let t = d.transfer.as_ref().expect("a transfer");
    let a = t.artifacts.iter().find(|a| a.name == name).unwrap();
    (a.method, a.received)
}

#[test]
fn a_node_patches_its_kernel_with_the_listed_delta_or_downloads_it_whole() {
    use stratos::channel::node::Method;
    let w = world();
    let one = image(&w, "2.0.0", &kernel(0));
    publish(&w, &one);
    let holder = w.node("holder");
    let d = holder.fetch_update().unwrap();
    assert_eq!(came(&d, "kernel").0, Method::Full);
    let two = image(&w, "2.1.0", &kernel(1));
    publish(&w, &two);
    // Deltas from both images the track carried (the world's first, and `one`).
    let listed = w.channel_doc("stable").tracks[0].deltas.clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let delta = listed
        .iter()
        .find(|d| d.from.hex() == kernel_sha(&one))
        .unwrap();
    // A node holding the base: the kernel comes as the delta, nothing more.
    let state = w.path("nodes/patched");
    copy_dir(&holder.state, &state);
    let n = Node {
        state: state.clone(),
        ..w.node("patched")
    };
    let d = n.fetch_update().unwrap();
    assert_eq!(
        came(&d, "kernel"),
        (Method::Delta, delta.size),
        "{:?}",
        d.notes
    );
    let staged = state.join(d.staged.as_ref().unwrap());
    assert_eq!(digests(&staged), digests(&two));
    // A delta object served wrong: refused (its sha256 is in the signed channel), the kernel
    // downloaded whole; the staged image is the right one all the same.
    let obj = object(&w, &delta.sha256.hex());
    let good = std::fs::read(&obj).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&obj, &bad).unwrap();
    let state = w.path("nodes/tampered");
    copy_dir(&holder.state, &state);
    let n = Node {
        state: state.clone(),
        ..w.node("tampered")
    };
    let d = n.fetch_update().unwrap();
    assert_eq!(came(&d, "kernel").0, Method::Full);
    assert!(
        d.notes
            .iter()
            .any(|m| m.contains("not the delta the signed channel lists")),
        "{:?}",
        d.notes
    );
    assert_eq!(
        digests(&state.join(d.staged.as_ref().unwrap())),
        digests(&two)
    );
    std::fs::write(&obj, &good).unwrap();
    // A node without the base downloads it whole.
    let d = w.node("new").fetch_update().unwrap();
    assert_eq!(came(&d, "kernel").0, Method::Full);
}
