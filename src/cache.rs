//! The content-addressed cache under `$STRATOS_CACHE`, else `$XDG_CACHE_HOME/stratos`, else
//! `~/.cache/stratos`. Entries are keyed by the digest of everything that determines them, so a
//! hit is always correct; a damaged entry is detected and rebuilt.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::archive::zst;

/// The cache root (not created), always absolute: tools run in other directories (`make -C`)
/// are given paths inside it.
pub fn root() -> PathBuf {
    let p = if let Some(p) = std::env::var_os("STRATOS_CACHE").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        PathBuf::from(p).join("stratos")
    } else {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        home.join(".cache/stratos")
    };
    if p.is_relative() {
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(p);
        }
    }
    p
}

/// What kind of thing a cache entry is, by the folder it lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    Kernel,
    KernelSource,
    KernelConfig,
    FailedBuildLog,
    UnfinishedBuild,
    Deb,
    Wheel,
    NpmTarball,
    Zstd,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Kernel => "kernel",
            EntryKind::KernelSource => "kernel-source",
            EntryKind::KernelConfig => "kernel-config",
            EntryKind::FailedBuildLog => "failed-build-log",
            EntryKind::UnfinishedBuild => "unfinished-build",
            EntryKind::Deb => "deb",
            EntryKind::Wheel => "wheel",
            EntryKind::NpmTarball => "npm-tarball",
            EntryKind::Zstd => "zstd",
        }
    }
}

/// The cache's layout: (folder relative to the root, kind, whether entries are directories).
/// Only these folders are ever listed or cleaned.
const LAYOUT: &[(&str, EntryKind, bool)] = &[
    ("kernels", EntryKind::Kernel, true),
    ("kernels/src", EntryKind::KernelSource, true),
    ("kernels/configs", EntryKind::KernelConfig, false),
    ("kernels/failed", EntryKind::FailedBuildLog, false),
    ("kernels/work", EntryKind::UnfinishedBuild, true),
    ("debs/sha256", EntryKind::Deb, false),
    ("wheels/sha256", EntryKind::Wheel, true),
    ("npm/sha512", EntryKind::NpmTarball, false),
    ("zstd", EntryKind::Zstd, false),
];

/// Subfolders of `kernels/` that are folders of the layout, not kernel entries.
const KERNEL_SUBFOLDERS: &[&str] = &["src", "configs", "digests", "work", "locks", "failed"];

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache {root}: {what}: {source}")]
    Io {
        root: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One entry of the cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub kind: EntryKind,
    pub path: PathBuf,
    /// Bytes of the regular files in it (links are not followed).
    pub bytes: u64,
    pub used: std::time::SystemTime,
    /// A symlink where an entry should be: only the link itself is ever removed.
    pub is_link: bool,
}

enum Folder {
    Absent,
    /// A symlink at this path (a folder of the layout or one of its parents).
    Link(PathBuf),
    Dir(PathBuf),
}

/// The cache at an explicit root ([`root`] gives the default one).
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// What a clean-up did.
#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: usize,
    pub freed: u64,
    /// Folders of the layout that are symlinks: skipped (never followed out of the cache).
    pub skipped_links: Vec<PathBuf>,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// zstd-compresses `data`, reusing an earlier result for the same input, level and library.
    /// A cached result is used only after it decompresses back to exactly `data`'s digest.
    pub fn compress_cached(&self, data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        let input = Sha256::digest(data);
        let key = hex::encode(Sha256::digest(
            format!(
                "zstd-{}-{}-mt:{}",
                level,
                zst::library_version(),
                hex::encode(input)
            )
            .as_bytes(),
        ));
        let path = self.root.join("zstd").join(format!("{key}.zst"));
        if let Ok(cached) = std::fs::read(&path) {
            let ok = zst::decompress_capped(&cached, data.len() as u64)
                .map(|d| Sha256::digest(&d) == input)
                .unwrap_or(false);
            if ok {
                return Ok(cached);
            }
        }
        let out = zst::compress(data, level)?;
        // The cache only saves time: an unwritable cache directory must not fail the build, but
        // it is said.
        if let Err(e) = std::fs::create_dir_all(path.parent().expect("has a parent"))
            .and_then(|()| crate::fsio::write_atomic(&path, &out, 0o644))
        {
            eprintln!(
                "stratos: warning: cannot cache the compressed archive in {}: {e}",
                path.display()
            );
        }
        Ok(out)
    }

    fn io(&self, what: String) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
        move |source| CacheError::Io {
            root: self.root.clone(),
            what,
            source,
        }
    }

    /// Whether `rel` (a folder of the layout) is a real directory inside the root: every
    /// component from the root down is a directory, not a symlink.
    fn real_folder(&self, rel: &str) -> Result<Folder, CacheError> {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p.push(part);
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Folder::Absent),
                Err(e) => return Err(self.io(format!("reading {}", p.display()))(e)),
                Ok(m) if m.file_type().is_symlink() => return Ok(Folder::Link(p)),
                Ok(m) if !m.is_dir() => return Ok(Folder::Absent),
                Ok(_) => {}
            }
        }
        Ok(Folder::Dir(p))
    }

    /// Every entry, folder by folder in layout order, names sorted. Folders that are symlinks
    /// are reported in the second list and not entered.
    pub fn entries(&self) -> Result<(Vec<CacheEntry>, Vec<PathBuf>), CacheError> {
        let mut out = Vec::new();
        let mut links = Vec::new();
        for (rel, kind, dirs_only) in LAYOUT {
            let dir = match self.real_folder(rel)? {
                Folder::Dir(d) => d,
                Folder::Absent => continue,
                Folder::Link(l) => {
                    if !links.contains(&l) {
                        links.push(l);
                    }
                    continue;
                }
            };
            let rd =
                std::fs::read_dir(&dir).map_err(self.io(format!("listing {}", dir.display())))?;
            let mut v = Vec::new();
            for e in rd {
                v.push(e.map_err(self.io(format!("listing {}", dir.display())))?);
            }
            v.sort_by_key(|e| e.file_name());
            for e in v {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.')
                    || (*kind == EntryKind::Kernel && KERNEL_SUBFOLDERS.contains(&name.as_str()))
                {
                    continue;
                }
                let p = e.path();
                let meta = std::fs::symlink_metadata(&p)
                    .map_err(self.io(format!("reading {}", p.display())))?;
                let is_link = meta.file_type().is_symlink();
                if *dirs_only && !is_link && !meta.is_dir() {
                    continue;
                }
                out.push(CacheEntry {
                    kind: *kind,
                    bytes: if is_link { 0 } else { size_of(&p) },
                    used: last_used(&p, &meta),
                    is_link,
                    path: p,
                });
            }
        }
        Ok((out, links))
    }

    /// Removes the entries `select` picks. Nothing outside the cache is touched: a symlink is
    /// removed as a link (its target stays), a folder of the layout that is a symlink is not
    /// entered, and directories are removed without following links inside them.
    pub fn gc(&self, select: impl Fn(&CacheEntry) -> bool) -> Result<GcReport, CacheError> {
        let (entries, skipped_links) = self.entries()?;
        let mut r = GcReport {
            skipped_links,
            ..GcReport::default()
        };
        for e in entries.iter().filter(|e| select(e)) {
            let res = if !e.is_link && e.path.is_dir() {
                // std's remove_dir_all never follows symlinks inside the tree.
                std::fs::remove_dir_all(&e.path)
            } else {
                std::fs::remove_file(&e.path)
            };
            res.map_err(self.io(format!("removing {}", e.path.display())))?;
            r.freed += e.bytes;
            r.removed += 1;
        }
        Ok(r)
    }
}

fn size_of(p: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(p)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// When an entry was last used: its `.complete` marker's time (kernels), else its own.
fn last_used(p: &std::path::Path, meta: &std::fs::Metadata) -> std::time::SystemTime {
    let marker = p.join(".complete");
    let m = if meta.is_dir() {
        std::fs::symlink_metadata(&marker).unwrap_or_else(|_| meta.clone())
    } else {
        meta.clone()
    };
    m.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_never_follows_a_link_out_of_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let precious = d.path().join("precious");
        std::fs::create_dir_all(precious.join("sub")).unwrap();
        std::fs::write(precious.join("a"), b"mine").unwrap();
        std::fs::write(precious.join("sub/b"), b"mine").unwrap();
        std::fs::create_dir_all(cache.join("kernels/k1")).unwrap();
        std::fs::write(cache.join("kernels/k1/kernel"), b"k").unwrap();
        // An entry that is a link to a directory outside, a link inside an entry, and a
        // folder of the layout that is itself a link.
        std::os::unix::fs::symlink(&precious, cache.join("kernels/k2")).unwrap();
        std::os::unix::fs::symlink(&precious, cache.join("kernels/k1/link")).unwrap();
        std::fs::create_dir_all(cache.join("debs")).unwrap();
        std::os::unix::fs::symlink(&precious, cache.join("debs/sha256")).unwrap();
        std::os::unix::fs::symlink(&precious, cache.join("zstd")).unwrap();
        let r = Cache::new(&cache).gc(|_| true).unwrap();
        assert_eq!(r.removed, 2, "k1 and the link k2");
        assert_eq!(r.skipped_links.len(), 2);
        assert_eq!(std::fs::read(precious.join("a")).unwrap(), b"mine");
        assert_eq!(std::fs::read(precious.join("sub/b")).unwrap(), b"mine");
        assert!(!cache.join("kernels/k1").exists());
        assert!(std::fs::symlink_metadata(cache.join("kernels/k2")).is_err());
    }
}
