//! `stratos boot-test` for real on hello: its JSON checked against the documented schema, an
//! objective that holds on real measurements (the harness's failure paths are the fake QEMU's:
//! tests/it/boot_test.rs).

use crate::common::*;

#[test]
fn boot_test_on_hello_writes_schema_valid_json_and_gates() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let img = image("hello", work.path());
    let json = work.path().join("boot.json");
    let run = |slo: &str| {
        stratos_std(&cache)
            .args([
                "boot-test",
                "--accel",
                "tcg",
                "--runs",
                "2",
                "--invocations",
                "3",
                "--invoke",
                "/cgi-bin/hello",
                "--slo",
                slo,
                "--json-out",
            ])
            .arg(&json)
            .arg(&img)
            .output()
            .unwrap()
    };
    let ok = run("runtime_ready.p95=60s,first_response.p50=60s");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("PASS runtime_ready.p95=60s"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("docs/boot-test.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(v["metrics"]["first_response"]["n"], 2);
    assert_eq!(v["runs_detail"].as_array().unwrap().len(), 2);
    assert!(v["metrics"]["cold_start"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["metrics"]["warm"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        v["metrics"]["memory_peak"]["max"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // A failing objective on a real run is the fake QEMU's case above (the same code path
    // decides both); this boot proves the pass on real measurements.
    assert!(processes_mentioning(img.to_str().unwrap()).is_empty());
}
