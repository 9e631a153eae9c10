//! `stratos boot-test`: the harness against recorded consoles (a fake QEMU replays them), and
//! for real on hello with its JSON checked against the documented schema.

mod common;

use std::path::Path;

use common::*;

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
        .arg("--json")
        .arg(&json)
        .arg(&img);
    if exit {
        c.env("STRATOS_FAKE_EXIT", "1");
    }
    let out = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
fn boot_test_on_hello_writes_schema_valid_json_and_gates() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("hello");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/hello.toml"))
        .arg("--out")
        .arg(&img)
        .arg("-q")
        .assert()
        .success();
    let json = work.path().join("boot.json");
    let run = |slo: &str| {
        stratos_std(&cache)
            .args([
                "boot-test",
                "--accel",
                "tcg",
                "--runs",
                "2",
                "--invocations",
                "3",
                "--invoke",
                "/cgi-bin/hello",
                "--slo",
                slo,
                "--json",
            ])
            .arg(&json)
            .arg(&img)
            .output()
            .unwrap()
    };
    let ok = run("runtime_ready.p95=60s,first_response.p50=60s");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("PASS runtime_ready.p95=60s"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("docs/boot-test.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(v["metrics"]["first_response"]["n"], 2);
    assert_eq!(v["runs_detail"].as_array().unwrap().len(), 2);
    assert!(v["metrics"]["cold_start"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["metrics"]["warm"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        v["metrics"]["memory_peak"]["max"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    let bad = run("runtime_ready.p95=1ms");
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("FAIL runtime_ready.p95=1ms"), "{out}");
    assert!(processes_mentioning(img.to_str().unwrap()).is_empty());
}
