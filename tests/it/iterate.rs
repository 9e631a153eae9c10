//! The local loop: `build --dev` (fast compression, marked as not for release), `-v` (the
//! external commands StratOS runs) and `boot`'s console kept in a log while a person sees the
//! function's output. `lock --offline` is in `lock.rs`.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn build(cache: &Path, f: &Fixture, out: &Path, extra: &[&str]) -> std::process::Output {
    stratos_std(cache)
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// `--dev` compresses at zstd -3 and says so in the manifest and the SBOM; `verify` and
/// `inspect` show it; `publish` refuses it. A release build's manifest has no such field.
#[test]
fn a_dev_build_is_marked_shown_and_never_published() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let keys = f.path("k");
    stratos(cache.path())
        .args(["keygen", "--out"])
        .arg(&keys)
        .assert()
        .success();
    let key = f.path("k.key");
    let key_arg = key.to_str().unwrap();
    let (rel, dev) = (f.path("rel"), f.path("dev"));
    let o = build(cache.path(), &f, &rel, &["--sign-key", key_arg, "-q"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = build(cache.path(), &f, &dev, &["--sign-key", key_arg, "--dev"]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("zstd -3, --dev"), "{stderr}");
    assert!(stderr.contains("--dev: fast compression"), "{stderr}");

    let (mr, md) = (manifest(&rel), manifest(&dev));
    assert!(mr.get("dev").is_none(), "{mr}");
    assert_eq!(mr["compression"]["level"], 19);
    assert_eq!(md["dev"], true);
    assert_eq!(md["compression"]["level"], 3);
    // The same files, compressed differently.
    let size = |m: &serde_json::Value, name: &str| {
        m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["sha256"]
            .clone()
    };
    assert_ne!(size(&mr, "rootfs.tar.zst"), size(&md, "rootfs.tar.zst"));
    assert_eq!(size(&mr, "kernel"), size(&md, "kernel"));
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dev.join("sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!(
        sbom["metadata"]["properties"],
        serde_json::json!([
            {"name": "stratos:arch", "value": "x86_64"},
            {"name": "stratos:build", "value": "dev"}
        ])
    );
    assert!(validate_sbom(&sbom).is_ok());

    let verify = stratos(cache.path())
        .arg("verify")
        .arg(&dev)
        .arg("--pubkey")
        .arg(f.path("k.pub"))
        .assert()
        .success();
    let out = text(&verify.get_output().stdout);
    assert!(
        out.contains("dev build: built with `stratos build --dev`"),
        "{out}"
    );
    let inspect = stratos(cache.path())
        .arg("inspect")
        .arg(&dev)
        .assert()
        .success();
    let out = text(&inspect.get_output().stdout);
    assert!(out.contains("build:    dev (zstd -3)"), "{out}");
    let inspect = stratos(cache.path())
        .arg("inspect")
        .arg(&rel)
        .assert()
        .success();
    assert!(!text(&inspect.get_output().stdout).contains("build:    dev"));

    let repo = f.path("repo");
    stratos(cache.path())
        .args(["repo", "init"])
        .arg(&repo)
        .arg("--root-key")
        .arg(&key)
        .assert()
        .success();
    let publish = |img: &Path| {
        stratos(cache.path())
            .arg("publish")
            .arg(img)
            .arg("--repo")
            .arg(&repo)
            .args(["--channel", "canary", "--sign-key"])
            .arg(&key)
            .assert()
    };
    let refused = publish(&dev).code(1);
    let e = text(&refused.get_output().stderr);
    assert!(
        e.contains("built with `stratos build --dev` (fast compression, not for release); rebuild it without --dev to publish it"),
        "{e}"
    );
    assert!(!repo.join("channels/canary.json").exists());
    publish(&rel).success();
}

/// A recorded console: the kernel, the init's machine lines, the function's relayed output.
const CONSOLE: &str = "Linux version 6.1.0-test\n\
stratos-phase init_start 1000\n\
stratos-metrics {\"rss\":1}\n\
fn> hello from the function\n\
Kernel panic - not syncing: test over\n";

fn boot(cache: &Path, image: &Path, console: &Path, extra: &[&str]) -> std::process::Output {
    stratos_std(cache)
        .env_remove("STRATOS_CONSOLE")
        .arg("boot")
        .arg(image)
        .args(["--accel", "tcg", "--timeout", "20"])
        .args(extra)
        .env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
        .env("STRATOS_FAKE_CONSOLE", console)
        .env("STRATOS_FAKE_EXIT", "1")
        .output()
        .unwrap()
}

/// Without -v, `boot` copies only the function's output to stdout and keeps the whole console
/// in a log it names; with -v, every console line and the QEMU command line are shown.
#[test]
fn boot_shows_the_function_keeps_the_console_and_v_shows_everything() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let img = f.path("img");
    let o = build(cache.path(), &f, &img, &["-q"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    f.write("console.log", CONSOLE.as_bytes());
    let console = f.path("console.log");

    let started = std::time::Instant::now();
    let o = boot(cache.path(), &img, &console, &[]);
    assert!(started.elapsed() < Duration::from_secs(60));
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout, "fn> hello from the function\n", "{stderr}");
    let log = cache.path().join("logs/boot/fixture.console.log");
    assert!(
        stderr.contains(&format!("the whole console (5 lines): {}", log.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("stratos: + "), "{stderr}");
    let kept = std::fs::read_to_string(&log).unwrap();
    for line in CONSOLE.lines() {
        assert!(kept.contains(line), "{line} missing from {kept}");
    }

    let chosen = f.path("my.log");
    let o = boot(
        cache.path(),
        &img,
        &console,
        &["-v", "--console-log", chosen.to_str().unwrap()],
    );
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(stdout, CONSOLE, "{stderr}");
    assert!(
        stderr.contains("stratos: + ") && stderr.contains("fake-qemu.sh -nodefaults"),
        "{stderr}"
    );
    assert!(std::fs::read_to_string(&chosen)
        .unwrap()
        .contains("stratos-metrics"));
}

/// `snapshot` shows the console the way `boot` does: the function's output only, and on a
/// failure how to see the rest; with -v, every line.
#[test]
fn snapshot_shows_the_function_s_output_and_v_shows_everything() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let img = f.path("img");
    let o = build(cache.path(), &f, &img, &["-q"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    f.write("console.log", CONSOLE.as_bytes());
    let snapshot = |extra: &[&str]| {
        stratos_std(cache.path())
            .env_remove("STRATOS_CONSOLE")
            .arg("snapshot")
            .arg(&img)
            .args(["--accel", "tcg", "--timeout", "20"])
            .args(extra)
            .env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
            .env("STRATOS_FAKE_CONSOLE", f.path("console.log"))
            .env("STRATOS_FAKE_EXIT", "1")
            .output()
            .unwrap()
    };
    let o = snapshot(&[]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "fn> hello from the function\n", "{stderr}");
    assert!(stderr.contains("-v snapshot"), "{stderr}");
    assert!(!img.with_extension("snap").exists());
    let o = snapshot(&["-v"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(stdout, CONSOLE, "{stderr}");
    assert!(!stderr.contains("-v snapshot"), "{stderr}");
}
