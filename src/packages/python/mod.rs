//! Python: a hash-pinned `requirements.txt`, wheels only, fetched into the cache once and
//! installed into the image's `dist-packages` without running any of their code; and the
//! image's bytecode, compiled at build time.

pub mod bytecode;
pub mod metadata;
pub mod platform;
pub mod pypi;
pub mod requirements;
pub mod wheel;
pub mod zip;

use std::path::{Path, PathBuf};

pub use platform::{Platform, WheelName};
pub use pypi::Fetched;
pub use requirements::{normalize, parse_requirements, Requirement};
pub use wheel::{install, Installed, Scheme};

use super::debian::lock::LockFile;
use super::fetch::{Sources, StoreError};
use super::{elf, PackageError};
use crate::arch::Arch;
use crate::profile::{Packages, Profile};
use crate::progress::Progress;
use crate::rootfs::{ImagePath, Origin, Tree};
use crate::sbom::ComponentSpec;
use zip::ZipError;

#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error("{file}:{line}: {why}")]
    Requirements {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{file}: {why}")]
    File { file: PathBuf, why: String },
    #[error("{name} {version}: {why}")]
    Wheel {
        name: String,
        version: String,
        why: String,
    },
    #[error("{file}: {name} {version}: no wheel for {arch}: only {platforms} ({wheels}); pin the hash of its manylinux {machine} wheel in {file} too (`pip download --only-binary=:all: --platform manylinux2014_{machine} {name}=={version}`, then `pip hash`), or do not build this profile for {arch} ([image] arch)")]
    NoWheelForArch {
        file: PathBuf,
        name: String,
        version: String,
        arch: Arch,
        machine: &'static str,
        /// The platform tags of the pinned wheels.
        platforms: String,
        /// Their file names.
        wheels: String,
    },
    #[error("{name} {version}: no wheel pinned by {file} is in the cache ({cache}) and --offline forbids downloading; run the build once without --offline (or ci/setup)")]
    Offline {
        name: String,
        version: String,
        file: PathBuf,
        cache: PathBuf,
    },
    #[error("{name} {version}: {why}")]
    Fetch {
        name: String,
        version: String,
        why: String,
    },
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PypiError {
    /// A failure of the machine or the network, not of the input.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Fetch { .. } | Self::Store(_))
    }
}

/// The image's Python (major, minor), from its interpreter's name (`/usr/bin/python3.11`).
fn python_version(interpreter: &ImagePath) -> Option<(u32, u32)> {
    let name = interpreter.file_name()?.strip_prefix("python")?;
    let (a, b) = name.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The glibc (major, minor) the Debian lock puts in the image (`libc6 2.36-9+deb12u10`).
fn glibc_version(pkgs: &Packages, arch: Arch) -> Option<(u32, u32)> {
    let lock = LockFile::load(&pkgs.lock, arch).ok()?;
    let libc = lock.packages.iter().find(|p| p.name == "libc6")?;
    let upstream = libc.version.split(':').next_back()?.split('-').next()?;
    let mut it = upstream.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `[packages.python]`: each pinned wheel installed into the image's `dist-packages`, its
/// compiled modules checked against the image's libraries; one component per wheel.
pub fn install_python(
    tree: &mut Tree,
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let Some(deps) = &pkgs.python else {
        return Ok(Vec::new());
    };
    let (py, platform, reqs) = wheels_wanted(profile, pkgs, deps, arch)?;
    let scheme = Scheme::debian_local(platform.python, py.interpreter.as_str());
    let limits = profile.image.limits;
    let mut comps = Vec::new();
    for r in &reqs {
        let wheel = pypi::fetch(
            r,
            &platform,
            &deps.requirements,
            &deps.index,
            sources,
            limits.package,
        )?;
        let purl = wheel::purl(r);
        let budget = crate::rootfs::Budget {
            limits,
            image_used: tree.content_bytes(),
        };
        let inst = install(r, &wheel, &scheme, tree, &Origin::new(&purl), budget)?;
        // A compiled module loads the image's libraries: each must be there.
        for so in &inst.native {
            elf::closure(tree, std::slice::from_ref(so), arch).map_err(|e| {
                PackageError::Native {
                    what: format!("wheel {}", wheel.file_name),
                    why: e.to_string(),
                }
            })?;
        }
        progress.info(format!(
            "installed wheel {} ({} files, {} KiB{})",
            wheel.file_name,
            inst.files,
            inst.bytes / 1024,
            if inst.native.is_empty() {
                String::new()
            } else {
                format!(", {} compiled modules", inst.native.len())
            }
        ));
        comps.push(wheel::component(r, &wheel, &inst, &purl));
    }
    Ok(comps)
}

/// What `[packages.python]` asks for: the image's Python, the platform its wheels must fit,
/// and the pinned requirements.
fn wheels_wanted<'p>(
    profile: &'p Profile,
    pkgs: &Packages,
    deps: &crate::profile::PythonDeps,
    arch: Arch,
) -> Result<(&'p crate::profile::PythonSpec, Platform, Vec<Requirement>), PackageError> {
    let input = |why: String| PypiError::File {
        file: deps.requirements.clone(),
        why,
    };
    let py = profile.python.as_ref().ok_or_else(|| {
        input("[packages.python] installs into the image's Python: add [runtime.python] (its interpreter, e.g. /usr/bin/python3.11)".into())
    })?;
    let python = python_version(&py.interpreter).ok_or_else(|| {
        input(format!(
            "the interpreter {} does not name its version (python3.X); set [runtime.python] interpreter",
            py.interpreter
        ))
    })?;
    let platform = Platform {
        arch,
        python,
        glibc: glibc_version(pkgs, arch),
    };
    let reqs = read_requirements(&deps.requirements)?;
    Ok((py, platform, reqs))
}

/// Before any expensive step: every pinned wheel is in the cache or fetched into it now
/// (offline: is there), and fits the image's platform. Returns how many were checked.
pub fn preflight(
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
) -> Result<usize, PackageError> {
    let Some(deps) = &pkgs.python else {
        return Ok(0);
    };
    let (_, platform, reqs) = wheels_wanted(profile, pkgs, deps, arch)?;
    for r in &reqs {
        pypi::fetch(
            r,
            &platform,
            &deps.requirements,
            &deps.index,
            sources,
            profile.image.limits.package,
        )?;
    }
    Ok(reqs.len())
}

/// The profile's requirements file, parsed.
fn read_requirements(file: &Path) -> Result<Vec<Requirement>, PypiError> {
    let input = |why: String| PypiError::File {
        file: file.to_owned(),
        why,
    };
    let text = crate::fsio::read_file(file, crate::fsio::caps::LOCK, "a requirements file")
        .map_err(|e| input(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| input("not UTF-8".into()))?;
    parse_requirements(&text, file)
}
