//! `[[overlay]]`: host directories copied into the image, each an SBOM component.

use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::checks::{existing_dir, image_path, owner};
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawOverlay {
    pub path: Spanned<String>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Resolved host directory.
    pub source: PathBuf,
    /// The name of its SBOM component (`overlay:<name>`): the directory's file name.
    pub name: String,
    pub target: ImagePath,
    pub uid: u32,
    pub gid: u32,
}

/// `[[overlay]]`.
pub(super) fn validate_overlays(
    cx: &Ctx,
    list: &[RawOverlay],
    dir: &Path,
) -> Result<Vec<Overlay>, ProfileError> {
    let mut overlays = Vec::new();
    for (n, o) in list.iter().enumerate() {
        let key = format!("overlay[{n}]");
        let source = existing_dir(cx, dir, &o.path, &format!("{key}.path"))?;
        let name = overlay_name(o.path.get_ref(), n);
        if overlays.iter().any(|x: &Overlay| x.name == name) {
            return Err(cx.at(o.path.span(), format!("{key}.path"), format!("another overlay is also named {name:?}; overlay directory names must be distinct (they name SBOM components)")));
        }
        let target = match &o.target {
            Some(t) => image_path(cx, t, &format!("{key}.target"))?,
            None => ImagePath::root(),
        };
        let (uid, gid) = owner(cx, o.uid.as_ref(), o.gid.as_ref(), &key)?;
        overlays.push(Overlay {
            source,
            name,
            target,
            uid,
            gid,
        });
    }

    Ok(overlays)
}

/// An overlay's SBOM name, from its path as written in the profile (never from the resolved
/// host path, which depends on the working directory and on how the profile's path was typed):
/// the last component left after resolving `.` and `..` lexically, else `overlay-N`.
pub fn overlay_name(written: &str, index: usize) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in written.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                // Above the profile's directory: what is there has no name we can know.
                if parts.pop().is_none() {
                    parts.clear();
                }
            }
            name => parts.push(name),
        }
    }
    parts
        .last()
        .map_or_else(|| format!("overlay-{index}"), |s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::overlay_name;
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn missing_overlay() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[[overlay]]\npath = \"nope\"\n"));
        assert!(e.starts_with("p.toml:11:8: overlay[0].path: "), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn overlay_names_do_not_depend_on_how_the_path_is_typed() {
        assert_eq!(overlay_name("../rootfs-overlays/hello", 0), "hello");
        assert_eq!(overlay_name("overlay/app/", 0), "app");
        assert_eq!(overlay_name("./overlay/./app", 0), "app");
        assert_eq!(overlay_name("a/b/..", 0), "a");
        // The profile's own directory, or one above it: named by position, not by the host.
        assert_eq!(overlay_name(".", 0), "overlay-0");
        assert_eq!(overlay_name("..", 2), "overlay-2");
        assert_eq!(overlay_name("../..", 1), "overlay-1");
    }
}
