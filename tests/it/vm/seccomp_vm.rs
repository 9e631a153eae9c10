//! Seccomp in the guest: the busybox-httpd baseline is enforced on the runtime; a denied call
//! gets EPERM (and the console shows it); the runtime has `Seccomp: 2` and `NoNewPrivs: 1`.

use crate::common::*;

#[test]
fn baseline_is_enforced_on_the_runtime() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/seccomp-cgi");
    let profile = copy_profile("hello", work.path(), |t| {
        format!("{t}\n[[overlay]]\npath = \"{}\"\n", fixtures.display())
    });
    let img = work.path().join("img");
    stratos(&cache)
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&img)
        .arg("-q")
        .assert()
        .success();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seccomp"]["mode"], "enforce");
    assert_eq!(m["seccomp"]["policy"], "busybox-httpd.json");

    let console_path = work.path().join("console.txt");
    let (mut child, port) = Running::boot_forwarded(&cache, &img, 300, &console_path);
    let hello = get_with_retry(port, "/cgi-bin/hello?name=seccomp");
    assert!(hello.contains("Hello, seccomp!"), "{hello}");
    let denied = get_with_retry(port, "/cgi-bin/denied");
    assert!(denied.contains("mkdir: denied:"), "{denied}");
    assert!(denied.contains("Operation not permitted"), "{denied}");
    let status = get_with_retry(port, "/cgi-bin/status");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // A clean stop: SIGTERM makes `stratos boot` stop QEMU.
    child.stop_with_sigterm();
    let text = std::fs::read_to_string(&console_path).unwrap();
    assert!(text.contains("seccomp-test: mkdir denied"), "{text}");
    assert!(
        processes_mentioning(img.to_str().unwrap()).is_empty(),
        "QEMU survived"
    );
}

/// Bad policies fail the build, naming the rule.
#[test]
fn bad_policies_fail_the_build() {
    let cache = tempfile::tempdir().unwrap();
    for (policy, want) in [
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["not_a_call"],"action":"SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0]: unknown system call \"not_a_call\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_SOMETIMES"}]}"#,
            "syscalls[0]: unknown action",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ }"#,
            "malformed policy JSON at line 1",
        ),
    ] {
        let f = Fixture::new();
        f.write("policy.json", policy.as_bytes());
        let mut text = std::fs::read_to_string(f.profile()).unwrap();
        text.push_str("\n[seccomp]\npolicy = \"policy.json\"\n");
        f.write("profile.toml", text.as_bytes());
        let out = f.path("img");
        stratos(cache.path())
            .arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(want));
        assert!(!out.exists());
    }
}
