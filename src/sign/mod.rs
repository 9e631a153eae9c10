//! Keys, the canonical manifest, detached ed25519 signatures and image verification.

pub mod keys;
pub mod manifest;
pub mod verify;

pub use keys::{KeyError, KeyId, PublicKey, SecretKey};
pub use manifest::{Artifact, Manifest};

/// sha256 as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so a
/// reader sees either the old file or the whole new one. `mode` sets the permission bits.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".stratos-tmp-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// fsyncs a directory, so a rename in it survives a crash.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
