//! First boot: `hello` (Debian's kernel + busybox httpd from the lock) boots under QEMU and
//! answers an invocation through the forwarded port; a tampered lock fails the build.

use crate::common::*;
use predicates::prelude::*;

fn hello_prereqs() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
}

#[test]
fn hello_boots_and_answers() {
    hello_prereqs();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let out = image("hello", work.path());
    let run = stratos_std(&cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--invoke",
            "/cgi-bin/hello?name=ci",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "boot failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("--- response: HTTP 200 from /cgi-bin/hello?name=ci ---"),
        "{stdout}"
    );
    assert!(stdout.contains("Hello, ci! This is StratOS."), "{stdout}");
    assert!(
        stdout.contains("time from QEMU start to the first response:"),
        "{stdout}"
    );
    // The init reached the runtime and the kernel never lost PID 1.
    assert!(stdout.contains("stratos-phase runtime_exec"), "{stdout}");
    assert!(!stdout.contains("Attempted to kill init"), "{stdout}");
    // No QEMU outlives the command.
    assert!(
        processes_mentioning(out.to_str().unwrap()).is_empty(),
        "a QEMU process survived"
    );
}

#[test]
fn stock_kernel_boots_and_answers() {
    require_tool("qemu-system-x86_64");
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("hello-stock");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/hello-stock.toml"))
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let run = stratos_std(&cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--invoke",
            "/cgi-bin/hello",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("Hello, world! This is StratOS."),
        "{stdout}"
    );
    assert!(stdout.contains("(tcg, q35)"), "{stdout}");
    assert!(processes_mentioning(out.to_str().unwrap()).is_empty());
}

#[test]
fn lock_mismatch_fails_the_build_naming_the_package() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let mut text = std::fs::read_to_string(f.profile()).unwrap();
    text.push_str("\n[packages]\ndebian = [\"busybox-static\"]\n");
    f.write("profile.toml", text.as_bytes());
    // The real lock, with one digit of the sha256 changed.
    let lock = std::fs::read_to_string(root().join("profiles/hello.lock")).unwrap();
    let i = lock.find("sha256 = \"").unwrap() + 10;
    let mut bytes = lock.into_bytes();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    f.write("profile.lock", &bytes);
    let out = work.path().join("img");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "package busybox-static 1:1.35.0-4+deb12u1+b1",
        ))
        .stderr(predicate::str::contains("pins sha256"));
    assert!(!out.exists());
}

/// A byte of `/init` changed inside the verified root: the kernel refuses the block, the boot
/// fails naming the verification, and nothing answers.
#[test]
fn tampered_erofs_root_fails_verification_and_never_answers() {
    hello_prereqs();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("hello");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/hello.toml"))
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let path = out.join("rootfs.erofs");
    let mut img = std::fs::read(&path).unwrap();
    let init = std::fs::read(bin().with_file_name("stratos-init")).unwrap();
    let needle = &init[8192..8192 + 128];
    let at = img
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the init's bytes are in the image");
    img[at + 5] ^= 0x01;
    std::fs::write(&path, &img).unwrap();
    let run = stratos_std(&cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "120",
            "--invoke",
            "/cgi-bin/hello?name=ci",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("root filesystem failed verification: device-mapper: verity"),
        "{stderr}"
    );
    assert!(!stdout.contains("--- response"), "{stdout}");
    assert!(processes_mentioning(out.to_str().unwrap()).is_empty());
}
