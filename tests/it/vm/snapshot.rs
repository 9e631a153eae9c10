//! Snapshots: `hello` is snapshotted once (signed); restores of it answer, each reseeded by the
//! init (`restored`) and drawing its own random id; a snapshot of another image, an edited
//! snapshot.json and (with --verify) a flipped byte in the saved state are refused. One build
//! and one snapshot serve every test of this file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;

struct Shared {
    _work: tempfile::TempDir,
    image: PathBuf,
    snap: PathBuf,
    pubkey: PathBuf,
}

/// hello, built and snapshotted once for the whole file (after a warm-up call of the id).
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        require_tool("qemu-system-x86_64");
        require_kernel_source();
        let cache = shared_cache();
        let work = tempfile::tempdir().unwrap();
        let prefix = work.path().join("release");
        stratos(&cache)
            .arg("keygen")
            .arg("--out")
            .arg(&prefix)
            .assert()
            .success();
        let image = work.path().join("hello");
        stratos(&cache)
            .arg("build")
            .arg(root().join("profiles/hello.toml"))
            .arg("--out")
            .arg(&image)
            .args(["--offline", "-q"])
            .arg("--image-key")
            .arg(prefix.with_extension("key"))
            .assert()
            .success();
        let snap = work.path().join("hello.snap");
        let key = prefix.with_extension("key");
        take_snapshot(
            &image,
            &snap,
            "/cgi-bin/id",
            &["--image-key".as_ref(), key.as_os_str()],
        );
        Shared {
            image,
            snap,
            pubkey: prefix.with_extension("pub"),
            _work: work,
        }
    })
}

/// `stratos boot IMAGE --snapshot SNAP --invoke /cgi-bin/id [extra]`: (exit ok, stdout, stderr).
fn restore(image: &Path, snap: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = stratos_std(&shared_cache())
        .arg("boot")
        .arg(image)
        .arg("--snapshot")
        .arg(snap)
        .args(["--timeout", "120", "--invoke", "/cgi-bin/id"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The body of the answer `--invoke` printed.
fn answer(stdout: &str) -> String {
    let start = stdout
        .find("--- response: HTTP 200 from /cgi-bin/id ---\n")
        .unwrap_or_else(|| panic!("no answer:\n{stdout}"));
    let body = &stdout[start..];
    body.lines().nth(1).unwrap().trim().to_owned()
}

#[test]
fn two_restores_answer_each_reseeded_with_its_own_random_id() {
    let s = shared();
    // The snapshot holds the guest's memory: private files in a private directory.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.snap), 0o700);
    for f in ["memory", "state", "snapshot.json", "snapshot.sig"] {
        assert_eq!(mode(&s.snap.join(f)), 0o600, "{f}");
    }
    let pubkey = s.pubkey.to_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (ok, stdout, stderr) = restore(&s.image, &s.snap, &["--verify", "--image-key", pubkey]);
        assert!(ok, "restore failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stderr.contains("stratos: verified snapshot"), "{stderr}");
        assert!(stderr.contains("stratos: restoring"), "{stderr}");
        // The init took the host's entropy and the time, and said so, once.
        assert_eq!(
            stdout.matches("stratos-phase restored ").count(),
            1,
            "{stdout}"
        );
        // A restore does not boot: no kernel start, no init start.
        assert!(!stdout.contains("stratos-phase init_start"), "{stdout}");
        let id = answer(&stdout);
        // 16 bytes as od prints them: 16 two-digit hex numbers.
        assert_eq!(id.split_whitespace().count(), 16, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "two clones drew the same random id");
    assert!(
        processes_mentioning(s.snap.to_str().unwrap()).is_empty(),
        "a QEMU process survived"
    );
}

/// A copy of the shared snapshot, to damage.
fn copy_snapshot(dir: &Path, name: &str) -> PathBuf {
    let s = shared();
    let copy = dir.join(name);
    std::fs::create_dir(&copy).unwrap();
    for f in ["memory", "state", "snapshot.json", "snapshot.sig"] {
        std::fs::copy(s.snap.join(f), copy.join(f)).unwrap();
    }
    copy
}

fn edit_json(snap: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let p = snap.join("snapshot.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_snapshot_of_another_image_or_an_edited_one_is_refused_with_its_reason() {
    let s = shared();
    let work = tempfile::tempdir().unwrap();
    // Another image: the same files under another version (so another manifest).
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for e in std::fs::read_dir(&s.image).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), other.join(e.file_name())).unwrap();
    }
    let m = other.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("\"0.1.0\"", "\"0.1.1\"")).unwrap();
    let (ok, _, stderr) = restore(&other, &s.snap, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot be restored here: it was made for hello 0.1.0")
            && stderr.contains("not for this image hello 0.1.1"),
        "{stderr}"
    );

    // Another QEMU.
    let snap = copy_snapshot(work.path(), "qemu.snap");
    edit_json(&snap, |v| {
        v["qemu_version"] = "QEMU emulator version 0.0.1".into()
    });
    let (ok, _, stderr) = restore(&s.image, &snap, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("it was made with \"QEMU emulator version 0.0.1\""),
        "{stderr}"
    );

    // Another memory size: the machine no longer matches the saved one.
    let snap = copy_snapshot(work.path(), "memory.snap");
    edit_json(&snap, |v| v["memory_mib"] = 256.into());
    let (ok, _, stderr) = restore(&s.image, &snap, &[]);
    assert!(!ok);
    assert!(stderr.contains("it was made on the machine"), "{stderr}");

    // Any edit breaks the signature, under --verify.
    let pubkey = s.pubkey.to_str().unwrap();
    let (ok, _, stderr) = restore(&s.image, &snap, &["--verify", "--image-key", pubkey]);
    assert!(!ok);
    assert!(
        stderr.contains("refusing to restore: verification FAILED"),
        "{stderr}"
    );

    // A truncated state file, without --verify: its size is checked.
    let snap = copy_snapshot(work.path(), "truncated.snap");
    let state = std::fs::read(snap.join("state")).unwrap();
    std::fs::write(snap.join("state"), &state[..state.len() / 2]).unwrap();
    let (ok, _, stderr) = restore(&s.image, &snap, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("state is") && stderr.contains("but snapshot.json says"),
        "{stderr}"
    );
}

#[test]
fn verify_refuses_a_flipped_byte_in_the_state() {
    let s = shared();
    let work = tempfile::tempdir().unwrap();
    let snap = copy_snapshot(work.path(), "flipped.snap");
    let p = snap.join("state");
    let mut state = std::fs::read(&p).unwrap();
    let mid = state.len() / 2;
    state[mid] ^= 0x01;
    std::fs::write(&p, &state).unwrap();
    let pubkey = s.pubkey.to_str().unwrap();
    let (ok, _, stderr) = restore(&s.image, &snap, &["--verify", "--image-key", pubkey]);
    assert!(!ok);
    assert!(
        stderr.contains("refusing to restore: verification FAILED")
            && stderr.contains("state: sha256"),
        "{stderr}"
    );
}

#[test]
fn boot_test_restores_against_boots_and_measures_concurrent_clones() {
    let s = shared();
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("restore.json");
    let out = stratos_std(&shared_cache())
        .arg("boot-test")
        .arg(&s.image)
        .arg("--snapshot")
        .arg(&s.snap)
        .args([
            "--runs",
            "1",
            "--invocations",
            "2",
            "--invoke",
            "/cgi-bin/id",
            "--concurrent",
            "2",
            "--json-out",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let errors = schema_errors(&v);
    assert!(errors.is_empty(), "{errors:?}");
    // B restored, A booted the same image.
    assert_eq!(
        v["baseline"]["manifest_sha256"],
        v["image"]["manifest_sha256"]
    );
    assert_eq!(v["snapshot"]["warm"][0], "/cgi-bin/id");
    for m in ["resumed", "restored", "first_response", "cold_start"] {
        assert_eq!(v["metrics"][m]["n"], 1, "{m}: {v}");
    }
    // A restore boots no kernel: its runs have no guest boot phases; the baseline's do.
    assert!(v["metrics"].get("init_start").is_none(), "{v}");
    assert_eq!(v["baseline_metrics"]["init_start"]["n"], 1);
    assert!(v["comparison"]["first_response"]["median_ratio"].is_number());
    let c = &v["concurrent"];
    assert_eq!(c["count"], 2);
    for g in ["restored", "booted"] {
        assert_eq!(c[g]["answered"], 2, "{g}: {c}");
        assert_eq!(c[g]["pss_kib"].as_array().unwrap().len(), 2);
        assert!(c[g]["pss_kib_total"].as_f64().unwrap() > 0.0);
    }
    assert!(c["pss_ratio"].as_f64().unwrap() > 0.0);
    assert!(
        stdout.contains("2 clones restored at once: 2/2 answered"),
        "{stdout}"
    );
    assert!(
        processes_mentioning(s.snap.to_str().unwrap()).is_empty(),
        "a QEMU process survived"
    );
}

/// A Debian-kernel twin (q35, virtio as modules, the control port's driver loaded by the init
/// after the boot began) is snapshotted and its restore answers: the init's control thread
/// finds the port whenever the module brings it, so a restore is never waited out.
#[test]
fn a_snapshot_of_the_debian_kernel_twin_restores_and_answers() {
    require_tool("qemu-system-x86_64");
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("hello-stock");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/hello-stock.toml"))
        .arg("--out")
        .arg(&image)
        .args(["--offline", "-q"])
        .assert()
        .success();
    let snap = work.path().join("hello-stock.snap");
    take_snapshot(&image, &snap, "/cgi-bin/id", &[]);
    let (ok, stdout, stderr) = restore(&image, &snap, &["--accel", "tcg"]);
    assert!(ok, "{stderr}\n{stdout}");
    assert!(stderr.contains("q35"), "{stderr}");
    assert_eq!(answer(&stdout).len(), 47, "{stdout}");
}
