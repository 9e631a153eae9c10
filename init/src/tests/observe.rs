//! `[observe]`: the programs are loaded and attached before the runtime starts, metrics lines
//! at ready, on request and at shutdown; a refused program is reported with its verifier log
//! and the function still runs.

use stratos_wire::{Metrics, MetricsReason, Observe, METRICS_PREFIX};

use super::{config, Call, Fake};
use crate::boot::{boot, Outcome};
use crate::sys::{ExitKind, Waited, SIGMETRICS};

fn observing(latency: bool) -> Fake {
    let mut cfg = config();
    cfg.observe = Some(Observe {
        syscalls: true,
        latency,
    });
    Fake::new(&cfg)
}

/// A call's number on the architecture the init is built for (the table it names counts by).
fn nr(name: &str) -> usize {
    stratos_wire::syscalls::number(name).unwrap() as usize
}

fn metrics(f: &Fake) -> Vec<Metrics> {
    f.lines(METRICS_PREFIX)
        .iter()
        .map(|l| Metrics::from_json(&l[METRICS_PREFIX.len() + 1..]).unwrap())
        .collect()
}

#[test]
fn programs_are_attached_before_the_runtime_starts_and_counted_by_name() {
    let mut f = observing(true);
    // The counter map is the first descriptor (101): accept4 twice, read 5 times (x86-64's
    // 288 and 0, arm64's 242 and 63).
    let mut counts = vec![0u64; 512];
    counts[nr("accept4")] = 2;
    counts[nr("read")] = 5;
    f.bpf_values.insert(101, counts);
    let mut lat = vec![0u64; 512 * 32];
    lat[nr("accept4") * 32 + 31] = 1;
    lat[nr("accept4") * 32 + 12] = 1;
    f.bpf_values.insert(103, lat);
    f.signals = vec![None, Some(SIGMETRICS)].into();
    f.waits = vec![
        Waited::NoneReady,
        Waited::NoneReady,
        Waited::Reaped(42, ExitKind::Exited(0)),
    ]
    .into();
    let o = boot(&mut f);
    assert!(matches!(o, Outcome::Runtime(ExitKind::Exited(0))), "{o:?}");
    let attach = f
        .calls
        .iter()
        .position(|c| matches!(c, Call::BpfAttach(..)))
        .unwrap();
    let spawn = f
        .calls
        .iter()
        .position(|c| matches!(c, Call::Spawn(..)))
        .unwrap();
    assert!(attach < spawn, "{:?}", f.calls);
    let bpf: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::BpfMap(_) | Call::BpfAttach(..)))
        .collect();
    assert_eq!(
        bpf,
        [
            &Call::BpfMap("stratos_counts".into()),
            &Call::BpfMap("stratos_starts".into()),
            &Call::BpfMap("stratos_latency".into()),
            &Call::BpfAttach("sys_enter".into(), 104),
            &Call::BpfAttach("sys_exit".into(), 105),
        ]
    );
    let m = metrics(&f);
    let reasons: Vec<MetricsReason> = m.iter().map(|m| m.reason).collect();
    assert_eq!(
        reasons,
        [
            MetricsReason::Ready,
            MetricsReason::Request,
            MetricsReason::Shutdown
        ]
    );
    assert_eq!(m.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let last = &m[2];
    assert_eq!(last.syscalls_total, Some(7));
    let names = last.syscalls.as_ref().unwrap();
    assert_eq!(names["accept4"], 2);
    assert_eq!(names["read"], 5);
    assert_eq!(
        last.latency.as_ref().unwrap()["accept4"],
        [(12, 1), (31, 1)]
    );
    assert!(last.coldstart);
    assert_eq!(last.mem_usage, Some(1_048_576));
    assert!(last.phases_ns.contains_key("runtime_exec"));
    assert!(last.phases_ns.contains_key("runtime_ready"));
    assert!(last.init_duration.is_some());
    assert_eq!(last.observe_error, None);
}

#[test]
fn a_refused_program_prints_the_verifier_log_and_the_function_still_runs() {
    let mut f = observing(false);
    f.bpf_refuse = Some("0: (bf) r6 = r1\nR1 invalid mem access 'scalar'\n".into());
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    let o = boot(&mut f);
    assert!(matches!(o, Outcome::Runtime(ExitKind::Exited(0))), "{o:?}");
    let err = f.lines("stratos-init: error: [observe]");
    assert_eq!(err.len(), 1, "{:?}", f.console);
    assert!(
        err[0].contains("the kernel refused the sys_enter program"),
        "{}",
        err[0]
    );
    assert!(
        err[0].contains("verifier log:\n0: (bf) r6 = r1\nR1 invalid mem access"),
        "{}",
        err[0]
    );
    assert!(!f.calls.iter().any(|c| matches!(c, Call::BpfAttach(..))));
    let m = metrics(&f);
    assert!(!m.is_empty());
    for m in m {
        assert_eq!(m.syscalls, None);
        assert!(m.observe_error.as_deref().unwrap().contains("verifier log"));
    }
}

#[test]
fn without_observe_there_are_no_programs_and_no_metrics_lines() {
    let mut f = Fake::new(&config());
    f.signals = vec![Some(SIGMETRICS)].into();
    f.waits = vec![Waited::NoneReady, Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    assert!(!f
        .calls
        .iter()
        .any(|c| matches!(c, Call::BpfMap(_) | Call::BpfLoad(..))));
    assert_eq!(f.lines(METRICS_PREFIX), Vec::<&str>::new());
}

#[test]
fn a_metrics_request_on_the_restore_channel_signals_pid_1() {
    let mut f = observing(false);
    crate::restore::apply(&mut f, stratos_wire::METRICS_REQUEST);
    assert_eq!(f.calls, [Call::Signal(1, SIGMETRICS)]);
    assert!(f.console.is_empty(), "{:?}", f.console);
}

#[test]
fn the_childs_seccomp_call_before_exec_is_not_the_runtimes() {
    let mut cfg = config();
    cfg.observe = Some(Observe {
        syscalls: true,
        latency: false,
    });
    cfg.seccomp = Some(stratos_wire::Seccomp {
        filter: "/etc/stratos/seccomp.bpf".into(),
        mode: stratos_wire::SeccompMode::Enforce,
    });
    let mut f = Fake::new(&cfg);
    f.files.insert(
        "/etc/stratos/seccomp.bpf".into(),
        vec![0x06, 0, 0, 0, 0, 0, 0xff, 0x7f],
    );
    // seccomp: the child's one call, and one the runtime made itself.
    let mut counts = vec![0u64; 512];
    counts[nr("seccomp")] = 2;
    counts[nr("read")] = 1;
    f.bpf_values.insert(101, counts);
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    let m = metrics(&f);
    let last = m.last().unwrap();
    assert_eq!(last.syscalls.as_ref().unwrap()["seccomp"], 1, "{last:?}");
    assert_eq!(last.syscalls_total, Some(2));
}

#[test]
fn the_ready_reading_is_taken_before_the_ready_line() {
    let mut f = observing(false);
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    let ready = metrics(&f)
        .into_iter()
        .find(|m| m.reason == MetricsReason::Ready)
        .unwrap();
    // The fake clock moves with every console line: the reading is older than the phase.
    assert!(
        ready.time_ns < ready.phases_ns["runtime_ready"],
        "{ready:?}"
    );
}
