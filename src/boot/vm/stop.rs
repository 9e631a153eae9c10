//! Stopping cleanly: SIGINT, SIGTERM and SIGHUP stop a running boot (and its QEMU) instead of
//! killing `stratos` and leaving QEMU behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes SIGINT, SIGTERM and SIGHUP stop a running boot (and its QEMU) cleanly instead of
/// killing `stratos` and leaving QEMU behind.
pub fn handle_stop_signals() -> std::io::Result<()> {
    let flag = STOP.get_or_init(Default::default).clone();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

/// Whether one of those signals came.
pub fn stop_requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}
