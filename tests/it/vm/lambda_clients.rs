//! Functions written for AWS Lambda with AWS's published clients, unchanged, on StratOS:
//! lambda-rust (the `lambda_runtime` crate, built by `[runtime.cargo]`) builds offline
//! bit-identically with its crates in the SBOM, boots, and answers on the path AWS's Runtime
//! Interface Emulator takes events on: a response, a function error, a timeout after which the
//! next invocation is answered; lambda-python (a handler run by the `awslambdaric` wheel) the
//! same.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// The sha256 Cargo.lock pins for `name`.
fn lock_checksum(lock: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(lock).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["checksum"].as_str())
        .unwrap_or_else(|| panic!("{name} not in {}", lock.display()))
        .to_owned()
}

/// The crates linked in are in the SBOM, pinned as Cargo.lock pins them; a procedural macro
/// (it runs in the compiler) and a Windows-only crate are not.
fn sbom_pins_the_linked_crates(img: &Path) {
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    let lock = root().join("functions/lambda-rust/Cargo.lock");
    let runtime = comps
        .iter()
        .find(|c| c["purl"] == "pkg:cargo/lambda_runtime@1.5.0")
        .expect("lambda_runtime in the SBOM");
    assert_eq!(
        runtime["hashes"][0]["content"],
        lock_checksum(&lock, "lambda_runtime")
    );
    let purls: Vec<&str> = comps.iter().filter_map(|c| c["purl"].as_str()).collect();
    assert!(
        purls.iter().any(|p| p.starts_with("pkg:cargo/tokio@")),
        "{purls:?}"
    );
    assert!(
        !purls
            .iter()
            .any(|p| p.starts_with("pkg:cargo/serde_derive@")),
        "{purls:?}"
    );
    assert!(
        !purls.iter().any(|p| p.starts_with("pkg:cargo/windows")),
        "{purls:?}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rust"]["binary"], "/var/task/bootstrap");
}

#[test]
fn lambda_rust_built_with_the_published_crate_answers_fails_and_times_out_like_lambda() {
    require_tool("qemu-system-x86_64");
    require_tool("curl");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = image_rebuilt_identically("lambda-rust", work.path());

    sbom_pins_the_linked_crates(&img);

    let log = work.path().join("console.log");
    let (mut vm, port) = Running::boot_forwarded(&cache, &img, 300, &log);
    let (head, body) = lambda_invoke_within(port, r#"{"name":"world"}"#, Duration::from_secs(240));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("X-Amz-Function-Error"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["message"],
        "Hello, world! This is StratOS on Rust (lambda_runtime)."
    );
    assert_eq!(v["function_name"], "lambda-rust");
    // The deadline the crate read from Lambda-Runtime-Deadline-Ms: wall-clock milliseconds,
    // at most the profile's 3 s ahead.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let deadline = v["deadline_ms"].as_u64().unwrap();
    assert!(
        deadline > now_ms - 60_000 && deadline < now_ms + 3_000 + 60_000,
        "{deadline}"
    );
    let first_id = v["request_id"].as_str().unwrap().to_owned();

    // A handler error: the crate posts …/error; the caller gets it with X-Amz-Function-Error.
    let (head, body) =
        lambda_invoke_within(port, r#"{"fail":"on purpose"}"#, Duration::from_secs(30));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        e["errorMessage"], "the function failed as asked: on purpose",
        "{body}"
    );

    // Past the 3 s deadline: Lambda's timeout document; the runtime is restarted and the next
    // invocation answers, with a new request id.
    let (head, body) = lambda_invoke_within(port, r#"{"sleep_ms":4000}"#, Duration::from_secs(30));
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert!(body.contains("Task timed out after 3.00 seconds"), "{body}");
    let (head, body) = lambda_invoke_within(port, r#"{"name":"again"}"#, Duration::from_secs(120));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().starts_with("Hello, again!"),
        "{body}"
    );
    assert_ne!(v["request_id"], first_id);
    vm.stop_with_sigterm();
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(console.contains("lambda-rust: starting"), "{console}");

    // boot-test compares it with an HTTP function, each called its own way: events to the
    // Lambda function, GETs to go-fn (--baseline-invoke).
    let go_fn = image("go-fn", work.path());
    let json = work.path().join("ab.json");
    stratos(&cache)
        .args([
            "boot-test",
            "--accel",
            "tcg",
            "--runs",
            "1",
            "--invocations",
            "2",
        ])
        .args(["--event", r#"{"name":"ab"}"#])
        .arg("--baseline")
        .arg(&go_fn)
        .args(["--baseline-invoke", "/?name=ab"])
        .arg("--json-out")
        .arg(&json)
        .arg(&img)
        .assert()
        .success();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["invoke"], "/2015-03-31/functions/function/invocations");
    assert_eq!(r["baseline_invoke"], "/?name=ab");
    assert_eq!(r["passed"], true);
    assert!(
        r["comparison"]["first_response"]["median_ratio"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn lambda_python_run_by_the_published_awslambdaric_answers_fails_and_times_out_like_lambda() {
    require_tool("qemu-system-x86_64");
    require_tool("curl");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = image("lambda-python", work.path());
    let log = work.path().join("console.log");
    let (mut vm, port) = Running::boot_forwarded(&cache, &img, 300, &log);
    let (head, body) =
        lambda_invoke_within(port, r#"{"name":"StratOS"}"#, Duration::from_secs(240));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("X-Amz-Function-Error"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "Hello, StratOS!", "{body}");
    assert_eq!(v["function_name"], "lambda-python");
    assert!(v["remaining_ms"].as_u64().unwrap() <= 3000, "{body}");
    let first_id = v["request_id"].as_str().unwrap().to_owned();
    assert!(
        head.contains(&first_id),
        "the request id is not the answer's: {head}"
    );

    // The handler raises: awslambdaric posts …/error with its type and stack trace.
    let (head, body) = lambda_invoke_within(port, r#"{"fail":true}"#, Duration::from_secs(30));
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "HandlerFailed", "{body}");
    assert_eq!(e["errorMessage"], "asked to fail", "{body}");

    // Past the 3 s deadline: Lambda's timeout; the interpreter is restarted and answers again.
    let (head, body) = lambda_invoke_within(port, r#"{"sleep_ms":5000}"#, Duration::from_secs(30));
    assert!(head.contains("X-Amz-Function-Error: Unhandled"), "{head}");
    assert!(body.contains("Sandbox.Timedout"), "{body}");
    let (head, body) = lambda_invoke_within(port, r#"{"name":"again"}"#, Duration::from_secs(120));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "Hello, again!", "{body}");
    assert_ne!(v["request_id"], first_id);
    vm.stop_with_sigterm();
}
