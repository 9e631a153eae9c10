//! Debian packages: the lock, a content-addressed `.deb` cache, safe extraction.

pub mod bytecode;
pub mod deb;
pub mod elf;
pub mod lock;
pub mod npm;
pub mod pypi;
pub mod registry;
pub mod resolve;
pub mod trim;
pub mod zip;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::profile::{Packages, Profile};
use crate::progress::Progress;
use crate::rootfs::{ImagePath, Kind, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use crate::sign::sha256_hex;
use lock::{LockError, LockFile, LockedPackage};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("package {name} is listed in [packages] debian of {profile} but not in {lock}; run `stratos lock {profile}`")]
    NotLocked {
        name: String,
        profile: PathBuf,
        lock: PathBuf,
    },
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("package {name} {version} is not in the package cache ({cache}) and --offline forbids downloading it; run the build once without --offline")]
    Offline {
        name: String,
        version: String,
        cache: PathBuf,
    },
    #[error("package {name} {version}: `apt-get download` failed: {why}. If the version is no longer in the archive, run `stratos lock PROFILE --update`; if apt has no package lists, run `apt-get update` (ci/setup does)")]
    Download {
        name: String,
        version: String,
        why: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error("the package cache {cache}: {why}; fix its permissions, or point $STRATOS_CACHE at a writable directory")]
    Cache { cache: PathBuf, why: String },
    #[error(transparent)]
    Pypi(#[from] pypi::PypiError),
    #[error(transparent)]
    Npm(#[from] npm::NpmError),
    #[error(transparent)]
    Zip(#[from] zip::ZipError),
    #[error("{what}: {why}")]
    Native { what: String, why: String },
}

impl PackageError {
    /// A failure of the machine (apt, the package cache, the file system), not of the input.
    pub fn is_environment(&self) -> bool {
        match self {
            Self::Download { .. } | Self::Cache { .. } | Self::Io { .. } => true,
            Self::Pypi(e) => e.is_environment(),
            Self::Npm(e) => e.is_environment(),
            _ => false,
        }
    }
}

/// A `.deb` that is not the one the lock pins.
#[derive(Debug, thiserror::Error)]
#[error("package {name} {version}: the .deb has sha256 {actual} ({size} bytes) but {lock} pins sha256 {expected} ({expected_size} bytes); the archive changed or the lock is wrong: check the lock, then re-run `stratos lock`")]
pub struct Mismatch {
    pub name: String,
    pub version: String,
    pub expected: String,
    pub expected_size: u64,
    pub actual: String,
    pub size: u64,
    pub lock: PathBuf,
}

/// Directories of `.deb` files named like apt names them, looked in before downloading.
pub const SYSTEM_DEB_DIRS: &[&str] = &["/var/cache/apt/archives", "/var/cache/stratos/debs"];

/// Where `.deb` files are kept, by sha256.
pub fn deb_cache_dir() -> PathBuf {
    crate::cache::root().join("debs/sha256")
}

fn apt_archive_name(p: &LockedPackage) -> String {
    format!(
        "{}_{}_{}.deb",
        p.name,
        p.version.replace(':', "%3a"),
        p.arch
    )
}

/// Returns the `.deb` bytes of a locked package, from the cache, from apt's own archive cache,
/// or (unless `offline`) downloaded with `apt-get download`. The sha256 and size are always
/// checked against the lock.
pub fn fetch(p: &LockedPackage, lock_path: &Path, offline: bool) -> Result<Vec<u8>, PackageError> {
    let cache = deb_cache_dir();
    let cached = cache.join(format!("{}.deb", p.sha256));
    let check = |bytes: Vec<u8>| -> Result<Vec<u8>, PackageError> {
        let actual = sha256_hex(&bytes);
        if actual != p.sha256 || bytes.len() as u64 != p.size {
            return Err(PackageError::Mismatch(Box::new(Mismatch {
                name: p.name.clone(),
                version: p.version.clone(),
                expected: p.sha256.clone(),
                expected_size: p.size,
                actual,
                size: bytes.len() as u64,
                lock: lock_path.to_owned(),
            })));
        }
        Ok(bytes)
    };
    // Never more than the lock's size: a bigger file is not the pinned package.
    let read = |path: &Path| {
        crate::fsio::read_regular(
            path,
            p.size,
            "a .deb pinned by the lock",
            crate::fsio::Links::Follow,
        )
    };
    match read(&cached) {
        Ok(bytes) if sha256_hex(&bytes) == p.sha256 => return check(bytes),
        // A damaged cache entry: fetch it again below.
        Ok(_) | Err(crate::fsio::ReadError::TooLarge { .. }) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(PackageError::Cache {
                cache: cache.clone(),
                why: e.to_string(),
            })
        }
    }
    // apt's own archive cache, then the one `ci/setup` fills (apt's may be cleaned after every
    // apt run, e.g. by Docker's docker-clean hook). These are only places to look: a file there
    // that cannot be read is skipped, with a warning.
    let mut local = None;
    for d in SYSTEM_DEB_DIRS {
        match read(&Path::new(d).join(apt_archive_name(p))) {
            Ok(b) if sha256_hex(&b) == p.sha256 => {
                local = Some(b);
                break;
            }
            Ok(_) | Err(crate::fsio::ReadError::TooLarge { .. }) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => eprintln!("warning: skipping {e}"),
        }
    }
    let bytes = match local {
        Some(b) => b,
        None if offline => {
            return Err(PackageError::Offline {
                name: p.name.clone(),
                version: p.version.clone(),
                cache,
            })
        }
        None => download(p)?,
    };
    let bytes = check(bytes)?;
    std::fs::create_dir_all(&cache).map_err(|e| PackageError::Cache {
        cache: cache.clone(),
        why: format!("creating it: {e}"),
    })?;
    crate::fsio::write_atomic(&cached, &bytes, 0o644).map_err(|e| PackageError::Cache {
        cache: cache.clone(),
        why: format!("writing {}: {e}", cached.display()),
    })?;
    Ok(bytes)
}

fn download(p: &LockedPackage) -> Result<Vec<u8>, PackageError> {
    let fail = |why: String| PackageError::Download {
        name: p.name.clone(),
        version: p.version.clone(),
        why,
    };
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    // `all` packages have no architecture qualifier in apt's syntax.
    let spec = if p.arch == "all" {
        format!("{}={}", p.name, p.version)
    } else {
        format!("{}:{}={}", p.name, p.arch, p.version)
    };
    let out = Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(dir.path())
        .output()
        .map_err(|e| {
            fail(format!(
                "cannot run apt-get ({e}); install apt or fill the cache"
            ))
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(
            stderr
                .lines()
                .last()
                .unwrap_or("no output")
                .trim()
                .to_owned(),
        ));
    }
    let mut debs: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir.path()).map_err(|e| fail(e.to_string()))? {
        let p = e.map_err(|e| fail(e.to_string()))?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            debs.push(p);
        }
    }
    match debs.len() {
        1 => crate::fsio::read_regular(
            &debs.remove(0),
            p.size,
            "a .deb pinned by the lock",
            crate::fsio::Links::Refuse,
        )
        .map_err(|e| fail(e.to_string())),
        n => Err(fail(format!("expected one .deb, got {n}"))),
    }
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

/// Installs exactly the packages of the profile's lock into `tree`; returns their SBOM
/// components (bom-ref = purl, which is also the files' origin).
pub fn install_locked(
    tree: &mut Tree,
    profile: &Profile,
    pkgs: &Packages,
    offline: bool,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let lock = LockFile::load(&pkgs.lock)?;
    for name in &pkgs.debian {
        if !lock.packages.iter().any(|p| &p.name == name) {
            return Err(PackageError::NotLocked {
                name: name.clone(),
                profile: profile.path.clone(),
                lock: pkgs.lock.clone(),
            });
        }
    }
    let mut locked = lock.packages.clone();
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    let mut comps = Vec::new();
    for p in &locked {
        let bytes = fetch(p, &pkgs.lock, offline)?;
        let purl = p.purl();
        let (_, data) = deb::open_member(&bytes, "data.tar", &p.name)?;
        let origin = Origin::new(&purl);
        let budget = deb::Budget {
            limits: profile.image.limits,
            image_used: tree.content_bytes(),
        };
        let got = deb::extract_data_tar(data, tree, &origin, &p.name, budget)?;
        // The licence, read before the docs are trimmed away.
        let license = ImagePath::parse(&format!("/usr/share/doc/{}/copyright", p.name))
            .ok()
            .and_then(|c| match tree.get(&c).map(|e| &e.kind) {
                Some(Kind::File(d)) => trim::licences(&String::from_utf8_lossy(d)),
                _ => None,
            });
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
        let mut props = vec![
            (prop::ORIGIN.to_owned(), "debian-package".to_owned()),
            (prop::BYTES_INSTALLED.to_owned(), got.bytes.to_string()),
            (prop::BYTES_TRIMMED.to_owned(), trimmed.1.to_string()),
        ];
        for r in &p.required_by {
            props.push((prop::REQUIRED_BY.into(), r.clone()));
        }
        comps.push(ComponentSpec {
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
            sha256: p.sha256.clone(),
            files: Vec::new(),
            properties: props,
            depends_on: Vec::new(),
        });
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

/// The image's Python (major, minor), from its interpreter's name (`/usr/bin/python3.11`).
fn python_version(interpreter: &ImagePath) -> Option<(u32, u32)> {
    let name = interpreter.file_name()?.strip_prefix("python")?;
    let (a, b) = name.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The glibc (major, minor) the Debian lock puts in the image (`libc6 2.36-9+deb12u10`).
fn glibc_version(pkgs: &Packages) -> Option<(u32, u32)> {
    let lock = LockFile::load(&pkgs.lock).ok()?;
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
    offline: bool,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let Some(deps) = &pkgs.python else {
        return Ok(Vec::new());
    };
    let input = |why: String| {
        PackageError::Pypi(pypi::PypiError::File {
            file: deps.requirements.clone(),
            why,
        })
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
    let platform = pypi::Platform {
        python,
        glibc: glibc_version(pkgs),
    };
    let text = crate::fsio::read_file(
        &deps.requirements,
        crate::fsio::caps::LOCK,
        "a requirements file",
    )
    .map_err(|e| input(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| input("not UTF-8".into()))?;
    let reqs = pypi::parse_requirements(&text, &deps.requirements)?;
    let scheme = pypi::Scheme::debian_local(python, py.interpreter.as_str());
    let limits = profile.image.limits;
    let mut comps = Vec::new();
    for r in &reqs {
        let wheel = pypi::fetch(
            r,
            &platform,
            &deps.requirements,
            &deps.index,
            offline,
            limits.package,
        )?;
        let purl = pypi::purl(r);
        let origin = Origin::new(&purl);
        let budget = crate::rootfs::Budget {
            limits,
            image_used: tree.content_bytes(),
        };
        let inst = pypi::install(r, &wheel, &scheme, tree, &origin, budget)?;
        // A compiled module loads the image's libraries: each must be there.
        for so in &inst.native {
            elf::closure(tree, std::slice::from_ref(so)).map_err(|e| PackageError::Native {
                what: format!("wheel {}", wheel.file_name),
                why: e.to_string(),
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
        comps.push(pypi::component(r, &wheel, &inst, &purl));
    }
    Ok(comps)
}

/// `[packages.npm]`: the lock's packages unpacked under `into/node_modules`, no scripts run;
/// one component per installed package.
pub fn install_npm(
    tree: &mut Tree,
    profile: &Profile,
    pkgs: &Packages,
    offline: bool,
    progress: &Progress,
) -> Result<Vec<ComponentSpec>, PackageError> {
    let Some(deps) = &pkgs.npm else {
        return Ok(Vec::new());
    };
    let text = crate::fsio::read_file(&deps.lock, crate::fsio::caps::LOCK, "a package-lock.json")
        .map_err(|e| {
        PackageError::Npm(npm::NpmError::Lock {
            file: deps.lock.clone(),
            why: e.to_string(),
        })
    })?;
    let plan = npm::plan(&text, &deps.lock)?;
    for (key, why) in &plan.skipped {
        progress.info(format!("npm: not installing {key} ({why})"));
    }
    let limits = profile.image.limits;
    let mut comps = Vec::new();
    let mut installed: Vec<(npm::LockedPackage, ImagePath)> = Vec::new();
    for p in &plan.packages {
        let tgz = npm::fetch(p, offline, limits.package)?;
        let mut dir = deps.into.clone();
        for part in p.key.split('/') {
            dir = dir.join(part).map_err(|e| {
                PackageError::Npm(npm::NpmError::Entry {
                    file: deps.lock.clone(),
                    key: p.key.clone(),
                    why: e.to_string(),
                })
            })?;
        }
        let purl = npm::purl(&p.name, &p.version);
        let origin = Origin::new(format!("{purl}#{}", p.key));
        let budget = crate::rootfs::Budget {
            limits,
            image_used: tree.content_bytes(),
        };
        let inst = npm::unpack(p, &tgz, &dir, tree, &origin, budget)?;
        if !inst.native.is_empty() {
            if !deps.allow_native.contains(&p.name) {
                return Err(PackageError::Native {
                    what: format!("npm package {} {}", p.name, p.version),
                    why: format!(
                        "it is a native addon ({}), which npm would compile or download at install time; StratOS runs no install step. If its prebuilt binaries are for Linux x64, allow it: [packages.npm] allow-native = [\"{}\"]",
                        inst.native
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        p.name
                    ),
                });
            }
            for so in inst.native.iter().filter(|n| {
                matches!(tree.get(n).map(|e| &e.kind), Some(Kind::File(d)) if d.starts_with(b"\x7fELF"))
            }) {
                elf::closure(tree, std::slice::from_ref(so)).map_err(|e| PackageError::Native {
                    what: format!("npm package {} {}", p.name, p.version),
                    why: e.to_string(),
                })?;
            }
        }
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
        comps.push(npm::component(p, &inst, sha256_hex(&tgz)));
        installed.push((p.clone(), dir));
    }
    // Command links once every package is in place.
    for (p, dir) in &installed {
        let origin = Origin::new(format!("{}#{}", npm::purl(&p.name, &p.version), p.key));
        npm::link_bins(p, dir, tree, &origin)?;
    }
    Ok(comps)
}
