//! What PID 1 does, in order, written against the [`Sys`] seam.

use std::net::Ipv4Addr;

use stratos_wire::{InitConfig, CONFIG_PATH, LOG_PREFIX, PHASE_PREFIX};

use crate::sys::{signal_name, ExitKind, Mount, MountFlags, Spawn, Sys, Waited};

/// How long leftover processes get between SIGTERM and SIGKILL at shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 1000;

/// How the boot ended, before power-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime ran and ended.
    Runtime(ExitKind),
    /// The init could not get the runtime going; the message says why.
    Fatal(String),
}

pub fn log<S: Sys>(sys: &mut S, msg: &str) {
    sys.log(&format!("{LOG_PREFIX} {msg}"));
}

pub fn phase<S: Sys>(sys: &mut S, name: &str) {
    let t = sys.now_ns();
    sys.log(&format!("{PHASE_PREFIX} {name} {t}"));
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

/// The kernel filesystems, mounted before the config is read, in this order.
pub fn early_mounts() -> Vec<Mount> {
    let hard = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
    };
    vec![
        m("proc", "/proc", "proc", hard, ""),
        m("sysfs", "/sys", "sysfs", hard, ""),
        m(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags {
                nosuid: true,
                noexec: true,
                nodev: false,
            },
            "mode=0755",
        ),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags {
                nosuid: true,
                noexec: true,
                nodev: false,
            },
            "mode=0620,ptmxmode=0666",
        ),
        m(
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MountFlags {
                nosuid: true,
                nodev: true,
                noexec: false,
            },
            "mode=1777",
        ),
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
            m(
                "tmpfs",
                &t.path,
                "tmpfs",
                MountFlags {
                    nosuid: true,
                    nodev: true,
                    noexec: false,
                },
                &data,
            )
        })
        .collect()
}

fn mount_all<S: Sys>(sys: &mut S, mounts: &[Mount]) -> Result<(), String> {
    for mt in mounts {
        sys.mkdir_p(&mt.target, 0o755)
            .map_err(|e| format!("cannot create mount point {}: {e}", mt.target))?;
        sys.mount(mt).map_err(|e| {
            format!(
                "cannot mount {} ({}) on {}: {e}",
                mt.source, mt.fstype, mt.target
            )
        })?;
    }
    Ok(())
}

fn read_config<S: Sys>(sys: &mut S) -> Result<InitConfig, String> {
    let bytes = sys
        .read_file(CONFIG_PATH)
        .map_err(|e| format!("cannot read {CONFIG_PATH}: {e}"))?;
    InitConfig::from_json(&bytes).map_err(|e| format!("{CONFIG_PATH}: {e}"))
}

fn setup_network<S: Sys>(sys: &mut S, cfg: &InitConfig) -> Result<(), String> {
    sys.link_up("lo")
        .map_err(|e| format!("cannot bring up lo: {e}"))?;
    if let Some(n) = &cfg.network {
        let addr: Ipv4Addr = n
            .address
            .parse()
            .map_err(|_| format!("bad address {:?} in the config", n.address))?;
        sys.set_address(&n.interface, addr, n.prefix_len)
            .map_err(|e| {
                format!(
                    "cannot set {}/{} on {}: {e}",
                    n.address, n.prefix_len, n.interface
                )
            })?;
        sys.link_up(&n.interface)
            .map_err(|e| format!("cannot bring up {}: {e}", n.interface))?;
        if let Some(gw) = &n.gateway {
            let gw: Ipv4Addr = gw
                .parse()
                .map_err(|_| format!("bad gateway {gw:?} in the config"))?;
            sys.add_default_route(gw)
                .map_err(|e| format!("cannot add a default route via {gw}: {e}"))?;
        }
    }
    Ok(())
}

/// Everything up to and including starting the runtime; returns its pid.
fn start<S: Sys>(sys: &mut S) -> Result<u32, String> {
    mount_all(sys, &early_mounts())?;
    let cfg = read_config(sys)?;
    mount_all(sys, &config_mounts(&cfg))?;
    phase(sys, "mounts_done");
    if let Err(e) = sys.set_hostname(&cfg.hostname) {
        log(
            sys,
            &format!(
                "warning: cannot set the hostname to {:?}: {e}",
                cfg.hostname
            ),
        );
    }
    for module in &cfg.modules {
        sys.load_module(&module.path, &module.params).map_err(|e| {
            format!(
                "cannot load kernel module {} ({}): {e}",
                module.name, module.path
            )
        })?;
    }
    setup_network(sys, &cfg)?;
    let rt = &cfg.runtime;
    let spawn = Spawn {
        argv: &rt.argv,
        env: &rt.env,
        cwd: &rt.cwd,
        uid: rt.uid,
        gid: rt.gid,
    };
    let pid = sys.spawn(&spawn).map_err(|e| {
        format!(
            "cannot execute the runtime {}: {e}",
            rt.argv.first().map_or("(empty argv)", String::as_str)
        )
    })?;
    phase(sys, "runtime_exec");
    log(
        sys,
        &format!("started runtime {} as pid {pid}", rt.argv.join(" ")),
    );
    Ok(pid)
}

/// Reaps every child until the runtime ends (orphans re-parented to PID 1 included).
fn supervise<S: Sys>(sys: &mut S, runtime: u32) -> Result<ExitKind, String> {
    loop {
        match sys.wait(true) {
            Ok(Waited::Reaped(pid, how)) if pid == runtime => return Ok(how),
            Ok(Waited::Reaped(..)) | Ok(Waited::NoneReady) => {}
            Ok(Waited::NoChildren) => {
                return Err("the runtime disappeared without being reaped".into())
            }
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    }
}

pub fn describe(how: ExitKind) -> String {
    match how {
        ExitKind::Exited(code) => format!("runtime exited with status {code}"),
        ExitKind::Signaled(sig) => format!("runtime killed by signal {sig} ({})", signal_name(sig)),
    }
}

/// Stops whatever is left: SIGTERM, a grace period while reaping, SIGKILL, reap, sync.
pub fn shutdown<S: Sys>(sys: &mut S) {
    sys.kill_all(15);
    let mut waited = 0;
    loop {
        match sys.wait(false) {
            Ok(Waited::Reaped(..)) => continue,
            Ok(Waited::NoChildren) => break,
            Ok(Waited::NoneReady) if waited < SHUTDOWN_GRACE_MS => {
                sys.sleep_ms(10);
                waited += 10;
            }
            Ok(Waited::NoneReady) | Err(_) => {
                sys.kill_all(9);
                while let Ok(Waited::Reaped(..)) = sys.wait(false) {}
                break;
            }
        }
    }
    sys.sync();
}

/// The whole life of PID 1, up to (not including) power-off.
pub fn boot<S: Sys>(sys: &mut S) -> Outcome {
    phase(sys, "init_start");
    let outcome = match start(sys) {
        Err(e) => Outcome::Fatal(e),
        Ok(pid) => match supervise(sys, pid) {
            Ok(how) => Outcome::Runtime(how),
            Err(e) => Outcome::Fatal(e),
        },
    };
    match &outcome {
        Outcome::Runtime(how) => log(sys, &describe(*how)),
        Outcome::Fatal(e) => log(sys, &format!("fatal: {e}")),
    }
    shutdown(sys);
    phase(sys, "shutdown");
    log(sys, "powering off");
    outcome
}
