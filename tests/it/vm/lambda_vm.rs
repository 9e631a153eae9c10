//! The init's Lambda interface in a VM: a `provided`-style runtime (functions/go-lambda, Go's
//! standard library only, speaking the Runtime API as the published clients do) runs under
//! `[init] interface = "lambda"`; the host invokes it on the RIE path with curl, as a user
//! would: a response, a function error, a timeout (the runtime is killed and restarted, and the
//! next invocation answers), fresh request ids; the invoke endpoint spoken to in plain HTTP,
//! checked against RIE's answers; and runtimes that misbehave (an answer for an id never
//! handed out, two answers, a 7 MB answer, an init error, no `GET …/next` at all), each with a
//! clear result and everything bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// go-fn's profile made a Lambda function: go-lambda's module, `interface = "lambda"`, a 2 s
/// deadline; no seccomp baseline (go.json has no `connect`: the runtime calls the init's API).
fn lambda_profile(dir: &Path) -> std::path::PathBuf {
    lambda_profile_starting(dir, None)
}

/// The same (go-lambda told how to misbehave at start, `GO_LAMBDA_START`, when `start` says),
/// built into `dir`'s `img`.
fn lambda_image_starting(cache: &Path, dir: &Path, start: Option<&str>) -> std::path::PathBuf {
    let profile = lambda_profile_starting(dir, start);
    let img = dir.join("img");
    stratos(cache)
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&img)
        .args(["--offline", "-q"])
        .assert()
        .success();
    img
}

fn lambda_profile_starting(dir: &Path, start: Option<&str>) -> std::path::PathBuf {
    let env = match start {
        None => "env = { PORT = \"8080\" }".to_owned(),
        Some(s) => format!("env = {{ PORT = \"8080\", GO_LAMBDA_START = \"{s}\" }}"),
    };
    copy_profile("go-fn", dir, |t| {
        let t = t
            .replace("env = { PORT = \"8080\" }", &env)
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

#[allow(clippy::too_many_lines)]
#[test]
fn a_go_runtime_answers_fails_times_out_and_recovers_on_the_rie_path() {
    require_tool("qemu-system-x86_64");
    require_tool("curl");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = lambda_image_starting(&cache, work.path(), None);
    let log = work.path().join("console.log");
    let (mut vm, port) = Running::boot_forwarded(&cache, &img, 300, &log);
    // Ready once the runtime first asks for an event: poll with a deadline (a watchdog).
    let (head, body) = lambda_invoke_within(port, r#"{"name":"world"}"#, Duration::from_secs(240));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, r#"{"message":"Hello, world!"}"#);
    assert!(!head.contains("X-Amz-Function-Error"), "{head}");

    // A function error: 200, X-Amz-Function-Error, the runtime's document.
    let (head, body) = lambda_invoke_within(port, r#"{"name":"fail"}"#, Duration::ZERO);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert_eq!(
        body,
        r#"{"errorMessage":"asked to fail","errorType":"HandlerError"}"#
    );

    // Each invocation has its own request id.
    let (_, a) = lambda_invoke_within(port, r#"{"name":"id"}"#, Duration::ZERO);
    let (_, b) = lambda_invoke_within(port, r#"{"name":"id"}"#, Duration::ZERO);
    assert!(a.starts_with(r#"{"id":""#) && a.len() > 20, "{a}");
    assert_ne!(a, b);

    // Past the 2 s deadline: Lambda's timeout document; the runtime is killed and restarted,
    // and the next invocation is answered.
    let (head, body) = lambda_invoke_within(port, r#"{"name":"sleep"}"#, Duration::ZERO);
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert!(
        body.contains("Sandbox.Timedout") && body.contains("Task timed out after 2.00 seconds"),
        "{body}"
    );
    let (head, body) = lambda_invoke_within(port, r#"{"name":"again"}"#, Duration::ZERO);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, r#"{"message":"Hello, again!"}"#);

    let t0 = Instant::now();
    the_invoke_endpoint_answers_plain_http_as_rie_does(port);
    a_misbehaving_runtime_is_refused_and_its_caller_unaffected(port);
    eprintln!(
        "lambda_vm: plain HTTP and misbehaving-runtime cases took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

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

/// A raw HTTP/1.1 exchange (`Connection: close`), as curl would make it: the request head's
/// lines, then `body`. Returns (status, head, body). Bounded: 60 s for all of it.
fn http(port: u16, head: &[&str], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = head.join("\r\n");
    req.push_str(&format!(
        "\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ));
    s.write_all(req.as_bytes()).unwrap();
    // A refusal may come (and the connection close) before the whole body was sent.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, head, out[split + 4..].to_vec())
}

/// The value of header `name` in `head` (case-insensitive name).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const INVOKE: &str = "/2015-03-31/functions/function/invocations";

/// The invoke endpoint in plain HTTP: the path, statuses, headers and error documents of AWS's
/// Runtime Interface Emulator (internal/lambda/rie/http.go: one path on Go's mux, so any other
/// is Go's `404 page not found`; internal/lambda/rapi/rendering: the oversize document), with
/// Lambda's `X-Amz-Function-Error` on a function error.
fn the_invoke_endpoint_answers_plain_http_as_rie_does(port: u16) {
    let event = br#"{"name":"raw"}"#;
    let len = format!("Content-Length: {}", event.len());
    let (status, head, body) = http(
        port,
        &[
            &format!("POST {INVOKE} HTTP/1.1"),
            "Content-Type: application/x-www-form-urlencoded",
            &len,
        ],
        event,
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, br#"{"message":"Hello, raw!"}"#);
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    let id = header(&head, "X-Amzn-RequestId").expect("a request id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(header(&head, "X-Amz-Function-Error"), None, "{head}");

    // Any method on the path is an invocation (RIE's handler takes them all): a GET is an
    // empty event.
    let (status, _, body) = http(port, &[&format!("GET {INVOKE} HTTP/1.1")], b"");
    assert_eq!(status, 200);
    assert_eq!(body, br#"{"message":"Hello, !"}"#);

    // A function error: 200 with its document and X-Amz-Function-Error.
    let event = br#"{"name":"fail"}"#;
    let len = format!("Content-Length: {}", event.len());
    let (status, head, body) = http(port, &[&format!("POST {INVOKE} HTTP/1.1"), &len], event);
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "X-Amz-Function-Error"), Some("Unhandled"));
    assert_eq!(
        body,
        br#"{"errorMessage":"asked to fail","errorType":"HandlerError"}"#
    );

    // Another path: Go's mux's answer, as from RIE.
    let (status, head, body) = http(
        port,
        &[
            "POST /2015-03-31/functions/other/invocations HTTP/1.1",
            "Content-Length: 2",
        ],
        b"{}",
    );
    assert_eq!(status, 404, "{head}");
    assert_eq!(body, b"404 page not found\n");
    assert_eq!(
        header(&head, "Content-Type"),
        Some("text/plain; charset=utf-8")
    );

    // An event over 6 MB: 413 and RIE's document, sent whole or (curl's way for a large body)
    // announced with Expect: 100-continue and never sent.
    let too_large = serde_json::json!({
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    });
    let big = vec![b'x'; 7 * 1024 * 1024];
    let len = format!("Content-Length: {}", big.len());
    for expect in [false, true] {
        let mut h = vec![format!("POST {INVOKE} HTTP/1.1"), len.clone()];
        if expect {
            h.push("Expect: 100-continue".into());
        }
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        let (status, head, body) = http(port, &h, if expect { b"" } else { &big });
        assert_eq!(status, 413, "expect {expect}: {head}");
        assert_eq!(header(&head, "Content-Type"), Some("application/json"));
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc, too_large);
    }
}

/// Invokes `event` in plain HTTP: (status, head, body as text).
fn post_event(port: u16, event: &str) -> (u16, String, String) {
    let len = format!("Content-Length: {}", event.len());
    let (status, head, body) = http(
        port,
        &[&format!("POST {INVOKE} HTTP/1.1"), &len],
        event.as_bytes(),
    );
    (status, head, String::from_utf8(body).unwrap())
}

/// What the Runtime API said to go-lambda's last misbehaving post: ({"status","body"} from
/// `{"mode":"last"}`), the body parsed.
fn last_api_reply(port: u16) -> (u64, serde_json::Value) {
    let (status, head, body) = post_event(port, r#"{"mode":"last"}"#);
    assert_eq!(status, 200, "{head}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    let api_body = r["body"].as_str().unwrap();
    (
        r["status"].as_u64().unwrap(),
        serde_json::from_str(api_body).unwrap_or_else(|e| panic!("{e}: {api_body}")),
    )
}

/// Answers the runtime must not give: each refused with the Runtime API's 4xx document (RIE's
/// and Lambda's: internal/lambda/rapi/middleware AwsRequestIDValidator → 400
/// `InvalidRequestID`; a second answer → 403 `InvalidStateTransition`; over 6 MB → 413
/// `RequestEntityTooLarge` for the runtime and `Function.ResponseSizeTooLarge` for the
/// caller), the caller getting its real answer, and the next invocation served.
fn a_misbehaving_runtime_is_refused_and_its_caller_unaffected(port: u16) {
    // An answer for an id never handed out: refused; the caller gets the real answer (which
    // carries what the runtime was told).
    let (status, head, body) = post_event(port, r#"{"mode":"unknown"}"#);
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "X-Amz-Function-Error"), None, "{head}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["status"], 400, "{body}");
    assert_eq!(
        r["body"],
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#
    );

    // Two answers: the caller has the first; the second is refused.
    let (status, head, body) = post_event(port, r#"{"mode":"twice"}"#);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, r#"{"answer":1}"#);
    let (status, doc) = last_api_reply(port);
    assert_eq!(status, 403, "{doc}");
    assert_eq!(doc["errorType"], "InvalidStateTransition", "{doc}");
    assert!(
        doc["errorMessage"]
            .as_str()
            .unwrap()
            .contains("was answered already"),
        "{doc}"
    );

    // A 7 MB answer: the caller gets Lambda's oversize error, the runtime 413.
    let (status, head, body) = post_event(port, r#"{"mode":"big"}"#);
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "X-Amz-Function-Error"), Some("Unhandled"));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({
            "errorMessage": "Response payload size (7340034 bytes) exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "Function.ResponseSizeTooLarge",
        })
    );
    let (status, doc) = last_api_reply(port);
    assert_eq!(status, 413, "{doc}");
    assert_eq!(
        doc,
        serde_json::json!({
            "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "RequestEntityTooLarge",
        })
    );
    // And the function still answers.
    let (status, _, body) = post_event(port, r#"{"name":"after"}"#);
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"message":"Hello, after!"}"#);
}

/// A runtime that fails to start ends the boot with a clear reason, within the init phase
/// (10 s) for one that never asks: `boot --event` (bounded by --timeout) says why.
#[test]
fn runtimes_that_never_get_ready_fail_the_boot_saying_why() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    for (start, says) in [
        (
            "init-error",
            "the init failed: the Lambda runtime failed to initialise (it posted /2018-06-01/runtime/init/error): Runtime.ImportModuleError: cannot load the handler",
        ),
        (
            "no-next",
            "the init failed: the Lambda runtime did not ask for an invocation (GET /2018-06-01/runtime/invocation/next) within its init phase of 10 s",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let img = lambda_image_starting(&cache, work.path(), Some(start));
        let t0 = Instant::now();
        let out = stratos(&cache)
            .args(["boot", "--accel", "tcg", "--timeout", "120"])
            .args(["--event", "{}"])
            .arg(&img)
            .assert()
            .code(1)
            .stderr(predicates::str::contains(says))
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "lambda_vm: GO_LAMBDA_START={start}: boot failed in {:.1} s: {}",
            t0.elapsed().as_secs_f64(),
            stderr.lines().find(|l| l.contains(says)).unwrap_or_default()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("stratos-phase runtime_ready"), "{stdout}");
    }
}

/// A Lambda image through the node's machinery: snapshotted (its warm-up call POSTs `{}`: a
/// GET would be an empty event), restored twice with a request id each (fresh: drawn from the
/// kernel's generator, which the init reseeds on restore), boot-tested from the snapshot and
/// put in service by `update apply`, whose boots call it with the event `{}` on the RIE path
/// (not a GET of "/", which a Lambda function does not serve) — each on the function's invoke
/// port, 9000 here, which the manifest gives.
#[allow(clippy::too_many_lines)]
#[test]
fn a_lambda_image_is_snapshotted_restored_with_fresh_ids_and_applied_by_update() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("release");
    stratos(&cache)
        .args(["keygen", "--out"])
        .arg(&prefix)
        .assert()
        .success();
    let key = prefix.with_extension("key");
    // On another port than 8080: what calls the function finds it in the manifest.
    let profile = lambda_profile(work.path());
    let text = std::fs::read_to_string(&profile).unwrap().replace(
        "function-name = \"go-lambda\"\n",
        "function-name = \"go-lambda\"\nport = 9000\n",
    );
    std::fs::write(&profile, text).unwrap();
    let img = work.path().join("img");
    stratos(&cache)
        .arg("build")
        .arg(&profile)
        .arg("--out")
        .arg(&img)
        .args(["--offline", "-q", "--image-key"])
        .arg(&key)
        .assert()
        .success();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["lambda"], serde_json::json!({"invoke_port": 9000}));

    let t0 = Instant::now();
    let snap = work.path().join("img.snap");
    take_snapshot(
        &img,
        &snap,
        INVOKE,
        &["--image-key".as_ref(), key.as_os_str()],
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = stratos_std(&cache)
            .arg("boot")
            .arg(&img)
            .arg("--snapshot")
            .arg(&snap)
            .args(["--timeout", "120", "--event", r#"{"name":"id"}"#])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.matches("stratos-phase restored ").count(),
            1,
            "{stdout}"
        );
        let start = stdout
            .find(&format!("--- response: HTTP 200 from {INVOKE} ---\n"))
            .unwrap_or_else(|| panic!("no answer:\n{stdout}"));
        let body = stdout[start..].lines().nth(1).unwrap().trim().to_owned();
        assert!(body.starts_with(r#"{"id":""#), "{body}");
        ids.push(body);
    }
    assert_ne!(
        ids[0], ids[1],
        "two restores handed out the same request id"
    );
    // boot-test from the snapshot, without --event: each call is the event {}.
    stratos(&cache)
        .args([
            "boot-test",
            "--runs",
            "1",
            "--invocations",
            "2",
            "--snapshot",
        ])
        .arg(&snap)
        .arg(&img)
        .assert()
        .success();
    eprintln!(
        "lambda_vm: snapshot, two restores and a boot-test took {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Published, fetched and applied: the apply's boots call the function with {}.
    let t0 = Instant::now();
    let repo = work.path().join("releases");
    let state = work.path().join("state");
    stage_on_node(&cache, &img, &key, &repo, &state);
    stratos(&cache)
        .args(["update", "apply", "--state"])
        .arg(&state)
        .args(["--runs", "1", "--accel", "tcg", "--timeout", "120"])
        .assert()
        .success();
    let status = stratos_std(&cache)
        .args(["update", "status", "--json", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["current"]["image"], "go-fn", "{v}");
    eprintln!(
        "lambda_vm: publish, fetch and update apply took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
