//! The checks against a fake host: tools are scripts in a private `PATH`, files are in a
//! scratch tree.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{run, Host};

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A host with everything required; `qemu_kvm` is the fake QEMU's answer to `-accel kvm`.
fn full_host(root: &Path, qemu_kvm: &str) -> Host {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    script(
        &bin,
        "qemu-system-x86_64",
        &format!(
            "case \"$1\" in --version) echo 'QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u18)'; exit 0;; esac\n{qemu_kvm}"
        ),
    );
    for t in ["make", "gcc", "ld", "bc", "bison", "flex", "bwrap"] {
        script(&bin, t, "exit 0");
    }
    let include = root.join("include");
    std::fs::create_dir_all(include.join("openssl")).unwrap();
    std::fs::write(include.join("libelf.h"), "").unwrap();
    std::fs::write(include.join("openssl/ssl.h"), "").unwrap();
    std::fs::write(root.join("linux-source-6.1.tar.xz"), vec![0u8; 1000]).unwrap();
    std::fs::write(root.join("kvm"), "").unwrap();
    Host {
        path: bin.into_os_string(),
        kvm: root.join("kvm"),
        kernel_source: root.join("linux-source-6.1.tar.xz"),
        include,
        cache: root.join("cache"),
        prefetch: root.join("prefetch"),
        go_root: root.join("go"),
    }
}

fn check<'a>(r: &'a super::Report, name: &str) -> &'a super::Check {
    r.checks.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn a_host_with_everything_required_is_ok_and_says_what_it_found() {
    let t = tempfile::tempdir().unwrap();
    let host = full_host(
        t.path(),
        "read line; [ \"$line\" = quit ] && exit 0; exit 9",
    );
    std::fs::create_dir_all(t.path().join("cache/debs/sha256")).unwrap();
    std::fs::write(t.path().join("cache/debs/sha256/ab"), vec![1u8; 4096]).unwrap();
    let r = run(&host);
    assert!(r.ok, "{}", super::render(&r));
    assert!(r.missing.is_empty());
    assert!(check(&r, "qemu")
        .found
        .starts_with("QEMU emulator version 7.2.15"));
    assert!(check(&r, "kvm").ok, "{:?}", check(&r, "kvm"));
    assert_eq!(r.cache.kinds["deb"].entries, 1);
    assert_eq!(r.cache.kinds["deb"].bytes, 4096);
    assert_eq!(r.cache.bytes, 4096);
    // Optional lacks are reported, with their fix, without failing the host.
    let p = check(&r, "prefetch");
    assert!(!p.ok && !p.required && p.fix.is_some(), "{p:?}");
    assert!(super::render(&r).ends_with("everything required is here\n"));
}

#[test]
fn kvm_that_opens_but_cannot_create_a_vm_says_why() {
    let t = tempfile::tempdir().unwrap();
    let host = full_host(
        t.path(),
        "echo 'qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such device' >&2; exit 1",
    );
    let r = run(&host);
    let kvm = check(&r, "kvm");
    assert!(!kvm.ok && !kvm.required);
    assert!(
        kvm.found.contains("opens but QEMU cannot create a KVM VM")
            && kvm.found.contains("Could not access KVM kernel module"),
        "{kvm:?}"
    );
    assert!(kvm.fix.as_deref().unwrap().contains("TCG"));
    // KVM is not required: the host is still fine.
    assert!(r.ok, "{}", super::render(&r));
}

#[test]
fn a_missing_kvm_device_is_told_apart() {
    let t = tempfile::tempdir().unwrap();
    let mut host = full_host(t.path(), "exit 0");
    host.kvm = t.path().join("no-kvm");
    let kvm = run(&host)
        .checks
        .into_iter()
        .find(|c| c.name == "kvm")
        .unwrap();
    assert!(kvm.found.ends_with("does not exist"), "{kvm:?}");
    assert!(kvm.fix.unwrap().contains("modprobe"));
}

#[test]
fn what_is_missing_is_listed_each_with_its_fix() {
    let t = tempfile::tempdir().unwrap();
    let mut host = full_host(t.path(), "exit 0");
    std::fs::remove_file(t.path().join("bin/qemu-system-x86_64")).unwrap();
    std::fs::remove_file(t.path().join("bin/bison")).unwrap();
    std::fs::remove_file(t.path().join("include/libelf.h")).unwrap();
    host.kernel_source = t.path().join("absent.tar.xz");
    let r = run(&host);
    assert!(!r.ok);
    assert_eq!(r.missing, ["qemu", "kernel-source", "kernel-tools"]);
    let tools = check(&r, "kernel-tools");
    assert!(
        tools.found.contains("bison") && tools.found.contains("libelf headers"),
        "{tools:?}"
    );
    assert!(tools.fix.as_deref().unwrap().contains("libelf-dev"));
    assert!(check(&r, "qemu")
        .fix
        .as_deref()
        .unwrap()
        .contains("apt-get install qemu-system-x86"));
    assert!(check(&r, "kernel-source")
        .fix
        .as_deref()
        .unwrap()
        .contains("linux-source-6.1"));
    let text = super::render(&r);
    assert!(
        text.ends_with("missing: qemu, kernel-source, kernel-tools\n"),
        "{text}"
    );
}

#[test]
fn a_cache_under_a_file_cannot_be_created() {
    let t = tempfile::tempdir().unwrap();
    let mut host = full_host(t.path(), "exit 0");
    std::fs::write(t.path().join("afile"), "").unwrap();
    host.cache = t.path().join("afile/cache");
    let r = run(&host);
    assert_eq!(r.missing, ["cache"]);
    assert!(check(&r, "cache")
        .fix
        .as_deref()
        .unwrap()
        .contains("STRATOS_CACHE"));
}

#[test]
fn prefetch_directories_are_counted() {
    let t = tempfile::tempdir().unwrap();
    let host = full_host(t.path(), "exit 0");
    for sub in ["debs", "wheels", "npm"] {
        std::fs::create_dir_all(t.path().join("prefetch").join(sub)).unwrap();
    }
    std::fs::write(t.path().join("prefetch/debs/a.deb"), vec![0u8; 10]).unwrap();
    std::fs::write(t.path().join("prefetch/debs/b.deb"), vec![0u8; 10]).unwrap();
    let p = run(&host)
        .checks
        .into_iter()
        .find(|c| c.name == "prefetch")
        .unwrap();
    assert!(p.ok, "{p:?}");
    assert!(p.found.contains("debs: 2 file(s)"), "{p:?}");
    assert!(p.found.contains("npm: 0 file(s)"), "{p:?}");
}

#[test]
fn the_go_toolchain_is_reported_with_its_version_or_its_install_command() {
    let t = tempfile::tempdir().unwrap();
    let host = full_host(t.path(), "exit 9");
    let r = run(&host);
    let go = check(&r, "go");
    assert!(!go.ok && !go.required, "{go:?}");
    assert!(r.ok, "only Go functions need it");
    assert_eq!(
        go.fix.as_deref(),
        Some("install it: apt-get install golang-go")
    );
    std::fs::create_dir_all(t.path().join("go/bin")).unwrap();
    std::fs::write(t.path().join("go/bin/go"), "").unwrap();
    std::fs::write(t.path().join("go/VERSION"), "go1.19.8\ntime 2023-03-29\n").unwrap();
    let r = run(&host);
    let go = check(&r, "go");
    assert!(go.ok && go.found.starts_with("go1.19.8"), "{go:?}");
}
