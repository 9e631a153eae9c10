//! The result of `stratos boot-test` as one document, schema `stratos-boot-test/1`
//! (`docs/boot-test.schema.json`): written by the command (`--json-out`) and read back by the
//! rollout gate (`stratos rollout advance --gate`), `stratos seccomp suggest` and a node's
//! health report, all through [`BootTestResult`].
//!
//! Data and its serde only: it imports nothing of the crate but the digest type, so its readers
//! do not depend on the boot harness (`boot::bench`), which produces it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;

/// The JSON result's schema identifier.
pub const SCHEMA: &str = "stratos-boot-test/1";

/// Everything one boot test measured and decided. Fields that are null without a baseline are
/// `Option`s; a reader tolerates fields it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootTestResult {
    /// [`SCHEMA`].
    pub schema: String,
    /// The image under test (B).
    pub image: ImageInfo,
    /// The image it was compared with (A).
    pub baseline: Option<ImageInfo>,
    /// The image's runs restored this snapshot of it instead of booting (the baseline booted).
    #[serde(default)]
    pub snapshot: Option<SnapshotInfo>,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Boots per image.
    pub runs: usize,
    /// Invocations per boot (the first is the cold start).
    pub invocations: usize,
    /// The HTTP path invoked.
    pub invoke: String,
    /// The baseline's, when it was called otherwise (`--baseline-invoke`, `--baseline-event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_invoke: Option<String>,
    pub memory_mib: u32,
    /// The image's runs, per metric (successful runs only).
    pub metrics: BTreeMap<String, MetricSummary>,
    /// The baseline's runs, per metric.
    pub baseline_metrics: Option<BTreeMap<String, MetricSummary>>,
    /// image/baseline per metric.
    pub comparison: Option<BTreeMap<String, Comparison>>,
    /// The verdict on every objective (`--slo`, `--max-regression`).
    pub objectives: Vec<Verdict>,
    /// Every run: the baseline's, then the image's.
    pub runs_detail: Vec<RunRecord>,
    /// N clones of the snapshot against N booted VMs, at once (`--concurrent N`).
    #[serde(default)]
    pub concurrent: Option<Concurrent>,
    /// The console logs kept because a run failed.
    pub logs: Vec<String>,
    /// Every run booted and every objective holds.
    pub passed: bool,
}

impl BootTestResult {
    /// The runs that failed, the baseline's first.
    pub fn failed_runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs_detail.iter().filter(|r| !r.ok)
    }

    /// What failed: every objective that did not hold, every run that failed, every VM of the
    /// concurrency measurement that did not answer.
    pub fn failures(&self) -> Vec<String> {
        let objectives = self
            .objectives
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("{} ({})", v.objective, v.reason));
        let runs = self
            .failed_runs()
            .map(|r| format!("run {} of {}: {}", r.index, r.image, r.failure_text()));
        let concurrent = self.concurrent.iter().flat_map(Concurrent::failures);
        objectives.chain(runs).chain(concurrent).collect()
    }

    /// The document as `--json` writes it: pretty JSON, keys sorted at every level (through
    /// [`serde_json::Value`], whose maps are sorted), a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).expect("plain data");
        let mut bytes = serde_json::to_vec_pretty(&v).expect("plain data");
        bytes.push(b'\n');
        bytes
    }

    pub fn from_json(bytes: &[u8]) -> Result<BootTestResult, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The snapshot a result's restores came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot directory as given.
    pub dir: String,
    /// sha256 of its snapshot.json (which pins the RAM and state files by digest).
    pub snapshot_sha256: Sha256,
    /// The warm-up calls made before it was saved.
    pub warm: Vec<String>,
    /// Whether its signature and the digests of its files were checked (`--verify --image-key`)
    /// before the runs: a result from a snapshot that was not cannot pass a rollout gate.
    /// Absent (older results): not verified.
    #[serde(default)]
    pub verified: bool,
    /// The key that signed it, when verified.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// Which image a result is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image directory as given.
    pub dir: Option<String>,
    /// sha256 of the image's manifest.json: ties the result to one exact image (the rollout
    /// gate checks it).
    pub manifest_sha256: Option<Sha256>,
    pub name: String,
    pub version: String,
    /// The QEMU machine it booted on (`microvm`, `q35`).
    pub machine: String,
    /// Artifact name → size in bytes.
    pub sizes: BTreeMap<String, u64>,
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

impl RunRecord {
    /// Why the run failed (`failed` when it does not say).
    pub fn failure_text(&self) -> &str {
        self.failure.as_deref().unwrap_or("failed")
    }
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

/// The summary of one metric over a set of runs, with its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub unit: Unit,
    #[serde(flatten)]
    pub summary: Summary,
    pub samples: Vec<f64>,
}

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

/// min, p50, p95, p99, max.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "min" => self.min,
            "p50" | "median" => self.p50,
            "p95" => self.p95,
            "p99" => self.p99,
            "max" => self.max,
            _ => return None,
        })
    }
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

/// The verdict on one objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub objective: String,
    pub value: Option<f64>,
    pub passed: bool,
    pub reason: String,
}

/// Both groups of one concurrency measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Concurrent {
    /// VMs per group.
    pub count: usize,
    /// Restored from the snapshot.
    pub restored: Group,
    /// Booted from the image.
    pub booted: Group,
    /// restored.pss_kib_total / booted.pss_kib_total (null if either group had a failure).
    pub pss_ratio: Option<f64>,
}

impl Concurrent {
    /// Whether every VM of both groups answered.
    pub fn all_answered(&self) -> bool {
        self.restored.answered == self.count && self.booted.answered == self.count
    }

    /// Every failure, named by group.
    pub fn failures(&self) -> Vec<String> {
        let named = |what: &str, g: &Group| {
            g.failures
                .iter()
                .map(|f| format!("{} concurrent {what}: {f}", self.count))
                .collect::<Vec<_>>()
        };
        let mut out = named("restores", &self.restored);
        out.extend(named("boots", &self.booted));
        out
    }
}

/// One group of VMs running together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// VMs that answered their call.
    pub answered: usize,
    /// Each answering VM's QEMU PSS in KiB, read while all of them ran.
    pub pss_kib: Vec<f64>,
    /// Their sum.
    pub pss_kib_total: f64,
    /// Each answering VM's time from spawning QEMU to its answer, ms.
    pub first_response_ms: Vec<f64>,
    /// Why the others did not answer.
    pub failures: Vec<String>,
}
