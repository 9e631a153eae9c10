//! The runtime's cgroup: made with the runtime's limits, and its memory high-water mark
//! (`memory.peak`) reported while the runtime runs.

use stratos_wire::{Control, Limits};

use crate::console::log;
use crate::error::{CgroupError, InitError, PeakError};
use crate::mounts::{cgroup_mount, mount_all};
use crate::paths::CGROUP;
use crate::sys::Sys;

/// The cgroup files written for the runtime's limits, in order.
pub fn cgroup_plan(l: &Limits) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut controllers = Vec::new();
    if l.memory_max.is_some() || l.memory_high.is_some() {
        controllers.push("+memory");
    }
    if l.pids_max.is_some() {
        controllers.push("+pids");
    }
    if l.cpu_max.is_some() {
        controllers.push("+cpu");
    }
    if !controllers.is_empty() {
        out.push((
            "/sys/fs/cgroup/cgroup.subtree_control".to_owned(),
            controllers.join(" "),
        ));
    }
    if let Some(v) = l.memory_high {
        out.push((format!("{CGROUP}/memory.high"), v.to_string()));
    }
    if let Some(v) = l.memory_max {
        out.push((format!("{CGROUP}/memory.max"), v.to_string()));
    }
    if let Some((quota, period)) = l.cpu_max {
        out.push((format!("{CGROUP}/cpu.max"), format!("{quota} {period}")));
    }
    if let Some(v) = l.pids_max {
        out.push((format!("{CGROUP}/pids.max"), v.to_string()));
    }
    out
}

/// What [`setup_cgroup`] made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cgroup {
    /// [`CGROUP`] exists: the runtime starts in it.
    pub made: bool,
    /// It has the memory controller, so its `memory.peak` can be read.
    pub memory: bool,
}

/// Mounts cgroup2 and creates the runtime's cgroup with its limits. A limit that cannot be
/// applied is fatal; a missing cgroup without limits is a warning.
pub fn setup_cgroup<S: Sys>(sys: &mut S, l: &Limits) -> Result<Cgroup, InitError> {
    let wanted = !l.is_empty();
    if let Err(e) = make_cgroup(sys) {
        if wanted {
            return Err(InitError::CgroupForLimits(e));
        }
        log(sys, &format!("warning: no cgroup for the runtime: {e}"));
        return Ok(Cgroup::default());
    }
    let mut memory = l.memory_max.is_some() || l.memory_high.is_some();
    // Without limits the memory controller is still enabled, for memory.peak.
    if !wanted {
        match sys.write_file("/sys/fs/cgroup/cgroup.subtree_control", b"+memory") {
            Ok(()) => memory = true,
            Err(e) => log(
                sys,
                &format!(
                    "warning: cannot enable the memory controller for the runtime's cgroup: {e}; its memory peak will not be reported"
                ),
            ),
        }
    }
    for (path, value) in cgroup_plan(l) {
        sys.write_file(&path, value.as_bytes())
            .map_err(|source| InitError::CgroupLimit {
                path,
                value,
                source,
            })?;
    }
    Ok(Cgroup { made: true, memory })
}

/// Mounts cgroup2 and creates the runtime's cgroup.
fn make_cgroup<S: Sys>(sys: &mut S) -> Result<(), CgroupError> {
    mount_all(sys, &[cgroup_mount()]).map_err(CgroupError::Mount)?;
    sys.mkdir_p(CGROUP, 0o755).map_err(CgroupError::Create)
}

fn read_peak<S: Sys>(sys: &mut S) -> Result<u64, PeakError> {
    let b = sys
        .read_file(&format!("{CGROUP}/memory.peak"))
        .map_err(PeakError::Read)?;
    let text = String::from_utf8_lossy(&b);
    let text = text.trim();
    text.parse()
        .map_err(|_| PeakError::NotANumber(text.to_owned()))
}

fn log_peak<S: Sys>(sys: &mut S, n: u64) {
    sys.control(&Control::MemoryPeak { bytes: n });
    log(
        sys,
        &format!(
            "memory peak {n} bytes ({} KiB) in the runtime's cgroup",
            n / 1024
        ),
    );
}

/// The runtime's memory high-water mark, `memory.peak` of its cgroup: reported about once a
/// second while the runtime runs when it grew by 5% or more (so a harness that stops the VM
/// still has a recent value), and once at the end. A peak that cannot be read is one warning.
#[derive(Debug, Default)]
pub struct MemoryPeak {
    /// The runtime's cgroup has the memory controller: the file should be there.
    expected: bool,
    last_check: u64,
    reported: u64,
    /// Reading it failed, and the warning was printed.
    failed: bool,
}

impl MemoryPeak {
    pub fn new(cgroup: Cgroup) -> Self {
        MemoryPeak {
            expected: cgroup.made && cgroup.memory,
            ..MemoryPeak::default()
        }
    }

    /// While the runtime runs (`now`, ns).
    pub fn tick<S: Sys>(&mut self, sys: &mut S, now: u64) {
        if !self.expected || self.failed || now.saturating_sub(self.last_check) < 1_000_000_000 {
            return;
        }
        self.last_check = now;
        match read_peak(sys) {
            Ok(n) if n > self.reported + self.reported / 20 => {
                self.reported = n;
                log_peak(sys, n);
            }
            Ok(_) => {}
            Err(e) => self.warn(sys, &e),
        }
    }

    /// At the end of the boot, whatever ended it.
    pub fn report<S: Sys>(&mut self, sys: &mut S) {
        match read_peak(sys) {
            Ok(n) => log_peak(sys, n),
            Err(e) if self.expected && !self.failed => self.warn(sys, &e),
            // Nothing to miss: no cgroup with the memory controller was made for a runtime (the
            // boot may have failed before), or the failure was already reported.
            Err(_) => {}
        }
    }

    fn warn<S: Sys>(&mut self, sys: &mut S, e: &PeakError) {
        self.failed = true;
        log(
            sys,
            &format!("warning: no memory peak for the runtime: {e}"),
        );
    }
}
