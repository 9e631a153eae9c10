//! What the init says: its console lines (`stratos-init: …`) and its phases (to the host on
//! the control channel, echoed on the console for people), through the [`Sys`] seam.

use stratos_wire::{Control, LOG_PREFIX, PHASE_PREFIX};

use crate::sys::Sys;

/// One console line of the init's: `stratos-init: <msg>`.
pub fn log<S: Sys>(sys: &mut S, msg: &str) {
    sys.log(&format!("{LOG_PREFIX} {msg}"));
}

/// Sends a phase to the host (and echoes it on the console for people); returns its time
/// (CLOCK_BOOTTIME ns).
pub fn phase<S: Sys>(sys: &mut S, name: &str) -> u64 {
    let t = sys.now_ns();
    phase_at(sys, name, t);
    t
}

/// Sends a phase reached at `t` (CLOCK_BOOTTIME ns).
pub fn phase_at<S: Sys>(sys: &mut S, name: &str, t: u64) {
    sys.control(&Control::Phase {
        name: name.to_owned(),
        ns: t,
    });
    sys.log(&format!("{PHASE_PREFIX} {name} {t}"));
}
