//! Where `update apply` puts its health report. The destination is made ready before the first
//! boot ([`ReportOut::prepare`]): a missing parent directory is created, and the directory must
//! take a new file. A report that still cannot be written there once the image went into
//! service (or was rejected) is kept in the state directory, `reports/<manifest sha256>.json`
//! ([`ReportOut::deliver`]): the apply's result never depends on a write that can fail after it,
//! and the signed report is never lost.

use std::path::{Path, PathBuf};

use super::state::Opened;
use crate::channel::doc::{to_bytes, ReportFile};
use crate::fsio::{parent_of, write_atomic};

/// The state directory's folder for reports that could not be written where asked.
pub const KEPT_REPORTS: &str = "reports";

/// The destination of the health report cannot take it: found before any boot.
#[derive(Debug, thiserror::Error)]
pub enum ReportOutError {
    #[error("{} is a directory: name the report's file (e.g. {}/NODE-ID.json)", .0.display(), .0.display())]
    IsDirectory(PathBuf),
    #[error("creating the directory {} for the health report: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the health report cannot be written in {}: {source}", dir.display())]
    NotWritable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A destination checked by [`ReportOut::prepare`].
#[derive(Debug, Clone)]
pub struct ReportOut {
    path: PathBuf,
}

/// Where a report went.
#[derive(Debug)]
pub enum Delivered {
    /// At the destination asked for.
    Written(PathBuf),
    /// Not there (`error` says why), but in the state directory at `kept`.
    Kept { kept: PathBuf, error: String },
    /// Neither there (`error`) nor in the state directory (`kept_error`): the caller shows it.
    Lost { error: String, kept_error: String },
}

impl ReportOut {
    /// Checks that a report can be written at `path`, creating its parent directory (and the
    /// ones above it) if missing; nothing is removed. Returns a note when a directory was
    /// created.
    pub fn prepare(path: &Path) -> Result<(ReportOut, Option<String>), ReportOutError> {
        if path.is_dir() {
            return Err(ReportOutError::IsDirectory(path.to_owned()));
        }
        let dir = parent_of(path);
        let mut note = None;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| ReportOutError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
            note = Some(format!("created {} for the health report", dir.display()));
        }
        // The report is written as a temporary file renamed into place: the directory must
        // take a new file. This probe is ours and removed when dropped.
        tempfile::Builder::new()
            .prefix(".stratos-tmp-")
            .tempfile_in(dir)
            .map_err(|source| ReportOutError::NotWritable {
                dir: dir.to_owned(),
                source,
            })?;
        Ok((
            ReportOut {
                path: path.to_owned(),
            },
            note,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `file` at the destination (temp, fsync, rename); if that fails, into the state
    /// directory `o` as `reports/<manifest sha256>.json`.
    pub fn deliver(&self, o: &Opened, file: &ReportFile) -> Delivered {
        let bytes = to_bytes(file);
        let error = match write_atomic(&self.path, &bytes, 0o644) {
            Ok(()) => return Delivered::Written(self.path.clone()),
            Err(e) => format!("writing {}: {e}", self.path.display()),
        };
        let name = format!("{KEPT_REPORTS}/{}.json", file.report.manifest_sha256);
        match o.write(&name, &bytes) {
            Ok(()) => Delivered::Kept {
                kept: o.dir.join(name),
                error,
            },
            Err(e) => Delivered::Lost {
                error,
                kept_error: e.to_string(),
            },
        }
    }
}

/// The reports kept in the state directory `state` (see [`ReportOut::deliver`]), sorted; none
/// when there is no such folder. Listing is best effort: a folder that cannot be read is said
/// so by the caller's next write, and never stops a command.
pub fn kept_reports(state: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(state.join(KEPT_REPORTS)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(crate::digest::Sha256::is_valid)
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_parent_is_created_and_an_unwritable_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reports/deep/node-17.json");
        let (out, note) = ReportOut::prepare(&p).unwrap();
        assert_eq!(out.path(), p);
        assert!(p.parent().unwrap().is_dir());
        assert!(note.unwrap().contains("reports/deep for the health report"));
        // The probe left nothing behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 0);
        // Ready already: no note.
        assert!(ReportOut::prepare(&p).unwrap().1.is_none());
        let e = ReportOut::prepare(p.parent().unwrap()).unwrap_err();
        assert!(matches!(e, ReportOutError::IsDirectory(_)), "{e}");
        // Under a file: the directory cannot be created.
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let e = ReportOut::prepare(&d.path().join("file/r.json")).unwrap_err();
        assert!(matches!(e, ReportOutError::CreateDir { .. }), "{e}");
        assert!(e.to_string().contains("file for the health report"), "{e}");
    }

    #[test]
    fn a_report_that_cannot_be_written_where_asked_is_kept_in_the_state() {
        use crate::channel::doc::{Report, ReportSummary, REPORT_SCHEMA};
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let o = super::super::state::open(&state).unwrap();
        let file = ReportFile::new(
            Report {
                schema: REPORT_SCHEMA.into(),
                node_id: "node-17".into(),
                channel: "canary".parse().unwrap(),
                channel_version: 2,
                image: "hello".into(),
                version: "1.0.0".into(),
                manifest_sha256: crate::digest::Sha256::of(b"m"),
                passed: true,
                reason: "ok".into(),
                boot_test: ReportSummary::default(),
                at: 1,
                seq: Some(1),
            },
            None,
        );
        let dest = d.path().join("out/node-17.json");
        let (out, _) = ReportOut::prepare(&dest).unwrap();
        match out.deliver(&o, &file) {
            Delivered::Written(p) => assert_eq!(p, dest),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&dest).unwrap(), to_bytes(&file));
        // The destination's directory went away after the check (the boot takes minutes).
        std::fs::remove_dir_all(d.path().join("out")).unwrap();
        let kept = match out.deliver(&o, &file) {
            Delivered::Kept { kept, error } => {
                assert!(error.contains("out/node-17.json"), "{error}");
                kept
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kept,
            state.join(format!("reports/{}.json", file.report.manifest_sha256))
        );
        assert_eq!(std::fs::read(&kept).unwrap(), to_bytes(&file));
        assert!(
            !d.path().join("out").exists(),
            "nothing recreated behind the user's back"
        );
    }
}
