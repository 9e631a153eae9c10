//! The Go node: profiles/go-fn.toml (the function compiled ahead of time, nothing else in the
//! image) builds offline bit-identically twice, boots, answers, and under its seccomp baseline refuses starting a process while it
//! keeps serving; a snapshot of it restores into clones that each draw their own random id
//! (and reseed math/rand on the init's signal); go-fn-stock (Debian's kernel) and go-api (a
//! module dependency) boot and answer too.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// The console until it contains `needle` or 20 s pass.
fn console_with(log: &Path, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let c = std::fs::read_to_string(log).unwrap_or_default();
        if c.contains(needle) || Instant::now() > until {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// One scenario over one boot: every step uses the same running VM.
#[test]
fn go_fn_boots_answers_and_refuses_a_process_while_it_keeps_serving() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    // Built offline, twice, bit-identical.
    let img = image_rebuilt_identically("go-fn", work.path());
    // Nothing in the image but the init, its configuration and the function's binary.
    let out = std::process::Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(img.join("rootfs.tar.zst"))
        .output()
        .unwrap();
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect();
    assert!(files.iter().any(|f| f == "srv/fn/bootstrap"), "{files:?}");
    assert!(files.iter().any(|f| f == "init"), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("usr/") || f.contains(".so")),
        "{files:?}"
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    assert!(comps
        .iter()
        .any(|c| c["purl"] == "pkg:golang/stdlib@1.19.8"));
    assert!(comps.iter().any(|c| c["name"] == "example.com/go-fn"));

    let log = work.path().join("console.log");
    let (mut vm, port) = Running::boot_forwarded(&cache, &img, 300, &log);
    let deadline = Duration::from_secs(240);
    assert_eq!(
        get_with_retry_within(port, "/?name=ci", deadline),
        "Hello, ci! This is StratOS on Go.\n"
    );
    // os/exec's clone (no CLONE_THREAD) is EPERM under the baseline: reported, and the
    // function keeps serving from the same process.
    assert_eq!(
        get_with_retry_within(port, "/spawn", deadline),
        "spawn refused: EPERM\n"
    );
    let id = get_with_retry_within(port, "/id", deadline);
    assert_eq!(id.trim().len(), 32, "{id}");
    assert_eq!(
        get_with_retry_within(port, "/?name=after", deadline),
        "Hello, after! This is StratOS on Go.\n"
    );
    let console = console_with(&log, "go-fn: starting a process was refused: EPERM");
    assert!(
        console.contains("go-fn: starting a process was refused: EPERM"),
        "{console}"
    );
    assert!(console.contains("stratos-phase runtime_ready"), "{console}");
    assert!(!console.contains("stratos-init: restart"), "{console}");
    // (Its own line and the init's phase take two paths to the console, the relayed stdout
    // and the control channel's echo: their order there proves nothing.)
    assert!(console.contains("go-fn: listening on 8080"), "{console}");
    vm.stop_with_sigterm();
}

/// `stratos boot IMAGE --snapshot SNAP --invoke /id`: the id it answered, and stdout.
fn restore_id(img: &Path, snap: &Path) -> (String, String) {
    let out = stratos_std(&shared_cache())
        .arg("boot")
        .arg(img)
        .arg("--snapshot")
        .arg(snap)
        .args(["--timeout", "120", "--invoke", "/id"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "restore failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = stdout
        .find("--- response: HTTP 200 from /id ---\n")
        .unwrap_or_else(|| panic!("no answer:\n{stdout}"));
    let id = stdout[start..].lines().nth(1).unwrap().trim().to_owned();
    (id, stdout)
}

#[test]
fn go_fn_restored_from_a_snapshot_answers_with_a_per_clone_random_id() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let work = tempfile::tempdir().unwrap();
    let img = image("go-fn", work.path());
    let snap = work.path().join("go-fn.snap");
    take_snapshot(&img, &snap, "/id", &[]);
    let (a, out_a) = restore_id(&img, &snap);
    let (b, _) = restore_id(&img, &snap);
    assert_eq!(a.len(), 32, "{a}");
    assert_ne!(a, b, "two clones drew the same random id");
    assert_eq!(
        out_a.matches("stratos-phase restored ").count(),
        1,
        "{out_a}"
    );
    assert!(!out_a.contains("stratos-phase init_start"), "{out_a}");
    // The init signalled the function (on-restore = SIGUSR1), which reseeded math/rand.
    assert!(
        out_a.contains("go-fn: restored from a snapshot; math/rand reseeded"),
        "{out_a}"
    );
}

/// The benchmark's baseline: the same root on Debian's generic kernel boots and answers.
#[test]
fn go_fn_stock_boots_and_answers() {
    require_tool("qemu-system-x86_64");
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let work = tempfile::tempdir().unwrap();
    let img = image("go-fn-stock", work.path());
    invoke_answers(
        &img,
        "/?name=stock",
        300,
        "Hello, stock! This is StratOS on Go.",
    );
}

/// go-api: its module dependency, pinned by go.sum and served from functions/go-proxy, is
/// compiled in and answers.
#[test]
fn go_api_boots_and_answers_through_its_module() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let work = tempfile::tempdir().unwrap();
    let img = image("go-api", work.path());
    let sbom = std::fs::read_to_string(img.join("sbom.cdx.json")).unwrap();
    assert!(sbom.contains("pkg:golang/example.com/greet@v1.0.0"));
    invoke_answers(&img, "/?name=api", 300, "{\"message\":\"Hello, api!\"}");
}
