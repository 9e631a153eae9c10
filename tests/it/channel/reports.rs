//! The report gate: canaries' signed health reports decide whether a rollout widens, a node's
//! latest report (by channel version, then its own `seq`) counting once.

use predicates::prelude::PredicateBooleanExt;

use stratos::digest::Sha256;

use super::*;

// One gate over one set of reports, widened step by step: each check builds on the reports the
// one before wrote, so the scenario stays one function, read top to bottom.
#[allow(clippy::too_many_lines)]
#[test]
fn rollout_gate_counts_signed_canary_reports_for_this_image() {
    use stratos::channel::doc::{Report, ReportFile, ReportSummary, REPORT_SCHEMA};
    let w = world_with(&[]);
    w.publish(&w.img_b, "stable", 10);
    let c = w.channel_doc("stable");
    let node_keys = w.path("node-keys");
    std::fs::create_dir_all(&node_keys).unwrap();
    // Nodes the 10% rollout reached; the operator has the keys of the first two, each as
    // <node id>.pub.
    let ids: Vec<String> = (0..)
        .map(|i| format!("node-{i}"))
        .filter(|id| channel::cohort(id, "stable", &c.tracks[0].image.version) < 1000)
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
    let report = |file: &str,
                  id: &str,
                  passed: bool,
                  digest: &Sha256,
                  key: &SecretKey,
                  at: u64,
                  seq: u64| {
        let r = Report {
            schema: REPORT_SCHEMA.into(),
            node_id: id.into(),
            channel: "stable".parse().unwrap(),
            channel_version: c.version,
            image: c.tracks[0].image.name.clone(),
            version: c.tracks[0].image.version.clone(),
            manifest_sha256: *digest,
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
            .args(["--min-reports", min, "--max-failures", max, "--channel-key"])
            .arg(&w.root_key);
        cmd.assert()
    };
    let digest = c.tracks[0].image.manifest_sha256;
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
        &Sha256::parse(&"0".repeat(64)).unwrap(),
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
            .args(["--channel", "stable", "--percent", "10", "--channel-key"])
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
            .filter(|id| channel::cohort(id, "stable", &c.tracks[0].image.version) < 1000)
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
        use stratos::channel::doc::{Report, ReportFile, ReportSummary, REPORT_SCHEMA};
        let r = Report {
            schema: REPORT_SCHEMA.into(),
            node_id: self.ids[node].clone(),
            channel: "stable".parse().unwrap(),
            channel_version,
            image: self.c.tracks[0].image.name.clone(),
            version: self.c.tracks[0].image.version.clone(),
            manifest_sha256: self.c.tracks[0].image.manifest_sha256,
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
            .args([
                "--min-reports",
                min,
                "--max-failures",
                "0%",
                "--channel-key",
            ])
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
    use stratos::channel::doc::ReportFile;
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
            .arg("--node-key")
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

/// `update apply --report` makes its destination ready before any boot: a missing directory is
/// created, and a destination that cannot take the file stops the apply (exit 2) with nothing
/// booted and the state as it was.
#[test]
fn apply_report_destination_is_made_ready_or_refused_before_any_boot() {
    use stratos::channel::doc::ReportFile;
    let w = world();
    let n = w.node("n");
    assert!(n.fetch_update().unwrap().staged.is_some());
    // Under a regular file: refused, nothing booted (no QEMU would be found: the state stays).
    std::fs::write(w.path("afile"), b"x").unwrap();
    let before = listing(&n.state);
    let a = w
        .cmd()
        .env("STRATOS_QEMU", "/nonexistent/qemu")
        .args(["update", "apply", "--state"])
        .arg(&n.state)
        .args(["--node-id", "n", "--report"])
        .arg(w.path("afile/r.json"))
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("--report") && err.contains("nothing was booted"),
        "{err}"
    );
    assert!(err.contains("afile"), "{err}");
    assert_eq!(before, listing(&n.state));
    // A missing directory is created (the staged image is tampered with: rejected without a
    // boot, and reported).
    let staged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(n.state.join("staged.json")).unwrap()).unwrap();
    let manifest = n
        .state
        .join(staged["dir"].as_str().unwrap())
        .join("manifest.json");
    let mut m = std::fs::read(&manifest).unwrap();
    m.push(b'\n');
    std::fs::write(&manifest, m).unwrap();
    let r = w.path("reports/new/n.json");
    let a = w
        .cmd()
        .args(["update", "apply", "--state"])
        .arg(&n.state)
        .args(["--node-id", "n", "--report"])
        .arg(&r)
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("created"), "{}", stderr_of(&a));
    let f: ReportFile = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
    assert!(!f.report.passed);
}

/// A report that cannot be written where asked once the boot test is over (its directory went
/// away during the boot) is kept in the state directory; the apply's result stands.
#[test]
fn apply_report_that_cannot_be_written_after_the_boot_is_kept_in_the_state() {
    use stratos::channel::doc::ReportFile;
    let w = world();
    let n = w.node("n");
    assert!(n.fetch_update().unwrap().staged.is_some());
    let reports = w.path("reports");
    // A guest that never becomes ready (the fake QEMU): the boot lasts the --timeout.
    let mut c = stratos_std(w.cache.path());
    c.env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
        .env(
            "STRATOS_FAKE_CONSOLE",
            root().join("tests/fixtures/consoles/never-ready.log"),
        )
        .args([
            "update",
            "apply",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--timeout",
            "6",
        ])
        .arg("--state")
        .arg(&n.state)
        .args(["--node-id", "n", "--report"])
        .arg(reports.join("n.json"));
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The directory is created (and checked) before the boot; it goes during the boot — once
    // stratos says it boot-tests — and a file takes its place.
    use std::io::BufRead;
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the boot did not start: {err}");
        }
        err.push_str(&line);
        if line.contains("boot-testing the staged image") {
            break;
        }
    }
    assert!(reports.is_dir(), "reports/ was not created before the boot");
    std::fs::remove_dir(&reports).unwrap();
    std::fs::write(&reports, b"not a directory").unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let status = child.wait().unwrap();
    // Rejected (the boot timed out): the result of the apply, not of the report's write.
    assert_eq!(status.code(), Some(1), "{err}");
    let rejected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(n.state.join("rejected.json")).unwrap()).unwrap();
    let digest = rejected["rejected"][0]["manifest_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = n.state.join(format!("reports/{digest}.json"));
    assert!(
        err.contains(&format!("kept at {}", kept.display())),
        "{err}"
    );
    let f: ReportFile = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(f.report.manifest_sha256.to_string(), digest);
    assert!(
        !f.report.passed && f.report.seq == Some(1),
        "{:?}",
        f.report
    );
    assert_eq!(std::fs::read(&reports).unwrap(), b"not a directory");
    // A rerun (nothing staged now) and `update status` point at it.
    for verb in ["apply", "status"] {
        w.cmd()
            .args(["update", verb, "--state"])
            .arg(&n.state)
            .assert()
            .success()
            .stderr(predicates::str::contains(format!(
                "note: {} is a health report",
                kept.display()
            )));
    }
}
