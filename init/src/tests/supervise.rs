//! The supervisor's transitions, one at a time, through the recording fake: each test puts the
//! state machine somewhere, sends it one event, and checks the calls, the console and the state.

use std::io;
use std::ops::ControlFlow;

use stratos_wire::{InitConfig, Readiness, Restart, RestartPolicy};

use super::{config, Call, Fake};
use crate::cgroup::{Cgroup, MemoryPeak};
use crate::observe::Observer;
use crate::runtime::Prepared;
use crate::supervise::{State, Step, Supervisor, IDLE_WAKE_MS, READINESS_POLL_MS};
use crate::sys::{ExitKind, Waited, SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};

const MS: u64 = 1_000_000;

fn prepared(cfg: InitConfig) -> Prepared {
    Prepared {
        cfg,
        cgroup: Cgroup::default(),
        seccomp: None,
        seccomp_log: false,
    }
}

fn with_restart(policy: RestartPolicy, max_restarts: u32, initial: u64, max: u64) -> Prepared {
    let mut cfg = config();
    cfg.restart = Restart {
        policy,
        max_restarts,
        backoff_initial_ms: initial,
        backoff_max_ms: max,
    };
    prepared(cfg)
}

fn with_tcp_readiness(timeout_ms: u64) -> Prepared {
    let mut cfg = config();
    cfg.readiness = Some(Readiness::Tcp {
        port: 8080,
        timeout_ms,
    });
    prepared(cfg)
}

fn fake(p: &Prepared) -> Fake {
    let mut f = Fake::new(&p.cfg);
    f.clock = 1_000 * MS;
    f
}

/// Forgets what happened so far, so a test sees only the transition it makes.
fn clear(f: &mut Fake) {
    f.calls.clear();
    f.console.clear();
}

fn tick(sv: &mut Supervisor, f: &mut Fake) -> Step {
    let now = f.clock;
    sv.on_tick(f, now)
}

fn goes_on(step: Step) {
    assert!(matches!(step, ControlFlow::Continue(())), "{step:?}");
}

fn ended(step: Step) -> ExitKind {
    match step {
        ControlFlow::Break(Ok(how)) => how,
        other => panic!("expected the runtime's end, got {other:?}"),
    }
}

fn failed(step: Step) -> String {
    match step {
        ControlFlow::Break(Err(e)) => e.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn spawns(f: &Fake) -> usize {
    f.calls
        .iter()
        .filter(|c| matches!(c, Call::Spawn(..)))
        .count()
}

#[test]
fn hup_usr1_usr2_are_forwarded_once_each_and_logged_once() {
    let p = prepared(config());
    for (sig, name) in [
        (SIGHUP, "SIGHUP"),
        (SIGUSR1, "SIGUSR1"),
        (SIGUSR2, "SIGUSR2"),
    ] {
        let mut f = fake(&p);
        let mut peak = MemoryPeak::default();
        let mut obs = Observer::default();
        let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
        clear(&mut f);
        goes_on(sv.on_signal(&mut f, sig));
        assert_eq!(f.calls, [Call::Signal(42, sig)]);
        assert_eq!(
            f.console,
            [format!(
                "stratos-init: received {name}; forwarded to the runtime"
            )]
        );
        assert_eq!(sv.state(), State::Running { pid: 42 });
    }
}

#[test]
fn sigchld_and_other_signals_only_wake_the_loop() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    clear(&mut f);
    for sig in [SIGCHLD, 3, 31] {
        goes_on(sv.on_signal(&mut f, sig));
    }
    assert_eq!(f.calls, []);
    assert_eq!(f.console, Vec::<String>::new());
    assert_eq!(sv.state(), State::Running { pid: 42 });
}

#[test]
fn sigterm_starts_a_graceful_stop_then_sigkill_after_the_timeout() {
    let p = prepared(config()); // stop_timeout_ms = 2000
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    clear(&mut f);

    goes_on(sv.on_signal(&mut f, SIGTERM));
    assert_eq!(f.calls, [Call::Signal(42, SIGTERM)]);
    assert_eq!(
        f.console,
        ["stratos-init: received SIGTERM; forwarded to the runtime, stopping"]
    );
    let deadline = f.clock + 2000 * MS;
    assert_eq!(
        sv.state(),
        State::Stopping {
            pid: 42,
            deadline,
            killed: false
        }
    );
    // The loop wakes in time for the deadline.
    assert_eq!(sv.timeout_ms(deadline - 1500 * MS), IDLE_WAKE_MS);
    assert_eq!(sv.timeout_ms(deadline - 300 * MS), 300);

    // Not yet: nothing happens.
    clear(&mut f);
    f.clock = deadline - 1;
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.calls, []);

    // The deadline: SIGKILL, once.
    f.clock = deadline;
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.calls, [Call::Signal(42, SIGKILL)]);
    assert_eq!(
        f.console,
        ["stratos-init: the runtime did not stop within 2000 ms; sending SIGKILL"]
    );
    assert_eq!(
        sv.state(),
        State::Stopping {
            pid: 42,
            deadline,
            killed: true
        }
    );
    clear(&mut f);
    f.clock = deadline + 10_000 * MS;
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.calls, []);
    assert_eq!(sv.timeout_ms(f.clock), IDLE_WAKE_MS);

    // Its end is the end.
    assert_eq!(
        ended(sv.on_reaped(&mut f, 42, ExitKind::Signaled(9))),
        ExitKind::Signaled(9)
    );
}

#[test]
fn a_second_sigterm_or_sigint_is_forwarded_but_keeps_the_deadline() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_signal(&mut f, SIGTERM));
    let first = sv.state();
    clear(&mut f);
    f.clock += 500 * MS;
    goes_on(sv.on_signal(&mut f, SIGINT));
    assert_eq!(f.calls, [Call::Signal(42, SIGINT)]);
    assert_eq!(
        f.console,
        ["stratos-init: received SIGINT; forwarded to the runtime, stopping"]
    );
    assert_eq!(sv.state(), first);
}

#[test]
fn a_runtime_told_to_stop_is_not_restarted() {
    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_signal(&mut f, SIGTERM));
    clear(&mut f);
    assert_eq!(
        ended(sv.on_reaped(&mut f, 42, ExitKind::Exited(0))),
        ExitKind::Exited(0)
    );
    assert_eq!(f.console, Vec::<String>::new());
}

#[test]
fn restart_backoff_doubles_up_to_the_max_then_max_restarts_gives_up() {
    let p = with_restart(RestartPolicy::OnFailure, 5, 100, 350);
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    let mut pid = 42;
    for (n, delay) in [(1, 100), (2, 200), (3, 350), (4, 350), (5, 350)] {
        clear(&mut f);
        goes_on(sv.on_reaped(&mut f, pid, ExitKind::Exited(1)));
        assert_eq!(
            f.console,
            [format!(
                "stratos-init: restart {n} of 5 in {delay} ms: runtime exited with status 1"
            )]
        );
        let at = f.clock + delay * MS;
        assert_eq!(sv.state(), State::Backoff { at });
        assert_eq!(sv.timeout_ms(f.clock), delay);

        // Not before the back-off is over.
        f.clock = at - 1;
        goes_on(tick(&mut sv, &mut f));
        assert_eq!(spawns(&f), 0);

        clear(&mut f);
        f.clock = at;
        goes_on(tick(&mut sv, &mut f));
        assert_eq!(spawns(&f), 1);
        pid = f.next_pid - 1;
        assert_eq!(
            f.console,
            [format!("stratos-init: restarted runtime as pid {pid}")]
        );
        assert_eq!(sv.state(), State::Running { pid });
    }
    // The sixth failure is the last: reported as it ended, not restarted.
    clear(&mut f);
    assert_eq!(
        ended(sv.on_reaped(&mut f, pid, ExitKind::Exited(3))),
        ExitKind::Exited(3)
    );
    assert_eq!(f.console, Vec::<String>::new());
}

#[test]
fn no_restart_when_the_policy_says_no() {
    for (p, how) in [
        (
            with_restart(RestartPolicy::OnFailure, 5, 100, 1000),
            ExitKind::Exited(0),
        ),
        (
            with_restart(RestartPolicy::Never, 5, 100, 1000),
            ExitKind::Signaled(9),
        ),
        (
            with_restart(RestartPolicy::Always, 0, 100, 1000),
            ExitKind::Exited(0),
        ),
    ] {
        let mut f = fake(&p);
        let mut peak = MemoryPeak::default();
        let mut obs = Observer::default();
        let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
        clear(&mut f);
        assert_eq!(ended(sv.on_reaped(&mut f, 42, how)), how);
        assert_eq!(f.console, Vec::<String>::new());
    }
}

#[test]
fn a_restart_that_cannot_execute_ends_supervision() {
    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_reaped(&mut f, 42, ExitKind::Exited(0)));
    f.spawn_result = Some(io::ErrorKind::NotFound);
    f.clock += 100 * MS;
    let msg = failed(tick(&mut sv, &mut f));
    assert!(
        msg.starts_with("cannot execute the runtime /bin/busybox: "),
        "{msg}"
    );
}

#[test]
fn between_restarts_signals_are_not_forwarded_and_sigterm_ends_supervision() {
    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_reaped(&mut f, 42, ExitKind::Exited(0)));
    let backoff = sv.state();
    clear(&mut f);
    goes_on(sv.on_signal(&mut f, SIGHUP));
    assert_eq!(f.calls, []);
    assert_eq!(f.console, Vec::<String>::new());
    assert_eq!(sv.state(), backoff);

    let msg = failed(sv.on_signal(&mut f, SIGTERM));
    assert_eq!(msg, "stopped by SIGTERM before the runtime could restart");
    assert_eq!(f.calls, []);
    assert_eq!(
        f.console,
        ["stratos-init: received SIGTERM while the runtime is not running; stopping"]
    );
}

#[test]
fn an_orphan_is_reaped_without_affecting_the_runtime() {
    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    clear(&mut f);
    goes_on(sv.on_reaped(&mut f, 100, ExitKind::Exited(0)));
    goes_on(sv.on_reaped(&mut f, 101, ExitKind::Signaled(9)));
    assert_eq!(sv.state(), State::Running { pid: 42 });
    // Also while stopping, and between restarts.
    goes_on(sv.on_signal(&mut f, SIGTERM));
    let stopping = sv.state();
    goes_on(sv.on_reaped(&mut f, 102, ExitKind::Exited(1)));
    assert_eq!(sv.state(), stopping);
    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_reaped(&mut f, 42, ExitKind::Exited(0)));
    let backoff = sv.state();
    clear(&mut f);
    goes_on(sv.on_reaped(&mut f, 103, ExitKind::Exited(0)));
    assert_eq!(sv.state(), backoff);
    assert_eq!(f.console, Vec::<String>::new());
    assert_eq!(f.calls, []);
}

#[test]
fn reap_takes_every_ended_child_then_goes_on() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.waits = vec![
        Waited::Reaped(100, ExitKind::Exited(0)),
        Waited::Reaped(101, ExitKind::Exited(0)),
        Waited::NoneReady,
        Waited::Reaped(42, ExitKind::Exited(0)),
    ]
    .into();
    goes_on(sv.reap(&mut f));
    assert_eq!(f.waits, [Waited::Reaped(42, ExitKind::Exited(0))]);
    assert_eq!(ended(sv.reap(&mut f)), ExitKind::Exited(0));
}

#[test]
fn no_children_left_is_a_vanished_runtime_unless_it_is_between_restarts() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.waits = vec![Waited::NoChildren].into();
    assert_eq!(
        failed(sv.reap(&mut f)),
        "the runtime disappeared without being reaped"
    );

    let p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0)), Waited::NoChildren].into();
    goes_on(sv.reap(&mut f));
    assert!(matches!(sv.state(), State::Backoff { .. }));
}

#[test]
fn a_failed_wait_ends_supervision() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    f.wait_error = Some(io::ErrorKind::InvalidInput);
    let msg = failed(sv.reap(&mut f));
    assert!(msg.starts_with("wait failed: "), "{msg}");
}

#[test]
fn readiness_reached_prints_runtime_ready_once_then_stops_probing() {
    let p = with_tcp_readiness(1000);
    let mut f = fake(&p);
    f.tcp_ready_after = 2;
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 0);
    assert_eq!(sv.timeout_ms(f.clock), READINESS_POLL_MS);
    for _ in 0..2 {
        goes_on(tick(&mut sv, &mut f));
    }
    assert_eq!(f.probes, 2);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 0);
    goes_on(tick(&mut sv, &mut f));
    let ready = f.lines("stratos-phase runtime_ready");
    assert_eq!(ready.len(), 1);
    assert_eq!(
        f.console.last().unwrap(),
        "stratos-init: memory available 480000 KiB at runtime_ready"
    );
    // Ready: no more probes, no second phase line, the loop idles.
    for _ in 0..5 {
        goes_on(tick(&mut sv, &mut f));
    }
    assert_eq!(f.probes, 3);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
    assert_eq!(sv.timeout_ms(f.clock), IDLE_WAKE_MS);
}

#[test]
fn without_a_readiness_check_the_runtime_is_ready_at_start() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
    assert_eq!(sv.timeout_ms(f.clock), IDLE_WAKE_MS);
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.probes, 0);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
}

#[test]
fn a_runtime_late_to_be_ready_gets_one_warning_and_is_still_probed() {
    let p = with_tcp_readiness(1000);
    let mut f = fake(&p);
    f.tcp_ready_after = u32::MAX;
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    let deadline = f.clock + 1000 * MS;
    f.clock = deadline;
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.lines("stratos-init: warning:").len(), 0);
    for _ in 0..3 {
        f.clock += 100 * MS;
        goes_on(tick(&mut sv, &mut f));
    }
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: the runtime is not ready within its readiness timeout; still waiting"]
    );
    assert_eq!(f.probes, 4);
}

#[test]
fn readiness_is_not_probed_between_restarts() {
    let mut p = with_restart(RestartPolicy::Always, 5, 100, 1000);
    p.cfg.readiness = Some(Readiness::Tcp {
        port: 8080,
        timeout_ms: 1000,
    });
    let mut f = fake(&p);
    f.tcp_ready_after = u32::MAX;
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(sv.on_reaped(&mut f, 42, ExitKind::Exited(0)));
    // Waiting out the back-off, not polling for readiness.
    assert_eq!(sv.timeout_ms(f.clock), 100);
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.probes, 0);
    // The restarted runtime is probed at once.
    f.clock += 100 * MS;
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.probes, 1);
}

fn in_seccomp_log_mode() -> Prepared {
    let mut p = prepared(config());
    p.seccomp_log = true;
    p
}

#[test]
fn seccomp_audit_records_are_forwarded_in_log_mode() {
    let p = in_seccomp_log_mode();
    let mut f = fake(&p);
    f.audit = vec![
        vec![
            "audit: type=1326 syscall=83".to_owned(),
            "audit: type=1326 syscall=84".to_owned(),
        ],
        vec![],
        vec!["audit: type=1326 syscall=85".to_owned()],
    ]
    .into();
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    clear(&mut f);
    for _ in 0..3 {
        goes_on(tick(&mut sv, &mut f));
    }
    assert_eq!(
        f.console,
        [
            "stratos-init: seccomp-log: audit: type=1326 syscall=83",
            "stratos-init: seccomp-log: audit: type=1326 syscall=84",
            "stratos-init: seccomp-log: audit: type=1326 syscall=85",
        ]
    );
}

#[test]
fn an_unreadable_kernel_log_is_one_warning_then_no_more_reading() {
    let p = in_seccomp_log_mode();
    let mut f = fake(&p);
    f.audit = vec![vec!["audit: type=1326 syscall=83".to_owned()]].into();
    f.audit_error = Some(io::ErrorKind::PermissionDenied);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    clear(&mut f);
    for _ in 0..3 {
        goes_on(tick(&mut sv, &mut f));
    }
    // What was read before the failure is still printed, then the one warning.
    assert_eq!(
        f.console,
        [
            "stratos-init: seccomp-log: audit: type=1326 syscall=83",
            "stratos-init: warning: cannot read seccomp audit records from /dev/kmsg: permission denied; the calls the filter would deny are no longer reported",
        ]
    );
    assert_eq!(f.audit_calls, 1);
    // The runtime is unaffected.
    assert_eq!(sv.state(), State::Running { pid: 42 });
}

#[test]
fn the_kernel_log_is_not_read_unless_in_seccomp_log_mode() {
    let p = prepared(config());
    let mut f = fake(&p);
    let mut peak = MemoryPeak::default();
    let mut obs = Observer::default();
    let mut sv = Supervisor::start(&mut f, &p, 42, &mut peak, &mut obs);
    goes_on(tick(&mut sv, &mut f));
    assert_eq!(f.audit_calls, 0);
}
