//! The result of `stratos boot-test` as one document, schema `stratos-boot-test/1`
//! (`docs/boot-test.schema.json`): written by the command (`--json`) and read back by the
//! rollout gate (`stratos rollout advance --gate`), both through [`BootTestResult`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::concurrent::Concurrent;
use super::objectives::{Objectives, Verdict};
use super::{
    compare, summarise, BenchError, BenchOptions, Comparison, Images, MetricSummary, RunRecord,
    Runs, SCHEMA,
};
use crate::boot::snapshot::Snapshot;
use crate::boot::BootImage;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::MANIFEST_FILE;
use crate::sign::sha256_hex;

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

/// The snapshot a result's restores came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot directory as given.
    pub dir: String,
    /// sha256 of its snapshot.json (which pins the RAM and state files by digest).
    pub snapshot_sha256: String,
    /// The warm-up calls made before it was saved.
    pub warm: Vec<String>,
    /// Whether its signature and the digests of its files were checked (`--verify --pubkey`)
    /// before the runs: a result from a snapshot that was not cannot pass a rollout gate.
    /// Absent (older results): not verified.
    #[serde(default)]
    pub verified: bool,
    /// The key that signed it, when verified.
    #[serde(default)]
    pub key_id: Option<String>,
}

impl SnapshotInfo {
    pub fn of(s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            dir: s.dir.display().to_string(),
            snapshot_sha256: sha256_hex(&s.bytes),
            warm: s.meta.warm.clone(),
            verified: s.verified_by().is_some(),
            key_id: s.verified_by().map(|k| k.as_str().to_owned()),
        }
    }
}

/// Which image a result is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image directory as given.
    pub dir: Option<String>,
    /// sha256 of the image's manifest.json: ties the result to one exact image (the rollout
    /// gate checks it).
    pub manifest_sha256: Option<String>,
    pub name: String,
    pub version: String,
    /// The QEMU machine it booted on (`microvm`, `q35`).
    pub machine: String,
    /// Artifact name → size in bytes.
    pub sizes: BTreeMap<String, u64>,
}

impl ImageInfo {
    pub fn of(img: &BootImage) -> Result<ImageInfo, BenchError> {
        Ok(ImageInfo {
            dir: Some(img.dir.display().to_string()),
            manifest_sha256: Some(manifest_digest(&img.dir)?),
            name: img.manifest.image.name.clone(),
            version: img.manifest.image.version.clone(),
            machine: img.machine.name().to_owned(),
            sizes: img
                .manifest
                .artifacts
                .iter()
                .map(|a| (a.name.to_string(), a.size))
                .collect(),
        })
    }
}

/// sha256 of an image's manifest.json, which names (and so pins) every artifact.
pub fn manifest_digest(dir: &Path) -> Result<String, BenchError> {
    let p = dir.join(MANIFEST_FILE);
    let bytes = fsio::read_regular(&p, caps::MANIFEST, "a manifest", Links::Refuse)
        .map_err(BenchError::Manifest)?;
    Ok(sha256_hex(&bytes))
}

impl BootTestResult {
    /// Summarises the runs, compares the image's with the baseline's pair by pair, and checks
    /// the objectives. `logs` is empty: see [`BootTestResult::keep_logs_if_failed`].
    pub fn new(
        images: &Images,
        o: &BenchOptions,
        runs: Runs,
        concurrent: Option<Concurrent>,
        objectives: &Objectives,
    ) -> Result<BootTestResult, BenchError> {
        let has_baseline = images.baseline.is_some();
        let metrics = summarise(&runs.image);
        let baseline_metrics = has_baseline.then(|| summarise(&runs.baseline));
        let comparison = has_baseline.then(|| compare(&runs.baseline, &runs.image));
        let verdicts = objectives.check(&metrics, comparison.as_ref());
        let runs_detail: Vec<RunRecord> = runs.baseline.into_iter().chain(runs.image).collect();
        let passed = runs_detail.iter().all(|r| r.ok)
            && verdicts.iter().all(|v| v.passed)
            && concurrent.as_ref().map_or(true, Concurrent::all_answered);
        Ok(BootTestResult {
            schema: SCHEMA.to_owned(),
            image: ImageInfo::of(&images.image)?,
            baseline: images.baseline.as_ref().map(ImageInfo::of).transpose()?,
            snapshot: o.restore.as_deref().map(SnapshotInfo::of),
            accel: o.accel.name().to_owned(),
            runs: o.runs,
            invocations: o.invocations,
            invoke: o.invoke_path.clone(),
            memory_mib: o.memory_mib,
            metrics,
            baseline_metrics,
            comparison,
            objectives: verdicts,
            runs_detail,
            concurrent,
            logs: Vec::new(),
            passed,
        })
    }

    /// The runs that failed, the baseline's first.
    pub fn failed_runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs_detail.iter().filter(|r| !r.ok)
    }

    /// When a run failed, writes every run's console to `BASE.<image>-run<N>.log` and lists
    /// the files in `logs`.
    pub fn keep_logs_if_failed(&mut self, base: &Path) -> Result<(), BenchError> {
        if self.failed_runs().next().is_none() {
            return Ok(());
        }
        for r in &self.runs_detail {
            let p = PathBuf::from(format!("{}.{}-run{}.log", base.display(), r.image, r.index));
            crate::fsio::write_atomic(&p, r.log.as_bytes(), 0o644).map_err(|source| {
                BenchError::Write {
                    path: p.clone(),
                    source,
                }
            })?;
            self.logs.push(p.display().to_string());
        }
        Ok(())
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

impl RunRecord {
    /// Why the run failed (`failed` when it does not say).
    pub fn failure_text(&self) -> &str {
        self.failure.as_deref().unwrap_or("failed")
    }
}
