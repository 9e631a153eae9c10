//! Release channels: a node's client against a repository written by the operator commands, and
//! every attack the issue lists, each rejected with the node's state byte-identical afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use stratos::channel::client::{bootstrap, Decision, Node};
use stratos::channel::transport::Source;
use stratos::channel::{self, sign_bytes, to_bytes, Channel, ChannelError, RoleName, Root};
use stratos::sign::SecretKey;

struct World {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
    repo: PathBuf,
    /// Root key (also the channel and image key unless a test sets up more).
    root_key: PathBuf,
    /// hello-ish images, versions 1.2.3 and 1.3.0, signed by the root key.
    img_a: PathBuf,
    img_b: PathBuf,
}

impl World {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> assert_cmd::Command {
        stratos(self.cache.path())
    }

    fn keygen(&self, name: &str) -> PathBuf {
        let prefix = self.path(&format!("keys/{name}"));
        self.cmd()
            .arg("keygen")
            .arg("--out")
            .arg(&prefix)
            .assert()
            .success();
        prefix.with_extension("key")
    }

    fn publish(&self, img: &Path, channel: &str, percent: u32) {
        self.cmd()
            .arg("publish")
            .arg(img)
            .arg("--repo")
            .arg(&self.repo)
            .args(["--channel", channel, "--percent", &percent.to_string()])
            .arg("--sign-key")
            .arg(&self.root_key)
            .assert()
            .success();
    }

    /// `stratos repo rotate-key` from `old` to `new`.
    fn rotate(&self, old: &Path, new: &Path) -> assert_cmd::assert::Assert {
        self.cmd()
            .args(["repo", "rotate-key", "--repo"])
            .arg(&self.repo)
            .arg("--old-key")
            .arg(old)
            .arg("--new-key")
            .arg(new)
            .assert()
    }

    /// A node whose clock runs [`CLOCK_AHEAD`] seconds ahead of the repository's.
    fn node(&self, name: &str) -> Node {
        let state = self.path(&format!("nodes/{name}"));
        bootstrap(&state, &self.repo.join("root.json")).unwrap();
        Node {
            source: Source::Dir(self.repo.clone()),
            channel: "stable".parse().unwrap(),
            node_id: name.into(),
            state,
            now: channel::now() + CLOCK_AHEAD,
            max_artifact_bytes: 1 << 30,
            max_age: channel::DEFAULT_MAX_AGE,
        }
    }

    fn key(&self, p: &Path) -> SecretKey {
        SecretKey::load(p).unwrap()
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.repo.join(rel)).unwrap()
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.repo.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn channel_doc(&self, name: &str) -> Channel {
        channel::parse_channel(&self.read(&format!("channels/{name}.json")), name).unwrap()
    }

    /// Writes `doc` as `channels/<as_name>.json`, signed by `keys` (an attacker's hand).
    fn forge(&self, as_name: &str, doc: &Channel, keys: &[&SecretKey]) {
        let bytes = to_bytes(doc);
        self.write(&format!("channels/{as_name}.json"), &bytes);
        self.write(
            &format!("channels/{as_name}.sigs.json"),
            &sign_bytes(&bytes, keys),
        );
    }
}

/// Test nodes read their clock once, when made, and tests then publish: a rollout published a
/// second later would not have started yet for a node whose clock reads exactly "now" (the
/// tests raced on this). Their clocks run this far ahead instead, as fleet clocks are never
/// exact; ages stay whole days (fmt_age shows minutes only under a day).
const CLOCK_AHEAD: u64 = 120;

/// A repository with `stable` at 100% carrying image A, and two signed images.
fn world_with(init_extra: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut w = World {
        repo: dir.path().join("releases"),
        root_key: PathBuf::new(),
        img_a: dir.path().join("img-a"),
        img_b: dir.path().join("img-b"),
        dir,
        cache,
    };
    w.root_key = w.keygen("root");
    let f = Fixture::new();
    for (img, version) in [(&w.img_a, "1.2.3"), (&w.img_b, "1.3.0")] {
        f.write(
            "profile.toml",
            PROFILE
                .replace("version = \"1.2.3\"", &format!("version = \"{version}\""))
                .as_bytes(),
        );
        w.cmd()
            .arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(img)
            .arg("--sign-key")
            .arg(&w.root_key)
            .arg("-q")
            .assert()
            .success();
    }
    w.cmd()
        .args(["repo", "init"])
        .arg(&w.repo)
        .arg("--root-key")
        .arg(&w.root_key)
        .args(init_extra)
        .assert()
        .success();
    w
}

fn world() -> World {
    let w = world_with(&[]);
    w.publish(&w.img_a, "stable", 100);
    w
}

/// Every file and directory under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            let bytes = if m.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.path().strip_prefix(dir).unwrap().to_owned(),
                (m.permissions().mode(), bytes),
            )
        })
        .collect()
}

/// `$f` (`check` or `fetch`) must be rejected with an error matching the pattern, and leave the
/// node's state untouched; evaluates to the error (for the tests where the wording matters).
macro_rules! assert_rejected {
    ($node:expr, $f:expr, $pat:pat $(if $guard:expr)?) => {
        assert_rejected_by($node, $f, stringify!($pat), |e| {
            matches!(e, $pat $(if $guard)?)
        })
    };
}

fn assert_rejected_by(
    node: &Node,
    f: impl FnOnce(&Node) -> Result<Decision, ChannelError>,
    want: &str,
    is: impl Fn(&ChannelError) -> bool,
) -> ChannelError {
    let before = snapshot(&node.state);
    let e = match f(node) {
        Ok(d) => panic!("accepted ({}), wanted a rejection: {want}", d.reason),
        Err(e) => e,
    };
    assert!(e.is_rejection(), "not a rejection: {e:?}");
    assert!(is(&e), "wanted {want}, got {e:?}: {e}");
    assert_eq!(
        before,
        snapshot(&node.state),
        "the state changed after: {e}"
    );
    e
}

fn check(n: &Node) -> Result<Decision, ChannelError> {
    n.check()
}

fn fetch(n: &Node) -> Result<Decision, ChannelError> {
    n.fetch_update()
}

#[test]
fn a_node_checks_fetches_verifies_and_stages() {
    let w = world();
    let n = w.node("node-1");
    let d = n.fetch_update().unwrap();
    assert!(d.selected, "{}", d.reason);
    assert_eq!((d.channel_version, d.image_version.as_str()), (1, "1.2.3"));
    let staged = n.state.join(d.staged.unwrap());
    // The staged image is exactly the published one and verifies with the root's key.
    assert_eq!(digests(&staged), digests(&w.img_a));
    w.cmd()
        .arg("verify")
        .arg(&staged)
        .arg("--pubkey")
        .arg(w.root_key.with_extension("pub"))
        .assert()
        .success();
    // Checking again: already staged; nothing downloaded twice.
    let d = n.fetch_update().unwrap();
    assert!(
        !d.selected && d.reason.starts_with("already staged"),
        "{}",
        d.reason
    );
    // A new image replaces the staged one (and the old staged directory goes).
    w.publish(&w.img_b, "stable", 100);
    let d = n.fetch_update().unwrap();
    assert!(d.selected && d.image_version == "1.3.0");
    assert_eq!(
        std::fs::read_dir(n.state.join("images")).unwrap().count(),
        1
    );
}

// --- attacks on the channel document -------------------------------------------------------

#[test]
fn attack_unsigned_channel_document() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.image = channel::parse_channel(&w.read("channels/stable.json"), "x")
        .unwrap()
        .image;
    w.forge("stable", &doc, &[]);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet {
            role: RoleName::Channel,
            have: 0,
            need: 1,
            ..
        }
    );
    // No signature file at all.
    std::fs::remove_file(w.repo.join("channels/stable.sigs.json")).unwrap();
    assert_rejected!(&n, check, ChannelError::NotFound { rel } if rel == "channels/stable.sigs.json");
}

#[test]
fn attack_channel_signatures_below_threshold() {
    let w = world_with(&[]);
    let k1 = w.keygen("ch1");
    let k2 = w.keygen("ch2");
    // A repository whose channel role needs 2 of 2 keys.
    let repo2 = w.path("releases2");
    w.cmd()
        .args(["repo", "init"])
        .arg(&repo2)
        .arg("--root-key")
        .arg(&w.root_key)
        .arg("--channel-key")
        .arg(k1.with_extension("pub"))
        .arg("--channel-key")
        .arg(k2.with_extension("pub"))
        .args(["--channel-threshold", "2"])
        .assert()
        .success();
    // The operator's tool refuses to write a document below the threshold…
    w.cmd()
        .arg("publish")
        .arg(&w.img_a)
        .arg("--repo")
        .arg(&repo2)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&k1)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "1 valid signature(s) from distinct channel keys, 2 required",
        ));
    w.cmd()
        .arg("publish")
        .arg(&w.img_a)
        .arg("--repo")
        .arg(&repo2)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&k1)
        .arg("--sign-key")
        .arg(&k2)
        .assert()
        .success();
    let w2 = World { repo: repo2, ..w };
    let n = w2.node("n");
    n.check().unwrap();
    // …and a node refuses one an attacker wrote with one key, or with that key twice.
    let mut doc = w2.channel_doc("stable");
    doc.version += 1;
    doc.rollout = channel::Rollout::percent(100, channel::now());
    let (s1, s2) = (w2.key(&k1), w2.key(&k2));
    for signers in [&[&s1][..], &[&s1, &s1]] {
        w2.forge("stable", &doc, signers);
        assert_rejected!(
            &n,
            check,
            ChannelError::ThresholdUnmet {
                role: RoleName::Channel,
                have: 1,
                need: 2,
                ..
            }
        );
    }
    // Both keys: accepted.
    w2.forge("stable", &doc, &[&s1, &s2]);
    assert_eq!(n.check().unwrap().channel_version, doc.version);
}

#[test]
fn attack_same_key_counted_twice() {
    let w = world_with(&["--threshold", "1"]);
    w.publish(&w.img_a, "stable", 100);
    let n = w.node("n");
    n.check().unwrap();
    // Root signed by the same key listed twice cannot meet a threshold of 2.
    let root_key = w.key(&w.root_key);
    let root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    let mut next = root.clone();
    next.version = 2;
    next.roles.root.threshold = 2;
    let bytes = to_bytes(&next);
    w.write("roots/2.root.json", &bytes);
    w.write(
        "roots/2.sigs.json",
        &sign_bytes(&bytes, &[&root_key, &root_key]),
    );
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet {
            role: RoleName::Root,
            have: 1,
            need: 2,
            ..
        }
    );
}

#[test]
fn attack_channel_signed_by_the_wrong_key() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mallory = w.keygen("mallory");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[&w.key(&mallory)]);
    assert_rejected!(&n, check, ChannelError::ThresholdUnmet { have: 0, .. });
    // The operator tool will not sign with it either.
    w.cmd()
        .args(["rollout", "halt", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&mallory)
        .assert()
        .code(2);
}

#[test]
fn attack_replayed_older_channel_version() {
    let w = world();
    let n = w.node("n");
    let (old, old_sigs) = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.publish(&w.img_b, "stable", 100);
    assert_eq!(n.check().unwrap().channel_version, 2);
    w.write("channels/stable.json", &old);
    w.write("channels/stable.sigs.json", &old_sigs);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Replayed {
            role: RoleName::Channel,
            have: 2,
            got: 1,
            ..
        }
    );
    assert!(
        e.to_string()
            .ends_with("version 1 is older than the version 2 this node already accepted (replay)"),
        "{e}"
    );
    assert_rejected!(&n, fetch, ChannelError::Replayed { .. });
}

#[test]
fn attack_expired_channel_document() {
    let w = world();
    let n = w.node("n");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.expires = channel::now() - 1;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::Expired {
            role: RoleName::Channel,
            version: 2,
            ..
        }
    );
}

#[test]
fn attack_expired_root() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let key = w.key(&w.root_key);
    let mut root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    root.version = 2;
    root.expires = channel::now() - 1;
    let bytes = to_bytes(&root);
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sign_bytes(&bytes, &[&key]));
    w.write("root.json", &bytes);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Expired {
            role: RoleName::Root,
            version: 2,
            ..
        }
    );
    assert!(
        e.to_string().starts_with("root version 2 expired at "),
        "{e}"
    );
}

#[test]
fn attack_document_for_another_channel() {
    let w = world();
    w.publish(&w.img_b, "canary", 100);
    let n = w.node("n");
    n.check().unwrap();
    // The canary document (validly signed) served as stable's.
    let (c, s) = (
        w.read("channels/canary.json"),
        w.read("channels/canary.sigs.json"),
    );
    w.write("channels/stable.json", &c);
    w.write("channels/stable.sigs.json", &s);
    assert_rejected!(
        &n,
        check,
        ChannelError::WrongChannel { got, want, .. }
            if got.as_str() == "canary" && want.as_str() == "stable"
    );
}

#[test]
fn attack_same_version_different_content() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mut doc = w.channel_doc("stable");
    doc.halted = true; // same version 1, different bytes (a fork)
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::Forked {
            role: RoleName::Channel,
            version: 1,
            ..
        }
    );
}

// --- attacks on the image --------------------------------------------------------------------

fn object(w: &World, sha: &str) -> PathBuf {
    w.repo.join("objects/sha256").join(sha)
}

#[test]
fn attack_manifest_swapped() {
    let w = world();
    let n = w.node("n");
    let doc = w.channel_doc("stable");
    let p = object(&w, &doc.image.manifest_sha256);
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
        ..w.node("n")
    };
    assert_rejected!(
        &small,
        fetch,
        ChannelError::ArtifactTooLarge { cap: 1000, .. }
    );
}

// --- attacks on root rotation ----------------------------------------------------------------

#[test]
fn root_rotation_is_followed() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let new = w.keygen("root2");
    w.rotate(&w.root_key, &new).success();
    n.check().unwrap();
    let trusted: Root = channel::parse_root(
        &std::fs::read(n.state.join("trusted/root.json")).unwrap(),
        "t",
    )
    .unwrap();
    assert_eq!(trusted.version, 2);
    // The old key no longer signs roots.
    let old = w.key(&w.root_key);
    let mut r3 = trusted.clone();
    r3.version = 3;
    let bytes = to_bytes(&r3);
    w.write("roots/3.root.json", &bytes);
    w.write("roots/3.sigs.json", &sign_bytes(&bytes, &[&old]));
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet { role: RoleName::Root, what, .. }
            if what == "root version 3 (by the keys of version 2)"
    );
}

#[test]
fn attack_root_rotation_that_skips_a_version() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let k2 = w.keygen("root2");
    let k3 = w.keygen("root3");
    for (old, new) in [(&w.root_key, &k2), (&k2, &k3)] {
        w.rotate(old, new).success();
    }
    std::fs::remove_file(w.repo.join("roots/2.root.json")).unwrap();
    assert_rejected!(&n, check, ChannelError::RotationSkipped { version: 2 });
}

#[test]
fn attack_root_rotation_without_the_old_keys() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let mallory = w.keygen("mallory");
    let m = w.key(&mallory);
    let mut root: Root = channel::parse_root(&w.read("root.json"), "root").unwrap();
    root.version = 2;
    root.keys.insert(
        m.id().clone(),
        channel::KeyEntry {
            kind: "ed25519".into(),
            public: m.public().to_hex(),
        },
    );
    for (_, role) in root.roles.iter_mut() {
        role.key_ids = vec![m.id().clone()];
    }
    let bytes = to_bytes(&root);
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sign_bytes(&bytes, &[&m]));
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet { role: RoleName::Root, what, .. }
            if what == "root version 2 (by the keys of version 1)"
    );
    // The operator tool refuses to rotate without the current keys, too.
    w.rotate(&mallory, &mallory).code(1);
}

#[test]
fn attack_root_rollback() {
    let w = world();
    let n = w.node("n");
    let v1 = (w.read("root.json"), w.read("root.sigs.json"));
    let k2 = w.keygen("root2");
    w.rotate(&w.root_key, &k2).success();
    n.check().unwrap();
    w.write("root.json", &v1.0);
    w.write("root.sigs.json", &v1.1);
    assert_rejected!(
        &n,
        check,
        ChannelError::Replayed {
            role: RoleName::Root,
            have: 2,
            got: 1,
            ..
        }
    );
}

// --- operator flows ----------------------------------------------------------------------------

#[test]
fn rollback_is_accepted_and_a_replay_is_not() {
    let w = world();
    let n = w.node("n");
    let v1 = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.publish(&w.img_b, "stable", 100);
    let d = n.fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (2, "1.3.0"));
    let v2 = (
        w.read("channels/stable.json"),
        w.read("channels/stable.sigs.json"),
    );
    w.cmd()
        .args(["rollback", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "rolled back: channel stable version 3 -> fixture 1.2.3",
        ));
    let d = n.fetch_update().unwrap();
    assert!(d.selected, "{}", d.reason);
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.2.3"));
    assert_eq!(digests(&n.state.join(d.staged.unwrap())), digests(&w.img_a));
    // Replaying either older document (the same image A, or B) is refused.
    for (doc, sigs) in [v1, v2] {
        w.write("channels/stable.json", &doc);
        w.write("channels/stable.sigs.json", &sigs);
        assert_rejected!(&n, fetch, ChannelError::Replayed { .. });
    }
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
            .args(["--channel", "canary", "--sign-key"])
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
        .arg("--sign-key")
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

/// A `stratos boot-test --json` result for `img` (as the library writes it) whose one
/// objective passed or failed.
fn gate(w: &World, img: &Path, passed: bool) -> PathBuf {
    use stratos::boot::bench::{BootTestResult, ImageInfo, Verdict, SCHEMA};
    let info = ImageInfo {
        dir: Some(img.display().to_string()),
        manifest_sha256: Some(sha256_file(&img.join("manifest.json"))),
        name: "fixture".into(),
        version: "1.2.3".into(),
        machine: "microvm".into(),
        sizes: BTreeMap::new(),
    };
    let result = BootTestResult {
        schema: SCHEMA.into(),
        image: info,
        baseline: None,
        snapshot: None,
        accel: "tcg".into(),
        runs: 1,
        invocations: 1,
        invoke: "/".into(),
        memory_mib: 512,
        metrics: BTreeMap::new(),
        baseline_metrics: None,
        comparison: None,
        objectives: vec![Verdict {
            objective: "runtime_ready.p95<=900ms".into(),
            value: Some(if passed { 800.0 } else { 1200.0 }),
            passed,
            reason: if passed {
                "800 ms <= 900 ms"
            } else {
                "1200 ms > 900 ms"
            }
            .into(),
        }],
        runs_detail: Vec::new(),
        concurrent: None,
        logs: Vec::new(),
        passed,
    };
    let p = w.path(&format!("gate-{passed}.json"));
    std::fs::write(&p, result.to_json()).unwrap();
    p
}

#[test]
fn rollout_waves_halt_resume_and_gated_advance() {
    let w = world_with(&[]);
    w.publish(&w.img_a, "canary", 100);
    let waves = w.path("waves.toml");
    std::fs::write(
        &waves,
        "[[wave]]\nstart-after = \"0s\"\nfleet-percent = 5\n[[wave]]\nstart-after = \"6h\"\nfleet-percent = 50\n[[wave]]\nstart-after = \"2d\"\nfleet-percent = 100\n",
    )
    .unwrap();
    let run = |args: &[&str], extra: &[&Path]| {
        let mut c = w.cmd();
        c.args(args);
        for e in extra {
            c.arg(e);
        }
        c.arg("--repo")
            .arg(&w.repo)
            .arg("--sign-key")
            .arg(&w.root_key);
        c.assert()
    };
    w.cmd()
        .args(["promote", "--repo"])
        .arg(&w.repo)
        .args(["--from", "canary", "--to", "stable", "--waves"])
        .arg(&waves)
        .arg("--sign-key")
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains("3 waves"));
    let status = || {
        let out = w
            .cmd()
            .args(["repo", "status", "--json", "--repo"])
            .arg(&w.repo)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == "stable")
            .unwrap()
            .clone()
    };
    assert_eq!(status()["reached_percent"], 5.0);
    // A failed gate does not widen the rollout, and writes nothing.
    let before = w.read("channels/stable.json");
    run(
        &["rollout", "advance", "--channel", "stable", "--gate"],
        &[&gate(&w, &w.img_a, false)],
    )
    .code(1)
    .stderr(predicates::str::contains("1200 ms > 900 ms"));
    // A passing gate for another image does not either.
    run(
        &["rollout", "advance", "--channel", "stable", "--gate"],
        &[&gate(&w, &w.img_b, true)],
    )
    .code(1)
    .stderr(predicates::str::contains("test the image being rolled out"));
    assert_eq!(before, w.read("channels/stable.json"));
    // A passing gate for this image moves to the next wave now.
    run(
        &["rollout", "advance", "--channel", "stable", "--gate"],
        &[&gate(&w, &w.img_a, true)],
    )
    .success()
    .stdout(predicates::str::contains("reached now: 50.00%"));
    assert_eq!(status()["reached_percent"], 50.0);
    // Halt: nodes stop being selected; resume: they are again.
    run(&["rollout", "halt", "--channel", "stable"], &[]).success();
    assert_eq!(status()["halted"], true);
    let n = w.node("n-halt");
    let selected_somewhere = (0..200)
        .map(|i| format!("node-{i}"))
        .find(|id| channel::cohort(id, "stable", "1.2.3") < 5000);
    let n = Node {
        node_id: selected_somewhere.unwrap(),
        ..n
    };
    let d = n.check().unwrap();
    assert!(!d.selected && d.reason.contains("halted"), "{}", d.reason);
    run(
        &["rollout", "advance", "--channel", "stable", "--gate"],
        &[&gate(&w, &w.img_a, true)],
    )
    .code(2)
    .stderr(predicates::str::contains("resume it before widening"));
    run(&["rollout", "resume", "--channel", "stable"], &[]).success();
    assert!(n.check().unwrap().selected);
    // A fixed percent replaces the waves.
    run(&["rollout", "--channel", "stable", "--percent", "100"], &[]).success();
    assert_eq!(status()["reached_percent"], 100.0);
    // The human table names every channel.
    w.cmd()
        .args(["repo", "status", "--repo"])
        .arg(&w.repo)
        .assert()
        .success()
        .stdout(predicates::str::contains("canary").and(predicates::str::contains("stable")));
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn update_cli_exit_codes_and_json() {
    let w = world();
    let state = w.path("cli-node");
    let update = |verb: &str, extra: &[&str]| {
        let mut c = w.cmd();
        c.args(["update", verb, "--repo"])
            .arg(&w.repo)
            .args(["--channel", "stable", "--node-id", "node-a", "--state"])
            .arg(&state)
            .args(extra);
        c
    };
    // No trusted root yet: bad usage, says how to bootstrap.
    update("check", &[])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--bootstrap-root"));
    let root = w.repo.join("root.json");
    let out = update(
        "fetch",
        &["--json", "--bootstrap-root", root.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"], true);
    assert_eq!(v["channel_version"], 1);
    assert_eq!(v["image_version"], "1.2.3");
    assert!(v["reason"].as_str().unwrap().contains("staged"));
    assert!(state
        .join(v["staged"].as_str().unwrap())
        .join("manifest.sig")
        .is_file());
    // file:// works the same.
    let url = format!("file://{}", w.repo.display());
    w.cmd()
        .args([
            "update",
            "check",
            "--repo",
            &url,
            "--channel",
            "stable",
            "--node-id",
            "node-a",
            "--state",
        ])
        .arg(&state)
        .assert()
        .success()
        .stdout(predicates::str::contains("already staged"));
    // A rejection: exit 1, JSON says why.
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[]);
    let out = update("check", &["--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["selected"].clone(), v["rejected"].clone()),
        (false.into(), true.into())
    );
    assert!(v["reason"].as_str().unwrap().contains("valid signature"));
    // Bad usage.
    update("check", &["--channel", "Not A Channel"])
        .assert()
        .code(2);
    w.cmd().args(["update", "check"]).assert().code(2);
}

/// `python3 -m http.server` on 127.0.0.1 (a port the OS picks), serving `dir`; killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        require_tool("python3");
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn end_to_end_over_http_canary_promote_rollback_with_a_thousand_nodes() {
    let w = world_with(&[]);
    w.publish(&w.img_a, "canary", 10);
    let server = Server::start(&w.repo);
    let url = server.url();
    let node = |id: usize, channel: &str| {
        let state = w.path(&format!("fleet/{id}"));
        bootstrap(&state, &w.repo.join("root.json")).unwrap();
        Node {
            source: Source::parse(&url).unwrap(),
            channel: channel.parse().unwrap(),
            node_id: format!("node-{id:04}"),
            state,
            now: channel::now() + CLOCK_AHEAD,
            max_artifact_bytes: 1 << 30,
            max_age: channel::DEFAULT_MAX_AGE,
        }
    };
    // Canary at 10%: about a tenth of 1,000 nodes are selected.
    let selected: Vec<usize> = (0..1000)
        .filter(|&i| node(i, "canary").check().unwrap().selected)
        .collect();
    eprintln!("canary at 10%: {} of 1000 nodes selected", selected.len());
    assert!((70..=130).contains(&selected.len()), "{}", selected.len());
    // A selected node fetches over HTTP with the command a node would run.
    let first = selected[0];
    let out = w
        .cmd()
        .args([
            "update",
            "fetch",
            "--json",
            "--repo",
            &url,
            "--channel",
            "canary",
        ])
        .args(["--node-id", &format!("node-{first:04}"), "--state"])
        .arg(w.path(&format!("fleet/{first}")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"], true);
    let staged = w
        .path(&format!("fleet/{first}"))
        .join(v["staged"].as_str().unwrap());
    assert_eq!(digests(&staged), digests(&w.img_a));
    // Promote to stable at 100%: every node on stable is selected.
    w.cmd()
        .args(["promote", "--repo"])
        .arg(&w.repo)
        .args([
            "--from",
            "canary",
            "--to",
            "stable",
            "--percent",
            "100",
            "--sign-key",
        ])
        .arg(&w.root_key)
        .assert()
        .success();
    let mut already = 0;
    for i in 0..1000 {
        let d = node(i, "stable").check().unwrap();
        // The canary node that staged A already has it; everyone else is selected.
        if d.reason.starts_with("already staged") {
            already += 1;
        } else {
            assert!(d.selected, "node {i}: {}", d.reason);
        }
    }
    assert_eq!(already, 1);
    // B goes out on stable, then the operator rolls back: nodes get A again, at a higher version.
    w.publish(&w.img_b, "stable", 100);
    let d = node(7, "stable").fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (2, "1.3.0"));
    w.cmd()
        .args(["rollback", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&w.root_key)
        .assert()
        .success();
    let d = node(7, "stable").fetch_update().unwrap();
    assert!(d.selected);
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.2.3"));
    // Caps hold over HTTP too: an oversized document is aborted at the limit.
    let mut big = w.read("channels/stable.json");
    big.resize(2 << 20, b' ');
    w.write("channels/big.json", &big);
    w.write(
        "channels/big.sigs.json",
        &w.read("channels/stable.sigs.json"),
    );
    let n = node(8, "big");
    assert_rejected!(
        &n,
        check,
        ChannelError::TooLarge { rel, cap: 1_048_576 } if rel == "channels/big.json"
    );
}

// --- hostile input and faults (issue 12) -------------------------------------------------------

impl World {
    /// `stratos update VERB` for a node with state `state` following `stable` on this repository.
    fn update(&self, verb: &str, state: &Path) -> assert_cmd::Command {
        let mut c = self.cmd();
        c.args(["update", verb, "--repo"])
            .arg(&self.repo)
            .args(["--channel", "stable", "--node-id", "node-a", "--state"])
            .arg(state)
            // A hang is a failure, not a stuck test run.
            .timeout(std::time::Duration::from_secs(60));
        c
    }

    /// Builds the fixture profile as `version` into `out`, signed by `key`.
    fn build(&self, out: &Path, version: &str, key: &Path) {
        let f = Fixture::new();
        f.write(
            "profile.toml",
            PROFILE
                .replace("version = \"1.2.3\"", &format!("version = \"{version}\""))
                .as_bytes(),
        );
        self.cmd()
            .arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(out)
            .arg("--sign-key")
            .arg(key)
            .arg("-q")
            .assert()
            .success();
    }

    /// A copy of the image directory `img` at `rel`.
    fn copy_image(&self, img: &Path, rel: &str) -> PathBuf {
        let to = self.path(rel);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(img).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    }

    /// The sha256 of the artifact `name` of image `img`.
    fn artifact_sha(&self, img: &Path, name: &str) -> String {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
        m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn root_doc(&self) -> Root {
        channel::parse_root(&self.read("root.json"), "root.json").unwrap()
    }
}

/// Replaces `p` (if present) by a FIFO nobody writes to: reading it would block forever.
fn mkfifo(p: &Path) {
    if p.exists() {
        std::fs::remove_file(p).unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

// Item 3: a server that drips a byte every 200 ms would keep a node busy for days within the
// size cap; the request deadline cuts it off and says "timed out".

/// A server on 127.0.0.1 that answers every request with a status line and then one byte
/// every 200 ms (for two minutes at most).
fn drip_server() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if c.read(&mut buf).is_err() || c.write_all(b"HTTP/1.0 200 OK\r\n\r\n").is_err() {
                    return;
                }
                for _ in 0..600 {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if c.write_all(b" ").is_err() {
                        return; // the client gave up
                    }
                }
            });
        }
    });
    port
}

#[test]
fn http_drip_feed_times_out() {
    let w = world();
    let port = drip_server();
    let url = format!("http://127.0.0.1:{port}/");
    let n = Node {
        source: Source::parse(&url)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(1)),
        ..w.node("n")
    };
    let before = snapshot(&n.state);
    let e = n.check().unwrap_err();
    assert!(matches!(e, ChannelError::Http(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/root.json: timed out after"))
            && msg.contains("below the minimum of 64 KiB/s"),
        "{msg}"
    );
    assert_eq!(before, snapshot(&n.state), "the state changed after: {msg}");
    // The command a node runs: exit 1, the same reason, --timeout documented.
    let a = w
        .cmd()
        .args(["update", "check", "--timeout", "1", "--repo", &url])
        .args(["--channel", "stable", "--node-id", "n", "--state"])
        .arg(&n.state)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("/root.json: timed out after"));
    assert_eq!(stderr_of(&a).matches("timed out").count(), 1);
    assert_eq!(before, snapshot(&n.state));
    // In JSON: a time-out is not a verification rejection.
    let out = w
        .cmd()
        .args([
            "update",
            "check",
            "--json",
            "--timeout",
            "1",
            "--repo",
            &url,
        ])
        .args(["--channel", "stable", "--node-id", "n", "--state"])
        .arg(&n.state)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rejected"], false);
    assert!(v["reason"].as_str().unwrap().contains("timed out"), "{v}");
    w.cmd()
        .args(["update", "check", "--help"])
        .assert()
        .success()
        .stdout(
            predicates::str::contains("--timeout <SECS>")
                .and(predicates::str::contains("64 KiB/s")),
        );
}

// Item 4: FIFOs where files are expected are refused at once, naming the file.

#[test]
fn channel_publish_fifo_in_place_of_an_artifact() {
    let w = world();
    let img = w.copy_image(&w.img_b, "fifo-image");
    mkfifo(&img.join("kernel"));
    let before = snapshot(&w.repo);
    w.cmd()
        .arg("publish")
        .arg(&img)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&w.root_key)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "{} is a FIFO, not a regular file",
            img.join("kernel").display()
        )));
    assert_eq!(before, snapshot(&w.repo));
    // The manifest or the signature as a FIFO: the same.
    for name in ["manifest.json", "manifest.sig"] {
        let img = w.copy_image(&w.img_b, &format!("fifo-{name}"));
        mkfifo(&img.join(name));
        w.cmd()
            .arg("publish")
            .arg(&img)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--sign-key"])
            .arg(&w.root_key)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(predicates::str::contains(format!("{name} is a FIFO")));
    }
    assert_eq!(before, snapshot(&w.repo));
}

#[test]
fn update_fetch_fifo_in_place_of_an_object() {
    let w = world();
    let n = w.node("n");
    let object = w
        .repo
        .join("objects/sha256")
        .join(w.artifact_sha(&w.img_a, "kernel"));
    mkfifo(&object);
    let before = snapshot(&n.state);
    w.update("fetch", &n.state)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(format!(
            "{} is a FIFO, not a regular file",
            object.display()
        )));
    assert_eq!(before, snapshot(&n.state));
    // A FIFO for a metadata document, too.
    mkfifo(&w.repo.join("channels/stable.json"));
    w.update("check", &n.state)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("stable.json is a FIFO"));
    assert_eq!(before, snapshot(&n.state));
}

#[test]
fn channel_fifo_as_gate_waves_or_bootstrap_root() {
    let w = world();
    let fifo = w.path("fifo");
    mkfifo(&fifo);
    let before = snapshot(&w.repo);
    let run = |args: &[&str]| {
        w.cmd()
            .args(args)
            .arg(&fifo)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--sign-key"])
            .arg(&w.root_key)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(2)
            .stderr(predicates::str::contains(format!(
                "{} is a FIFO, not a regular file",
                fifo.display()
            )))
    };
    run(&["rollout", "advance", "--gate"]).stderr(predicates::str::contains("--gate: "));
    run(&["rollout", "--waves"]).stderr(predicates::str::contains("--waves: "));
    assert_eq!(before, snapshot(&w.repo));
    let state = w.path("fresh-node");
    w.update("check", &state)
        .arg("--bootstrap-root")
        .arg(&fifo)
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("--bootstrap-root: ").and(predicates::str::contains(
                format!("{} is a FIFO", fifo.display()),
            )),
        );
    assert!(!state.exists());
}

// Item 6: root and channel metadata.

/// Root documents for the committed `tests/hostile/root-*` fixtures, from a fixed key.
fn hostile_roots() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let k = SecretKey::from_seed([7; 32]);
    let real = k.id().clone();
    let entry = channel::KeyEntry {
        kind: "ed25519".into(),
        public: k.public().to_hex(),
    };
    let fake: stratos::sign::KeyId = "00000000000000ff".to_owned().try_into().unwrap();
    let role = |ids: &[&stratos::sign::KeyId], threshold| channel::Role {
        key_ids: ids.iter().map(|i| (*i).clone()).collect(),
        threshold,
    };
    let doc = |keys: Vec<(&stratos::sign::KeyId, &channel::KeyEntry)>, root_role: channel::Role| {
        let ids: Vec<_> = keys.iter().map(|(i, _)| *i).collect();
        Root {
            kind: channel::ROOT_TYPE.into(),
            spec_version: channel::SPEC_VERSION,
            version: 1,
            expires: 4_102_444_800, // 2100-01-01: rejected for its keys, whenever it is read
            keys: keys
                .iter()
                .map(|(i, e)| ((*i).clone(), (*e).clone()))
                .collect(),
            roles: channel::Roles {
                root: root_role,
                channel: role(&ids[..1], 1),
                image: role(&ids[..1], 1),
            },
        }
    };
    // The key signs once per id it is listed under.
    let sigs = |bytes: &[u8], ids: &[&stratos::sign::KeyId]| {
        to_bytes(&channel::Signatures {
            signatures: ids
                .iter()
                .map(|id| channel::Signature {
                    key_id: (*id).clone(),
                    sig: hex::encode(k.sign(bytes)),
                })
                .collect(),
        })
    };
    let two_ids = doc(
        vec![(&real, &entry), (&fake, &entry)],
        role(&[&real, &fake], 2),
    );
    let wrong_id = doc(vec![(&fake, &entry)], role(&[&fake], 1));
    let (b1, b2) = (to_bytes(&two_ids), to_bytes(&wrong_id));
    vec![
        (
            "root-one-key-two-ids",
            b1.clone(),
            sigs(&b1, &[&real, &fake]),
        ),
        ("root-key-id-not-its-key", b2.clone(), sigs(&b2, &[&fake])),
    ]
}

#[test]
fn root_hostile_fixtures_are_refused_at_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, sigs) in hostile_roots() {
        let fixture = root().join("tests/hostile").join(name);
        if std::env::var_os("STRATOS_REGENERATE_HOSTILE").is_some() {
            std::fs::create_dir_all(&fixture).unwrap();
            std::fs::write(fixture.join("root.json"), &bytes).unwrap();
            std::fs::write(fixture.join("root.sigs.json"), &sigs).unwrap();
        }
        // The committed fixture is what the generator above makes (run the test with
        // STRATOS_REGENERATE_HOSTILE=1 to rewrite it).
        assert_eq!(
            std::fs::read(fixture.join("root.json")).unwrap(),
            bytes,
            "{name}"
        );
        assert_eq!(
            std::fs::read(fixture.join("root.sigs.json")).unwrap(),
            sigs,
            "{name}"
        );
        let state = dir.path().join(name);
        let e = bootstrap(&state, &fixture.join("root.json")).unwrap_err();
        assert!(
            matches!(&e, ChannelError::KeyIdMismatch { listed, .. } if listed.as_str() == "00000000000000ff"),
            "{name}: {e:?}"
        );
        assert!(e.is_rejection(), "{name}: {e:?}");
        assert!(
            e.to_string().contains(
                "key id 00000000000000ff is not the id of the key it lists (that key's id is "
            ),
            "{name}: {e}"
        );
        assert!(!state.exists(), "{name}: the state was created");
    }
}

#[test]
fn attack_root_lists_one_key_under_two_ids() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // A root version 2 whose root role needs 2 signatures and lists the one root key under its
    // own id and a made-up one, signed once per id: the old code counted two signatures.
    let key = w.key(&w.root_key);
    let mut root = w.root_doc();
    root.version = 2;
    let fake: stratos::sign::KeyId = "00000000000000ff".to_owned().try_into().unwrap();
    root.keys.insert(fake.clone(), root.keys[key.id()].clone());
    let r = &mut root.roles.root;
    r.key_ids.push(fake.clone());
    r.threshold = 2;
    let bytes = to_bytes(&root);
    let sigs = to_bytes(&channel::Signatures {
        signatures: [key.id().clone(), fake]
            .into_iter()
            .map(|id| channel::Signature {
                key_id: id,
                sig: hex::encode(key.sign(&bytes)),
            })
            .collect(),
    });
    w.write("roots/2.root.json", &bytes);
    w.write("roots/2.sigs.json", &sigs);
    w.write("root.json", &bytes);
    assert_rejected!(
        &n,
        check,
        ChannelError::KeyIdMismatch { what, listed, .. }
            if what == "root.json" && listed.as_str() == "00000000000000ff"
    );
    // Even a root that slipped through cannot count one key twice.
    let e = channel::verify_threshold("doc", &bytes, &sigs, &root, RoleName::Root).unwrap_err();
    assert!(
        matches!(
            e,
            ChannelError::ThresholdUnmet {
                role: RoleName::Root,
                have: 1,
                need: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "doc: 1 valid signature(s) from distinct root keys, 2 required"
    );
}

#[test]
fn repo_init_refuses_the_same_key_twice() {
    let w = world_with(&[]);
    let ch = w.keygen("channel");
    let repo = w.path("twice");
    let init = |args: &[&std::ffi::OsStr]| {
        let mut c = w.cmd();
        c.args(["repo", "init"]).arg(&repo).args(args);
        c.assert()
    };
    let key = w.root_key.as_os_str();
    let chp = ch.with_extension("pub");
    let id = w.key(&w.root_key).id().to_string();
    init(&[
        "--root-key".as_ref(),
        key,
        "--root-key".as_ref(),
        key,
        "--threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains(format!(
        "--root-key: key {id} is given twice; thresholds count distinct keys"
    )));
    init(&[
        "--root-key".as_ref(),
        key,
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains("--channel-key: key"))
    .stderr(predicates::str::contains("is given twice"));
    // A threshold above the number of keys.
    init(&[
        "--root-key".as_ref(),
        key,
        "--channel-key".as_ref(),
        chp.as_os_str(),
        "--channel-threshold".as_ref(),
        "2".as_ref(),
    ])
    .code(2)
    .stderr(predicates::str::contains(
        "--channel-threshold 2 must be between 1 and the number of channel keys (1)",
    ));
    assert!(!repo.exists(), "nothing may be written");
}

#[test]
fn root_rotation_warns_about_roles_that_still_trust_the_old_key() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let old_id = w.key(&w.root_key).id().to_string();
    let new = w.keygen("root2");
    let a = w.rotate(&w.root_key, &new).success();
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!(
            "warning: the channel and image roles still trust the retired root key {old_id}"
        )) && err.contains("--also channel,image"),
        "{err}"
    );
    let root = w.root_doc();
    for role in [channel::RoleName::Channel, channel::RoleName::Image] {
        assert!(root
            .roles
            .get(role)
            .key_ids
            .iter()
            .any(|k| k.as_str() == old_id));
    }
    // Which is what the warning says: the old key still signs channels nodes accept.
    assert!(n.check().is_ok());
}

#[test]
fn root_rotation_also_rotates_channel_and_image_roles() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    let old = w.key(&w.root_key);
    let new = w.keygen("root2");
    let new_id = w.key(&new).id().clone();
    let a = w
        .cmd()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&w.repo)
        .arg("--old-key")
        .arg(&w.root_key)
        .arg("--new-key")
        .arg(&new)
        .args(["--also", "channel,image"])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!(
            "the channel role now trusts {new_id} instead of {}",
            old.id()
        )))
        .stdout(predicates::str::contains("re-signed channel stable"));
    assert!(!stderr_of(&a).contains("warning"), "{}", stderr_of(&a));
    let root = w.root_doc();
    for role in channel::RoleName::ALL {
        assert_eq!(root.roles.get(role).key_ids, vec![new_id.clone()], "{role}");
    }
    assert!(!root.keys.contains_key(old.id()));
    // The node follows the rotation; the image signed by the retired key is no longer
    // trusted (the command said so)…
    assert!(stderr_of(&a).contains("nodes no longer stage images signed by"));
    assert_rejected!(&n, check, ChannelError::UntrustedImageKey { key, .. } if key == old.id());
    // …one signed by the new key is, in a channel document signed by the new key.
    let img = w.path("img-new-key");
    w.build(&img, "1.4.0", &new);
    w.cmd()
        .arg("publish")
        .arg(&img)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key"])
        .arg(&new)
        .assert()
        .success();
    let d = n.fetch_update().unwrap();
    assert_eq!((d.channel_version, d.image_version.as_str()), (3, "1.4.0"));
    assert!(d.selected && d.staged.is_some(), "{}", d.reason);
    // The retired key no longer signs channel documents.
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[&old]);
    assert_rejected!(
        &n,
        check,
        ChannelError::ThresholdUnmet {
            role: RoleName::Channel,
            have: 0,
            need: 1,
            ..
        }
    );
    // Unknown roles are refused by the command line.
    w.cmd()
        .args(["repo", "rotate-key", "--repo"])
        .arg(&w.repo)
        .arg("--old-key")
        .arg(&new)
        .arg("--new-key")
        .arg(&w.root_key)
        .args(["--also", "everything"])
        .assert()
        .code(2);
}

#[test]
fn attack_channel_relabels_an_old_image() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // The channel key alone re-announces image 1.2.3 as 9.9.9 (or as another image).
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.image.version = "9.9.9".into();
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
    doc.image.version = "1.2.3".into();
    doc.image.name = "payments".into();
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        fetch,
        ChannelError::Relabelled { name, signed_name, .. }
            if name == "payments" && signed_name == "fixture"
    );
}

#[test]
fn channel_expiry_is_bounded() {
    let w = world();
    let before = snapshot(&w.repo);
    let publish = |expires: &str| {
        w.cmd()
            .arg("publish")
            .arg(&w.img_b)
            .arg("--repo")
            .arg(&w.repo)
            .args(["--channel", "stable", "--expires", expires, "--sign-key"])
            .arg(&w.root_key)
            .assert()
            .code(2)
    };
    publish("99999999999d").stderr(predicates::str::contains(
        "--expires \"99999999999d\": must be between 1s and 3650d",
    ));
    publish("999999999999999999999d").stderr(predicates::str::contains(
        "--expires \"999999999999999999999d\": expected a duration",
    ));
    publish("3651d").stderr(predicates::str::contains("3650d"));
    assert_eq!(before, snapshot(&w.repo));
    w.cmd()
        .args(["repo", "init"])
        .arg(w.path("r2"))
        .arg("--root-key")
        .arg(&w.root_key)
        .args(["--expires", "100000d"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--expires \"100000d\": must be between",
        ));
    // A node refuses a document that would practically never expire.
    let n = w.node("n");
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.expires = n.now + 100 * 365 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    assert_rejected!(
        &n,
        check,
        ChannelError::ValidTooLong { what, days: 36_500, .. } if what == "channels/stable.json"
    );
    // The node's --max-age is bounded and named too.
    w.update("check", &n.state)
        .args(["--max-age", "soon"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--max-age \"soon\": expected a duration",
        ));
}

#[test]
fn attack_freeze_with_a_stale_unexpired_document() {
    let w = world();
    let n = w.node("n");
    n.check().unwrap();
    // A mirror keeps serving a document signed 8 days ago and valid for 3 more weeks (here
    // forged with the channel key as a stand-in for the operator's own old document).
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    // Against the node's own clock: seconds pass between making the node and forging.
    doc.timestamp = n.now - 8 * 86_400;
    doc.expires = n.now + 21 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    let e = assert_rejected!(
        &n,
        check,
        ChannelError::Frozen { version: 2, max_age, .. } if *max_age == channel::DEFAULT_MAX_AGE
    );
    assert!(
        e.to_string().starts_with("channels/stable.json: version 2 was signed 8d ago, longer than this node's maximum age of 7d (--max-age); either the repository is frozen on an old document (a freeze attack)"),
        "{e}"
    );
    assert_rejected!(&n, fetch, ChannelError::Frozen { .. });
    // A node that allows 9 days takes it: it is the age, nothing else.
    let lenient = Node {
        max_age: 9 * 86_400,
        ..w.node("n")
    };
    assert_eq!(lenient.check().unwrap().channel_version, 2);
}

#[test]
fn repo_refresh_keeps_a_quiet_channel_fresh() {
    let w = world();
    // The operator's own document, signed 8 days ago and unchanged since (written here with
    // the channel key and an old timestamp): nodes refuse it…
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    doc.timestamp = channel::now() - 8 * 86_400;
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    let later = w.node("n");
    assert_rejected!(&later, check, ChannelError::Frozen { age, .. } if *age / 86_400 == 8);
    w.cmd()
        .args(["repo", "status", "--repo"])
        .arg(&w.repo)
        .assert()
        .success()
        .stdout(predicates::str::contains("8d ago"))
        .stdout(predicates::str::contains("STALE"));
    // …until the operator re-signs it, unchanged but for version, timestamp and expiry.
    let old = w.channel_doc("stable");
    w.cmd()
        .args(["repo", "refresh", "--repo"])
        .arg(&w.repo)
        .args(["--all", "--sign-key"])
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "refreshed: channel stable version 3 -> fixture 1.2.3",
        ));
    let new = w.channel_doc("stable");
    assert_eq!(
        (new.version, &new.image, &new.rollout, new.halted),
        (old.version + 1, &old.image, &old.rollout, old.halted)
    );
    assert!(new.timestamp >= old.timestamp);
    let d = later.fetch_update().unwrap();
    assert!(d.selected && d.staged.is_some(), "{}", d.reason);
    // A channel that does not exist is named.
    w.cmd()
        .args(["repo", "refresh", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "nope", "--sign-key"])
        .arg(&w.root_key)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("channel nope does not exist"));
}

// Item 8: an interrupted update leaves its staging directory behind; the next run removes it,
// and only it.

#[test]
fn update_fetch_removes_leftover_staging_directories() {
    let w = world();
    let n = w.node("n");
    // What a killed `update fetch` leaves: a staging directory with a partial artifact, and a
    // half-written metadata file; next to them, things that are not ours.
    let leftover = n.state.join(".staging-Ab12Cd");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("kernel"), b"partial").unwrap();
    let tmp = n.state.join("trusted/.stratos-tmp-x1Y2z3");
    std::fs::write(&tmp, b"{\"half").unwrap();
    let user_file = n.state.join("notes.txt");
    std::fs::write(&user_file, b"mine\n").unwrap();
    let user_dir = n.state.join(".staging-keep-me");
    std::fs::create_dir_all(&user_dir).unwrap();
    let elsewhere = w.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), b"do not delete").unwrap();
    let link = n.state.join(".staging-Zz99Yy");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    w.update("fetch", &n.state)
        .assert()
        .success()
        .stderr(predicates::str::contains(format!(
            "note: removed {}, left by an interrupted update",
            leftover.display()
        )))
        .stdout(predicates::str::contains("staged at"));
    assert!(!leftover.exists() && !tmp.exists());
    assert_eq!(std::fs::read(&user_file).unwrap(), b"mine\n");
    assert!(user_dir.is_dir());
    // A symlink named like ours is neither followed nor removed.
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read(elsewhere.join("precious")).unwrap(),
        b"do not delete"
    );
    // Nothing is left by a rejected update either, and a clean state gets no notes.
    let a = w.update("fetch", &n.state).assert().success();
    assert!(!stderr_of(&a).contains("note:"), "{}", stderr_of(&a));
}

// Item 12: each cause is printed once.

#[test]
fn errors_print_their_cause_once() {
    let w = world();
    // The state path is a file: creating the state directory fails.
    let state = w.path("not-a-dir");
    std::fs::write(&state, b"").unwrap();
    let a = w
        .update("check", &state)
        .arg("--bootstrap-root")
        .arg(w.repo.join("root.json"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("creating {}", state.display())),
        "{err}"
    );
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
    // A missing signing key.
    let a = w
        .cmd()
        .args(["rollout", "halt", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--sign-key", "/nonexistent/k.key"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("/nonexistent/k.key"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

#[test]
fn corrupt_state_files_stop_every_command_and_delete_nothing() {
    let w = world();
    let n = w.node("n");
    n.fetch_update().unwrap();
    let st = n.state.clone();
    assert_eq!(std::fs::read_dir(st.join("images")).unwrap().count(), 1);
    for file in [
        "current.json",
        "staged.json",
        "previous.json",
        "rejected.json",
    ] {
        let path = st.join(file);
        let saved = std::fs::read(&path).ok();
        std::fs::write(&path, b"{\"version\": ").unwrap();
        let before = listing(&st);
        for verb in [
            "check",
            "fetch",
            "apply",
            "rollback",
            "status",
            "clear-rejected",
        ] {
            let mut c = if verb == "check" || verb == "fetch" {
                w.update(verb, &st)
            } else {
                let mut c = w.cmd();
                c.args(["update", verb, "--state"]).arg(&st);
                c
            };
            if verb == "clear-rejected" {
                c.arg("--all");
            }
            c.assert()
                .code(2)
                .stderr(predicates::str::contains(format!(
                    "{}: malformed",
                    path.display()
                )))
                .stderr(predicates::str::contains("nothing was changed or deleted"));
            assert_eq!(before, listing(&st), "{verb} with a corrupt {file}");
        }
        match saved {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
    }
    // Intact again: the staged image is still there.
    w.cmd()
        .args(["update", "status", "--state"])
        .arg(&st)
        .assert()
        .success()
        .stdout(predicates::str::contains("staged    fixture 1.2.3"));
}

#[test]
fn rollout_gate_counts_signed_canary_reports_for_this_image() {
    use stratos::channel::lifecycle::{Report, ReportFile, ReportSummary, REPORT_SCHEMA};
    let w = world_with(&[]);
    w.publish(&w.img_b, "stable", 10);
    let c = w.channel_doc("stable");
    let node_keys = w.path("node-keys");
    std::fs::create_dir_all(&node_keys).unwrap();
    // Nodes the 10% rollout reached; the operator has the keys of the first two, each as
    // <node id>.pub.
    let ids: Vec<String> = (0..)
        .map(|i| format!("node-{i}"))
        .filter(|id| channel::cohort(id, "stable", &c.image.version) < 1000)
        .take(3)
        .collect();
    let mut keys = Vec::new();
    for id in &ids[..2] {
        let k = w.keygen(id);
        std::fs::copy(k.with_extension("pub"), node_keys.join(format!("{id}.pub"))).unwrap();
        keys.push(w.key(&k));
    }
    let rogue = w.key(&w.keygen("rogue"));
    let reports = w.path("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let report =
        |file: &str, id: &str, passed: bool, digest: &str, key: &SecretKey, at: u64, seq: u64| {
            let r = Report {
                schema: REPORT_SCHEMA.into(),
                node_id: id.into(),
                channel: "stable".parse().unwrap(),
                channel_version: c.version,
                image: c.image.name.clone(),
                version: c.image.version.clone(),
                manifest_sha256: digest.into(),
                passed,
                reason: if passed {
                    "1 boot(s) answered".into()
                } else {
                    "boot test failed: run 1: no answer".into()
                },
                boot_test: ReportSummary::default(),
                at,
                seq: Some(seq),
            };
            std::fs::write(reports.join(file), to_bytes(&ReportFile::new(r, Some(key)))).unwrap();
        };
    let advance = |min: &str, max: &str| {
        let mut cmd = w.cmd();
        cmd.args(["rollout", "advance", "--repo"])
            .arg(&w.repo)
            .args(["--channel", "stable", "--percent", "50", "--gate-reports"])
            .arg(&reports)
            .arg("--node-keys")
            .arg(&node_keys)
            .args(["--min-reports", min, "--max-failures", max, "--sign-key"])
            .arg(&w.root_key);
        cmd.assert()
    };
    let digest = c.image.manifest_sha256.clone();
    let t = channel::now();
    report("a.json", &ids[0], true, &digest, &keys[0], t, 1);
    advance("2", "0%").code(1).stderr(predicates::str::contains(
        "1 report(s) for fixture 1.3.0 from nodes the rollout reached, 2 required",
    ));
    report("b.json", &ids[1], false, &digest, &keys[1], t, 1);
    advance("2", "0%")
        .code(1)
        .stderr(predicates::str::contains(format!(
            "1 of 2 node(s) failed (50.0% > 0%): {} (boot test failed: run 1: no answer)",
            ids[1]
        )));
    // Reports that do not count: another image, a node the operator has no key for, one node
    // speaking for another (node 0's key on a report naming node 1, passing: it must not hide
    // node 1's failure).
    report(
        "c.json",
        &ids[0],
        true,
        &"0".repeat(64),
        &keys[0],
        t + 30,
        2,
    );
    report("d.json", &ids[2], true, &digest, &rogue, t, 1);
    report("f.json", &ids[1], true, &digest, &keys[0], t + 30, 2);
    advance("3", "100%")
        .code(1)
        .stderr(predicates::str::contains("2 report(s)"))
        .stderr(predicates::str::contains("c.json: for another image"))
        .stderr(predicates::str::contains(format!(
            "d.json: no key for node \"{}\" in --node-keys",
            ids[2]
        )))
        .stderr(predicates::str::contains(format!(
            "f.json: not signed by node \"{}\"'s key",
            ids[1]
        )));
    advance("2", "0%")
        .code(1)
        .stderr(predicates::str::contains(format!(
            "1 of 2 node(s) failed (50.0% > 0%): {}",
            ids[1]
        )));
    // A tampered report: its signature no longer holds.
    let mut f: ReportFile =
        serde_json::from_slice(&std::fs::read(reports.join("a.json")).unwrap()).unwrap();
    f.report.passed = true;
    f.report.reason = "edited".into();
    std::fs::write(reports.join("e.json"), to_bytes(&f)).unwrap();
    advance("9", "100%")
        .code(1)
        .stderr(predicates::str::contains("e.json: a bad signature"));
    // The failed node tried again and passed: its latest report (by seq) counts; the rollout
    // widens.
    report("b2.json", &ids[1], true, &digest, &keys[1], t + 60, 2);
    advance("2", "0%")
        .success()
        .stdout(predicates::str::contains(
            "gate passed: 2 report(s) for fixture 1.3.0, 0 failed",
        ))
        .stdout(predicates::str::contains("reached now: 50.00%"));
}

/// Canaries for the report gate: `fixture 1.3.0` on `stable` at 10%, then the rollout set
/// again (channel version + 1, same image); nodes the rollout reached, each with its key in
/// `node-keys/<id>.pub`.
struct Canaries {
    w: World,
    c: Channel,
    ids: Vec<String>,
    keys: Vec<SecretKey>,
    node_keys: PathBuf,
    reports: PathBuf,
}

impl Canaries {
    fn new(nodes: usize) -> Canaries {
        let w = world_with(&[]);
        w.publish(&w.img_b, "stable", 10);
        w.cmd()
            .args(["rollout", "--repo"])
            .arg(&w.repo)
            .args(["--channel", "stable", "--percent", "10", "--sign-key"])
            .arg(&w.root_key)
            .assert()
            .success();
        let c = w.channel_doc("stable");
        assert!(c.version >= 2, "{}", c.version);
        let node_keys = w.path("node-keys");
        let reports = w.path("reports");
        std::fs::create_dir_all(&node_keys).unwrap();
        std::fs::create_dir_all(&reports).unwrap();
        let ids: Vec<String> = (0..)
            .map(|i| format!("node-{i}"))
            .filter(|id| channel::cohort(id, "stable", &c.image.version) < 1000)
            .take(nodes)
            .collect();
        let keys = ids
            .iter()
            .map(|id| {
                let k = w.keygen(id);
                std::fs::copy(k.with_extension("pub"), node_keys.join(format!("{id}.pub")))
                    .unwrap();
                w.key(&k)
            })
            .collect();
        Canaries {
            w,
            c,
            ids,
            keys,
            node_keys,
            reports,
        }
    }

    /// Node `node`'s signed report as `file`.
    fn report(
        &self,
        file: &str,
        node: usize,
        passed: bool,
        channel_version: u64,
        seq: Option<u64>,
        at: u64,
    ) {
        use stratos::channel::lifecycle::{Report, ReportFile, ReportSummary, REPORT_SCHEMA};
        let r = Report {
            schema: REPORT_SCHEMA.into(),
            node_id: self.ids[node].clone(),
            channel: "stable".parse().unwrap(),
            channel_version,
            image: self.c.image.name.clone(),
            version: self.c.image.version.clone(),
            manifest_sha256: self.c.image.manifest_sha256.clone(),
            passed,
            reason: if passed {
                "1 boot(s) answered".into()
            } else {
                "boot test failed: run 1: no answer".into()
            },
            boot_test: ReportSummary::default(),
            at,
            seq,
        };
        std::fs::write(
            self.reports.join(file),
            to_bytes(&ReportFile::new(r, Some(&self.keys[node]))),
        )
        .unwrap();
    }

    fn advance(&self, min: &str) -> assert_cmd::assert::Assert {
        self.w
            .cmd()
            .args(["rollout", "advance", "--repo"])
            .arg(&self.w.repo)
            .args(["--channel", "stable", "--percent", "50", "--gate-reports"])
            .arg(&self.reports)
            .arg("--node-keys")
            .arg(&self.node_keys)
            .args(["--min-reports", min, "--max-failures", "0%", "--sign-key"])
            .arg(&self.w.root_key)
            .assert()
    }
}

/// A node whose clock runs years ahead signed a pass, then (clock fixed) a fail: the fail is
/// its latest report (by channel version, then its own seq), whatever `at` says.
#[test]
fn report_gate_future_dated_pass_before_a_fail() {
    let k = Canaries::new(2);
    let (v, t) = (k.c.version, channel::now());
    let future = t + 10 * 365 * 86400;
    k.report("a-pass.json", 0, true, v, Some(1), future);
    k.report("b-fail.json", 0, false, v, Some(2), t);
    // Version first: node 1 passed on this channel version after its counter was reset (seq
    // 1), its fail was for the version before (seq 7, future-dated): the pass is the latest.
    k.report("c-fail.json", 1, false, v - 1, Some(7), future);
    k.report("d-pass.json", 1, true, v, Some(1), t);
    k.advance("2")
        .code(1)
        .stderr(predicates::str::contains(format!(
            "1 of 2 node(s) failed (50.0% > 0%): {} (boot test failed: run 1: no answer)",
            k.ids[0]
        )))
        .stderr(predicates::str::contains(&k.ids[1]).not());
    // The node passes again: its latest report counts and the rollout widens.
    k.report("e-pass.json", 0, true, v, Some(3), t);
    k.advance("2")
        .success()
        .stdout(predicates::str::contains("gate passed: 2 report(s)"));
}

/// Two reports of one node with the same `at`: the seq decides (not the file names); with the
/// same seq too, the gate refuses, naming both files.
#[test]
fn report_gate_equal_times_decided_by_seq_and_ties_refused() {
    let k = Canaries::new(1);
    let (v, t) = (k.c.version, channel::now());
    // By file name the pass would come last; by seq the fail is later.
    k.report("a-fail.json", 0, false, v, Some(2), t);
    k.report("b-pass.json", 0, true, v, Some(1), t);
    k.advance("1")
        .code(1)
        .stderr(predicates::str::contains(format!(
            "1 of 1 node(s) failed (100.0% > 0%): {}",
            k.ids[0]
        )));
    // A byte-for-byte copy is no tie.
    std::fs::copy(k.reports.join("a-fail.json"), k.reports.join("c-copy.json")).unwrap();
    k.advance("1").code(1).stderr(predicates::str::contains(
        "c-copy.json: the same report as a-fail.json",
    ));
    // Same node, same channel version, same seq, different verdicts: which is newer cannot be
    // told, and file-name order must not decide it.
    k.report("z-pass.json", 0, true, v, Some(2), t);
    k.advance("1")
        .code(2)
        .stderr(predicates::str::contains(format!(
            "node {}'s reports a-fail.json and z-pass.json are both for channel version {v} with seq 2",
            k.ids[0]
        )))
        .stderr(predicates::str::contains("the rollout was not widened"));
    // Reports of older nodes (no seq) with equal versions tie as well.
    for f in ["a-fail.json", "b-pass.json", "c-copy.json", "z-pass.json"] {
        std::fs::remove_file(k.reports.join(f)).unwrap();
    }
    k.report("old-1.json", 0, true, v, None, t + 60);
    k.report("old-2.json", 0, false, v, None, t);
    k.advance("1")
        .code(2)
        .stderr(predicates::str::contains(
            "reports old-1.json and old-2.json are both for channel version",
        ))
        .stderr(predicates::str::contains("with no seq"));
}

/// `update apply --report` numbers the node's reports from a counter in its state directory
/// (the gate orders a node's reports by it, never by their `at`).
#[test]
fn apply_reports_carry_the_nodes_own_sequence_number() {
    use stratos::channel::lifecycle::ReportFile;
    let w = world();
    let n = w.node("n");
    let key = w.keygen("node-n");
    let reports = w.path("reports");
    std::fs::create_dir_all(&reports).unwrap();
    for seq in [1, 2] {
        let d = n.fetch_update().unwrap();
        assert!(d.staged.is_some(), "{}", d.reason);
        // The staged image changed on disk: rejected without a boot, and reported.
        let staged: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.state.join("staged.json")).unwrap()).unwrap();
        let manifest = n
            .state
            .join(staged["dir"].as_str().unwrap())
            .join("manifest.json");
        let mut m = std::fs::read(&manifest).unwrap();
        m.push(b'\n');
        std::fs::write(&manifest, m).unwrap();
        let r = reports.join(format!("r{seq}.json"));
        w.cmd()
            .args(["update", "apply", "--state"])
            .arg(&n.state)
            .args(["--node-id", "n", "--report"])
            .arg(&r)
            .arg("--sign-key")
            .arg(&key)
            .assert()
            .code(1);
        let f: ReportFile = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        assert!(!f.report.passed, "{:?}", f.report);
        assert_eq!(f.report.seq, Some(seq), "{:?}", f.report);
        w.cmd()
            .args(["update", "clear-rejected", "--all", "--state"])
            .arg(&n.state)
            .assert()
            .success();
    }
}
