//! Debian packages: the lock (`PROFILE.lock`), its resolution over apt's indexes, a
//! content-addressed `.deb` cache, safe extraction and trimming.

pub mod apt;
pub mod deb;
pub mod index;
pub mod lock;
pub mod resolve;
pub mod trim;

use std::path::{Path, PathBuf};

use super::fetch::{self, Digest, FetchError, Pin, Places, Sources};
use super::PackageError;
use crate::arch::Arch;
use crate::digest::Sha256;
use crate::profile::{Packages, Profile};
use crate::progress::Progress;
use crate::rootfs::{ImagePath, Kind, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use lock::{LockFile, LockedPackage};

/// A `.deb` that is not the one the lock pins.
#[derive(Debug, thiserror::Error)]
#[error("package {name} {version}: the .deb has sha256 {actual} ({size} bytes) but {lock} pins sha256 {expected} ({expected_size} bytes); the archive changed or the lock is wrong: check the lock, then re-run `stratos lock`")]
pub struct Mismatch {
    pub name: String,
    pub version: String,
    pub expected: Sha256,
    pub expected_size: u64,
    pub actual: Sha256,
    pub size: u64,
    pub lock: PathBuf,
}

/// Directories of `.deb` files named like apt names them, looked in before downloading.
pub const SYSTEM_DEB_DIRS: &[&str] = &["/var/cache/apt/archives", "/var/cache/stratos/debs"];

/// The cache's folder of `.deb` files, by sha256.
pub const STORE: &str = "debs/sha256";

/// Returns the `.deb` bytes of a locked package, from the cache, from apt's own archive cache,
/// or (unless offline) downloaded with `apt-get download`. The sha256 and size are always
/// checked against the lock.
pub fn fetch(
    p: &LockedPackage,
    lock_path: &Path,
    sources: &Sources,
) -> Result<Vec<u8>, PackageError> {
    let mismatch = |actual: Sha256, size: u64| {
        PackageError::Mismatch(Box::new(Mismatch {
            name: p.name.clone(),
            version: p.version.clone(),
            expected: p.sha256,
            expected_size: p.size,
            actual,
            size,
            lock: lock_path.to_owned(),
        }))
    };
    let store = sources.store(STORE);
    // Never more than the lock's size: a bigger file is not the pinned package.
    let pin = Pin {
        digest: Digest::Sha256(p.sha256),
        max_bytes: p.size,
        what: "a .deb pinned by the lock",
    };
    // apt's own archive cache, then the one `ci/setup` fills (apt's may be cleaned after every
    // apt run, e.g. by Docker's docker-clean hook).
    let places = Places {
        store: &store,
        key: format!("{}.deb", p.sha256),
        local: SYSTEM_DEB_DIRS
            .iter()
            .map(|d| Path::new(d).join(apt::archive_name(p)))
            .collect(),
        offline: sources.offline,
    };
    let bytes = fetch::fetch(&pin, &places, || apt::download(p)).map_err(|e| match e {
        FetchError::Store(e) => PackageError::Store(e),
        FetchError::Offline { .. } => PackageError::Offline {
            name: p.name.clone(),
            version: p.version.clone(),
            cache: store.dir.clone(),
        },
        FetchError::Download(e) => e,
        FetchError::Mismatch { bytes } => mismatch(Sha256::of(&bytes), bytes.len() as u64),
    })?;
    if bytes.len() as u64 != p.size {
        return Err(mismatch(p.sha256, bytes.len() as u64));
    }
    Ok(bytes)
}

/// Drops the package's excluded paths (children before their directories; a directory goes
/// only when nothing is left in it). Returns (entries, bytes) removed.
fn trim_package(tree: &mut Tree, origin: &Origin, pkgs: &Packages) -> (usize, u64) {
    let mine: Vec<ImagePath> = tree
        .iter()
        .filter(|(_, e)| &e.origin == origin)
        .map(|(p, _)| p.clone())
        .collect();
    // Files that other entries hard-link to stay.
    let link_targets: std::collections::BTreeSet<ImagePath> = tree
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            Kind::Hardlink(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let (mut n, mut bytes) = (0, 0);
    for p in mine.iter().rev() {
        if !trim::excluded(p.as_str(), &pkgs.exclude, &pkgs.keep, pkgs.default_excludes)
            || link_targets.contains(p)
        {
            continue;
        }
        let Some(e) = tree.get(p) else { continue };
        if matches!(e.kind, Kind::Dir) && tree.iter().any(|(q, _)| q != p && q.starts_with(p)) {
            continue;
        }
        bytes += e.size();
        n += tree.remove_all(p);
    }
    (n, bytes)
}

/// The profile's lock, checked to pin every package the profile names.
fn locked_packages(
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
) -> Result<Vec<LockedPackage>, PackageError> {
    let lock = LockFile::load(&pkgs.lock, arch)?;
    for name in &pkgs.debian {
        if !lock.packages.iter().any(|p| &p.name == name) {
            return Err(PackageError::NotLocked {
                name: name.clone(),
                profile: profile.path.clone(),
                lock: pkgs.lock.clone(),
            });
        }
    }
    let mut locked = lock.packages;
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(locked)
}

/// Before any expensive step: the lock is there and pins every package the profile names, and
/// every `.deb` it pins is in the cache or fetched into it now (offline: is there). Returns how
/// many packages were checked.
pub fn preflight(
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
) -> Result<usize, PackageError> {
    let locked = locked_packages(profile, pkgs, arch)?;
    for p in &locked {
        fetch(p, &pkgs.lock, sources)?;
    }
    Ok(locked.len())
}

/// Installs exactly the packages of the profile's lock into `tree`; returns their SBOM
/// components (bom-ref = purl, which is also the files' origin).
pub fn install_locked(
    tree: &mut Tree,
    profile: &Profile,
    pkgs: &Packages,
    arch: Arch,
    sources: &Sources,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let locked = locked_packages(profile, pkgs, arch)?;
    let mut comps = Vec::new();
    for p in &locked {
        let bytes = fetch(p, &pkgs.lock, sources)?;
        let (_, data) = deb::open_member(&bytes, "data.tar", &p.name)?;
        let origin = Origin::new(p.purl());
        let budget = deb::Budget {
            limits: profile.image.limits,
            image_used: tree.content_bytes(),
        };
        let got = deb::extract_data_tar(data, tree, &origin, &p.name, budget)?;
        // The licence, read before the docs are trimmed away.
        let license = licence(tree, p);
        let trimmed = trim_package(tree, &origin, pkgs);
        progress.info(format!(
            "installed {} {} ({} files, {} KiB; trimmed {} files, {} KiB)",
            p.name,
            p.version,
            got.paths.len(),
            got.bytes / 1024,
            trimmed.0,
            trimmed.1 / 1024
        ));
        comps.push(component(p, license, got.bytes, trimmed.1));
    }
    // Dependency graph: a package depends on those that list it in required-by.
    for c in comps.iter_mut() {
        c.depends_on = locked
            .iter()
            .filter(|q| q.required_by.contains(&c.name))
            .map(LockedPackage::purl)
            .collect();
    }
    Ok(comps)
}

/// The licences the package's machine-readable `copyright` file declares.
fn licence(tree: &Tree, p: &LockedPackage) -> Option<String> {
    let copyright = ImagePath::parse(&format!("/usr/share/doc/{}/copyright", p.name)).ok()?;
    match tree.get(&copyright).map(|e| &e.kind) {
        Some(Kind::File(d)) => trim::licences(&String::from_utf8_lossy(d)),
        _ => None,
    }
}

/// The SBOM component of an installed package (its dependencies are filled in once all are).
fn component(
    p: &LockedPackage,
    license: Option<String>,
    installed: u64,
    trimmed: u64,
) -> ComponentSpec {
    let purl = p.purl();
    let mut props = vec![
        (prop::ORIGIN.to_owned(), "debian-package".to_owned()),
        (prop::BYTES_INSTALLED.to_owned(), installed.to_string()),
        (prop::BYTES_TRIMMED.to_owned(), trimmed.to_string()),
    ];
    for r in &p.required_by {
        props.push((prop::REQUIRED_BY.into(), r.clone()));
    }
    ComponentSpec {
        bom_ref: purl.clone(),
        classification: "library",
        name: p.name.clone(),
        version: p.version.clone(),
        description: Some(format!(
            "Debian package {} {} ({})",
            p.name, p.version, p.arch
        )),
        purl: Some(purl),
        license,
        sha256: p.sha256.to_string(),
        files: Vec::new(),
        properties: props,
        depends_on: Vec::new(),
    }
}
