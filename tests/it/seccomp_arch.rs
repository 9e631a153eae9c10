//! `stratos seccomp` for an architecture: `check --arch aarch64` compiles a baseline with the
//! arm64 table (and warns of the calls arm64 lacks), `suggest` writes a policy for the
//! architecture the runs were on (`--arch`, or the manifest of the image the result names).

use std::path::Path;

use crate::common::*;

#[test]
fn check_compiles_a_baseline_for_aarch64_and_names_the_calls_an_unmarked_policy_leaves_out() {
    let cache = tempfile::tempdir().unwrap();
    let policy = root().join("profiles/seccomp/python.json");
    let o = stratos(cache.path())
        .args(["seccomp", "check", "--json", "--arch", "aarch64"])
        .arg(&policy)
        .assert()
        .success();
    let out = o.get_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["arch"], "aarch64");
    let allowed: Vec<&str> = v["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    // arm64's forms, and its own rule (setitimer); no x86-64-only name.
    for call in ["openat", "newfstatat", "ppoll", "epoll_pwait", "setitimer"] {
        assert!(allowed.contains(&call), "{call}: {allowed:?}");
    }
    assert!(!allowed.contains(&"open") && !allowed.contains(&"arch_prctl"));
    // The baseline marks its x86-64-only calls (`includes.arches`): nothing is left out with a
    // note.
    assert_eq!(v["skipped"], serde_json::json!([]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("left out"), "{stderr}");

    // A policy that does not mark them: they are left out with a note naming them.
    let dir = tempfile::tempdir().unwrap();
    let unmarked = dir.path().join("unmarked.json");
    std::fs::write(
        &unmarked,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "epoll_wait", "poll", "ppoll"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "check", "--json", "--arch", "aarch64"])
        .arg(&unmarked)
        .assert()
        .success();
    let out = o.get_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped"], serde_json::json!(["epoll_wait", "poll"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("do not exist on aarch64 and are left out of its filter: epoll_wait, poll"),
        "{stderr}"
    );
    // The same policy on x86-64: its own names, setitimer not among them, nothing skipped.
    let o = stratos(cache.path())
        .args(["seccomp", "check", "--json"])
        .arg(&policy)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(v["arch"], "x86_64");
    assert_eq!(v["skipped"], serde_json::json!([]));
    let allowed = v["allowed"].as_array().unwrap();
    assert!(allowed.contains(&serde_json::json!("open")));
    assert!(!allowed.contains(&serde_json::json!("setitimer")));
}

/// A boot-test result about the image in `dir` (whose manifest digest it records), with one
/// run that made `calls`.
fn result(dir: &Path, manifest_sha256: &str, calls: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "schema": "stratos-boot-test/1",
        "image": {"dir": dir.display().to_string(), "manifest_sha256": manifest_sha256,
                  "name": "fn", "version": "1.0", "machine": "virt", "sizes": {}},
        "baseline": null, "accel": "tcg", "runs": 1, "invocations": 1, "invoke": "/",
        "memory_mib": 256, "metrics": {}, "baseline_metrics": null, "comparison": null,
        "objectives": [], "logs": [], "passed": true,
        "runs_detail": [{"index": 0, "image": "fn", "ok": true, "failure": null, "metrics": {},
                         "syscalls": {"cold_start": {}, "total": calls}}]
    })
}

#[test]
fn suggest_writes_a_policy_for_the_architecture_of_the_runs() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("boot.json");
    let gone = dir.path().join("no-such-image");
    let calls = serde_json::json!({"openat": 3, "read": 5, "ppoll": 1});
    std::fs::write(
        &from,
        serde_json::to_vec(&result(&gone, &"a".repeat(64), calls.clone())).unwrap(),
    )
    .unwrap();
    let suggested = |args: &[&str]| {
        let o = stratos(cache.path())
            .args(["seccomp", "suggest", "--from"])
            .arg(&from)
            .args(args)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&o.get_output().stdout).unwrap()
    };
    let arm = suggested(&["--arch", "aarch64"]);
    assert_eq!(
        arm["architectures"],
        serde_json::json!(["SCMP_ARCH_AARCH64"])
    );
    // No image directory to read: x86-64, as every image before arm64 was.
    let x86 = suggested(&[]);
    assert_eq!(
        x86["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64"])
    );
    // An image directory whose manifest is not the one the result is about: refused, naming it.
    let image = dir.path().join("image");
    std::fs::create_dir(&image).unwrap();
    std::fs::write(image.join("manifest.json"), b"{}").unwrap();
    std::fs::write(
        &from,
        serde_json::to_vec(&result(&image, &"a".repeat(64), calls.clone())).unwrap(),
    )
    .unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "suggest", "--from"])
        .arg(&from)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&o.get_output().stderr);
    assert!(
        stderr.contains(&format!(
            "{} is not the image the boot-test result is about",
            image.display()
        )) && stderr.contains("pass --arch"),
        "{stderr}"
    );
    // --arch decides without reading it.
    let arm = suggested(&["--arch", "aarch64"]);
    assert_eq!(
        arm["architectures"],
        serde_json::json!(["SCMP_ARCH_AARCH64"])
    );
}
