//! The init's Lambda interface in a VM: a `provided`-style runtime (functions/go-lambda, Go's
//! standard library only, speaking the Runtime API as the published clients do) runs under
//! `[init] interface = "lambda"`; the host invokes it on the RIE path with curl, as a user
//! would: a response, a function error, a timeout (the runtime is killed and restarted, and the
//! next invocation answers), fresh request ids.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// go-fn's profile made a Lambda function: go-lambda's module, `interface = "lambda"`, a 2 s
/// deadline; no seccomp baseline (go.json has no `connect`: the runtime calls the init's API).
fn lambda_profile(dir: &Path) -> std::path::PathBuf {
    copy_profile("go-fn", dir, |t| {
        let t = t
            .replace("functions/go-fn\"", "functions/go-lambda\"")
            .replace("readiness = { notify = true }\n", "")
            .replace("on-restore = \"SIGUSR1\"\n", "")
            .replace(
                "[init.limits]",
                "interface = \"lambda\"\n\n[init.lambda]\ntimeout-ms = 2000\nfunction-name = \"go-lambda\"\n\n[init.limits]",
            );
        let start = t.find("[seccomp]").unwrap();
        let end = t[start..].find("[observe]").unwrap() + start;
        format!("{}{}", &t[..start], &t[end..])
    })
}

/// `curl -sS -D - -d EVENT URL`: (status line and headers, body).
fn invoke(port: u16, event: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "60", "-D", "-", "-d", event])
        .arg(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

#[allow(clippy::too_many_lines)]
#[test]
fn a_go_runtime_answers_fails_times_out_and_recovers_on_the_rie_path() {
    require_tool("qemu-system-x86_64");
    require_tool("curl");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let profile = lambda_profile(work.path());
    let img = work.path().join("img");
    stratos(&cache)
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&img)
        .args(["--offline", "-q"])
        .assert()
        .success();
    let log = work.path().join("console.log");
    let (mut vm, port) = Running::boot_forwarded(&cache, &img, 300, &log);
    // Ready once the runtime first asks for an event: poll with a deadline (a watchdog).
    let until = Instant::now() + Duration::from_secs(240);
    let (head, body) = loop {
        let out = Command::new("curl")
            .args(["-sS", "-m", "30", "-D", "-", "-d", r#"{"name":"world"}"#])
            .arg(format!(
                "http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
            ))
            .output()
            .unwrap();
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (h, b) = text.split_once("\r\n\r\n").unwrap();
            break (h.to_owned(), b.to_owned());
        }
        assert!(
            Instant::now() < until,
            "no answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, r#"{"message":"Hello, world!"}"#);
    assert!(!head.contains("X-Amz-Function-Error"), "{head}");

    // A function error: 200, X-Amz-Function-Error, the runtime's document.
    let (head, body) = invoke(port, r#"{"name":"fail"}"#);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert_eq!(
        body,
        r#"{"errorMessage":"asked to fail","errorType":"HandlerError"}"#
    );

    // Each invocation has its own request id.
    let (_, a) = invoke(port, r#"{"name":"id"}"#);
    let (_, b) = invoke(port, r#"{"name":"id"}"#);
    assert!(a.starts_with(r#"{"id":""#) && a.len() > 20, "{a}");
    assert_ne!(a, b);

    // Past the 2 s deadline: Lambda's timeout document; the runtime is killed and restarted,
    // and the next invocation is answered.
    let (head, body) = invoke(port, r#"{"name":"sleep"}"#);
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert!(
        body.contains("Sandbox.Timedout") && body.contains("Task timed out after 2.00 seconds"),
        "{body}"
    );
    let (head, body) = invoke(port, r#"{"name":"again"}"#);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, r#"{"message":"Hello, again!"}"#);

    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains("go-lambda: runtime API at http://127.0.0.1:9001"),
        "{console}"
    );
    assert!(console.contains("function go-lambda"), "{console}");
    assert!(console.contains("stratos-phase runtime_ready"), "{console}");
    vm.stop_with_sigterm();

    // `boot --event` posts the event to the RIE path and prints the answer; a function error
    // is a failed check (exit 1).
    stratos(&cache)
        .args(["boot", "--accel", "tcg", "--timeout", "240"])
        .args(["--event", r#"{"name":"cli"}"#])
        .arg(&img)
        .assert()
        .success()
        .stdout(predicates::str::contains(r#"{"message":"Hello, cli!"}"#));
    stratos(&cache)
        .args(["boot", "--accel", "tcg", "--timeout", "240"])
        .args(["--event", r#"{"name":"fail"}"#])
        .arg(&img)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "the function failed (X-Amz-Function-Error: Unhandled)",
        ));
    // boot-test calls it with the event from a file, cold and warm.
    let event = work.path().join("event.json");
    std::fs::write(&event, r#"{"name":"bench"}"#).unwrap();
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
        .arg("--event")
        .arg(&event)
        .arg(&img)
        .assert()
        .success();
    // Neither a file nor JSON: said before anything boots.
    stratos(&cache)
        .args(["boot", "--event", "not json"])
        .arg(&img)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("neither a file nor JSON"));
}
