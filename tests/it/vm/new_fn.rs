//! `stratos new` as a newcomer runs it: for each runtime, the directory it writes builds
//! offline (the examples' pinned packages, fetched by ci/setup; the examples' kernel, from the
//! shared cache) and answers its first invocation unchanged, following the commands it prints.

use crate::common::*;

/// `stratos new fn-RUNTIME`, then the printed commands: build (offline), boot --invoke.
fn new_builds_and_answers(runtime: &str) {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let name = format!("fn-{runtime}");
    stratos(&cache)
        .current_dir(work.path())
        .args(["new", &name, "--runtime", runtime])
        .assert()
        .success();
    let dir = work.path().join(&name);
    stratos(&cache)
        .current_dir(&dir)
        // --dev, as a local loop builds: only the distribution tar's compression differs (zstd
        // -3, not -19: seconds, not minutes, for node); the root that boots is the same.
        .args(["build", "profile.toml", "--offline", "--dev", "-q"])
        .assert()
        .success();
    let path = if runtime == "busybox" {
        format!("/cgi-bin/{name}")
    } else {
        "/".to_owned()
    };
    let run = stratos_std(&cache)
        .current_dir(&dir)
        .args([
            "boot",
            &format!("out/{name}"),
            "--accel",
            "tcg",
            "--timeout",
            "240",
        ])
        .args(["--invoke", &path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "boot failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("--- response: HTTP 200 from {path} ---")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Hello, world! This is {name} on StratOS.")),
        "{stdout}"
    );
    assert!(
        processes_mentioning(dir.to_str().unwrap()).is_empty(),
        "a QEMU process survived"
    );
}

/// The README's "Getting started" block, run literally (python: the flagship's runtime) with
/// the `stratos` these tests were built with first on the PATH, the shared cache (its kernel
/// and packages) and real QEMU: from `stratos new` to the function's answer.
#[test]
fn the_readme_getting_started_runs_as_printed() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    require_init();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = "Getting started: your own function";
    let blocks = crate::walkthrough::sh_blocks(&readme, Some(section));
    assert_eq!(blocks.len(), 1, "README.md, {section}: one ```sh block");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("getting-started.sh"), &blocks[0]).unwrap();
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-x", "getting-started.sh"])
        .current_dir(work.path())
        .env("PATH", path)
        .env("STRATOS_CACHE", shared_cache())
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README.md, {section}: failed\nstdout:\n{stdout}\nstderr (the last command shown with +):\n{stderr}"
    );
    assert!(
        stdout.contains("Hello, world! This is myfn on StratOS."),
        "the answer the README promises: {stdout}"
    );
    assert!(
        processes_mentioning(work.path().to_str().unwrap()).is_empty(),
        "a QEMU process survived"
    );
}

#[test]
fn new_node_builds_and_answers() {
    new_builds_and_answers("node");
}

#[test]
fn new_go_builds_and_answers() {
    new_builds_and_answers("go");
}

#[test]
fn new_busybox_builds_and_answers() {
    new_builds_and_answers("busybox");
}
