//! Writing the image directory: everything goes to a staging directory next to the target,
//! which then replaces the target in one rename. A failed build leaves nothing behind.
//!
//! The target is replaced only when it is absent, empty, or a previous image: a directory
//! holding a `manifest.json` that parses as a StratOS manifest, and nothing but the files that
//! manifest says StratOS wrote there (its artifacts, `manifest.json`, `manifest.sig`), each a
//! regular file. Of the old image, only those files are removed; anything else stops the build
//! before it starts, naming the file.

use std::path::{Path, PathBuf};

use crate::sign::manifest::{Manifest, MANIFEST_FILE, SIGNATURE_FILE};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write the image to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to replace {path}: {why}; choose another --out, or move it away yourself")]
    NotAnImage { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What is at the output path now.
#[derive(Debug, PartialEq, Eq)]
enum Previous {
    Nothing,
    EmptyDir,
    /// A previous image: exactly these file names (all written by StratOS).
    Image(Vec<String>),
}

/// Decides whether `dir` may be replaced, reading only what StratOS itself writes.
fn previous(dir: &Path) -> Result<Previous, OutputError> {
    let refuse = |why: String| OutputError::NotAnImage {
        path: dir.to_owned(),
        why,
    };
    let names = match crate::fsio::existing(dir).map_err(io(dir))? {
        crate::fsio::Existing::Nothing => return Ok(Previous::Nothing),
        crate::fsio::Existing::NotADir(kind) => {
            return Err(refuse(format!("it is {kind}, not a directory")))
        }
        crate::fsio::Existing::Dir(names) => names,
    };
    if names.is_empty() {
        return Ok(Previous::EmptyDir);
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = crate::fsio::read_regular(
        &manifest_path,
        crate::fsio::caps::MANIFEST,
        "a manifest",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| {
        if e.is_not_found() {
            refuse(format!(
                "it is not empty and holds no {MANIFEST_FILE} (it holds {})",
                crate::rootfs::quote(&names[0].0)
            ))
        } else {
            refuse(format!("{MANIFEST_FILE}: {e}"))
        }
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        refuse(format!(
            "its {MANIFEST_FILE} is not a StratOS image manifest ({e})"
        ))
    })?;
    if manifest.builder.name != "stratos" {
        return Err(refuse(format!(
            "its {MANIFEST_FILE} was written by {:?}, not stratos",
            manifest.builder.name
        )));
    }
    let ours: std::collections::BTreeSet<&str> = manifest
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .chain([MANIFEST_FILE, SIGNATURE_FILE])
        .collect();
    for (name, ft) in &names {
        if !ours.contains(name.as_str()) {
            return Err(refuse(format!(
                "{} is not a file of the image it holds (its manifest does not name it)",
                crate::rootfs::quote(name)
            )));
        }
        if !ft.is_file() {
            return Err(refuse(format!(
                "{} is {}; an image holds regular files only",
                crate::rootfs::quote(name),
                crate::fsio::kind_name(*ft)
            )));
        }
    }
    Ok(Previous::Image(names.into_iter().map(|(n, _)| n).collect()))
}

/// An output directory being prepared: checked and staged before the build does any work, so a
/// path that cannot be replaced or written fails at once. Dropping it removes the staging
/// directory (which holds only what we wrote).
pub struct OutputDir {
    out: PathBuf,
    staging: crate::fsio::Staging,
}

impl OutputDir {
    /// Checks that `out` may be replaced and creates the staging directory next to it.
    pub fn prepare(out: &Path) -> Result<OutputDir, OutputError> {
        previous(out)?;
        remove_leftovers(out)?;
        let staging = crate::fsio::staging_dir(out, STAGING_PREFIX)
            .map_err(io(crate::fsio::parent_of(out)))?;
        Ok(OutputDir {
            out: out.to_owned(),
            staging,
        })
    }

    pub fn path(&self) -> &Path {
        &self.out
    }

    /// Writes `files` (name, bytes) and puts the directory in place of the target; of a
    /// previous image there, removes only the files it consisted of.
    pub fn commit(self, files: &[(&str, Vec<u8>)]) -> Result<(), OutputError> {
        use std::io::Write;
        let OutputDir { out, staging } = self;
        for (name, bytes) in files {
            let path = staging.path().join(name);
            let mut f = std::fs::File::create(&path).map_err(io(&path))?;
            f.write_all(bytes).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
        }
        set_mode(staging.path(), 0o755)?;
        // Checked again: the target may have changed while the image was built.
        let old_names = match previous(&out)? {
            Previous::Image(names) => names,
            Previous::Nothing | Previous::EmptyDir => Vec::new(),
        };
        let old_dir = crate::fsio::publish_dir(staging, &out).map_err(|e| OutputError::Io {
            path: e.path,
            source: e.source,
        })?;
        if let Some(old_dir) = old_dir {
            remove_ours(&old_dir, old_names.iter().map(String::as_str));
        }
        Ok(())
    }
}

/// Removes the staging directories interrupted builds left next to `out` (only those StratOS
/// made and no running build holds: see [`crate::fsio::remove_stale_staging`]).
fn remove_leftovers(out: &Path) -> Result<(), OutputError> {
    crate::fsio::remove_stale_staging_near(out, STAGING_PREFIX, "build")
        .map_err(io(crate::fsio::parent_of(out)))
}

/// The name of an image's staging directory starts with this.
const STAGING_PREFIX: &str = ".stratos-staging-";

/// Removes the named files from `dir`, then `dir` if that left it empty. Something else in it
/// (a file that appeared meanwhile) stays, with a warning: it is not ours to delete.
fn remove_ours<'a>(dir: &Path, names: impl Iterator<Item = &'a str>) {
    for n in names {
        let p = dir.join(n);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: cannot remove {}: {e}", p.display());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!(
            "warning: left {} in place ({e}): it holds files StratOS did not write",
            dir.display()
        );
    }
}

/// Writes `files` (name, bytes) as the directory `out`, replacing a previous image there.
pub fn write_image_dir(out: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), OutputError> {
    OutputDir::prepare(out)?.commit(files)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(artifacts: &[&str]) -> Vec<u8> {
        let digest = "0".repeat(64);
        let arts: Vec<_> = artifacts
            .iter()
            .map(|n| serde_json::json!({"name": n, "size": 1, "sha256": digest}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "format": 1,
            "image": {"name": "x", "version": "1"},
            "builder": {"name": "stratos", "version": "0"},
            "source_date_epoch": 0,
            "profile": {"file": "p.toml", "sha256": digest},
            "kernel": {"artifact": "kernel", "format": "bzImage", "version": null,
                       "cmdline": "", "config_sha256": null, "origin": "prebuilt"},
            "compression": {"algorithm": "zstd", "level": 19, "library_version": "1"},
            "sbom": "sbom.cdx.json",
            "artifacts": arts,
        }))
        .unwrap()
    }

    #[test]
    fn writes_and_replaces_images_only() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/img");
        write_image_dir(
            &out,
            &[("manifest.json", manifest(&["x"])), ("x", b"1".to_vec())],
        )
        .unwrap();
        write_image_dir(
            &out,
            &[("manifest.json", manifest(&["y"])), ("y", b"2".to_vec())],
        )
        .unwrap();
        assert_eq!(std::fs::read(out.join("y")).unwrap(), b"2");
        assert!(!out.join("x").exists());
        // No staging directories are left behind.
        let names: Vec<_> = std::fs::read_dir(d.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["img"]);
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let d = tempfile::tempdir().unwrap();
        // A directory that merely holds a file named manifest.json.
        let fake = d.path().join("fake");
        std::fs::create_dir(&fake).unwrap();
        std::fs::write(fake.join("manifest.json"), b"{\"my\": \"notes\"}").unwrap();
        std::fs::write(fake.join("thesis.tex"), b"years of work").unwrap();
        let e = OutputDir::prepare(&fake).err().unwrap().to_string();
        assert!(e.contains("not a StratOS image manifest"), "{e}");
        // A real previous image with a user's file added.
        let img = d.path().join("img");
        write_image_dir(&img, &[("manifest.json", manifest(&[]))]).unwrap();
        std::fs::write(img.join("notes.txt"), b"mine").unwrap();
        let e = OutputDir::prepare(&img).err().unwrap().to_string();
        assert!(
            e.contains("\"notes.txt\" is not a file of the image"),
            "{e}"
        );
        // A symlink where an artifact should be.
        std::fs::remove_file(img.join("notes.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", img.join("manifest.sig")).unwrap();
        let e = OutputDir::prepare(&img).err().unwrap().to_string();
        assert!(e.contains("a symlink"), "{e}");
        // A regular file in place of the directory.
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(OutputDir::prepare(&file).is_err());
        assert_eq!(
            std::fs::read(fake.join("thesis.tex")).unwrap(),
            b"years of work"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }
}
