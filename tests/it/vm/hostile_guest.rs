//! The function is untrusted (issue 24): hostile runtimes, each named after its attack, run as
//! uid 1000 on the hello kernel under QEMU. What they print never decides a gate (phases,
//! readiness, metrics and how the runtime ended come over the init's control channel), never
//! reaches the operator's terminal raw, and never breaks a deadline or the host's memory; a
//! runtime that dies after answering fails the run. Every image is built once for the binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;

/// The attacks' scripts and CGI programs (tests/fixtures/hostile-guest), laid over hello.
fn fixtures() -> PathBuf {
    root().join("tests/fixtures/hostile-guest")
}

struct Images {
    dir: tempfile::TempDir,
    key: PathBuf,
    /// The 1 MiB line `long-line` prints.
    line: Vec<u8>,
}

impl Images {
    fn get(&self, attack: &str) -> PathBuf {
        self.dir.path().join(attack).join("img")
    }
}

/// The attacks that are images of their own: (name, observes, restarts).
const ATTACKS: &[(&str, bool, bool)] = &[
    ("forged-phase", false, true),
    ("hidden-phase", false, true),
    ("forged-metrics", true, true),
    ("forged-exit", false, false),
    ("die-after-answer", false, true),
    ("newline-flood", false, true),
    ("long-line", false, true),
    ("escapes", false, true),
    ("plain", false, true),
];

fn images() -> &'static Images {
    static I: OnceLock<Images> = OnceLock::new();
    I.get_or_init(|| {
        require_tool("qemu-system-x86_64");
        require_kernel_source();
        let dir = tempfile::tempdir().unwrap();
        let cache = shared_cache();
        let prefix = dir.path().join("release");
        stratos(&cache)
            .args(["keygen", "--out"])
            .arg(&prefix)
            .assert()
            .success();
        let key = prefix.with_extension("key");
        // The numbered line: "00000000 00000001 ..." up to 1 MiB, with a few bytes that are
        // not text at the end, then its newline.
        let mut line = Vec::new();
        let mut n = 0u32;
        while line.len() < 1 << 20 {
            line.extend(format!("{n:08} ").as_bytes());
            n += 1;
        }
        line.extend(b"\x01\xff\\end");
        let extra = dir.path().join("line-overlay");
        std::fs::create_dir_all(extra.join("srv")).unwrap();
        let mut file = line.clone();
        file.push(b'\n');
        std::fs::write(extra.join("srv/line.txt"), &file).unwrap();
        for &(name, observes, restarts) in ATTACKS {
            build(dir.path(), &key, &extra, name, observes, restarts);
        }
        Images { dir, key, line }
    })
}

/// A hello variant whose runtime is `attacks/NAME.sh` (uid 1000, readiness on port 8080),
/// without hello's seccomp baseline (the shell scripts make calls httpd does not), signed.
fn build(work: &Path, key: &Path, extra: &Path, name: &str, observes: bool, restarts: bool) {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let profile = copy_profile("hello", &dir, |t| {
        let start = t.find("argv = [").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        let argv = if name == "plain" {
            t[start..end].to_owned()
        } else {
            format!("argv = [\"/bin/busybox\", \"sh\", \"/srv/attacks/{name}.sh\"]")
        };
        let mut t = format!("{}{argv}{}", &t[..start], &t[end..]);
        let s = t.find("[seccomp]").unwrap();
        let e = s + t[s..].find("\n\n").unwrap();
        t.replace_range(s..e, "");
        if !restarts {
            t = t.replace("restart = \"on-failure\"\n", "restart = \"never\"\n");
        }
        if observes {
            t.push_str("\n[observe]\nsyscalls = true\n");
        }
        t.push_str(&format!(
            "\n[[overlay]]\npath = \"{}\"\n\n[[overlay]]\npath = \"{}\"\n",
            fixtures().display(),
            extra.display()
        ));
        t
    });
    stratos(&shared_cache())
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(dir.join("img"))
        .arg("--image-key")
        .arg(key)
        .args(["--offline", "-q"])
        .assert()
        .success();
}

/// `stratos boot-test` of an attack's image, one run; its exit code, stdout+stderr and JSON.
fn boot_test(attack: &str, extra: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let img = images().get(attack);
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("r.json");
    let out = stratos_std(&shared_cache())
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--timeout",
            "120",
        ])
        .args(extra)
        .arg("--json-out")
        .arg(&json)
        .arg(&img)
        .output()
        .unwrap();
    no_qemu_left(&img);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap_or_else(|e| {
        panic!("{e}: {text}");
    });
    (out.status.code(), text, v)
}

fn no_qemu_left(img: &Path) {
    assert!(
        processes_mentioning(img.to_str().unwrap()).is_empty(),
        "a QEMU survived"
    );
}

fn median(v: &serde_json::Value, metric: &str) -> f64 {
    v["metrics"][metric]["p50"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {metric} in {}", v["metrics"]))
}

/// boot-test of a runtime that claims readiness on its stdout and listens only after 3 s, with
/// `--slo runtime_ready.p95=2s`: the run is healthy, the real readiness is measured, the SLO
/// fails. Returns the command's output.
fn real_readiness_fails_the_slo(attack: &str) -> String {
    let (code, text, v) = boot_test(
        attack,
        &[
            "--invocations",
            "1",
            "--invoke",
            "/cgi-bin/hello",
            "--slo",
            "runtime_ready.p95=2s",
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(v["runs_detail"][0]["ok"], true, "{v}");
    // The real readiness: after the script's 3 s sleep.
    assert!(median(&v, "runtime_ready") >= 3000.0, "{}", v["metrics"]);
    assert_eq!(v["objectives"][0]["passed"], false, "{v}");
    text
}

#[test]
fn forged_phase_does_not_pass_a_runtime_ready_slo() {
    let text = real_readiness_fails_the_slo("forged-phase");
    assert!(text.contains("runtime_ready.p95"), "{text}");
}

#[test]
fn forged_phase_hiding_the_real_one_behind_an_unterminated_line_is_ignored() {
    real_readiness_fails_the_slo("hidden-phase");
}

#[test]
fn forged_metrics_neither_pass_a_syscall_slo_nor_reach_the_counts() {
    let (code, text, v) = boot_test(
        "forged-metrics",
        &[
            "--invocations",
            "2",
            "--invoke",
            "/cgi-bin/hello",
            "--slo",
            "syscalls.total<=10",
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    let run = &v["runs_detail"][0];
    assert_eq!(run["ok"], true, "{v}");
    let total = &run["syscalls"]["total"];
    assert!(total.is_object(), "{run}");
    for forged in ["mount", "unshare"] {
        assert!(total.get(forged).is_none(), "{forged} in {total}");
    }
    assert!(median(&v, "syscalls.total") > 10.0, "{}", v["metrics"]);
    assert_eq!(v["objectives"][0]["passed"], false, "{v}");
    // And a suggested allow-list from this result opens neither.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    std::fs::write(&json, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = stratos_std(&shared_cache())
        .args(["seccomp", "suggest", "--from"])
        .arg(&json)
        .output()
        .unwrap();
    let policy = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(policy.contains("SCMP_ACT_ALLOW"), "{policy}");
    for forged in ["\"mount\"", "\"unshare\""] {
        assert!(!policy.contains(forged), "{forged} in {policy}");
    }
}

#[test]
fn forged_exit_status_does_not_make_boot_exit_0() {
    let img = images().get("forged-exit");
    let out = stratos_std(&shared_cache())
        .args(["boot", "--accel", "tcg", "--timeout", "120"])
        .arg(&img)
        .output()
        .unwrap();
    no_qemu_left(&img);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
}

#[test]
fn die_after_answer_fails_boot_test_naming_the_kill() {
    let (code, text, v) = boot_test(
        "die-after-answer",
        &["--invocations", "2", "--invoke", "/cgi-bin/die"],
    );
    assert_eq!(code, Some(1), "{text}");
    let failure = v["runs_detail"][0]["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("killed by signal 9") || failure.contains("exited with status 137"),
        "{failure}"
    );
    assert!(text.contains("FAIL"), "{text}");
}

/// A release repository with `attack`'s image published on `stable`, and a node's state
/// directory that fetched (staged) it.
fn staged_node(attack: &str) -> (tempfile::TempDir, PathBuf) {
    let i = images();
    let site = tempfile::tempdir().unwrap();
    let repo = site.path().join("releases");
    let state = site.path().join("state");
    let cache = shared_cache();
    stage_on_node(&cache, &i.get(attack), &i.key, &repo, &state);
    (site, state)
}

#[test]
fn die_after_answer_is_not_put_in_service_by_update_apply() {
    let (_site, state) = staged_node("die-after-answer");
    let cache = shared_cache();
    let out = stratos_std(&cache)
        .args(["update", "apply", "--state"])
        .arg(&state)
        .args([
            "--runs",
            "1",
            "--invocations",
            "2",
            "--invoke",
            "/cgi-bin/die",
            "--accel",
            "tcg",
            "--timeout",
            "120",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("killed by signal 9"), "{text}");
    let status = stratos_std(&cache)
        .args(["update", "status", "--json", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(v["current"].is_null(), "{v}");
}

#[test]
fn newline_flood_does_not_hold_the_timeout_or_the_hosts_memory() {
    let img = images().get("newline-flood");
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("r.json");
    let started = Instant::now();
    let mut child = stratos_std(&shared_cache())
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--invocations",
            "1",
        ])
        .args(["--timeout", "20", "--json-out"])
        .arg(&json)
        .arg(&img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A watchdog, not a measurement: a harness that misses its deadline by minutes is stuck.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(200) {
            let _ = child.kill();
            panic!("boot-test --timeout 20 was still running after 200 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    no_qemu_left(&img);
    assert_eq!(status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let failure = v["runs_detail"][0]["failure"].as_str().unwrap();
    assert!(failure.contains("timed out after"), "{failure}");
    // The kept console is bounded (its two ends), whatever the guest printed.
    if let Some(log) = v["logs"].get(0).and_then(|l| l.as_str()) {
        let size = std::fs::metadata(log).unwrap().len();
        assert!(size < 8 << 20, "{size} bytes of console kept");
    }
}

/// The runtime's output as relayed: the `fn> `/`fn+ ` lines of a console, joined back.
fn relayed(console: &str) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for l in console.lines() {
        if let Some(rest) = l.strip_prefix("fn> ") {
            lines.push(stratos_wire::control::unescape(rest).expect("escaped"));
        } else if let Some(rest) = l.strip_prefix("fn+ ") {
            lines
                .last_mut()
                .expect("a continuation after a line")
                .extend(stratos_wire::control::unescape(rest).expect("escaped"));
        }
    }
    lines
}

#[test]
fn a_one_mib_line_of_numbered_bytes_arrives_whole() {
    let i = images();
    let img = i.get("long-line");
    let out = stratos_std(&shared_cache())
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "120",
            "--invoke",
            "/cgi-bin/hello",
        ])
        .arg(&img)
        .output()
        .unwrap();
    no_qemu_left(&img);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = relayed(&stdout);
    let got = lines
        .iter()
        .find(|l| l.starts_with(b"00000000 "))
        .expect("the long line");
    assert_eq!(got.len(), i.line.len());
    if got != &i.line {
        let at = got.iter().zip(&i.line).position(|(a, b)| a != b).unwrap();
        panic!(
            "the line differs at byte {at}: {:?}",
            String::from_utf8_lossy(&got[at.saturating_sub(20)..(at + 20).min(got.len())])
        );
    }
}

#[test]
fn escape_sequences_never_reach_the_operator_raw() {
    let img = images().get("escapes");
    let out = stratos_std(&shared_cache())
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "120",
            "--invoke",
            "/cgi-bin/escape",
        ])
        .arg(&img)
        .output()
        .unwrap();
    no_qemu_left(&img);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (_, text, _) = boot_test(
        "escapes",
        &["--invocations", "1", "--invoke", "/cgi-bin/escape"],
    );
    for (what, bytes) in [
        ("boot stdout", out.stdout.as_slice()),
        ("boot stderr", out.stderr.as_slice()),
        ("boot-test output", text.as_bytes()),
    ] {
        for bad in [
            &b"\x1b"[..],
            b"\x07",
            "\u{9b}".as_bytes(),
            "\u{202e}".as_bytes(),
        ] {
            assert!(
                !bytes.windows(bad.len()).any(|w| w == bad),
                "{what} holds {bad:?} raw: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Shown, escaped: on the console (the runtime's output) and in the answer.
    assert!(
        stdout.contains("fn> \\x1b[2J\\x1b]0;owned\\x07"),
        "{stdout}"
    );
    assert!(stdout.contains("answer \\x1b[2J"), "{stdout}");
}

/// Starts `stratos ARGS`, waits until it has a QEMU of its own, kills it with SIGKILL and
/// checks that its QEMU is gone (by pid) soon after.
fn sigkill_leaves_no_qemu(args: &[&str], img: &Path) {
    let mut child = stratos_std(&shared_cache())
        .args(args)
        .arg(img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let me = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let qemu = loop {
        if let Some(q) = qemu_children(me).first() {
            break *q;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "stratos {args:?} ended before it started QEMU"
        );
        assert!(Instant::now() < deadline, "no QEMU from stratos {args:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let QEMU get going (the guest boots), then kill stratos outright.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{qemu}")).exists() && !is_zombie(qemu) {
        assert!(
            Instant::now() < deadline,
            "QEMU {qemu} outlived stratos {args:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The QEMU processes whose parent is `pid`.
fn qemu_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u32>().ok());
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(pid) && String::from_utf8_lossy(&cmd).contains("qemu-system") {
            out.push(p);
        }
    }
    out
}

#[test]
fn sigkill_of_boot_boot_test_and_snapshot_leaves_no_qemu_and_the_next_run_works() {
    let img = images().get("plain");
    let snap = tempfile::tempdir().unwrap();
    let snap_out = snap.path().join("snap");
    let snap_arg = snap_out.to_str().unwrap().to_owned();
    for args in [
        vec!["boot", "--accel", "tcg", "--timeout", "120"],
        vec![
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "3",
            "--timeout",
            "120",
        ],
        vec!["snapshot", "--accel", "tcg", "--out", snap_arg.as_str()],
    ] {
        sigkill_leaves_no_qemu(&args, &img);
    }
    // The next run works.
    let out = stratos_std(&shared_cache())
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "120",
            "--invoke",
            "/cgi-bin/hello",
        ])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello, world!"));
}

#[test]
fn sigkill_of_update_apply_leaves_no_qemu() {
    let (_site, state) = staged_node("plain");
    let cache = shared_cache();
    let state_arg = state.to_str().unwrap().to_owned();
    let args = [
        "update",
        "apply",
        "--runs",
        "3",
        "--invocations",
        "1",
        "--invoke",
        "/cgi-bin/hello",
        "--accel",
        "tcg",
        "--timeout",
        "120",
        "--state",
    ];
    sigkill_leaves_no_qemu(&args, Path::new(&state_arg));
    // The next apply works (from what the killed one left).
    let out = stratos_std(&cache).args(args).arg(&state).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
}
