//! Restoring a snapshot: the VM it restores on (the image's, with the snapshot's memory and
//! command line, paused for an incoming migration), and the QMP session that loads its state
//! and hands the clone fresh entropy and the time.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::migration::load_state;
use super::{io, Snapshot, SnapshotError, MEMORY_FILE, STATE_FILE};
use crate::boot::image::BootImage;
use crate::boot::vm::control::connect_channel;
use crate::boot::vm::qmp::Qmp;
use crate::boot::vm::{Accel, Forward, SnapshotVm, VmSpec};

impl Snapshot {
    /// The spec that restores it: the image's, with the snapshot's memory, command line and
    /// RAM file (mapped copy-on-write), paused for an incoming migration.
    pub fn restore_spec(
        &self,
        image: &BootImage,
        accel: Accel,
        forwards: Vec<Forward>,
        sockets: &Path,
    ) -> VmSpec {
        let mut spec = image.spec(accel, self.meta.memory_mib, forwards, false);
        spec.cmdline = self.meta.cmdline.clone();
        spec.snapshot = Some(SnapshotVm {
            memory_file: self.dir.join(MEMORY_FILE),
            share: false,
            qmp: sockets.join("qmp"),
            restore_channel: sockets.join("restore"),
            incoming: true,
        });
        spec
    }
}

/// A restored VM's QMP session: load the device state, continue, and hand the guest fresh
/// entropy and the time over the control channel. Returns once the guest runs, with the
/// channel (kept open while the VM runs).
pub fn resume(snapshot: &Snapshot, sockets: &Path) -> Result<UnixStream, SnapshotError> {
    let mut qmp = Qmp::connect(&sockets.join("qmp"), Duration::from_secs(10))?;
    // Connected before the guest runs, so the port is "host connected" as it was when saved.
    let channel = connect_channel(&sockets.join("restore"))?;
    load_state(&mut qmp, &snapshot.dir.join(STATE_FILE))?;
    // Queued before the guest runs, so the init reads it the moment it is scheduled.
    let channel = send_restore_message(channel)?;
    qmp.execute("cont", json!({}))?;
    Ok(channel)
}

/// `stratos-restore <64 hex bytes of entropy> <unix time in ns>`: every clone gets its own
/// bytes from the host's getrandom, so no two clones share random output after the init
/// reseeds; and the current time, which did not advance while the snapshot slept.
fn send_restore_message(mut channel: UnixStream) -> Result<UnixStream, SnapshotError> {
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)
        .map_err(|e| io("reading the host's entropy")(std::io::Error::other(e.to_string())))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let line = format!(
        "{} {} {now}\n",
        stratos_wire::RESTORE_PREFIX,
        hex::encode(entropy)
    );
    channel
        .write_all(line.as_bytes())
        .map_err(io("writing to the control channel"))?;
    Ok(channel)
}
