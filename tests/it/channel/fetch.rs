//! What a fetch transfers: artifacts the node already holds are reused (linked or copied, never
//! downloaded), the others stream to disk and are refused at the first byte too many or on a
//! digest mismatch; the bytes received are accounted per artifact, in the JSON, in
//! `last-fetch.json` and `update status`; a fetch killed at any step leaves the old state or
//! the new one.

use std::collections::BTreeSet;

use super::transport::Server;
use super::*;
use stratos::channel::node::{check_image, Method, Transfer};
use stratos::digest::Sha256;

/// The names of the artifacts of `a` and `b` whose sha256 differ.
fn changed(w: &World, a: &Path, b: &Path) -> BTreeSet<String> {
    [
        "initramfs.cpio.zst",
        "kernel",
        "rootfs.tar.zst",
        "sbom.cdx.json",
    ]
    .into_iter()
    .filter(|n| w.artifact_sha(a, n) != w.artifact_sha(b, n))
    .map(str::to_owned)
    .collect()
}

/// The artifacts of a transfer by method.
fn names(t: &Transfer, m: Method) -> BTreeSet<String> {
    t.artifacts
        .iter()
        .filter(|a| a.method == m)
        .map(|a| a.name.clone())
        .collect()
}

/// `update fetch --json` from `repo` for the node with state `state`: the decision and its
/// transfer (none when nothing was staged).
fn fetch_json(w: &World, repo: &str, state: &Path) -> (serde_json::Value, Option<Transfer>) {
    let out = w
        .cmd()
        .args(["update", "fetch", "--json", "--repo", repo])
        .args(["--channel", "stable", "--node-id", "node-a", "--state"])
        .arg(state)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = v
        .get("transfer")
        .map(|t| serde_json::from_value(t.clone()).unwrap());
    (v, t)
}

/// Body bytes the server sent from `from` on (an index into its log), and the object paths.
fn served_since(s: &Server, from: usize) -> (u64, Vec<String>) {
    let log = s.served();
    let bytes = log[from..].iter().map(|(_, n)| n).sum();
    let objects = log[from..]
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p.starts_with("/objects/"))
        .collect();
    (bytes, objects)
}

#[test]
fn fetch_over_http_reuses_unchanged_artifacts_and_downloads_only_the_changed_one() {
    let w = world();
    let server = Server::start(&w.repo);
    let url = server.url();
    let n = w.node("n");
    // The first fetch downloads every artifact, compressed when the repository has it so; the
    // node's count is the server's.
    let (v, first) = fetch_json(&w, &url, &n.state);
    let first = first.expect("a transfer");
    assert_eq!(v["selected"], true);
    let stored = |img: &Path, name: &str| w.stored_len(&w.artifact_sha(img, name));
    assert!(
        first
            .artifacts
            .iter()
            .all(|a| a.method == Method::Full && a.received == stored(&w.img_a, &a.name)),
        "{first:?}"
    );
    let (served, _) = served_since(&server, 0);
    assert_eq!(first.received, served);
    let artifacts: u64 = first.artifacts.iter().map(|a| a.received).sum();
    assert_eq!(first.received, first.metadata_received + artifacts);
    assert!(artifacts < first.size, "{first:?}");
    // B: the same fixture at another version; one artifact differs (the SBOM names the version).
    let diff = changed(&w, &w.img_a, &w.img_b);
    assert_eq!(diff.len(), 1, "{diff:?}");
    w.publish(&w.img_b, "stable", 100);
    let mark = server.served().len();
    let (v, second) = fetch_json(&w, &url, &n.state);
    let second = second.expect("a transfer");
    assert_eq!(v["image_version"], "1.3.0");
    assert_eq!(names(&second, Method::Full), diff);
    assert_eq!(names(&second, Method::Reused).len(), 3, "{second:?}");
    for a in &second.artifacts {
        let want = if diff.contains(&a.name) {
            stored(&w.img_b, &a.name)
        } else {
            0
        };
        assert_eq!(a.received, want, "{a:?}");
    }
    // What the server sent: the metadata and the changed artifact's object, nothing else.
    let (served, objects) = served_since(&server, mark);
    assert_eq!(second.received, served);
    let sbom = w.artifact_sha(&w.img_b, "sbom.cdx.json");
    let doc = w.channel_doc("stable");
    let img = &doc.tracks[0].image;
    let want: BTreeSet<String> = [
        format!("/objects/sha256/{sbom}.zst"),
        format!("/objects/sha256/{}", img.manifest_sha256),
        format!("/objects/sha256/{}", img.signature_sha256),
    ]
    .into();
    assert_eq!(objects.into_iter().collect::<BTreeSet<_>>(), want);
    assert!(second.received < first.received / 10, "{second:?}");
    assert_eq!(second.size, first.size);
    // The staged image is B, byte for byte.
    let staged = n.state.join(v["staged"].as_str().unwrap());
    assert_eq!(digests(&staged), digests(&w.img_b));
    // The figures are kept, and `update status` shows them.
    let kept: Transfer =
        serde_json::from_slice(&std::fs::read(n.state.join("last-fetch.json")).unwrap()).unwrap();
    assert_eq!(kept, second);
    let out = w
        .cmd()
        .args(["update", "status", "--json", "--state"])
        .arg(&n.state)
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        serde_json::from_value::<Transfer>(st["last_fetch"].clone()).unwrap(),
        second
    );
    let total = format!(
        "received {} bytes of {} ({:.2}%)",
        second.received,
        second.size,
        second.percent()
    );
    w.cmd()
        .args(["update", "status", "--state"])
        .arg(&n.state)
        .assert()
        .success()
        .stdout(predicates::str::contains("fetched   fixture 1.3.0 at "))
        .stdout(predicates::str::contains(&total))
        .stdout(predicates::str::contains(" reused "));
}

/// What `update apply` leaves once the staged image passed: it is current, nothing is staged.
fn make_current(state: &Path) {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("staged.json")).unwrap()).unwrap();
    let current = serde_json::json!({
        "version": s["image"]["version"],
        "manifest_sha256": s["image"]["manifest_sha256"],
        "image": s["image"]["name"],
        "dir": s["dir"],
        "channel": s["channel"],
        "channel_version": s["channel_version"],
        "by": "apply",
    });
    std::fs::write(state.join("current.json"), current.to_string()).unwrap();
    std::fs::remove_file(state.join("staged.json")).unwrap();
}

#[test]
fn fetch_links_artifacts_of_the_current_image_which_stays_intact() {
    use std::os::unix::fs::MetadataExt;
    let w = world();
    let n = w.node("n");
    let d = n.fetch_update().unwrap();
    let a_dir = n.state.join(d.staged.unwrap());
    make_current(&n.state);
    w.publish(&w.img_b, "stable", 100);
    let d = n.fetch_update().unwrap();
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    let t = d.transfer.unwrap();
    assert_eq!(names(&t, Method::Full), changed(&w, &w.img_a, &w.img_b));
    let downloaded: u64 = t
        .artifacts
        .iter()
        .filter(|a| a.method == Method::Full)
        .map(|a| w.stored_len(&w.artifact_sha(&w.img_b, &a.name)))
        .sum();
    assert_eq!(t.received, t.metadata_received + downloaded, "{t:?}");
    let b_dir = n.state.join(d.staged.unwrap());
    // Linked, not copied: the same file.
    let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(a_dir.join("kernel")), ino(b_dir.join("kernel")));
    // Both images verify against their digests.
    let digest = |img: &Path| Sha256::parse(&sha256_file(&img.join("manifest.json"))).unwrap();
    check_image(&a_dir, &digest(&w.img_a)).unwrap();
    check_image(&b_dir, &digest(&w.img_b)).unwrap();
}

#[test]
fn fetch_downloads_what_the_node_holds_damaged_or_under_a_manifest_that_changed() {
    let w = world();
    let damaged = w.node("damaged");
    let relabelled = w.node("relabelled");
    let mut staged = Vec::new();
    for n in [&damaged, &relabelled] {
        staged.push(n.state.join(n.fetch_update().unwrap().staged.unwrap()));
    }
    // A held kernel with the right name and size but one byte flipped: not reused.
    let kernel = staged[0].join("kernel");
    let mut k = std::fs::read(&kernel).unwrap();
    k[100] ^= 1;
    std::fs::write(&kernel, &k).unwrap();
    // A held image whose manifest is no longer the one its directory names: nothing in it is
    // trusted to be anything.
    let m = staged[1].join("manifest.json");
    let mut b = std::fs::read(&m).unwrap();
    b.push(b'\n');
    std::fs::write(&m, &b).unwrap();
    w.publish(&w.img_b, "stable", 100);
    let d = damaged.fetch_update().unwrap();
    let t = d.transfer.unwrap();
    let mut want = changed(&w, &w.img_a, &w.img_b);
    want.insert("kernel".into());
    assert_eq!(names(&t, Method::Full), want);
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("could not reuse") && n.contains("for kernel")),
        "{:?}",
        d.notes
    );
    assert_eq!(
        digests(&damaged.state.join(d.staged.unwrap())),
        digests(&w.img_b)
    );
    let d = relabelled.fetch_update().unwrap();
    let t = d.transfer.unwrap();
    assert!(names(&t, Method::Reused).is_empty(), "{t:?}");
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("not reusing the files of")
                && n.contains("is not the manifest its name says")),
        "{:?}",
        d.notes
    );
    assert_eq!(
        digests(&relabelled.state.join(d.staged.unwrap())),
        digests(&w.img_b)
    );
}

#[test]
fn fetch_refuses_an_artifact_one_byte_longer_shorter_or_different() {
    let w = world();
    let server = Server::start(&w.repo);
    let http = Node {
        source: Source::parse(&server.url()).unwrap(),
        ..w.node("http")
    };
    let dir = w.node("dir");
    for n in [&http, &dir] {
        n.fetch_update().unwrap();
    }
    w.publish(&w.img_b, "stable", 100);
    // The artifact B does not share with A: the one downloaded (the object itself, not its
    // compressed copy).
    w.drop_compressed(&w.img_b, "sbom.cdx.json");
    let object = w
        .repo
        .join("objects/sha256")
        .join(w.artifact_sha(&w.img_b, "sbom.cdx.json"));
    let good = std::fs::read(&object).unwrap();
    let mut longer = good.clone();
    longer.push(b'\n');
    let mut flipped = good.clone();
    flipped[10] ^= 0x20;
    let size = good.len() as u64;
    for n in [&http, &dir] {
        std::fs::write(&object, &longer).unwrap();
        let e = assert_rejected!(
            n,
            fetch,
            ChannelError::TooLarge { rel, cap } if rel.ends_with(&w.artifact_sha(&w.img_b, "sbom.cdx.json")) && *cap == size
        );
        assert!(e.to_string().contains("larger than the"), "{e}");
        for bad in [&flipped, &good[..good.len() - 1].to_vec()] {
            std::fs::write(&object, bad).unwrap();
            assert_rejected!(
                n,
                fetch,
                ChannelError::ArtifactMismatch { name } if name == "sbom.cdx.json"
            );
        }
        // Served right, the same node takes it (nothing was left in the way).
        std::fs::write(&object, &good).unwrap();
        let d = n.fetch_update().unwrap();
        assert_eq!(digests(&n.state.join(d.staged.unwrap())), digests(&w.img_b));
        std::fs::write(&object, &longer).unwrap();
    }
}

#[test]
fn fetch_killed_at_any_step_leaves_the_old_state_or_the_new() {
    let w = world();
    let points = [
        "fetch:artifact-received",
        "fetch:downloaded",
        "fetch:image-moved",
        "fetch:staged-written",
    ];
    let nodes: Vec<Node> = points
        .iter()
        .map(|p| w.node(&p.replace(':', "-")))
        .collect();
    for n in &nodes {
        n.fetch_update().unwrap();
    }
    let a = Sha256::parse(&sha256_file(&w.img_a.join("manifest.json"))).unwrap();
    let b = Sha256::parse(&sha256_file(&w.img_b.join("manifest.json"))).unwrap();
    w.publish(&w.img_b, "stable", 100);
    for (point, n) in points.iter().zip(&nodes) {
        let out = w
            .update("fetch", &n.state)
            .env("STRATOS_FAILPOINT", point)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{point}: {err}");
        assert!(err.contains(&format!("fail point {point}")), "{err}");
        // Old or new: the staged image is A or B, complete; A's files are untouched by the
        // links a killed fetch made to them.
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.state.join("staged.json")).unwrap()).unwrap();
        let staged = Sha256::parse(s["image"]["manifest_sha256"].as_str().unwrap()).unwrap();
        assert!(staged == a || staged == b, "{point}");
        check_image(&n.state.join(format!("images/{staged}")), &staged).unwrap();
        check_image(&n.state.join(format!("images/{a}")), &a).unwrap();
        // The next fetch finishes it: B staged (downloading no more than B's changed
        // artifact), nothing half-done left.
        let (v, t) = fetch_json(&w, w.repo.to_str().unwrap(), &n.state);
        assert_eq!(v["staged"], format!("images/{b}"), "{point}: {v}");
        if let Some(t) = t {
            assert!(
                names(&t, Method::Full).is_subset(&changed(&w, &w.img_a, &w.img_b)),
                "{point}: {t:?}"
            );
        }
        check_image(&n.state.join(format!("images/{b}")), &b).unwrap();
        assert!(
            std::fs::read_dir(&n.state).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".staging")),
            "{point}"
        );
    }
}
