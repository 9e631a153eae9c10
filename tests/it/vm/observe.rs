//! `[observe]`: the init counts the runtime's system calls with eBPF (python-fn observes),
//! boot-test records and gates on them, `seccomp suggest` turns them into a baseline that
//! boots python-fn enforced; a kernel that cannot observe is a build error.

use crate::common::*;

/// One python-fn build; one boot test with a syscall objective that cannot hold and one that
/// can; the policy suggested from it, built into python-fn and booted enforced.
// One scenario over one boot: every step uses the same running VM (booting once per step
// would multiply the VM tier's time), so it stays one function, read top to bottom.
#[allow(clippy::too_many_lines)]
#[test]
fn python_fn_counts_its_syscalls_gates_on_them_and_suggests_a_baseline_that_boots() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = image("python-fn", work.path());

    // Objectives on the counts: `syscalls.total<=1` cannot hold (exit 1, named), a generous
    // cold-start one holds.
    let json = work.path().join("boot.json");
    let out = stratos_std(&cache)
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "2",
            "--invocations",
            "3",
        ])
        .args([
            "--slo",
            "syscalls.total<=1",
            "--slo",
            "syscalls.cold_start<=1000000",
        ])
        .arg("--json-out")
        .arg(&json)
        .arg(&img)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("FAILED: syscalls.total<=1"), "{stderr}");
    assert!(stdout.contains("FAIL syscalls.total<=1"), "{stdout}");
    assert!(stdout.contains("syscalls.cold_start"), "{stdout}");

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(schema_errors(&v), Vec::<String>::new());
    let verdicts = v["objectives"].as_array().unwrap();
    assert_eq!(verdicts[0]["objective"], "syscalls.total<=1");
    assert_eq!(verdicts[0]["passed"], false);
    assert_eq!(verdicts[1]["objective"], "syscalls.cold_start<=1000000");
    assert_eq!(verdicts[1]["passed"], true);
    let run = &v["runs_detail"][0];
    assert_eq!(run["ok"], true, "{run}");
    let total = run["syscalls"]["total"].as_object().unwrap();
    let n = |name: &str| total.get(name).and_then(|c| c.as_u64()).unwrap_or(0);
    // What a request costs the handler: accept, read the request, write the answer.
    assert!(n("accept4") >= 3, "{total:?}");
    assert!(n("recvfrom") + n("read") >= 3, "{total:?}");
    assert!(n("sendto") + n("write") >= 3, "{total:?}");
    // The init's own calls are not counted: it waits for signals, reaps, mounts, loads the
    // programs; the handler does none of these.
    // Nor what its child does before exec (it joins the cgroup last; its seccomp() there is
    // taken off the count).
    for init_only in [
        "rt_sigtimedwait",
        "bpf",
        "mount",
        "swapon",
        "sethostname",
        "setsid",
        "close_range",
        "seccomp",
    ] {
        assert_eq!(n(init_only), 0, "{init_only} counted: {total:?}");
    }
    let cold = run["syscalls"]["cold_start"].as_object().unwrap();
    let sum = |m: &serde_json::Map<String, serde_json::Value>| {
        m.values().map(|c| c.as_u64().unwrap()).sum::<u64>()
    };
    assert!(sum(cold) > 0 && sum(cold) < sum(total), "{cold:?}");
    assert_eq!(
        run["metrics"]["syscalls.total"].as_f64().unwrap() as u64,
        sum(total)
    );
    // With latency = true, the calls are timed too.
    assert!(
        run["syscalls"]["latency_log2_ns"]["accept4"].is_array(),
        "{run}"
    );

    // The baseline those runs call for: valid, and python-fn boots and answers under it,
    // enforced.
    let suggested = work.path().join("suggested.json");
    stratos(&cache)
        .args(["seccomp", "suggest", "--from"])
        .arg(&json)
        .arg("--base")
        .arg(root().join("profiles/seccomp/python.json"))
        .arg("--out")
        .arg(&suggested)
        .assert()
        .success()
        .stderr(predicates::str::contains("profiles/seccomp/python.json ->"))
        .stderr(predicates::str::contains("closes ("));
    stratos(&cache)
        .args(["seccomp", "check"])
        .arg(&suggested)
        .assert()
        .success()
        .stdout(predicates::str::contains("valid; default action"));
    let text = std::fs::read_to_string(&suggested).unwrap();
    assert!(text.contains("\"accept4\""), "{text}");
    assert!(text.contains("2 boot-test run(s) of python-fn"), "{text}");
    for never in ["\"mount\"", "\"seccomp\"", "\"setsid\""] {
        assert!(!text.contains(never), "{never}: {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let profile = copy_profile("python-fn", dir.path(), |t| {
        t.replace(
            &format!(
                "policy = \"{}/profiles/seccomp/python.json\"",
                root().display()
            ),
            &format!("policy = \"{}\"", suggested.display()),
        )
    });
    assert!(std::fs::read_to_string(&profile)
        .unwrap()
        .contains("suggested.json"));
    let enforced = work.path().join("python-fn-suggested");
    stratos(&cache)
        .args(["build", "--offline", "-q"])
        .arg(&profile)
        .arg("--out")
        .arg(&enforced)
        .assert()
        .success();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(enforced.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seccomp"]["mode"], "enforce", "{m}");
    stratos(&cache)
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--invocations",
            "3",
        ])
        .args(["--slo", "syscalls.total<=1000000"])
        .arg(&enforced)
        .assert()
        .success()
        .stdout(predicates::str::contains("PASS syscalls.total<=1000000"));
}

/// A kernel that cannot run the programs is a build error naming what is missing, not a boot
/// that silently counts nothing.
#[test]
fn observe_on_a_kernel_without_bpf_is_a_build_error() {
    require_init();
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let text = std::fs::read_to_string(f.profile()).unwrap();
    // Builds the fixture with `profile` as its profile: it must fail, writing nothing.
    let refused = |profile: String| {
        f.write("profile.toml", profile.as_bytes());
        let out = stratos(cache.path())
            .arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(f.path("out"))
            .assert()
            .failure();
        assert!(!f.path("out").exists());
        out
    };
    // A prebuilt kernel without its config: nothing to check it against.
    refused(format!("{text}\n[observe]\nsyscalls = true\n"))
        .stderr(predicates::str::contains(
            "[observe] needs a kernel with eBPF support",
        ))
        .stderr(predicates::str::contains("config ="));
    // …and with one that lacks BPF.
    f.write(
        "kernel/config",
        b"CONFIG_CGROUPS=y\nCONFIG_VIRTIO_CONSOLE=y\n# CONFIG_BPF_SYSCALL is not set\n",
    );
    refused(
        format!("{text}\n[observe]\nsyscalls = true\nlatency = true\n").replace(
            "prebuilt = \"kernel/bzImage\"",
            "prebuilt = \"kernel/bzImage\"\nconfig = \"kernel/config\"",
        ),
    )
    .stderr(predicates::str::contains(
        "the kernel lacks CONFIG_BPF_SYSCALL=y (the bpf() system call), CONFIG_BPF_EVENTS=y",
    ))
    .stderr(predicates::str::contains(
        "kernel-configs/observability.config",
    ));
    // latency without syscalls is a profile error at its key.
    refused(format!("{text}\n[observe]\nlatency = true\n"))
        .stderr(predicates::str::contains("observe.latency"))
        .stderr(predicates::str::contains("add syscalls = true"));
}

/// The init reports everything the harness decides on over a virtio-serial port: a kernel whose
/// config has no virtio console (built in, or a module the image loads) is a build error naming
/// the fix, not an image whose every boot times out.
#[test]
fn a_kernel_without_a_virtio_console_is_a_build_error() {
    require_init();
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let text = std::fs::read_to_string(f.profile()).unwrap().replace(
        "prebuilt = \"kernel/bzImage\"",
        "prebuilt = \"kernel/bzImage\"\nconfig = \"kernel/config\"",
    );
    f.write("profile.toml", text.as_bytes());
    let build = || {
        let mut c = stratos(cache.path());
        c.arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(f.path("out"));
        c
    };
    f.write("kernel/config", b"# CONFIG_VIRTIO_CONSOLE is not set\n");
    build()
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no CONFIG_VIRTIO_CONSOLE"))
        .stderr(predicates::str::contains("kernel-configs/virtio.config"));
    assert!(!f.path("out").exists());
    f.write("kernel/config", b"CONFIG_VIRTIO_CONSOLE=m\n");
    build().assert().code(2).stderr(predicates::str::contains(
        "add \"virtio_console\" to [kernel] modules",
    ));
    f.write("kernel/config", b"CONFIG_VIRTIO_CONSOLE=y\n");
    build().assert().success();
}
