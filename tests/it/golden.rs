//! Tests as documentation: what a profile becomes, and what a user sees when a profile is
//! wrong.
//!
//! * `tests/golden/<case>/profile.toml` (+ its inputs) → `expected.txt`: every entry of the
//!   image's root filesystem (mode, owner, kind, path, size and content digest), in the style of
//!   zram-generator's golden trees. A change to what the builder produces is a visible diff.
//! * `tests/golden/errors/<case>.toml` → `tests/golden/errors/<case>.txt`: the exact message
//!   `stratos build` prints for a broken profile. A worse message is a visible diff.
//! * `docs/cli.md`: every command's `--help`, rendered from the clap definitions
//!   (`stratos::cli::docgen`). And every relative link of the documentation resolves.
//!
//! `STRATOS_BLESS=1 cargo test --test it -- golden` rewrites the expected files (review the diff).

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
            "{}: {e} (create it with STRATOS_BLESS=1 cargo test --test it -- golden)",
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
            "{} differs from what the build gives, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n(if the change is intended: STRATOS_BLESS=1 cargo test --test it -- golden, and review the diff)",
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

/// `docs/cli.md` is every command's `--help`, rendered from the clap definitions
/// (`stratos::cli::docgen`): a changed flag or help text is a visible diff of the reference.
#[test]
fn cli_reference_is_current() {
    let md = stratos::cli::docgen::markdown();
    check(&root().join("docs/cli.md"), &md);
    // Each section is what the binary prints for `--help` (piped, so at clap's fallback width).
    let sections: Vec<&str> = md.split("\n## ").skip(1).collect();
    assert!(sections.len() > 30, "{} commands", sections.len());
    for section in sections {
        let (name, body) = section.split_once('\n').unwrap();
        let help = body
            .trim_start()
            .strip_prefix("```text\n")
            .and_then(|b| b.strip_suffix("\n```\n"))
            .unwrap_or_else(|| panic!("{name}: not one text block"));
        let out = std::process::Command::new(bin())
            .args(name.split(' ').skip(1))
            .arg("--help")
            .env("COLUMNS", stratos::cli::docgen::WIDTH.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --help");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            help,
            "{name} --help"
        );
    }
}

/// Every relative link in README.md and docs/*.md points at a file that exists, and every
/// `#anchor` at a heading of the file it names.
#[test]
fn documentation_links_resolve() {
    let mut pages = vec![root().join("README.md")];
    pages.extend(
        std::fs::read_dir(root().join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    pages.sort();
    assert!(pages.len() > 5, "pages: {pages:?}");
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in markdown_links(&text) {
            if let Err(why) = resolve(page, &target) {
                broken.push(format!("{}: ({target}): {why}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of the inline links `[text](target)` outside code (fenced blocks and code
/// spans), without a title.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans hold no links: drop them (an odd backtick leaves the rest as text).
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            links.push(target.to_owned());
            rest = &rest[end..];
        }
    }
    links
}

/// Checks one link target of `page`: external links are not followed.
fn resolve(page: &Path, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty link".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(());
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let file = if file.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().unwrap().join(file)
    };
    if !file.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    let Some(anchor) = anchor else { return Ok(()) };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if heading_anchors(&text).iter().any(|a| a == anchor) {
        Ok(())
    } else {
        Err(format!("no heading #{anchor} in {}", file.display()))
    }
}

/// The anchors GitHub gives the headings of a markdown text: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped, a repeated anchor suffixed `-1`, `-2`, ….
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(base.clone()).or_insert(0u32);
        anchors.push(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}
