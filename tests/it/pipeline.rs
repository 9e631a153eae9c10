//! The image pipeline end to end, on a self-contained fixture profile: reproducibility,
//! tampering, bad input, SBOM schema, archives readable by GNU tar and cpio.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use predicates::prelude::*;

fn build(cache: &Path, profile: &Path, out: &Path, key: Option<&Path>) {
    let mut c = stratos(cache);
    c.arg("build").arg(profile).arg("--out").arg(out).arg("-q");
    if let Some(k) = key {
        c.arg("--image-key").arg(k);
    }
    c.assert().success();
}

fn keygen(cache: &Path, prefix: &Path) {
    stratos(cache)
        .arg("keygen")
        .arg("--out")
        .arg(prefix)
        .assert()
        .success();
}

/// A disorderfs view of a directory with shuffled directory listings, unmounted on drop.
struct Shuffled {
    mnt: tempfile::TempDir,
}

impl Shuffled {
    fn mount(src: &Path) -> Option<Shuffled> {
        require_tool("disorderfs");
        if !Path::new("/dev/fuse").exists() {
            eprintln!("note: no /dev/fuse here: directory order varied by creation order only");
            return None;
        }
        let mnt = tempfile::tempdir().unwrap();
        let mut c = Command::new("disorderfs");
        c.args(["--shuffle-dirents=yes", "--reverse-dirents=no"]);
        if is_root() {
            // Let the unprivileged second build read it.
            c.args(["--multi-user=yes", "-o", "allow_other"]);
        }
        let ok = c.arg(src).arg(mnt.path()).status().unwrap().success();
        assert!(ok, "disorderfs could not mount {}", src.display());
        Some(Shuffled { mnt })
    }
}

impl Drop for Shuffled {
    fn drop(&mut self) {
        let _unmounted = Command::new("fusermount")
            .arg("-u")
            .arg(self.mnt.path())
            .status();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// One scenario over one set of builds: its steps compare the same two images, so it stays one
// function (clippy::too_many_lines is for the library; tests read top to bottom).
#[allow(clippy::too_many_lines)]
#[test]
fn reproducible_across_dirs_env_umask_time_user_hostname_and_listing_order() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let a = Fixture::new();
    let b = Fixture::new();
    // b's overlay files are created in the reverse order with other mtimes.
    std::fs::remove_dir_all(b.path("overlay")).unwrap();
    b.write_overlay_files(true);
    let key_dir = tempfile::tempdir().unwrap();
    keygen(cache.path(), &key_dir.path().join("k"));
    let key = key_dir.path().join("k.key");
    // The second build runs as another user: it needs to read the key and b's files, and to
    // write its cache and output.
    let key_b = b.path("k.key");
    std::fs::copy(&key, &key_b).unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let out_b_parent = tempfile::tempdir().unwrap();
    for d in [b.dir.path(), cache2.path(), out_b_parent.path()] {
        let mode = if d == b.dir.path() { 0o755 } else { 0o777 };
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for f in walk_files(b.dir.path()) {
        let m = std::fs::symlink_metadata(&f).unwrap();
        if !m.file_type().is_symlink() {
            let mode = m.permissions().mode() | 0o044 | if m.is_dir() { 0o011 } else { 0 };
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    // b is read through a view whose directory listings come in a shuffled order.
    let shuffled = Shuffled::mount(b.dir.path());
    let b_root = shuffled
        .as_ref()
        .map_or_else(|| b.dir.path().to_owned(), |s| s.mnt.path().to_owned());

    let out_a = a.path("out/one");
    let out_b = out_b_parent.path().join("elsewhere/deeper/two");
    // (profile, out, key, cwd, TZ, locale, umask, cache, as another user on another host)
    type Run<'a> = (
        &'a Path,
        &'a Path,
        &'a Path,
        &'a Path,
        &'a str,
        &'a str,
        &'a str,
        &'a Path,
        bool,
    );
    let run = |(profile, out, key, cwd, tz, lang, umask, cache, other): Run| {
        let build =
            format!("umask {umask} && exec \"$0\" build \"$1\" --out \"$2\" --image-key \"$3\" -q");
        let mut c = Command::new("sh");
        if other {
            // Another hostname (a new UTS namespace) and another user.
            let user = if is_root() {
                "exec setpriv --reuid=65534 --regid=65534 --clear-groups -- sh -c \"$BUILD\" \"$0\" \"$@\""
            } else {
                "exec sh -c \"$BUILD\" \"$0\" \"$@\""
            };
            let ns: &[&str] = if is_root() {
                &["--uts"]
            } else {
                &["--user", "--map-root-user", "--uts"]
            };
            c = Command::new("unshare");
            c.args(ns).args([
                "sh",
                "-c",
                &format!("hostname stratos-repro-elsewhere && {user}"),
            ]);
            c.env("BUILD", &build);
        } else {
            c.arg("-c").arg(&build);
        }
        let out_cmd = c
            .arg(bin())
            .arg(profile)
            .arg(out)
            .arg(key)
            .current_dir(cwd)
            .env("TZ", tz)
            .env("LANG", lang)
            .env("LC_ALL", lang)
            .env("STRATOS_CACHE", cache)
            .env("HOME", cache)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert!(
            out_cmd.status.success(),
            "{}",
            String::from_utf8_lossy(&out_cmd.stderr)
        );
    };
    run((
        &a.profile(),
        &out_a,
        &key,
        a.dir.path(),
        "UTC",
        "C",
        "022",
        cache.path(),
        false,
    ));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A second cache: nothing reused from the first build.
    run((
        &b_root.join("profile.toml"),
        &out_b,
        &b_root.join("k.key"),
        Path::new("/"),
        "Pacific/Chatham",
        "de_DE.UTF-8",
        "077",
        cache2.path(),
        true,
    ));
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(out_b.join("manifest.json"))
            .unwrap()
            .uid();
        assert_eq!(owner, 65534, "the second build really ran as another user");
    }
    drop(shuffled);
    let da = digests(&out_a);
    let db = digests(&out_b);
    assert_eq!(
        da.keys().collect::<Vec<_>>(),
        [
            "initramfs.cpio.zst",
            "kernel",
            "manifest.json",
            "manifest.sig",
            "rootfs.tar.zst",
            "sbom.cdx.json"
        ]
    );
    assert_eq!(da, db, "artifacts differ between the two builds");
}

#[test]
fn tampering_is_detected_and_named() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    keygen(cache.path(), &f.path("keys/release"));
    keygen(cache.path(), &f.path("keys/other"));
    let out = f.path("img");
    build(
        cache.path(),
        &f.profile(),
        &out,
        Some(&f.path("keys/release.key")),
    );
    let pubkey = f.path("keys/release.pub");
    stratos(cache.path())
        .args(["verify"])
        .arg(&out)
        .arg("--image-key")
        .arg(&pubkey)
        .assert()
        .success()
        .stdout(predicate::str::contains("verified: fixture 1.2.3 (x86_64)"));

    let names = [
        "initramfs.cpio.zst",
        "kernel",
        "rootfs.tar.zst",
        "sbom.cdx.json",
        "manifest.json",
        "manifest.sig",
    ];
    for name in names {
        for mode in ["flip", "truncate"] {
            let copy = f.path(&format!("tampered-{name}-{mode}"));
            std::fs::create_dir_all(&copy).unwrap();
            for e in std::fs::read_dir(&out).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
            }
            let p = copy.join(name);
            let mut bytes = std::fs::read(&p).unwrap();
            match mode {
                "flip" => {
                    let i = bytes.len() / 2;
                    bytes[i] ^= 0x01;
                }
                _ => bytes.truncate(bytes.len() / 2),
            }
            std::fs::write(&p, bytes).unwrap();
            let expect = match name {
                "manifest.json" => "does not match manifest.json".to_owned(),
                "manifest.sig" => "manifest.sig".to_owned(),
                other => format!("{other}: "),
            };
            stratos(cache.path())
                .arg("verify")
                .arg(&copy)
                .arg("--image-key")
                .arg(&pubkey)
                .assert()
                .code(1)
                .stderr(predicate::str::contains("verification FAILED"))
                .stderr(predicate::str::contains(expect));
        }
    }
    // A missing artifact and a missing signature.
    let copy = f.path("missing");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(copy.join("kernel")).unwrap();
    stratos(cache.path())
        .arg("verify")
        .arg(&copy)
        .arg("--image-key")
        .arg(&pubkey)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "kernel: listed in the manifest but missing",
        ));
    std::fs::remove_file(copy.join("manifest.sig")).unwrap();
    stratos(cache.path())
        .arg("verify")
        .arg(&copy)
        .arg("--image-key")
        .arg(&pubkey)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unsigned"));
    // The wrong public key.
    stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(f.path("keys/other.pub"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("signed by key"));
}

#[test]
fn unsigned_build_warns_loudly() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("img"))
        .assert()
        .success()
        .stderr(predicate::str::contains("UNSIGNED"));
    assert!(!f.path("img/manifest.sig").exists());
}

#[test]
fn signing_key_from_environment() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    keygen(cache.path(), &f.path("k"));
    stratos(cache.path())
        .env("STRATOS_SIGNING_KEY", f.path("k.key"))
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("img"))
        .assert()
        .success()
        .stderr(predicate::str::contains("UNSIGNED").not());
    stratos(cache.path())
        .arg("verify")
        .arg(f.path("img"))
        .arg("--image-key")
        .arg(f.path("k.pub"))
        .assert()
        .success();
}

/// Each bad input exits 2 with a message naming the place, and leaves no output directory.
#[test]
fn bad_input_is_rejected_without_leaving_output() {
    let cache = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            PROFILE.replace("[init]", "[init]\nbogus = true"),
            "profile.toml:13:1: unknown field `bogus`",
        ),
        (
            "wrong type",
            PROFILE.replace("version = \"1.2.3\"", "version = 123"),
            "profile.toml:5:11:",
        ),
        (
            "missing field",
            PROFILE.replace("argv = [\"/bin/fn\", \"--serve\"]\n", ""),
            "missing field `argv`",
        ),
        (
            "dotdot",
            PROFILE.replace("path = \"/etc/motd\"", "path = \"/etc/../../motd\""),
            "file[0].path: in-image path \"/etc/../../motd\" contains '..'",
        ),
        (
            "no overlay",
            PROFILE.replace("overlay/site", "overlay/nope"),
            "overlay[1].path:",
        ),
        (
            "file is a dir",
            PROFILE.replace("source = \"motd.txt\"", "source = \"overlay\""),
            "file[0].source:",
        ),
    ];
    for (what, text, expect) in cases {
        let f = Fixture::new();
        f.write("profile.toml", text.as_bytes());
        let out = f.path("out/img");
        stratos(cache.path())
            .arg("build")
            .arg(f.profile())
            .arg("--out")
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expect));
        assert!(!out.exists(), "{what}: output left behind");
        assert!(!f.path("out").exists(), "{what}: output parent left behind");
    }
}

#[test]
fn overlay_symlink_pointing_outside_is_copied_as_a_link() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    f.write("secret.txt", b"TOP-SECRET-HOST-DATA");
    std::os::unix::fs::symlink(f.path("secret.txt"), f.path("overlay/app/etc/escape")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../secret.txt",
        f.path("overlay/app/etc/escape-rel"),
    )
    .unwrap();
    let out = f.path("img");
    build(cache.path(), &f.profile(), &out, None);
    let tar =
        zstd::stream::decode_all(std::fs::File::open(out.join("rootfs.tar.zst")).unwrap()).unwrap();
    assert!(
        !tar.windows(20).any(|w| w == b"TOP-SECRET-HOST-DATA"),
        "a symlink was followed"
    );
    let listed = stratos::archive::tar::list_tar(&tar).unwrap();
    for name in ["etc/escape", "etc/escape-rel"] {
        let e = listed.iter().find(|l| l.path == name).unwrap();
        assert_eq!(e.kind, 'l', "{name} must stay a symlink");
    }
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_an_image() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    f.write("precious/notes.txt", b"keep me");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("precious"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to replace"));
    assert_eq!(
        std::fs::read(f.path("precious/notes.txt")).unwrap(),
        b"keep me"
    );
}

#[test]
fn sbom_validates_and_attributes_every_file() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let out = f.path("img");
    build(cache.path(), &f.profile(), &out, None);
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    let refs: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    for want in [
        "file:/etc/motd",
        "generated",
        "init",
        "kernel",
        "overlay:app",
        "overlay:site",
    ] {
        assert!(refs.contains(&want), "missing component {want}: {refs:?}");
    }
    // Every entry of the rootfs belongs to exactly one component.
    let tar =
        zstd::stream::decode_all(std::fs::File::open(out.join("rootfs.tar.zst")).unwrap()).unwrap();
    let mut owned = std::collections::BTreeMap::new();
    for c in sbom["components"].as_array().unwrap() {
        for o in c["evidence"]["occurrences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let prev = owned.insert(
                o["location"].as_str().unwrap().to_owned(),
                c["bom-ref"].as_str().unwrap().to_owned(),
            );
            assert!(prev.is_none(), "{} claimed twice", o["location"]);
        }
    }
    for l in stratos::archive::tar::list_tar(&tar).unwrap() {
        let p = if l.path.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}", l.path.trim_end_matches('/'))
        };
        assert!(owned.contains_key(&p), "{p} belongs to no component");
    }
    // The later overlay's file won, and the SBOM and inspect say so.
    let site = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == "overlay:site")
        .unwrap();
    assert!(
        site.to_string()
            .contains("/etc/app.conf (replaced overlay:app)"),
        "{site}"
    );
    stratos(cache.path())
        .arg("inspect")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "overlay:site: /etc/app.conf (replaced overlay:app)",
        ))
        .stdout(predicate::str::contains("largest files:"));
    let json = stratos(cache.path())
        .arg("inspect")
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(j["image"], "fixture");
    assert!(j["largest_files"].as_array().unwrap().len() <= 10);
}

#[test]
fn archives_are_read_back_by_gnu_tar_and_cpio() {
    require_tool("cpio");
    require_tool("tar");
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let out = f.path("img");
    build(cache.path(), &f.profile(), &out, None);
    let tar =
        zstd::stream::decode_all(std::fs::File::open(out.join("rootfs.tar.zst")).unwrap()).unwrap();
    let cpio =
        zstd::stream::decode_all(std::fs::File::open(out.join("initramfs.cpio.zst")).unwrap())
            .unwrap();
    std::fs::write(f.path("r.tar"), &tar).unwrap();
    std::fs::write(f.path("r.cpio"), &cpio).unwrap();
    let t = Command::new("tar")
        .arg("-tvf")
        .arg(f.path("r.tar"))
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let listing = String::from_utf8_lossy(&t.stdout);
    assert!(listing.contains(" init\n"), "{listing}");
    assert!(
        listing.contains("-rw-r----- 0/0") && listing.contains(" etc/motd"),
        "{listing}"
    );
    assert!(listing.contains(" bin/sh -> fn"), "{listing}");
    assert!(
        listing.contains("crw------- 0/0") && listing.contains(" dev/console"),
        "{listing}"
    );
    let c = Command::new("cpio")
        .args(["-t", "-v", "--quiet", "-F"])
        .arg(f.path("r.cpio"))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let listing = String::from_utf8_lossy(&c.stdout);
    for want in [
        "init",
        "etc/stratos/init.json",
        "dev/console",
        "bin/sh -> fn",
        "share/data/b.txt",
    ] {
        assert!(
            listing.contains(want),
            "{want} missing from cpio listing:\n{listing}"
        );
    }
    // And GNU cpio extracts it with the same content.
    let x = f.path("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(f.path("r.cpio"))
        .current_dir(&x)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(x.join("etc/motd")).unwrap(), b"welcome\n");
    assert_eq!(
        std::fs::read(x.join("etc/app.conf")).unwrap(),
        b"x=2 (site wins)\n"
    );
}

#[test]
fn keygen_never_overwrites_and_protects_the_secret() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("release");
    let out = stratos(cache.path())
        .arg("keygen")
        .arg("--out")
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(out.status.success());
    let secret = std::fs::read_to_string(d.path().join("release.key")).unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&secret).unwrap();
    assert!(
        !printed.contains(v["secret_key"].as_str().unwrap()),
        "the secret was printed"
    );
    assert_eq!(
        std::fs::metadata(d.path().join("release.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    stratos(cache.path())
        .arg("keygen")
        .arg("--out")
        .arg(&prefix)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(d.path().join("release.key")).unwrap(),
        secret
    );
}

/// The runtime's shared libraries must be in the image: a dynamically linked runtime without
/// them is a build error naming the library and who needs it; nothing is written.
#[test]
fn runtime_missing_a_shared_library_fails_the_build() {
    let f = Fixture::new();
    f.write("overlay/app/bin/fn", &std::fs::read("/bin/ls").unwrap());
    let cache = tempfile::tempdir().unwrap();
    let out = f.path("out");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "the runtime: /bin/fn needs the shared library",
        ))
        .stderr(predicates::str::contains("add the package that ships it"));
    assert!(!out.exists());
}
