//! QEMU's migration, as snapshots use it: the device state only (the RAM stays in its shared
//! file), written to and read from a file through `exec:`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::SnapshotError;
use crate::boot::vm::qmp::{Qmp, QmpError};

/// Leaves RAM that lives in a shared file out of the migration stream (both sides).
/// Saves the paused VM's device state into `state` (the RAM stays in its file), and waits until
/// it is written.
pub(super) fn save_state(qmp: &mut Qmp, state: &Path) -> Result<(), SnapshotError> {
    ignore_shared(qmp)?;
    qmp.execute(
        "migrate",
        json!({ "uri": format!("exec:cat > {}", shell_path(state)?) }),
    )?;
    qmp.wait_migration(Duration::from_secs(120))?;
    Ok(())
}

/// Loads `state` into a VM started with `-incoming defer`; returns once it is loaded (paused).
pub(super) fn load_state(qmp: &mut Qmp, state: &Path) -> Result<(), SnapshotError> {
    ignore_shared(qmp)?;
    qmp.execute(
        "migrate-incoming",
        json!({ "uri": format!("exec:cat {}", shell_path(state)?) }),
    )?;
    qmp.wait_status("paused", Duration::from_secs(60))?;
    Ok(())
}

fn ignore_shared(qmp: &mut Qmp) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": [ { "capability": "x-ignore-shared", "state": true } ] }),
    )
    .map(drop)
}

/// `exec:` migration URIs go through a shell: a path is quoted, and one holding a quote is
/// refused.
fn shell_path(p: &Path) -> Result<String, SnapshotError> {
    let s = p.display().to_string();
    if s.contains('\'') {
        return Err(SnapshotError::Invalid {
            dir: p.to_owned(),
            why: "the path holds a single quote; use another directory".into(),
        });
    }
    Ok(format!("'{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_paths_are_quoted_and_quotes_refused() {
        assert_eq!(shell_path(Path::new("/a b/state")).unwrap(), "'/a b/state'");
        assert!(shell_path(Path::new("/a'b/state")).is_err());
    }
}
