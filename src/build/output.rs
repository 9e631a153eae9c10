//! Writing the image directory: everything goes to a staging directory next to the target,
//! which then replaces the target in one rename. A failed build leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::sign::manifest::MANIFEST_FILE;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write the image to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to replace {0}: it exists and is not a stratos image directory (no manifest.json); choose another --out or remove it")]
    NotAnImage(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `dir` may be replaced: it is absent, empty, or holds a previous image.
fn replaceable(dir: &Path) -> Result<bool, OutputError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
        Ok(m) if !m.is_dir() => Ok(false),
        Ok(_) => {
            if dir.join(MANIFEST_FILE).is_file() {
                return Ok(true);
            }
            Ok(std::fs::read_dir(dir).map_err(io(dir))?.next().is_none())
        }
    }
}

/// Writes `files` (name, bytes) as the directory `out`, replacing a previous image there.
pub fn write_image_dir(out: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), OutputError> {
    use std::io::Write;
    if !replaceable(out)? {
        return Err(OutputError::NotAnImage(out.to_owned()));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".stratos-staging-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    for (name, bytes) in files {
        let path = staging.path().join(name);
        let mut f = std::fs::File::create(&path).map_err(io(&path))?;
        f.write_all(bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
    }
    set_mode(staging.path(), 0o755)?;
    if out.exists() {
        // Swap old and new in one step, then delete the old one (now at the staging path).
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            staging.path(),
            rustix::fs::CWD,
            out,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io(out)(e.into()))?;
        // `staging` now names the old image; dropping it removes it.
        drop(staging);
    } else {
        let staged = staging.keep();
        std::fs::rename(&staged, out).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            io(out)(e)
        })?;
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_images_only() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/img");
        write_image_dir(&out, &[("manifest.json", b"1".to_vec())]).unwrap();
        write_image_dir(
            &out,
            &[("manifest.json", b"2".to_vec()), ("x", b"y".to_vec())],
        )
        .unwrap();
        assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), b"2");
        // No staging directories are left behind.
        let names: Vec<_> = std::fs::read_dir(d.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["img"]);
        let other = d.path().join("precious");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("data"), b"keep").unwrap();
        assert!(matches!(
            write_image_dir(&other, &[]),
            Err(OutputError::NotAnImage(_))
        ));
        assert_eq!(std::fs::read(other.join("data")).unwrap(), b"keep");
    }
}
