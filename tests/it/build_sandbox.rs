//! A build never runs the image's code on the host with the host's rights. A pinned,
//! hash-correct wheel carries the three ways Python runs code at startup — a top-level `.pth`,
//! a `sitecustomize.py` and a `usercustomize.py` in `dist-packages` — each trying to write a
//! marker file on the host and, at exit, to replace the bytecode the build is about to put in
//! the image. The bytecode step (the image's own interpreter) must run none of them: the build
//! succeeds, no marker appears and the image's `.pyc` are the compiler's.

use std::path::{Path, PathBuf};

use crate::common::*;
use sha2::Digest;

/// A ZIP of stored members (what a wheel is), with Unix modes.
fn zip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (name, data) in members {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let local = out.len() as u32;
        let len = (data.len() as u32).to_le_bytes();
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&len);
        out.extend_from_slice(&len);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        cd.extend_from_slice(&crc.sum().to_le_bytes());
        cd.extend_from_slice(&len);
        cd.extend_from_slice(&len);
        cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&[0; 8]);
        cd.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        cd.extend_from_slice(&local.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_at = out.len() as u32;
    let n = (members.len() as u16).to_le_bytes();
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&n);
    out.extend_from_slice(&n);
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A well-formed `evil 1.0` wheel with `files` and its RECORD.
fn wheel(files: &[(&str, String)]) -> Vec<u8> {
    use base64::Engine;
    let info = "evil-1.0.dist-info";
    let mut members: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| (n.to_string(), d.clone().into_bytes()))
        .collect();
    members.push((
        format!("{info}/METADATA"),
        b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\nLicense-Expression: MIT\n".to_vec(),
    ));
    members.push((
        format!("{info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: build_sandbox.rs\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    let mut record = String::new();
    for (name, data) in &members {
        let digest =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
        record.push_str(&format!("{name},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    members.push((format!("{info}/RECORD"), record.into_bytes()));
    zip(&members)
}

/// Python that, once run, registers an exit hook replacing `evil`'s bytecode under `site` (an
/// expression: the `dist-packages` directory) and then tries to create `marker` on the host.
fn hook(site: &str, marker: &Path) -> String {
    format!(
        "import os, atexit; \
         atexit.register(lambda d={site}: open(os.path.join(d, 'evil', '__pycache__', '__init__.cpython-311.pyc'), 'wb').write(b'poisoned by a startup hook')); \
         open({marker:?}, 'w').close()",
        marker = marker.display().to_string()
    )
}

const PROFILE: &str = r#"schema = 1
[image]
name = "sandbox"
version = "0.1.0"
source-date-epoch = 1735689600
[kernel]
prebuilt = "{root}/.cache/debian-cloud-kernel/vmlinuz"
cmdline = "console=ttyS0"
[init]
argv = ["/usr/bin/python3.11", "-I", "-c", "import evil"]
[runtime.python]
bytecode = true
[packages]
lock = "{root}/profiles/python-fn.lock"
debian = ["python3.11-minimal"]
[packages.python]
requirements = "req.txt"
"#;

/// One member of the image's root archive.
fn image_file(out: &Path, path: &str) -> Vec<u8> {
    let o = std::process::Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(out.join("rootfs.tar.zst"))
        .arg(path)
        .output()
        .unwrap();
    if !o.status.success() {
        let list = std::process::Command::new("tar")
            .args(["--zstd", "-tf"])
            .arg(out.join("rootfs.tar.zst"))
            .output()
            .unwrap();
        let near: Vec<String> = String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|l| l.contains("dist-packages"))
            .map(str::to_owned)
            .collect();
        panic!(
            "{path} is not in the image ({}); its dist-packages: {near:?}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    o.stdout
}

/// A build directory with the hostile wheel cached and pinned and a profile that compiles
/// bytecode; the hooks' markers go to `markers`.
fn stage(dir: &Path, markers: &Path) {
    let path = |rel: &str| -> PathBuf { dir.join(rel) };
    let marker = |name: &str| markers.join(name);
    let whl = wheel(&[
        ("evil/__init__.py", "VALUE = 1\n".to_owned()),
        // site.py executes a .pth line that starts with `import`, with `sitedir` in scope.
        ("evil.pth", format!("{}\n", hook("sitedir", &marker("pth")))),
        (
            "sitecustomize.py",
            format!(
                "{}\n",
                hook("os.path.dirname(__file__)", &marker("sitecustomize"))
            ),
        ),
        (
            "usercustomize.py",
            format!(
                "{}\n",
                hook("os.path.dirname(__file__)", &marker("usercustomize"))
            ),
        ),
    ]);
    let sha = hex::encode(sha2::Sha256::digest(&whl));
    let cached = path(&format!(
        "cache/wheels/sha256/{sha}/evil-1.0-py3-none-any.whl"
    ));
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, &whl).unwrap();
    std::fs::create_dir_all(path("prefetch/wheels")).unwrap();
    std::fs::write(path("req.txt"), format!("evil==1.0 --hash=sha256:{sha}\n")).unwrap();
    std::fs::write(
        path("p.toml"),
        PROFILE.replace("{root}", &root().display().to_string()),
    )
    .unwrap();
}

/// `stratos build` of the staged profile into `dir/out`, offline.
fn build(dir: &Path) -> assert_cmd::Command {
    let mut c = stratos(&dir.join("cache"));
    c.env("STRATOS_PREFETCH_DIR", dir.join("prefetch"))
        .arg("build")
        .arg(dir.join("p.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--offline");
    c
}

#[test]
fn wheel_startup_hooks_never_run_at_build() {
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    require_tool("bwrap");
    require_tool("tar");
    require_tool("zstd");
    let dir = tempfile::tempdir().unwrap();
    let path = |rel: &str| -> PathBuf { dir.path().join(rel) };
    // The markers live in this test's own directory: a hook that runs as the build user can
    // write there.
    let markers = path("markers");
    std::fs::create_dir(&markers).unwrap();
    stage(dir.path(), &markers);

    let out = build(dir.path()).assert();
    let o = out.get_output();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the build failed: {stderr}");
    assert!(!stderr.contains("stratos: + "), "{stderr}");

    let ran: Vec<String> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        ran.is_empty(),
        "the wheel's startup hooks ran on the build host: {ran:?}"
    );

    // The hooks' exit handlers did not replace the bytecode either: every .pyc of the wheel is
    // CPython 3.11's (magic 3495).
    let site = "usr/local/lib/python3.11/dist-packages";
    for m in [
        "evil/__pycache__/__init__.cpython-311.pyc",
        "__pycache__/sitecustomize.cpython-311.pyc",
        "__pycache__/usercustomize.cpython-311.pyc",
    ] {
        let pyc = image_file(&path("out"), &format!("{site}/{m}"));
        assert_eq!(
            &pyc[..4],
            &[0xa7, 0x0d, 0x0d, 0x0a],
            "{m} is not the compiler's: {:?}",
            String::from_utf8_lossy(&pyc[..pyc.len().min(40)])
        );
    }
}

#[test]
fn a_build_without_bubblewrap_names_it_and_fails_as_the_host_s_fault() {
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    stage(dir.path(), &markers);
    // A PATH without bwrap (nor anything else).
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = build(dir.path()).env("PATH", &empty).assert().code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("bubblewrap (`bwrap`) is not installed: install it with `apt-get install bubblewrap` (or run `sudo ./ci/setup`)"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists(), "an image was written");
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 0);
}

/// `-v` shows the commands a build runs — here the image's interpreter in the sandbox — as shell
/// lines; without it (the test above) none is shown.
#[test]
fn a_verbose_build_shows_the_sandbox_command_line() {
    require_setup_file(".cache/debian-cloud-kernel/vmlinuz");
    require_tool("bwrap");
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    stage(dir.path(), &markers);
    let out = build(dir.path()).arg("-v").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stratos: + ") && l.contains("bwrap"))
        .unwrap_or_else(|| panic!("no bwrap command line shown: {stderr}"));
    assert!(
        line.contains("--setenv PYTHONHASHSEED 0")
            && line.contains("python3.11")
            && line.contains(" $'\\nimport compileall"),
        "{line}"
    );
}
