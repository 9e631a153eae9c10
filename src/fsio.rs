//! Host I/O. Reading user-named files safely: regular files only (checked on the open
//! descriptor, so a FIFO, a device such as `/dev/zero` or a directory is refused instead of
//! hanging or filling memory), and never more than a cap fit for the kind of file. The size a
//! file claims is not trusted for allocation: reads stop one byte past the cap.
//!
//! Writing so that a crash or a failure never leaves half a result: [`write_atomic`] for one
//! file, [`staging_dir`] + [`publish_dir`] for a directory, [`sync_dir`] for a rename to last.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A host path for messages: control characters (a newline, an escape sequence) in a hostile
/// file name are escaped, so printing it cannot forge a log line or drive the terminal.
pub struct Shown<'a>(pub &'a Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        escape_controls(&self.0.to_string_lossy(), f)
    }
}

/// Writes `s` with every control character escaped (`\n`, `\u{1b}`).
pub fn escape_controls(s: &str, f: &mut impl std::fmt::Write) -> std::fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_debug())?;
        } else {
            f.write_char(c)?;
        }
    }
    Ok(())
}

/// Size caps per kind of input. Generous for honest files, small enough that a hostile one
/// cannot exhaust memory.
pub mod caps {
    /// A profile (`*.toml`), a wave or policy file written by hand.
    pub const PROFILE: u64 = 1 << 20;
    /// A key file (`*.key`, `*.pub`).
    pub const KEY: u64 = 64 << 10;
    /// A detached signature file.
    pub const SIGNATURE: u64 = 1 << 20;
    /// A seccomp policy (Docker's default profile is ~20 KB).
    pub const SECCOMP_POLICY: u64 = 4 << 20;
    /// A lock file.
    pub const LOCK: u64 = 16 << 20;
    /// A manifest.
    pub const MANIFEST: u64 = 16 << 20;
    /// A kernel config fragment or `.config`.
    pub const KERNEL_CONFIG: u64 = 16 << 20;
    /// A kernel image.
    pub const KERNEL_IMAGE: u64 = 512 << 20;
    /// An SBOM.
    pub const SBOM: u64 = 512 << 20;
    /// A boot-test result or health report read back as JSON.
    pub const REPORT: u64 = 64 << 20;
    /// Channel/root metadata documents.
    pub const METADATA: u64 = 4 << 20;
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", Shown(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {kind}, not a regular file; name a regular file", Shown(path))]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is larger than the {limit}-byte limit for {what}; is it the right file?",
        Shown(path)
    )]
    TooLarge {
        path: PathBuf,
        limit: u64,
        what: &'static str,
    },
    #[error("{} is not UTF-8 text", Shown(path))]
    NotUtf8 { path: PathBuf },
}

impl ReadError {
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::NotRegular { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path } => path,
        }
    }

    /// Whether the file is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Whether the last component may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow a symlink the user named (a key file linked from elsewhere is fine).
    Follow,
    /// Refuse a symlink (artifacts of an image directory, files of a state directory).
    Refuse,
}

/// A human name for a non-regular file type.
pub fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Opens `path` for reading without blocking (a FIFO would block in `open` until a writer
/// appears) and checks on the descriptor that it is a regular file.
pub fn open_regular(path: &Path, links: Links) -> Result<(File, std::fs::Metadata), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut flags = libc_flags::O_NONBLOCK | libc_flags::O_NOCTTY;
    if links == Links::Refuse {
        flags |= libc_flags::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            // O_NOFOLLOW on a symlink fails with ELOOP: say what it is.
            if links == Links::Refuse && e.raw_os_error() == Some(libc_flags::ELOOP) {
                if let Ok(m) = std::fs::symlink_metadata(path) {
                    if m.file_type().is_symlink() {
                        return ReadError::NotRegular {
                            path: path.to_owned(),
                            kind: "a symlink",
                        };
                    }
                }
            }
            io(e)
        })?;
    let meta = f.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind: kind_name(meta.file_type()),
        });
    }
    Ok((f, meta))
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_regular(
    path: &Path,
    limit: u64,
    what: &'static str,
    links: Links,
) -> Result<Vec<u8>, ReadError> {
    let (f, meta) = open_regular(path, links)?;
    let too_large = || ReadError::TooLarge {
        path: path.to_owned(),
        limit,
        what,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    // The size is a hint only (the file may grow while we read): never more than the cap.
    let mut out = Vec::with_capacity(meta.len().min(limit) as usize);
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// [`read_regular`] for a user-named file (symlinks followed), as UTF-8 text.
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let bytes = read_regular(path, limit, what, Links::Follow)?;
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// [`read_regular`] for a user-named file (symlinks followed).
pub fn read_file(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    read_regular(path, limit, what, Links::Follow)
}

/// The sha256 and length of a regular file, streamed (no size limit, constant memory).
pub fn sha256_file(path: &Path, links: Links) -> Result<([u8; 32], u64), ReadError> {
    use sha2::{Digest, Sha256};
    let (mut f, _) = open_regular(path, links)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

/// The open(2) flags we need, from rustix's definitions.
mod libc_flags {
    use rustix::fs::OFlags;
    pub const O_NONBLOCK: i32 = OFlags::NONBLOCK.bits() as i32;
    pub const O_NOCTTY: i32 = OFlags::NOCTTY.bits() as i32;
    pub const O_NOFOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;
    pub const ELOOP: i32 = 40;
}

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so a
/// reader sees either the old file or the whole new one. `mode` sets the permission bits.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".stratos-tmp-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// fsyncs a directory, so a rename in it survives a crash.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The file inside every staging directory that says a StratOS process made it and, while it
/// holds an exclusive `flock` on it, is still filling it. Removed just before the directory is
/// published, so an image never carries it.
pub const STAGING_MARKER: &str = ".stratos-staging-owner";

/// The first line of [`STAGING_MARKER`].
const STAGING_MAGIC: &str = "stratos staging directory";

/// A staging directory being filled: removed with everything in it when dropped unpublished;
/// its [`STAGING_MARKER`] is locked for as long as this value lives (the lock goes with the
/// process, so a killed run leaves a marker nobody holds).
pub struct Staging {
    dir: tempfile::TempDir,
    /// The marker, open and locked.
    _owner: File,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The filled directory without its marker, for a caller that puts it in place its own way
    /// (still removed when dropped).
    pub fn into_unmarked(self) -> std::io::Result<tempfile::TempDir> {
        std::fs::remove_file(self.dir.path().join(STAGING_MARKER))?;
        Ok(self.dir)
    }
}

/// An empty directory next to `dest` (in the same parent, created if missing, so on the same
/// filesystem), named `<prefix><random>`, to fill and then hand to [`publish_dir`]. Dropped
/// without being published, it is removed with everything in it; left behind by a killed
/// process, [`remove_stale_staging`] recognises it by its name and its unlocked marker.
pub fn staging_dir(dest: &Path, prefix: &str) -> std::io::Result<Staging> {
    use std::io::Write;
    let parent = parent_of(dest);
    std::fs::create_dir_all(parent)?;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
    // Locked before it takes its name, so no cleaner ever sees the marker of a live run unlocked.
    let new = dir.path().join(format!("{STAGING_MARKER}.new"));
    let mut owner = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)?;
    rustix::fs::flock(&owner, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    writeln!(owner, "{STAGING_MAGIC}\npid {}", std::process::id())?;
    std::fs::rename(&new, dir.path().join(STAGING_MARKER))?;
    Ok(Staging { dir, _owner: owner })
}

/// What [`remove_stale_staging`] did.
#[derive(Debug, Default)]
pub struct StaleStaging {
    /// Leftovers removed.
    pub removed: Vec<PathBuf>,
    /// Leftovers of ours that could not be removed, and why (for a warning).
    pub failed: Vec<(PathBuf, std::io::Error)>,
}

/// What is at a path StratOS is asked to replace (an output directory).
pub enum Existing {
    Nothing,
    /// Something other than a directory: what it is (`a symlink`, `a regular file`).
    NotADir(String),
    /// A directory: its entries' names and types (links not followed), sorted by name.
    Dir(Vec<(String, std::fs::FileType)>),
}

/// Looks at `path` without following a link, to decide whether it may be replaced.
pub fn existing(path: &Path) -> std::io::Result<Existing> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        r => r?,
    };
    if !meta.is_dir() {
        return Ok(Existing::NotADir(kind_name(meta.file_type()).to_owned()));
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(path)? {
        let e = e?;
        names.push((e.file_name().to_string_lossy().into_owned(), e.file_type()?));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Existing::Dir(names))
}

/// [`remove_stale_staging`] next to `out`, saying on stderr what it removed and what it could
/// not, each as left by an interrupted `doing` ("build", "export").
pub fn remove_stale_staging_near(out: &Path, prefix: &str, doing: &str) -> std::io::Result<()> {
    let r = remove_stale_staging(parent_of(out), prefix)?;
    for p in &r.removed {
        eprintln!(
            "stratos: removed {}, left by an interrupted {doing}",
            Shown(p)
        );
    }
    for (p, e) in &r.failed {
        eprintln!(
            "warning: cannot remove {}, left by an interrupted {doing}: {e}",
            Shown(p)
        );
    }
    Ok(())
}

/// Removes, in `parent`, the staging directories a StratOS process left behind: named
/// `<prefix>…`, a directory (not a link), holding a [`STAGING_MARKER`] that is a regular file
/// starting with our first line, which no live process holds locked. Anything else — another
/// name, no marker, a marker that is not ours, a marker a running build holds — is left alone.
pub fn remove_stale_staging(parent: &Path, prefix: &str) -> std::io::Result<StaleStaging> {
    let mut out = StaleStaging::default();
    let entries = match std::fs::read_dir(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        r => r?,
    };
    for e in entries {
        let e = e?;
        if !e.file_name().to_string_lossy().starts_with(prefix) || !e.file_type()?.is_dir() {
            continue;
        }
        let dir = e.path();
        // Held while the directory is removed: a second cleaner finds it locked and skips it.
        let Some(_held) = dead_marker(&dir) else {
            continue;
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => out.removed.push(dir),
            Err(e) => out.failed.push((dir, e)),
        }
    }
    Ok(out)
}

/// The marker of a staging directory of ours whose owner is gone, locked by us; `None` if the
/// directory is not recognisably ours or its owner still holds it.
fn dead_marker(dir: &Path) -> Option<File> {
    let path = dir.join(STAGING_MARKER);
    let (mut f, _) = open_regular(&path, Links::Refuse).ok()?;
    let mut head = [0u8; STAGING_MAGIC.len() + 1];
    f.read_exact(&mut head).ok()?;
    if head[..STAGING_MAGIC.len()] != *STAGING_MAGIC.as_bytes()
        || head[STAGING_MAGIC.len()] != b'\n'
    {
        return None;
    }
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(f)
}

/// A step of [`publish_dir`] that failed, and on what.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", Shown(path))]
pub struct PublishError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Puts the filled directory `staged` in place of `dest` in one rename, so `dest` is at every
/// moment absent, the whole previous directory or the whole new one:
/// 1. its [`STAGING_MARKER`] is removed and the directory flushed (its files are the caller's
///    to flush);
/// 2. it is renamed to `dest` without replacing anything; if `dest` exists (a directory), the
///    two are exchanged atomically instead (`RENAME_EXCHANGE`);
/// 3. `dest`'s parent is flushed, so the rename survives a crash.
///
/// On an error before the rename, the staged directory is removed and `dest` is untouched.
/// Returns where the previous `dest` now is (the staged directory's path), for the caller to
/// remove what of it is its own; `None` when there was none. (A failure of step 3 leaves it
/// there, under the staging name.)
pub fn publish_dir(staged: Staging, dest: &Path) -> Result<Option<PathBuf>, PublishError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let fail = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| PublishError { what, path, source }
    };
    // The marker is ours, not the image's. (Killed between this and the rename, the directory
    // is left without it, so it is never removed as a leftover: kept rather than guessed at.)
    let marker = staged.path().join(STAGING_MARKER);
    std::fs::remove_file(&marker).map_err(fail("removing", &marker))?;
    let Staging { dir: staged, .. } = staged;
    sync_dir(staged.path()).map_err(fail("flushing", staged.path()))?;
    let replaced = match renameat_with(CWD, staged.path(), CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => false,
        Err(Errno::EXIST | Errno::NOTEMPTY) => {
            renameat_with(CWD, staged.path(), CWD, dest, RenameFlags::EXCHANGE)
                .map_err(|e| fail("replacing", dest)(e.into()))?;
            true
        }
        // A filesystem without renameat2's flags.
        Err(Errno::INVAL) => {
            std::fs::rename(staged.path(), dest).map_err(fail("moving into place", dest))?;
            false
        }
        Err(e) => return Err(fail("moving into place", dest)(e.into())),
    };
    let at = staged.keep();
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(fail("flushing", parent))?;
    }
    Ok(replaced.then_some(at))
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_devices_directories_and_oversize() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Returns at once (no writer needed) and names the kind.
        let e = read_file(&fifo, 10, "a test file").unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let e = read_file(Path::new("/dev/zero"), 10, "a test file").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_file(d.path(), 10, "a test file").unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let big = d.path().join("big");
        std::fs::write(&big, [0u8; 11]).unwrap();
        let e = read_file(&big, 10, "a test file").unwrap_err();
        assert!(
            e.to_string().contains("10-byte limit for a test file"),
            "{e}"
        );
        assert_eq!(read_file(&big, 11, "x").unwrap().len(), 11);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert_eq!(read_file(&link, 11, "x").unwrap().len(), 11);
        let e = read_regular(&link, 11, "x", Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        let (digest, n) = sha256_file(&big, Links::Refuse).unwrap();
        assert_eq!(n, 11);
        assert_eq!(hex::encode(digest), crate::sign::sha256_hex(&[0u8; 11]));
    }

    #[test]
    fn only_dead_staging_directories_of_ours_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        // A killed run's: marker, nobody holds it.
        let dead = staging_dir(&dest, ".s-").unwrap();
        std::fs::write(dead.path().join("kernel"), b"half").unwrap();
        let dead_path = dead.path().to_owned();
        let Staging { dir, _owner } = dead;
        let _kept = dir.keep();
        drop(_owner);
        // A live run's: marker held.
        let live = staging_dir(&dest, ".s-").unwrap();
        // The same name without a marker, with a marker that is not ours, a link to one of
        // ours, another name with our marker.
        let plain = d.path().join(".s-plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("notes"), b"mine").unwrap();
        let foreign = d.path().join(".s-foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join(STAGING_MARKER), b"something else\n").unwrap();
        let link = d.path().join(".s-link");
        std::os::unix::fs::symlink(&dead_path, &link).unwrap();
        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(
            other.join(STAGING_MARKER),
            format!("{STAGING_MAGIC}\npid 1\n"),
        )
        .unwrap();

        let r = remove_stale_staging(d.path(), ".s-").unwrap();
        assert_eq!(r.removed, std::slice::from_ref(&dead_path));
        assert!(r.failed.is_empty());
        assert!(!dead_path.exists());
        for kept in [live.path(), &plain, &foreign, &other] {
            assert!(kept.is_dir(), "{} removed", kept.display());
        }
        assert!(std::fs::symlink_metadata(&link).is_ok());
        assert_eq!(std::fs::read(plain.join("notes")).unwrap(), b"mine");
        // Once the live run is over (dropped), nothing of it is left to clean.
        let live_path = live.path().to_owned();
        drop(live);
        assert!(!live_path.exists());
        // A published directory carries no marker.
        let s = staging_dir(&dest, ".s-").unwrap();
        publish_dir(s, &dest).unwrap();
        assert!(!dest.join(STAGING_MARKER).exists());
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn publish_dir_creates_or_swaps_in_one_rename() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("sub/out");
        let fill = |text: &[u8]| {
            let s = staging_dir(&dest, ".t-").unwrap();
            std::fs::write(s.path().join("f"), text).unwrap();
            s
        };
        // Absent: moved into place, nothing to clean.
        assert_eq!(publish_dir(fill(b"1"), &dest).unwrap(), None);
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"1");
        // Present: swapped; the previous one is handed back, whole.
        let old = publish_dir(fill(b"2"), &dest).unwrap().unwrap();
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"2");
        assert_eq!(std::fs::read(old.join("f")).unwrap(), b"1");
        assert_eq!(old.parent(), dest.parent());
        std::fs::remove_dir_all(&old).unwrap();
        // A failed publication removes the staged directory and leaves `dest` alone.
        let staged = fill(b"3");
        let staged_path = staged.path().to_owned();
        let e = publish_dir(staged, &d.path().join("missing/parent/out")).unwrap_err();
        assert!(e.to_string().contains("moving into place"), "{e}");
        assert!(!staged_path.exists());
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"2");
        let left: Vec<_> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["out"]);
    }
}
