//! Hostile input and faults (issue 12): one test per class of attack, named after it. Each
//! asserts the exit code, the error text (what and where), and that nothing outside the
//! intended directory changed. Inputs live in tests/hostile/ (see its generate.py); the large
//! ones are made at test time. Tests that could exhaust memory run under an address-space
//! limit, so a regression fails instead of taking the machine down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn hostile(name: &str) -> PathBuf {
    root().join("tests/hostile").join(name)
}

/// `stratos ARGS` under an address-space limit of `mib` MiB (prlimit, util-linux).
fn limited(cache: &Path, mib: u64) -> Command {
    require_tool("prlimit");
    let mut c = Command::new("prlimit");
    c.arg(format!("--as={}", mib << 20))
        .arg("--")
        .arg(bin())
        .env("STRATOS_CACHE", cache)
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fixture profile that installs one package, `evil`, pinned to `deb` and put in the cache.
fn with_package(f: &Fixture, cache: &Path, deb: &[u8], image_keys: &str) {
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(deb));
    let dir = cache.join("debs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{sha}.deb")), deb).unwrap();
    f.write(
        "profile.lock",
        format!(
            "lock-version = 1\n\n[[package]]\nname = \"evil\"\nversion = \"1.0\"\narch = \"amd64\"\nsha256 = \"{sha}\"\nsize = {}\nrequired-by = [\"profile\"]\n",
            deb.len()
        )
        .as_bytes(),
    );
    let profile = PROFILE.replace(
        "source-date-epoch = 1700000000\n",
        &format!("source-date-epoch = 1700000000\n{image_keys}"),
    ) + "\n[packages]\ndebian = [\"evil\"]\n";
    f.write("profile.toml", profile.as_bytes());
}

fn build_offline(c: &mut Command, f: &Fixture, out: &Path) -> std::process::Output {
    c.arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(out)
        .arg("--offline")
        .arg("-q")
        .output()
        .unwrap()
}

// 1. `build --out` never deletes what it did not build.

#[test]
fn build_out_onto_a_directory_with_a_foreign_manifest_json_deletes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let victim = tempfile::tempdir().unwrap();
    let out = victim.path().join("thesis");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("manifest.json"), b"{\"chapters\": 12}\n").unwrap();
    std::fs::write(out.join("thesis.tex"), b"four years of work").unwrap();
    let before = listing(victim.path());
    let o = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("refusing to replace"), "{e}");
    assert!(e.contains("not a StratOS image manifest"), "{e}");
    assert!(e.contains(&out.display().to_string()), "{e}");
    assert_eq!(listing(victim.path()), before);
}

#[test]
fn build_out_onto_a_previous_image_with_a_users_file_added_deletes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let victim = tempfile::tempdir().unwrap();
    let out = victim.path().join("img");
    let ok = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert!(ok.status.success(), "{}", stderr(&ok));
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let before = listing(victim.path());
    let o = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"notes.txt\" is not a file of the image"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(victim.path()), before);
    // Without the user's file, the previous image is replaced (only its own files).
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    let o = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 1);
}

#[test]
fn build_out_that_cannot_be_written_fails_before_any_work() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // The lock is missing, which the build would find only after starting to assemble: the
    // unwritable --out must be reported first.
    let profile = PROFILE.to_owned() + "\n[packages]\ndebian = [\"busybox-static\"]\n";
    f.write("profile.toml", profile.as_bytes());
    f.write("profile.lock", b"lock-version = 1\n");
    let blocker = f.path("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let o = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("cannot write the image to"), "{e}");
    assert!(!e.contains("not in"), "the package error came first: {e}");
    // Its cause, once.
    assert_eq!(e.matches("os error 20").count(), 1, "{e}");
}

// 2. Sizes read from archives and host files are not trusted.

#[test]
fn deb_whose_tar_header_declares_2_pow_62_bytes_is_refused_without_allocating() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    with_package(
        &f,
        cache.path(),
        &std::fs::read(hostile("deb-huge-size-header.deb")).unwrap(),
        "",
    );
    let out = f.path("out");
    let o = build_offline(&mut limited(cache.path(), 1024), &f, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("evil: refusing archive entry \"./usr/bin/huge\": its header declares 4611686018427387904 bytes but the archive holds 1024"),
        "names the package and member: {e}"
    );
    assert!(!out.exists());
}

#[test]
fn deb_zstd_bomb_stops_at_the_file_limit_naming_package_and_member() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    with_package(
        &f,
        cache.path(),
        &std::fs::read(hostile("deb-zstd-bomb.deb")).unwrap(),
        "max-file-size = \"64M\"\n",
    );
    let out = f.path("out");
    // 2 GiB expanded would not fit under this limit: only a capped read passes.
    let o = build_offline(&mut limited(cache.path(), 1024), &f, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("package evil: member \"./bomb\" expands past the 64.0 MiB limit for one file"),
        "{e}"
    );
    assert!(
        e.contains("[image] max-file-size"),
        "says what to change: {e}"
    );
    assert!(!out.exists());
}

#[test]
fn deb_under_the_file_limit_but_over_the_package_limit_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    with_package(
        &f,
        cache.path(),
        &std::fs::read(hostile("deb-package-bomb.deb")).unwrap(),
        "max-file-size = \"64M\"\nmax-package-size = \"100M\"\n",
    );
    let o = build_offline(&mut limited(cache.path(), 1024), &f, &f.path("out"));
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("member \"./part2\" expands past the 100.0 MiB limit for one package"),
        "{e}"
    );
}

#[test]
fn overlay_with_a_20_gib_sparse_file_is_refused_without_reading_it() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let big = f.path("overlay/app/var/huge.img");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::File::create(&big)
        .unwrap()
        .set_len(20 << 30)
        .unwrap();
    let o = build_offline(&mut limited(cache.path(), 1024), &f, &f.path("out"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("huge.img: larger than the 1.0 GiB limit for one file"),
        "{e}"
    );
    assert!(e.contains("[image] max-file-size"), "{e}");
}

#[test]
fn overlay_files_together_over_the_image_limit_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let profile = PROFILE.replace(
        "source-date-epoch = 1700000000\n",
        "source-date-epoch = 1700000000\nmax-image-size = \"1M\"\n",
    );
    f.write("profile.toml", profile.as_bytes());
    for i in 0..3 {
        f.write(&format!("overlay/app/data/{i}.bin"), &vec![7u8; 400 << 10]);
    }
    let o = stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("out"))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("2.bin: larger than the 1.0 MiB limit for the whole image"),
        "{e}"
    );
}

// 4. Blocking and unbounded reads of local files.

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn fifo_in_place_of_an_artifact_does_not_hang_verify() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let keys = tempfile::tempdir().unwrap();
    stratos(cache.path())
        .args(["keygen", "--out"])
        .arg(keys.path().join("k"))
        .assert()
        .success();
    let out = f.path("out");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.key"))
        .arg("-q")
        .assert()
        .success();
    std::fs::remove_file(out.join("kernel")).unwrap();
    mkfifo(&out.join("kernel"));
    let o = stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.pub"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("kernel is a FIFO, not a regular file"), "{e}");
}

#[test]
fn pubkey_dev_zero_and_fifo_profiles_and_policies_are_refused_at_once() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let out = f.path("out");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let o = stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .args(["--image-key", "/dev/zero"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("/dev/zero is a character device"), "{e}");

    let fifo = f.path("profile-fifo.toml");
    mkfifo(&fifo);
    let o = stratos(cache.path())
        .arg("build")
        .arg(&fifo)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("profile-fifo.toml is a FIFO"), "{e}");

    let o = stratos(cache.path())
        .args(["seccomp", "check", "/dev/zero"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("/dev/zero is a character device"), "{e}");
}

// 5. Seccomp policies reject what they do not understand.

#[test]
fn seccomp_policy_with_a_misspelled_syscalls_key_is_refused_not_allow_all() {
    let cache = tempfile::tempdir().unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "check"])
        .arg(hostile("seccomp-misspelled-key.json"))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("seccomp-misspelled-key.json"), "{e}");
    assert!(e.contains("unknown field `sycalls`"), "{e}");
    // The same policy in a profile stops the build.
    let f = Fixture::new();
    f.write(
        "policy.json",
        &std::fs::read(hostile("seccomp-misspelled-key.json")).unwrap(),
    );
    f.write(
        "profile.toml",
        (PROFILE.to_owned() + "\n[seccomp]\npolicy = \"policy.json\"\n").as_bytes(),
    );
    let o = stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("out"))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("unknown field `sycalls`"), "{e}");
    assert!(!f.path("out").exists());
}

#[test]
fn seccomp_policy_with_unknown_architecture_in_a_condition_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "check"])
        .arg(hostile("seccomp-unevaluated-conditions.json"))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("syscalls[2].includes.arches: unknown architecture \"sparc128\""),
        "{e}"
    );
}

// 7. `cache gc` deletes only inside the cache.

#[test]
fn cache_gc_all_does_not_follow_links_out_of_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let precious = tempfile::tempdir().unwrap();
    std::fs::write(precious.path().join("data"), b"mine").unwrap();
    std::fs::create_dir_all(precious.path().join("sub")).unwrap();
    std::fs::write(precious.path().join("sub/more"), b"mine").unwrap();
    std::fs::create_dir_all(cache.path().join("kernels")).unwrap();
    std::fs::create_dir_all(cache.path().join("debs")).unwrap();
    std::os::unix::fs::symlink(precious.path(), cache.path().join("debs/sha256")).unwrap();
    std::os::unix::fs::symlink(precious.path(), cache.path().join("zstd")).unwrap();
    std::os::unix::fs::symlink(precious.path(), cache.path().join("kernels/linked")).unwrap();
    let before = listing(precious.path());
    let o = stratos(cache.path())
        .args(["cache", "gc", "--all"])
        .assert()
        .success();
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("is a symlink"), "{e}");
    assert_eq!(listing(precious.path()), before);
    // The link entry itself is gone; the linked folders were not entered.
    assert!(std::fs::symlink_metadata(cache.path().join("kernels/linked")).is_err());
}

// 9. Verify and boot never follow what a manifest or a directory points at.

fn signed_image(cache: &Path, f: &Fixture) -> (PathBuf, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    stratos(cache)
        .args(["keygen", "--out"])
        .arg(keys.path().join("k"))
        .assert()
        .success();
    let out = f.path("out");
    stratos(cache)
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.key"))
        .arg("-q")
        .assert()
        .success();
    (out, keys)
}

#[test]
fn verify_refuses_an_artifact_that_is_a_symlink() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (out, keys) = signed_image(cache.path(), &f);
    // Same bytes, but through a link: still refused (a link can point anywhere later).
    let real = f.path("kernel-elsewhere");
    std::fs::rename(out.join("kernel"), &real).unwrap();
    std::os::unix::fs::symlink(&real, out.join("kernel")).unwrap();
    let o = stratos(cache.path())
        .arg("verify")
        .arg(&out)
        .arg("--image-key")
        .arg(keys.path().join("k.pub"))
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("kernel is a symlink"), "{e}");
    // boot refuses it too, before starting QEMU.
    let o = stratos(cache.path())
        .arg("boot")
        .arg(&out)
        .args(["--accel", "tcg", "--timeout", "5"])
        .env("STRATOS_QEMU", "/bin/false")
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("is a symlink"), "{e}");
}

#[test]
fn resigned_manifest_naming_an_artifact_with_dotdot_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (out, keys) = signed_image(cache.path(), &f);
    let secret = keys.path().join("k.key");
    let mpath = out.join("manifest.json");
    for (from, to) in [
        ("\"name\": \"kernel\"", "\"name\": \"../kernel\""),
        (
            "\"artifact\": \"kernel\"",
            "\"artifact\": \"../../etc/passwd\"",
        ),
    ] {
        let original = std::fs::read_to_string(&mpath).unwrap();
        assert!(original.contains(from), "{original}");
        std::fs::write(&mpath, original.replace(from, to)).unwrap();
        // Re-signed with the real key: the signature holds; the names must not.
        let key = stratos::sign::SecretKey::load(&secret).unwrap();
        let sig = serde_json::json!({
            "format": 1,
            "algorithm": "ed25519",
            "key_id": key.id().as_str(),
            "signature": hex::encode(key.sign(&std::fs::read(&mpath).unwrap())),
        });
        std::fs::write(out.join("manifest.sig"), sig.to_string()).unwrap();
        let o = stratos(cache.path())
            .arg("verify")
            .arg(&out)
            .arg("--image-key")
            .arg(keys.path().join("k.pub"))
            .assert()
            .code(1);
        let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
        assert!(
            e.contains("is not a plain file name")
                || e.contains("is not one of the manifest's artifacts"),
            "{e}"
        );
        let o = stratos(cache.path())
            .arg("boot")
            .arg(&out)
            .args(["--accel", "tcg", "--timeout", "5"])
            .env("STRATOS_QEMU", "/bin/false")
            .assert()
            .code(2);
        let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
        assert!(e.contains("manifest"), "{e}");
        std::fs::write(&mpath, original).unwrap();
    }
}

#[test]
fn profile_path_component_over_255_bytes_is_a_profile_error() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let long = "a".repeat(300);
    let profile = PROFILE.replace("path = \"/etc/motd\"", &format!("path = \"/etc/{long}\""));
    f.write("profile.toml", profile.as_bytes());
    let o = stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(e.contains("file[0].path"), "{e}");
    assert!(
        e.contains("300 bytes long; Linux allows at most 255"),
        "{e}"
    );
}

#[test]
fn control_characters_in_a_file_name_are_escaped_in_messages() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // A FIFO (refused) whose name would clear the screen and forge a line if printed raw.
    let name = "evil\x1b[2J\nerror: everything is fine";
    mkfifo(&f.path(&format!("overlay/app/{name}")));
    let o = stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(f.path("out"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(!e.contains('\x1b'), "raw escape printed: {e:?}");
    assert!(e.contains("\\u{1b}[2J\\nerror"), "{e}");
}

#[test]
fn kernel_panic_during_boot_is_named_on_stderr() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let out = f.path("out");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let o = stratos(cache.path())
        .arg("boot")
        .arg(&out)
        .args(["--accel", "tcg", "--timeout", "20", "-q"])
        .env("STRATOS_QEMU", root().join("tests/fixtures/fake-qemu.sh"))
        .env(
            "STRATOS_FAKE_CONSOLE",
            root().join("tests/fixtures/consoles/panic.log"),
        )
        .env("STRATOS_FAKE_EXIT", "1")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("the kernel panicked: VFS: Unable to mount root fs"),
        "{e}"
    );
}

// 11. Output independent of how a path is typed.

#[test]
fn overlay_path_dot_gives_the_same_sbom_from_any_working_directory() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // The profile's own directory as an overlay at /srv (the kernel and profile go along).
    let profile = PROFILE.to_owned() + "\n[[overlay]]\npath = \".\"\ntarget = \"/srv\"\n";
    f.write("profile.toml", profile.as_bytes());
    let build = |cwd: &Path, profile_arg: &Path, out: &Path| {
        let o = stratos_std(cache.path())
            .current_dir(cwd)
            .arg("build")
            .arg(profile_arg)
            .arg("--out")
            .arg(out)
            .arg("-q")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let outs = tempfile::tempdir().unwrap();
    build(
        f.dir.path(),
        Path::new("profile.toml"),
        &outs.path().join("a"),
    );
    build(
        f.dir.path().parent().unwrap(),
        &Path::new(f.dir.path().file_name().unwrap()).join("profile.toml"),
        &outs.path().join("b"),
    );
    let sbom_a = std::fs::read(outs.path().join("a/sbom.cdx.json")).unwrap();
    let sbom_b = std::fs::read(outs.path().join("b/sbom.cdx.json")).unwrap();
    assert_eq!(sbom_a, sbom_b);
    let text = String::from_utf8(sbom_a).unwrap();
    assert!(text.contains("overlay:overlay-2"), "{text}");
}

// 12. Errors name the cache when the cache is the problem.

#[test]
fn unusable_cache_is_named_as_the_problem() {
    let f = Fixture::new();
    let not_a_dir = tempfile::tempdir().unwrap();
    let cache = not_a_dir.path().join("cache-file");
    std::fs::write(&cache, b"x").unwrap();
    with_package(
        &f,
        not_a_dir.path(),
        &std::fs::read(hostile("deb-huge-size-header.deb")).unwrap(),
        "",
    );
    // Found in /var/cache/stratos/debs? No: pinned by a digest no mirror has; the cache is read
    // first and is a file.
    let o = build_offline(&mut stratos_std(&cache), &f, &f.path("out"));
    // The machine's part failed, not the profile: exit 3.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("the package cache"), "{e}");
    assert!(e.contains("cache-file"), "{e}");
}

// Exit codes: the machine failing its part is 3, distinct from bad input (2).

#[test]
fn missing_qemu_is_an_environment_failure_not_bad_input() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let out = f.path("out");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let o = stratos(cache.path())
        .arg("boot")
        .arg(&out)
        .args(["--accel", "tcg", "--timeout", "5"])
        .env("STRATOS_QEMU", "/nonexistent/qemu-system-x86_64")
        .assert()
        .code(3);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("$STRATOS_QEMU names /nonexistent/qemu-system-x86_64, which does not exist"),
        "{e}"
    );
}

// Issue 24: smaller holes from the hostile-function review.

/// The fixture profile with `lock` as its [packages.npm] (into /srv/fn).
fn with_npm_lock(f: &Fixture, lock: &serde_json::Value) {
    f.write("package-lock.json", &serde_json::to_vec(lock).unwrap());
    f.write("profile.lock", b"lock-version = 1\n");
    f.write(
        "profile.toml",
        (PROFILE.to_owned()
            + "\n[packages.npm]\nlock = \"package-lock.json\"\ninto = \"/srv/fn\"\n")
            .as_bytes(),
    );
}

fn npm_lock(integrity: &str, bin: Option<serde_json::Value>) -> serde_json::Value {
    let mut evil = serde_json::json!({
        "version": "1.0.0",
        "resolved": "https://registry.npmjs.org/evil/-/evil-1.0.0.tgz",
        "integrity": integrity,
        "license": "MIT"
    });
    if let Some(b) = bin {
        evil["bin"] = b;
    }
    serde_json::json!({
        "name": "fn", "lockfileVersion": 3, "requires": true,
        "packages": {
            "": {"name": "fn", "dependencies": {"evil": "1.0.0"}},
            "node_modules/evil": evil
        }
    })
}

/// Puts `tgz` in the cache where a fetch would have left it; returns its integrity string.
fn cache_npm_tarball(cache: &Path, tgz: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha512::digest(tgz);
    let dir = cache.join("npm/sha512");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{}.tgz", hex::encode(digest))), tgz).unwrap();
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[test]
fn npm_bin_name_with_an_escape_sequence_is_refused_naming_the_package_and_key() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let integrity = cache_npm_tarball(cache.path(), b"never read");
    with_npm_lock(
        &f,
        &npm_lock(
            &integrity,
            Some(serde_json::json!({"ls\u{1b}]0;owned\u{7}\n": "cli.js"})),
        ),
    );
    let out = f.path("out");
    let o = build_offline(&mut stratos_std(cache.path()), &f, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("packages[\"node_modules/evil\"]: \"bin\": \"ls\\u{1b}]0;owned\\u{7}\\n\" -> \"cli.js\" holds a control character"),
        "{e}"
    );
    assert!(!e.contains('\u{1b}'), "raw escape on stderr: {e:?}");
    assert!(!out.exists());
}

#[test]
fn npm_tarball_member_of_a_gib_of_zeros_is_refused_before_it_is_read() {
    use std::io::{Read, Write};
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    // ~1 MB of gzip holding a member one byte over the default max-file-size (1 GiB).
    let size = (1u64 << 30) + 1;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_path("package/zeros.bin").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, std::io::repeat(0).take(size)).unwrap();
    let pkg = br#"{"name": "evil", "version": "1.0.0"}"#;
    let mut h = tar::Header::new_gnu();
    h.set_path("package/package.json").unwrap();
    h.set_size(pkg.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append(&h, &pkg[..]).unwrap();
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    let tgz = gz.finish().unwrap();
    assert!(tgz.len() < 8 << 20, "{}", tgz.len());
    let integrity = cache_npm_tarball(cache.path(), &tgz);
    with_npm_lock(&f, &npm_lock(&integrity, None));
    let out = f.path("out");
    // Reading the member whole would need more than this whole address space.
    let o = build_offline(&mut limited(cache.path(), 1024), &f, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("evil 1.0.0: member \"package/zeros.bin\" is larger than 1073741824 bytes ([image] max-file-size"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn seccomp_unconditional_allow_then_a_conditional_kill_is_refused_naming_both_rules() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dead-rule.json");
    std::fs::write(
        &p,
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
  {"names": ["read", "personality"], "action": "SCMP_ACT_ALLOW"},
  {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
   "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
]}"#,
    )
    .unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "check"])
        .arg(&p)
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains("syscalls[1]: its rule for personality (kill-process if arg0 == 0x8) can never apply: syscalls[0] already decides personality (allow) with no conditions"),
        "{e}"
    );
    // The conditional rule first is what the author meant, and is accepted.
    std::fs::write(
        &p,
        br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
  {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
   "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
  {"names": ["read", "personality"], "action": "SCMP_ACT_ALLOW"}
]}"#,
    )
    .unwrap();
    stratos(cache.path())
        .args(["seccomp", "check"])
        .arg(&p)
        .assert()
        .success();
}

#[test]
fn seccomp_suggest_from_a_result_with_escape_sequences_prints_them_escaped() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\nstratos: 0 system calls allowed";
    let result = serde_json::json!({
        "schema": "stratos-boot-test/1",
        "image": {"dir": "out/evil", "manifest_sha256": "a".repeat(64), "name": name,
                  "version": "1.0\u{1b}[31m", "machine": "microvm", "sizes": {}},
        "baseline": null, "accel": "tcg", "runs": 1, "invocations": 1, "invoke": "/",
        "memory_mib": 256, "metrics": {}, "baseline_metrics": null, "comparison": null,
        "objectives": [], "logs": [], "passed": true,
        "runs_detail": [{"index": 0, "image": name, "ok": true, "failure": null, "metrics": {},
                         "syscalls": {"cold_start": {"read": 3}, "total": {"read": 5, "write": 2}}}]
    });
    let from = dir.path().join("boot.json");
    std::fs::write(&from, serde_json::to_vec(&result).unwrap()).unwrap();
    let o = stratos(cache.path())
        .args(["seccomp", "suggest", "--from"])
        .arg(&from)
        .assert()
        .success();
    let out = o.get_output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: {text:?}"
        );
    }
    assert!(
        stderr.contains("of evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nstratos: 0 system calls allowed 1.0\\u{1b}[31m"),
        "{stderr}"
    );
    // One line: the name's newline forged none.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// `cmd` run with a full file system mounted on `dir` (a private mount namespace with a
/// 1 MiB tmpfs, filled up).
fn on_a_full_disk(dir: &Path, cmd: &Command) -> std::process::Output {
    require_tool("unshare");
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let mut c = Command::new("unshare");
    c.arg(if root { "-m" } else { "-rm" })
        .args(["--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=1m tmpfs \"$1\" || exit 99; \
             head -c 2097152 /dev/zero > \"$1/fill\" 2>/dev/null; shift; exec \"$@\"",
        )
        .arg("sh")
        .arg(dir)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c.output().unwrap();
    assert_ne!(
        o.status.code(),
        Some(99),
        "cannot mount a tmpfs: {}",
        stderr(&o)
    );
    o
}

#[test]
fn disk_full_is_the_hosts_failure_exit_3_not_bad_input() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let full = f.path("full");
    std::fs::create_dir(&full).unwrap();
    let mut build = stratos_std(cache.path());
    build
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(full.join("out"))
        .args(["--offline", "-q"]);
    let o = on_a_full_disk(&full, &build);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    // A key pair written to a full disk: the same.
    let mut keygen = stratos_std(cache.path());
    keygen.arg("keygen").arg("--out").arg(full.join("k"));
    let o = on_a_full_disk(&full, &keygen);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
}

/// A built, signed fixture image and a snapshot directory for it as `stratos snapshot` leaves
/// one (RAM and state files that are not a real VM's: nothing here boots), signed with the
/// image's key: (image, snapshot, public key, snapshot.json as signed).
fn signed_snapshot(cache: &Path, f: &Fixture) -> (PathBuf, PathBuf, PathBuf, Vec<u8>) {
    use stratos::boot::snapshot::{
        SnapshotImage, SnapshotMeta, FORMAT, MEMORY_FILE, SIGNATURE_FILE, SNAPSHOT_FILE, STATE_FILE,
    };
    use stratos::sign::manifest::{signature_file, Artifact};
    let prefix = f.path("keys/release");
    stratos(cache)
        .arg("keygen")
        .arg("--out")
        .arg(&prefix)
        .assert()
        .success();
    let key_path = prefix.with_extension("key");
    let img = f.path("img");
    stratos(cache)
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&img)
        .arg("--image-key")
        .arg(&key_path)
        .arg("-q")
        .assert()
        .success();
    let snap = f.path("img.snap");
    std::fs::create_dir(&snap).unwrap();
    let artifact = |name: &str, bytes: &[u8]| {
        std::fs::write(snap.join(name), bytes).unwrap();
        Artifact {
            name: stratos::sign::manifest::ArtifactName::new(name).unwrap(),
            size: bytes.len() as u64,
            sha256: stratos::digest::Sha256::of(bytes),
        }
    };
    let manifest = std::fs::read(img.join("manifest.json")).unwrap();
    let meta = SnapshotMeta {
        format: FORMAT,
        image: SnapshotImage {
            name: "fixture".into(),
            version: "1.2.3".into(),
            manifest_sha256: stratos::digest::Sha256::of(&manifest),
        },
        qemu_version: "QEMU emulator version 7.2.0".into(),
        machine: "microvm".into(),
        memory_mib: 16,
        accel: "tcg".into(),
        cmdline: "console=ttyS0".into(),
        guest_port: 8080,
        warm: Vec::new(),
        files: vec![
            artifact(MEMORY_FILE, &vec![0u8; 16 << 20]),
            artifact(STATE_FILE, b"QEVM\0\0\0\x03 devices"),
        ],
    };
    let bytes = meta.to_canonical();
    std::fs::write(snap.join(SNAPSHOT_FILE), &bytes).unwrap();
    let key = stratos::sign::SecretKey::load(&key_path).unwrap();
    std::fs::write(snap.join(SIGNATURE_FILE), signature_file(&key, &bytes)).unwrap();
    (img, snap, prefix.with_extension("pub"), bytes)
}

/// Writes `snapshot.json` (signed as `bytes`) back with another `memory_mib`.
fn rewrite_memory_mib(snap: &Path, bytes: &[u8], mib: u64) {
    let mut meta: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    meta["memory_mib"] = mib.into();
    std::fs::write(
        snap.join("snapshot.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
}

#[test]
fn snapshot_json_tampered_after_signing_is_the_snapshots_fault_not_the_images() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (img, snap, pubkey, bytes) = signed_snapshot(cache.path(), &f);
    // More memory than signed for: the signature over snapshot.json no longer holds.
    rewrite_memory_mib(&snap, &bytes, 32);
    let o = stratos(cache.path())
        .arg("boot-test")
        .arg(&img)
        .arg("--snapshot")
        .arg(&snap)
        .arg("--verify")
        .arg("--image-key")
        .arg(&pubkey)
        .args(["--runs", "1"])
        .assert()
        .code(1);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains(&format!(
            "snapshot {}: snapshot.sig: the signature does not match snapshot.json",
            snap.display()
        )),
        "{e}"
    );
    assert!(!e.contains("manifest"), "blames the image: {e}");
}

#[test]
fn snapshot_with_an_absurd_memory_size_is_named_not_a_qmp_error() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let (img, snap, _, bytes) = signed_snapshot(cache.path(), &f);
    rewrite_memory_mib(&snap, &bytes, 4_000_000);
    let o = stratos(cache.path())
        .arg("boot-test")
        .arg(&img)
        .arg("--snapshot")
        .arg(&snap)
        .args(["--runs", "1"])
        .assert()
        .code(2);
    let e = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        e.contains(&format!(
            "snapshot {}: snapshot.json: memory_mib 4000000 is outside 16..=65536 MiB",
            snap.display()
        )),
        "{e}"
    );
}

#[test]
fn snapshot_onto_a_full_disk_says_so_not_qemu_exited() {
    require_tool("qemu-system-x86_64");
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let img = f.path("img");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&img)
        .arg("-q")
        .assert()
        .success();
    let full = f.path("full");
    std::fs::create_dir(&full).unwrap();
    let mut snapshot = stratos_std(cache.path());
    snapshot
        .arg("snapshot")
        .arg(&img)
        .arg("--out")
        .arg(full.join("snap"))
        .args(["--accel", "tcg", "--memory", "64", "--timeout", "30", "-q"]);
    let o = on_a_full_disk(&full, &snapshot);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(e.contains("its file system is full"), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
}
