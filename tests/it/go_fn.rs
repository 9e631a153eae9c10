//! Go functions, without a VM (a fake kernel): go-api's function builds offline from the
//! modules its go.sum pins, bit-identically from two paths as two users on two hosts at two
//! times; its SBOM names the binary, the toolchain's standard library and the module with its
//! h1: hash. A module zip with one changed byte, a go.mod asking for a newer Go, a directory
//! replacement outside the source, an unpinned requirement and a module missing offline each
//! fail before anything is built, naming the module or the go.mod line. (The VM tier boots
//! go-fn, go-fn-stock and go-api: vm/go_fn.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const GOROOT: &str = "/usr/lib/go-1.19";

fn require_go() {
    assert!(
        Path::new(GOROOT).join("bin/go").is_file(),
        "{GOROOT}/bin/go is missing: run `./ci/setup` (it installs golang-go, Debian's Go 1.19)"
    );
    require_tool("bwrap");
}

/// A profile in `dir` building the Go module `source`, which is `dir/fn` (named relatively, so
/// two such profiles are the same bytes wherever they are); the fake kernel, no packages.
fn go_profile(dir: &Path, source: &Path, proxy: &str) -> PathBuf {
    assert_eq!(source, dir.join("fn"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("bzImage"), fake_kernel()).unwrap();
    let text = format!(
        r#"schema = 1
[image]
name = "go-test"
version = "0.1.0"
source-date-epoch = 1735689600
[kernel]
prebuilt = "bzImage"
[init]
argv = ["/srv/fn/bootstrap"]
readiness = {{ notify = true }}
uid = 1000
gid = 1000
[runtime.go]
source = "fn"
output = "/srv/fn/bootstrap"
proxy = "{proxy}"
[seccomp]
policy = "{}"
"#,
        root().join("profiles/seccomp/go.json").display()
    );
    let p = dir.join("go.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn proxy() -> String {
    root().join("functions/go-proxy").display().to_string()
}

// One scenario over two builds: the steps compare the same two images.
#[allow(clippy::too_many_lines)]
#[test]
fn go_api_builds_offline_reproducibly_and_its_sbom_pins_the_module() {
    use std::os::unix::fs::PermissionsExt;
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Two copies of the function at two paths; the second is built by another user.
    let (src_a, src_b) = (w.join("a/fn"), w.join("b/some/deeper/fn"));
    copy_dir(&root().join("functions/go-api"), &src_a);
    copy_dir(&root().join("functions/go-api"), &src_b);
    let pa = go_profile(&w.join("a"), &src_a, &proxy());
    let pb = go_profile(&w.join("b/some/deeper"), &src_b, &proxy());
    let (cache_a, cache_b, out_b_parent) = (w.join("cache-a"), w.join("cache-b"), w.join("ob"));
    for d in [&cache_b, &out_b_parent] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for f in walk_files(&w.join("b")).into_iter().chain([
        w.join("b"),
        w.join("b/some"),
        w.join("b/some/deeper"),
        src_b.clone(),
    ]) {
        let m = std::fs::metadata(&f).unwrap();
        let mode = m.permissions().mode() | 0o044 | if m.is_dir() { 0o011 } else { 0 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out_a = w.join("out-a");
    let (ok, err) = try_build(&cache_a, &pa, &out_a);
    assert!(ok, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The second build: another user (when root), another host name, umask, TZ and locale.
    let out_b = out_b_parent.join("two");
    let as_other = if rustix::process::geteuid().is_root() {
        "exec setpriv --reuid=65534 --regid=65534 --clear-groups -- sh -c 'umask 077 && exec \"$0\" build \"$1\" --out \"$2\" --offline -q' \"$0\" \"$@\""
    } else {
        "umask 077 && exec \"$0\" build \"$1\" --out \"$2\" --offline -q"
    };
    let ns: &[&str] = if rustix::process::geteuid().is_root() {
        &["--uts"]
    } else {
        &["--user", "--map-root-user", "--uts"]
    };
    let o = Command::new("unshare")
        .args(ns)
        .args([
            "sh",
            "-c",
            &format!("hostname go-repro-elsewhere && {as_other}"),
        ])
        .arg(bin())
        .arg(&pb)
        .arg(&out_b)
        .current_dir(&out_b_parent)
        .env("STRATOS_CACHE", &cache_b)
        .env("HOME", &cache_b)
        .env("TZ", "Asia/Tokyo")
        .env("LC_ALL", "fr_FR.UTF-8")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(digests(&out_a), digests(&out_b), "two builds differ");

    // The manifest names the toolchain; the SBOM the binary, the standard library and the
    // module, with the h1: hash go.sum pins it by.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["go"]["toolchain"], "go1.19.8", "{manifest}");
    assert_eq!(manifest["go"]["module"], "example.com/go-api");
    assert_eq!(manifest["go"]["binary"], "/srv/fn/bootstrap");
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_a.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let std = component(&sbom, "pkg:golang/stdlib@1.19.8");
    assert_eq!(std["version"], "1.19.8");
    let greet = component(&sbom, "pkg:golang/example.com/greet@v1.0.0");
    let sum = std::fs::read_to_string(root().join("functions/go-api/go.sum")).unwrap();
    let h1 = sum
        .lines()
        .find(|l| l.starts_with("example.com/greet v1.0.0 "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap();
    assert!(
        greet["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "stratos:go-sum" && p["value"] == h1),
        "{greet}"
    );
    let app = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "example.com/go-api")
        .expect("the function's component");
    assert_eq!(app["type"], "application");
    assert!(
        app["evidence"]["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["location"] == "/srv/fn/bootstrap"),
        "{app}"
    );
    stratos(&cache_a)
        .args(["inspect", "--orphans"])
        .arg(&out_a)
        .assert()
        .success()
        .stderr(predicates::str::contains("no orphans"));
    // The binary is static, stripped, and holds no path of the build machine.
    let tar = Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(out_a.join("rootfs.tar.zst"))
        .arg("srv/fn/bootstrap")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let bin = tar.stdout;
    assert!(bin.len() > 1_000_000, "{}", bin.len());
    let text = String::from_utf8_lossy(&bin);
    for leak in [w.to_str().unwrap(), "stratos-go-", "/usr/lib/go-1.19"] {
        assert!(!text.contains(leak), "the binary holds {leak:?}");
    }
}

/// Rewrites member `name` of the zip at `path` with one changed byte (CRCs recomputed: the
/// zip is valid, its content is not the pinned one).
fn change_one_byte(path: &Path, name: &str) {
    let script = r#"
import sys, zipfile
path, name = sys.argv[1], sys.argv[2]
members = []
with zipfile.ZipFile(path) as z:
    for i in z.infolist():
        data = z.read(i)
        if i.filename == name:
            data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
        members.append((i, data))
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for i, data in members:
        z.writestr(i, data)
"#;
    require_tool("python3");
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(name)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_module_zip_with_one_changed_byte_fails_the_build_naming_the_module() {
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let proxy = w.join("proxy");
    copy_dir(&root().join("functions/go-proxy"), &proxy);
    let zip = proxy.join("example.com/greet/@v/v1.0.0.zip");
    change_one_byte(&zip, "example.com/greet@v1.0.0/greet.go");
    let src = w.join("fn");
    copy_dir(&root().join("functions/go-api"), &src);
    let p = go_profile(w, &src, proxy.to_str().unwrap());
    let out = w.join("out");
    let (ok, err) = try_build(&w.join("cache"), &p, &out);
    assert!(!ok);
    assert!(
        err.contains("example.com/greet@v1.0.0")
            && err.contains("does not match go.sum")
            && err.contains("go.sum, line 1"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written for a refused build");
    // The same without --offline: a proxy directory is only read, and says the same.
    let o = stratos_std(&w.join("cache"))
        .arg("build")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("example.com/greet@v1.0.0") && err.contains("does not match go.sum"),
        "{err}"
    );
    // A flipped byte that breaks the zip itself is refused the same way.
    copy_dir(&root().join("functions/go-proxy"), &w.join("proxy2"));
    let zip2 = w.join("proxy2/example.com/greet/@v/v1.0.0.zip");
    let mut bytes = std::fs::read(&zip2).unwrap();
    bytes[60] ^= 0x40;
    std::fs::write(&zip2, bytes).unwrap();
    let src2 = w.join("two/fn");
    copy_dir(&src, &src2);
    let p2 = go_profile(&w.join("two"), &src2, w.join("proxy2").to_str().unwrap());
    let (ok, err) = try_build(&w.join("cache2"), &p2, &out);
    assert!(!ok);
    assert!(
        err.contains("example.com/greet@v1.0.0") && err.contains("go.sum"),
        "{err}"
    );
}

/// Writes go-api's source to `dir` with `edit` applied to its go.mod.
fn api_with_go_mod(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let src = dir.join("fn");
    copy_dir(&root().join("functions/go-api"), &src);
    let m = std::fs::read_to_string(src.join("go.mod")).unwrap();
    std::fs::write(src.join("go.mod"), edit(&m)).unwrap();
    src
}

/// One refused module: its name, the go.mod edit, the proxy, what the error must say and what
/// it must not.
type Refusal<'a> = (
    &'a str,
    fn(&str) -> String,
    String,
    &'a [&'a str],
    Option<&'a str>,
);

#[test]
fn go_mod_lines_the_toolchain_cannot_honour_fail_naming_them() {
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty-proxy");
    std::fs::create_dir_all(&empty).unwrap();
    let cases: [Refusal; 7] = [
        // Go 1.19 would build a `go 1.22` module silently; StratOS names the line and the
        // toolchain.
        (
            "newer-go",
            |m| m.replace("go 1.19", "go 1.22"),
            proxy(),
            &["go.mod:3", "go 1.22", "go1.19.8"],
            None,
        ),
        (
            "toolchain",
            |m| m.replace("go 1.19\n", "go 1.19\ntoolchain go1.21.5\n"),
            proxy(),
            &["go.mod:4", "toolchain go1.21.5"],
            None,
        ),
        // A directory replacement that leaves the source.
        (
            "replace",
            |m| format!("{m}\nreplace example.com/greet => ../../elsewhere\n"),
            proxy(),
            &[
                "replace example.com/greet => ../../elsewhere",
                "not inside the module's source",
            ],
            None,
        ),
        // A requirement go.sum does not pin.
        (
            "unpinned",
            |m| format!("{m}require example.com/other v1.2.3\n"),
            proxy(),
            &["example.com/other v1.2.3", "go.sum does not pin it"],
            None,
        ),
        // Offline, from an empty cache, with a proxy on the network: the module is named.
        (
            "offline",
            str::to_owned,
            "https://proxy.golang.org".into(),
            &["example.com/greet@v1.0.0", "--offline"],
            None,
        ),
        // An absolute directory could not be built in the sandbox, and would name this machine.
        (
            "absolute",
            |m| format!("{m}\nreplace example.com/greet => /srv/greet\n"),
            proxy(),
            &["go.mod:7", "relative to the module"],
            None,
        ),
        // A proxy directory that lacks a pinned module says so (not "--offline").
        (
            "missing",
            str::to_owned,
            empty.display().to_string(),
            &["example.com/greet@v1.0.0", "the profile's proxy directory"],
            Some("--offline"),
        ),
    ];
    for (name, edit, proxy, says, never) in cases {
        let dir = work.path().join(name);
        let src = api_with_go_mod(&dir, edit);
        let p = go_profile(&dir, &src, &proxy);
        let (ok, err) = try_build(&dir.join("cache"), &p, &dir.join("out"));
        assert!(!ok, "{name}: built");
        for s in says {
            assert!(err.contains(s), "{name}: no {s:?} in {err}");
        }
        if let Some(n) = never {
            assert!(!err.contains(n), "{name}: {n:?} in {err}");
        }
    }
}

/// A dependency whose go.mod asks for a newer Go than the toolchain: Go 1.19 would compile it
/// with the older language's meaning; the build names the module and its line instead.
#[test]
fn a_dependency_asking_for_a_newer_go_fails_naming_it() {
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let proxy = w.join("proxy");
    copy_dir(&root().join("functions/go-proxy"), &proxy);
    let m = proxy.join("example.com/greet/@v/v1.0.0.mod");
    let newer = b"module example.com/greet\n\ngo 1.22\n";
    std::fs::write(&m, newer).unwrap();
    let src = w.join("fn");
    copy_dir(&root().join("functions/go-api"), &src);
    // go.sum pins that go.mod (so the pin holds, and only its go line is wrong).
    let h1 = stratos::packages::go::h1::display(&stratos::packages::go::h1::of_go_mod(newer));
    let sum = std::fs::read_to_string(src.join("go.sum")).unwrap();
    let sum: String = sum
        .lines()
        .map(
            |l| match l.strip_prefix("example.com/greet v1.0.0/go.mod ") {
                Some(_) => format!("example.com/greet v1.0.0/go.mod {h1}\n"),
                None => format!("{l}\n"),
            },
        )
        .collect();
    std::fs::write(src.join("go.sum"), sum).unwrap();
    let p = go_profile(w, &src, proxy.to_str().unwrap());
    let (ok, err) = try_build(&w.join("cache"), &p, &w.join("out"));
    assert!(!ok);
    assert!(
        err.contains("example.com/greet@v1.0.0")
            && err.contains("go 1.22 (line 3)")
            && err.contains("go1.19.8"),
        "{err}"
    );
}

/// A module replaced by a directory inside the source (`replace m => ./m`) is built from it and
/// is a component of its own in the SBOM (no go.sum pin: it is the function's own code).
#[test]
fn a_directory_replacement_inside_the_source_builds_and_is_in_the_sbom() {
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = api_with_go_mod(w, |m| {
        format!("{m}\nreplace example.com/greet => ./greet\n")
    });
    copy_dir(
        &root().join("functions/go-modules/greet"),
        &src.join("greet"),
    );
    std::fs::write(src.join("go.sum"), "").unwrap();
    // No proxy is needed: nothing is fetched.
    let empty = w.join("empty-proxy");
    std::fs::create_dir_all(&empty).unwrap();
    let p = go_profile(w, &src, empty.to_str().unwrap());
    let out = w.join("out");
    let (ok, err) = try_build(&w.join("cache"), &p, &out);
    assert!(ok, "{err}");
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let local = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == "go-dir:example.com/greet")
        .unwrap_or_else(|| panic!("no component for the replaced module: {sbom}"));
    assert!(local["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "stratos:go-dir" && p["value"] == "./greet"));
}

#[test]
fn a_function_that_does_not_compile_fails_with_go_s_message() {
    require_go();
    require_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("fn");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("go.mod"), "module example.com/broken\n\ngo 1.19\n").unwrap();
    // The message quotes the source: a terminal escape in it reaches the operator escaped.
    std::fs::write(
        src.join("main.go"),
        "package main\n\nfunc main() { undefinedCall(\"\x1b[31mred\") }\n",
    )
    .unwrap();
    let p = go_profile(w, &src, &proxy());
    let (ok, err) = try_build(&w.join("cache"), &p, &w.join("out"));
    assert!(!ok);
    assert!(
        err.contains("go build of")
            && err.contains("main.go:3")
            && err.contains("undefined: undefinedCall"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// `--arch aarch64`: the same module is cross-compiled (GOARCH=arm64) into a static arm64
/// binary; the SBOM's standard library is the same toolchain's.
#[test]
fn an_aarch64_image_carries_an_arm64_static_binary() {
    require_go();
    require_init();
    aarch64_init();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("fn");
    copy_dir(&root().join("functions/go-fn"), &src);
    let p = go_profile(w, &src, &proxy());
    std::fs::write(w.join("Image"), fake_arm64_kernel()).unwrap();
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "source-date-epoch = 1735689600",
        "source-date-epoch = 1735689600\narch = [\"x86_64\", \"aarch64\"]",
    ) + "[kernel.aarch64]\nprebuilt = \"Image\"\n";
    std::fs::write(&p, text).unwrap();
    let out = w.join("out");
    let o = stratos_std(&w.join("cache"))
        .arg("build")
        .arg(&p)
        .args(["--arch", "aarch64", "--offline", "-q", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tar = Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(out.join("rootfs.tar.zst"))
        .arg("srv/fn/bootstrap")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let elf = goblin::elf::Elf::parse(&tar.stdout).unwrap();
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
    assert!(elf.interpreter.is_none() && elf.libraries.is_empty());
    let sbom = std::fs::read_to_string(out.join("sbom.cdx.json")).unwrap();
    assert!(sbom.contains("pkg:golang/stdlib@1.19.8"));
}
