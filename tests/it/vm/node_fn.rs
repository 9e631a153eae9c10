//! The Node.js node: profiles/node-fn.toml builds offline from its lock (ci/setup fetched the
//! pinned .debs), bit-identical twice, boots in a 128 MiB VM and answers; its SBOM names
//! nodejs, libnode108 and libicu72 with versions and licences; the seccomp baseline refuses
//! starting a process (child_process) and the function keeps serving; its npm dependency
//! (escape-html, from package-lock.json) is installed, in the SBOM, and used.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;

fn get(port: u16, path: &str, deadline: Instant) -> String {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        match stratos::http::get(addr, path, Duration::from_secs(20)) {
            Ok(r) if r.status == 200 => return String::from_utf8_lossy(&r.body).into_owned(),
            Ok(r) => panic!("{path}: HTTP {}", r.status),
            Err(e) => {
                assert!(Instant::now() < deadline, "{path}: no answer: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

// One scenario over one boot: every step uses the same running VM (booting once per step
// would multiply the VM tier's time), so it stays one function, read top to bottom.
#[allow(clippy::too_many_lines)]
#[test]
fn node_fn_builds_offline_boots_at_128_mib_and_refuses_processes() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let a = image("node-fn", work.path());

    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    for pkg in ["nodejs", "libnode108", "libicu72"] {
        let c = comps
            .iter()
            .find(|c| c["name"] == pkg)
            .unwrap_or_else(|| panic!("{pkg} missing from the SBOM"));
        assert!(
            c["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{pkg}: {c}"
        );
        let licence = c["licenses"][0]["expression"].as_str().unwrap_or("");
        assert!(licence.contains("MIT"), "{pkg}: licence {licence:?}");
        assert!(
            c["purl"]
                .as_str()
                .unwrap()
                .starts_with(&format!("pkg:deb/debian/{pkg}@")),
            "{c}"
        );
    }
    // The npm dependency, from package-lock.json: its own component, its files claimed.
    let esc = comps
        .iter()
        .find(|c| c["purl"] == "pkg:npm/escape-html@1.0.3")
        .expect("escape-html in the SBOM");
    assert_eq!(esc["licenses"][0]["expression"], "MIT");
    assert!(
        esc["evidence"]["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["location"] == "/srv/fn/node_modules/escape-html/index.js"),
        "{esc}"
    );
    stratos(&cache)
        .args(["inspect", "--orphans"])
        .arg(&a)
        .assert()
        .success()
        .stderr(predicates::str::contains("no orphans"));
    // Debian's build, not a newer one from another apt source: the lock says where from.
    let lock = std::fs::read_to_string(root().join("profiles/node-fn.lock")).unwrap();
    assert!(lock.contains("version = \"18.20.4"), "{lock}");
    assert!(
        lock.matches("origin = \"Debian\"").count() == lock.matches("[[package]]").count(),
        "every package of node-fn.lock comes from Debian"
    );

    // Trimmed: no TypeScript declarations, no iconv modules; node, its library and the
    // JavaScript it loads at start are there.
    let out = std::process::Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(a.join("rootfs.tar.zst"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for want in [
        "usr/bin/node",
        "usr/lib/x86_64-linux-gnu/libnode.so.108",
        "usr/lib/x86_64-linux-gnu/libicudata.so.72.1",
        "usr/share/nodejs/cjs-module-lexer/lexer.js",
        "srv/fn/handler.js",
    ] {
        assert!(list.lines().any(|l| l.ends_with(want)), "{want} missing");
    }
    assert!(!list.contains("/gconv/"));
    assert!(!list.lines().any(|l| l.ends_with(".d.ts")));

    // A 128 MiB VM (the root is on a verified disk, not in RAM): it answers; a handler path
    // that starts a process is refused by the seccomp baseline, reported, and the function
    // keeps serving.
    let port = stratos::boot::vm::free_port().unwrap();
    let log = work.path().join("console.log");
    let vm = Running(
        stratos_std(&cache)
            .args([
                "boot",
                "--accel",
                "tcg",
                "--timeout",
                "300",
                "--memory",
                "128",
            ])
            .arg("--forward")
            .arg(format!("{port}:8080"))
            .arg(&a)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    assert_eq!(
        get(port, "/?name=ci", deadline),
        "Hello, ci! This is StratOS on Node.js.\n"
    );
    assert_eq!(get(port, "/spawn", deadline), "spawn refused: EPERM\n");
    // The name goes through escape-html, the npm dependency the build put in node_modules.
    assert_eq!(
        get(port, "/?name=%3Cafter%3E", deadline),
        "Hello, &lt;after&gt;! This is StratOS on Node.js.\n"
    );
    // The console shows it, and the runtime is still the first one (no restart).
    let until = Instant::now() + Duration::from_secs(20);
    let console = loop {
        let c = std::fs::read_to_string(&log).unwrap();
        if c.contains("node-fn: starting a process was refused: EPERM") || Instant::now() > until {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        console.contains("node-fn: starting a process was refused: EPERM"),
        "{console}"
    );
    assert!(console.contains("stratos-phase runtime_ready"), "{console}");
    assert!(!console.contains("stratos-init: restart"), "{console}");
    assert!(console.contains("memory available"), "{console}");
    // The runtime runs in its cgroup (its memory peak is reported from there), and it was
    // ready when it said so, not before.
    assert!(
        console.contains("stratos-init: memory peak")
            && console.contains("in the runtime's cgroup"),
        "{console}"
    );
    let listening = console.find("node-fn: listening on").unwrap();
    let ready = console.find("stratos-phase runtime_ready").unwrap();
    assert!(listening < ready, "{console}");
    drop(vm);
}

/// The benchmark's baseline: the same rootfs on Debian's generic kernel also boots and answers.
#[test]
fn node_fn_stock_boots_and_answers() {
    require_tool("qemu-system-x86_64");
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    stratos(&cache)
        .arg("build")
        .arg(root().join("profiles/node-fn-stock.toml"))
        .arg("--out")
        .arg(&img)
        .args(["--offline", "-q"])
        .assert()
        .success();
    invoke_answers(
        &img,
        "/?name=stock",
        300,
        "Hello, stock! This is StratOS on Node.js.",
    );
}

/// Slow tier (`./ci/test --slow`): two offline builds of node-fn are bit-identical. Per
/// submission, python_fn.rs proves reproducibility on the flagship; this one is the same proof
/// on a second large tree.
#[test]
#[ignore = "slow tier: ./ci/test --slow"]
fn node_fn_builds_reproducibly() {
    require_kernel_source();
    let work = tempfile::tempdir().unwrap();
    build_twice_offline(&shared_cache(), "node-fn", work.path());
}
