//! What StratOS asks of apt: the machine's `Packages` indexes (for `stratos lock`) and a pinned
//! `.deb` (`apt-get download`, when the cache and apt's archives do not hold it).

use std::path::PathBuf;
use std::process::Command;

use super::index::Index;
use super::lock::LockedPackage;
use super::resolve::ResolveError;
use crate::arch::Arch;
use crate::packages::PackageError;
use crate::progress::Traced;

/// Reads the machine's apt `Packages` indexes for `arch` (through `apt-get indextargets` and
/// `apt-helper cat-file`, which decompress whatever apt stored).
pub fn machine_index(arch: Arch) -> Result<Index, ResolveError> {
    let out = Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(FILENAME) $(ORIGIN)",
            "Created-By: Packages",
        ])
        .arg(format!("Architecture: {}", arch.debian()))
        .traced()
        .output()
        .map_err(|e| {
            ResolveError::Index(format!(
                "cannot run apt-get ({e}); stratos lock needs apt's package indexes"
            ))
        })?;
    // `FILE ORIGIN`: apt's list file names hold no spaces; an origin may.
    let files: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(' ') {
            Some((f, o)) => (f.to_owned(), o.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();
    let mut index = Index::default();
    let mut read = 0;
    for (f, origin) in &files {
        if !std::path::Path::new(f).exists() {
            continue;
        }
        let out = Command::new("/usr/lib/apt/apt-helper")
            .args(["cat-file", f])
            .traced()
            .output()
            .map_err(|e| ResolveError::Index(format!("cannot run apt-helper for {f}: {e}")))?;
        if !out.status.success() {
            return Err(ResolveError::Index(format!(
                "apt-helper cat-file {f} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        index.add_from(&String::from_utf8_lossy(&out.stdout), f, origin, arch)?;
        read += 1;
    }
    if read == 0 {
        return Err(ResolveError::Index(
            "no apt package indexes on this machine; run `apt-get update` (as root) first".into(),
        ));
    }
    Ok(index)
}

/// The name apt gives a package's `.deb` in its archive cache.
pub(super) fn archive_name(p: &LockedPackage) -> String {
    format!(
        "{}_{}_{}.deb",
        p.name,
        p.version.replace(':', "%3a"),
        p.arch
    )
}

/// The package's `.deb`, downloaded by `apt-get download` into a temporary directory.
pub(super) fn download(p: &LockedPackage) -> Result<Vec<u8>, PackageError> {
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
        .traced()
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
