//! The content-addressed cache under `$STRATOS_CACHE`, else `$XDG_CACHE_HOME/stratos`, else
//! `~/.cache/stratos`. Entries are keyed by the digest of everything that determines them, so a
//! hit is always correct; a damaged entry is detected and rebuilt.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::archive::zst;

/// The cache root (not created).
pub fn root() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATOS_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("stratos");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/stratos")
}

/// zstd-compresses `data`, reusing an earlier result for the same input, level and library.
/// A cached result is used only after it decompresses back to exactly `data`'s digest.
pub fn compress_cached(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let input = Sha256::digest(data);
    let key = hex::encode(Sha256::digest(
        format!(
            "zstd-{}-{}-mt:{}",
            zst::LEVEL,
            zst::library_version(),
            hex::encode(input)
        )
        .as_bytes(),
    ));
    let path = root().join("zstd").join(format!("{key}.zst"));
    if let Ok(cached) = std::fs::read(&path) {
        let ok = zst::decompress_capped(&cached, data.len() as u64)
            .map(|d| Sha256::digest(&d) == input)
            .unwrap_or(false);
        if ok {
            return Ok(cached);
        }
    }
    let out = zst::compress(data)?;
    // The cache only saves time: an unwritable cache directory must not fail the build.
    if std::fs::create_dir_all(path.parent().expect("has a parent")).is_ok() {
        let _ = crate::sign::write_atomic(&path, &out, 0o644);
    }
    Ok(out)
}
