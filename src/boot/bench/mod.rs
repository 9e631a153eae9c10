//! `stratos boot-test`: boot an image N times (A/B interleaved against a baseline), collect
//! phase markers, cold and warm invocations and memory, summarise, and gate on objectives.
//!
//! The steps, in order: [`measure`] the runs (each reduced to its [`metrics`]), make a
//! [`BootTestResult`](crate::boot_result::BootTestResult) of them ([`result`]: summaries, comparison, verdicts on the
//! [`Objectives`]), keep the consoles if a run failed, and show it ([`report`]). The document
//! itself is [`crate::boot_result`], which its readers use without this harness.

pub mod concurrent;
pub mod metrics;
pub mod objectives;
pub mod report;
pub mod result;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::boot::snapshot::Snapshot;
use crate::boot::vm::{free_port, Accel, Forward};
use crate::boot::{BootError, BootImage, Invoke, RunOptions};
use crate::boot_result::{Comparison, MetricSummary, RunRecord, RunSyscalls};
pub use metrics::{metrics_of, METRICS};
pub use objectives::{Objectives, RegressionGate, Slo};

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
    /// The body of each call, a POST (a Lambda function's event); `None`: GETs.
    pub event: Option<Vec<u8>>,
    pub guest_port: u16,
    pub invocations: usize,
    pub accel: Accel,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// The image side (B) restores this snapshot of the image instead of booting.
    pub restore: Option<Arc<Snapshot>>,
    /// How the baseline (A) is called, when not as the image is: its path and event (a Lambda
    /// function's invoke path and event against an HTTP function's GET).
    pub baseline_call: Option<Call>,
}

/// How a function is called: the path, the body of a POST (`None`: GETs), the guest port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: String,
    pub event: Option<Vec<u8>>,
    pub port: u16,
}

impl BenchOptions {
    /// The options the baseline's runs use: these, with the baseline's call.
    fn for_baseline(&self) -> std::borrow::Cow<'_, BenchOptions> {
        match &self.baseline_call {
            Some(call) => std::borrow::Cow::Owned(BenchOptions {
                invoke_path: call.path.clone(),
                event: call.event.clone(),
                guest_port: call.port,
                baseline_call: None,
                ..self.clone()
            }),
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// One measured run: the function on `host` called `count` times, then the VM stopped
    /// after `linger`; a restore of `restore` instead of a boot when given.
    pub(crate) fn run_options(
        &self,
        host: u16,
        count: usize,
        linger: Duration,
        restore: Option<Arc<Snapshot>>,
    ) -> RunOptions {
        RunOptions {
            accel: self.accel,
            memory_mib: self.memory_mib,
            forwards: vec![Forward {
                host,
                guest: self.guest_port,
            }],
            timeout: self.timeout,
            echo: crate::boot::vm::Echo::Off,
            interactive: false,
            invoke: Some(Invoke {
                host_port: host,
                path: self.invoke_path.clone(),
                count,
                event: self.event.clone(),
            }),
            stop_after_invoke: true,
            linger,
            cmdline: None,
            until_line: None,
            restore,
            hold: None,
        }
    }
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
            let r = run_once(img, i, &o.for_baseline(), None)?;
            on_run(Side::Baseline, i, img, &r);
            runs.baseline.push(r);
        }
        let r = run_once(&images.image, i, o, o.restore.clone())?;
        on_run(Side::Image, i, &images.image, &r);
        runs.image.push(r);
    }
    Ok(runs)
}

/// Boots once (or restores `restore`) and records.
pub fn run_once(
    image: &BootImage,
    index: usize,
    o: &BenchOptions,
    restore: Option<Arc<Snapshot>>,
) -> Result<RunRecord, BootError> {
    // The runtime must stay up for a moment after the calls (a runtime that dies right after
    // answering fails the run), and the init reports the memory high-water mark.
    let opts = o.run_options(
        free_port()?,
        o.invocations,
        Duration::from_millis(1200),
        restore,
    );
    let run = crate::boot::run(image, &opts)?;
    let metrics = metrics_of(&run);
    let bad_status = run
        .invocations
        .iter()
        .map(|i| i.status)
        .find(|s| !(200..300).contains(s));
    let function_error = run
        .invocations
        .iter()
        .find_map(|i| i.function_error.clone());
    let syscalls = image
        .manifest
        .observe
        .is_some()
        .then(|| RunSyscalls::of(&run.readings));
    let failure = if let Some(status) = bad_status {
        Some(format!("the function answered HTTP {status}"))
    } else if let Some(e) = function_error {
        Some(format!("the function failed (X-Amz-Function-Error: {e})"))
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
