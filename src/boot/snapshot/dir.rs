//! The snapshot directory on disk: private (0700, files 0600), staged next to where it goes and
//! swapped in whole; what it may replace is only a previous snapshot.

use std::io::Write;
use std::path::Path;

use super::{io, SnapshotError, MEMORY_FILE, SIGNATURE_FILE, SNAPSHOT_FILE, STATE_FILE};

/// A private staging directory next to `out`, renamed onto it once complete.
pub(super) fn stage(out: &Path) -> Result<tempfile::TempDir, SnapshotError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".stratos-snapshot-")
        .tempdir_in(parent)
        .map_err(io(format!("creating a directory in {}", parent.display())))?;
    set_private(staging.path())?;
    Ok(staging)
}

/// The output may be new, or a previous snapshot (only its own files); nothing else is replaced.
pub(super) fn check_out(out: &Path) -> Result<(), SnapshotError> {
    let refuse = |why: String| SnapshotError::Invalid {
        dir: out.to_owned(),
        why,
    };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("looking at {}", out.display()))(e)),
        Ok(m) if !m.is_dir() => {
            return Err(refuse(
                "refusing to replace it: it is not a directory (a symlink is not followed); choose another --out".into(),
            ))
        }
        Ok(_) => {}
    }
    let entries = match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("reading {}", out.display()))(e)),
        Ok(r) => r,
    };
    let ours = [SNAPSHOT_FILE, SIGNATURE_FILE, MEMORY_FILE, STATE_FILE];
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(io(format!("reading {}", out.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !ours.contains(&name.as_str()) {
            // Quoted and escaped as Debug does: a hostile name cannot forge a line.
            return Err(refuse(format!(
                "refusing to replace it: {name:?} is not a file of a snapshot; choose another --out"
            )));
        }
        names.push(name);
    }
    if !names.is_empty() && !names.iter().any(|n| n == SNAPSHOT_FILE) {
        return Err(refuse(
            "refusing to replace it: it holds no snapshot.json; choose another --out".into(),
        ));
    }
    Ok(())
}

/// Puts the staged snapshot in place of `out` (removing a previous snapshot's own files).
pub(super) fn replace(staging: tempfile::TempDir, out: &Path) -> Result<(), SnapshotError> {
    let parent = staging.path().parent().unwrap_or(Path::new(".")).to_owned();
    // The previous snapshot moves aside first, so `out` is always a whole snapshot (the old one
    // or the new one); its own files are then removed.
    let old = if out.exists() {
        let aside = tempfile::Builder::new()
            .prefix(".stratos-snapshot-old-")
            .tempdir_in(&parent)
            .map_err(io(format!("creating a directory in {}", parent.display())))?;
        let to = aside.path().join("snap");
        std::fs::rename(out, &to).map_err(io(format!("moving {} aside", out.display())))?;
        Some((aside, to))
    } else {
        None
    };
    let kept = staging.keep();
    std::fs::rename(&kept, out).map_err(io(format!("moving the snapshot to {}", out.display())))?;
    crate::fsio::sync_dir(&parent).map_err(io(format!("flushing {}", parent.display())))?;
    if let Some((aside, to)) = old {
        for n in [SNAPSHOT_FILE, SIGNATURE_FILE, MEMORY_FILE, STATE_FILE] {
            match std::fs::remove_file(to.join(n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(format!("removing the previous {n}"))(e))
                }
                _ => {}
            }
        }
        std::fs::remove_dir(&to).map_err(io("removing the previous snapshot's directory"))?;
        drop(aside);
    }
    Ok(())
}

fn set_private(p: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("protecting {}", p.display())))
}

pub(super) fn create_private(p: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map(drop)
        .map_err(io(format!("creating {}", p.display())))
}

pub(super) fn write_private(p: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(io(format!("creating {}", p.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_new_or_a_previous_snapshot_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("snap");
        check_out(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_out(&out).unwrap();
        // A previous snapshot (its own files only) may be replaced.
        for n in [SNAPSHOT_FILE, MEMORY_FILE, STATE_FILE] {
            std::fs::write(out.join(n), b"x").unwrap();
        }
        check_out(&out).unwrap();
        // Anything else is someone's data.
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = check_out(&out).unwrap_err().to_string();
        assert!(
            e.contains("\"notes.txt\" is not a file of a snapshot"),
            "{e}"
        );
        std::fs::remove_file(out.join("notes.txt")).unwrap();
        std::fs::remove_file(out.join(SNAPSHOT_FILE)).unwrap();
        let e = check_out(&out).unwrap_err().to_string();
        assert!(e.contains("holds no snapshot.json"), "{e}");
        // A symlink is not followed, whatever it points at.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let e = check_out(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert!(check_out(&d.path().join("file")).is_err());
    }

    #[test]
    fn replacing_keeps_a_whole_snapshot_in_place() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("snap");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(SNAPSHOT_FILE), b"old").unwrap();
        std::fs::write(out.join(MEMORY_FILE), b"old").unwrap();
        let staging = stage(&out).unwrap();
        std::fs::write(staging.path().join(SNAPSHOT_FILE), b"new").unwrap();
        replace(staging, &out).unwrap();
        assert_eq!(std::fs::read(out.join(SNAPSHOT_FILE)).unwrap(), b"new");
        assert!(!out.join(MEMORY_FILE).exists());
        // Nothing left behind: only the snapshot directory.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["snap"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
