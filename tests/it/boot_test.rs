//! `stratos boot-test`: the harness against recorded consoles (a fake QEMU replays them); the
//! real run on hello is vm/boot_test.rs.

use std::path::Path;

use crate::common::*;

fn fixture_image(cache: &Path, dir: &Path) -> std::path::PathBuf {
    let f = Fixture::new();
    let out = dir.join("img");
    stratos(cache)
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    out
}

fn replay(
    console: &str,
    exit: bool,
    timeout: u64,
) -> (std::process::Output, serde_json::Value, tempfile::TempDir) {
    replay_with(console, exit, timeout, &[])
}

/// `stratos boot-test` of a fixture image under the fake QEMU replaying `console`, with
/// `extra` flags (`{img}` stands for the image); its JSON result, checked against the schema.
fn replay_with(
    console: &str,
    exit: bool,
    timeout: u64,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = fixture_image(cache.path(), work.path());
    let json = work.path().join("result.json");
    let mut c = stratos_std(cache.path());
    c.env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
        .env(
            "STRATOS_FAKE_CONSOLE",
            root().join("tests/fixtures/consoles").join(console),
        )
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--invocations",
            "1",
            "--timeout",
        ])
        .arg(timeout.to_string())
        .arg("--json-out")
        .arg(&json)
        .arg(&img);
    for e in extra {
        c.arg(e.replace("{img}", img.to_str().unwrap()));
    }
    if exit {
        c.env("STRATOS_FAKE_EXIT", "1");
    }
    let out = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(processes_mentioning(img.to_str().unwrap()).is_empty());
    (out, v, work)
}

#[test]
fn a_guest_that_panics_fails_with_the_panic_named() {
    let (out, v, work) = replay("panic.log", true, 20);
    assert_eq!(out.status.code(), Some(1));
    let failure = v["runs_detail"][0]["failure"].as_str().unwrap();
    assert!(
        failure.contains("the kernel panicked: VFS: Unable to mount root fs"),
        "{failure}"
    );
    // The console log is kept next to the JSON.
    let log = v["logs"][0].as_str().unwrap();
    assert!(Path::new(log).starts_with(work.path()));
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("Kernel panic"));
}

#[test]
fn a_guest_that_never_becomes_ready_times_out_and_is_killed() {
    let started = std::time::Instant::now();
    let (out, v, _w) = replay("never-ready.log", false, 4);
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(out.status.code(), Some(1));
    let failure = v["runs_detail"][0]["failure"].as_str().unwrap();
    assert!(failure.contains("timed out after"), "{failure}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL run 0 of fixture"), "{stdout}");
    // The fake QEMU (sleeping, with this image's path in its command line) was killed:
    // `replay` checked that no process mentions the image any more.
}

#[test]
fn a_guest_that_prints_garbage_fails_cleanly() {
    let (out, v, _w) = replay("garbage.bin", false, 3);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["passed"], false);
    assert!(v["runs_detail"][0]["failure"]
        .as_str()
        .unwrap()
        .contains("timed out"));
}

#[test]
fn a_baseline_run_names_the_ratio_and_writes_schema_valid_json() {
    let (out, v, work) = replay_with(
        "panic.log",
        true,
        20,
        &[
            "--baseline",
            "{img}",
            "--max-regression",
            "first_response=10%",
            "--markdown-out",
            "{img}/../result.md",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ratio (image/baseline)") && !stdout.contains("B/A median"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL max-regression first_response=10%: no paired first_response samples"),
        "{stdout}"
    );
    assert_eq!(v["baseline"]["name"], "fixture");
    assert_eq!(v["comparison"], serde_json::json!({}));
    assert_eq!(v["runs_detail"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(work.path().join("result.md")).unwrap();
    assert!(
        md.contains("| baseline p50 | ratio (image/baseline) | 95% CI |"),
        "{md}"
    );
}

/// A result with every field filled, made by the library from realistic runs.
fn realistic_result(digest: &str) -> stratos::boot_result::BootTestResult {
    use stratos::boot::bench::objectives::{parse_gates, parse_slos};
    use stratos::boot::bench::{compare, summarise, Objectives, METRICS};
    use stratos::boot_result::{
        BootTestResult, Concurrent, Group, ImageInfo, RunRecord, SnapshotInfo, SCHEMA,
    };
    let run = |image: &str, index: usize, scale: f64| RunRecord {
        index,
        image: image.into(),
        ok: true,
        failure: None,
        metrics: METRICS
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                (
                    (*name).to_owned(),
                    scale * (100.0 + 10.0 * k as f64 + index as f64),
                )
            })
            .collect(),
        syscalls: None,
        log: String::new(),
    };
    let a: Vec<RunRecord> = (0..3).map(|i| run("hello-stock", i, 1.0)).collect();
    let b: Vec<RunRecord> = (0..3).map(|i| run("hello", i, 0.7)).collect();
    let info = |name: &str, digest: Option<&str>, machine: &str| ImageInfo {
        dir: Some(format!("out/{name}")),
        manifest_sha256: digest.map(|d| d.parse().unwrap()),
        name: name.into(),
        version: "0.1.0".into(),
        machine: machine.into(),
        sizes: [
            ("kernel".to_owned(), 4096),
            ("initramfs.cpio.zst".to_owned(), 701_707),
        ]
        .into_iter()
        .collect(),
    };
    let metrics = summarise(&b);
    let comparison = compare(&a, &b);
    let objectives = Objectives {
        slos: parse_slos("runtime_ready.p95=900ms,memory_peak.max=65536KiB").unwrap(),
        gates: parse_gates("first_response=10%").unwrap(),
    }
    .check(&metrics, Some(&comparison));
    BootTestResult {
        schema: SCHEMA.into(),
        image: info("hello", Some(digest), "microvm"),
        baseline: Some(info("hello-stock", Some(&"b".repeat(64)), "q35")),
        snapshot: Some(SnapshotInfo {
            dir: "out/hello.snap".into(),
            snapshot_sha256: "c".repeat(64).parse().unwrap(),
            warm: vec!["/cgi-bin/hello".into()],
            verified: true,
            key_id: Some("0123456789abcdef".into()),
        }),
        accel: "tcg".into(),
        runs: 3,
        invocations: 5,
        invoke: "/cgi-bin/hello".into(),
        baseline_invoke: None,
        memory_mib: 512,
        metrics,
        baseline_metrics: Some(summarise(&a)),
        comparison: Some(comparison),
        objectives,
        runs_detail: a.into_iter().chain(b).collect(),
        concurrent: Some(Concurrent {
            count: 2,
            restored: Group {
                answered: 2,
                pss_kib: vec![30_000.0, 28_000.0],
                pss_kib_total: 58_000.0,
                first_response_ms: vec![140.0, 151.0],
                failures: Vec::new(),
            },
            booted: Group {
                answered: 2,
                pss_kib: vec![90_000.0, 91_000.0],
                pss_kib_total: 181_000.0,
                first_response_ms: vec![700.0, 720.0],
                failures: Vec::new(),
            },
            pss_ratio: Some(58_000.0 / 181_000.0),
        }),
        logs: Vec::new(),
        passed: true,
    }
}

/// Equal JSON, numbers within a relative 1e-12.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn the_result_type_matches_the_schema_and_the_gate_reads_it_back() {
    use stratos::boot_result::BootTestResult;
    use stratos::channel::{operator::gate, ImageRef};
    let digest = "a".repeat(64);
    let mut result = realistic_result(&digest);
    let bytes = result.to_json();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:?}");
    // Every metric, with its unit, and the ratio of each pair.
    assert_eq!(v["metrics"]["memory_peak"]["unit"], "KiB");
    assert_eq!(v["metrics"]["runtime_ready"]["n"], 3);
    let ratio = v["comparison"]["runtime_ready"]["median_ratio"]
        .as_f64()
        .unwrap();
    assert!((ratio - 0.7).abs() < 1e-9, "{ratio}");
    // Read back as it was written (serde_json's float parsing may be off by an ulp).
    let back = BootTestResult::from_json(&bytes).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&back.to_json()).unwrap();
    assert!(same_json(&v, &again), "{v}\n{again}");
    // The gate reads it: for this image, every objective passed…
    let image = ImageRef {
        name: "hello".into(),
        version: "0.1.0".into(),
        arch: stratos::arch::Arch::X86_64,
        manifest_sha256: stratos::digest::Sha256::parse(&digest).unwrap(),
        manifest_length: 1,
        signature_sha256: stratos::digest::Sha256::parse(&"c".repeat(64)).unwrap(),
        signature_length: 1,
    };
    let note = gate::check(&bytes, "boot.json", &image).unwrap();
    assert_eq!(
        note,
        "3 objective(s) passed: runtime_ready.p95=900ms, memory_peak.max=65536KiB, max-regression first_response=10%"
    );
    // …and refuses it once one failed.
    result.objectives[0].passed = false;
    result.passed = false;
    let e = gate::check(&result.to_json(), "boot.json", &image)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the boot test failed its objectives: runtime_ready.p95=900ms"),
        "{e}"
    );
}
