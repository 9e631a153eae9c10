//! `update apply` as steps: open the state ([`Apply::begin`]), check that the staged image is the
//! one the channel named and boot-test it ([`Apply::test`]; the boot test itself is the caller's),
//! commit the verdict — into service, or rejected for good ([`Apply::commit`]) — and compose the
//! health report the operator's gate reads ([`Apply::report`]). The state directory is opened
//! once and carried through every step.

use std::path::{Path, PathBuf};

use super::image::check_image;
use super::lifecycle::{commit_apply, next_report_seq, Applied};
use super::report_out::{Delivered, ReportOut};
use super::state::{open, Current, Opened, Staged};
use crate::arch::Arch;
use crate::boot_result::BootTestResult;
use crate::channel::doc::{Report, ReportFile, ReportSummary, REPORT_SCHEMA};
use crate::channel::error::{ChannelError, ImageCheckError, UsageError};
use crate::sign::SecretKey;

/// What opening the state for an apply found.
pub enum Begun {
    /// Nothing is staged: the current image (if any) stays. `notes`: what was done on the way.
    NothingStaged {
        current: Option<Current>,
        notes: Vec<String>,
    },
    /// An image is staged: the apply goes on.
    Staged(Box<Apply>),
}

/// An `update apply` under way: the state locked and recovered, and the image staged in it.
pub struct Apply {
    opened: Opened,
    staged: Staged,
}

/// What the boot test (or the check before it) says about the staged image.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub reason: String,
    /// The boot test's failures and medians, for the health report.
    pub summary: ReportSummary,
}

impl Verdict {
    /// The verdict of a boot test: passed if it met its objectives (or every boot answered).
    pub fn of(result: &BootTestResult) -> Verdict {
        let summary = ReportSummary {
            runs: result.runs,
            failures: result.failures(),
            medians: result
                .metrics
                .iter()
                .map(|(k, m)| (k.clone(), m.summary.p50.round() as i64))
                .collect(),
        };
        let reason = if !result.passed {
            format!("boot test failed: {}", result.failures().join("; "))
        } else if result.objectives.is_empty() {
            format!("{} boot(s) answered", result.runs)
        } else {
            let held: Vec<&str> = result
                .objectives
                .iter()
                .map(|v| v.objective.as_str())
                .collect();
            format!(
                "{} boot(s) answered; objectives held: {}",
                result.runs,
                held.join(", ")
            )
        };
        Verdict {
            passed: result.passed,
            reason,
            summary,
        }
    }

    /// The staged image is not the image the channel named: rejected without a boot.
    fn mismatch(e: &ImageCheckError) -> Verdict {
        Verdict {
            passed: false,
            reason: e.to_string(),
            summary: ReportSummary::default(),
        }
    }
}

/// The staged image cannot be read: this machine's fault, not the image's; nothing is rejected.
#[derive(Debug, thiserror::Error)]
#[error("reading the staged image {name}: {source}; nothing was changed")]
pub struct StagedUnreadable {
    /// `NAME VERSION` of the image.
    pub name: String,
    #[source]
    pub source: ImageCheckError,
}

impl Apply {
    /// Locks and recovers the state directory `dir` (see [`open`]) and finds what is staged.
    pub fn begin(dir: &Path) -> Result<Begun, ChannelError> {
        let mut opened = open(dir)?;
        Ok(match opened.state.staged.clone() {
            None => Begun::NothingStaged {
                current: opened.state.current.clone(),
                notes: std::mem::take(&mut opened.notes),
            },
            Some(staged) => Begun::Staged(Box::new(Apply { opened, staged })),
        })
    }

    pub fn staged(&self) -> &Staged {
        &self.staged
    }

    /// `NAME VERSION` of the staged image, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.staged.image.name, self.staged.image.version)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.opened.dir
    }

    /// What was done on the way (a switch finished, leftovers or unused images removed) since
    /// last asked, for the user.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.opened.notes)
    }

    /// Refuses an image staged for another architecture than the node's (`update fetch --arch`
    /// on the wrong node, or a state directory moved between machines): it cannot boot here.
    /// The staged record's architecture is the one its signed manifest said at fetch time.
    /// Nothing is changed; the next fetch for the node's own architecture replaces it.
    pub fn check_arch(&self, node: Arch) -> Result<(), ChannelError> {
        let image_arch = self.staged.image.arch;
        if image_arch != node {
            return Err(UsageError::OtherArch {
                image: self.name(),
                image_arch,
                node_arch: node,
            }
            .into());
        }
        Ok(())
    }

    /// Tests what the node verified at fetch time: the staged directory must still be exactly
    /// the image the channel named (if not, it is rejected without a boot); then `boot` tests
    /// it (given the image directory). A directory this machine cannot read is an error `E`
    /// makes of [`StagedUnreadable`].
    pub fn test<E: From<StagedUnreadable>>(
        &self,
        boot: impl FnOnce(&Path) -> Result<BootTestResult, E>,
    ) -> Result<Verdict, E> {
        let dir: PathBuf = self.opened.dir.join(&self.staged.dir);
        match check_image(&dir, &self.staged.image.manifest_sha256) {
            Ok(()) => Ok(Verdict::of(&boot(&dir)?)),
            Err(e) if e.is_mismatch() => Ok(Verdict::mismatch(&e)),
            Err(source) => Err(StagedUnreadable {
                name: self.name(),
                source,
            }
            .into()),
        }
    }

    /// Puts the staged image into service if `v` passed, else rejects it (see
    /// [`commit_apply`]).
    pub fn commit(&mut self, v: &Verdict, now: u64) -> Result<Applied, ChannelError> {
        commit_apply(&mut self.opened, v.passed, &v.reason, now)
    }

    /// The health report of this apply for node `node_id`, numbered from the node's own counter
    /// ([`next_report_seq`]) and signed with `key` if given.
    pub fn report(
        &self,
        v: &Verdict,
        node_id: &str,
        key: Option<&SecretKey>,
        now: u64,
    ) -> Result<ReportFile, ChannelError> {
        let seq = next_report_seq(&self.opened)?;
        let s = &self.staged;
        let report = Report {
            schema: REPORT_SCHEMA.into(),
            node_id: node_id.to_owned(),
            channel: s.channel.clone(),
            channel_version: s.channel_version,
            image: s.image.name.clone(),
            version: s.image.version.clone(),
            manifest_sha256: s.image.manifest_sha256,
            passed: v.passed,
            reason: v.reason.clone(),
            boot_test: v.summary.clone(),
            at: now,
            seq: Some(seq),
        };
        Ok(ReportFile::new(report, key))
    }

    /// Writes the report `file` to `out`, or keeps it in the state directory (see
    /// [`ReportOut::deliver`]).
    pub fn deliver_report(&self, out: &ReportOut, file: &ReportFile) -> Delivered {
        out.deliver(&self.opened, file)
    }
}
