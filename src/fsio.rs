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

/// An empty directory next to `dest` (in the same parent, created if missing, so on the same
/// filesystem), named `<prefix><random>`, to fill and then hand to [`publish_dir`]. Dropped
/// without being published, it is removed with everything in it.
pub fn staging_dir(dest: &Path, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let parent = parent_of(dest);
    std::fs::create_dir_all(parent)?;
    tempfile::Builder::new().prefix(prefix).tempdir_in(parent)
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
/// 1. the staged directory is flushed (its files are the caller's to flush);
/// 2. it is renamed to `dest` without replacing anything; if `dest` exists (a directory), the
///    two are exchanged atomically instead (`RENAME_EXCHANGE`);
/// 3. `dest`'s parent is flushed, so the rename survives a crash.
///
/// On an error before the rename, the staged directory is removed and `dest` is untouched.
/// Returns where the previous `dest` now is (the staged directory's path), for the caller to
/// remove what of it is its own; `None` when there was none. (A failure of step 3 leaves it
/// there, under the staging name.)
pub fn publish_dir(
    staged: tempfile::TempDir,
    dest: &Path,
) -> Result<Option<PathBuf>, PublishError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let fail = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| PublishError { what, path, source }
    };
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
