//! Cross-architecture mistakes in a profile fail clearly, before anything is built: another
//! architecture's kernel, another architecture's config fragment, an architecture the profile
//! does not list, another architecture's console; and a fixture image built for aarch64 says so
//! in its manifest and SBOM. (No kernel build, no VM: the kernels are fakes.)

use crate::common::*;

/// The fixture profile, built for aarch64 only, with `kernel` as its `[kernel]` table.
fn aarch64_fixture(kernel: &str) -> Fixture {
    let f = Fixture::new();
    let text = PROFILE
        .replace(
            "source-date-epoch = 1700000000",
            "source-date-epoch = 1700000000\narch = \"aarch64\"",
        )
        .replace(
            "[kernel]\nprebuilt = \"kernel/bzImage\"\ncmdline = \"console=ttyS0 panic=-1\"",
            kernel,
        );
    f.write("profile.toml", text.as_bytes());
    f
}

fn build(f: &Fixture, cache: &std::path::Path) -> assert_cmd::assert::Assert {
    stratos(cache)
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("out"))
        .arg("-q")
        .assert()
}

#[test]
fn an_x86_64_kernel_in_an_aarch64_image_is_refused_naming_both() {
    aarch64_init();
    let cache = tempfile::tempdir().unwrap();
    let f = aarch64_fixture(
        "[kernel]\nprebuilt = \"kernel/bzImage\"\ncmdline = \"console=ttyAMA0 panic=-1\"",
    );
    build(&f, cache.path())
        .code(2)
        .stderr(predicates::str::contains("kernel/bzImage"))
        .stderr(predicates::str::contains(
            "is an x86_64 kernel (bzImage), and this image is aarch64",
        ))
        .stderr(predicates::str::contains("[kernel.aarch64] prebuilt"));
    assert!(!f.path("out").exists(), "nothing is written");

    // With an arm64 Image it builds, and the image says what it is for.
    let f2 = aarch64_fixture(
        "[kernel]\nprebuilt = \"kernel/Image\"\ncmdline = \"console=ttyAMA0 panic=-1\"",
    );
    f2.write("kernel/Image", &fake_arm64_kernel());
    build(&f2, cache.path()).success();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f2.path("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["image"]["arch"], "aarch64");
    assert_eq!(m["kernel"]["format"], "Image");
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f2.path("out/sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    assert_eq!(
        sbom["metadata"]["properties"][0],
        serde_json::json!({"name": "stratos:arch", "value": "aarch64"})
    );
}

#[test]
fn an_x86_64_fragment_in_an_aarch64_kernel_is_refused_naming_it() {
    aarch64_init();
    let cache = tempfile::tempdir().unwrap();
    let f = aarch64_fixture(&format!(
        "[kernel]\nsource = {{ tarball = \"kernel/bzImage\" }}\nfragments = [\"{}\"]\ncmdline = \"console=ttyAMA0\"",
        root().join("kernel-configs/serial-console.config").display()
    ));
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--check")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("serial-console.config"))
        .stderr(predicates::str::contains("is for x86_64 only"))
        .stderr(predicates::str::contains("[kernel.x86_64] fragments"));
}

#[test]
fn the_profile_names_what_does_not_fit_the_architecture() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // --arch for an architecture the profile does not list.
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .args(["--arch", "aarch64", "--check"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("image.arch"))
        .stderr(predicates::str::contains(
            "builds for x86_64 only, not aarch64",
        ));
    // An unknown architecture is bad usage.
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .args(["--arch", "riscv64"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("\"aarch64\""));
    // The x86 console in an aarch64 kernel's command line.
    let g = aarch64_fixture(
        "[kernel]\nprebuilt = \"kernel/bzImage\"\ncmdline = \"console=ttyS0 panic=-1\"",
    );
    stratos(cache.path())
        .arg("build")
        .arg(g.profile())
        .arg("--check")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("kernel.cmdline"))
        .stderr(predicates::str::contains("console=ttyAMA0"));
}
