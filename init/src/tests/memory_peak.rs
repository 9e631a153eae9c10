//! The runtime's memory peak: reported while it grows and at the end; a cgroup write or a
//! `memory.peak` read that fails is one warning, never silence.

use std::io;

use stratos_wire::Limits;

use super::{config, run_with, Fake};
use crate::boot::{boot, Outcome};
use crate::cgroup::{Cgroup, MemoryPeak};
use crate::sys::{ExitKind, Waited};

const PEAK: &str = "/sys/fs/cgroup/runtime/memory.peak";
const SECOND: u64 = 1_000_000_000;

/// A boot whose runtime runs a few seconds (the fake's clock moves 1 s per idle wake-up).
fn run_a_while(f: &mut Fake) -> Outcome {
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 5).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(f)
}

#[test]
fn a_healthy_boot_prints_no_warning() {
    let (f, _) = run_with(vec![Waited::Reaped(42, ExitKind::Exited(0))]);
    assert_eq!(f.lines("stratos-init: warning:"), Vec::<&str>::new());
}

#[test]
fn a_memory_controller_that_cannot_be_enabled_is_one_warning() {
    let mut f = Fake::new(&config());
    f.failing_writes = vec![(
        "/sys/fs/cgroup/cgroup.subtree_control".into(),
        io::ErrorKind::PermissionDenied,
    )];
    f.unreadable.push(PEAK.into());
    let o = run_a_while(&mut f);
    assert!(matches!(o, Outcome::Runtime(ExitKind::Exited(0))), "{o:?}");
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: cannot enable the memory controller for the runtime's cgroup: permission denied; its memory peak will not be reported"]
    );
    assert_eq!(f.lines("stratos-init: memory peak"), Vec::<&str>::new());
}

#[test]
fn an_unreadable_memory_peak_is_one_warning() {
    let mut f = Fake::new(&config());
    f.unreadable.push(PEAK.into());
    run_a_while(&mut f);
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: no memory peak for the runtime: cannot read /sys/fs/cgroup/runtime/memory.peak: entity not found"]
    );
}

#[test]
fn a_memory_peak_that_is_not_a_number_is_one_warning() {
    let mut f = Fake::new(&config());
    f.memory_peak = b"max\n".to_vec();
    run_a_while(&mut f);
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: no memory peak for the runtime: /sys/fs/cgroup/runtime/memory.peak holds \"max\", not a number of bytes"]
    );
}

#[test]
fn limits_without_the_memory_controller_expect_no_peak() {
    let mut cfg = config();
    cfg.limits = Limits {
        pids_max: Some(64),
        ..Limits::default()
    };
    let mut f = Fake::new(&cfg);
    f.unreadable.push(PEAK.into());
    run_a_while(&mut f);
    assert_eq!(f.lines("stratos-init: warning:"), Vec::<&str>::new());
}

#[test]
fn a_boot_that_fails_before_the_runtime_has_no_peak_to_warn_about() {
    let mut f = Fake::new(&config());
    f.config = None;
    f.unreadable.push(PEAK.into());
    let o = boot(&mut f);
    assert!(matches!(o, Outcome::Fatal(_)), "{o:?}");
    assert_eq!(f.lines("stratos-init: warning:"), Vec::<&str>::new());
}

#[test]
fn the_peak_is_reported_about_once_a_second_when_it_grew_by_5_percent() {
    let mut f = Fake::new(&config());
    let mut peak = MemoryPeak::new(Cgroup {
        made: true,
        memory: true,
    });
    let set = |f: &mut Fake, n: u64| f.memory_peak = format!("{n}\n").into_bytes();
    set(&mut f, 1_000_000);
    peak.tick(&mut f, SECOND);
    set(&mut f, 2_000_000);
    peak.tick(&mut f, SECOND + SECOND / 2); // not a second yet
    peak.tick(&mut f, 2 * SECOND);
    set(&mut f, 2_090_000); // +4.5%
    peak.tick(&mut f, 3 * SECOND);
    set(&mut f, 2_200_000); // +10%
    peak.tick(&mut f, 4 * SECOND);
    peak.report(&mut f);
    assert_eq!(
        f.lines("stratos-init: memory peak"),
        [
            "stratos-init: memory peak 1000000 bytes (976 KiB) in the runtime's cgroup",
            "stratos-init: memory peak 2000000 bytes (1953 KiB) in the runtime's cgroup",
            "stratos-init: memory peak 2200000 bytes (2148 KiB) in the runtime's cgroup",
            "stratos-init: memory peak 2200000 bytes (2148 KiB) in the runtime's cgroup",
        ]
    );
}
