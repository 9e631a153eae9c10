//! Booting images under QEMU, in three parts over one VM layer:
//!
//! - [`vm`]: one QEMU virtual machine — its command line, process, console, control channel,
//!   QMP, the accelerator; it knows nothing of images, snapshots or benchmarks.
//! - [`image`] and [`mod@run`]: an image directory opened to boot, and one boot (or restore) of it
//!   followed to its end, with its console, phases, calls and readings.
//! - [`snapshot`]: saving a booted VM and restoring it (take, restore, verify, signing).
//! - [`mod@bench`]: `stratos boot-test` — measured runs, objectives, statistics and the report; its
//!   result document is [`crate::boot_result`].

pub mod bench;
pub mod image;
pub mod run;
pub mod snapshot;
pub mod vm;

use std::path::PathBuf;

pub use image::BootImage;
pub use run::{run, BootRun, Invocation, Invoke, RunOptions};
pub use vm::{handle_stop_signals, stop_requested};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {why}")]
    Image { path: PathBuf, why: String },
    #[error(transparent)]
    Qemu(#[from] vm::QemuError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
}

impl BootError {
    /// QEMU missing or failing to start, host I/O: not the image's fault.
    pub fn is_environment(&self) -> bool {
        match self {
            Self::Qemu(_) | Self::Io(_) => true,
            Self::Snapshot(e) => e.is_environment(),
            Self::Image { .. } => false,
        }
    }
}
