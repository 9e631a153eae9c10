//! `stratos boot-test`: boot an image N times (A/B interleaved against a baseline), collect
//! phase markers, cold and warm invocations and memory, summarise, and gate on objectives.
//!
//! The steps, in order: [`measure`] the runs, make a [`BootTestResult`] of them (summaries,
//! comparison, verdicts on the [`Objectives`]), keep the consoles if a run failed, and show it
//! ([`report`]).

pub mod concurrent;
pub mod objectives;
pub mod report;
pub mod result;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::boot::run::Readings;
use crate::boot::snapshot::Snapshot;
use crate::boot::vm::{free_port, Accel, Forward};
use crate::boot::{BootError, BootImage, BootRun, Invoke, RunOptions};
pub use objectives::{Objectives, RegressionGate, Slo, Verdict};
pub use result::{BootTestResult, ImageInfo};
use stats::Summary;

/// The JSON result's schema identifier.
pub const SCHEMA: &str = "stratos-boot-test/1";

/// The unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "ms")]
    Ms,
    #[serde(rename = "KiB")]
    KiB,
    /// System calls.
    #[serde(rename = "calls")]
    Calls,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::KiB => "KiB",
            Unit::Calls => "calls",
        }
    }
}

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

/// Why a boot test could not produce a result (a run that fails is a result, not this).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Boot(#[from] BootError),
    /// SIGINT or SIGTERM between two runs.
    #[error("interrupted after {done} of {of} runs")]
    Interrupted { done: usize, of: usize },
    /// The image's manifest could not be read again to pin the result to it.
    #[error("{0}")]
    Manifest(crate::fsio::ReadError),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    pub invoke_path: String,
    pub guest_port: u16,
    pub invocations: usize,
    pub accel: Accel,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// The image side (B) restores this snapshot of the image instead of booting.
    pub restore: Option<Arc<Snapshot>>,
}

/// The image under test (B) and the baseline it is compared with (A), if any.
pub struct Images {
    pub image: BootImage,
    pub baseline: Option<BootImage>,
}

/// Which of the two images a run booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The baseline (A).
    Baseline,
    /// The image under test (B).
    Image,
}

impl Side {
    /// `A` or `B`, as the progress lines say.
    pub fn letter(self) -> &'static str {
        match self {
            Side::Baseline => "A",
            Side::Image => "B",
        }
    }
}

/// Every run, per image, in the order they booted.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    pub baseline: Vec<RunRecord>,
    pub image: Vec<RunRecord>,
}

/// One boot's numbers (or why it failed), and its console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub index: usize,
    pub image: String,
    pub ok: bool,
    pub failure: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// `[observe]`: the runtime's system calls by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<RunSyscalls>,
    /// The console, kept in a file of its own (see [`BootTestResult::keep_logs_if_failed`]).
    #[serde(skip)]
    pub log: String,
}

/// One run's system calls by name, from the init's readings (`[observe]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSyscalls {
    /// From the runtime's `execve` through its first answer.
    pub cold_start: BTreeMap<String, u64>,
    /// Through the last answer.
    pub total: BTreeMap<String, u64>,
    /// Through the last answer, per call: the non-empty log2 latency buckets (`[bucket,
    /// count]`, bucket b: 2^b to 2^(b+1) ns), when the image times them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_log2_ns: BTreeMap<String, Vec<(u32, u64)>>,
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

/// Boots the images `o.runs` times each, interleaved (A B A B …, so drift on the host hits
/// both alike), calling `on_run` after each boot. Stops between runs when asked to (SIGINT,
/// SIGTERM).
pub fn measure(
    images: &Images,
    o: &BenchOptions,
    mut on_run: impl FnMut(Side, usize, &BootImage, &RunRecord),
) -> Result<Runs, BenchError> {
    let mut runs = Runs::default();
    for i in 0..o.runs {
        if crate::boot::stop_requested() {
            return Err(BenchError::Interrupted {
                done: i,
                of: o.runs,
            });
        }
        if let Some(img) = &images.baseline {
            let r = run_once(img, i, o, None)?;
            on_run(Side::Baseline, i, img, &r);
            runs.baseline.push(r);
        }
        let r = run_once(&images.image, i, o, o.restore.clone())?;
        on_run(Side::Image, i, &images.image, &r);
        runs.image.push(r);
    }
    Ok(runs)
}

/// Reduces a boot to metrics (milliseconds; memory in KiB). Guest phases are CLOCK_BOOTTIME
/// since the kernel started; host times count from spawning QEMU. A restore's `resumed` and
/// `restored` are host times too (the guest's clock counts from the snapshotted boot).
pub fn metrics_of(run: &BootRun) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    // Malformed phase markers are not dropped: `run_once` makes them the run's failure.
    if let Ok(phases) = &run.phases {
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
    // From the control channel (what the init measured), never from the console.
    if let Some(p) = run.memory_peak {
        m.insert("memory_peak".into(), p as f64 / 1024.0);
    }
    if let Some(kib) = run.mem_available_kib {
        m.insert("mem_available".into(), kib as f64);
    }
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
    m
}

/// Boots once (or restores `restore`) and records.
pub fn run_once(
    image: &BootImage,
    index: usize,
    o: &BenchOptions,
    restore: Option<Arc<Snapshot>>,
) -> Result<RunRecord, BootError> {
    let host = free_port()?;
    let opts = RunOptions {
        accel: o.accel,
        memory_mib: o.memory_mib,
        forwards: vec![Forward {
            host,
            guest: o.guest_port,
        }],
        timeout: o.timeout,
        echo: false,
        interactive: false,
        invoke: Some(Invoke {
            host_port: host,
            path: o.invoke_path.clone(),
            count: o.invocations,
        }),
        stop_after_invoke: true,
        // The runtime must stay up for a moment after the calls (a runtime that dies right
        // after answering fails the run), and the init reports the memory high-water mark.
        linger: Duration::from_millis(1200),
        cmdline: None,
        until_line: None,
        restore,
        hold: None,
    };
    let run = crate::boot::run(image, &opts)?;
    let metrics = metrics_of(&run);
    let bad_status = run
        .invocations
        .iter()
        .map(|i| i.status)
        .find(|s| !(200..300).contains(s));
    let syscalls = image
        .manifest
        .observe
        .is_some()
        .then(|| RunSyscalls::of(&run.readings));
    let failure = if let Some(status) = bad_status {
        Some(format!("the function answered HTTP {status}"))
    } else if run.invocations.len() < o.invocations {
        Some(run.failure_reason())
    } else if let Err(e) = &run.phases {
        Some(format!("malformed phases: {e}"))
    } else if let Some(why) = run.health_failure() {
        // The answers came, but the runtime did not stay up through the run (or the init's
        // readings contradict each other): not a healthy image.
        Some(why)
    } else if let Some(Err(e)) = &syscalls {
        // The image observes: a run without its counts would pass syscall objectives unseen.
        Some(format!("[observe]: {e}"))
    } else {
        None
    };
    Ok(RunRecord {
        index,
        image: image.manifest.image.name.clone(),
        ok: failure.is_none(),
        // Shown on the operator's terminal: never raw guest bytes.
        failure: failure.map(|f| stratos_wire::control::printable(f.as_bytes())),
        metrics,
        syscalls: syscalls.and_then(Result::ok),
        log: run.log(),
    })
}

/// Per-metric summaries of a set of runs (successful runs only).
pub fn summarise(runs: &[RunRecord]) -> BTreeMap<String, MetricSummary> {
    let mut out = BTreeMap::new();
    for (name, unit) in METRICS {
        let samples: Vec<f64> = runs
            .iter()
            .filter(|r| r.ok)
            .filter_map(|r| r.metrics.get(*name).copied())
            .collect();
        if let Some(s) = stats::summary(&samples) {
            out.insert(
                (*name).to_owned(),
                MetricSummary {
                    unit: *unit,
                    summary: s,
                    samples,
                },
            );
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub unit: Unit,
    #[serde(flatten)]
    pub summary: Summary,
    pub samples: Vec<f64>,
}

/// The image's value over the baseline's (B/A) per metric, pair by pair: below 1 the image is
/// faster (or smaller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// image/baseline for each A/B pair where both booted.
    pub ratios: Vec<f64>,
    /// Their median.
    pub median_ratio: f64,
    /// 95% bootstrap interval of the median ratio (None with fewer than 2 pairs).
    pub ci95: Option<(f64, f64)>,
}

pub fn compare(a: &[RunRecord], b: &[RunRecord]) -> BTreeMap<String, Comparison> {
    let mut out = BTreeMap::new();
    for (name, _) in METRICS {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.ok && y.ok)
            .filter_map(|(x, y)| Some(y.metrics.get(*name)? / x.metrics.get(*name)?))
            .filter(|r| r.is_finite())
            .collect();
        if let Some(median_ratio) = stats::median(&ratios) {
            out.insert(
                (*name).to_owned(),
                Comparison {
                    ci95: stats::bootstrap_median_ci(&ratios, 0.95, 2000),
                    ratios,
                    median_ratio,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::objectives::{check_gates, check_slos, parse_gates, parse_slos};
    use super::*;

    fn rec(i: usize, v: f64) -> RunRecord {
        RunRecord {
            index: i,
            image: "x".into(),
            ok: true,
            failure: None,
            metrics: [("runtime_ready".to_owned(), v)].into_iter().collect(),
            syscalls: None,
            log: String::new(),
        }
    }

    #[test]
    fn gates_and_slos() {
        let a: Vec<RunRecord> = (0..5).map(|i| rec(i, 1000.0 + i as f64)).collect();
        let b: Vec<RunRecord> = (0..5).map(|i| rec(i, 500.0 + i as f64)).collect();
        let c = compare(&a, &b);
        let r = &c["runtime_ready"];
        assert!((r.median_ratio - 0.5).abs() < 0.01);
        let s = summarise(&b);
        let v = check_slos(&parse_slos("runtime_ready.p95=100ms").unwrap(), &s);
        assert!(!v[0].passed);
        let v = check_slos(&parse_slos("runtime_ready.p95=10s").unwrap(), &s);
        assert!(v[0].passed);
        let v = check_gates(&parse_gates("runtime_ready=10%").unwrap(), &c);
        assert!(v[0].passed);
        let worse = compare(&b, &a);
        assert!(!check_gates(&parse_gates("runtime_ready=10%").unwrap(), &worse)[0].passed);
        let t = report::table(&s, Some(&summarise(&a)), Some(&c), true);
        assert!(t.contains("| runtime_ready | ms |"), "{t}");
    }
}
