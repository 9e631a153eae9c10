//! Reading untrusted package archives (`.deb` data, npm tarballs, wheels): a stream that stops
//! at a cap whatever the archive claims, and member names kept under their directory.

use std::io::Read;

/// A reader that fails (with an error [`Capped::exceeded`] recognises) once more than `limit`
/// bytes came through: what an archive says about its own sizes is never trusted.
pub struct Capped<R> {
    inner: R,
    limit: u64,
    seen: u64,
}

#[derive(Debug)]
struct CapExceeded(u64);

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for CapExceeded {}

impl<R> Capped<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Capped {
            inner,
            limit,
            seen: 0,
        }
    }

    /// The limit, if `e` is this reader's "limit exceeded" error.
    pub fn exceeded(e: &std::io::Error) -> Option<u64> {
        e.get_ref()
            .and_then(|x| x.downcast_ref::<CapExceeded>())
            .map(|c| c.0)
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.limit {
            return Err(std::io::Error::other(CapExceeded(self.limit)));
        }
        Ok(n)
    }
}

/// Joins an archive member's relative name under `base`: absolute, non-POSIX (backslash, NUL)
/// and `..` names are refused (`inside` names what they would leave); with `strict`, empty and
/// `.` components too, else they are skipped.
pub fn join_under(
    base: &crate::rootfs::ImagePath,
    rel: &str,
    strict: bool,
    inside: &str,
) -> Result<crate::rootfs::ImagePath, String> {
    if rel.starts_with('/') || rel.contains('\\') || rel.contains('\0') {
        return Err("an absolute or non-POSIX name".into());
    }
    let mut p = base.clone();
    for part in rel.split('/') {
        match part {
            "" | "." if strict => return Err("an empty or `.` path component".into()),
            "" | "." => {}
            ".." => return Err(format!("a `..` component (it would leave {inside})")),
            name => p = p.join(name).map_err(|e| e.to_string())?,
        }
    }
    Ok(p)
}
