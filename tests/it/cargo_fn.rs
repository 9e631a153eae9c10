//! Rust functions (`[runtime.cargo]`), without a VM (a fake kernel): a small project builds
//! offline, bit-identically from two paths; its build script runs in the sandbox (it cannot
//! read the host's /etc, write outside its scratch directory or reach the network); its crate
//! comes from the directory `ci/setup` fills, checked against Cargo.lock's sha256, and is in
//! the SBOM as `pkg:cargo/…`. A crate with one changed byte, a git dependency and a crate
//! missing offline each fail before anything is built, naming the crate. (The VM tier builds
//! lambda-rust, AWS's `lambda_runtime`, twice and boots it: vm/lambda_rust.rs.)

use std::path::{Path, PathBuf};

use crate::common::*;

/// `itoa`, pinned as lambda-rust's Cargo.lock pins it (so ci/setup has fetched it).
const ITOA: &str = "itoa";
const ITOA_VERSION: &str = "1.0.19";
const ITOA_SUM: &str = "3bd1574e617a9a6c1f8f8181bd7e841e1f20e4277607ef28945765188d6284d4";

/// A project in `dir/fn`: one dependency (itoa), a build script that tries to leave the
/// sandbox and records what it could do in the binary.
fn project(dir: &Path, lock_extra: &str) -> PathBuf {
    let src = dir.join("fn");
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("Cargo.toml"),
        format!("[package]\nname = \"probe\"\nversion = \"0.2.0\"\nedition = \"2021\"\nlicense = \"MIT\"\n\n[dependencies]\n{ITOA} = \"=1.0.19\"\n\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(
        src.join("Cargo.lock"),
        format!("version = 4\n\n[[package]]\nname = \"{ITOA}\"\nversion = \"{ITOA_VERSION}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{ITOA_SUM}\"\n\n[[package]]\nname = \"probe\"\nversion = \"0.2.0\"\ndependencies = [\n \"{ITOA}\",\n]\n{lock_extra}"),
    )
    .unwrap();
    // The marker the build script tries to write is outside its scratch directory (the same
    // path for every project, so two projects' sources are the same bytes).
    let marker = escape_marker();
    // The build user's home (its cargo registry token would be there).
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::fs::write(
        src.join("build.rs"),
        format!(
            r#"fn main() {{
    let etc = std::fs::read_to_string("/etc/hostname").is_ok();
    let home = std::path::Path::new({home:?}).join(".cargo").exists();
    let wrote = std::fs::write({marker:?}, "out").is_ok();
    let net = std::net::TcpStream::connect("1.1.1.1:443").is_ok();
    let vendor = std::fs::OpenOptions::new()
        .append(true)
        .open("/build/vendor/itoa-1.0.19/src/lib.rs")
        .is_ok();
    println!("cargo:rustc-env=SANDBOX_SEEN=etc={{etc}},home={{home}},wrote={{wrote}},net={{net}},vendor={{vendor}}");
}}
"#
        ),
    )
    .unwrap();
    // A project configuration that would swap the pinned crates for others: not used.
    std::fs::create_dir_all(src.join(".cargo")).unwrap();
    std::fs::write(
        src.join(".cargo/config.toml"),
        "[source.crates-io]\nreplace-with = \"elsewhere\"\n[source.elsewhere]\ndirectory = \"/nonexistent\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("src/main.rs"),
        "fn main() {\n    let mut b = itoa::Buffer::new();\n    println!(\"{} {}\", env!(\"SANDBOX_SEEN\"), b.format(42));\n}\n",
    )
    .unwrap();
    src
}

/// A profile in `dir` building `dir/fn` (named relatively, so two such profiles are the same
/// bytes wherever they are); the fake kernel, no packages.
fn profile(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("bzImage"), fake_kernel()).unwrap();
    let p = dir.join("rust.toml");
    std::fs::write(
        &p,
        r#"schema = 1
[image]
name = "rust-test"
version = "0.1.0"
source-date-epoch = 1735689600
[kernel]
prebuilt = "bzImage"
[init]
argv = ["/srv/fn/probe"]
uid = 1000
gid = 1000
[runtime.cargo]
source = "fn"
output = "/srv/fn/probe"
"#,
    )
    .unwrap();
    p
}

/// Where a build script that escaped the sandbox would write.
fn escape_marker() -> PathBuf {
    std::env::temp_dir().join("stratos-cargo-fn-escaped")
}

fn require_rust() {
    require_tool("bwrap");
    require_tool("rustc");
    require_setup_file(&format!(
        "/var/cache/stratos/crates/{ITOA}-{ITOA_VERSION}.crate"
    ));
}

#[test]
fn a_rust_function_builds_offline_reproducibly_in_the_sandbox_with_its_crates_in_the_sbom() {
    require_rust();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let _ = std::fs::remove_file(escape_marker());
    let (a, b) = (w.join("a"), w.join("b/some/deeper"));
    project(&a, "");
    project(&b, "");
    let cache = w.join("cache");
    let (ok, err) = try_build(&cache, &profile(&a), &w.join("out-a"));
    assert!(ok, "{err}");
    let (ok, err) = try_build(&w.join("cache-b"), &profile(&b), &w.join("out-b"));
    assert!(ok, "{err}");
    let tar = |out: &Path| {
        let o = std::process::Command::new("tar")
            .args(["--zstd", "-xOf"])
            .arg(out.join("rootfs.tar.zst"))
            .arg("srv/fn/probe")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let (bin_a, bin_b) = (tar(&w.join("out-a")), tar(&w.join("out-b")));
    let text = String::from_utf8_lossy(&bin_a);
    assert!(
        text.contains("etc=false,home=false,wrote=false,net=false,vendor=false"),
        "the build script saw the host: {:?}",
        text.find("etc=").map(|i| &text[i..i + 60])
    );
    assert!(
        !escape_marker().exists(),
        "the build script wrote on the host"
    );
    // Built from /…/a/fn and /…/b/some/deeper/fn: the sandbox sees both at /build/src.
    assert_eq!(
        sha256(&bin_a),
        sha256(&bin_b),
        "two builds from two paths differ"
    );
    assert!(
        !text.contains(&w.display().to_string()),
        "the host path is in the binary"
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("out-a/sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let comps = sbom["components"].as_array().unwrap();
    let itoa = comps
        .iter()
        .find(|c| c["purl"] == format!("pkg:cargo/{ITOA}@{ITOA_VERSION}"))
        .expect("itoa in the SBOM");
    assert_eq!(itoa["hashes"][0]["content"], ITOA_SUM, "{itoa}");
    let app = comps.iter().find(|c| c["name"] == "probe").unwrap();
    assert_eq!(app["version"], "0.2.0");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("out-a/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rust"]["package"], "probe");
    assert_eq!(manifest["rust"]["binary"], "/srv/fn/probe");
    assert!(manifest["rust"]["toolchain"]
        .as_str()
        .unwrap()
        .starts_with("rustc "));
}

/// The same project built for arm64 on this x86-64 host: cross-compiled in the sandbox (Debian's
/// cross gcc, static glibc), an aarch64 static binary.
#[test]
fn a_rust_function_is_cross_built_for_arm64_in_the_sandbox() {
    require_rust();
    aarch64_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    project(w, "");
    std::fs::write(w.join("Image"), fake_arm64_kernel()).unwrap();
    let text = std::fs::read_to_string(profile(w))
        .unwrap()
        .replace(
            "source-date-epoch = 1735689600",
            "source-date-epoch = 1735689600\narch = \"aarch64\"",
        )
        .replace(
            "prebuilt = \"bzImage\"",
            "prebuilt = \"Image\"\ncmdline = \"console=ttyAMA0 panic=-1\"",
        );
    std::fs::write(w.join("rust.toml"), text).unwrap();
    let (ok, err) = try_build(&w.join("cache"), &w.join("rust.toml"), &w.join("out"));
    assert!(ok, "{err}");
    let o = std::process::Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(w.join("out/rootfs.tar.zst"))
        .arg("srv/fn/probe")
        .output()
        .unwrap();
    assert!(o.status.success());
    let elf = goblin::elf::Elf::parse(&o.stdout).unwrap();
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
    assert!(
        elf.interpreter.is_none() && elf.libraries.is_empty(),
        "not static"
    );
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_crate_that_is_not_the_pinned_one_a_git_source_or_a_missing_crate_fails_naming_it() {
    require_rust();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cache = w.join("cache");
    // One changed byte in the prefetched crate.
    let pre = w.join("prefetch");
    std::fs::create_dir_all(pre.join("crates")).unwrap();
    let mut bytes = std::fs::read(format!(
        "/var/cache/stratos/crates/{ITOA}-{ITOA_VERSION}.crate"
    ))
    .unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(
        pre.join(format!("crates/{ITOA}-{ITOA_VERSION}.crate")),
        bytes,
    )
    .unwrap();
    let d = w.join("tampered");
    project(&d, "");
    let o = stratos_std(&cache)
        .env("STRATOS_PREFETCH_DIR", &pre)
        .arg("build")
        .arg(profile(&d))
        .arg("--out")
        .arg(w.join("o1"))
        .args(["--offline", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("crate itoa 1.0.19") && err.contains("sha256 differs"),
        "{err}"
    );
    // Missing offline: an empty prefetch directory and cache.
    std::fs::remove_file(pre.join(format!("crates/{ITOA}-{ITOA_VERSION}.crate"))).unwrap();
    let o = stratos_std(&w.join("cache-2"))
        .env("STRATOS_PREFETCH_DIR", &pre)
        .arg("build")
        .arg(profile(&d))
        .arg("--out")
        .arg(w.join("o2"))
        .args(["--offline", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("crate itoa 1.0.19") && err.contains("--offline"),
        "{err}"
    );
    // A git dependency.
    let g = w.join("git");
    project(
        &g,
        "\n[[package]]\nname = \"evil\"\nversion = \"0.1.0\"\nsource = \"git+https://example.com/evil#0123\"\n",
    );
    let (ok, err) = try_build(&cache, &profile(&g), &w.join("o3"));
    assert!(!ok);
    assert!(
        err.contains("Cargo.lock")
            && err.contains("package evil 0.1.0")
            && err.contains("from git"),
        "{err}"
    );
    for o in ["o1", "o2", "o3"] {
        assert!(!w.join(o).exists(), "{o} was left behind");
    }
}
