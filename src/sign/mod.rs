//! Keys, the canonical manifest, detached ed25519 signatures and image verification.

pub mod keys;
pub mod manifest;
pub mod verify;

pub use keys::{KeyError, KeyId, PublicKey, SecretKey};
pub use manifest::{Artifact, Manifest};

/// sha256 as lowercase hex (the text form of [`crate::digest::Sha256::of`]).
pub fn sha256_hex(data: &[u8]) -> String {
    crate::digest::Sha256::of(data).to_string()
}
