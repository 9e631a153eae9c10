//! profiles/python-api: pinned wheels from PyPI (hashes in its requirements file), built
//! offline, booted, answering through its wheels.

use crate::common::*;

#[test]
fn python_api_builds_offline_and_answers_through_its_wheels() {
    require_tool("qemu-system-x86_64");
    require_kernel_source();
    let cache = shared_cache();
    let work = tempfile::tempdir().unwrap();
    let a = image("python-api", work.path());

    // One component per wheel: purl, licence, the wheel's sha256, its files.
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    let comp = |purl: &str| {
        comps
            .iter()
            .find(|c| c["purl"] == purl)
            .unwrap_or_else(|| panic!("no {purl}"))
    };
    let files = |c: &serde_json::Value| -> Vec<String> {
        c["evidence"]["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["location"].as_str().unwrap().to_owned())
            .collect()
    };
    let req = std::fs::read_to_string(root().join("profiles/python-api.requirements.txt")).unwrap();
    for (purl, licence, probe) in [
        (
            "pkg:pypi/markupsafe@2.1.5",
            "BSD-3-Clause",
            "/usr/local/lib/python3.11/dist-packages/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so",
        ),
        (
            "pkg:pypi/idna@3.7",
            "BSD-3-Clause",
            "/usr/local/lib/python3.11/dist-packages/idna/core.py",
        ),
    ] {
        let c = comp(purl);
        assert_eq!(c["licenses"][0]["expression"], licence, "{purl}");
        let sha = c["hashes"][0]["content"].as_str().unwrap();
        assert!(req.contains(&format!("--hash=sha256:{sha}")), "{purl}: {sha}");
        let f = files(c);
        assert!(f.iter().any(|p| p == probe), "{purl}: {f:?}");
        // The bytecode step compiled the wheel's modules, owned by the wheel.
        if probe.ends_with(".py") {
            assert!(
                f.iter()
                    .any(|p| p == "/usr/local/lib/python3.11/dist-packages/idna/__pycache__/core.cpython-311.pyc"),
                "{f:?}"
            );
        }
    }
    stratos(&cache)
        .args(["inspect", "--orphans"])
        .arg(&a)
        .assert()
        .success()
        .stderr(predicates::str::contains("no orphans"));
    stratos(&cache)
        .arg("inspect")
        .arg(&a)
        .assert()
        .success()
        .stdout(predicates::str::contains("pkg:pypi/markupsafe@2.1.5"))
        .stdout(predicates::str::contains("pkg:pypi/idna@3.7"));

    // The answer proves both imports: the name escaped by the compiled extension, the host
    // decoded by idna.
    stratos(&cache)
        .args([
            "boot",
            "--accel",
            "tcg",
            "--timeout",
            "240",
            "--memory",
            "256",
            "--invoke",
            "/?name=<ci>&host=xn--bcher-kva.example",
        ])
        .arg(&a)
        .assert()
        .success()
        .stdout(predicates::str::contains("Hello, &lt;ci&gt;!"))
        .stdout(predicates::str::contains(
            "xn--bcher-kva.example is bücher.example",
        ))
        .stdout(predicates::str::contains(
            "markupsafe 2.1.5 (compiled: _speedups.cpython-311-x86_64-linux-gnu.so), idna 3.7",
        ));
}

/// Slow tier (`./ci/test --slow`): two offline builds of python-api are bit-identical. Per
/// submission, python_fn.rs proves reproducibility on the flagship; this one is the same proof
/// on a second large tree.
#[test]
#[ignore = "slow tier: ./ci/test --slow"]
fn python_api_builds_reproducibly() {
    require_kernel_source();
    let work = tempfile::tempdir().unwrap();
    build_twice_offline(&shared_cache(), "python-api", work.path());
}
