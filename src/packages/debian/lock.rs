//! `PROFILE.lock`: the exact Debian packages an image installs, pinned by version and sha256.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::digest::Sha256;

use super::resolve::Resolution;
use crate::profile::Packages;

pub const LOCK_VERSION: i64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockFile {
    pub lock_version: i64,
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// sha256 of the `.deb`.
    pub sha256: Sha256,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// What pulled the package in: `profile` or the names of the packages depending on it.
    pub required_by: Vec<String>,
    /// The `Origin` of the repository it was resolved from (`Debian`); absent in older locks.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

/// The lock as written, before its entries are checked ([`LockFile::parse`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLockFile {
    lock_version: i64,
    #[serde(default, rename = "package")]
    packages: Vec<RawLockedPackage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLockedPackage {
    name: String,
    version: String,
    arch: String,
    sha256: String,
    size: u64,
    #[serde(default)]
    required_by: Vec<String>,
    #[serde(default)]
    origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read the lock file: {0} (create it with `stratos lock PROFILE`)")]
    Read(#[from] crate::fsio::ReadError),
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// One difference between two locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        name: String,
        version: String,
    },
    Removed {
        name: String,
        version: String,
    },
    Changed {
        name: String,
        from: String,
        to: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added { name, version } => write!(f, "+ {name} {version}"),
            Change::Removed { name, version } => write!(f, "- {name} {version}"),
            Change::Changed { name, from, to } => write!(f, "~ {name} {from} -> {to}"),
        }
    }
}

/// What changed from `before` (none: a new lock) to `after`: additions and version changes in
/// name order, then removals.
pub fn diff(before: Option<&LockFile>, after: &LockFile) -> Vec<Change> {
    let versions = |l: &LockFile| -> std::collections::BTreeMap<String, String> {
        l.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    };
    let before = before.map(versions).unwrap_or_default();
    let after = versions(after);
    let mut out = Vec::new();
    for (name, v) in &after {
        match before.get(name) {
            None => out.push(Change::Added {
                name: name.clone(),
                version: v.clone(),
            }),
            Some(o) if o != v => out.push(Change::Changed {
                name: name.clone(),
                from: o.clone(),
                to: v.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, v) in &before {
        if !after.contains_key(name) {
            out.push(Change::Removed {
                name: name.clone(),
                version: v.clone(),
            });
        }
    }
    out
}

impl LockFile {
    /// Reads the lock of an image for `arch`.
    pub fn load(path: &Path, arch: Arch) -> Result<Self, LockError> {
        let text = crate::fsio::read_text(path, crate::fsio::caps::LOCK, "a lock file")?;
        Self::parse(&text, path, arch)
    }

    /// Parses a lock: its version, then each package's name, digest, version and
    /// architecture; an error names the file, the line of the package's entry and the package.
    pub fn parse(text: &str, path: &Path, arch: Arch) -> Result<Self, LockError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = crate::profile::line_col(text, offset);
            LockError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawLockFile = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map_or(0, |s| s.start),
                e.message().trim_end().to_owned(),
            )
        })?;
        if raw.lock_version != LOCK_VERSION {
            return Err(invalid(
                0,
                format!(
                    "lock-version {} is not supported (expected {LOCK_VERSION})",
                    raw.lock_version
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut packages = Vec::with_capacity(raw.packages.len());
        for p in raw.packages {
            let at = text.find(&format!("name = \"{}\"", p.name)).unwrap_or(0);
            if !crate::profile::is_debian_name(&p.name) {
                return Err(invalid(
                    at,
                    format!("{:?} is not a Debian package name", p.name),
                ));
            }
            if !seen.insert(p.name.clone()) {
                return Err(invalid(at, format!("package {} is locked twice", p.name)));
            }
            packages.push(p.check(arch).map_err(|message| invalid(at, message))?);
        }
        Ok(LockFile {
            lock_version: raw.lock_version,
            packages,
        })
    }

    /// The lock as written by `stratos lock` (packages sorted by name).
    pub fn to_toml(&self) -> String {
        let mut l = self.clone();
        l.packages.sort_by(|a, b| a.name.cmp(&b.name));
        let body = toml::to_string(&l).expect("lock serialises");
        format!("# Generated by `stratos lock`: the exact packages this profile installs. Do not edit by hand.\n{body}")
    }
}

/// How an existing lock falls short of the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shortfall {
    /// Packages the profile lists that the lock does not hold.
    pub missing: Vec<String>,
    /// Locked builds (`name version`) the profile's origins and pins no longer allow.
    pub disallowed: Vec<String>,
}

impl Shortfall {
    /// Whether the lock still covers the profile.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.disallowed.is_empty()
    }
}

/// What `lock` lacks for `pkgs`: a lock made before the profile listed a package, or pinned an
/// origin or version, is stale.
pub fn shortfall(lock: &LockFile, pkgs: &Packages) -> Shortfall {
    Shortfall {
        missing: pkgs
            .debian
            .iter()
            .filter(|n| !lock.packages.iter().any(|p| &p.name == *n))
            .cloned()
            .collect(),
        disallowed: lock
            .packages
            .iter()
            .filter(|p| !pkgs.policy.allows_build(&p.name, &p.version, &p.origin))
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
    }
}

/// A resolved package the index gives no digest or size for.
#[derive(Debug, thiserror::Error)]
#[error("{name} {version}: the apt index gives no SHA256/Size for it; cannot pin it")]
pub struct Unpinnable {
    pub name: String,
    pub version: String,
}

impl LockFile {
    /// The lock pinning a resolution: every package with its digest, size, origin and what
    /// pulled it in.
    pub fn from_resolution(r: &Resolution) -> Result<LockFile, Unpinnable> {
        let mut lock = LockFile {
            lock_version: LOCK_VERSION,
            packages: Vec::new(),
        };
        for (name, p) in &r.packages {
            let (Some(sha256), 1..) = (p.sha256, p.size) else {
                return Err(Unpinnable {
                    name: name.clone(),
                    version: p.version.clone(),
                });
            };
            lock.packages.push(LockedPackage {
                name: name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                sha256,
                size: p.size,
                required_by: r
                    .required_by
                    .get(name)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                origin: p.origin.clone(),
            });
        }
        Ok(lock)
    }
}

impl RawLockedPackage {
    /// The entry, checked: a lowercase sha256, a Debian version, an architecture an image for
    /// `arch` runs.
    fn check(self, arch: Arch) -> Result<LockedPackage, String> {
        let name = &self.name;
        let sha256 =
            Sha256::parse(&self.sha256).map_err(|e| format!("package {name}: sha256: {e}"))?;
        if self.version.is_empty()
            || self
                .version
                .contains(|c: char| c.is_whitespace() || c == '/' || c == '=')
        {
            return Err(format!(
                "package {name}: {:?} is not a Debian version",
                self.version
            ));
        }
        if self.arch != arch.debian() && self.arch != "all" {
            return Err(format!(
                "package {name}: architecture {:?} cannot run in an {arch} image",
                self.arch
            ));
        }
        Ok(LockedPackage {
            name: self.name,
            version: self.version,
            arch: self.arch,
            sha256,
            size: self.size,
            required_by: self.required_by,
            origin: self.origin,
        })
    }
}

impl LockedPackage {
    /// Package URL (purl) with the version percent-encoded.
    pub fn purl(&self) -> String {
        let mut v = String::new();
        for c in self.version.chars() {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                v.push(c);
            } else {
                for b in c.to_string().bytes() {
                    v.push_str(&format!("%{b:02X}"));
                }
            }
        }
        format!("pkg:deb/debian/{}@{v}?arch={}", self.name, self.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"lock-version = 1
[[package]]
name = "busybox-static"
version = "1:1.35.0-4+deb12u1+b1"
arch = "amd64"
sha256 = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744"
size = 928188
required-by = ["profile"]
"#;

    #[test]
    fn parses_and_round_trips() {
        let l = LockFile::parse(GOOD, Path::new("x.lock"), Arch::X86_64).unwrap();
        assert_eq!(
            l.packages[0].purl(),
            "pkg:deb/debian/busybox-static@1%3A1.35.0-4%2Bdeb12u1%2Bb1?arch=amd64"
        );
        let again = LockFile::parse(&l.to_toml(), Path::new("x.lock"), Arch::X86_64).unwrap();
        assert_eq!(again, l);
    }

    #[test]
    fn rejects_bad_locks() {
        let e = LockFile::parse(
            &GOOD.replace("3d3f", "zz"),
            Path::new("x.lock"),
            Arch::X86_64,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("x.lock:3:1: package busybox-static: sha256"),
            "{e}"
        );
        let e = LockFile::parse(
            &GOOD.replace("3d3f", "3D3F"),
            Path::new("x.lock"),
            Arch::X86_64,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "x.lock:3:1: package busybox-static: sha256: a sha256 is written in lowercase hex (0-9, a-f); character 2 is 'D'"
        );
        let e = LockFile::parse(
            &GOOD.replace("size", "sighs"),
            Path::new("x.lock"),
            Arch::X86_64,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `sighs`"), "{e}");
        let e = LockFile::parse(
            &format!("{GOOD}{}", &GOOD[16..]),
            Path::new("x.lock"),
            Arch::X86_64,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("locked twice"), "{e}");
    }
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    fn lock(pkgs: &[(&str, &str)]) -> LockFile {
        LockFile {
            lock_version: LOCK_VERSION,
            packages: pkgs
                .iter()
                .map(|(n, v)| LockedPackage {
                    name: (*n).into(),
                    version: (*v).into(),
                    arch: "amd64".into(),
                    sha256: Sha256::of(n.as_bytes()),
                    size: 1,
                    required_by: vec!["profile".into()],
                    origin: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn diff_lists_additions_changes_and_removals() {
        let before = lock(&[("a", "1"), ("b", "1"), ("gone", "2")]);
        let after = lock(&[("a", "1"), ("b", "2"), ("new", "3")]);
        let d: Vec<String> = diff(Some(&before), &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(d, ["~ b 1 -> 2", "+ new 3", "- gone 2"]);
        assert_eq!(diff(None, &after).len(), 3);
    }
}
