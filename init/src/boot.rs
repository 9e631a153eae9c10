//! What PID 1 does, in order, written against the [`Sys`] seam.

use stratos_wire::{Control, InitConfig, CONFIG_PATH};

use crate::cgroup::{setup_cgroup, MemoryPeak};
use crate::console::{log, phase};
use crate::error::{InitError, NetworkError};
use crate::mounts::{config_mounts, early_mounts, mount_all};
use crate::observe::{mark, Observer};
use crate::restore;
use crate::runtime::{describe, ending, spawn_runtime, Prepared};
use crate::supervise::Supervisor;
use crate::sys::{ExitKind, Sys, Waited, SIGKILL, SIGTERM};
use crate::zram::setup_zram_unless_optional;

/// How long leftover processes get between SIGTERM and SIGKILL at shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 1000;

/// How the boot ended, before power-off.
#[derive(Debug)]
pub enum Outcome {
    /// The runtime ran and ended (for the last time).
    Runtime(ExitKind),
    /// The init could not get the runtime going, or keep it going.
    Fatal(InitError),
}

/// How long the init waits, before it starts the runtime, for its control thread to hold the
/// port (found within milliseconds of the driver's probe; this is for a starved guest).
pub const CONTROL_OPEN_MS: u64 = 2000;

/// How long the init waits for its last control messages to reach the host before it powers
/// off (they are written in milliseconds; this is for a host starved of CPU).
pub const CONTROL_FLUSH_MS: u64 = 3000;

fn read_config<S: Sys>(sys: &mut S) -> Result<InitConfig, InitError> {
    let bytes = sys.read_file(CONFIG_PATH).map_err(InitError::ReadConfig)?;
    InitConfig::from_json(&bytes).map_err(InitError::BadConfig)
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

/// Brings the system up to the point where the runtime can start.
/// `obs` is made from the config once read, with `init_start` (ns) as its first phase.
fn prepare<S: Sys>(
    sys: &mut S,
    obs: &mut Observer,
    init_start: u64,
) -> Result<Prepared, InitError> {
    mount_all(sys, &early_mounts())?;
    let mut cfg = read_config(sys)?;
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
    sys.control(&Control::Network {
        configured: cfg.network.is_some(),
    });
    if let Some(l) = &cfg.lambda {
        sys.start_lambda(l).map_err(InitError::LambdaServer)?;
        let memory_mib = function_memory_mib(sys, &cfg);
        cfg.runtime.env = crate::lambda::runtime_env(l, &cfg.runtime.env, memory_mib);
    }
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

/// The memory a Lambda function may use, in MiB (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`): its
/// cgroup's `memory.max`, else the VM's memory; 128 (Lambda's default) if neither is known.
fn function_memory_mib<S: Sys>(sys: &mut S, cfg: &InitConfig) -> u64 {
    if let Some(max) = cfg.limits.memory_max {
        return max / (1024 * 1024);
    }
    match sys.read_file("/proc/meminfo") {
        Ok(m) => match crate::meminfo::meminfo_kib(&String::from_utf8_lossy(&m), "MemTotal:") {
            Some(kib) => kib / 1024,
            None => 128,
        },
        Err(e) => {
            log(
                sys,
                &format!(
                    "warning: cannot read /proc/meminfo ({e}); AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128"
                ),
            );
            128
        }
    }
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
        entropy_ready(sys);
    } else {
        log(sys, NO_ENTROPY_WARNING);
        sys.watch_entropy(entropy_ready);
    }
}

fn entropy_ready<S: Sys>(sys: &mut S) {
    phase(sys, "entropy_ready");
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
    sys.open_control(restore::apply);
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
