//! What PID 1 does, in order, written against the [`Sys`] seam.

use stratos_wire::{
    Control, InitConfig, Limits, Readiness, ZramSize, CONFIG_PATH, LOG_PREFIX, PHASE_PREFIX,
};

use crate::error::{CgroupError, InitError, MountError, NetworkError, PeakError, ZramError};
use crate::observe::Observer;
use crate::supervise::{describe, Supervisor};
use crate::sys::{ExitKind, Mount, MountFlags, Spawn, Sys, Waited, SIGKILL, SIGTERM};

/// How long leftover processes get between SIGTERM and SIGKILL at shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 1000;
/// The runtime's cgroup.
pub const CGROUP: &str = "/sys/fs/cgroup/runtime";
pub const ZRAM_DEV: &str = "/dev/zram0";

/// How the boot ended, before power-off.
#[derive(Debug)]
pub enum Outcome {
    /// The runtime ran and ended (for the last time).
    Runtime(ExitKind),
    /// The init could not get the runtime going, or keep it going.
    Fatal(InitError),
}

pub fn log<S: Sys>(sys: &mut S, msg: &str) {
    sys.log(&format!("{LOG_PREFIX} {msg}"));
}

/// Sends a phase to the host (and echoes it on the console for people); returns its time
/// (CLOCK_BOOTTIME ns).
pub fn phase<S: Sys>(sys: &mut S, name: &str) -> u64 {
    let t = sys.now_ns();
    send_phase(sys, name, t);
    t
}

fn send_phase<S: Sys>(sys: &mut S, name: &str, t: u64) {
    sys.control(&Control::Phase {
        name: name.to_owned(),
        ns: t,
    });
    sys.log(&format!("{PHASE_PREFIX} {name} {t}"));
}

/// A phase reached at `t` (ns), sent now and kept for the metrics.
pub fn mark_at<S: Sys>(sys: &mut S, obs: &mut Observer, name: &str, t: u64) {
    send_phase(sys, name, t);
    obs.phase(name, t);
}

/// How long the init waits, before it starts the runtime, for its control thread to hold the
/// port (found within milliseconds of the driver's probe; this is for a starved guest).
pub const CONTROL_OPEN_MS: u64 = 2000;

/// How long the init waits for its last control messages to reach the host before it powers
/// off (they are written in milliseconds; this is for a host starved of CPU).
pub const CONTROL_FLUSH_MS: u64 = 3000;

/// Prints a phase marker and keeps its time for the metrics.
pub fn mark<S: Sys>(sys: &mut S, obs: &mut Observer, name: &str) {
    let t = phase(sys, name);
    obs.phase(name, t);
}

fn m(source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> Mount {
    Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

const HARD: MountFlags = MountFlags {
    nosuid: true,
    nodev: true,
    noexec: true,
};
const DEV: MountFlags = MountFlags {
    nosuid: true,
    nodev: false,
    noexec: true,
};
const DATA: MountFlags = MountFlags {
    nosuid: true,
    nodev: true,
    noexec: false,
};

/// The kernel filesystems, mounted before the config is read, in this order.
pub fn early_mounts() -> Vec<Mount> {
    vec![
        m("proc", "/proc", "proc", HARD, ""),
        m("sysfs", "/sys", "sysfs", HARD, ""),
        m("devtmpfs", "/dev", "devtmpfs", DEV, "mode=0755"),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            DEV,
            "mode=0620,ptmxmode=0666",
        ),
        m("tmpfs", "/dev/shm", "tmpfs", DATA, "mode=1777"),
    ]
}

/// The tmpfs mounts the config asks for.
pub fn config_mounts(cfg: &InitConfig) -> Vec<Mount> {
    cfg.tmpfs
        .iter()
        .map(|t| {
            let mut data = format!("mode={:o}", t.mode);
            if t.size > 0 {
                data.push_str(&format!(",size={}", t.size));
            }
            m("tmpfs", &t.path, "tmpfs", DATA, &data)
        })
        .collect()
}

pub fn cgroup_mount() -> Mount {
    m("cgroup2", "/sys/fs/cgroup", "cgroup2", HARD, "")
}

fn mount_all<S: Sys>(sys: &mut S, mounts: &[Mount]) -> Result<(), MountError> {
    for mt in mounts {
        sys.mkdir_p(&mt.target, 0o755)
            .map_err(|source| MountError::MountPoint {
                target: mt.target.clone(),
                source,
            })?;
        sys.mount(mt).map_err(|source| MountError::Mount {
            mount: mt.clone(),
            source,
        })?;
    }
    Ok(())
}

fn read_config<S: Sys>(sys: &mut S) -> Result<InitConfig, InitError> {
    let bytes = sys.read_file(CONFIG_PATH).map_err(InitError::ReadConfig)?;
    InitConfig::from_json(&bytes).map_err(InitError::BadConfig)
}

/// `MemTotal` from /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo_kib(meminfo, "MemTotal:").map(|kb| kb * 1024)
}

/// A `/proc/meminfo` field, in KiB.
pub fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The sysfs writes that configure zram0, in order.
pub fn zram_plan(z: &stratos_wire::Zram, mem_total: u64) -> Vec<(String, String)> {
    let bytes = zram_bytes(z, mem_total);
    vec![
        (
            "/sys/block/zram0/comp_algorithm".into(),
            z.algorithm.clone(),
        ),
        ("/sys/block/zram0/disksize".into(), bytes.to_string()),
    ]
}

/// The size of zram0 in bytes: the profile's size, whole pages.
pub fn zram_bytes(z: &stratos_wire::Zram, mem_total: u64) -> u64 {
    let bytes = match z.size {
        ZramSize::Bytes(b) => b,
        ZramSize::PercentOfRam(p) => mem_total / 100 * u64::from(p),
    };
    bytes / 4096 * 4096
}

/// The first page of a Linux swap area (`mkswap`): version 1, the last usable page, no bad
/// pages, and the `SWAPSPACE2` signature at the end of the page.
pub fn swap_header(bytes: u64) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let last_page = (bytes / 4096).saturating_sub(1) as u32;
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    page[4086..4096].copy_from_slice(b"SWAPSPACE2");
    page
}

fn setup_zram<S: Sys>(sys: &mut S, z: &stratos_wire::Zram) -> Result<(), ZramError> {
    let meminfo = sys
        .read_file("/proc/meminfo")
        .map_err(ZramError::ReadMeminfo)?;
    let total = mem_total(&String::from_utf8_lossy(&meminfo)).ok_or(ZramError::NoMemTotal)?;
    for (path, value) in zram_plan(z, total) {
        sys.write_file(&path, value.as_bytes())
            .map_err(|source| ZramError::Write {
                path,
                value,
                source,
            })?;
    }
    let size = zram_bytes(z, total);
    sys.write_file(ZRAM_DEV, &swap_header(size))
        .map_err(ZramError::SwapSignature)?;
    sys.swapon(ZRAM_DEV, z.priority)
        .map_err(ZramError::Swapon)?;
    log(
        sys,
        &format!(
            "zram: {} MiB of {} swap at priority {}",
            size >> 20,
            z.algorithm,
            z.priority
        ),
    );
    Ok(())
}

/// `/proc/sys` path of a dotted sysctl key.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn apply_sysctl<S: Sys>(sys: &mut S, cfg: &InitConfig) {
    for (k, v) in &cfg.sysctl {
        let path = sysctl_path(k);
        if let Err(e) = sys.write_file(&path, v.as_bytes()) {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no such key in this kernel".to_owned()
            } else {
                e.to_string()
            };
            log(sys, &format!("warning: sysctl {k} = {v}: {why}"));
        }
    }
}

/// Seccomp log mode reads the kernel's audit records from its log, where (with no audit daemon)
/// the kernel prints them through `printk_ratelimit`: 10 per 5 s, the rest dropped — a baseline
/// derived from that would miss calls. Log mode lifts the limit, unless the profile set it.
fn unlimit_audit_printk<S: Sys>(sys: &mut S, cfg: &InitConfig) {
    const KEY: &str = "kernel.printk_ratelimit";
    if cfg.sysctl.iter().any(|(k, _)| k == KEY) {
        return;
    }
    if let Err(e) = sys.write_file(&sysctl_path(KEY), b"0") {
        log(
            sys,
            &format!("warning: seccomp log mode: cannot lift {KEY} ({e}): the kernel may drop audit records beyond 10 per 5 s"),
        );
    }
}

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
fn setup_cgroup<S: Sys>(sys: &mut S, l: &Limits) -> Result<Cgroup, InitError> {
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

fn link_up<S: Sys>(sys: &mut S, interface: &str) -> Result<(), NetworkError> {
    sys.link_up(interface)
        .map_err(|source| NetworkError::LinkUp {
            interface: interface.to_owned(),
            source,
        })
}

fn setup_network<S: Sys>(sys: &mut S, cfg: &InitConfig) -> Result<(), NetworkError> {
    link_up(sys, "lo")?;
    let Some(n) = &cfg.network else {
        return Ok(());
    };
    sys.set_address(&n.interface, n.address, n.prefix_len)
        .map_err(|source| NetworkError::SetAddress {
            address: n.address,
            prefix_len: n.prefix_len,
            interface: n.interface.clone(),
            source,
        })?;
    link_up(sys, &n.interface)?;
    if let Some(gateway) = n.gateway {
        sys.add_default_route(gateway)
            .map_err(|source| NetworkError::Route { gateway, source })?;
    }
    Ok(())
}

/// Everything the runtime needs to (re)start.
pub struct Prepared {
    pub cfg: InitConfig,
    pub cgroup: Cgroup,
    /// The seccomp filter to install, as read from the image.
    pub seccomp: Option<Vec<u8>>,
    /// The seccomp filter only logs (`mode = "log"`): its audit records are forwarded.
    pub seccomp_log: bool,
}

/// Brings the system up to the point where the runtime can start.
/// `obs` is made from the config once read, with `init_start` (ns) as its first phase.
fn prepare<S: Sys>(
    sys: &mut S,
    obs: &mut Observer,
    init_start: u64,
) -> Result<Prepared, InitError> {
    mount_all(sys, &early_mounts())?;
    let cfg = read_config(sys)?;
    *obs = Observer::new(cfg.observe, cfg.limits.memory_max);
    obs.phase("init_start", init_start);
    mount_all(sys, &config_mounts(&cfg))?;
    let cgroup = setup_cgroup(sys, &cfg.limits)?;
    mark(sys, obs, "mounts_done");
    set_hostname(sys, &cfg.hostname);
    load_modules(sys, &cfg.modules)?;
    if let Some(z) = &cfg.zram {
        setup_zram_unless_optional(sys, z)?;
    }
    mark(sys, obs, "zram_ready");
    if !cfg.preload.is_empty() {
        sys.start_preload(&cfg.preload);
    }
    mark(sys, obs, "preload_started");
    apply_sysctl(sys, &cfg);
    setup_network(sys, &cfg)?;
    let seccomp = read_seccomp_filter(sys, &cfg)?;
    if cfg.read_only_root {
        sys.remount_root_ro().map_err(InitError::RemountRo)?;
    }
    let seccomp_log = cfg
        .seccomp
        .as_ref()
        .is_some_and(|s| s.mode == stratos_wire::SeccompMode::Log);
    if seccomp_log {
        unlimit_audit_printk(sys, &cfg);
    }
    Ok(Prepared {
        cfg,
        cgroup,
        seccomp,
        seccomp_log,
    })
}

/// A hostname that cannot be set is only a warning.
fn set_hostname<S: Sys>(sys: &mut S, hostname: &str) {
    if let Err(e) = sys.set_hostname(hostname) {
        log(
            sys,
            &format!("warning: cannot set the hostname to {hostname:?}: {e}"),
        );
    }
}

fn load_modules<S: Sys>(sys: &mut S, modules: &[stratos_wire::Module]) -> Result<(), InitError> {
    for module in modules {
        sys.load_module(&module.path, &module.params)
            .map_err(|source| InitError::Module {
                name: module.name.clone(),
                path: module.path.clone(),
                source,
            })?;
    }
    Ok(())
}

/// zram that fails is fatal only when the profile requires it; otherwise a warning.
fn setup_zram_unless_optional<S: Sys>(
    sys: &mut S,
    z: &stratos_wire::Zram,
) -> Result<(), InitError> {
    match setup_zram(sys, z) {
        Ok(()) => Ok(()),
        Err(e) if z.required => Err(InitError::ZramRequired(e)),
        Err(e) => {
            log(sys, &format!("warning: zram: {e}; continuing without swap"));
            Ok(())
        }
    }
}

/// The seccomp filter the config names; the runtime never starts unfiltered in its place.
fn read_seccomp_filter<S: Sys>(
    sys: &mut S,
    cfg: &InitConfig,
) -> Result<Option<Vec<u8>>, InitError> {
    let Some(s) = &cfg.seccomp else {
        return Ok(None);
    };
    sys.read_file(&s.filter)
        .map(Some)
        .map_err(|source| InitError::SeccompFilter {
            path: s.filter.clone(),
            source,
        })
}

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

/// Stops whatever is left: SIGTERM, a grace period while reaping, SIGKILL, reap, sync, unmount.
pub fn shutdown<S: Sys>(sys: &mut S, unmount: &[String]) {
    sys.kill_all(SIGTERM);
    let mut waited = 0;
    loop {
        match sys.wait(false) {
            Ok(Waited::Reaped(..)) => continue,
            Ok(Waited::NoChildren) => break,
            Ok(Waited::NoneReady) if waited < SHUTDOWN_GRACE_MS => {
                sys.sleep_ms(10);
                waited += 10;
            }
            Ok(Waited::NoneReady) => {
                kill_remaining(sys);
                break;
            }
            Err(e) => {
                log(
                    sys,
                    &format!("warning: cannot wait for the remaining processes: {e}"),
                );
                kill_remaining(sys);
                break;
            }
        }
    }
    sys.sync();
    for target in unmount.iter().rev() {
        // Best effort, and harmless to ignore: these are tmpfs mounts (RAM, nothing to write
        // back, synced above anyway) and the machine powers off next. A busy one just stays.
        let _ = sys.umount(target);
    }
}

/// SIGKILL to whatever is left, then reaps what already died. A process still dying, or a
/// failed wait, changes nothing: the power-off that follows ends them all.
fn kill_remaining<S: Sys>(sys: &mut S) {
    sys.kill_all(SIGKILL);
    while let Ok(Waited::Reaped(..)) = sys.wait(false) {}
}

/// The one warning a boot without entropy gets: what happens, why, and what to do.
pub const NO_ENTROPY_WARNING: &str = "warning: the kernel's random pool is not initialised: the runtime will block in getrandom() until it is (seconds under emulation). The VM has no entropy source: attach a virtio-rng device (stratos boot and boot-test do) and build the kernel with kernel-configs/entropy.config (CONFIG_HW_RANDOM_VIRTIO=y)";

/// Reports when the random pool is ready: at once if it already is (the healthy case: the
/// kernel seeded it from an entropy device before the init ran), else after one warning, from
/// a background waiter.
fn check_entropy<S: Sys>(sys: &mut S) {
    if sys.entropy_ready() {
        phase(sys, "entropy_ready");
    } else {
        log(sys, NO_ENTROPY_WARNING);
        sys.watch_entropy();
    }
}

/// Prepares the system, starts the runtime and supervises it until it ends for good. What the
/// shutdown needs (the tmpfs mounts to unmount, the memory peak) is handed back as soon as it
/// is known, whatever happens next.
fn start_and_supervise<S: Sys>(
    sys: &mut S,
    unmount: &mut Vec<String>,
    peak: &mut MemoryPeak,
    obs: &mut Observer,
    init_start: u64,
) -> Result<ExitKind, InitError> {
    let p = prepare(sys, obs, init_start)?;
    *unmount = p.cfg.tmpfs.iter().map(|t| t.path.clone()).collect();
    *peak = MemoryPeak::new(p.cgroup);
    obs.set_child_seccomp(p.seccomp.is_some());
    obs.attach(sys, p.cgroup);
    // The port is the init's before the runtime exists (a module may have just brought it).
    sys.await_control(CONTROL_OPEN_MS);
    let pid = spawn_runtime(sys, &p)?;
    mark(sys, obs, "runtime_exec");
    log(
        sys,
        &format!(
            "started runtime {} as pid {pid}",
            p.cfg.runtime.argv.join(" ")
        ),
    );
    Supervisor::start(sys, &p, pid, peak, obs).run(sys)
}

/// The whole life of PID 1, up to (not including) power-off.
pub fn boot<S: Sys>(sys: &mut S) -> Outcome {
    // Before any thread is started: threads inherit the mask, and a handled signal sent to
    // PID 1 (e.g. SIGMETRICS from the control thread) must never be taken by one of them,
    // whose default action would kill the init.
    if let Err(e) = sys.block_signals() {
        log(sys, &format!("warning: cannot block signals: {e}"));
    }
    // Then: everything from here on reaches the host (queued until the port exists).
    sys.open_control();
    sys.control(&Control::Hello {
        format: stratos_wire::control::CONTROL_FORMAT,
    });
    let init_start = phase(sys, "init_start");
    check_entropy(sys);
    let mut unmount = Vec::new();
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let outcome = match start_and_supervise(sys, &mut unmount, &mut peak, &mut obs, init_start) {
        Ok(how) => Outcome::Runtime(how),
        Err(e) => Outcome::Fatal(e),
    };
    match &outcome {
        Outcome::Runtime(how) => {
            sys.control(&Control::Ended {
                ending: ending(*how),
            });
            log(sys, &describe(*how));
        }
        Outcome::Fatal(e) => {
            let message = format!("{e}");
            log(sys, &format!("fatal: {message}"));
            sys.control(&Control::Fatal { message });
        }
    }
    peak.report(sys);
    obs.report(sys, stratos_wire::MetricsReason::Shutdown);
    shutdown(sys, &unmount);
    phase(sys, "shutdown");
    log(sys, "powering off");
    sys.control(&Control::PowerOff);
    sys.flush_control(CONTROL_FLUSH_MS);
    outcome
}

/// How the runtime ended, as the control channel says it.
pub fn ending(how: ExitKind) -> stratos_wire::Ending {
    match how {
        ExitKind::Exited(status) => stratos_wire::Ending::Exited { status },
        ExitKind::Signaled(signal) => stratos_wire::Ending::Killed { signal },
    }
}
