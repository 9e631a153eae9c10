//! Two architectures in one channel: the x86_64 and aarch64 builds of one version published side
//! by side, each promoted, widened and halted on its own, each node fetching only its own, and a
//! node refusing to apply another architecture's image.
//!
//! The aarch64 image is the fixture's x86_64 image with its manifest re-signed as aarch64
//! ([`as_aarch64`]): channels and nodes only read the signed manifest's `image.arch`, and a real
//! aarch64 build needs the cross-built init (the VM tests boot those).

use stratos::sign::manifest::{signature_file, MANIFEST_FILE, SIGNATURE_FILE};

use super::rollout::gate;
use super::*;

/// A copy of the image `img` at `rel` whose manifest says aarch64, signed again by `key`.
fn as_aarch64(w: &World, img: &Path, rel: &str, key: &Path) -> PathBuf {
    let to = w.copy_image(img, rel);
    let mut m = stratos::sign::verify::load_manifest(&to).unwrap();
    assert_eq!(m.image.arch, Arch::X86_64);
    m.image.arch = Arch::Aarch64;
    let bytes = m.to_canonical();
    std::fs::write(to.join(MANIFEST_FILE), &bytes).unwrap();
    std::fs::write(to.join(SIGNATURE_FILE), signature_file(&w.key(key), &bytes)).unwrap();
    to
}

impl World {
    /// `stratos ARGS --repo REPO EXTRA --channel-key ROOT`.
    fn operator(&self, args: &[&str], extra: &[&str]) -> assert_cmd::assert::Assert {
        self.cmd()
            .args(args)
            .arg("--repo")
            .arg(&self.repo)
            .args(extra)
            .arg("--channel-key")
            .arg(&self.root_key)
            .assert()
    }

    /// A node of architecture `arch` following `stable`.
    fn node_of(&self, name: &str, arch: Arch) -> Node {
        Node {
            arch,
            ..self.node(name)
        }
    }

    /// The `repo status --json` row of `channel` for `arch`.
    fn status_row(&self, channel: &str, arch: &str) -> serde_json::Value {
        let out = self
            .cmd()
            .args(["repo", "status", "--json", "--repo"])
            .arg(&self.repo)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel"] == channel && r["arch"] == arch)
            .unwrap_or_else(|| panic!("no {channel} {arch} row in {v}"))
            .clone()
    }
}

/// A repository whose canary carries the x86_64 and aarch64 builds of 1.2.3 (at 100%), and the
/// aarch64 image's directory. The second publish keeps the first.
fn both_on_canary() -> (World, PathBuf) {
    let w = world_with(&[]);
    let arm = as_aarch64(&w, &w.img_a, "img-a-aarch64", &w.root_key);
    w.publish(&w.img_a, "canary", 100);
    let x86_before = w.channel_doc("canary").tracks[0].clone();
    w.cmd()
        .arg("publish")
        .arg(&arm)
        .arg("--repo")
        .arg(&w.repo)
        .args(["--channel", "canary", "--percent", "100", "--channel-key"])
        .arg(&w.root_key)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "-> fixture 1.2.3 for aarch64 (100% of the fleet)",
        ));
    let canary = w.channel_doc("canary");
    assert_eq!(canary.arches(), [Arch::X86_64, Arch::Aarch64]);
    assert_eq!(canary.track(Arch::X86_64), Some(&x86_before));
    let arm_track = canary.track(Arch::Aarch64).unwrap();
    assert_eq!(arm_track.image.version, "1.2.3");
    assert_eq!(
        arm_track.image.manifest_sha256.hex(),
        sha256_file(&arm.join(MANIFEST_FILE))
    );
    (w, arm)
}

/// `promote --from canary --to stable --arch ARCH --percent PERCENT`.
fn promote(w: &World, arch: &str, percent: &str) {
    let args = ["--from", "canary", "--to", "stable", "--arch", arch];
    w.operator(&["promote"], &[&args[..], &["--percent", percent]].concat())
        .success();
}

#[test]
fn a_channel_with_both_architectures_promotes_each_and_nodes_fetch_their_own() {
    let (w, arm) = both_on_canary();
    // Promoting needs to know which: canary carries two.
    let e = w.operator(
        &["promote"],
        &["--from", "canary", "--to", "stable", "--percent", "100"],
    );
    let e = e.code(2);
    assert!(
        stderr_of(&e).contains(
            "channel canary carries images for x86_64 and aarch64: say which with --arch"
        ),
        "{}",
        stderr_of(&e)
    );
    assert!(!w.repo.join("channels/stable.json").exists());
    promote(&w, "aarch64", "100");
    assert_eq!(w.channel_doc("stable").arches(), [Arch::Aarch64]);

    // The aarch64 node fetches the aarch64 image; the x86_64 node sees nothing new.
    let x86 = w.node_of("node-x86", Arch::X86_64);
    let arm_node = w.node_of("node-arm", Arch::Aarch64);
    let d = x86.fetch_update().unwrap();
    assert!(!d.selected && d.staged.is_none(), "{}", d.reason);
    assert_eq!(
        d.reason,
        "nothing for this node: the channel carries no x86_64 image (it carries aarch64)"
    );
    assert!(!x86.state.join("staged.json").exists());
    assert!(!x86.state.join("images").exists());
    let d = arm_node.fetch_update().unwrap();
    assert!(d.selected, "{}", d.reason);
    let staged = arm_node.state.join(d.staged.unwrap());
    assert_eq!(digests(&staged), digests(&arm));

    // Now x86_64 too, at 0%: its rollout is its own, aarch64's stays at 100%.
    promote(&w, "x86_64", "0");
    let stable = w.channel_doc("stable");
    assert_eq!(stable.arches(), [Arch::X86_64, Arch::Aarch64]);
    assert_eq!(w.status_row("stable", "x86_64")["reached_percent"], 0.0);
    assert_eq!(w.status_row("stable", "aarch64")["reached_percent"], 100.0);
    let d = x86.fetch_update().unwrap();
    assert!(
        !d.selected && d.reason.starts_with("not yet"),
        "{}",
        d.reason
    );
    assert!(arm_node
        .check()
        .unwrap()
        .reason
        .starts_with("already staged"));
}

#[test]
fn each_architecture_is_gated_widened_and_halted_on_its_own() {
    let (w, arm) = both_on_canary();
    promote(&w, "aarch64", "10");
    promote(&w, "x86_64", "0");
    let reached = |arch: &str| w.status_row("stable", arch)["reached_percent"].clone();
    // Gates are per architecture: a passing boot test of the x86_64 image does not widen the
    // aarch64 rollout, one of the aarch64 image does, and the x86_64 rollout does not move.
    let advance = |arch: &str, img: &Path| {
        let g = gate(&w, img, true);
        let args = ["--channel", "stable", "--arch", arch, "--percent", "50"];
        w.operator(
            &["rollout", "advance"],
            &[&args[..], &["--gate", g.to_str().unwrap()]].concat(),
        )
    };
    let e = advance("aarch64", &w.img_a).code(1);
    assert!(
        stderr_of(&e).contains("test the image being rolled out"),
        "{}",
        stderr_of(&e)
    );
    advance("aarch64", &arm).success();
    assert_eq!(
        (reached("aarch64"), reached("x86_64")),
        (50.0.into(), 0.0.into())
    );
    advance("x86_64", &w.img_a).success();
    assert_eq!(
        (reached("aarch64"), reached("x86_64")),
        (50.0.into(), 50.0.into())
    );

    // Halting one architecture leaves the other rolling out; without --arch it must say which.
    w.operator(&["rollout", "halt"], &["--channel", "stable"])
        .code(2)
        .stderr(predicates::str::contains("say which with --arch"));
    w.operator(
        &["rollout", "halt"],
        &["--channel", "stable", "--arch", "aarch64"],
    )
    .success();
    assert_eq!(w.status_row("stable", "aarch64")["halted"], true);
    assert_eq!(w.status_row("stable", "x86_64")["halted"], false);
    let stable = w.channel_doc("stable");
    assert!(stable.track(Arch::Aarch64).unwrap().halted);
    assert!(!stable.track(Arch::X86_64).unwrap().halted);
    // A new aarch64 node is not selected while halted; an x86_64 one still can be.
    let late_arm = w.node_of("late-arm", Arch::Aarch64).check().unwrap();
    assert!(late_arm.reason.contains("halted"), "{}", late_arm.reason);
    let x86_in = (0..200)
        .map(|i| format!("x-{i}"))
        .find(|id| channel::cohort(id, "stable", "1.2.3") < 5000)
        .unwrap();
    let d = w.node_of(&x86_in, Arch::X86_64).check().unwrap();
    assert!(d.selected, "{}", d.reason);
}

#[test]
fn a_node_fetches_only_its_architecture_and_refuses_to_apply_another() {
    let w = world_with(&[]);
    let arm = as_aarch64(&w, &w.img_a, "img-a-aarch64", &w.root_key);
    w.publish(&arm, "stable", 100);
    let root = w.repo.join("root.json");
    // This machine (x86_64) has nothing to fetch: the channel carries aarch64 only.
    let state = w.path("node-state");
    w.update("fetch", &state)
        .arg("--bootstrap-root")
        .arg(&root)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "carries no x86_64 image (it carries aarch64)",
        ));
    assert!(!state.join("staged.json").exists());
    // Fetched as if it were an aarch64 node, the image is staged...
    let out = w
        .update("fetch", &state)
        .args(["--arch", "aarch64", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["selected"].clone(), v["arch"].clone()),
        (true.into(), "aarch64".into())
    );
    w.cmd()
        .args(["update", "status", "--state"])
        .arg(&state)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "staged    fixture 1.2.3 for aarch64",
        ));
    // ...but this node will not boot it: refused, naming both, nothing booted or changed.
    let before = snapshot(&state);
    for extra in [&[][..], &["--arch", "x86_64"][..]] {
        let a = w
            .cmd()
            .args(["update", "apply", "--state"])
            .arg(&state)
            .args(extra)
            .assert()
            .code(2);
        let err = stderr_of(&a);
        assert!(
            err.contains("the staged image fixture 1.2.3 is not for this node: the image is aarch64, this node is x86_64"),
            "{err}"
        );
        assert!(!err.contains("boot-testing"), "{err}");
    }
    assert_eq!(before, snapshot(&state));
}

#[test]
fn attack_channel_lists_an_image_under_another_architecture() {
    let w = world();
    let n = w.node_of("n-arm", Arch::Aarch64);
    // Nothing for aarch64 yet.
    assert!(n
        .check()
        .unwrap()
        .reason
        .contains("carries no aarch64 image"));
    // The channel key alone relabels the x86_64 image as aarch64: the signed manifest says
    // otherwise.
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    let mut t = doc.tracks[0].clone();
    t.image.arch = Arch::Aarch64;
    doc.set_track(t);
    w.forge("stable", &doc, &[&w.key(&w.root_key)]);
    let e = assert_rejected!(&n, check, ChannelError::ArchMismatch { .. });
    assert!(
        e.to_string().contains(
            "lists the image fixture 1.2.3 as aarch64, but its signed manifest says x86_64"
        ),
        "{e}"
    );
    // The x86_64 node is not concerned: its own image verifies.
    assert!(w.node("n-x86").check().unwrap().selected);
}
