//! The one way a pinned artifact — a `.deb`, a wheel, an npm tarball — reaches a build: from
//! the content-addressed store in the cache, else from a directory of this machine, else
//! (unless offline) downloaded; every byte checked against the pin before it is used or stored.
//!
//! One policy for files that cannot be read. The store is StratOS's own: an entry there that
//! cannot be read is an error naming the cache. A directory elsewhere on the machine (apt's
//! archive cache, the prefetch directory) is only a place to look: a file there that cannot be
//! read is skipped with a warning. A file over the size or of other content is not the pinned
//! one (a damaged store entry is fetched again and replaced).
//!
//! Where the cache and the prefetch directory are is the caller's choice ([`Sources`]); only the
//! download step talks to the network, so a build with `--offline` reads the cache and the
//! directory `ci/setup` fills, nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

use crate::cache::Cache;
use crate::digest::Sha256;
use crate::fsio::{Links, ReadError};
use crate::progress::Traced;

/// Where pinned artifacts come from and go.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The cache whose content-addressed folders ([`Store`]) keep every artifact fetched once.
    pub cache: Cache,
    /// Where a networked setup step (`ci/fetch-pinned`) left pinned wheels (`wheels/`) and npm
    /// tarballs (`npm/`) for offline builds. Only a place to look: every file found there is
    /// checked against the pins.
    pub prefetch: PathBuf,
    /// Never download: what is not in the cache or on this machine is an error.
    pub offline: bool,
    /// Where Go modules the cache lacks come from, instead of the profile's `[runtime.go]
    /// proxy` (`stratos build --go-proxy`).
    pub go_proxy: Option<crate::profile::GoProxy>,
}

impl Sources {
    /// The default places, read at the program's edge (the CLI) and passed down: the cache of
    /// [`crate::cache::root`] and `$STRATOS_PREFETCH_DIR`, else `/var/cache/stratos`.
    pub fn from_env(offline: bool) -> Sources {
        let prefetch = std::env::var_os("STRATOS_PREFETCH_DIR")
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from("/var/cache/stratos"), PathBuf::from);
        Sources {
            cache: Cache::new(crate::cache::root()),
            prefetch,
            offline,
            go_proxy: None,
        }
    }

    /// The cache's content-addressed folder for one kind of artifact (`debs/sha256`).
    pub fn store(&self, folder: &str) -> Store {
        Store {
            dir: self.cache.root.join(folder),
        }
    }
}

/// What a pinned artifact's bytes hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Sha256(Sha256),
    /// npm's `integrity`: the 64 bytes of a SHA-512.
    Sha512(Vec<u8>),
    /// go.sum's `h1:` of a module zip whose members all lie under `prefix` (`<module>@<v>/`).
    GoZip {
        h1: [u8; 32],
        prefix: String,
    },
    /// go.sum's `h1:` of a module's go.mod.
    GoMod([u8; 32]),
}

impl Digest {
    /// The digest of `bytes` by the same algorithm.
    pub fn of_same(&self, bytes: &[u8]) -> Digest {
        match self {
            Digest::Sha256(_) => Digest::Sha256(Sha256::of(bytes)),
            Digest::Sha512(_) => Digest::Sha512(sha2::Sha512::digest(bytes).to_vec()),
            // A zip that cannot be read has no hash: all zeroes, which `matches` never accepts.
            Digest::GoZip { prefix, .. } => Digest::GoZip {
                h1: super::go::h1::of_zip(bytes, prefix).unwrap_or_default(),
                prefix: prefix.clone(),
            },
            Digest::GoMod(_) => Digest::GoMod(super::go::h1::of_go_mod(bytes)),
        }
    }

    pub fn matches(&self, bytes: &[u8]) -> bool {
        match self {
            Digest::GoZip { h1, prefix } => {
                super::go::h1::of_zip(bytes, prefix).is_ok_and(|got| got == *h1)
            }
            _ => *self == self.of_same(bytes),
        }
    }
}

impl std::fmt::Display for Digest {
    /// Lowercase hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Digest::Sha256(d) => d.fmt(f),
            Digest::Sha512(d) => f.write_str(&hex::encode(d)),
            Digest::GoZip { h1, .. } | Digest::GoMod(h1) => {
                f.write_str(&super::go::h1::display(h1))
            }
        }
    }
}

/// One pinned artifact.
#[derive(Debug, Clone)]
pub struct Pin {
    pub digest: Digest,
    /// The most bytes it may have: its size when the pin gives one, else a limit of the profile.
    pub max_bytes: u64,
    /// What it is, for messages (`a .deb pinned by the lock`).
    pub what: &'static str,
}

/// A content-addressed folder of the cache: entries named by their digest.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// The cache cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the package cache {dir}: {why}; fix its permissions, or point $STRATOS_CACHE at a writable directory")]
pub struct StoreError {
    pub dir: PathBuf,
    pub why: String,
}

impl Store {
    fn error(&self, why: String) -> StoreError {
        StoreError {
            dir: self.dir.clone(),
            why,
        }
    }

    /// The entry `key` (a path relative to the folder), if it is there and holds at most
    /// `max_bytes`; an entry that is there but cannot be read is an error.
    pub fn read(
        &self,
        key: &str,
        max_bytes: u64,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match crate::fsio::read_regular(&self.dir.join(key), max_bytes, what, Links::Follow) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ReadError::TooLarge { .. }) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// The names of the regular files in the entry directory `key` (a wheel's `<sha256>/`
    /// holds its file), sorted; none when it is not there.
    pub fn files_in(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.dir.join(key);
        match regular_files(&dir, "") {
            Ok(files) => Ok(files),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(format!("listing {}: {e}", dir.display()))),
        }
    }

    /// Puts `bytes` at `key` (temp file, fsync, rename), creating its directory.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error(format!("creating {}: {e}", dir.display())))?;
        }
        crate::fsio::write_atomic(&path, bytes, 0o644)
            .map_err(|e| self.error(format!("writing {}: {e}", path.display())))
    }
}

/// Where one pinned artifact may be, in the order looked at.
pub struct Places<'a> {
    pub store: &'a Store,
    /// Its name in the store (`<sha256>.deb`).
    pub key: String,
    /// Files on this machine that may hold it.
    pub local: Vec<PathBuf>,
    pub offline: bool,
}

/// Why a pinned artifact could not be had.
#[derive(Debug)]
pub enum FetchError<E> {
    Store(StoreError),
    /// Not in the store nor on this machine, and offline; `rejected` are the local files that
    /// hold other bytes.
    Offline {
        rejected: Vec<PathBuf>,
    },
    /// The download failed.
    Download(E),
    /// What was downloaded (`bytes`) is not the pinned artifact.
    Mismatch {
        bytes: Vec<u8>,
    },
}

impl<E> From<StoreError> for FetchError<E> {
    fn from(e: StoreError) -> Self {
        FetchError::Store(e)
    }
}

/// The pinned artifact's bytes: from the store, else the first local file holding them, else
/// (unless offline) `download`ed; stored under its key unless it came from the store.
pub fn fetch<E>(
    pin: &Pin,
    at: &Places,
    download: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, FetchError<E>> {
    let stored = at.store.read(&at.key, pin.max_bytes, pin.what)?;
    if let Some(bytes) = stored.filter(|b| pin.digest.matches(b)) {
        return Ok(bytes);
    }
    let mut rejected = Vec::new();
    let mut found = None;
    for path in &at.local {
        match read_local(path, pin.max_bytes, pin.what) {
            Some(b) if pin.digest.matches(&b) => {
                found = Some(b);
                break;
            }
            Some(_) => rejected.push(path.clone()),
            None => {}
        }
    }
    let bytes = match found {
        Some(b) => b,
        None if at.offline => return Err(FetchError::Offline { rejected }),
        None => {
            let b = download().map_err(FetchError::Download)?;
            if !pin.digest.matches(&b) {
                return Err(FetchError::Mismatch { bytes: b });
            }
            b
        }
    };
    at.store.put(&at.key, &bytes)?;
    Ok(bytes)
}

/// A file on this machine that may hold a pinned artifact: its bytes, or `None` when it is not
/// there, holds more than `max_bytes`, or cannot be read (then with a warning: it is only a
/// place to look).
pub fn read_local(path: &Path, max_bytes: u64, what: &'static str) -> Option<Vec<u8>> {
    match crate::fsio::read_regular(path, max_bytes, what, Links::Follow) {
        Ok(bytes) => Some(bytes),
        Err(ReadError::TooLarge { .. }) => None,
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            eprintln!("warning: skipping {e}");
            None
        }
    }
}

/// Files on this machine in `dir` whose name starts with `prefix` (case-insensitively), sorted;
/// a directory that is not there has none, one that cannot be listed is skipped with a warning.
pub fn local_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    match regular_files(dir, prefix) {
        Ok(names) => names.into_iter().map(|n| dir.join(n)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            eprintln!("warning: skipping {}: {e}", dir.display());
            Vec::new()
        }
    }
}

/// The names of the regular files directly in `dir` that start with `prefix`
/// (case-insensitively), sorted.
fn regular_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    let prefix = prefix.to_ascii_lowercase();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if e.file_type()?.is_file() && name.to_ascii_lowercase().starts_with(&prefix) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Fetches `url` over HTTPS with curl into memory, refusing more than `max_bytes`.
pub fn download(url: &str, max_bytes: u64, accept: Option<&str>) -> Result<Vec<u8>, String> {
    if !url.starts_with("https://") {
        return Err(format!(
            "{url}: only https:// URLs are fetched (a registry answer over plain HTTP could be anything)"
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let out = dir.path().join("download");
    let mut cmd = Command::new("curl");
    cmd.args(["-fsSL", "--proto", "=https", "--proto-redir", "=https"])
        .args([
            "--retry",
            "2",
            "--connect-timeout",
            "20",
            "--max-time",
            "600",
        ])
        .arg("--max-filesize")
        .arg(max_bytes.to_string())
        .arg("-o")
        .arg(&out);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let res = cmd.arg(url).traced().output().map_err(|e| {
        format!("cannot run curl ({e}); install curl (ci/setup does) or fill the cache")
    })?;
    if !res.status.success() {
        let err = String::from_utf8_lossy(&res.stderr);
        return Err(format!(
            "{url}: {}",
            err.lines().last().unwrap_or("curl failed").trim()
        ));
    }
    crate::fsio::read_regular(
        &out,
        max_bytes,
        "a registry download",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, offline: bool) -> Sources {
        Sources {
            cache: Cache::new(dir.join("cache")),
            prefetch: dir.join("prefetch"),
            offline,
            go_proxy: None,
        }
    }

    fn pin(bytes: &[u8]) -> Pin {
        Pin {
            digest: Digest::Sha256(Sha256::of(bytes)),
            max_bytes: 100,
            what: "a test artifact",
        }
    }

    type Got = Result<Vec<u8>, FetchError<String>>;

    fn get(s: &Sources, pin: &Pin, local: Vec<PathBuf>, served: &[u8]) -> Got {
        let store = s.store("t/sha256");
        let at = Places {
            store: &store,
            key: "k".into(),
            local,
            offline: s.offline,
        };
        fetch(pin, &at, || Ok(served.to_vec()))
    }

    #[test]
    fn a_download_is_checked_stored_and_then_read_from_the_store() {
        let d = tempfile::tempdir().unwrap();
        let s = sources(d.path(), false);
        let p = pin(b"good");
        assert!(matches!(
            get(&s, &p, vec![], b"evil"),
            Err(FetchError::Mismatch { bytes }) if bytes == b"evil"
        ));
        assert_eq!(get(&s, &p, vec![], b"good").unwrap(), b"good");
        let offline = sources(d.path(), true);
        assert_eq!(get(&offline, &p, vec![], b"").unwrap(), b"good");
        // A damaged entry is fetched again and replaced.
        std::fs::write(d.path().join("cache/t/sha256/k"), b"bad").unwrap();
        assert!(matches!(
            get(&offline, &p, vec![], b""),
            Err(FetchError::Offline { .. })
        ));
        assert_eq!(get(&s, &p, vec![], b"good").unwrap(), b"good");
        assert_eq!(
            std::fs::read(d.path().join("cache/t/sha256/k")).unwrap(),
            b"good"
        );
    }

    #[test]
    fn an_unreadable_store_entry_is_an_error_an_unreadable_local_file_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let s = sources(d.path(), true);
        let p = pin(b"good");
        // Local files: one that cannot be read (a directory), one of other content, the one.
        let unreadable = d.path().join("dir");
        std::fs::create_dir(&unreadable).unwrap();
        let other = d.path().join("other");
        std::fs::write(&other, b"other").unwrap();
        let good = d.path().join("good");
        std::fs::write(&good, b"good").unwrap();
        match get(&s, &p, vec![unreadable.clone(), other.clone()], b"") {
            Err(FetchError::Offline { rejected }) => {
                assert_eq!(rejected, std::slice::from_ref(&other))
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            get(&s, &p, vec![unreadable, other, good], b"").unwrap(),
            b"good"
        );
        // The store's own entry cannot be read: said, naming the cache.
        std::fs::remove_file(d.path().join("cache/t/sha256/k")).unwrap();
        std::fs::create_dir(d.path().join("cache/t/sha256/k")).unwrap();
        match get(&s, &p, vec![], b"") {
            Err(FetchError::Store(e)) => {
                assert!(e.to_string().starts_with("the package cache "), "{e}")
            }
            r => panic!("{r:?}"),
        }
    }
}
