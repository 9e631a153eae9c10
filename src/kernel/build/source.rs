//! The kernel source: the tarball's digest (remembered, so 140 MB are hashed once) and its
//! tree, extracted once per digest.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::cache::{clear_scratch, KernelCache};
use super::error::{io, KernelBuildError};
use crate::progress::Progress;
use crate::progress::Traced;

/// sha256 of the tarball, remembered by path, size, mtime and inode.
pub(super) fn source_digest(
    kernels: &KernelCache,
    tarball: &Path,
) -> Result<String, KernelBuildError> {
    let meta = std::fs::metadata(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let abs =
        std::fs::canonicalize(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let key = hex::encode(Sha256::digest(
        format!(
            "{}|{}|{}|{}|{}",
            abs.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        )
        .as_bytes(),
    ));
    let memo = kernels.digest_memo(&key);
    if let Ok(d) = std::fs::read_to_string(&memo) {
        if d.len() == 64 {
            return Ok(d);
        }
    }
    let mut f =
        std::fs::File::open(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", tarball.display())))?;
    let d = hex::encode(h.finalize());
    // A memo only saves hashing 140 MB next time: a cache that cannot take it is reported,
    // not fatal.
    if let Err(e) = std::fs::create_dir_all(memo.parent().expect("has parent"))
        .and_then(|()| crate::fsio::write_atomic(&memo, d.as_bytes(), 0o644))
    {
        eprintln!(
            "stratos: warning: cannot record the source digest in {}: {e}",
            memo.display()
        );
    }
    Ok(d)
}

/// Extracts the tarball once per digest; returns the source tree (the tarball's top directory).
pub(super) fn extract(
    kernels: &KernelCache,
    tarball: &Path,
    digest: &str,
    progress: &Progress,
) -> Result<PathBuf, KernelBuildError> {
    let dest = kernels.source(digest);
    let tree = |d: &Path| -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .find(|p| p.join("Makefile").is_file() && p.join("Kconfig").is_file())
    };
    if dest.join(".complete").is_file() {
        if let Some(t) = tree(&dest) {
            return Ok(t);
        }
    }
    let _l = kernels.lock(&format!("src-{digest}"), progress)?;
    if dest.join(".complete").is_file() {
        if let Some(t) = tree(&dest) {
            return Ok(t);
        }
    }
    let parent = dest.parent().expect("has parent");
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .map_err(io(format!("creating a directory in {}", parent.display())))?;
    let step = progress.step(format!("extracting {}", tarball.display()));
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(tmp.path())
        .traced()
        .output()
        .map_err(io("running tar (install it with ci/setup)"))?;
    if !out.status.success() {
        return Err(KernelBuildError::Command {
            what: format!("extracting {}", tarball.display()),
            status: out.status.to_string(),
            log: tarball.to_owned(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    step.done();
    std::fs::write(tmp.path().join(".complete"), b"")
        .map_err(io("marking the extraction complete"))?;
    // An incomplete extraction (no .complete) may be in the way.
    clear_scratch(&dest)?;
    let kept = tmp.keep();
    std::fs::rename(&kept, &dest)
        .map_err(io(format!("moving the source to {}", dest.display())))?;
    tree(&dest).ok_or_else(|| KernelBuildError::Io {
        what: format!(
            "{}: no kernel source tree (Makefile + Kconfig) at its top level",
            tarball.display()
        ),
        source: std::io::ErrorKind::NotFound.into(),
    })
}
