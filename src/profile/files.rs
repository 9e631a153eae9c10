//! `[[file]]`: single host files copied into the image, with their mode and owner.

use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::checks::{existing_file, image_path, owner, parse_mode, IntOrString};
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    pub source: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub mode: Option<Spanned<IntOrString>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub source: PathBuf,
    pub dest: ImagePath,
    /// Explicit permission bits, or `None` for the normalised host mode.
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
}

/// `[[file]]`.
pub(super) fn validate_files(
    cx: &Ctx,
    list: &[RawFile],
    dir: &Path,
) -> Result<Vec<HostFile>, ProfileError> {
    let mut files = Vec::new();
    for (n, f) in list.iter().enumerate() {
        let key = format!("file[{n}]");
        let source = existing_file(cx, dir, &f.source, &format!("{key}.source"))?;
        let dest = image_path(cx, &f.path, &format!("{key}.path"))?;
        if dest.is_root() {
            return Err(cx.at(
                f.path.span(),
                format!("{key}.path"),
                "must name a file, not /",
            ));
        }
        let mode = f
            .mode
            .as_ref()
            .map(|m| parse_mode(cx, m, &format!("{key}.mode")))
            .transpose()?;
        let (uid, gid) = owner(cx, f.uid.as_ref(), f.gid.as_ref(), &key)?;
        files.push(HostFile {
            source,
            dest,
            mode,
            uid,
            gid,
        });
    }

    Ok(files)
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn dotdot_in_image_path() {
        let f = Fixture::new();
        let e = f.err(&format!(
            "{BASE}[[file]]\nsource = \"motd\"\npath = \"/etc/../../x\"\n"
        ));
        assert!(e.starts_with("p.toml:12:8: file[0].path: "), "{e}");
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn host_file_that_is_a_directory() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[[file]]\nsource = \"ov\"\npath = \"/x\"\n"));
        assert!(e.contains("file[0].source"), "{e}");
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn bad_mode() {
        let f = Fixture::new();
        let e = f.err(&format!(
            "{BASE}[[file]]\nsource = \"motd\"\npath = \"/m\"\nmode = \"999\"\n"
        ));
        assert!(e.contains("file[0].mode"), "{e}");
    }
}
