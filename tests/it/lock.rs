//! `stratos lock` against apt indexes from two origins (Debian's archive and a vendor's
//! repository offering a newer build of the same package): the lock refuses to pick one
//! silently, takes the one the profile pins, records its origin, and re-resolves a lock that
//! the profile's pin no longer allows. apt itself reads the fixture repositories (through
//! `APT_CONFIG`); the `.deb`s are in the package cache, so nothing is downloaded.

use std::path::{Path, PathBuf};

use crate::common::*;

struct Repos {
    dir: tempfile::TempDir,
}

impl Repos {
    /// Two repositories, `Debian` and `Nodesource`, each offering `hello` (1 and 2); the
    /// `.deb` bytes are put in `cache`'s package cache under their digests.
    fn new(cache: &Path) -> Repos {
        require_tool("apt-get");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["lists", "empty", "cache", "etc"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("status"), b"").unwrap();
        std::fs::write(
            d.join("etc/sources.list"),
            "deb [trusted=yes arch=amd64] http://debian.invalid/debian bookworm main\n\
             deb [trusted=yes arch=amd64] http://vendor.invalid/node nodistro main\n",
        )
        .unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        std::fs::write(
            d.join("apt.conf"),
            format!(
                "Dir::Etc::SourceList \"{}\";\nDir::Etc::SourceParts \"{}\";\n\
                 Dir::Etc::PreferencesParts \"{}\";\nDir::State::Lists \"{}\";\n\
                 Dir::State::status \"{}\";\nDir::Cache \"{}\";\n\
                 APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; }};\n",
                p("etc/sources.list"),
                p("empty"),
                p("empty"),
                p("lists"),
                p("status"),
                p("cache"),
            ),
        )
        .unwrap();
        let debs = cache.join("debs/sha256");
        std::fs::create_dir_all(&debs).unwrap();
        for (list, origin, suite, version) in [
            (
                "debian.invalid_debian_dists_bookworm",
                "Debian",
                "bookworm",
                "1.0-1",
            ),
            (
                "vendor.invalid_node_dists_nodistro",
                "Nodesource",
                "nodistro",
                "2.0-1vendor1",
            ),
        ] {
            std::fs::write(
                d.join(format!("lists/{list}_Release")),
                format!(
                    "Origin: {origin}\nLabel: {origin}\nSuite: {suite}\nCodename: {suite}\n\
                     Architectures: amd64\nComponents: main\n"
                ),
            )
            .unwrap();
            let deb = format!("{origin} hello {version}\n").into_bytes();
            let sha = sha256_bytes(&deb);
            std::fs::write(debs.join(format!("{sha}.deb")), &deb).unwrap();
            std::fs::write(
                d.join(format!("lists/{list}_main_binary-amd64_Packages")),
                format!(
                    "Package: hello\nVersion: {version}\nArchitecture: amd64\n\
                     Filename: pool/h/hello_{version}_amd64.deb\nSize: {}\nSHA256: {sha}\n",
                    deb.len()
                ),
            )
            .unwrap();
        }
        Repos { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("apt.conf")
    }
}

fn sha256_bytes(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

fn lock(cache: &Path, repos: &Repos, profile: &Path) -> std::process::Output {
    stratos_std(cache)
        .env("APT_CONFIG", repos.config())
        .arg("lock")
        .arg(profile)
        .output()
        .unwrap()
}

#[test]
fn the_lock_never_takes_a_package_from_an_unexpected_origin() {
    let cache = tempfile::tempdir().unwrap();
    let repos = Repos::new(cache.path());
    let f = Fixture::new();
    let profile = f.profile();
    let base = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\n"),
    )
    .unwrap();

    // Two origins offer it and the profile does not say which: refused, both named.
    let out = lock(cache.path(), &repos, &profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "hello is offered by more than one origin (Debian 1.0-1, Nodesource 2.0-1vendor1)"
        ) && stderr.contains("[packages.pin] hello = { origin = \"...\" }"),
        "{stderr}"
    );
    assert!(!f.path("profile.lock").exists());

    // Pinned to Debian's: the lower version, with its origin recorded.
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\n\n[packages.pin]\nhello = {{ origin = \"Debian\" }}\n"),
    )
    .unwrap();
    let out = lock(cache.path(), &repos, &profile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(f.path("profile.lock")).unwrap();
    assert!(text.contains("version = \"1.0-1\""), "{text}");
    assert!(text.contains("origin = \"Debian\""), "{text}");

    // The profile now wants the vendor's: the lock no longer holds and is resolved again.
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\n\n[packages.pin]\nhello = {{ origin = \"Nodesource\", version = \"2.*\" }}\n"),
    )
    .unwrap();
    let out = lock(cache.path(), &repos, &profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "the lock holds what the profile's origins/pins no longer allow (hello 1.0-1)"
        ),
        "{stderr}"
    );
    let text = std::fs::read_to_string(f.path("profile.lock")).unwrap();
    assert!(
        text.contains("version = \"2.0-1vendor1\"") && text.contains("origin = \"Nodesource\""),
        "{text}"
    );

    // A pin nothing matches names what is offered.
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\norigins = [\"Ubuntu\"]\n"),
    )
    .unwrap();
    let out = lock(cache.path(), &repos, &profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hello: no build of it is allowed by [packages] origins = [\"Ubuntu\"]"),
        "{stderr}"
    );
}

/// A digest is lowercase hex wherever StratOS reads one: an uppercase sha256 in a lock is
/// refused when the lock is read, naming the file, the line and the package (before, it passed
/// the lock's check and failed later as "the archive changed").
#[test]
fn a_lock_with_an_uppercase_sha256_is_refused_naming_file_line_and_package() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let profile = f.profile();
    let base = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\n"),
    )
    .unwrap();
    let sha = sha256_bytes(b"hello").to_uppercase();
    f.write(
        "profile.lock",
        format!(
            "lock-version = 1\n\n[[package]]\nname = \"hello\"\nversion = \"1.0-1\"\narch = \"amd64\"\nsha256 = \"{sha}\"\nsize = 5\nrequired-by = [\"profile\"]\n"
        )
        .as_bytes(),
    );
    let out = stratos_std(cache.path())
        .arg("lock")
        .arg(&profile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lock = f.path("profile.lock");
    assert!(
        stderr.contains(&format!(
            "{}:4:1: package hello: sha256: a sha256 is written in lowercase hex (0-9, a-f); character 2 is 'C'",
            lock.display()
        )),
        "{stderr}"
    );
}

/// `lock --offline` resolves from the apt indexes on the machine and takes the .debs from the
/// package cache only: a missing one is named with the command that fetches it and no lock is
/// written; with everything cached it locks, and an online lock reuses the cached .debs instead
/// of downloading them. `-v` shows the apt commands it runs.
#[test]
fn lock_offline_uses_the_cache_and_names_what_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let repos = Repos::new(cache.path());
    let f = Fixture::new();
    let profile = f.profile();
    let base = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        format!("{base}\n[packages]\ndebian = [\"hello\"]\n\n[packages.pin]\nhello = {{ origin = \"Debian\" }}\n"),
    )
    .unwrap();
    let deb = b"Debian hello 1.0-1\n".to_vec();
    let cached = cache
        .path()
        .join("debs/sha256")
        .join(format!("{}.deb", sha256_bytes(&deb)));
    std::fs::remove_file(&cached).unwrap();
    let run = |args: &[&str]| {
        stratos_std(cache.path())
            .env("APT_CONFIG", repos.config())
            .args(args)
            .arg("lock")
            .arg(&profile)
            .arg("--offline")
            .output()
            .unwrap()
    };

    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--offline: 1 package(s) the lock needs are not in the package cache")
            && stderr.contains(": hello 1.0-1; run `stratos lock ")
            && stderr.contains("without --offline to download them"),
        "{stderr}"
    );
    assert!(!f.path("profile.lock").exists());

    std::fs::write(&cached, &deb).unwrap();
    let out = run(&["-v"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("hello 1.0-1 (0 KiB): in the package cache"),
        "{stderr}"
    );
    // The commands it ran, as shell lines.
    assert!(
        stderr.contains(
            "stratos: + apt-get indextargets --format '$(FILENAME) $(ORIGIN)' 'Created-By: Packages' 'Architecture: amd64'"
        ) && stderr.contains("stratos: + /usr/lib/apt/apt-helper cat-file "),
        "{stderr}"
    );
    assert!(f.path("profile.lock").exists());

    // Online, the cached .deb is reused (a download would fail: the repository is not real);
    // without -v no command is shown.
    let out = stratos_std(cache.path())
        .env("APT_CONFIG", repos.config())
        .arg("lock")
        .arg(&profile)
        .arg("--update")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("hello 1.0-1 (0 KiB): in the package cache"),
        "{stderr}"
    );
    assert!(!stderr.contains("stratos: + "), "{stderr}");
}
