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
