//! The runtime: what it is started with, and how its end is told.

use stratos_wire::{InitConfig, Readiness};

use crate::cgroup::Cgroup;
use crate::error::InitError;
use crate::paths::CGROUP;
use crate::sys::{signal_name, ExitKind, Spawn, Sys};

/// Everything the runtime needs to (re)start.
pub struct Prepared {
    pub cfg: InitConfig,
    pub cgroup: Cgroup,
    /// The seccomp filter to install, as read from the image.
    pub seccomp: Option<Vec<u8>>,
    /// The seccomp filter only logs (`mode = "log"`): its audit records are forwarded.
    pub seccomp_log: bool,
}

/// Starts the runtime as the config says (in its cgroup, with its seccomp filter); returns its
/// pid.
pub fn spawn_runtime<S: Sys>(sys: &mut S, p: &Prepared) -> Result<u32, InitError> {
    let rt = &p.cfg.runtime;
    let procs = format!("{CGROUP}/cgroup.procs");
    let spawn = Spawn {
        argv: &rt.argv,
        env: &rt.env,
        cwd: &rt.cwd,
        uid: rt.uid,
        gid: rt.gid,
        cgroup_procs: p.cgroup.made.then_some(procs.as_str()),
        notify: matches!(p.cfg.readiness, Some(Readiness::Notify { .. })),
        null_stdio: p.cfg.stdio == stratos_wire::Stdio::Null,
        seccomp: p.seccomp.as_deref(),
        seccomp_log: p.seccomp_log,
    };
    sys.spawn(&spawn).map_err(|source| InitError::Spawn {
        program: rt
            .argv
            .first()
            .map_or("(empty argv)", String::as_str)
            .to_owned(),
        source,
    })
}

/// How the runtime ended, for the console.
pub fn describe(how: ExitKind) -> String {
    match how {
        ExitKind::Exited(code) => format!("runtime exited with status {code}"),
        ExitKind::Signaled(sig) => format!("runtime killed by signal {sig} ({})", signal_name(sig)),
    }
}

/// How the runtime ended, as the control channel says it.
pub fn ending(how: ExitKind) -> stratos_wire::Ending {
    match how {
        ExitKind::Exited(status) => stratos_wire::Ending::Exited { status },
        ExitKind::Signaled(signal) => stratos_wire::Ending::Killed { signal },
    }
}
