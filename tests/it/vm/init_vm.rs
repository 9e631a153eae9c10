//! The PID 1 under QEMU: exit statuses, signals, orphans, zram, read-only root, cgroup limits,
//! sysctl and phase markers, on the hello image's kernel and busybox.

use std::path::{Path, PathBuf};

use crate::common::*;

fn prereqs() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
}

/// Builds a hello variant whose runtime is `argv` (as root, with the test scripts overlaid).
fn build_variant(work: &Path, name: &str, argv: &str) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = root().join("tests/fixtures/init-tests");
    let profile = copy_profile("hello", &dir, |t| {
        let start = t.find("argv = [").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        let mut t = format!("{}argv = {argv}{}", &t[..start], &t[end..]);
        t = t.replace("uid = 1000\ngid = 1000\n", "");
        t = t.replace("readiness = { tcp = 8080 }\n", "");
        t = t.replace("restart = \"on-failure\"\n", "");
        t.push_str(&format!(
            "\n[[overlay]]\npath = \"{}\"\n",
            fixtures.display()
        ));
        t
    });
    let out = dir.join("img");
    stratos(&shared_cache())
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    out
}

struct Booted {
    code: Option<i32>,
    console: String,
    stderr: String,
}

fn boot(img: &Path) -> Booted {
    let out = stratos_std(&shared_cache())
        .args(["boot", "--accel", "tcg", "--timeout", "120"])
        .arg(img)
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!console.contains("Attempted to kill init"), "{console}");
    assert!(
        processes_mentioning(img.to_str().unwrap()).is_empty(),
        "a QEMU survived"
    );
    Booted {
        code: out.status.code(),
        console,
        stderr,
    }
}

#[test]
fn exit_statuses_and_signals_are_reported_exactly() {
    prereqs();
    let work = tempfile::tempdir().unwrap();
    // Two end-to-end cases, an exit status and a signal: the whole matrix (0, 1, 3, 255,
    // SIGTERM, SIGKILL, a runtime that cannot be executed) is the seam's, word for word
    // (init/src/tests: the fake `Sys`), and the host's reading of an ending is
    // tests/hostile_guest.rs's.
    for (name, argv, line, code) in [
        (
            "exit3",
            r#"["/bin/busybox", "sh", "-c", "exit 3"]"#,
            "stratos-init: runtime exited with status 3",
            3,
        ),
        (
            "kill",
            r#"["/bin/busybox", "sh", "-c", "kill -KILL $$"]"#,
            "stratos-init: runtime killed by signal 9 (SIGKILL)",
            137,
        ),
    ] {
        let img = build_variant(work.path(), name, argv);
        let b = boot(&img);
        assert!(
            b.console.contains(line),
            "{name}: expected {line:?} in:\n{}",
            b.console
        );
        assert_eq!(
            b.console.matches("stratos-init: runtime ").count()
                + b.console.matches("stratos-init: fatal:").count(),
            1 + b.console.matches("stratos-init: runtime memory").count(),
            "{name}: more than one ending reported:\n{}",
            b.console
        );
        assert!(
            b.console.contains("stratos-init: powering off"),
            "{name}: no clean power-off:\n{}",
            b.console
        );
        // The guest's status is reported, never passed through as stratos's own exit code
        // (whose 1, 2 and 3 mean something else): anything but 0 is a failed check, 1.
        if code == 0 {
            assert_eq!(b.code, Some(0), "{name}: {}", b.stderr);
        } else {
            assert_eq!(b.code, Some(1), "{name}: boot exit code; {}", b.stderr);
            let said = format!("the guest runtime ended with exit code {code}");
            assert!(
                b.stderr.contains(&said),
                "{name}: expected {said:?} in {}",
                b.stderr
            );
        }
    }
}

/// A runtime that is not in the image never reaches the init: the build refuses it (the init's
/// own fatal path is the seam's: init/src/tests).
#[test]
fn a_missing_runtime_is_a_build_error() {
    prereqs();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("missing");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = copy_profile("hello", &dir, |t| {
        t.replace(
            r#"argv = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/www"]"#,
            r#"argv = ["/bin/no-such-runtime"]"#,
        )
    });
    stratos(&shared_cache())
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(dir.join("img"))
        .arg("-q")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "the runtime: /bin/no-such-runtime (needed by the profile) is not a file in the image",
        ));
    assert!(!dir.join("img").exists());
}

#[test]
fn orphans_zram_readonly_root_cgroup_and_phases() {
    prereqs();
    let work = tempfile::tempdir().unwrap();
    let img = build_variant(work.path(), "matrix", r#"["/tests/matrix.sh"]"#);
    let b = boot(&img);
    let c = &b.console;
    assert_eq!(b.code, Some(0), "{c}");
    for want in [
        "check: zombies=0",
        "check: zram=active",
        "check: root=readonly",
        "Read-only file system",
        "check: tmp=writable",
        "check: cgroup=0::/runtime",
        "check: memory.max=134217728",
        "check: pids.max=256",
        "check: swappiness=100",
        "check: hostname=hello",
    ] {
        assert!(c.contains(want), "missing {want:?} in:\n{c}");
    }
    // The init echoes its phases on the console for people (the harness reads them from the
    // control channel): the echo is checked like the real thing.
    let echoed: Vec<stratos::boot::vm::console::Phase> = c
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("stratos-phase ")?.split_whitespace();
            Some(stratos::boot::vm::console::Phase {
                name: w.next()?.to_owned(),
                ns: w.next()?.parse().ok()?,
            })
        })
        .collect();
    let phases = stratos::boot::vm::console::check_phases(&echoed).unwrap();
    // Every boot phase in order; entropy_ready (reported whenever the pool is ready) too.
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| !stratos_wire::ASYNC_PHASES.contains(n))
        .collect();
    assert_eq!(names, stratos_wire::PHASES, "{c}");
    assert!(phases.iter().any(|p| p.name == "entropy_ready"), "{c}");
    assert!(c.contains("stratos-init: memory peak "), "{c}");
}

#[test]
fn sigterm_to_pid1_is_forwarded_once_and_waited_for() {
    prereqs();
    let work = tempfile::tempdir().unwrap();
    let img = build_variant(work.path(), "sigterm", r#"["/tests/signal-pid1.sh"]"#);
    let b = boot(&img);
    let c = &b.console;
    assert!(
        c.contains("stratos-init: received SIGTERM; forwarded to the runtime, stopping"),
        "{c}"
    );
    assert!(c.contains("check: runtime got TERM (1)"), "{c}");
    assert!(c.contains("check: TERM count 1"), "{c}");
    assert!(
        c.contains("stratos-init: runtime exited with status 42"),
        "{c}"
    );
    assert_eq!(b.code, Some(1), "{}", b.stderr);
    assert!(
        b.stderr
            .contains("the guest runtime ended with exit code 42"),
        "{}",
        b.stderr
    );
}

/// An image without `[network]` boots and its runtime becomes ready, but nothing from the host
/// can reach it: `--invoke` fails as soon as the init says it set up no network, naming the
/// missing section, instead of waiting out the timeout.
#[test]
fn invoking_an_image_without_network_fails_at_once_naming_the_section() {
    prereqs();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("no-network");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = copy_profile("hello", &dir, |t| {
        let at = t.find("[network]").unwrap();
        t[..at].to_owned()
    });
    let img = dir.join("img");
    stratos(&shared_cache())
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&img)
        .arg("-q")
        .assert()
        .success();
    let out = stratos_std(&shared_cache())
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "300",
            "--invoke",
            "/",
        ])
        .arg(&img)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("its profile has no [network] section"),
        "{stderr}"
    );
    assert!(!stderr.contains("timed out"), "{stderr}");
    assert!(
        processes_mentioning(img.to_str().unwrap()).is_empty(),
        "a QEMU survived"
    );
}
