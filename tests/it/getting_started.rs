//! The first hour's tools: `stratos new` (a profile that validates, with the shipped example's
//! settings, never over anything), the profile's JSON Schema (current, and every shipped
//! profile valid against it), `stratos completions`, `stratos man` and `stratos doctor`.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use stratos::cli::new::Runtime;
use stratos::profile::Profile;

use crate::common::*;

const RUNTIMES: [(Runtime, &str); 4] = [
    (Runtime::Python, "python"),
    (Runtime::Node, "node"),
    (Runtime::Go, "go"),
    (Runtime::Busybox, "busybox"),
];

/// `stratos new DIR --runtime R` in a scratch directory: (its output, the new directory).
fn new(work: &Path, name: &str, runtime: &str) -> (std::process::Output, PathBuf) {
    let cache = work.join("cache");
    let out = stratos_std(&cache)
        .current_dir(work)
        .args(["new", name, "--runtime", runtime])
        .output()
        .unwrap();
    (out, work.join(name))
}

fn digest_of(p: &Path) -> PathBuf {
    PathBuf::from(sha256_file(p))
}

/// A profile's settings with what may differ between two profiles of one runtime taken out
/// (the image's name and the verity salt derived from it, the overlays, where files are) and
/// every file it names replaced by the digest of its content.
fn settings(p: &Profile) -> Profile {
    let mut p = p.clone();
    p.path = PathBuf::new();
    p.dir = PathBuf::new();
    p.digest = [0; 32];
    p.image.name.clear();
    p.image.hostname.clear();
    p.image.verity_salt = [0; 32];
    p.overlays.clear();
    if let stratos::profile::KernelOrigin::Source(spec) = &mut p.kernel.origin {
        spec.fragments = spec.fragments.iter().map(|f| digest_of(f)).collect();
    }
    if let Some(pk) = &mut p.packages {
        pk.lock = digest_of(&pk.lock);
        if let Some(npm) = &mut pk.npm {
            // The lock's own name is the function's: only the packages it pins must agree.
            let lock: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&npm.lock).unwrap()).unwrap();
            let mut pins = lock["packages"].as_object().unwrap().clone();
            pins.remove("");
            npm.lock = PathBuf::from(serde_json::to_string(&pins).unwrap());
        }
    }
    if let Some(s) = &mut p.seccomp {
        s.policy = digest_of(&s.policy);
    }
    if let Some(g) = &mut p.go {
        // The function's own module (its go.mod names the function).
        g.source = PathBuf::new();
    }
    p
}

#[test]
fn new_writes_a_profile_with_the_shipped_example_s_settings_for_every_runtime() {
    let work = tempfile::tempdir().unwrap();
    for (runtime, word) in RUNTIMES {
        let name = format!("fn-{word}");
        let (out, dir) = new(work.path(), &name, word);
        assert!(
            out.status.success(),
            "{word}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made = Profile::load(&dir.join("profile.toml"))
            .unwrap_or_else(|e| panic!("{word}: the new profile does not validate: {e}"));
        assert_eq!(made.image.name, name);
        let shipped = Profile::load(
            &root()
                .join("profiles")
                .join(format!("{}.toml", runtime.shipped())),
        )
        .unwrap();
        assert_eq!(
            settings(&made),
            settings(&shipped),
            "{word}: the new profile's settings differ from {}'s",
            runtime.shipped()
        );
        assert!(made.network.is_some() && made.init.readiness.is_some());
        // The lock is the shipped one: the package set is the same, and it parses (a Go
        // function has no package: the binary is all the image holds).
        if let Some(pk) = &made.packages {
            stratos::packages::debian::lock::LockFile::load(&pk.lock, stratos::arch::Arch::X86_64)
                .unwrap();
        } else {
            assert_eq!(runtime, Runtime::Go, "{word}: no [packages]");
        }
        // The baseline compiles.
        stratos(&work.path().join("cache"))
            .args(["seccomp", "check"])
            .arg(dir.join("seccomp.json"))
            .assert()
            .success();
        // The editor's schema is the current one, and the profile is valid against it.
        assert_eq!(
            std::fs::read_to_string(dir.join("profile.schema.json")).unwrap(),
            stratos::profile::json_schema_text()
        );
        let text = std::fs::read_to_string(dir.join("profile.toml")).unwrap();
        assert!(text.starts_with("#:schema profile.schema.json\n"));
        assert_eq!(schema_errors_of(&text), Vec::<String>::new(), "{word}");
        assert!(!text.contains("@NAME@"), "{word}: a placeholder is left");
    }
    // busybox: the CGI script is named after the function and executable; /bin/sh runs it.
    use std::os::unix::fs::PermissionsExt;
    let cgi = work
        .path()
        .join("fn-busybox/rootfs/srv/www/cgi-bin/fn-busybox");
    assert_eq!(
        std::fs::metadata(&cgi).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(work.path().join("fn-busybox/rootfs/bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

#[test]
fn new_never_writes_over_an_existing_path() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("myfn");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mine.txt"), "keep me").unwrap();
    let before = listing(work.path());
    let (out, _) = new(work.path(), "myfn", "python");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("myfn already exists") && stderr.contains("never writes into"),
        "{stderr}"
    );
    assert_eq!(listing(work.path()), before, "something changed");
    // A file of that name too.
    std::fs::write(work.path().join("other"), "").unwrap();
    let (out, _) = new(work.path(), "other", "node");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn new_refuses_a_name_that_cannot_name_an_image() {
    let work = tempfile::tempdir().unwrap();
    let (out, _) = new(work.path(), "My_Fn", "busybox");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"My_Fn\" cannot name an image"),
        "{stderr}"
    );
    // Nothing was created, not even a staging directory.
    assert!(
        walk_files(work.path()).is_empty(),
        "{:?}",
        walk_files(work.path())
    );
}

#[test]
fn new_prints_next_commands_that_stratos_takes() {
    let work = tempfile::tempdir().unwrap();
    for (runtime, word) in RUNTIMES {
        let name = format!("p-{word}");
        let (out, _) = new(work.path(), &name, word);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let commands = stratos::cli::new::commands(Path::new(&name), runtime, &name);
        assert_eq!(commands[0], format!("cd {name}"));
        for line in &commands {
            assert!(stdout.contains(&format!("  {line}\n")), "{line}\n{stdout}");
        }
        for line in &commands[1..] {
            let argv: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(argv[0], "stratos");
            if let Err(e) = stratos::cli::Cli::try_parse_from(&argv) {
                panic!("`{line}` is not a stratos command line: {e}");
            }
        }
        assert!(
            stdout.contains(&format!("This is {name} on StratOS.")),
            "{stdout}"
        );
    }
}

#[test]
fn the_new_gitignore_keeps_images_and_secret_keys_out_of_git() {
    let work = tempfile::tempdir().unwrap();
    let (out, dir) = new(work.path(), "gi", "python");
    assert!(out.status.success());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("git is installed")
    };
    assert!(git(&["init", "-q"]).status.success());
    for ignored in [
        "out/gi/manifest.json",
        "out/gi.snap/memory",
        "keys/release.key",
    ] {
        assert!(
            git(&["check-ignore", "-q", ignored]).status.success(),
            "{ignored} is not ignored"
        );
    }
    for kept in [
        "keys/release.pub",
        "profile.toml",
        "profile.lock",
        "rootfs/srv/fn/app.py",
    ] {
        assert_eq!(
            git(&["check-ignore", "-q", kept]).status.code(),
            Some(1),
            "{kept} is ignored"
        );
    }
}

/// The errors of a profile's text against the published schema.
fn schema_errors_of(text: &str) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("docs/profile.schema.json")).unwrap())
            .unwrap();
    let doc: toml::Value = toml::from_str(text).unwrap();
    let doc = serde_json::to_value(doc).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// docs/profile.schema.json is what the parser's types give (`STRATOS_BLESS=1` rewrites it).
#[test]
fn profile_schema_is_current() {
    let want = stratos::profile::json_schema_text();
    let path = root().join("docs/profile.schema.json");
    if std::env::var_os("STRATOS_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        std::fs::read_to_string(&path).unwrap() == want,
        "{} is not what the profile types give: rewrite it with `stratos schema profile --out docs/profile.schema.json` (or STRATOS_BLESS=1 cargo test --test it -- profile_schema_is_current) and review the diff",
        path.display()
    );
    let printed = stratos(&shared_cache())
        .args(["schema", "profile"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(printed).unwrap(), want);
}

#[test]
fn every_shipped_profile_points_at_the_schema_and_is_valid_against_it() {
    let mut profiles: Vec<PathBuf> = walk_files(&root().join("profiles"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(profiles.len() >= 7, "{profiles:?}");
    // The golden cases are profiles too.
    profiles.extend(
        walk_files(&root().join("tests/golden"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "profile.toml")),
    );
    for p in profiles {
        let text = std::fs::read_to_string(&p).unwrap();
        if p.starts_with(root().join("profiles")) {
            let first = text.lines().next().unwrap();
            assert_eq!(
                first,
                "#:schema ../docs/profile.schema.json",
                "{}",
                p.display()
            );
            assert!(p
                .parent()
                .unwrap()
                .join("../docs/profile.schema.json")
                .is_file());
        }
        assert_eq!(
            schema_errors_of(&text),
            Vec::<String>::new(),
            "{}",
            p.display()
        );
    }
}

#[test]
fn the_schema_rejects_unknown_keys_and_wrong_types() {
    let good = std::fs::read_to_string(root().join("profiles/hello.toml")).unwrap();
    assert!(schema_errors_of(&good).is_empty());
    let cases = [
        // A misspelt key in a section, an unknown section, a key in an array of tables.
        ("[image]\n", "[image]\nnmae = \"x\"\n"),
        ("[zram]\n", "[zramm]\nsize = \"1M\"\n[zram]\n"),
        (
            "path = \"../rootfs-overlays/hello\"",
            "path = \"../rootfs-overlays/hello\"\ntraget = \"/\"",
        ),
        // A string where a number goes, a table where a list goes.
        ("pids-max = 256", "pids-max = \"many\""),
        ("debian = [\"busybox-static\"]", "debian = { busybox = 1 }"),
    ];
    for (from, to) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let errors = schema_errors_of(&bad);
        assert!(!errors.is_empty(), "accepted: {to}");
        // And the parser agrees: the schema is no stricter than the profile's own types.
        let dir = root().join("profiles");
        assert!(
            Profile::parse(&bad, Path::new("p.toml"), &dir, None).is_err(),
            "the parser accepts what the schema rejects: {to}"
        );
    }
}

/// Every command's full name (`build`, `kernel lint`, ...), as clap knows them.
fn subcommands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix}{}", sub.get_name());
        out.push(name.clone());
        subcommands(sub, &format!("{name} "), out);
    }
}

#[test]
fn completions_know_every_command() {
    let mut names = Vec::new();
    subcommands(&stratos::cli::Cli::command(), "", &mut names);
    for n in [
        "new",
        "doctor",
        "schema",
        "completions",
        "man",
        "kernel lint",
        "update apply",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}: {names:?}");
    }
    let cache = tempfile::tempdir().unwrap();
    let bash = stratos(cache.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let bash = String::from_utf8(bash).unwrap();
    assert!(
        bash.contains("complete -F _stratos"),
        "not a bash completion script"
    );
    for n in &names {
        // bash's script has a case per command: its parents joined by "__subcmd__", then its
        // own name (`stratos__subcmd__kernel,lint)`).
        let words: Vec<&str> = n.split(' ').collect();
        let (leaf, parents) = words.split_last().unwrap();
        let mut case = String::from("stratos");
        for p in parents {
            case.push_str(&format!("__subcmd__{p}"));
        }
        case.push_str(&format!(",{leaf})"));
        assert!(bash.contains(&case), "bash completion lacks `{n}` ({case})");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = stratos(cache.path())
            .args(["completions", shell])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("boot-test") && text.contains("doctor"),
            "{shell}"
        );
    }
}

#[test]
fn man_writes_a_page_for_every_command() {
    let mut names = Vec::new();
    subcommands(&stratos::cli::Cli::command(), "", &mut names);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("man/man1");
    stratos(cache.path())
        .args(["man", "--out"])
        .arg(&dir)
        .assert()
        .success();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| format!("stratos-{}.1", n.replace(' ', "-")))
        .collect();
    want.push("stratos.1".into());
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, want);
    let lint = std::fs::read_to_string(dir.join("stratos-kernel-lint.1")).unwrap();
    assert!(lint.starts_with(".ie") || lint.contains(".TH"), "{lint}");
    assert!(lint.contains("stratos\\-kernel\\-lint"), "{lint}");
    // Without --out: the top page on stdout.
    let top = stratos(cache.path())
        .arg("man")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(top, std::fs::read(dir.join("stratos.1")).unwrap());
}

/// A directory of fake tools for `doctor` (each a script answering `--version`).
fn fake_tools(dir: &Path, tools: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for t in tools {
        let p = dir.join(t);
        std::fs::write(
            &p,
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'QEMU emulator version 9.9.9' && exit 0\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn doctor(work: &Path, path: &Path) -> (std::process::Output, serde_json::Value) {
    let out = stratos_std(&work.join("cache"))
        .env("PATH", path)
        .env("STRATOS_PREFETCH_DIR", work.join("prefetch"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out, report)
}

#[test]
fn doctor_lists_what_is_missing_each_with_its_fix() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let (out, report) = doctor(work.path(), &empty);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["ok"], false);
    let missing: Vec<&str> = report["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in ["qemu", "kernel-tools", "bwrap"] {
        assert!(missing.contains(&m), "{m}: {missing:?}");
    }
    for c in report["checks"].as_array().unwrap() {
        assert!(
            c["ok"] == true || c["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "no fix for {c}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("qemu"), "{stderr}");
    // The cache is where STRATOS_CACHE says, empty.
    assert_eq!(
        report["cache"]["root"].as_str().unwrap(),
        work.path().join("cache").to_str().unwrap()
    );
    // Without --json: one line per check, the fixes, and what is missing last.
    let text = stratos_std(&work.path().join("cache"))
        .env("PATH", &empty)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("fix: install it: apt-get install qemu-system-x86"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("missing: "),
        "{stdout}"
    );
}

#[test]
fn doctor_passes_when_the_tools_are_there() {
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    fake_tools(
        &bin,
        &[
            "qemu-system-x86_64",
            "make",
            "gcc",
            "ld",
            "bc",
            "bison",
            "flex",
            "bwrap",
        ],
    );
    let (out, report) = doctor(work.path(), &bin);
    let qemu = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "qemu")
        .unwrap();
    assert!(
        qemu["found"]
            .as_str()
            .unwrap()
            .starts_with("QEMU emulator version 9.9.9"),
        "{qemu}"
    );
    // What is left depends on this host's files, not its PATH: the kernel source and headers.
    let mut host_lacks = Vec::new();
    if !Path::new("/usr/src/linux-source-6.1.tar.xz").is_file() {
        host_lacks.push("kernel-source");
    }
    if !Path::new("/usr/include/libelf.h").is_file()
        || !Path::new("/usr/include/openssl/ssl.h").is_file()
    {
        host_lacks.push("kernel-tools");
    }
    assert_eq!(report["missing"], serde_json::json!(host_lacks));
    assert_eq!(
        out.status.code(),
        Some(if host_lacks.is_empty() { 0 } else { 1 })
    );
}

/// Everything of a new profile but its kernel builds offline, as written: the shipped lock's
/// packages (from the prefetch directory ci/setup fills), the overlay, the baseline. The kernel is the
/// fake one (building the real one is the VM tier's: `vm::new_fn`). busybox only: the Python
/// and Node.js images take minutes to compress.
#[test]
fn a_new_busybox_function_builds_offline() {
    let work = tempfile::tempdir().unwrap();
    let (out, dir) = new(work.path(), "bb", "busybox");
    assert!(out.status.success());
    let profile = dir.join("profile.toml");
    let text = std::fs::read_to_string(&profile).unwrap();
    let (from, to) = (
        text.find("[kernel]\n").unwrap(),
        text.find("\n[init]\n").unwrap(),
    );
    let text = format!(
        "{}[kernel]\nprebuilt = \"bzImage\"\ncmdline = \"console=ttyS0\"\n{}",
        &text[..from],
        &text[to..]
    );
    std::fs::write(&profile, text).unwrap();
    std::fs::write(dir.join("bzImage"), fake_kernel()).unwrap();
    stratos(&work.path().join("cache"))
        .current_dir(&dir)
        .args(["build", "profile.toml", "--offline", "-q"])
        .assert()
        .success();
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-tvf"])
        .arg(dir.join("out/bb/rootfs.tar.zst"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&tar.stdout);
    for want in [
        " srv/www/cgi-bin/bb\n",
        " bin/sh -> busybox\n",
        " bin/busybox\n",
    ] {
        assert!(
            listing.contains(want),
            "{want} is not in the image:\n{listing}"
        );
    }
}
