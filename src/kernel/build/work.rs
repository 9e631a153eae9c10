//! A kernel build's work directory (`kernels/work/<key>/`), kept when a build is interrupted so
//! that the next run with the same key resumes it: `make` is incremental, and only what it had
//! not finished is built again.
//!
//! Why a resumed build never takes a half-written file as finished:
//! - The directory is only resumed if its marker ([`MARKER`]) names the same key (the key
//!   covers the source, the config, the toolchain and the recipe; another key is another
//!   directory) and the same boot of the machine: the marker is written after the complete
//!   `.config`, and a restart since (a crash, a power cut) may have lost writes that had not
//!   reached the disk, so the build starts over.
//! - `make` deletes the target it is updating when it gets SIGINT, SIGTERM or SIGHUP (GNU
//!   make manual, "Interrupts"); kbuild (6.1, `scripts/Kbuild.include`) also deletes it in
//!   each recipe's own signal traps (`delete-on-interrupt`: HUP INT QUIT TERM PIPE, which
//!   covers a `make` that died of SIGPIPE because the process reading its output was
//!   killed), declares `.DELETE_ON_ERROR`, and gcc removes its `-o` file when it fails.
//! - Kbuild records every target it finished in `.<target>.cmd`, written after the target;
//!   a target without a record is rebuilt (`cmd-check`). For what nothing had a chance to
//!   clean (every process of the build killed with SIGKILL), [`sweep`] deletes each file
//!   newer than its record, with the record, before `make` runs again.
//! - Nothing writes into the directory while another build uses it: the build's lock is
//!   inherited by `make` as its standard input ([`super::cache::Lock::for_child`]), so it is
//!   held until `make` and every compiler it started have exited, even when StratOS itself
//!   was killed.
//! - A `make` that fails (exits with an error) leaves a directory that is not resumed: the
//!   next run starts over.

use std::path::{Path, PathBuf};

use super::cache::{clear_scratch, Lock};
use super::error::{io, KernelBuildError};
use crate::progress::Progress;

/// The file recording whose build a work directory holds, written once its `.config` is.
pub(super) const MARKER: &str = ".stratos-work";

/// The first line of [`MARKER`].
const MAGIC: &str = "stratos kernel work directory 1";

/// A work directory ready for `make`, and the lock that keeps other builds out of it.
pub(super) struct Work<'a> {
    pub dir: PathBuf,
    /// Whether an interrupted build's work is being continued.
    pub resumed: bool,
    pub lock: &'a Lock,
}

impl Work<'_> {
    /// The build log: continued after a resumed build's earlier part, else new.
    pub fn log(&self, path: &Path) -> Result<std::fs::File, KernelBuildError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.resumed)
            .truncate(!self.resumed)
            .open(path)
            .map_err(io(format!("creating {}", path.display())))?;
        if self.resumed {
            writeln!(f, "# stratos: resuming the interrupted build here")
                .map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(f)
    }
}

/// This boot of the machine (`/proc/sys/kernel/random/boot_id`), if it can be told.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn marker_text(key: &str, boot: &str) -> String {
    format!("{MAGIC}\nkey {key}\nboot {boot}\n")
}

/// Why the directory at `dir` cannot be resumed for `key` in this boot (`None`: it can).
fn not_resumable(dir: &Path, key: &str, boot: Option<&str>) -> Option<String> {
    let text = match std::fs::read_to_string(dir.join(MARKER)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("it has no record of a complete start (or its last make failed)".into())
        }
        Err(e) => return Some(format!("its {MARKER} cannot be read ({e})")),
    };
    let mut lines = text.lines();
    let (magic, was_key, was_boot) = (lines.next(), lines.next(), lines.next());
    if magic != Some(MAGIC) {
        return Some(format!("its {MARKER} is not one this version writes"));
    }
    if was_key.and_then(|l| l.strip_prefix("key ")) != Some(key) {
        return Some("it was started for another config".into());
    }
    match (boot, was_boot.and_then(|l| l.strip_prefix("boot "))) {
        (Some(now), Some(then)) if now == then => None,
        _ => Some(
            "the machine has restarted since (files being written then may not have reached the disk)"
                .into(),
        ),
    }
}

/// Makes `dir` ready to build `key`: resumes the interrupted build there if it can (after
/// [`sweep`]), else starts over in an empty directory holding `config_text` as `.config`.
/// Called with the build's lock held.
pub(super) fn prepare<'a>(
    dir: &Path,
    key: &str,
    config_text: &str,
    lock: &'a Lock,
    progress: &Progress,
) -> Result<Work<'a>, KernelBuildError> {
    let boot = boot_id();
    let work = |resumed| Work {
        dir: dir.to_owned(),
        resumed,
        lock,
    };
    if dir.exists() {
        match not_resumable(dir, key, boot.as_deref()) {
            None => {
                let removed = sweep(dir)?;
                progress.info(format!(
                    "resuming the interrupted kernel build in {} ({} unfinished file(s) removed; make rebuilds them)",
                    dir.display(),
                    removed.len()
                ));
                return Ok(work(true));
            }
            Some(why) => progress.info(format!(
                "starting the kernel build over in {}: {why}",
                dir.display()
            )),
        }
    }
    clear_scratch(dir)?;
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(dir.join(".config"), config_text).map_err(io("writing .config"))?;
    let marker = marker_text(key, boot.as_deref().unwrap_or("-"));
    crate::fsio::write_atomic(&dir.join(MARKER), marker.as_bytes(), 0o644)
        .map_err(io(format!("writing {}", dir.join(MARKER).display())))?;
    Ok(work(false))
}

/// Marks `dir` as not to be resumed (its `make` failed: the next run starts over).
pub(super) fn forget(dir: &Path) -> Result<(), KernelBuildError> {
    match std::fs::remove_file(dir.join(MARKER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", dir.join(MARKER).display()))(e))
        }
        _ => Ok(()),
    }
}

/// Deletes every file kbuild had started to rewrite and not recorded as finished: a file newer
/// than its `.<name>.cmd` record (written after the file), with the record, so `make` builds
/// it again. Returns the files deleted.
pub(super) fn sweep(dir: &Path) -> Result<Vec<PathBuf>, KernelBuildError> {
    let mut removed = Vec::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.map_err(|e| KernelBuildError::Io {
            what: format!("listing {}", dir.display()),
            source: e.into(),
        })?;
        let name = e.file_name().to_string_lossy();
        let Some(target) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".cmd"))
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        if !e.file_type().is_file() {
            continue;
        }
        let record = e.path();
        let target = record.with_file_name(target);
        // Only regular files: a record beside a directory or a link is not one of kbuild's.
        let mtime = |p: &Path| {
            std::fs::symlink_metadata(p)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .and_then(|m| m.modified().ok())
        };
        let (Some(t), Some(r)) = (mtime(&target), mtime(record)) else {
            continue;
        };
        if t > r {
            for p in [&target, record] {
                std::fs::remove_file(p).map_err(io(format!("removing {}", p.display())))?;
            }
            removed.push(target);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn set_mtime(p: &Path, secs: u64) {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn only_a_marked_directory_of_the_same_key_and_boot_is_resumed() {
        let d = tempfile::tempdir().unwrap();
        let kernels = super::super::cache::KernelCache::new(&Cache::new(d.path()));
        let progress = Progress::new(true);
        let lock = kernels.lock("build-k1", &progress).unwrap();
        let dir = d.path().join("work/k1");
        // A first start: .config and the marker.
        let w = prepare(&dir, "k1", "CONFIG_A=y\n", &lock, &progress).unwrap();
        assert!(!w.resumed);
        assert_eq!(
            std::fs::read_to_string(dir.join(".config")).unwrap(),
            "CONFIG_A=y\n"
        );
        // Interrupted with objects built: the next start keeps them.
        std::fs::write(dir.join("a.o"), b"object").unwrap();
        assert!(
            prepare(&dir, "k1", "CONFIG_A=y\n", &lock, &progress)
                .unwrap()
                .resumed
        );
        assert!(dir.join("a.o").is_file());
        // The marker of another key, of another boot, or none: started over.
        let marker = std::fs::read_to_string(dir.join(MARKER)).unwrap();
        let boot = boot_id().unwrap();
        for bad in [
            marker.replace("key k1", "key k2"),
            marker.replace(
                &format!("boot {boot}"),
                "boot 00000000-0000-0000-0000-000000000000",
            ),
            marker.replace(MAGIC, "something else"),
        ] {
            std::fs::write(dir.join("a.o"), b"object").unwrap();
            std::fs::write(dir.join(MARKER), bad).unwrap();
            let w = prepare(&dir, "k1", "CONFIG_A=y\n", &lock, &progress).unwrap();
            assert!(!w.resumed);
            assert!(!dir.join("a.o").exists());
            assert_eq!(std::fs::read_to_string(dir.join(MARKER)).unwrap(), marker);
        }
        // A failed make: started over.
        std::fs::write(dir.join("a.o"), b"object").unwrap();
        forget(&dir).unwrap();
        assert!(
            !prepare(&dir, "k1", "CONFIG_A=y\n", &lock, &progress)
                .unwrap()
                .resumed
        );
        assert!(!dir.join("a.o").exists());
    }

    #[test]
    fn files_newer_than_their_kbuild_record_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("kernel");
        std::fs::create_dir(&sub).unwrap();
        let file = |name: &str, secs: u64| {
            let p = sub.join(name);
            std::fs::write(&p, name).unwrap();
            set_mtime(&p, secs);
            p
        };
        // Finished: the record was written after the object.
        let done = file("done.o", 100);
        let done_cmd = file(".done.o.cmd", 101);
        // Rewritten after its record (killed while the compiler wrote it).
        let half = file("half.o", 300);
        let half_cmd = file(".half.o.cmd", 200);
        // Never recorded: kbuild rebuilds it by itself.
        let new = file("new.o", 400);
        // A record of nothing, and a record beside a directory.
        let orphan_cmd = file(".gone.o.cmd", 10);
        std::fs::create_dir(sub.join("dir")).unwrap();
        let dir_cmd = file(".dir.cmd", 1);
        let removed = sweep(d.path()).unwrap();
        assert_eq!(removed, std::slice::from_ref(&half));
        assert!(!half.exists() && !half_cmd.exists());
        for kept in [
            &done,
            &done_cmd,
            &new,
            &orphan_cmd,
            &dir_cmd,
            &sub.join("dir"),
        ] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }
}
