//! Building a kernel from a source tarball: extract (once per tarball digest), resolve the
//! config (base + fragments + `olddefconfig`, cached), verify every requested option, compile
//! (cached by source digest, final config and compiler), reproducibly.
//!
//! Cache layout under `<cache>/kernels/`, `<cache>` being the root the caller passes:
//! `digests/` tarball digests by (path, size, mtime, inode); `src/<digest>/` extracted trees;
//! `configs/<key>.config` resolved configs; `<key>/` built kernels (`kernel`, `config`,
//! `build.log`, `meta.json`); `work/` build directories while building, and kept when a build
//! is interrupted so that the next run with the same key resumes it (see `work.rs`); `locks/`.

mod cache;
mod error;
mod make;
mod resolve;
mod source;
mod toolchain;
mod work;

use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::profile::{KernelSourceSpec, Named};
use crate::progress::Progress;
use cache::{build_key, clear_scratch, store_entry, EntryMeta, KernelCache};
pub use error::{render_mismatches, KernelBuildError, Mismatch};
use make::{built_image, run_make};
pub use resolve::{resolve, Resolved};
use toolchain::Toolchain;
pub use toolchain::{build_env, KBUILD_ENV};

/// A built kernel.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Vec<u8>,
    pub config_text: String,
    pub source_digest: String,
    /// The cache entry's directory (holds `build.log`).
    pub dir: PathBuf,
    pub cache_hit: bool,
    pub build_seconds: Option<f64>,
}

/// Builds (or takes from the cache) the kernel for a resolved config: the cache entry keyed by
/// everything that reaches the kernel's bytes; else, under a lock, `make` in the key's work
/// directory (resuming an interrupted build there), stripped for `vmlinux`, stored as a
/// complete entry in one rename.
pub fn build(
    spec: &KernelSourceSpec,
    r: &Resolved,
    cache: &Cache,
    progress: &Progress,
) -> Result<Built, KernelBuildError> {
    let kernels = KernelCache::new(cache);
    let tools = Toolchain::detect(r.arch)?;
    let key = build_key(
        r.arch,
        &r.source_digest,
        spec.format.as_str(),
        &tools,
        &r.config_text,
    );
    let entry = kernels.entry(&key);
    if let Some(b) = from_cache(&entry, r, progress) {
        return Ok(b);
    }
    let lock = kernels.lock(&format!("build-{key}"), progress)?;
    if let Some(b) = from_cache(&entry, r, progress) {
        return Ok(b);
    }
    let start = std::time::Instant::now();
    let work = work::prepare(&kernels.work(&key), &key, &r.config_text, &lock, progress)?;
    let compiled = run_make(spec, &r.source_dir, &work, r.arch, &kernels, &key, progress)?;
    let work = work.dir;
    let image = built_image(spec, &work, r.arch)?;
    let seconds = start.elapsed().as_secs_f64();
    let meta = EntryMeta {
        source_digest: &r.source_digest,
        format: spec.format.as_str(),
        tools: &tools,
        objects: compiled,
        seconds,
    };
    store_entry(&kernels, &key, &work, &image, &r.config_text, &meta)?;
    clear_scratch(&work)?;
    progress.info(format!(
        "kernel built in {:.0} s ({} objects), cached in {}",
        seconds,
        compiled,
        entry.display()
    ));
    Ok(Built {
        image,
        config_text: r.config_text.clone(),
        source_digest: r.source_digest.clone(),
        dir: entry,
        cache_hit: false,
        build_seconds: Some(seconds),
    })
}

/// The cache entry's kernel as a build's result, if the entry is complete and reads back.
fn from_cache(entry: &Path, r: &Resolved, progress: &Progress) -> Option<Built> {
    let (image, config_text) = cache::cached(entry, progress)?;
    Some(Built {
        image,
        config_text,
        source_digest: r.source_digest.clone(),
        dir: entry.to_owned(),
        cache_hit: true,
        build_seconds: None,
    })
}
