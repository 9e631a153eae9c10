//! A build checks every input before its first expensive step: a `.deb` missing under
//! `--offline` or a missing lock is reported before any kernel is compiled, and `build --check`
//! does only the checks.

use std::path::Path;

use crate::common::*;

/// A profile whose kernel is built from `linux.tar.xz` (never reached: the inputs fail first)
/// and which installs `pkg` from its lock.
fn source_kernel_profile(f: &Fixture, pkg: &str) {
    let text = PROFILE.replace(
        "prebuilt = \"kernel/bzImage\"",
        "source = { tarball = \"linux.tar.xz\" }\nbase = \"tinyconfig\"",
    );
    f.write(
        "linux.tar.xz",
        b"not a kernel source: the build must not get this far\n",
    );
    f.write(
        "profile.toml",
        format!("{text}\n[packages]\ndebian = [\"{pkg}\"]\n").as_bytes(),
    );
}

const LOCK: &str = r#"lock-version = 1

[[package]]
name = "stratos-test-absent"
version = "1.0-1"
arch = "amd64"
sha256 = "00000000000000000000000000000000000000000000000000000000000000aa"
size = 1000
required-by = ["profile"]
"#;

fn no_kernel_work(cache: &Path) {
    assert!(
        !cache.join("kernels").exists(),
        "the kernel step ran before the inputs were checked: {:?}",
        walk_files(cache)
    );
}

#[test]
fn a_deb_missing_offline_is_reported_before_the_kernel_build() {
    let f = Fixture::new();
    source_kernel_profile(&f, "stratos-test-absent");
    f.write("profile.lock", LOCK.as_bytes());
    let cache = tempfile::tempdir().unwrap();
    for check in [false, true] {
        let mut c = stratos_std(cache.path());
        c.arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(f.path("out"));
        c.arg("--offline");
        if check {
            c.arg("--check");
        }
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--check={check}: {stderr}");
        assert!(
            stderr.contains("package stratos-test-absent 1.0-1 is not in the package cache")
                && stderr.contains("--offline"),
            "--check={check}: {stderr}"
        );
        no_kernel_work(cache.path());
        assert!(!f.path("out").exists());
    }
}

#[test]
fn a_missing_lock_is_reported_before_the_kernel_build() {
    let f = Fixture::new();
    source_kernel_profile(&f, "busybox-static");
    let cache = tempfile::tempdir().unwrap();
    let o = stratos_std(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("out"))
        .arg("--offline")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("profile.lock"), "{stderr}");
    no_kernel_work(cache.path());
}

#[test]
fn build_check_checks_and_writes_nothing() {
    let f = Fixture::new();
    let cache = tempfile::tempdir().unwrap();
    let out = f.path("out");
    let o = stratos_std(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .args(["--offline", "--check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("every input checked (0 .debs, 0 wheels, 0 npm packages"),
        "{stdout}"
    );
    assert!(!out.exists());
    // A broken seccomp policy is found by --check too.
    f.write("policy.json", b"{ not json");
    let text = std::fs::read_to_string(f.profile()).unwrap();
    f.write(
        "profile.toml",
        format!("{text}\n[seccomp]\npolicy = \"policy.json\"\n").as_bytes(),
    );
    let o = stratos_std(cache.path())
        .arg("build")
        .arg(f.profile())
        .args(["--offline", "--check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("policy.json"), "{stderr}");
}

/// The fixture profile under `policy`, for `arch` (for aarch64, a fake arm64 boot image is its
/// prebuilt kernel: `--check` only reads it).
fn profile_with_policy(f: &Fixture, policy: &Path, arch: &str) {
    let mut text = PROFILE.replace(
        "source-date-epoch = 1700000000",
        &format!("source-date-epoch = 1700000000\narch = \"{arch}\""),
    );
    if arch == "aarch64" {
        let mut image = vec![0u8; 0x1000];
        // Documentation/arch/arm64/booting.rst: the magic "ARM\x64" at offset 56.
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        f.write("kernel/Image", &image);
        text = text.replace(
            "prebuilt = \"kernel/bzImage\"\ncmdline = \"console=ttyS0 panic=-1\"",
            "prebuilt = \"kernel/Image\"\ncmdline = \"console=ttyAMA0 panic=-1\"",
        );
    }
    f.write(
        "profile.toml",
        format!("{text}\n[seccomp]\npolicy = \"{}\"\n", policy.display()).as_bytes(),
    );
}

#[test]
fn build_check_for_aarch64_warns_of_the_calls_arm64_does_not_have() {
    aarch64_init();
    // A policy written for x86-64 only: `open` and `stat` have no arm64 numbers.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("x86-minded.json");
    std::fs::write(
        &policy,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["read", "write", "open", "openat", "stat", "newfstatat", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let check = |policy: &Path, arch: &str| {
        let f = Fixture::new();
        profile_with_policy(&f, policy, arch);
        let o = stratos_std(cache.path())
            .arg("build")
            .arg(f.profile())
            .args(["--offline", "--check"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{arch}: {stderr}");
        stderr
    };
    let stderr = check(&policy, "aarch64");
    let want = format!(
        "stratos: WARNING: {}: 2 system call(s) it names do not exist on aarch64 and are left out of its filter: open, stat;",
        policy.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert_eq!(stderr.matches("WARNING").count(), 1, "{stderr}");
    // The shipped baselines mark their x86-64-only calls (`includes.arches`): no note.
    let shipped = root().join("profiles/seccomp/busybox-httpd.json");
    let stderr = check(&shipped, "aarch64");
    assert!(!stderr.contains("WARNING"), "{stderr}");
    // x86-64 has every call the policy names: no note.
    let stderr = check(&policy, "x86_64");
    assert!(!stderr.contains("WARNING"), "{stderr}");
}
