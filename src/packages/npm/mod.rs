//! npm dependencies: a `package-lock.json` (lockfile v2 or v3) installed the way `npm ci
//! --omit=dev --ignore-scripts` would, without npm: every tarball fetched from its `resolved`
//! URL into the cache once, checked against its `integrity` (sha512), unpacked at the lock's
//! `node_modules` paths; no install script ever runs.

pub mod lock;
pub mod tarball;

use std::path::PathBuf;

pub use lock::{plan, LockedPackage, Plan};
pub use tarball::{link_bins, unpack, Installed};

use super::fetch::{Sources, StoreError};
use super::{elf, PackageError};
use crate::arch::Arch;
use crate::digest::Sha256;
use crate::profile::{NpmDeps, Packages, Profile};
use crate::progress::Progress;
use crate::rootfs::{ImagePath, Kind, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};

#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error("{file}: {why}")]
    Lock { file: PathBuf, why: String },
    #[error("{file}: packages[{key:?}]: {why}")]
    Entry {
        file: PathBuf,
        key: String,
        why: String,
    },
    #[error("{name} {version}: {why}")]
    Tarball {
        name: String,
        version: String,
        why: String,
    },
    #[error("{name} {version}: its tarball is not in the cache ({cache}) and --offline forbids downloading it; run the build once without --offline (or ci/setup)")]
    Offline {
        name: String,
        version: String,
        cache: PathBuf,
    },
    #[error("{name} {version}: {why}")]
    Fetch {
        name: String,
        version: String,
        why: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NpmError {
    /// A failure of the machine or the network, not of the input.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Fetch { .. } | Self::Store(_))
    }
}

/// The profile's package-lock.json, read and planned.
fn read_plan(deps: &crate::profile::NpmDeps, arch: Arch) -> Result<Plan, NpmError> {
    let text = crate::fsio::read_file(&deps.lock, crate::fsio::caps::LOCK, "a package-lock.json")
        .map_err(|e| NpmError::Lock {
        file: deps.lock.clone(),
        why: e.to_string(),
    })?;
    plan(&text, &deps.lock, arch)
}

/// Before any expensive step: every tarball the lock pins is in the cache or fetched into it
/// now (offline: is there). Returns how many were checked.
pub fn preflight(
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
) -> Result<usize, PackageError> {
    let Some(deps) = &pkgs.npm else {
        return Ok(0);
    };
    let plan = read_plan(deps, arch)?;
    for p in &plan.packages {
        tarball::fetch(p, sources, profile.image.limits.package)?;
    }
    Ok(plan.packages.len())
}

/// `[packages.npm]`: the lock's packages unpacked under `into/node_modules`, no scripts run;
/// one component per installed package.
pub fn install_npm(
    tree: &mut Tree,
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let Some(deps) = &pkgs.npm else {
        return Ok(Vec::new());
    };
    let plan = read_plan(deps, arch)?;
    for (key, why) in &plan.skipped {
        progress.info(format!("npm: not installing {key} ({why})"));
    }
    let limits = profile.image.limits;
    let mut comps = Vec::new();
    let mut installed: Vec<(LockedPackage, ImagePath)> = Vec::new();
    for p in &plan.packages {
        let tgz = tarball::fetch(p, sources, limits.package)?;
        let dir = package_dir(deps, p)?;
        let budget = crate::rootfs::Budget {
            limits,
            image_used: tree.content_bytes(),
        };
        let inst = unpack(p, &tgz, &dir, tree, &origin(p), budget)?;
        check_native(tree, deps, p, &inst, arch)?;
        if p.has_install_script {
            progress.info(format!(
                "npm: {} {} declares an install script; not run (StratOS never runs package code at build time)",
                p.name, p.version
            ));
        }
        progress.info(format!(
            "installed npm package {} {} at {} ({} files, {} KiB)",
            p.name,
            p.version,
            dir,
            inst.files,
            inst.bytes / 1024
        ));
        comps.push(component(p, &inst, Sha256::of(&tgz)));
        installed.push((p.clone(), dir));
    }
    // Command links once every package is in place.
    for (p, dir) in &installed {
        link_bins(p, dir, tree, &origin(p))?;
    }
    Ok(comps)
}

/// The files' origin: the package's purl and its place in the lock.
fn origin(p: &LockedPackage) -> Origin {
    Origin::new(format!("{}#{}", purl(&p.name, &p.version), p.key))
}

/// Where the package goes: its lock key under `[packages.npm] into`.
fn package_dir(deps: &NpmDeps, p: &LockedPackage) -> Result<ImagePath, NpmError> {
    let mut dir = deps.into.clone();
    for part in p.key.split('/') {
        dir = dir.join(part).map_err(|e| NpmError::Entry {
            file: deps.lock.clone(),
            key: p.key.clone(),
            why: e.to_string(),
        })?;
    }
    Ok(dir)
}

/// A native addon is installed only when the profile allows it, and then its compiled files
/// must find their libraries in the image.
fn check_native(
    tree: &Tree,
    deps: &NpmDeps,
    p: &LockedPackage,
    inst: &Installed,
    arch: Arch,
) -> Result<(), PackageError> {
    if inst.native.is_empty() {
        return Ok(());
    }
    let what = || format!("npm package {} {}", p.name, p.version);
    if !deps.allow_native.contains(&p.name) {
        return Err(PackageError::Native {
            what: what(),
            why: format!(
                "it is a native addon ({}), which npm would compile or download at install time; StratOS runs no install step. If its prebuilt binaries are for Linux {}, allow it: [packages.npm] allow-native = [\"{}\"]",
                inst.native
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                arch.npm_cpu(),
                p.name
            ),
        });
    }
    for so in inst.native.iter().filter(|n| {
        matches!(tree.get(n).map(|e| &e.kind), Some(Kind::File(d)) if d.starts_with(b"\x7fELF"))
    }) {
        elf::closure(tree, std::slice::from_ref(so), arch).map_err(|e| PackageError::Native {
            what: what(),
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// `pkg:npm/NAME@VERSION`, a scope as the percent-encoded namespace (`pkg:npm/%40s/b@1`).
pub fn purl(name: &str, version: &str) -> String {
    let enc = |s: &str| s.replace('%', "%25").replace('@', "%40");
    match name.split_once('/') {
        Some((scope, n)) => format!("pkg:npm/{}/{}@{}", enc(scope), enc(n), enc(version)),
        None => format!("pkg:npm/{}@{}", enc(name), enc(version)),
    }
}

/// The SBOM component of an installed npm package.
pub fn component(p: &LockedPackage, inst: &Installed, tarball_sha256: Sha256) -> ComponentSpec {
    let purl = purl(&p.name, &p.version);
    ComponentSpec {
        bom_ref: format!("{purl}#{}", p.key),
        classification: "library",
        name: p.name.clone(),
        version: p.version.clone(),
        description: Some(match &inst.description {
            Some(d) => format!("npm package {} ({d})", p.key),
            None => format!("npm package {}", p.key),
        }),
        purl: Some(purl),
        license: inst.license.clone(),
        sha256: tarball_sha256.to_string(),
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "npm-package".into()),
            (prop::BYTES_INSTALLED.into(), inst.bytes.to_string()),
            (
                "stratos:npm-integrity-sha512".into(),
                hex::encode(&p.sha512),
            ),
            ("stratos:npm-resolved".into(), p.resolved.clone()),
        ],
        depends_on: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addon(allow: &[&str]) -> (Tree, NpmDeps, LockedPackage, Installed) {
        let so = ImagePath::parse("/srv/fn/node_modules/addon/build/Release/addon.node").unwrap();
        let mut tree = Tree::new();
        // The host's x86-64 executable stands for a prebuilt x86-64 addon.
        tree.insert(
            &so,
            crate::rootfs::Entry::file(std::fs::read("/bin/ls").unwrap(), 0o755, &Origin::new("t")),
        )
        .unwrap();
        let deps = NpmDeps {
            lock: PathBuf::from("package-lock.json"),
            into: ImagePath::parse("/srv/fn").unwrap(),
            allow_native: allow.iter().map(|s| s.to_string()).collect(),
        };
        let p = LockedPackage {
            key: "node_modules/addon".into(),
            name: "addon".into(),
            version: "1.0.0".into(),
            resolved: "https://registry.npmjs.org/addon/-/addon-1.0.0.tgz".into(),
            sha512: vec![0; 64],
            license: None,
            has_install_script: true,
            bin: Default::default(),
        };
        let inst = Installed {
            files: 1,
            bytes: 1,
            license: None,
            description: None,
            native: vec![so],
        };
        (tree, deps, p, inst)
    }

    #[test]
    fn native_addons_are_refused_on_aarch64_as_on_x86_64() {
        for arch in Arch::ALL.iter().copied() {
            let (tree, deps, p, inst) = addon(&[]);
            let e = check_native(&tree, &deps, &p, &inst, arch)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("npm package addon 1.0.0: it is a native addon (/srv/fn/node_modules/addon/build/Release/addon.node)")
                    && e.contains(&format!("for Linux {}, allow it", arch.npm_cpu())),
                "{arch}: {e}"
            );
        }
        // Allowed, its prebuilt binary must be for the image's machine.
        let (tree, deps, p, inst) = addon(&["addon"]);
        let e = check_native(&tree, &deps, &p, &inst, Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("npm package addon 1.0.0: /srv/fn/node_modules/addon/build/Release/addon.node is an ELF file for another machine (e_machine 62, x86-64); an aarch64 image cannot run it"),
            "{e}"
        );
        // On x86-64 the same file is taken, and its libraries are looked for.
        let e = check_native(&tree, &deps, &p, &inst, Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the shared library"), "{e}");
    }
}
