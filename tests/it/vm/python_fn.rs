//! The flagship: profiles/python-fn.toml builds from its lock (offline: ci/setup fetched the
//! pinned .debs), trims, boots under QEMU and answers; its SBOM validates and names every
//! package; two builds are byte-identical.

use crate::common::*;
use predicates::prelude::*;

#[test]
fn python_fn_builds_offline_reproducibly_boots_and_answers() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    // Reproducibility is the point of this test: the shared image and a second build agree.
    let a = image_rebuilt_identically("python-fn", work.path());
    let comps = sbom_names_every_package(&a);
    every_entry_belongs_to_a_component_and_preload_is_the_closure(&cache, &a);
    trimmed_with_bytecode_owned_by_its_source(&a, &comps);
    boots_and_answers_in_256_and_128_mib(&cache, &a);
    snapshot_restores_clones_with_their_own_random(&cache, &a, work.path());
}

/// The SBOM validates, names the interpreter's packages with their licences and dependency
/// graph; returns its components.
fn sbom_names_every_package(a: &std::path::Path) -> Vec<serde_json::Value> {
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    let purls: Vec<&str> = comps.iter().filter_map(|c| c["purl"].as_str()).collect();
    for pkg in [
        "python3.11-minimal",
        "libpython3.11-minimal",
        "libc6",
        "zlib1g",
    ] {
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with(&format!("pkg:deb/debian/{pkg}@"))),
            "{pkg} missing from {purls:?}"
        );
    }
    // Licences from the packages' machine-readable copyright files survive the trim of the docs.
    let zlib = comps.iter().find(|c| c["name"] == "zlib1g").unwrap();
    assert_eq!(zlib["licenses"][0]["expression"], "Zlib");
    // The dependency graph: python3.11-minimal depends on libpython3.11-minimal.
    let py = comps
        .iter()
        .find(|c| c["name"] == "python3.11-minimal")
        .unwrap();
    let deps = sbom["dependencies"].as_array().unwrap();
    let edge = deps.iter().find(|d| d["ref"] == py["bom-ref"]).unwrap();
    assert!(edge["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().contains("libpython3.11-minimal")));
    comps.clone()
}

fn every_entry_belongs_to_a_component_and_preload_is_the_closure(
    cache: &std::path::Path,
    a: &std::path::Path,
) {
    // Every entry of the image belongs to a component.
    stratos(cache)
        .args(["inspect", "--orphans"])
        .arg(a)
        .assert()
        .success()
        .stderr(predicates::str::contains("no orphans"));

    // The preload list is the interpreter's ELF closure plus the profile's extra files.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let preload: Vec<&str> = manifest["preload"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(preload[0], "/usr/bin/python3.11", "{preload:?}");
    for lib in [
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libexpat.so",
        "libz.so",
    ] {
        assert!(
            preload.iter().any(|p| p.contains(lib)),
            "{lib} not in {preload:?}"
        );
    }
}

fn trimmed_with_bytecode_owned_by_its_source(a: &std::path::Path, comps: &[serde_json::Value]) {
    // Trimmed: no documentation, no iconv modules; the interpreter and its stdlib are there.
    let out = std::process::Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(a.join("rootfs.tar.zst"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.lines().any(|l| l.ends_with("usr/bin/python3.11")));
    assert!(list
        .lines()
        .any(|l| l.ends_with("usr/lib/python3.11/socket.py")));
    // Of the docs only each package's copyright file stays.
    let docs: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("usr/share/doc/") && !l.ends_with('/'))
        .collect();
    assert!(docs.iter().all(|l| l.ends_with("/copyright")), "{docs:?}");
    assert!(
        docs.iter()
            .any(|l| l.ends_with("usr/share/doc/libc6/copyright")),
        "{docs:?}"
    );
    assert!(!list.contains("/gconv/"));

    // Bytecode: every .py the image ships has its .pyc (compiled at build time), and the SBOM
    // gives each .pyc to the component of its source.
    let entries: std::collections::BTreeSet<String> = list
        .lines()
        .map(|l| format!("/{}", l.trim_start_matches("./")))
        .collect();
    let sources: Vec<&String> = entries.iter().filter(|p| p.ends_with(".py")).collect();
    assert!(sources.len() > 200, "{} .py files", sources.len());
    let owner = |path: &str| -> Option<String> {
        comps.iter().find_map(|c| {
            c["evidence"]["occurrences"]
                .as_array()?
                .iter()
                .any(|o| o["location"] == path)
                .then(|| c["bom-ref"].as_str().unwrap().to_owned())
        })
    };
    for py in &sources {
        let (dir, file) = py.rsplit_once('/').unwrap();
        let pyc = format!(
            "{dir}/__pycache__/{}.cpython-311.pyc",
            file.trim_end_matches(".py")
        );
        assert!(entries.contains(&pyc), "no bytecode for {py}");
        let source_owner = owner(py);
        assert!(source_owner.is_some(), "{py} belongs to no component");
        assert_eq!(
            owner(&pyc),
            source_owner,
            "{pyc} and {py} belong to different components"
        );
    }
    assert!(entries.contains("/srv/fn/__pycache__/app.cpython-311.pyc"));
}

fn boots_and_answers_in_256_and_128_mib(cache: &std::path::Path, a: &std::path::Path) {
    stratos(cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--invoke",
            "/?name=ci",
        ])
        .arg(a)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "Hello, ci! This is StratOS on Python.",
        ))
        .stdout(predicates::str::contains("stratos-phase runtime_ready"))
        // Nothing compiled at start: every import was a cached load (the handler's audit hook
        // counts compile() of source files).
        .stdout(predicates::str::contains(
            "python-fn: listening on 8080; modules compiled from source at start: 0",
        ))
        // The pool was ready when the init started: no warning.
        .stdout(predicates::str::contains("stratos-phase entropy_ready"))
        .stdout(predicates::str::contains("random pool").not());

    // The root is on a verified disk, not in RAM: the function runs in a 128 MiB VM (the size
    // of the published cold-start benchmark).
    stratos(cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--memory",
            "128",
            "--invoke",
            "/?name=small",
        ])
        .arg(a)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "Hello, small! This is StratOS on Python.",
        ))
        .stdout(predicates::str::contains("memory available"));
}

fn snapshot_restores_clones_with_their_own_random(
    cache: &std::path::Path,
    a: &std::path::Path,
    work: &std::path::Path,
) {
    // Snapshotted once (after a warm-up call), restored twice: the init tells the handler
    // (on-restore = SIGUSR1) before the host calls, the handler reseeds, and each clone's id
    // is its own.
    let snap = work.join("a.snap");
    stratos(cache)
        .arg("snapshot")
        .arg(a)
        .arg("--out")
        .arg(&snap)
        .args(["--accel", "tcg", "--memory", "256", "--warm", "/id", "-q"])
        .assert()
        .success();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = stratos_std(cache)
            .args(["boot", "--timeout", "120", "--invoke", "/id", "--snapshot"])
            .arg(&snap)
            .arg(a)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("stratos-init: restored from a snapshot; sent SIGUSR1 to the runtime"),
            "{stdout}"
        );
        assert!(stdout.contains("stratos-phase restored "), "{stdout}");
        assert!(
            stdout.contains("python-fn: restored from a snapshot; random reseeded"),
            "{stdout}"
        );
        let body = stdout
            .split("--- response: HTTP 200 from /id ---\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{stdout}"));
        let id = body.lines().next().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

/// The benchmark's baseline: the same rootfs on Debian's generic kernel also boots and answers.
#[test]
fn python_fn_stock_boots_and_answers() {
    require_tool("qemu-system-x86_64");
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/python-fn-stock.toml"))
        .arg("--out")
        .arg(&img)
        .args(["--offline", "-q"])
        .assert()
        .success();
    invoke_answers(
        &img,
        "/?name=stock",
        240,
        "Hello, stock! This is StratOS on Python.",
    );
}
