//! The node side of a rollout with real images: `update apply` boot-tests the staged hello
//! image under QEMU and puts it in service (keeping the one it replaces), rejects a broken one
//! for good, `update rollback` goes back, `boot --state` boots what is current; and a crash at
//! every step of fetch, apply, reject and rollback (fail points, debug builds) leaves the old
//! state or the new one, which the next command finishes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;

/// Three signed hello images, built once for the whole binary: two good versions and one whose
/// runtime exits at start.
struct Images {
    _dir: tempfile::TempDir,
    key: PathBuf,
    node_key: PathBuf,
    a: PathBuf,
    b: PathBuf,
    broken: PathBuf,
}

fn images() -> &'static Images {
    static I: OnceLock<Images> = OnceLock::new();
    I.get_or_init(|| {
        require_tool("qemu-system-x86_64");
        require_kernel_source();
        let dir = tempfile::tempdir().unwrap();
        let cache = shared_cache();
        let keygen = |name: &str| {
            let prefix = dir.path().join(name);
            stratos(&cache)
                .args(["keygen", "--out"])
                .arg(&prefix)
                .assert()
                .success();
            prefix.with_extension("key")
        };
        let key = keygen("release");
        let node_key = keygen("node-1");
        let build = |name: &str, version: &str, broken: bool| {
            let pdir = dir.path().join(format!("p-{name}"));
            std::fs::create_dir_all(&pdir).unwrap();
            let profile = copy_profile("hello", &pdir, |t| {
                let t = t.replace("version = \"0.1.0\"", &format!("version = \"{version}\""));
                if broken {
                    t.replace(
                        "argv = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]",
                        "argv = [\"/bin/busybox\", \"false\"]",
                    )
                } else {
                    t
                }
            });
            let out = dir.path().join(name);
            stratos(&cache)
                .arg("build")
                .arg(&profile)
                .arg("--out")
                .arg(&out)
                .arg("--image-key")
                .arg(&key)
                .args(["--offline", "-q"])
                .assert()
                .success();
            out
        };
        let a = build("a", "1.0.0", false);
        let b = build("b", "1.1.0", false);
        let broken = build("broken", "1.2.0", true);
        Images {
            _dir: dir,
            key,
            node_key,
            a,
            b,
            broken,
        }
    })
}

/// A release repository and one node's state directory.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let s = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        stratos(&shared_cache())
            .args(["repo", "init", "--repo"])
            .arg(s.repo())
            .arg("--root-key")
            .arg(&images().key)
            .assert()
            .success();
        s
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("releases")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn publish(&self, img: &Path) {
        stratos(&shared_cache())
            .arg("publish")
            .arg(img)
            .arg("--repo")
            .arg(self.repo())
            .args(["--channel", "stable", "--percent", "100", "--channel-key"])
            .arg(&images().key)
            .assert()
            .success();
    }

    fn update(&self, verb: &str, state: &Path) -> assert_cmd::Command {
        let mut c = stratos(&shared_cache());
        c.args(["update", verb, "--state"]).arg(state);
        if verb == "fetch" || verb == "check" {
            c.arg("--repo")
                .arg(self.repo())
                .args(["--channel", "stable", "--node-id", "node-1"])
                .arg("--bootstrap-root")
                .arg(self.repo().join("root.json"));
        }
        if verb == "apply" {
            c.args([
                "--runs",
                "1",
                "--invocations",
                "1",
                "--invoke",
                "/cgi-bin/hello?name=node",
                "--accel",
                "tcg",
                "--timeout",
                "120",
            ]);
        }
        c.timeout(std::time::Duration::from_secs(400));
        c
    }
}

fn status(state: &Path) -> serde_json::Value {
    let out = stratos(&shared_cache())
        .args(["update", "status", "--json", "--state"])
        .arg(state)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn version_of(v: &serde_json::Value) -> Option<&str> {
    v["version"].as_str()
}

/// What the state files say, read without any command (so without any recovery).
fn raw(state: &Path, file: &str) -> Option<serde_json::Value> {
    std::fs::read(state.join(file))
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn image_dirs(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state.join("images"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn digest(img: &Path) -> String {
    sha256_file(&img.join("manifest.json"))
}

#[test]
fn apply_keeps_the_previous_image_rejects_a_broken_one_and_rolls_back() {
    let i = images();
    let s = Site::new();
    let st = s.state();
    s.publish(&i.a);
    s.update("fetch", &st).assert().success();
    s.update("apply", &st)
        .assert()
        .success()
        .stdout(predicates::str::contains("applied: hello 1.0.0"));
    s.publish(&i.b);
    s.update("fetch", &st).assert().success();
    let report = s.dir.path().join("reports/node-1.json");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    s.update("apply", &st)
        .args(["--node-id", "node-1", "--report"])
        .arg(&report)
        .arg("--node-key")
        .arg(&i.node_key)
        .assert()
        .success();
    let v = status(&st);
    assert_eq!(version_of(&v["current"]), Some("1.1.0"), "{v}");
    assert_eq!(version_of(&v["previous"]), Some("1.0.0"), "{v}");
    assert!(v["staged"].is_null(), "{v}");
    assert_eq!(image_dirs(&st), {
        let mut d = vec![digest(&i.a), digest(&i.b)];
        d.sort();
        d
    });
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["report"]["passed"], true, "{r}");
    assert_eq!(r["report"]["manifest_sha256"], digest(&i.b).as_str());
    assert!(r["signature"]["sig"].is_string(), "{r}");

    // A launcher boots whatever is current.
    stratos(&shared_cache())
        .args(["boot", "--accel", "tcg", "--timeout", "120", "--state"])
        .arg(&st)
        .args(["--invoke", "/cgi-bin/hello?name=state"])
        .assert()
        .success()
        .stderr(predicates::str::contains("hello 1.1.0 is current"))
        .stdout(predicates::str::contains("Hello, state!"));

    // A broken image: rejected, current untouched, its directory gone, never staged again.
    s.publish(&i.broken);
    s.update("fetch", &st).assert().success();
    s.update("apply", &st)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "rejected hello 1.2.0: boot test failed",
        ));
    let v = status(&st);
    assert_eq!(version_of(&v["current"]), Some("1.1.0"), "{v}");
    assert_eq!(
        v["rejected"][0]["manifest_sha256"],
        digest(&i.broken).as_str()
    );
    assert!(!image_dirs(&st).contains(&digest(&i.broken)));
    s.update("fetch", &st)
        .assert()
        .success()
        .stdout(predicates::str::contains("rejected on this node"));
    assert!(status(&st)["staged"].is_null());

    // Back to the previous image.
    s.update("rollback", &st)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "rolled back: hello 1.0.0 (manifest sha256",
        ));
    let v = status(&st);
    assert_eq!(version_of(&v["current"]), Some("1.0.0"), "{v}");
    assert_eq!(version_of(&v["previous"]), Some("1.1.0"), "{v}");
    // The image rolled back from is held: a channel rollback to it would not bring it back,
    // and rolling back again does nothing.
    assert!(
        v["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["version"] == "1.1.0" && r["reason"] == "rolled back on this node"),
        "{v}"
    );
    s.update("rollback", &st).assert().success();
    assert_eq!(version_of(&status(&st)["current"]), Some("1.0.0"));

    // The operator clears the rejections: the images may be staged again.
    s.update("clear-rejected", &st)
        .arg("--all")
        .assert()
        .success();
    s.update("fetch", &st)
        .assert()
        .success()
        .stdout(predicates::str::contains("staged at"));
}

/// Copies a state directory (to replay one step from the same start).
fn copy_state(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The invariant after any crash: current.json names one of `allowed` and its directory is a
/// complete image that verifies.
fn consistent(state: &Path, allowed: &[&Path]) -> String {
    let cur = raw(state, "current.json").expect("current.json");
    let d = cur["manifest_sha256"].as_str().unwrap().to_owned();
    assert!(
        allowed.iter().any(|a| digest(a) == d),
        "current is {d}, not one of the allowed images"
    );
    stratos(&shared_cache())
        .arg("verify")
        .arg(state.join(format!("images/{d}")))
        .arg("--image-key")
        .arg(images().key.with_extension("pub"))
        .assert()
        .success();
    d
}

// One table of fail points over one staged base, read top to bottom: each crash builds on the
// state the one before left (splitting it would stage and apply the images again per part).
#[allow(clippy::too_many_lines)]
#[test]
fn a_crash_at_any_step_leaves_the_old_or_the_new_state_and_the_next_run_finishes() {
    let i = images();
    let s = Site::new();
    let work = s.dir.path().to_owned();
    // Base 1: A current, B published (for fetch).
    let base = work.join("base-a");
    s.publish(&i.a);
    s.update("fetch", &base).assert().success();
    s.update("apply", &base).assert().success();
    s.publish(&i.b);
    let crash = |verb: &str, state: &Path, point: &str| {
        let out = s
            .update(verb, state)
            .env("STRATOS_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{verb} did not stop at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("fail point {point}")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for point in [
        "fetch:downloaded",
        "fetch:image-moved",
        "fetch:staged-written",
    ] {
        let st = work.join(point.replace(':', "-"));
        copy_state(&base, &st);
        crash("fetch", &st, point);
        consistent(&st, &[&i.a]);
        s.update("fetch", &st).assert().success();
        let v = status(&st);
        assert_eq!(v["staged"]["image"]["version"], "1.1.0", "{point}: {v}");
        // Nothing half-downloaded stays.
        assert!(
            std::fs::read_dir(&st).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".staging")),
            "{point}"
        );
        assert_eq!(image_dirs(&st).len(), 2, "{point}");
    }
    // Base 2: A current, B staged (for apply).
    let base2 = work.join("base-b-staged");
    copy_state(&base, &base2);
    s.update("fetch", &base2).assert().success();
    for point in [
        "apply:tested",
        "apply:current-written",
        "apply:previous-written",
        "apply:staged-removed",
    ] {
        let st = work.join(point.replace(':', "-"));
        copy_state(&base2, &st);
        crash("apply", &st, point);
        consistent(&st, &[&i.a, &i.b]);
        s.update("apply", &st).assert().success();
        let v = status(&st);
        assert_eq!(version_of(&v["current"]), Some("1.1.0"), "{point}: {v}");
        assert_eq!(version_of(&v["previous"]), Some("1.0.0"), "{point}: {v}");
        assert!(v["staged"].is_null(), "{point}: {v}");
    }
    // Base 3: B current, A previous, the broken image staged (for a rejection).
    let base3 = work.join("base-broken-staged");
    copy_state(&base2, &base3);
    s.update("apply", &base3).assert().success();
    s.publish(&i.broken);
    s.update("fetch", &base3).assert().success();
    for point in ["reject:rejected-written", "reject:staged-removed"] {
        let st = work.join(point.replace(':', "-"));
        copy_state(&base3, &st);
        crash("apply", &st, point);
        consistent(&st, &[&i.b]);
        // The next command sees the rejection through: nothing staged, nothing left of it.
        s.update("apply", &st)
            .assert()
            .success()
            .stdout(predicates::str::contains("nothing staged"));
        let v = status(&st);
        assert_eq!(v["rejected"][0]["version"], "1.2.0", "{point}: {v}");
        assert!(!image_dirs(&st).contains(&digest(&i.broken)), "{point}");
    }
    // Rollback from base 3 after its rejection: B current, A previous.
    let base4 = work.join("base-rolled");
    copy_state(&base3, &base4);
    let _ = s.update("apply", &base4).output();
    for point in [
        "rollback:start",
        "rollback:held",
        "rollback:current-written",
    ] {
        let st = work.join(point.replace(':', "-"));
        copy_state(&base4, &st);
        crash("rollback", &st, point);
        consistent(&st, &[&i.a, &i.b]);
        // Rerunning the rollback does it (from the start) or finishes it (after its commit
        // point, current.json); it never rolls back twice.
        s.update("rollback", &st).assert().success();
        let v = status(&st);
        assert_eq!(version_of(&v["current"]), Some("1.0.0"), "{point}: {v}");
        assert_eq!(version_of(&v["previous"]), Some("1.1.0"), "{point}: {v}");
    }
}
