//! The image's file tree: safe in-image paths, the in-memory tree, loading host content.

pub mod overlay;
pub mod path;
pub mod tree;

pub use path::{ImagePath, PathError};
pub use tree::{Entry, Kind, Origin, Override, Tree, TreeError};

/// A name for messages: quoted, with control characters and other unprintable characters
/// escaped, so a hostile file name cannot rewrite the terminal or forge a log line.
pub fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// What the image's contents may expand to: archives and host files claim sizes that are never
/// trusted, so every read stops at the smallest limit that applies. Set in the profile's
/// `[image]` table (`max-file-size`, `max-package-size`, `max-image-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandLimits {
    /// One file (a package member, an overlay file, a `[[file]]`).
    pub file: u64,
    /// Everything one package installs.
    pub package: u64,
    /// All file contents of the image together.
    pub image: u64,
}

impl Default for ExpandLimits {
    fn default() -> Self {
        ExpandLimits {
            file: 1 << 30,
            package: 2 << 30,
            image: 4 << 30,
        }
    }
}

/// The limits, and how much of the image's allowance is already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limits: ExpandLimits,
    /// Bytes of file content already in the image.
    pub image_used: u64,
}
