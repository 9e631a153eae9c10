//! Deterministic archive writers (tar, cpio newc) and zstd compression, all from a [`Tree`];
//! binary deltas between two versions of a file ([`delta`]).
//!
//! [`Tree`]: crate::rootfs::Tree

pub mod cpio;
pub mod delta;
pub mod erofs;
pub mod erofs_read;
pub mod tar;
pub mod verity;
pub mod zst;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {why}")]
    Entry { path: String, why: String },
    #[error("writing the archive: {0}")]
    Io(#[from] std::io::Error),
}
