//! The package side of arm64 images, without a kernel or a VM: `stratos lock --arch aarch64`
//! reads apt's binary-arm64 indexes and writes `NAME.aarch64.lock`; the committed arm64 locks
//! pin arm64 (or `all`) builds of the x86-64 locks' packages; `build --check --arch aarch64
//! --offline` finds every `.deb`, wheel and npm tarball they pin; a requirement with no wheel
//! for aarch64 is refused naming the requirements file, the package and what is pinned instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;
use stratos::arch::Arch;
use stratos::packages::debian::lock::LockFile;

/// The example profiles built for both architectures.
const PROFILES: &[&str] = &["hello", "python-fn", "node-fn"];

fn names(lock: &LockFile) -> BTreeSet<String> {
    lock.packages.iter().map(|p| p.name.clone()).collect()
}

#[test]
fn the_arm64_locks_pin_arm64_builds_of_the_x86_64_locks_packages() {
    for name in PROFILES {
        let x86_path = root().join(format!("profiles/{name}.lock"));
        let arm_path = root().join(format!("profiles/{name}.aarch64.lock"));
        let x86 = LockFile::load(&x86_path, Arch::X86_64).unwrap();
        // Loading checks every entry is for an arm64 image, too.
        let arm = LockFile::load(&arm_path, Arch::Aarch64).unwrap();
        for p in &arm.packages {
            assert!(
                p.arch == "arm64" || p.arch == "all",
                "{}: {} is for {}",
                arm_path.display(),
                p.name,
                p.arch
            );
        }
        assert!(
            arm.packages.iter().any(|p| p.arch == "arm64"),
            "{}: nothing arm64",
            arm_path.display()
        );
        assert_eq!(names(&arm), names(&x86), "{name}: the two locks' packages");
        // The x86-64 lock cannot be read as an arm64 one: each names what it is for.
        let e = LockFile::load(&x86_path, Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot run in an aarch64 image"), "{e}");
    }
}

/// A profile for both architectures with `debian` as its packages, in a fixture directory.
fn two_arch_profile(f: &Fixture, debian: &str) -> PathBuf {
    let text = PROFILE
        .replace(
            "source-date-epoch = 1700000000",
            "source-date-epoch = 1700000000\narch = [\"x86_64\", \"aarch64\"]",
        )
        .replace(
            "cmdline = \"console=ttyS0 panic=-1\"\n",
            "[kernel.x86_64]\ncmdline = \"console=ttyS0 panic=-1\"\n[kernel.aarch64]\ncmdline = \"console=ttyAMA0 panic=-1\"\n",
        );
    f.write(
        "profile.toml",
        format!("{text}\n[packages]\ndebian = [\"{debian}\"]\n").as_bytes(),
    );
    f.profile()
}

/// apt configured with one repository offering `hello` for amd64 and arm64, which depends on
/// `hello-data` (`Architecture: all`, listed in both indexes); the `.deb` bytes are in
/// `cache`'s package cache under their digests, so `stratos lock` downloads nothing.
fn two_arch_repository(dir: &Path, cache: &Path) -> PathBuf {
    for sub in ["lists", "empty", "cache"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let p = |s: &str| dir.join(s).display().to_string();
    std::fs::write(dir.join("status"), b"").unwrap();
    std::fs::write(
        dir.join("sources.list"),
        "deb [trusted=yes arch=amd64,arm64] http://debian.invalid/debian bookworm main\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("apt.conf"),
        format!(
            "Dir::Etc::SourceList \"{}\";\nDir::Etc::SourceParts \"{}\";\n\
             Dir::Etc::PreferencesParts \"{}\";\nDir::State::Lists \"{}\";\n\
             Dir::State::status \"{}\";\nDir::Cache \"{}\";\n\
             APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; \"arm64\"; }};\n",
            p("sources.list"),
            p("empty"),
            p("empty"),
            p("lists"),
            p("status"),
            p("cache"),
        ),
    )
    .unwrap();
    let list = "debian.invalid_debian_dists_bookworm";
    std::fs::write(
        dir.join(format!("lists/{list}_Release")),
        "Origin: Debian\nLabel: Debian\nSuite: bookworm\nCodename: bookworm\n\
         Architectures: amd64 arm64\nComponents: main\n",
    )
    .unwrap();
    let debs = cache.join("debs/sha256");
    std::fs::create_dir_all(&debs).unwrap();
    let stanza = |name: &str, arch: &str, depends: &str| {
        let deb = format!("{name} 1.0-1 {arch}\n").into_bytes();
        let sha = sha256_hex(&deb);
        std::fs::write(debs.join(format!("{sha}.deb")), &deb).unwrap();
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: {arch}\n{depends}\
             Filename: pool/h/{name}_1.0-1_{arch}.deb\nSize: {}\nSHA256: {sha}\n\n",
            deb.len()
        )
    };
    for arch in ["amd64", "arm64"] {
        let index = stanza("hello", arch, "Depends: hello-data (= 1.0-1)\n")
            + &stanza("hello-data", "all", "");
        std::fs::write(
            dir.join(format!("lists/{list}_main_binary-{arch}_Packages")),
            index,
        )
        .unwrap();
    }
    dir.join("apt.conf")
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn lock_for_aarch64_reads_the_arm64_index_and_writes_the_arm64_lock() {
    require_tool("apt-get");
    let cache = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let config = two_arch_repository(apt.path(), cache.path());
    let f = Fixture::new();
    let profile = two_arch_profile(&f, "hello");
    let out = stratos_std(cache.path())
        .env("APT_CONFIG", &config)
        .args(["lock", "--offline", "--arch", "aarch64"])
        .arg(&profile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !f.path("profile.lock").exists(),
        "the x86-64 lock was written"
    );
    let lock = LockFile::load(&f.path("profile.aarch64.lock"), Arch::Aarch64).unwrap();
    let got: Vec<(&str, &str)> = lock
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.arch.as_str()))
        .collect();
    assert_eq!(got, [("hello", "arm64"), ("hello-data", "all")]);
    // The same profile locked for x86-64 takes the amd64 build, in its own file.
    let out = stratos_std(cache.path())
        .env("APT_CONFIG", &config)
        .args(["lock", "--offline"])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = LockFile::load(&f.path("profile.lock"), Arch::X86_64).unwrap();
    assert_eq!(lock.packages[0].arch, "amd64");
}

/// An arm64 boot image's first bytes (`Documentation/arch/arm64/booting.rst`: the magic
/// "ARM\x64" at offset 56): `--check` only reads a prebuilt kernel.
fn fake_arm64_image() -> Vec<u8> {
    let mut b = vec![0u8; 0x1000];
    b[0x38..0x3c].copy_from_slice(b"ARM\x64");
    b
}

/// One of the example profiles, as its aarch64 build reads it, with a prebuilt (fake) kernel
/// instead of one built from source, so `--check` never extracts or configures a kernel: its
/// packages, locks, overlays, npm lock and seccomp policy are the real ones (paths made
/// absolute).
fn example_with_prebuilt_kernel(dir: &Path, name: &str) -> PathBuf {
    let profiles = root().join("profiles");
    let text = std::fs::read_to_string(profiles.join(format!("{name}.toml"))).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    let abs = |rel: &toml::Value| {
        toml::Value::String(profiles.join(rel.as_str().unwrap()).display().to_string())
    };
    std::fs::write(dir.join("Image"), fake_arm64_image()).unwrap();
    let mut kernel = toml::Table::new();
    kernel.insert(
        "prebuilt".into(),
        dir.join("Image").display().to_string().into(),
    );
    kernel.insert("cmdline".into(), "console=ttyAMA0".into());
    t.insert("kernel".into(), kernel.into());
    if let Some(seccomp) = t.get_mut("seccomp").and_then(|s| s.as_table_mut()) {
        let policy = abs(&seccomp["policy"]);
        seccomp.insert("policy".into(), policy);
    }
    for o in t
        .get_mut("overlay")
        .and_then(|o| o.as_array_mut())
        .into_iter()
        .flatten()
    {
        let path = abs(&o["path"]);
        o.as_table_mut().unwrap().insert("path".into(), path);
    }
    let pkgs = t["packages"].as_table_mut().unwrap();
    let lock = profiles.join(format!("{name}.lock")).display().to_string();
    pkgs.insert("lock".into(), lock.into());
    if let Some(npm) = pkgs.get_mut("npm").and_then(|n| n.as_table_mut()) {
        let lock = abs(&npm["lock"]);
        npm.insert("lock".into(), lock);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

#[test]
fn build_check_for_aarch64_finds_every_pinned_package_offline() {
    aarch64_init();
    for (name, debs, npm) in [("hello", 1, 0), ("python-fn", 8, 0), ("node-fn", 18, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let profile = example_with_prebuilt_kernel(dir.path(), name);
        // A fresh cache: every .deb comes from where ci/setup put it (/var/cache/stratos/debs).
        let cache = tempfile::tempdir().unwrap();
        let out = stratos_std(cache.path())
            .args(["build", "--check", "--offline", "--arch", "aarch64"])
            .arg(&profile)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "every input checked ({debs} .debs, 0 wheels, {npm} npm packages"
            )),
            "{name}: {stdout}"
        );
        // What was checked is the arm64 lock's: its .debs are now in the cache, by digest.
        let arm = root().join(format!("profiles/{name}.aarch64.lock"));
        for p in LockFile::load(&arm, Arch::Aarch64).unwrap().packages {
            let cached = cache.path().join(format!("debs/sha256/{}.deb", p.sha256));
            assert!(cached.is_file(), "{name}: {} not checked", p.name);
        }
    }
}

const WHEEL_PROFILE: &str = r#"schema = 1
[image]
name = "wheels"
version = "0.1.0"
source-date-epoch = 1735689600
arch = ["x86_64", "aarch64"]
[kernel]
prebuilt = "Image"
[kernel.x86_64]
cmdline = "console=ttyS0"
[kernel.aarch64]
cmdline = "console=ttyAMA0"
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

#[test]
fn a_requirement_with_no_aarch64_wheel_is_refused_naming_the_file_the_package_and_what_is_pinned() {
    aarch64_init();
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("Image"), fake_arm64_image()).unwrap();
    std::fs::write(
        d.join("p.toml"),
        WHEEL_PROFILE.replace("{root}", &root().display().to_string()),
    )
    .unwrap();
    // Only an x86-64 and a macOS build of it are pinned (and cached: nothing is downloaded).
    // The choice is made on the file names and pins, before any wheel is opened.
    let x86 = "evil-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
    let mac = "evil-1.0-cp311-cp311-macosx_11_0_arm64.whl";
    let mut hashes = Vec::new();
    for (file, bytes) in [(x86, b"x86-64 wheel".as_slice()), (mac, b"macOS wheel")] {
        let sha = sha256_hex(bytes);
        let at = cache.path().join(format!("wheels/sha256/{sha}/{file}"));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, bytes).unwrap();
        hashes.push(format!("--hash=sha256:{sha}"));
    }
    std::fs::write(
        d.join("req.txt"),
        format!("evil==1.0 {}\n", hashes.join(" ")),
    )
    .unwrap();
    let check = |arch: &str| {
        stratos_std(cache.path())
            .env("STRATOS_PREFETCH_DIR", d.join("prefetch"))
            .args(["build", "--check", "--offline", "--arch", arch])
            .arg(d.join("p.toml"))
            .output()
            .unwrap()
    };
    let out = check("aarch64");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let want = format!(
        "{}: evil 1.0: no wheel for aarch64: only macosx_11_0_arm64, manylinux2014_x86_64, manylinux_2_17_x86_64 ({mac}, {x86}); pin the hash of its manylinux aarch64 wheel in {} too",
        d.join("req.txt").display(),
        d.join("req.txt").display()
    );
    assert!(stderr.contains(&want), "wanted {want:?} in: {stderr}");
    // The control: for x86-64 the same pins hold a wheel that fits.
    std::fs::write(d.join("Image"), fake_kernel()).unwrap();
    let out = check("x86_64");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
