//! Language dependencies (the built and booted profile is vm/python_api.rs). Hostile
//! wheels and npm tarballs (tests/hostile/deps, made by its generate.py) are refused with an
//! error naming what is wrong, and no image is written.

use std::path::{Path, PathBuf};

use crate::common::*;
use sha2::Digest;

fn fixture(rel: &str) -> PathBuf {
    root().join("tests/hostile/deps").join(rel)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// A build in a fresh cache and prefetch directory (the stock kernel is prebuilt, so nothing
/// is compiled): the profile text gets the repository root for `{root}`.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
        let c = Case {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["cache", "prefetch/wheels", "prefetch/npm"] {
            std::fs::create_dir_all(c.path(d)).unwrap();
        }
        c
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn put(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A Python image on python-fn's Debian packages with `requirements` as its
    /// [packages.python].
    fn python(&self, requirements: &str) -> PathBuf {
        self.put("req.txt", requirements.as_bytes());
        self.put(
            "p.toml",
            PYTHON_PROFILE
                .replace("{root}", &root().display().to_string())
                .as_bytes(),
        )
    }

    /// A busybox image with `lock` as its [packages.npm] into /srv/fn.
    fn npm(&self, lock: &serde_json::Value) -> PathBuf {
        self.put("package-lock.json", &serde_json::to_vec(lock).unwrap());
        self.put(
            "p.toml",
            NPM_PROFILE
                .replace("{root}", &root().display().to_string())
                .as_bytes(),
        )
    }

    fn build(&self, profile: &Path) -> assert_cmd::assert::Assert {
        stratos(&self.path("cache"))
            .env("STRATOS_PREFETCH_DIR", self.path("prefetch"))
            .arg("build")
            .arg(profile)
            .arg("--out")
            .arg(self.path("out"))
            .args(["--offline", "-q"])
            .assert()
    }

    /// The build fails as bad input, says `want`, and leaves no image behind.
    fn refused(&self, profile: &Path, want: &str) {
        let out = self.build(profile).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains(want), "wanted {want:?} in: {stderr}");
        assert!(!self.path("out").exists(), "an image was written");
    }

    /// Puts a wheel where an earlier fetch would have left it: the cache, under its hash.
    fn cache_wheel(&self, fixture_rel: &str) -> String {
        let bytes = std::fs::read(fixture(fixture_rel)).unwrap();
        let sha = sha256_hex(&bytes);
        let name = Path::new(fixture_rel)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        self.put(&format!("cache/wheels/sha256/{sha}/{name}"), &bytes);
        sha
    }

    /// Puts an npm tarball in the cache under its sha512; returns its integrity string.
    fn cache_tarball(&self, fixture_rel: &str) -> String {
        use base64::Engine;
        let bytes = std::fs::read(fixture(fixture_rel)).unwrap();
        let digest = sha2::Sha512::digest(&bytes);
        self.put(
            &format!("cache/npm/sha512/{}.tgz", hex::encode(digest)),
            &bytes,
        );
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }
}

const PYTHON_PROFILE: &str = r#"schema = 1
[image]
name = "deps"
version = "0.1.0"
source-date-epoch = 1735689600
[kernel]
prebuilt = "{root}/.cache/debian-cloud-kernel/vmlinuz"
cmdline = "console=ttyS0"
[init]
argv = ["/usr/bin/python3.11", "-I", "-c", "import evil"]
[runtime.python]
bytecode = false
[packages]
lock = "{root}/profiles/python-fn.lock"
debian = ["python3.11-minimal"]
[packages.python]
requirements = "req.txt"
"#;

const NPM_PROFILE: &str = r#"schema = 1
[image]
name = "deps"
version = "0.1.0"
source-date-epoch = 1735689600
[kernel]
prebuilt = "{root}/.cache/debian-cloud-kernel/vmlinuz"
cmdline = "console=ttyS0"
[init]
argv = ["/bin/busybox", "true"]
[packages]
lock = "{root}/profiles/hello-stock.lock"
debian = ["busybox-static"]
[packages.npm]
lock = "package-lock.json"
into = "/srv/fn"
"#;

fn npm_lock(integrity: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "fn", "lockfileVersion": 3, "requires": true,
        "packages": {
            "": {"name": "fn", "dependencies": {"evil": "1.0.0"}},
            "node_modules/evil": {
                "version": "1.0.0",
                "resolved": "https://registry.npmjs.org/evil/-/evil-1.0.0.tgz",
                "integrity": integrity,
                "license": "MIT"
            }
        }
    })
}

#[test]
fn a_good_wheel_and_a_good_tarball_install() {
    // The control for the refusals below: the same profiles with the good fixtures build.
    let c = Case::new();
    let sha = c.cache_wheel("good/evil-1.0-py3-none-any.whl");
    c.build(&c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")))
        .success();
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("out/sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let evil = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["purl"] == "pkg:pypi/evil@1.0")
        .expect("the wheel's component");
    assert_eq!(evil["licenses"][0]["expression"], "MIT");
    assert_eq!(evil["hashes"][0]["content"], sha.as_str());

    let c = Case::new();
    let integrity = c.cache_tarball("good.tgz");
    c.build(&c.npm(&npm_lock(&integrity))).success();
    stratos(&c.path("cache"))
        .arg("inspect")
        .arg(c.path("out"))
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "pkg:npm/evil@1.0.0#node_modules/evil",
        ));
}

#[test]
fn wheel_whose_record_hash_is_wrong() {
    let c = Case::new();
    let sha = c.cache_wheel("record-hash-wrong/evil-1.0-py3-none-any.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "\"evil/__init__.py\" does not match its RECORD entry",
    );
}

#[test]
fn wheel_with_dotdot_member_names() {
    let c = Case::new();
    let sha = c.cache_wheel("dotdot/evil-1.0-py3-none-any.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "refusing member \"../../../../etc/evil.py\": a `..` component",
    );
}

#[test]
fn wheel_with_absolute_member_names() {
    let c = Case::new();
    let sha = c.cache_wheel("absolute/evil-1.0-py3-none-any.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "refusing member \"/etc/evil.py\": an absolute or non-POSIX name",
    );
}

#[test]
fn wheel_with_a_file_missing_from_record() {
    let c = Case::new();
    let sha = c.cache_wheel("unrecorded/evil-1.0-py3-none-any.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "\"evil/backdoor.py\" is not in RECORD",
    );
}

#[test]
fn wheel_for_another_platform() {
    let c = Case::new();
    let sha = c.cache_wheel("windows/evil-1.0-cp311-cp311-win_amd64.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "req.txt: evil 1.0: no wheel for x86-64: only win_amd64 (evil-1.0-cp311-cp311-win_amd64.whl); pin the hash of its manylinux x86_64 wheel in",
    );
}

#[test]
fn wheel_whose_hash_the_requirements_do_not_pin() {
    // A prefetched wheel of the right name and version, but not the file the hashes pin.
    let c = Case::new();
    let good = std::fs::read(fixture("good/evil-1.0-py3-none-any.whl")).unwrap();
    c.put("prefetch/wheels/evil-1.0-py3-none-any.whl", &good);
    let other = "ab".repeat(32);
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{other}\n")),
        &format!(
            "req.txt does not pin {}/evil-1.0-py3-none-any.whl (sha256 {})",
            c.path("prefetch/wheels").display(),
            sha256_hex(&good)
        ),
    );
}

#[test]
fn unhashed_and_unpinned_requirements() {
    let c = Case::new();
    c.refused(
        &c.python("# pinned, not hashed\nevil==1.0\n"),
        "req.txt:2: evil==1.0 has no --hash",
    );
    c.refused(
        &c.python("evil>=1.0 --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000\n"),
        "req.txt:1: \"evil>=1.0\" is not pinned",
    );
}

#[test]
fn npm_tarball_whose_integrity_does_not_match() {
    let c = Case::new();
    // The lock pins good.tgz; the prefetched file under its name is another one.
    let integrity = {
        use base64::Engine;
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(
                std::fs::read(fixture("good.tgz")).unwrap()
            ))
        )
    };
    let pinned = hex::encode(sha2::Sha512::digest(
        std::fs::read(fixture("good.tgz")).unwrap(),
    ));
    c.put(
        &format!("prefetch/npm/{pinned}.tgz"),
        &std::fs::read(fixture("escape.tgz")).unwrap(),
    );
    c.refused(
        &c.npm(&npm_lock(&integrity)),
        &format!("{pinned}.tgz does not match the lock's integrity (sha512)"),
    );
}

#[test]
fn npm_tarball_with_a_path_escape() {
    let c = Case::new();
    let integrity = c.cache_tarball("escape.tgz");
    c.refused(
        &c.npm(&npm_lock(&integrity)),
        "refusing member \"package/../../../../etc/evil.js\": a `..` component",
    );
}

#[test]
fn npm_tarball_with_a_symlink_out_of_node_modules() {
    let c = Case::new();
    let integrity = c.cache_tarball("symlink.tgz");
    c.refused(
        &c.npm(&npm_lock(&integrity)),
        "refusing member \"package/evil\": a link (to \"../../../../etc/passwd\")",
    );
}

#[test]
fn wheel_whose_compiled_module_needs_a_library_the_image_lacks() {
    let c = Case::new();
    let sha = c.cache_wheel("native/evil-1.0-cp311-cp311-manylinux_2_17_x86_64.whl");
    c.refused(
        &c.python(&format!("evil==1.0 --hash=sha256:{sha}\n")),
        "wheel evil-1.0-cp311-cp311-manylinux_2_17_x86_64.whl: /usr/local/lib/python3.11/dist-packages/evil/_native.cpython-311-x86_64-linux-gnu.so needs the shared library libq.so.6, which is not in the image",
    );
}
