//! Host tests of the boot logic through a recording fake `Sys`.

use std::io;
use std::net::Ipv4Addr;

use stratos_wire::{
    InitConfig, Limits, Network, Readiness, Restart, RestartPolicy, Runtime, Tmpfs, CONFIG_FORMAT,
};

use crate::boot::{boot, Outcome};
use crate::supervise::restart_delay;
use crate::sys::{ExitKind, Waited};

mod errors;
mod fake;
mod lambda;
mod memory_peak;
mod observe;
mod restore;
mod setup;
mod supervise;

use fake::{Call, Fake};

fn config() -> InitConfig {
    InitConfig {
        format: CONFIG_FORMAT,
        hostname: "hello".into(),
        runtime: Runtime {
            argv: vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
        },
        modules: vec![
            stratos_wire::Module {
                name: "failover".into(),
                path: "/lib/modules/x/failover.ko".into(),
                params: String::new(),
            },
            stratos_wire::Module {
                name: "virtio_net".into(),
                path: "/lib/modules/x/virtio_net.ko".into(),
                params: String::new(),
            },
        ],
        network: Some(Network {
            interface: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        }),
        tmpfs: vec![
            Tmpfs {
                path: "/run".into(),
                mode: 0o755,
                size: 0,
            },
            Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
                size: 0,
            },
        ],
        sysctl: vec![("vm.swappiness".into(), "10".into())],
        zram: None,
        readiness: None,
        restart: Restart::default(),
        stop_timeout_ms: 2000,
        limits: Limits::default(),
        read_only_root: true,
        preload: vec![],
        stdio: stratos_wire::Stdio::Console,
        seccomp: None,
        on_restore: None,
        observe: None,
        lambda: None,
    }
}

/// Outcomes are the same when they end the same way and the console says the same thing.
impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Runtime(a), Outcome::Runtime(b)) => a == b,
            (Outcome::Fatal(a), Outcome::Fatal(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

fn run_with(waits: Vec<Waited>) -> (Fake, Outcome) {
    let mut f = Fake::new(&config());
    f.waits = waits.into();
    let o = boot(&mut f);
    (f, o)
}

#[test]
fn mounts_then_modules_then_network_then_runtime() {
    let (f, o) = run_with(vec![Waited::Reaped(42, ExitKind::Exited(0))]);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(0)));
    let w = |p: &str, v: &str| Call::Write(p.into(), v.into());
    let expected = vec![
        Call::OpenControl,
        Call::Mount("/proc".into()),
        Call::Mount("/sys".into()),
        Call::Mount("/dev".into()),
        Call::Mount("/dev/pts".into()),
        Call::Mount("/dev/shm".into()),
        Call::Mount("/run".into()),
        Call::Mount("/tmp".into()),
        Call::Mount("/sys/fs/cgroup".into()),
        w("/sys/fs/cgroup/cgroup.subtree_control", "+memory"),
        Call::Module("/lib/modules/x/failover.ko".into()),
        Call::Module("/lib/modules/x/virtio_net.ko".into()),
        w("/proc/sys/vm/swappiness", "10"),
        Call::Up("lo".into()),
        Call::Addr("eth0".into(), Ipv4Addr::new(10, 0, 2, 15), 24),
        Call::Up("eth0".into()),
        Call::Route(Ipv4Addr::new(10, 0, 2, 2)),
        Call::RemountRo,
        Call::Spawn(
            vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
            1000,
            1000,
        ),
        Call::Kill(15),
        Call::Sync,
        Call::Umount("/tmp".into()),
        Call::Umount("/run".into()),
        Call::FlushControl,
    ];
    assert_eq!(f.calls, expected);
    assert!(f
        .console
        .contains(&"stratos-init: runtime exited with status 0".to_owned()));
    assert!(f.console.contains(
        &"stratos-init: memory peak 1048576 bytes (1024 KiB) in the runtime's cgroup".to_owned()
    ));
    assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
}

#[test]
fn exit_codes_and_signals_are_reported_exactly() {
    for (how, text) in [
        (
            ExitKind::Exited(3),
            "stratos-init: runtime exited with status 3",
        ),
        (
            ExitKind::Exited(255),
            "stratos-init: runtime exited with status 255",
        ),
        (
            ExitKind::Signaled(9),
            "stratos-init: runtime killed by signal 9 (SIGKILL)",
        ),
        (
            ExitKind::Signaled(15),
            "stratos-init: runtime killed by signal 15 (SIGTERM)",
        ),
    ] {
        let (f, o) = run_with(vec![Waited::Reaped(42, how)]);
        assert_eq!(o, Outcome::Runtime(how));
        assert_eq!(f.lines("stratos-init: runtime "), [text]);
    }
}

#[test]
fn orphans_are_reaped_while_waiting_for_the_runtime() {
    let (f, o) = run_with(vec![
        Waited::Reaped(100, ExitKind::Exited(0)),
        Waited::Reaped(101, ExitKind::Signaled(9)),
        Waited::Reaped(42, ExitKind::Exited(7)),
    ]);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(7)));
    assert_eq!(
        f.lines("stratos-init: runtime "),
        ["stratos-init: runtime exited with status 7"]
    );
}

#[test]
fn runtime_that_cannot_be_executed_is_fatal_and_powers_off() {
    for (kind, text) in [
        (io::ErrorKind::NotFound, "entity not found"),
        (io::ErrorKind::PermissionDenied, "permission denied"),
    ] {
        let mut f = Fake::new(&config());
        f.spawn_result = Some(kind);
        let o = boot(&mut f);
        let Outcome::Fatal(e) = &o else {
            panic!("{o:?}")
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot execute the runtime /bin/busybox: "),
            "{msg}"
        );
        assert!(msg.contains(text), "{msg}");
        assert_eq!(f.lines("stratos-init: fatal:").len(), 1);
        assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
        assert!(f.calls.contains(&Call::Sync));
    }
}

#[test]
fn missing_config_is_fatal() {
    let mut f = Fake::new(&config());
    f.config = None;
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("/etc/stratos/init.json")),
        "{o:?}"
    );
    f.config = Some(b"{garbage".to_vec());
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("malformed")),
        "{o:?}"
    );
}

#[test]
fn phases_are_printed_in_order() {
    let (f, _) = run_with(vec![Waited::Reaped(42, ExitKind::Exited(0))]);
    let names: Vec<&str> = f
        .lines("stratos-phase ")
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "init_start",
            "entropy_ready",
            "mounts_done",
            "zram_ready",
            "preload_started",
            "runtime_exec",
            "runtime_ready",
            "shutdown"
        ]
    );
}

#[test]
fn stubborn_processes_get_sigkill_after_the_grace_period() {
    let mut f = Fake::new(&config());
    let mut w = vec![Waited::Reaped(42, ExitKind::Exited(0))];
    w.extend(std::iter::repeat_n(Waited::NoneReady, 200));
    f.waits = w.into();
    boot(&mut f);
    assert!(f.calls.contains(&Call::Kill(9)), "{:?}", f.calls);
}

#[test]
fn a_failed_wait_at_shutdown_is_a_warning_then_sigkill() {
    let mut f = Fake::new(&config());
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    f.wait_error = Some(io::ErrorKind::InvalidInput);
    let o = boot(&mut f);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(0)));
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: cannot wait for the remaining processes: invalid input parameter"]
    );
    let kills: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Kill(_)))
        .collect();
    assert_eq!(kills, [&Call::Kill(15), &Call::Kill(9)]);
    assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
}

#[test]
fn restart_decisions_with_capped_backoff() {
    let r = Restart {
        policy: RestartPolicy::OnFailure,
        max_restarts: 4,
        backoff_initial_ms: 100,
        backoff_max_ms: 250,
    };
    assert_eq!(restart_delay(&r, ExitKind::Exited(0), 0), None);
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 0), Some(100));
    assert_eq!(restart_delay(&r, ExitKind::Signaled(9), 1), Some(200));
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 2), Some(250));
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 4), None);
    let always = Restart {
        policy: RestartPolicy::Always,
        ..r.clone()
    };
    assert_eq!(restart_delay(&always, ExitKind::Exited(0), 0), Some(100));
    let never = Restart {
        policy: RestartPolicy::Never,
        ..r
    };
    assert_eq!(restart_delay(&never, ExitKind::Exited(1), 0), None);
}

#[test]
fn restarts_until_the_limit_then_reports_the_last_exit() {
    let mut cfg = config();
    cfg.restart = Restart {
        policy: RestartPolicy::OnFailure,
        max_restarts: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 10,
    };
    let mut f = Fake::new(&cfg);
    f.waits = vec![
        Waited::Reaped(42, ExitKind::Exited(1)),
        Waited::NoneReady,
        Waited::NoneReady,
        Waited::Reaped(43, ExitKind::Exited(2)),
        Waited::NoneReady,
        Waited::NoneReady,
        Waited::Reaped(44, ExitKind::Exited(3)),
    ]
    .into();
    let o = boot(&mut f);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(3)));
    let spawns = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Spawn(..)))
        .count();
    assert_eq!(spawns, 3);
    assert_eq!(
        f.lines("stratos-init: runtime exited"),
        ["stratos-init: runtime exited with status 3"]
    );
    assert_eq!(f.lines("stratos-init: restart ").len(), 2);
}

#[test]
fn sigterm_is_forwarded_once_then_sigkill_after_the_deadline() {
    let mut f = Fake::new(&config());
    // TERM arrives; the runtime ignores it; the deadline (2 s) passes; it dies of SIGKILL.
    f.signals = vec![Some(15)].into();
    let mut waits = vec![Waited::NoneReady; 1];
    waits.extend(std::iter::repeat_n(Waited::NoneReady, 3));
    f.waits = waits.into();
    // After the deadline, the fake reports the kill.
    let o = {
        let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 5).collect();
        w.push(Waited::Reaped(42, ExitKind::Signaled(9)));
        f.waits = w.into();
        boot(&mut f)
    };
    assert_eq!(o, Outcome::Runtime(ExitKind::Signaled(9)));
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(sigs, [&Call::Signal(42, 15), &Call::Signal(42, 9)]);
    assert!(f
        .console
        .iter()
        .any(|l| l.contains("did not stop within 2000 ms")));
}

#[test]
fn other_signals_are_forwarded_exactly_once() {
    let mut f = Fake::new(&config());
    f.signals = vec![Some(1), Some(10), Some(12), Some(17)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 4).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(
        sigs,
        [
            &Call::Signal(42, 1),
            &Call::Signal(42, 10),
            &Call::Signal(42, 12)
        ]
    );
}

#[test]
fn readiness_by_tcp_probe() {
    let mut cfg = config();
    cfg.readiness = Some(Readiness::Tcp {
        port: 8080,
        timeout_ms: 1000,
    });
    let mut f = Fake::new(&cfg);
    f.tcp_ready_after = 3;
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 6).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    assert_eq!(f.probes, 4);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
}

#[test]
fn unreadable_seccomp_filter_refuses_to_start_unfiltered() {
    let mut cfg = config();
    cfg.seccomp = Some(stratos_wire::Seccomp {
        filter: "/etc/stratos/seccomp.bpf".into(),
        mode: stratos_wire::SeccompMode::Enforce,
    });
    let mut f = Fake::new(&cfg);
    f.unreadable.push("/etc/stratos/seccomp.bpf".into());
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("refusing to start the runtime unfiltered")),
        "{o:?}"
    );
    assert!(!f.calls.iter().any(|c| matches!(c, Call::Spawn(..))));
}

#[test]
fn entropy_ready_at_start_is_a_phase_without_a_warning() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let phases = f.lines("stratos-phase");
    assert!(
        phases[0].starts_with("stratos-phase init_start "),
        "{phases:?}"
    );
    assert!(
        phases[1].starts_with("stratos-phase entropy_ready "),
        "{phases:?}"
    );
    assert!(!f.console.iter().any(|l| l.contains("random pool")));
    assert!(!f.calls.contains(&Call::WatchEntropy));
}

#[test]
fn no_entropy_at_start_warns_once_naming_cause_and_fix_and_watches() {
    let mut f = Fake::new(&config());
    f.entropy = false;
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let warnings: Vec<_> = f
        .console
        .iter()
        .filter(|l| l.contains("random pool is not initialised"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", f.console);
    assert!(warnings[0].starts_with("stratos-init: warning:"));
    assert!(warnings[0].contains("virtio-rng"), "names the cause");
    assert!(
        warnings[0].contains("kernel-configs/entropy.config"),
        "names the fix"
    );
    assert!(f.calls.contains(&Call::WatchEntropy));
    // The phase is printed by the waiter when the pool is ready, not now.
    assert!(!f.console.iter().any(|l| l.contains("entropy_ready")));
    let ready = f.entropy_waiter.expect("a waiter");
    ready(&mut f);
    assert_eq!(f.lines("stratos-phase entropy_ready").len(), 1);
}

#[test]
fn memory_available_is_reported_at_ready() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let i = f
        .console
        .iter()
        .position(|l| l.starts_with("stratos-phase runtime_ready"))
        .unwrap();
    assert_eq!(
        f.console[i + 1],
        "stratos-init: memory available 480000 KiB at runtime_ready"
    );
}

#[test]
fn the_control_channel_is_opened_first_and_flushed_last() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    assert_eq!(f.calls.first(), Some(&Call::OpenControl));
    assert_eq!(f.calls.last(), Some(&Call::FlushControl));
}

#[test]
fn the_host_s_messages_go_to_the_restore_logic() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let on_message = f.host_handler.expect("a handler");
    f.calls.clear();
    on_message(&mut f, stratos_wire::METRICS_REQUEST);
    assert_eq!(f.calls, vec![Call::Signal(1, crate::sys::SIGMETRICS)]);
}

#[test]
fn the_host_learns_everything_it_decides_on_from_the_control_channel() {
    use stratos_wire::{Control, Ending};
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(3)));
    boot(&mut f);
    assert!(matches!(f.control.first(), Some(Control::Hello { .. })));
    let phases: Vec<&str> = f
        .control
        .iter()
        .filter_map(|m| match m {
            Control::Phase { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(phases.first(), Some(&"init_start"));
    assert!(phases.contains(&"runtime_ready"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"shutdown"));
    let n = f.control.len();
    assert_eq!(
        f.control[n - 4..]
            .iter()
            .filter(|m| !matches!(m, Control::Phase { .. } | Control::MemoryPeak { .. }))
            .collect::<Vec<_>>(),
        [
            &Control::Ended {
                ending: Ending::Exited { status: 3 }
            },
            &Control::PowerOff
        ]
    );
    assert!(f
        .control
        .iter()
        .any(|m| matches!(m, Control::MemoryAvailable { kib: 480000 })));
}
