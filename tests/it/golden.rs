//! Tests as documentation: what a profile becomes, and what a user sees when a profile is
//! wrong.
//!
//! * `tests/golden/<case>/profile.toml` (+ its inputs) → `expected.txt`: every entry of the
//!   image's root filesystem (mode, owner, kind, path, size and content digest), in the style of
//!   zram-generator's golden trees. A change to what the builder produces is a visible diff.
//! * `tests/golden/errors/<case>.toml` → `tests/golden/errors/<case>.txt`: the exact message
//!   `stratos build` prints for a broken profile. A worse message is a visible diff.
//!
//! `STRATOS_BLESS=1 cargo test --test golden` rewrites the expected files (review the diff).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::*;

fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

fn bless() -> bool {
    std::env::var_os("STRATOS_BLESS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the file, or writes it when blessing.
fn check(expected: &Path, actual: &str) {
    if bless() {
        std::fs::write(expected, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with STRATOS_BLESS=1 cargo test --test golden)",
            expected.display()
        )
    });
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from what the build gives, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n(if the change is intended: STRATOS_BLESS=1 cargo test --test golden, and review the diff)",
            expected.display(),
            first + 1,
            want.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// The root filesystem of an image, one line per entry.
fn listing(image: &Path) -> String {
    let bytes = std::fs::read(image.join("rootfs.tar.zst")).unwrap();
    let tar = zstd::stream::decode_all(bytes.as_slice()).unwrap();
    let mut ar = tar::Archive::new(tar.as_slice());
    let mut out = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = format!("/{}", path.trim_start_matches("./"));
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "dir ",
            tar::EntryType::Regular => "file",
            tar::EntryType::Symlink => "link",
            tar::EntryType::Link => "hard",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "blk ",
            _ => "????",
        };
        let mut line = format!(
            "{:04o} {}:{} {kind} {path}",
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap()
        );
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                line.push_str(&format!(" -> {t}"));
            }
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                // The init binary depends on how this workspace was compiled, not on the
                // profile: only its presence is part of the image's shape.
                if path == "/init" {
                    line.push_str(" (stratos-init)");
                } else {
                    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
                    line.push_str(&format!(" {} {}", data.len(), &digest[..16]));
                }
            }
            _ => {}
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn build(cache: &Path, profile: &Path, out: &Path) -> std::process::Output {
    stratos_std(cache)
        .arg("build")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("-q")
        .output()
        .unwrap()
}

/// Copies a golden case's inputs (and the fake kernel every case boots with) to a scratch
/// directory: builds read only from there.
fn stage(case: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for p in walk_files(case) {
        let rel = p.strip_prefix(case).unwrap();
        let dest = dir.path().join(rel);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &dest).unwrap();
        } else {
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&p, &dest).unwrap();
        }
    }
    std::fs::write(dir.path().join("bzImage"), fake_kernel()).unwrap();
    dir
}

#[test]
fn profiles_become_these_trees() {
    let cache = tempfile::tempdir().unwrap();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("profile.toml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "golden cases: {cases:?}");
    for case in cases {
        let staged = stage(&case);
        let out = staged.path().join("out");
        let o = build(cache.path(), &staged.path().join("profile.toml"), &out);
        assert!(
            o.status.success(),
            "{}: {}",
            case.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        check(&case.join("expected.txt"), &listing(&out));
    }
}

#[test]
fn broken_profiles_give_these_messages() {
    let cache = tempfile::tempdir().unwrap();
    let dir = golden_dir().join("errors");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "error cases: {cases:?}");
    let staged = stage(&dir);
    for case in cases {
        let name = case.file_name().unwrap().to_owned();
        let o = build(
            cache.path(),
            &staged.path().join(&name),
            &staged.path().join("out"),
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            case.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        // Paths of the scratch directory are not part of the message's shape.
        let text = String::from_utf8_lossy(&o.stderr)
            .replace(&staged.path().display().to_string(), "<dir>");
        check(&case.with_extension("txt"), &text);
    }
}
