//! What a boot's numbers are: the metrics, their units and order, and how one boot is reduced to
//! them (and to its system calls by name, for an image that observes).

use std::collections::BTreeMap;

use super::stats;
use crate::boot::run::Readings;
use crate::boot::BootRun;
use crate::boot_result::{RunSyscalls, Unit};

/// Metrics in the order they are shown, with their unit.
pub const METRICS: &[(&str, Unit)] = &[
    ("init_start", Unit::Ms),
    ("entropy_ready", Unit::Ms),
    ("entropy_wait", Unit::Ms),
    ("mounts_done", Unit::Ms),
    ("zram_ready", Unit::Ms),
    ("preload_started", Unit::Ms),
    ("runtime_exec", Unit::Ms),
    ("runtime_ready", Unit::Ms),
    ("init_to_exec", Unit::Ms),
    ("ready_seen", Unit::Ms),
    ("resumed", Unit::Ms),
    ("restored", Unit::Ms),
    ("first_response", Unit::Ms),
    ("cold_start", Unit::Ms),
    ("warm", Unit::Ms),
    ("memory_peak", Unit::KiB),
    ("mem_available", Unit::KiB),
    ("syscalls.ready", Unit::Calls),
    ("syscalls.cold_start", Unit::Calls),
    ("syscalls.warm", Unit::Calls),
    ("syscalls.total", Unit::Calls),
];

/// Reduces a boot to metrics (milliseconds; memory in KiB). Guest phases are CLOCK_BOOTTIME
/// since the kernel started; host times count from spawning QEMU. A restore's `resumed` and
/// `restored` are host times too (the guest's clock counts from the snapshotted boot).
pub fn metrics_of(run: &BootRun) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    phase_metrics(run, &mut m);
    host_metrics(run, &mut m);
    // From the control channel (what the init measured), never from the console.
    if let Some(p) = run.memory_peak {
        m.insert("memory_peak".into(), p as f64 / 1024.0);
    }
    if let Some(kib) = run.mem_available_kib {
        m.insert("mem_available".into(), kib as f64);
    }
    syscall_metrics(run, &mut m);
    m
}

/// The guest's phases, and the spans between some of them.
fn phase_metrics(run: &BootRun, m: &mut BTreeMap<String, f64>) {
    // Malformed phase markers are not dropped: `run_once` makes them the run's failure.
    let Ok(phases) = &run.phases else { return };
    for p in phases.iter().filter(|p| p.name != "restored") {
        m.insert(p.name.clone(), p.ns as f64 / 1e6);
    }
    let get = |n: &str| {
        phases
            .iter()
            .find(|p| p.name == n)
            .map(|p| p.ns as f64 / 1e6)
    };
    if let (Some(a), Some(b)) = (get("init_start"), get("runtime_exec")) {
        m.insert("init_to_exec".into(), b - a);
    }
    // How long the init saw the random pool not ready (0 when it was ready before it ran).
    if let (Some(a), Some(e)) = (get("init_start"), get("entropy_ready")) {
        m.insert("entropy_wait".into(), (e - a).max(0.0));
    }
}

/// What the host saw, since it spawned QEMU: readiness, a restore's resume, the answers.
fn host_metrics(run: &BootRun, m: &mut BTreeMap<String, f64>) {
    let seen = |phase: &str| run.phase_seen.get(phase).map(|t| t.as_secs_f64() * 1e3);
    if let Some(t) = seen("runtime_ready") {
        m.insert("ready_seen".into(), t);
    }
    if let Some(r) = run.resumed {
        m.insert("resumed".into(), r.as_secs_f64() * 1e3);
        if let Some(t) = seen("restored") {
            m.insert("restored".into(), t);
        }
    }
    if let Some(f) = run.first_response {
        m.insert("first_response".into(), f.as_secs_f64() * 1e3);
    }
    if let Some(first) = run.invocations.first() {
        m.insert("cold_start".into(), first.latency_ms);
    }
    let warm: Vec<f64> = run
        .invocations
        .iter()
        .skip(1)
        .map(|i| i.latency_ms)
        .collect();
    if let Some(w) = stats::median(&warm) {
        m.insert("warm".into(), w);
    }
}

/// The runtime's system call totals from the init's readings: at ready, through the first
/// answer, through the last, and per warm call.
fn syscall_metrics(run: &BootRun, m: &mut BTreeMap<String, f64>) {
    let total = |i: Option<usize>| {
        i.and_then(|i| run.readings.all.get(i))
            .and_then(|m| m.syscalls_total)
    };
    if let Some(n) = run.readings.ready().and_then(|m| m.syscalls_total) {
        m.insert("syscalls.ready".into(), n as f64);
    }
    let (first, last) = (
        total(run.readings.after_first),
        total(run.readings.after_last),
    );
    if let Some(n) = first {
        m.insert("syscalls.cold_start".into(), n as f64);
    }
    if let Some(n) = last {
        m.insert("syscalls.total".into(), n as f64);
    }
    // Per warm call: what the calls after the first added, divided among them.
    if let (Some(a), Some(b), warm @ 1..) = (first, last, run.invocations.len().saturating_sub(1)) {
        m.insert(
            "syscalls.warm".into(),
            b.saturating_sub(a) as f64 / warm as f64,
        );
    }
}

impl RunSyscalls {
    /// From a boot's readings; why not, when the image observes and they are missing.
    pub fn of(r: &Readings) -> Result<RunSyscalls, String> {
        if let Some(e) = &r.error {
            return Err(e.clone());
        }
        let reading = |i: Option<usize>, what: &str| {
            let m = i
                .and_then(|i| r.all.get(i))
                .ok_or_else(|| format!("no metrics reading after the {what} answer"))?;
            if let Some(e) = &m.observe_error {
                return Err(format!("no system call counts: {e}"));
            }
            m.syscalls
                .clone()
                .map(|s| (s, m.latency.clone().unwrap_or_default()))
                .ok_or_else(|| {
                    format!("the reading after the {what} answer has no system call counts")
                })
        };
        let (cold_start, _) = reading(r.after_first, "first")?;
        let (total, latency_log2_ns) = reading(r.after_last, "last")?;
        Ok(RunSyscalls {
            cold_start,
            total,
            latency_log2_ns,
        })
    }
}
