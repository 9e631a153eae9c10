//! The state directory as files: reading and writing them (regular files only, atomic writes),
//! the exclusive lock a run holds, and removing what an interrupted run left behind.

use std::path::Path;

use crate::channel::error::{ChannelError, StateError};
use crate::fsio::{self, caps, write_atomic, Links};

/// A temporary directory a download is assembled in: `.staging-` and [`RAND_LEN`] letters
/// or digits (what `tempfile` makes of this prefix). A leftover one is removed at the next run.
pub(super) const STAGING_PREFIX: &str = ".staging-";
/// The directory an image is assembled in: `.partial-` and its manifest's sha256. Kept when a
/// fetch fails or is killed (the next fetch of that image resumes from it), removed by the
/// next fetch of another image.
pub(super) const PARTIAL_PREFIX: &str = ".partial-";
/// The temporary file [`write_atomic`] writes before its rename.
const TMP_FILE_PREFIX: &str = ".stratos-tmp-";
pub(super) const RAND_LEN: usize = 6;

/// A state file: regular (never a link, FIFO or device), at most [`caps::METADATA`] bytes;
/// `None` if absent.
pub(super) fn read_opt(p: &Path) -> Result<Option<Vec<u8>>, ChannelError> {
    match fsio::read_regular(p, caps::METADATA, "a node state file", Links::Refuse) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ChannelError::Read(e)),
    }
}

pub(super) fn write(p: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)
            .map_err(ChannelError::io(format!("creating {}", d.display())))?;
    }
    write_atomic(p, bytes, 0o644).map_err(ChannelError::io(format!("writing {}", p.display())))
}

/// Flushes a directory's entries (after a rename into it).
pub(super) fn sync_dir(d: &Path) -> Result<(), ChannelError> {
    std::fs::File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(ChannelError::io(format!("syncing {}", d.display())))
}

pub(super) fn no_trusted_root(state: &Path) -> ChannelError {
    StateError::NoTrustedRoot {
        state: state.to_owned(),
    }
    .into()
}

/// An exclusive lock on the state directory (`flock` on the directory itself, so no lock file
/// changes the state), held while a run reads and writes it. Released on drop.
pub struct StateLock {
    _dir: std::fs::File,
}

/// How long a run waits for another one holding the state lock before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn lock_state(state: &Path) -> Result<StateLock, ChannelError> {
    use rustix::fs::{flock, FlockOperation};
    let dir = match std::fs::File::open(state) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_trusted_root(state)),
        Err(e) => return Err(ChannelError::io(format!("opening {}", state.display()))(e)),
    };
    let start = std::time::Instant::now();
    loop {
        match flock(&dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(StateLock { _dir: dir }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(ChannelError::io(format!(
                    "locking {} (another `stratos update` has been using it for over {}s; try again when it has finished)",
                    state.display(),
                    LOCK_WAIT.as_secs()
                ))(e.into()))
            }
            Err(e) => return Err(ChannelError::io(format!("locking {}", state.display()))(e.into())),
        }
    }
}

/// Whether `name` is `prefix` followed by exactly [`RAND_LEN`] ASCII letters or digits: a
/// temporary name StratOS made, and nothing a user would name a file.
fn is_ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|r| r.len() == RAND_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Removes what an interrupted run left behind, with the state locked: `.staging-XXXXXX`
/// directories at the top of the state directory (partial downloads) and `.stratos-tmp-XXXXXX`
/// files where the node writes metadata or keeps reports (partial writes). Only those names, only real
/// directories and files: a symlink is neither followed nor removed, anything else stays.
/// Returns a note per removal.
pub(super) fn clean_leftovers(state: &Path) -> Result<Vec<String>, ChannelError> {
    let mut notes = Vec::new();
    let places = [
        (state.to_owned(), true),
        (state.join("trusted"), false),
        (state.join("trusted/channels"), false),
        (state.join(super::report_out::KEPT_REPORTS), false),
    ];
    for (dir, staging_too) in places {
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ChannelError::io(format!("listing {}", dir.display()))(e)),
        };
        for e in entries {
            let e = e.map_err(ChannelError::io(format!("listing {}", dir.display())))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue; // not UTF-8: not a name we make
            };
            let path = e.path();
            // DirEntry::file_type does not follow symlinks.
            let ft = e
                .file_type()
                .map_err(ChannelError::io(format!("inspecting {}", path.display())))?;
            if staging_too && ft.is_dir() && is_ours(&name, STAGING_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(ChannelError::io(format!(
                    "removing the leftover {}",
                    path.display()
                )))?;
                notes.push(format!(
                    "removed {}, left by an interrupted update",
                    path.display()
                ));
            } else if ft.is_file() && is_ours(&name, TMP_FILE_PREFIX) {
                std::fs::remove_file(&path).map_err(ChannelError::io(format!(
                    "removing the leftover {}",
                    path.display()
                )))?;
                notes.push(format!(
                    "removed {}, left by an interrupted write",
                    path.display()
                ));
            }
        }
    }
    Ok(notes)
}
