//! What a node receives for an update of a real image over loopback HTTP (bytes of HTTP
//! bodies, the whole fetch, metadata included, as the test server counts them), against the
//! size of what it boots from (kernel + rootfs.erofs), for the targets of delta updates:
//!
//! | change                                             | target |
//! |----------------------------------------------------|--------|
//! | python-fn, one Debian package bumped (libssl3)      | ≤ 25%  |
//! | python-fn, only `/srv/fn/handler.py` changed       | ≤ 1%   |
//! | python-fn re-published (a new version, no change)  | ≤ 0.5% |
//! | node-fn, only its handler changed (slow tier)      | ≤ 1%   |
//!
//! No VM boots here, but the images are real (kernels built from source, Debian packages), so
//! these are in the VM tier. With `STRATOS_UPDATE_FIGURES=FILE` the figures are also written
//! to FILE as JSON (`ci/bench-update` records them in bench/update.md).

use std::path::{Path, PathBuf};

use crate::common::server::Server;
use crate::common::*;
use stratos::channel::node::{Method, Transfer};

/// A release repository served over HTTP, its key, and one node following `stable`.
struct Fleet {
    dir: tempfile::TempDir,
    key: PathBuf,
    repo: PathBuf,
    server: Server,
    state: PathBuf,
}

/// One measured update.
#[derive(serde::Serialize)]
struct Figure {
    change: String,
    /// Every byte the server sent for the fetch.
    served: u64,
    /// kernel + rootfs.erofs of the new image.
    boots_from: u64,
    percent: f64,
    target_percent: f64,
    /// name → (method, bytes received).
    artifacts: Vec<(String, String, u64)>,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let cache = shared_cache();
        let prefix = dir.path().join("keys/release");
        stratos(&cache)
            .arg("keygen")
            .arg("--out")
            .arg(&prefix)
            .assert()
            .success();
        let key = prefix.with_extension("key");
        let repo = dir.path().join("releases");
        stratos(&cache)
            .args(["repo", "init", "--repo"])
            .arg(&repo)
            .arg("--root-key")
            .arg(&key)
            .assert()
            .success();
        let server = Server::start(&repo);
        let state = dir.path().join("node");
        Fleet {
            dir,
            key,
            repo,
            server,
            state,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds `profile` (offline, from the shared cache) into `out`, signed.
    fn build(&self, profile: &Path, out: &str) -> PathBuf {
        let out = self.path(out);
        stratos(&shared_cache())
            .arg("build")
            .arg(profile)
            .arg("--out")
            .arg(&out)
            .arg("--image-key")
            .arg(&self.key)
            .args(["--offline", "-q"])
            .timeout(std::time::Duration::from_secs(1200))
            .assert()
            .success();
        out
    }

    /// Publishes `img` to `stable` at 100% and has the node fetch it; returns the figure.
    fn update(&self, img: &Path, change: &str, target_percent: f64) -> Figure {
        stratos(&shared_cache())
            .arg("publish")
            .arg(img)
            .arg("--repo")
            .arg(&self.repo)
            .args(["--channel", "stable", "--percent", "100", "--channel-key"])
            .arg(&self.key)
            .assert()
            .success();
        let mark = self.server.served().len();
        let out = stratos(&shared_cache())
            .args(["update", "fetch", "--json", "--repo", &self.server.url()])
            .args(["--channel", "stable", "--node-id", "node-1", "--state"])
            .arg(&self.state)
            .arg("--bootstrap-root")
            .arg(self.repo.join("root.json"))
            .timeout(std::time::Duration::from_secs(600))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{change}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t: Transfer = serde_json::from_value(v["transfer"].clone())
            .unwrap_or_else(|e| panic!("{change}: no transfer ({e}): {v}"));
        let served: u64 = self.server.served()[mark..].iter().map(|(_, n)| n).sum();
        assert_eq!(
            t.received, served,
            "{change}: the node's count is the server's"
        );
        let size = |name: &str| t.artifacts.iter().find(|a| a.name == name).unwrap().size;
        let boots_from = size("kernel") + size("rootfs.erofs");
        let f = Figure {
            change: change.to_owned(),
            served,
            boots_from,
            percent: served as f64 * 100.0 / boots_from as f64,
            target_percent,
            artifacts: t
                .artifacts
                .iter()
                .map(|a| (a.name.clone(), a.method.name().to_owned(), a.received))
                .collect(),
        };
        eprintln!(
            "{change}: received {served} bytes of {boots_from} ({:.3}%, target <= {target_percent}%); {:?}\n{}",
            f.percent,
            f.artifacts,
            err.lines()
                .filter(|l| l.contains("blocks fetched"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        f
    }
}

/// A copy of `rootfs-overlays/NAME` under `dir` with `edit` applied to its file `rel`.
fn overlay_with(name: &str, dir: &Path, rel: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let to = dir.join(format!("overlay-{name}"));
    copy_dir(&root().join("rootfs-overlays").join(name), &to);
    let p = to.join(rel);
    std::fs::write(&p, edit(std::fs::read_to_string(&p).unwrap())).unwrap();
    to
}

/// A profile directory `dir` with `profiles/NAME.toml` (its lock too) edited by `edit`.
fn profile_in(name: &str, dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    copy_profile(name, dir, edit)
}

/// The lock `lock` with the `[[package]]` entry of `name` replaced by the one in `with`.
fn swap_pin(lock: &str, with: &str, name: &str) -> String {
    let entry = |text: &str| -> (usize, usize) {
        let at = text
            .find(&format!("name = \"{name}\""))
            .unwrap_or_else(|| panic!("no {name} in the lock"));
        let start = text[..at].rfind("[[package]]").unwrap();
        let end = text[at..]
            .find("[[package]]")
            .map_or(text.len(), |e| at + e);
        (start, end)
    };
    let (s, e) = entry(lock);
    let (ws, we) = entry(with);
    let mut new = with[ws..we].trim_end().to_owned();
    new.push_str("\n\n");
    format!("{}{}{}", &lock[..s], new, &lock[e..])
}

/// How artifact `name` came in `f`.
fn method_of(f: &Figure, name: &str) -> String {
    f.artifacts.iter().find(|a| a.0 == name).unwrap().1.clone()
}

fn record(figures: &[Figure]) {
    if let Some(out) = std::env::var_os("STRATOS_UPDATE_FIGURES") {
        let mut all: Vec<serde_json::Value> = std::fs::read(&out)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        all.extend(figures.iter().map(|f| serde_json::to_value(f).unwrap()));
        std::fs::write(&out, serde_json::to_vec_pretty(&all).unwrap()).unwrap();
    }
}

fn assert_targets(figures: &[Figure]) {
    record(figures);
    for f in figures {
        assert!(
            f.percent <= f.target_percent,
            "{}: {} bytes of {} is {:.3}%, over the {}% target: {:?}",
            f.change,
            f.served,
            f.boots_from,
            f.percent,
            f.target_percent,
            f.artifacts
        );
    }
}

#[test]
fn python_fn_updates_receive_only_what_changed() {
    require_kernel_source();
    let older =
        std::fs::read_to_string(root().join("tests/fixtures/update/libssl3-older.lock")).unwrap();
    let older_deb = "/var/cache/stratos/debs/libssl3_3.0.20-1~deb12u2_amd64.deb";
    assert!(
        Path::new(older_deb).is_file(),
        "{older_deb} is missing: run `./ci/setup` (it fetches the versions tests/fixtures/update/*.lock pin)"
    );
    let fleet = Fleet::new();
    // A0: python-fn with an older libssl3; A: as profiles/ has it (libssl3 bumped).
    let dir0 = fleet.path("p0");
    let p0 = profile_in("python-fn", &dir0, |t| t);
    let lock = dir0.join("python-fn.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, swap_pin(&text, &older, "libssl3")).unwrap();
    let a0 = fleet.build(&p0, "a0");
    let a = fleet.build(&profile_in("python-fn", &fleet.path("pa"), |t| t), "a");
    // B: A with one line added to the handler; C: B at another version.
    let overlay = overlay_with("python-fn", fleet.dir.path(), "srv/fn/handler.py", |h| {
        h + "# v2: a one-line change\n"
    });
    let with_handler = |t: String| {
        t.replace(
            &format!("\"{}/rootfs-overlays/python-fn\"", root().display()),
            &format!("\"{}\"", overlay.display()),
        )
    };
    let b = fleet.build(
        &profile_in("python-fn", &fleet.path("pb"), with_handler),
        "b",
    );
    let c = fleet.build(
        &profile_in("python-fn", &fleet.path("pc"), |t| {
            with_handler(t).replace("version = \"0.1.0\"", "version = \"0.1.1\"")
        }),
        "c",
    );
    // The first fetch brings everything (compressed where the repository has it so).
    let first = fleet.update(&a0, "python-fn, first fetch", 100.0);
    assert!(first
        .artifacts
        .iter()
        .all(|(_, m, _)| m == "full" || m == "skipped"));
    let figures = vec![
        fleet.update(&a, "python-fn, libssl3 bumped", 25.0),
        fleet.update(&b, "python-fn, handler changed", 1.0),
        fleet.update(&c, "python-fn, re-published at a new version", 0.5),
    ];
    // The root came as blocks each time (or was reused: the version is not in the root), the
    // kernel was reused.
    for f in &figures {
        let m = |n: &str| method_of(f, n);
        let root = m("rootfs.erofs");
        assert!(
            root == Method::Blocks.name() || root == Method::Reused.name(),
            "{}: {root}",
            f.change
        );
        assert_eq!(m("kernel"), Method::Reused.name(), "{}", f.change);
    }
    assert_eq!(
        method_of(&figures[1], "rootfs.erofs"),
        Method::Blocks.name()
    );
    let mut all = vec![first];
    all.extend(figures);
    // The first fetch's target is no target: it is recorded, and checked above.
    record(&all[..1]);
    assert_targets(&all[1..]);
}

#[test]
#[ignore = "slow tier: builds node-fn twice (minutes on two cores)"]
fn node_fn_handler_change_receives_under_one_percent() {
    require_kernel_source();
    let fleet = Fleet::new();
    let a = fleet.build(&profile_in("node-fn", &fleet.path("pa"), |t| t), "a");
    let overlay = overlay_with("node-fn", fleet.dir.path(), "srv/fn/handler.js", |h| {
        h + "// v2: a one-line change\n"
    });
    let b = fleet.build(
        &profile_in("node-fn", &fleet.path("pb"), |t| {
            t.replace(
                &format!("\"{}/rootfs-overlays/node-fn\"", root().display()),
                &format!("\"{}\"", overlay.display()),
            )
        }),
        "b",
    );
    let first = fleet.update(&a, "node-fn, first fetch", 100.0);
    record(&[first]);
    let f = fleet.update(&b, "node-fn, handler changed", 1.0);
    assert_targets(&[f]);
}
