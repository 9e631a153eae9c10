//! A restored snapshot: every clone starts from the same memory — the same kernel random state,
//! the same clock, the same seeds in the runtime. The host sends each clone, over the restore
//! channel, `stratos-restore <64 hex digits of entropy> <unix time in ns>`; the init adds the
//! bytes to the kernel's pool, forces the CRNG to reseed from it, sets the real-time clock and
//! sends PID 1 [`SIGRESTORED`]: the supervisor sends the runtime the profile's `on-restore`
//! signal (so it can reseed what it holds itself) and only then prints `stratos-phase
//! restored`, which the host waits for before the first call: a call never overtakes the
//! signal.
//!
//! The same channel carries the host's requests for a metrics reading (`[observe]`):
//! `stratos-metrics-request`, passed on to PID 1 as [`SIGMETRICS`].

use crate::console::{log, phase};
use crate::sys::{Sys, SIGMETRICS, SIGRESTORED};

/// A restore message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub entropy: Vec<u8>,
    pub unix_ns: u128,
}

/// Parses one line of the restore channel; `None` for anything else (which is reported).
pub fn parse(line: &str) -> Option<Message> {
    let mut w = line
        .trim_end()
        .strip_prefix(stratos_wire::RESTORE_PREFIX)?
        .split_whitespace();
    let hex = w.next()?;
    let unix_ns = w.next()?.parse().ok()?;
    if w.next().is_some() || hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let entropy = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Message { entropy, unix_ns })
}

/// Applies one restore message. Each step that fails is a console warning; a clone whose pool
/// could not be reseeded says so, since it may share random output with its siblings.
pub fn apply<S: Sys>(sys: &mut S, line: &str) {
    if line.trim_end() == stratos_wire::METRICS_REQUEST {
        if let Err(e) = sys.kill(1, SIGMETRICS) {
            log(
                sys,
                &format!(
                    "warning: cannot pass the host's metrics request on to the supervisor: {e}"
                ),
            );
        }
        return;
    }
    let Some(m) = parse(line) else {
        log(
            sys,
            &format!(
                "warning: ignoring a malformed message on the restore channel ({} bytes)",
                line.len()
            ),
        );
        return;
    };
    let reseeded = sys.add_entropy(&m.entropy).and_then(|()| sys.reseed_crng());
    if let Err(e) = reseeded {
        log(
            sys,
            &format!("warning: cannot reseed the kernel's random pool after a restore ({e}): this clone may share random output with others"),
        );
    }
    if let Err(e) = sys.set_realtime(m.unix_ns) {
        log(
            sys,
            &format!("warning: cannot set the clock after a restore: {e}"),
        );
    }
    if let Err(e) = sys.kill(1, SIGRESTORED) {
        log(
            sys,
            &format!("warning: cannot tell the supervisor about the restore ({e}): the runtime is not told"),
        );
        phase(sys, "restored");
    }
}
