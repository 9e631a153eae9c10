//! Making the result document ([`crate::boot_result`]) of the runs: the harness's side of it —
//! summaries, comparison and verdicts, what image and snapshot it is about, the consoles kept
//! when a run failed.

use std::path::{Path, PathBuf};

use super::objectives::Objectives;
use super::{compare, summarise, BenchError, BenchOptions, Images, Runs};
use crate::boot::snapshot::Snapshot;
use crate::boot::BootImage;
use crate::boot_result::{BootTestResult, Concurrent, ImageInfo, RunRecord, SnapshotInfo, SCHEMA};
use crate::digest::Sha256;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::MANIFEST_FILE;

impl SnapshotInfo {
    pub fn of(s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            dir: s.dir.display().to_string(),
            snapshot_sha256: Sha256::of(&s.bytes),
            warm: s.meta.warm.clone(),
            verified: s.verified_by().is_some(),
            key_id: s.verified_by().map(|k| k.as_str().to_owned()),
        }
    }
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
pub fn manifest_digest(dir: &Path) -> Result<Sha256, BenchError> {
    let p = dir.join(MANIFEST_FILE);
    let bytes = fsio::read_regular(&p, caps::MANIFEST, "a manifest", Links::Refuse)
        .map_err(BenchError::Manifest)?;
    Ok(Sha256::of(&bytes))
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
            baseline_invoke: o.baseline_call.as_ref().map(|c| c.path.clone()),
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
}
