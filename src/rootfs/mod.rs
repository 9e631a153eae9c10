//! The image's file tree: safe in-image paths, the in-memory tree, loading host content.

pub mod overlay;
pub mod path;
pub mod tree;

pub use path::{ImagePath, PathError};
pub use tree::{Entry, Kind, Origin, Override, Tree, TreeError};
