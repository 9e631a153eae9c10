//! File-system helpers both sides share.

use std::path::Path;

use super::error::ChannelError;

/// What is at `p` (following links): `None` when nothing is (the path or a directory on it is
/// missing, or a file stands where a directory would be); an error when it cannot be told.
pub(crate) fn metadata_if_there(p: &Path) -> Result<Option<std::fs::Metadata>, ChannelError> {
    match std::fs::metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ChannelError::io(format!("looking for {}", p.display()))(e)),
    }
}
