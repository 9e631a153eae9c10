//! Packages from four ecosystems, each in its room: Debian's (`debian/`: the lock, apt,
//! `.deb` extraction), Python's (`python/`: pinned wheels, bytecode), npm's (`npm/`: a
//! `package-lock.json`) and Go's (`go/`: modules pinned by go.sum, the function compiled). What they share: one pinned fetcher ([`fetch`]), the safe reading of
//! untrusted archives ([`unpack`]) and the shared-library closure ([`elf`]).

pub mod cargo;
pub mod compiled;
pub mod debian;
pub mod elf;
pub mod fetch;
pub mod go;
pub mod npm;
pub mod python;
pub mod spdx;
pub mod unpack;

// The paths other modules name (kept while `profile` still imports from here).
pub use debian::{install_locked, lock, resolve};
pub use npm::install_npm;
pub use python::{bytecode, install_python, pypi};

use std::path::PathBuf;

use debian::{deb, lock::LockError, Mismatch};
use python::{zip, PypiError};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("package {name} is listed in [packages] debian of {profile} but not in {lock}; run `stratos lock {profile}`")]
    NotLocked {
        name: String,
        profile: PathBuf,
        lock: PathBuf,
    },
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("package {name} {version} is not in the package cache ({cache}) and --offline forbids downloading it; run the build once without --offline")]
    Offline {
        name: String,
        version: String,
        cache: PathBuf,
    },
    #[error("package {name} {version}: `apt-get download` failed: {why}. If the version is no longer in the archive, run `stratos lock PROFILE --update`; if apt has no package lists, run `apt-get update` (ci/setup does)")]
    Download {
        name: String,
        version: String,
        why: String,
    },
    #[error(transparent)]
    Deb(#[from] deb::DebError),
    #[error(transparent)]
    Store(#[from] fetch::StoreError),
    #[error(transparent)]
    Pypi(#[from] PypiError),
    #[error(transparent)]
    Npm(#[from] npm::NpmError),
    #[error(transparent)]
    Go(#[from] go::GoError),
    #[error(transparent)]
    Cargo(#[from] cargo::CargoError),
    #[error(transparent)]
    Zip(#[from] zip::ZipError),
    #[error("{what}: {why}")]
    Native { what: String, why: String },
}

impl PackageError {
    /// A failure of the machine (apt, the package cache, the file system), not of the input.
    pub fn is_environment(&self) -> bool {
        match self {
            Self::Download { .. } | Self::Store(_) => true,
            Self::Pypi(e) => e.is_environment(),
            Self::Npm(e) => e.is_environment(),
            Self::Go(e) => e.is_environment(),
            Self::Cargo(e) => e.is_environment(),
            _ => false,
        }
    }
}
