//! The kernel cache under `<cache>/kernels/`: its keys (everything that reaches a config's or
//! a kernel's bytes), its locks, and its entries, each written in a scratch directory and
//! renamed into place complete.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{io, KernelBuildError};
use super::toolchain::{Toolchain, KBUILD_ENV};
use crate::arch::Arch;
use crate::cache::Cache;
use crate::progress::Progress;

/// Bumped whenever the way kernels are configured or built changes (invalidates the cache).
const RECIPE: &str = "stratos-kernel-recipe-2";

/// What a key says of the architecture. x86-64 says nothing: its keys were written before the
/// architecture was a parameter, and the kernels cached under them must still be found. Another
/// architecture adds a line naming it (the same source and fragments give it another config).
fn arch_in_key(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "",
        Arch::Aarch64 => "arch: arm64\n",
    }
}

/// The key of a resolved config: the architecture, the source, the base target, every
/// fragment's bytes and the toolchain (`olddefconfig` asks the compiler what it supports).
pub fn config_key(
    arch: Arch,
    source_digest: &str,
    base: &str,
    fragments: &[Vec<u8>],
    tools: &Toolchain,
) -> String {
    let mut key = Sha256::new();
    key.update(format!(
        "{RECIPE}\n{}{source_digest}\n{base}\n{}\n",
        arch_in_key(arch),
        tools.describe()
    ));
    for f in fragments {
        key.update(Sha256::digest(f));
    }
    hex::encode(key.finalize())
}

/// The key of a built kernel: everything that reaches its bytes.
pub fn build_key(
    arch: Arch,
    source_digest: &str,
    format: &str,
    tools: &Toolchain,
    config: &str,
) -> String {
    hex::encode(Sha256::digest(
        format!(
            "{RECIPE}\n{}{source_digest}\n{format}\n{}\n{KBUILD_ENV:?}\n{config}",
            arch_in_key(arch),
            tools.describe()
        )
        .as_bytes(),
    ))
}

/// The kernel cache: `kernels/` under the cache root the caller gives.
#[derive(Debug, Clone)]
pub(super) struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    pub(super) fn new(cache: &Cache) -> KernelCache {
        KernelCache {
            dir: cache.root.join("kernels"),
        }
    }

    /// `<key>/`: a built kernel.
    pub(super) fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// `work/<name>/`: a build or a config resolution in progress.
    pub(super) fn work(&self, name: &str) -> PathBuf {
        self.dir.join("work").join(name)
    }

    /// `configs/`: resolved configs (`<key>.config`) and their bases (`<key>.base`).
    pub(super) fn configs(&self) -> PathBuf {
        self.dir.join("configs")
    }

    /// `src/<digest>/`: an extracted source tarball.
    pub(super) fn source(&self, digest: &str) -> PathBuf {
        self.dir.join("src").join(digest)
    }

    /// `digests/<key>`: a tarball's digest, by its path, size, mtime and inode.
    pub(super) fn digest_memo(&self, key: &str) -> PathBuf {
        self.dir.join("digests").join(key)
    }

    /// How many objects the last build compiled (the next progress bar's length).
    pub(super) fn objects_estimate(&self) -> PathBuf {
        self.dir.join("objects-estimate")
    }

    /// `failed/`: the logs of failed builds, kept for the user.
    pub(super) fn failed(&self) -> PathBuf {
        self.dir.join("failed")
    }

    /// An exclusive lock on `name` under the kernel cache, held while the guard lives.
    pub(super) fn lock(&self, name: &str, progress: &Progress) -> Result<Lock, KernelBuildError> {
        lock(&self.dir.join("locks"), name, progress)
    }
}

/// An exclusive lock on a file of the kernel cache, held while the guard lives (and while a
/// child given [`Lock::for_child`] lives).
pub(super) struct Lock {
    file: std::fs::File,
}

impl Lock {
    /// The lock file as a child's standard input: a `flock` belongs to the open file, which
    /// the child and everything it starts (make's compilers) then share, so the lock stays held
    /// until the last of them has exited, even if this process is killed first (its own
    /// descriptors are close-on-exec and die with it). The file is empty: a read gives EOF.
    pub(super) fn for_child(&self) -> Result<std::process::Stdio, KernelBuildError> {
        let f = self
            .file
            .try_clone()
            .map_err(io("sharing the build lock"))?;
        Ok(std::process::Stdio::from(f))
    }
}

fn lock(dir: &Path, name: &str, progress: &Progress) -> Result<Lock, KernelBuildError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        progress.info(format!(
            "waiting for another stratos process working on {name}"
        ));
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            KernelBuildError::Io {
                what: format!("locking {}", path.display()),
                source: e.into(),
            }
        })?;
    }
    Ok(Lock { file: f })
}

/// Removes a scratch directory of ours if it is there (a leftover of an interrupted run).
pub(super) fn clear_scratch(dir: &Path) -> Result<(), KernelBuildError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// A complete cache entry's kernel and config, if there is one and it reads back. A damaged
/// entry is reported and rebuilt.
pub(super) fn cached(entry: &Path, progress: &Progress) -> Option<(Vec<u8>, String)> {
    let marker = entry.join(".complete");
    if !marker.is_file() {
        return None;
    }
    let read = || -> std::io::Result<(Vec<u8>, String)> {
        Ok((
            std::fs::read(entry.join("kernel"))?,
            std::fs::read_to_string(entry.join("config"))?,
        ))
    };
    let (image, config_text) = match read() {
        Ok(x) => x,
        Err(e) => {
            progress.warn(format!(
                "kernel cache entry {} is damaged ({e}); rebuilding it",
                entry.display()
            ));
            return None;
        }
    };
    // Record the use, for `stratos cache gc`; a cache we cannot touch still serves the build.
    if let Err(e) = std::fs::File::options()
        .write(true)
        .open(&marker)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
    {
        progress.warn(format!(
            "cannot record the use of {}: {e}",
            marker.display()
        ));
    }
    Some((image, config_text))
}

/// What a cache entry's `meta.json` records besides the kernel's size.
pub(super) struct EntryMeta<'a> {
    pub source_digest: &'a str,
    pub format: &'a str,
    pub tools: &'a Toolchain,
    pub objects: u64,
    pub seconds: f64,
}

/// Writes the cache entry in a scratch directory next to it, then renames it into place.
pub(super) fn store_entry(
    kernels: &KernelCache,
    key: &str,
    work: &Path,
    image: &[u8],
    config_text: &str,
    meta: &EntryMeta,
) -> Result<(), KernelBuildError> {
    let entry = kernels.entry(key);
    let tmp = kernels.dir.join(format!(".entry-{key}"));
    clear_scratch(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    std::fs::write(tmp.join("kernel"), image).map_err(io("caching the kernel"))?;
    std::fs::write(tmp.join("config"), config_text).map_err(io("caching the config"))?;
    std::fs::copy(work.join("build.log"), tmp.join("build.log"))
        .map_err(io("caching the build log"))?;
    let meta = serde_json::json!({
        "source_sha256": meta.source_digest,
        "format": meta.format,
        "compiler": meta.tools.gcc,
        "linker": meta.tools.ld,
        "objects": meta.objects,
        "build_seconds": meta.seconds.round() as u64,
        "size": image.len(),
    });
    std::fs::write(tmp.join("meta.json"), format!("{meta:#}\n"))
        .map_err(io("caching the build metadata"))?;
    std::fs::write(tmp.join(".complete"), b"").map_err(io("marking the cache entry complete"))?;
    // A damaged entry (no .complete) may be in the way.
    clear_scratch(&entry)?;
    std::fs::rename(&tmp, &entry).map_err(io(format!("moving the kernel to {}", entry.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cache_keys_cover_the_linker_and_the_compiler() {
        let a = Toolchain {
            gcc: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            ld: "GNU ld (GNU Binutils for Debian) 2.40".into(),
        };
        let b = Toolchain {
            ld: "GNU ld (GNU Binutils for Debian) 2.41".into(),
            ..a.clone()
        };
        let c = Toolchain {
            gcc: "gcc (Debian 13.2.0-1) 13.2.0".into(),
            ..a.clone()
        };
        let frag = vec![b"CONFIG_A=y\n".to_vec()];
        assert_ne!(
            build_key(Arch::X86_64, "s", "bzImage", &a, "cfg"),
            build_key(Arch::X86_64, "s", "bzImage", &b, "cfg")
        );
        assert_ne!(
            build_key(Arch::X86_64, "s", "bzImage", &a, "cfg"),
            build_key(Arch::X86_64, "s", "bzImage", &c, "cfg")
        );
        assert_ne!(
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &a),
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &c)
        );
        assert_ne!(
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &a),
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &b)
        );
        assert_eq!(
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &a),
            config_key(Arch::X86_64, "s", "tinyconfig", &frag, &a.clone())
        );
    }

    #[test]
    fn x86_64_keys_are_those_written_before_the_arch_was_a_parameter() {
        // Computed by the code before `arch` existed: kernels cached then must still hit.
        let tools = Toolchain {
            gcc: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            ld: "GNU ld (GNU Binutils for Debian) 2.40".into(),
        };
        let frags = vec![
            b"CONFIG_A=y\n".to_vec(),
            b"# CONFIG_B is not set\n".to_vec(),
        ];
        let x86 = Arch::X86_64;
        assert_eq!(
            config_key(x86, "0123", "tinyconfig", &frags, &tools),
            "b18dd68f3e4c4242189c6fab0b986ca1ecfbba564d6221763c55365f905dc935"
        );
        assert_eq!(
            build_key(x86, "0123", "bzImage", &tools, "CONFIG_A=y\n"),
            "e2aefa93cc22db500823d1135d8d0aad769861f5de94874a4ba831df72b9f0d9"
        );
        assert_eq!(
            build_key(x86, "0123", "vmlinux", &tools, "CONFIG_A=y\n"),
            "b57692f1bc7fba9d416b9fbf7f1a6d2683c822131a9de7c528c5bba584241e7e"
        );
    }

    #[test]
    fn the_layout_under_the_given_root_is_the_one_caches_already_have() {
        let k = KernelCache::new(&Cache::new("/c"));
        assert_eq!(k.entry("k"), Path::new("/c/kernels/k"));
        assert_eq!(k.work("config-k"), Path::new("/c/kernels/work/config-k"));
        assert_eq!(k.configs(), Path::new("/c/kernels/configs"));
        assert_eq!(k.source("d"), Path::new("/c/kernels/src/d"));
        assert_eq!(k.digest_memo("m"), Path::new("/c/kernels/digests/m"));
        assert_eq!(k.failed(), Path::new("/c/kernels/failed"));
        assert_eq!(
            k.objects_estimate(),
            Path::new("/c/kernels/objects-estimate")
        );
    }

    #[test]
    fn locks_live_under_the_given_root() {
        let d = tempfile::tempdir().unwrap();
        let k = KernelCache::new(&Cache::new(d.path()));
        let progress = Progress::new(false);
        drop(k.lock("build-k", &progress).unwrap());
        let _again = k.lock("build-k", &progress).unwrap();
        assert!(d.path().join("kernels/locks/build-k.lock").is_file());
    }
}
