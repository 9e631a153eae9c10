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

#[test]
fn new_python_builds_and_answers() {
    new_builds_and_answers("python");
}

#[test]
fn new_node_builds_and_answers() {
    new_builds_and_answers("node");
}

#[test]
fn new_busybox_builds_and_answers() {
    new_builds_and_answers("busybox");
}
