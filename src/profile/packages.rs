//! `[packages]`: Debian packages (named here, versions in the lock), where they may come from,
//! what is trimmed, and the `[packages.python]` / `[packages.npm]` dependency files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::checks::{existing_file, image_path};
use super::{Ctx, ProfileError};
use crate::arch::Arch;
use crate::rootfs::ImagePath;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPackages {
    /// Debian binary package names; the exact versions come from the lock file.
    #[serde(default)]
    pub debian: Vec<Spanned<String>>,
    /// The lock file, relative to the profile (default: the profile's name with `.lock`).
    #[serde(default)]
    pub lock: Option<Spanned<String>>,
    /// Globs of installed paths to drop (on top of the defaults).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Globs of installed paths to keep even if excluded.
    #[serde(default)]
    pub keep: Vec<Spanned<String>>,
    /// Whether the default excludes (docs, man pages, locales, bytecode caches) apply.
    #[serde(default)]
    pub default_excludes: Option<bool>,
    /// The repository origins (apt's `Origin`) every package may come from.
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
    /// Per package: the origin and versions it may come from.
    #[serde(default)]
    pub pin: BTreeMap<String, Spanned<RawPin>>,
    /// `[packages.python]`: wheels pinned by a hashed requirements file.
    #[serde(default)]
    pub python: Option<RawPythonDeps>,
    /// `[packages.npm]`: packages pinned by a package-lock.json.
    #[serde(default)]
    pub npm: Option<RawNpmDeps>,
}

/// `[packages.python] requirements = "requirements.txt"`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPythonDeps {
    pub requirements: Spanned<String>,
    /// The simple API the wheels are fetched from (default PyPI's).
    #[serde(default)]
    pub index: Option<Spanned<String>>,
}

/// `[packages.npm] lock = "package-lock.json", into = "/srv/fn"`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawNpmDeps {
    pub lock: Spanned<String>,
    /// The in-image directory whose `node_modules` the lock describes.
    pub into: Spanned<String>,
    /// Packages allowed to carry a native addon (prebuilt; nothing is compiled).
    #[serde(default)]
    pub allow_native: Vec<Spanned<String>>,
}

/// `[packages.pin] NAME = { origin = "Debian", version = "18.*" }`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPin {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packages {
    pub debian: Vec<String>,
    pub lock: PathBuf,
    /// Installed paths to drop (globs: `*`, `?`, `**`), on top of the defaults.
    pub exclude: Vec<String>,
    /// Installed paths kept even when excluded.
    pub keep: Vec<String>,
    pub default_excludes: bool,
    /// Where packages may come from (`origins`, `[packages.pin]`), for `stratos lock`.
    pub policy: Policy,
    /// `[packages.python]`: wheels from a hashed requirements file.
    pub python: Option<PythonDeps>,
    /// `[packages.npm]`: packages from a package-lock.json.
    pub npm: Option<NpmDeps>,
}

/// Where packages may come from: the profile's `[packages] origins` and `[packages.pin]`.
/// With several origins on the machine (Debian's archive and a vendor's repository offering a
/// newer build of the same package), a package offered by more than one allowed origin is an
/// error until the profile says which: never a silent pick of the highest version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The origins any package may come from (empty: any origin).
    pub origins: Vec<String>,
    /// Per package: the origin and/or versions it may come from.
    pub pins: BTreeMap<String, Pin>,
}

/// `[packages.pin] NAME = { origin = "Debian", version = "18.*" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    pub origin: Option<String>,
    /// A pattern of versions: `*` matches any run of characters (`18.*`, `*+deb12u*`).
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonDeps {
    pub requirements: PathBuf,
    /// The simple API (PEP 691) wheels are fetched from.
    pub index: String,
}

/// The index wheels come from when `[packages.python]` names none (its simple API, PEP 691 JSON).
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmDeps {
    pub lock: PathBuf,
    /// The directory whose `node_modules` the lock describes.
    pub into: ImagePath,
    pub allow_native: Vec<String>,
}

/// Debian policy §5.6.7: lower case letters, digits, '+', '-', '.'; at least two characters,
/// starting with an alphanumeric.
pub fn is_debian_name(s: &str) -> bool {
    s.len() >= 2
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// `[packages]`.
pub(super) fn validate_packages(
    cx: &Ctx,
    p: RawPackages,
    dir: &Path,
    arch: Arch,
) -> Result<Packages, ProfileError> {
    // Fields are checked in the order they are written here.
    Ok(Packages {
        debian: debian_names(cx, &p.debian)?,
        lock: lock_path(cx, p.lock.as_ref(), dir, arch),
        exclude: path_globs(cx, &p.exclude, "exclude")?,
        keep: path_globs(cx, &p.keep, "keep")?,
        default_excludes: p.default_excludes.unwrap_or(true),
        policy: package_policy(cx, &p)?,
        python: p
            .python
            .as_ref()
            .map(|py| python_deps(cx, py, dir))
            .transpose()?,
        npm: p.npm.as_ref().map(|n| npm_deps(cx, n, dir)).transpose()?,
    })
}

/// `[packages] debian`.
fn debian_names(cx: &Ctx, list: &[Spanned<String>]) -> Result<Vec<String>, ProfileError> {
    let mut debian = Vec::new();
    for (i, d) in list.iter().enumerate() {
        if !is_debian_name(d.get_ref()) {
            return Err(cx.at(
                d.span(),
                format!("packages.debian[{i}]"),
                format!("{:?} is not a Debian package name", d.get_ref()),
            ));
        }
        debian.push(d.get_ref().clone());
    }
    Ok(debian)
}

/// `[packages] lock`, else the profile's name with `.lock`, next to it. A lock is per
/// architecture (each pins that architecture's .debs): an x86-64 build reads that path, another
/// architecture's the same path with its name before `.lock` (`python-fn.aarch64.lock`).
fn lock_path(cx: &Ctx, lock: Option<&Spanned<String>>, dir: &Path, arch: Arch) -> PathBuf {
    let path = match lock {
        Some(l) => dir.join(l.get_ref()),
        None => {
            let stem = cx
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("profile");
            dir.join(format!("{stem}.lock"))
        }
    };
    lock_for_arch(&path, arch)
}

/// The lock file of `arch` for a profile whose x86-64 lock is `path`.
pub fn lock_for_arch(path: &Path, arch: Arch) -> PathBuf {
    if arch == Arch::X86_64 {
        return path.to_owned();
    }
    let name = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("profile.lock");
    let stem = name.strip_suffix(".lock").unwrap_or(name);
    path.with_file_name(format!("{stem}.{}.lock", arch.name()))
}

/// `[packages] exclude` / `keep`: globs of in-image paths.
fn path_globs(cx: &Ctx, list: &[Spanned<String>], key: &str) -> Result<Vec<String>, ProfileError> {
    let mut out = Vec::new();
    for (i, g) in list.iter().enumerate() {
        if !g.get_ref().starts_with('/') && !g.get_ref().starts_with("**") {
            return Err(cx.at(
                g.span(),
                format!("packages.{key}[{i}]"),
                "a glob of in-image paths must start with / or ** (e.g. \"/usr/share/doc/**\")",
            ));
        }
        out.push(g.get_ref().clone());
    }
    Ok(out)
}

/// `[packages.python]`.
fn python_deps(cx: &Ctx, py: &RawPythonDeps, dir: &Path) -> Result<PythonDeps, ProfileError> {
    let index = match &py.index {
        Some(i) if i.get_ref().starts_with("https://") => i.get_ref().clone(),
        Some(i) => {
            return Err(cx.at(
                i.span(),
                "packages.python.index",
                "the index is an https:// URL of a simple API (PEP 691), e.g. \"https://pypi.org/simple/\"",
            ))
        }
        None => DEFAULT_INDEX.to_owned(),
    };
    Ok(PythonDeps {
        requirements: existing_file(cx, dir, &py.requirements, "packages.python.requirements")?,
        index,
    })
}

/// `[packages.npm]`.
fn npm_deps(cx: &Ctx, n: &RawNpmDeps, dir: &Path) -> Result<NpmDeps, ProfileError> {
    Ok(NpmDeps {
        lock: existing_file(cx, dir, &n.lock, "packages.npm.lock")?,
        into: image_path(cx, &n.into, "packages.npm.into")?,
        allow_native: n.allow_native.iter().map(|a| a.get_ref().clone()).collect(),
    })
}

/// `[packages] origins` and `[packages.pin]`.
fn package_policy(cx: &Ctx, p: &RawPackages) -> Result<Policy, ProfileError> {
    let mut policy = Policy::default();
    for (i, o) in p.origins.iter().enumerate() {
        if o.get_ref().trim().is_empty() {
            return Err(cx.at(
                o.span(),
                format!("packages.origins[{i}]"),
                "an origin is the `Origin` of an apt repository's Release file, e.g. \"Debian\"",
            ));
        }
        policy.origins.push(o.get_ref().clone());
    }
    for (name, pin) in &p.pin {
        let key = format!("packages.pin.{name}");
        if !is_debian_name(name) {
            return Err(cx.at(
                pin.span(),
                key,
                format!("{name:?} is not a Debian package name"),
            ));
        }
        let raw = pin.get_ref();
        if raw.origin.is_none() && raw.version.is_none() {
            return Err(cx.at(
                pin.span(),
                key,
                "a pin says where the package may come from: { origin = \"Debian\" } and/or { version = \"18.*\" }",
            ));
        }
        if raw.origin.as_deref().is_some_and(|o| o.trim().is_empty())
            || raw.version.as_deref().is_some_and(|v| v.trim().is_empty())
        {
            return Err(cx.at(pin.span(), key, "origin and version may not be empty"));
        }
        policy.pins.insert(
            name.clone(),
            Pin {
                origin: raw.origin.clone(),
                version: raw.version.clone(),
            },
        );
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn names_globs_and_pins_are_checked() {
        let f = Fixture::new();
        for (snippet, want) in [
            ("debian = [\"Bash\"]\n", "packages.debian[0]"),
            ("exclude = [\"usr/share\"]\n", "packages.exclude[0]"),
            ("origins = [\" \"]\n", "packages.origins[0]"),
            ("[packages.pin]\nbash = {}\n", "packages.pin.bash"),
        ] {
            let e = f.err(&format!("{BASE}[packages]\n{snippet}"));
            assert!(e.contains(want), "{snippet:?}: {e}");
        }
        let p = f
            .parse(&format!(
                "{BASE}[packages]\ndebian = [\"bash\"]\n[packages.pin]\nbash = {{ origin = \"Debian\" }}\n"
            ))
            .unwrap();
        let p = p.packages.unwrap();
        assert_eq!(p.lock, f.dir.path().join("p.lock"));
        assert_eq!(p.policy.pins["bash"].origin.as_deref(), Some("Debian"));
    }
}
