//! The command line's shared vocabulary (docs/commands.md, "Vocabulary" and "Exit codes"):
//! one exit table for every command, keys checked to be the kind their flag needs, and old
//! spellings that still work and warn. Fast tier: a fake kernel and a fake QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// An unsigned image of the fixture profile, built once per test into `dir`.
fn image(cache: &Path, dir: &Path) -> PathBuf {
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

fn keygen(cache: &Path, prefix: &Path) -> (PathBuf, PathBuf) {
    stratos(cache)
        .args(["keygen", "--out"])
        .arg(prefix)
        .assert()
        .success();
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The commands that boot `img` under QEMU, with a short deadline (`update apply` boots the
/// same way through the same harness as `boot-test`).
fn qemu_commands(img: &Path) -> Vec<Vec<String>> {
    let img = img.to_str().unwrap().to_owned();
    let common = ["--accel", "tcg", "--timeout", "20s"].map(String::from);
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.replace("{img}", &img))
            .chain(common.iter().cloned())
            .collect()
    };
    vec![
        with(&["boot", "{img}", "-q"]),
        with(&["boot-test", "{img}", "--runs", "1", "--invocations", "1"]),
        with(&["snapshot", "{img}", "-q"]),
        with(&["kernel", "profile", "{img}"]),
    ]
}

#[test]
fn missing_qemu_exits_3_for_boot_boot_test_snapshot_and_kernel_profile_alike() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = image(cache.path(), work.path());
    let empty_path = tempfile::tempdir().unwrap();
    for args in qemu_commands(&img) {
        // $STRATOS_QEMU naming nothing: the message names that path.
        let o = stratos_std(cache.path())
            .args(&args)
            .env("STRATOS_QEMU", "/nonexistent/qemu-system-x86_64")
            .current_dir(work.path())
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {e}");
        assert!(
            e.contains("$STRATOS_QEMU names /nonexistent/qemu-system-x86_64, which does not exist"),
            "{args:?}: {e}"
        );
        assert!(e.contains("sudo apt-get install qemu-system-x86"), "{e}");
        // No QEMU in PATH: the binary looked for, its package, ./ci/setup only in a checkout.
        let o = stratos_std(cache.path())
            .args(&args)
            .env_remove("STRATOS_QEMU")
            .env("PATH", empty_path.path())
            .current_dir(work.path())
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {e}");
        assert!(
            e.contains("QEMU is not installed: qemu-system-x86_64 is not in PATH; install the Debian/Ubuntu package qemu-system-x86: `sudo apt-get install qemu-system-x86` (in a checkout of StratOS, `sudo ./ci/setup`"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn bad_usage_exits_2_for_every_command_that_boots() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = image(cache.path(), work.path());
    for mut args in qemu_commands(&img) {
        // A deadline that is not one: refused by the one duration parser, naming the form.
        let at = args.iter().position(|a| a == "20s").unwrap();
        args[at] = "soon".into();
        let o = stratos_std(cache.path()).args(&args).output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("like 500ms, 30s, 5m, 2h or 7d"), "{e}");
    }
    let state = work.path().join("state");
    let state = state.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "update",
                "check",
                "--repo",
                "r",
                "--channel",
                "stable",
                "--node-id",
                "n",
            ]
            .into_iter()
            .chain(["--state", state, "--network-timeout", "2h"])
            .collect::<Vec<_>>(),
            "must be between 1s and 1h",
        ),
        (
            vec!["cache", "gc", "--older-than", "soon"],
            "--older-than \"soon\" is not a duration",
        ),
        (vec!["repo", "init", "--root-key", "k.key"], "--repo <DIR>"),
    ] {
        let o = stratos_std(cache.path()).args(&args).output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

#[test]
fn a_failed_check_exits_1_for_verify_boot_boot_test_and_kernel_profile() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = image(cache.path(), work.path());
    let (_, public) = keygen(cache.path(), &work.path().join("k"));
    // An unsigned image does not verify.
    let o = stratos_std(cache.path())
        .arg("verify")
        .arg(&img)
        .arg("--image-key")
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // A guest whose kernel panics fails boot, boot-test and kernel profile alike.
    for mut args in qemu_commands(&img) {
        if args[0] == "snapshot" {
            continue;
        }
        if args[0] == "boot-test" {
            // A time limit without a unit: still milliseconds, with a warning.
            args.extend(["--slo".into(), "runtime_ready.p95=900".into()]);
        }
        let o = stratos_std(cache.path())
            .args(&args)
            .env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
            .env(
                "STRATOS_FAKE_CONSOLE",
                root().join("tests/fixtures/consoles/panic.log"),
            )
            .env("STRATOS_FAKE_EXIT", "1")
            .current_dir(work.path())
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        if args[0] == "boot-test" {
            assert!(
                e.contains("stratos: warning: --slo runtime_ready.p95=900: a time without a unit is read as milliseconds; write the unit (e.g. 900ms)"),
                "{e}"
            );
        }
    }
}

#[test]
fn ctrl_c_stops_the_vm_says_interrupted_and_exits_130() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = image(cache.path(), work.path());
    let needle = img.to_str().unwrap().to_owned();
    for args in qemu_commands(&img) {
        let child = stratos_std(cache.path())
            .args(&args)
            .env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
            .env(
                "STRATOS_FAKE_CONSOLE",
                root().join("tests/fixtures/consoles/never-ready.log"),
            )
            .current_dir(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the (fake) QEMU to run, then press Ctrl-C.
        let started = Instant::now();
        while !qemu_running(&needle) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{args:?}: no QEMU"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let o = child.wait_with_output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(130), "{args:?}: {e}");
        assert!(
            e.contains("error: interrupted: the VM was stopped"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("without the runtime reporting"), "{e}");
        assert!(
            processes_mentioning(&needle).is_empty(),
            "{args:?}: QEMU left"
        );
    }
}

/// A QEMU (the fake one) whose command line mentions `needle`, still running.
fn qemu_running(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains(needle) && c.contains("qemu-system-x86_64 (fake)")
        })
    })
}

#[test]
fn a_key_of_the_wrong_kind_is_bad_input_naming_the_flag_and_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (secret, public) = keygen(cache.path(), &work.path().join("release"));
    // The public half where the secret key signs.
    let o = stratos_std(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(work.path().join("img"))
        .arg("--image-key")
        .arg(&public)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!(
            "error: --image-key: {} is a public key, but a secret key is needed here: pass the .key file, e.g. {}",
            public.display(),
            secret.display()
        )),
        "{e}"
    );
    assert!(!work.path().join("img").exists());
    // The secret key where only the public half belongs.
    let img = image(cache.path(), work.path());
    let o = stratos_std(cache.path())
        .arg("verify")
        .arg(&img)
        .arg("--image-key")
        .arg(&secret)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!(
            "--image-key: {} is a secret key, but a public key is needed here: pass the .pub file",
            secret.display()
        )),
        "{e}"
    );
    // The release commands: a public key given as the channel key that signs.
    let repo = work.path().join("releases");
    let o = stratos_std(cache.path())
        .args(["repo", "init", "--repo"])
        .arg(&repo)
        .arg("--root-key")
        .arg(&public)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--root-key: ") && e.contains("is a public key"),
        "{e}"
    );
}

#[test]
fn old_spellings_still_work_and_warn_naming_the_new_one() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (secret, public) = keygen(cache.path(), &work.path().join("release"));
    let img = work.path().join("img");
    let o = stratos_std(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&img)
        .arg("-q")
        .arg("--sign-key")
        .arg(&secret)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("stratos: warning: `build --sign-key` is now `build --image-key`; the old spelling will be removed in the next release"),
        "{e}"
    );
    let o = stratos_std(cache.path())
        .arg("verify")
        .arg(&img)
        .arg(format!("--pubkey={}", public.display()))
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "the signed image verifies: {e}");
    assert_eq!(
        e.matches("`verify --pubkey` is now `verify --image-key`")
            .count(),
        1,
        "{e}"
    );
    // `repo init DIR`, positional, is `repo init --repo DIR` now.
    let repo = work.path().join("releases");
    let o = stratos_std(cache.path())
        .args(["repo", "init"])
        .arg(&repo)
        .arg("--root-key")
        .arg(&secret)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(repo.join("root.json").is_file());
    assert!(
        e.contains("`repo init DIR` is now `repo init --repo DIR`"),
        "{e}"
    );
    // `cache gc --older-than 7` meant 7 days, and still does, with a warning.
    let o = stratos_std(cache.path())
        .args(["cache", "gc", "--older-than", "7"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("--older-than 7: a bare number here means days; write 7d"),
        "{e}"
    );
    // The old spellings are not advertised.
    let help = stratos_std(cache.path())
        .args(["build", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--image-key") && !help.contains("--sign-key"),
        "{help}"
    );
}

#[test]
fn the_exit_table_of_the_docs_is_the_one_in_the_code() {
    let docs = std::fs::read_to_string(root().join("docs/commands.md")).unwrap();
    for e in stratos::cli::Exit::ALL {
        let row = format!("| {} | {} |", e as u8, e.meaning());
        assert!(docs.contains(&row), "docs/commands.md lacks the row {row}");
    }
    let o = Command::new(bin()).arg("--help").output().unwrap();
    // clap wraps long lines: compare the words.
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(&String::from_utf8_lossy(&o.stdout));
    assert!(
        help.contains(&words(&stratos::cli::Exit::help_text())),
        "{help}"
    );
}
