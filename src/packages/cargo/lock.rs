//! Cargo.lock, read by StratOS itself: every crate the project can build with, and the sha256
//! of each crates.io crate's `.crate` file (the pin).

use crate::digest::Sha256;

/// Where a locked package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// crates.io: a `.crate` file pinned by its sha256.
    CratesIo(Sha256),
    /// A path package: the project itself or a crate inside its directory.
    Local,
}

/// One `[[package]]` of the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub name: String,
    pub version: String,
    pub source: Source,
}

impl Locked {
    /// `<name>-<version>`: the `.crate` file's stem, and the directory it unpacks to.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

#[derive(serde::Deserialize)]
struct RawLock {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    package: Vec<RawPackage>,
}

#[derive(serde::Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

/// The source strings crates.io has in a lock (the git index, the sparse index).
const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// A crate name as crates.io allows it.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A semver version: `MAJOR.MINOR.PATCH`, then what semver allows (`-pre-release`,
/// `+build`). Crate names have no dot, so `<name>-<version>` names one crate only.
fn is_version(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    (1..=64).contains(&s.len())
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
}

/// The lock's packages, checked: names and versions that can be file names, a sha256 for each
/// crates.io crate, no other registry and no git source (neither can be pinned by a file hash
/// StratOS checks), no package twice. `Err` says which package and what to do.
pub fn parse(text: &str) -> Result<Vec<Locked>, String> {
    let raw: RawLock = toml::from_str(text).map_err(|e| format!("not a Cargo.lock: {e}"))?;
    if raw.version.is_some_and(|v| v < 3) {
        return Err(format!(
            "lock file version {}: regenerate it with a current cargo (`cargo update --workspace` keeps the versions), which writes each crate's checksum beside it",
            raw.version.unwrap_or(0)
        ));
    }
    let mut out: Vec<Locked> = Vec::with_capacity(raw.package.len().min(4096));
    for p in raw.package {
        let at = format!("package {} {}", p.name, p.version);
        if !is_name(&p.name) || !is_version(&p.version) {
            return Err(format!(
                "{at:?}: not a crate name and version (letters, digits, - and _; a semver version)"
            ));
        }
        let source = match (p.source.as_deref(), p.checksum.as_deref()) {
            (None, _) => Source::Local,
            (Some(s), Some(sum)) if CRATES_IO.contains(&s) => {
                Source::CratesIo(sum.parse().map_err(|_| {
                    format!("{at}: checksum {sum:?} is not a sha256 (64 hex digits)")
                })?)
            }
            (Some(s), None) if CRATES_IO.contains(&s) => {
                return Err(format!(
                    "{at}: no checksum: a crates.io crate is pinned by its sha256; regenerate the lock (`cargo generate-lockfile`)"
                ))
            }
            (Some(s), _) if s.starts_with("git+") => {
                return Err(format!(
                    "{at}: from git ({s}): a git dependency has no file hash to pin; depend on a published version, or copy the crate into the project as a path dependency"
                ))
            }
            (Some(s), _) => {
                return Err(format!(
                    "{at}: from {s}: only crates.io crates (and path crates inside the project) are built; copy the crate into the project as a path dependency"
                ))
            }
        };
        if out
            .iter()
            .any(|o| o.name == p.name && o.version == p.version)
        {
            return Err(format!("{at}: listed twice"));
        }
        out.push(Locked {
            name: p.name,
            version: p.version,
            source,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "aaa7b1ddd8a1fe5c8ce0e1cbc8b8c8b0f4f6e5c7b1b8c8d8e8f8a8b8c8d8e8f8";

    fn lock(extra: &str) -> String {
        format!(
            "version = 4\n\n[[package]]\nname = \"fn\"\nversion = \"0.1.0\"\ndependencies = [\"serde\"]\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.228\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{SUM}\"\n{extra}"
        )
    }

    #[test]
    fn crates_io_crates_are_pinned_by_sha256_and_path_crates_are_local() {
        let l = parse(&lock("")).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].source, Source::Local);
        assert_eq!(l[1].stem(), "serde-1.0.228");
        assert_eq!(l[1].source, Source::CratesIo(SUM.parse().unwrap()));
    }

    #[test]
    fn what_cannot_be_pinned_or_named_safely_is_refused() {
        let cases = [
            (lock("\n[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"git+https://github.com/a/x#abc\"\n"), "from git"),
            (lock("\n[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"registry+https://example.com/index\"\nchecksum = \"00\"\n"), "only crates.io"),
            (lock("\n[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"), "no checksum"),
            (lock("\n[[package]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"zz\"\n"), "not a sha256"),
            (lock("\n[[package]]\nname = \"../x\"\nversion = \"1.0.0\"\n"), "not a crate name"),
            (lock("\n[[package]]\nname = \"x\"\nversion = \"1.0/../../a\"\n"), "not a crate name"),
            (lock("\n[[package]]\nname = \"a\"\nversion = \"1-0.0\"\n"), "not a crate name"),
            (lock("\n[[package]]\nname = \"fn\"\nversion = \"0.1.0\"\n"), "listed twice"),
            ("version = 1\n".to_owned(), "regenerate"),
            ("[[package]\n".to_owned(), "not a Cargo.lock"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
