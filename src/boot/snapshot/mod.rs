//! Snapshots: boot an image once, let the runtime get ready (and warm up), save the VM, and
//! restore it for every cold start instead of booting.
//!
//! A snapshot directory holds `memory` (the guest's RAM: QEMU maps it shared while saving, so
//! the RAM is the file; every restore maps it copy-on-write), `state` (the device state QEMU's
//! migration writes, small because the RAM is left out with `x-ignore-shared`), and
//! `snapshot.json` naming the image (its manifest digest), the QEMU version, the exact machine
//! and devices, the memory size, the accelerator, the kernel command line and the digests of
//! both files; `snapshot.sig` signs it like a manifest. Every file is mode 0600: a snapshot is
//! the guest's memory, with whatever the function read at start.
//!
//! Here: the snapshot's description and reading it back ([`Snapshot::load`]). Taking one is
//! `take.rs` (boot, wait, save, describe, sign), the directory on disk `dir.rs`, checking one
//! before a restore `verify.rs`, restoring `restore.rs`, and QEMU's migration `migration.rs`.

mod dir;
mod migration;
mod restore;
mod take;
mod verify;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image::BootImage;
use super::vm::qmp::QmpError;
use super::vm::Accel;
use crate::digest::Sha256;
use crate::sign::manifest::{canonical_json, Artifact, ArtifactName};
use crate::sign::KeyId;

pub use restore::resume;
pub use take::{create, CreateOptions};

pub const FORMAT: u32 = 1;
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const SIGNATURE_FILE: &str = "snapshot.sig";
pub const MEMORY_FILE: &str = "memory";
pub const STATE_FILE: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Qemu(#[from] super::vm::QemuError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {dir}: {why}")]
    Invalid { dir: PathBuf, why: String },
    /// The snapshot was made for something else than what would restore it.
    #[error("snapshot {dir} cannot be restored here: {why}")]
    Mismatch { dir: PathBuf, why: String },
    #[error("the image never became ready to snapshot: {0}")]
    NotReady(String),
    #[error(transparent)]
    Verify(#[from] crate::sign::verify::VerifyError),
    #[error(transparent)]
    File(#[from] crate::fsio::ReadError),
}

impl SnapshotError {
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Qemu(_) | Self::Qmp(_) | Self::Io { .. })
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMeta {
    pub format: u32,
    pub image: SnapshotImage,
    /// The first line of the QEMU binary's `--version` (`qemu-system-x86_64 --version`):
    /// migration state is only read back by the same QEMU.
    pub qemu_version: String,
    /// The machine and its devices (paths and ports left out): see
    /// [`VmSpec::machine_line`](crate::boot::vm::VmSpec::machine_line).
    pub machine: String,
    pub memory_mib: u32,
    pub accel: String,
    /// The kernel command line exactly as booted.
    pub cmdline: String,
    /// The function's port in the guest.
    pub guest_port: u16,
    /// The paths invoked before the save (lazy imports, JIT).
    pub warm: Vec<String>,
    /// `memory` and `state`, sorted by name.
    pub files: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotImage {
    pub name: String,
    pub version: String,
    pub manifest_sha256: Sha256,
}

impl SnapshotMeta {
    pub fn to_canonical(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(self).expect("plain data"))
            .expect("no floats")
            .into_bytes()
    }
}

/// The digest of an image's manifest: what ties a snapshot to exactly one image.
pub fn manifest_sha256(image: &BootImage) -> Result<Sha256, SnapshotError> {
    let (d, _) = crate::fsio::sha256_file(
        &image.dir.join(crate::sign::manifest::MANIFEST_FILE),
        crate::fsio::Links::Refuse,
    )?;
    Ok(Sha256::from_bytes(d))
}

fn file_digest(dir: &Path, name: &ArtifactName) -> Result<Artifact, SnapshotError> {
    let (d, size) = crate::fsio::sha256_file(&dir.join(name), crate::fsio::Links::Refuse)?;
    Ok(Artifact {
        name: name.clone(),
        size,
        sha256: Sha256::from_bytes(d),
    })
}

/// Guest memory a snapshot may claim, in MiB: what `stratos snapshot --memory` can make. A
/// value outside is a damaged or hand-edited `snapshot.json`, refused before QEMU sees it.
pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 16..=65536;

/// The largest device state file read back: the RAM is not in it (`x-ignore-shared`), so it
/// holds the devices' state and video memory, a few MiB.
pub const STATE_MAX: u64 = 256 << 20;

/// How QEMU's migration stream begins: `QEVM` and stream version 3.
const STATE_MAGIC: [u8; 8] = *b"QEVM\0\0\0\x03";

/// A snapshot read back for restoring.
#[derive(Debug)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub meta: SnapshotMeta,
    pub bytes: Vec<u8>,
    /// Set by a successful [`Snapshot::verify`]: the key that signed `snapshot.json` (whose
    /// digests then held for `memory` and `state`). What restores from it may say so.
    verified: std::sync::OnceLock<KeyId>,
}

impl Snapshot {
    pub fn load(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let bytes = crate::fsio::read_regular(
            &dir.join(SNAPSHOT_FILE),
            crate::fsio::caps::MANIFEST,
            "a snapshot description",
            crate::fsio::Links::Refuse,
        )?;
        Snapshot::parse(dir, bytes)
    }

    /// `snapshot.json`'s bytes, checked (the files are not looked at).
    pub fn parse(dir: &Path, bytes: Vec<u8>) -> Result<Snapshot, SnapshotError> {
        let meta: SnapshotMeta =
            serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!("{SNAPSHOT_FILE}: {e}"),
            })?;
        if Accel::from_name(&meta.accel).is_none() {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!("{SNAPSHOT_FILE}: unknown accelerator {:?}", meta.accel),
            });
        }
        if meta.format != FORMAT {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!(
                    "{SNAPSHOT_FILE}: format {} is not supported (this stratos reads {FORMAT})",
                    meta.format
                ),
            });
        }
        if !MEMORY_MIB.contains(&meta.memory_mib) {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!(
                    "{SNAPSHOT_FILE}: memory_mib {} is outside {}..={} MiB: the file is damaged or was edited; make the snapshot again",
                    meta.memory_mib,
                    MEMORY_MIB.start(),
                    MEMORY_MIB.end()
                ),
            });
        }
        Ok(Snapshot {
            dir: dir.to_owned(),
            meta,
            bytes,
            verified: std::sync::OnceLock::new(),
        })
    }

    /// The key `snapshot.json` was verified with ([`Snapshot::verify`]), if it was.
    pub fn verified_by(&self) -> Option<&KeyId> {
        self.verified.get()
    }

    /// The accelerator it was made with (a restore runs on the same).
    pub fn accel(&self) -> Accel {
        Accel::from_name(&self.meta.accel).unwrap_or(Accel::Tcg)
    }
}
