//! Release channels: a node's client against a repository written by the operator commands, and
//! every attack the issue lists, each rejected with the node's state byte-identical afterwards.
//! A file per topic (as tough's `expiration_enforcement.rs`, `rotated_root.rs`); the repository
//! every test starts from ([`World`]) and the rejection check ([`assert_rejected!`]) are here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use stratos::arch::Arch;
use stratos::channel::node::{bootstrap, Decision, Node, Source};
use stratos::channel::{self, sign_bytes, to_bytes, Channel, ChannelError, RoleName, Root};
use stratos::sign::SecretKey;

// Defined before the modules that use it (a `macro_rules!` is in scope after its definition).
/// `$f` (`check` or `fetch`) must be rejected with an error matching the pattern, and leave the
/// node's state untouched; evaluates to the error (for the tests where the wording matters).
macro_rules! assert_rejected {
    ($node:expr, $f:expr, $pat:pat $(if $guard:expr)?) => {
        assert_rejected_by($node, $f, stringify!($pat), |e| {
            matches!(e, $pat $(if $guard)?)
        })
    };
}

/// Two architectures in one channel, and nodes of each.
mod arches;
/// Root images fetched block by block; tampering, no Range, resuming.
mod blocks;
/// What a fetch transfers: reuse, streaming, accounting, kill points.
mod fetch;
/// Expiry, replay, forks, freeze, and the operator's re-signing.
mod freshness;
/// Attacks on the image a channel names, and what `publish` accepts.
mod image;
/// The node's command line and state directory.
mod node;
/// What `publish` writes besides the image: compressed objects, kernel deltas.
mod publish_objects;
/// The canaries' health reports and the report gate.
mod reports;
/// Waves, halt, resume and the boot-test gate.
mod rollout;
/// Root key rotation.
mod rotation;
/// Who signed: thresholds, wrong keys, one key under two ids.
mod signatures;
/// What is read: HTTP deadlines and caps, FIFOs where files are expected.
mod transport;

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
            .arg("--channel-key")
            .arg(&self.root_key)
            .assert()
            .success();
    }

    /// `stratos repo rotate-key` from `old` to `new`.
    fn rotate(&self, old: &Path, new: &Path) -> assert_cmd::assert::Assert {
        self.cmd()
            .args(["repo", "rotate-key", "--repo"])
            .arg(&self.repo)
            .arg("--old-root-key")
            .arg(old)
            .arg("--new-root-key")
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
            arch: Arch::X86_64,
            state,
            now: channel::now() + CLOCK_AHEAD,
            max_artifact_bytes: 1 << 30,
            all_artifacts: false,
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
            .arg("--image-key")
            .arg(&w.root_key)
            .arg("-q")
            .assert()
            .success();
    }
    w.cmd()
        .args(["repo", "init", "--repo"])
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

/// What [`assert_rejected!`] checks.
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
            .arg("--image-key")
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
    /// Removes the compressed copy (`<sha256>.zst`) `publish` stored of `img`'s artifact `name`:
    /// a full download then fetches the object itself (what the tests that tamper with the
    /// object serve).
    fn drop_compressed(&self, img: &Path, name: &str) {
        let p = self
            .repo
            .join("objects/sha256")
            .join(format!("{}.zst", self.artifact_sha(img, name)));
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// The bytes a full download of the artifact `sha` receives: its compressed copy's when the
    /// repository has one, else the object's.
    fn stored_len(&self, sha: &str) -> u64 {
        let dir = self.repo.join("objects/sha256");
        std::fs::metadata(dir.join(format!("{sha}.zst")))
            .or_else(|_| std::fs::metadata(dir.join(sha)))
            .unwrap()
            .len()
    }

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
