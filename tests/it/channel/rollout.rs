//! The operator's rollout: waves, halt, resume and `advance` behind a boot-test gate.

use predicates::prelude::PredicateBooleanExt;

use super::*;

/// A `stratos boot-test --json-out` result for `img` (as the library writes it) whose one
/// objective passed or failed.
pub(super) fn gate(w: &World, img: &Path, passed: bool) -> PathBuf {
    use stratos::boot_result::{BootTestResult, ImageInfo, Verdict, SCHEMA};
    let info = ImageInfo {
        dir: Some(img.display().to_string()),
        manifest_sha256: Some(sha256_file(&img.join("manifest.json")).parse().unwrap()),
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
        baseline_invoke: None,
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
            .arg("--channel-key")
            .arg(&w.root_key);
        c.assert()
    };
    w.cmd()
        .args(["promote", "--repo"])
        .arg(&w.repo)
        .args(["--from", "canary", "--to", "stable", "--waves"])
        .arg(&waves)
        .arg("--channel-key")
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
