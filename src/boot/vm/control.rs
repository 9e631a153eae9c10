//! The host's end of a VM's sockets: a short-lived directory for them, and the control channel
//! to the init (a unix socket QEMU listens on).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::qemu::{io, QemuError};

/// A scratch directory for QEMU's sockets: short paths (a unix socket path is limited to 108
/// bytes), removed when dropped.
pub fn sockets() -> Result<tempfile::TempDir, QemuError> {
    tempfile::Builder::new()
        .prefix("stratos-vm-")
        .tempdir_in("/tmp")
        .map_err(io("creating a directory for QEMU's sockets in /tmp"))
}

/// Connects to the control channel of a VM just started (QEMU creates the socket as it
/// starts: retried until `deadline`). `None` when QEMU exited first (`exited`): its own error
/// is the one to report, and the caller's session does.
pub fn connect_control(
    path: &Path,
    deadline: Instant,
    mut exited: impl FnMut() -> bool,
) -> Result<Option<UnixStream>, QemuError> {
    loop {
        match connect_channel(path) {
            Ok(c) => return Ok(Some(c)),
            Err(_) if exited() => return Ok(None),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Connects to the control channel's socket once.
pub fn connect_channel(path: &Path) -> Result<UnixStream, QemuError> {
    UnixStream::connect(path).map_err(io(format!(
        "connecting to the control channel {}",
        path.display()
    )))
}
