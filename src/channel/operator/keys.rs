//! The keys a release command signs or trusts with, loaded from the files named on its command
//! line (`flag` names the option in errors).

use std::path::{Path, PathBuf};

use crate::channel::error::{ChannelError, UsageError};
use crate::fsio::{self, caps};
use crate::sign::{PublicKey, SecretKey};

/// At least one secret key, each from a key file made by `stratos keygen`.
pub fn secret_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<SecretKey>, ChannelError> {
    if paths.is_empty() {
        return Err(UsageError::NoSigningKey {
            flag: flag.to_owned(),
        }
        .into());
    }
    paths
        .iter()
        .map(|p| {
            key_file(p, flag)?;
            Ok(SecretKey::load(p)?)
        })
        .collect()
}

/// Public keys (none is fine: the caller decides what an empty list means).
pub fn public_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<PublicKey>, ChannelError> {
    paths
        .iter()
        .map(|p| {
            key_file(p, flag)?;
            Ok(PublicKey::load(p)?)
        })
        .collect()
}

/// A key file must be a regular file of key size before it is loaded (a FIFO would block the
/// load forever, a device fill memory).
fn key_file(p: &Path, flag: &str) -> Result<(), ChannelError> {
    fsio::read_file(p, caps::KEY, "a key file")
        .map(drop)
        .map_err(ChannelError::flag(flag))
}
