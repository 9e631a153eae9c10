//! The node's lifecycle after a fetch: putting the staged image into service ([`commit_apply`],
//! behind the boot test [`super::apply`] runs), going back ([`rollback`]), forgetting a
//! rejection ([`clear_rejected`]), the image `boot --state` boots ([`current_image`]), and the
//! health-report counter ([`next_report_seq`]). Each works on an [`Opened`] state, crash-safe at
//! every step (see [`super::state`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image::check_image;
use super::state::{failpoint, flat, read_json, Current, Opened, Rejected, Staged};
use crate::channel::doc::to_bytes;
use crate::channel::error::{ChannelError, StateError};

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The staged image is current now.
    Switched { current: Current },
    /// The staged image failed its test: rejected, current untouched.
    Rejected(Rejected),
}

/// The staged image's record as it goes into service.
pub fn as_current(s: &Staged, replaces: Option<&Current>) -> Current {
    Current {
        version: s.image.version.clone(),
        manifest_sha256: s.image.manifest_sha256,
        image: s.image.name.clone(),
        dir: s.dir.clone(),
        channel: Some(s.channel.clone()),
        channel_version: s.channel_version,
        replaces: replaces.map(|r| Box::new(flat(r))),
        by: "apply".into(),
    }
}

/// Puts the staged image into service (`passed`) or rejects it with `reason`. The boot test
/// itself is the caller's ([`super::apply`]); this is the state change, crash-safe at every step.
pub fn commit_apply(
    o: &mut Opened,
    passed: bool,
    reason: &str,
    now: u64,
) -> Result<Applied, ChannelError> {
    let staged = o.state.staged.clone().ok_or(StateError::NothingStaged)?;
    if passed {
        switch_to(o, &staged)
    } else {
        let r = Rejected {
            manifest_sha256: staged.image.manifest_sha256,
            image: staged.image.name.clone(),
            version: staged.image.version.clone(),
            reason: reason.to_owned(),
            at: now,
        };
        reject(o, r)
    }
}

/// The staged image goes into service: `current.json` (the commit point), `previous.json`, then
/// `staged.json` goes.
fn switch_to(o: &mut Opened, staged: &Staged) -> Result<Applied, ChannelError> {
    let new = as_current(staged, o.state.current.as_ref());
    failpoint("apply:tested");
    o.write("current.json", &to_bytes(&new))?;
    failpoint("apply:current-written");
    if let Some(r) = &new.replaces {
        o.write("previous.json", &to_bytes(r.as_ref()))?;
        o.state.previous = Some((**r).clone());
    }
    failpoint("apply:previous-written");
    o.remove("staged.json")?;
    failpoint("apply:staged-removed");
    o.state.current = Some(new.clone());
    o.state.staged = None;
    o.remove_unused_images();
    Ok(Applied::Switched { current: new })
}

/// The staged image is refused for good: `rejected.json` names it, then `staged.json` goes.
fn reject(o: &mut Opened, r: Rejected) -> Result<Applied, ChannelError> {
    let list = o.state.rejected.with(r.clone());
    o.write("rejected.json", &to_bytes(&list))?;
    failpoint("reject:rejected-written");
    o.remove("staged.json")?;
    failpoint("reject:staged-removed");
    o.state.rejected = list;
    o.state.staged = None;
    o.remove_unused_images();
    Ok(Applied::Rejected(r))
}

/// Why an image left service by a rollback (its `rejected.json` reason).
pub const ROLLED_BACK: &str = "rolled back on this node";

/// Makes the previous image current again (and the current one previous). The image rolled
/// back from is held (in `rejected.json`), so the next fetch does not put it back; a rollback
/// already done is not done again.
pub fn rollback(o: &mut Opened, now: u64) -> Result<Current, ChannelError> {
    let (Some(cur), Some(prev)) = (o.state.current.clone(), o.state.previous.clone()) else {
        return Err(StateError::NothingToRollBack {
            state: o.dir.clone(),
            no_current: o.state.current.is_none(),
        }
        .into());
    };
    if cur.by == "rollback"
        && o.state
            .rejected
            .find(&prev.manifest_sha256)
            .is_some_and(|r| r.reason == ROLLED_BACK)
    {
        // Done before (perhaps finished by another command after an interruption).
        return Ok(cur);
    }
    check_image(&o.dir.join(&prev.dir), &prev.manifest_sha256).map_err(|source| {
        StateError::PreviousImageDamaged {
            image: prev.image.clone(),
            version: prev.version.clone(),
            source: Box::new(source),
        }
    })?;
    // Held first: a crash after this leaves the old current in service, and the next rollback
    // does it all.
    let list = o.state.rejected.with(Rejected {
        manifest_sha256: cur.manifest_sha256,
        image: cur.image.clone(),
        version: cur.version.clone(),
        reason: ROLLED_BACK.into(),
        at: now,
    });
    failpoint("rollback:start");
    o.write("rejected.json", &to_bytes(&list))?;
    o.state.rejected = list;
    failpoint("rollback:held");
    let new = Current {
        replaces: Some(Box::new(flat(&cur))),
        by: "rollback".into(),
        ..flat(&prev)
    };
    o.write("current.json", &to_bytes(&new))?;
    failpoint("rollback:current-written");
    o.write("previous.json", &to_bytes(&flat(&cur)))?;
    o.state.current = Some(new.clone());
    o.state.previous = Some(flat(&cur));
    Ok(new)
}

/// Forgets rejections (all, or of one manifest digest), so the image may be staged again.
pub fn clear_rejected(o: &mut Opened, digest: Option<&str>) -> Result<Vec<Rejected>, ChannelError> {
    let mut list = o.state.rejected.clone();
    let (gone, kept): (Vec<Rejected>, Vec<Rejected>) = list
        .rejected
        .drain(..)
        .partition(|r| digest.map_or(true, |d| r.manifest_sha256 == *d));
    if gone.is_empty() {
        return Err(StateError::NotRejected {
            state: o.dir.clone(),
            digest: digest.map(str::to_owned),
        }
        .into());
    }
    list.rejected = kept;
    o.write("rejected.json", &to_bytes(&list))?;
    o.state.rejected = list;
    Ok(gone)
}

/// The image directory `current.json` names, for `boot --state`.
pub fn current_image(dir: &Path) -> Result<(Current, PathBuf), ChannelError> {
    // Only current.json: another state file in a bad way must not keep the node from booting.
    let cur: Option<Current> = read_json(dir, "current.json")?;
    let cur = cur.ok_or_else(|| StateError::NoCurrentImage {
        state: dir.to_owned(),
    })?;
    let d = cur.dir.trim_start_matches("images/");
    if cur.manifest_sha256 != *d {
        return Err(StateError::CurrentDirMismatch {
            state: dir.to_owned(),
            dir: cur.dir,
        }
        .into());
    }
    let path = dir.join(&cur.dir);
    Ok((cur, path))
}

/// The node's health-report counter in its state directory.
pub const REPORT_SEQ_FILE: &str = "report-seq.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportSeq {
    /// The last sequence number given to a report.
    last: u64,
}

/// The sequence number of the node's next health report: one more than the last, written to
/// [`REPORT_SEQ_FILE`] (temp, fsync, rename) before the report exists, so no number is given
/// twice, even across a crash. The state lock `o` holds keeps two runs from taking the same.
pub fn next_report_seq(o: &Opened) -> Result<u64, ChannelError> {
    let _held = &o.lock;
    let last = read_json::<ReportSeq>(&o.dir, REPORT_SEQ_FILE)?.map_or(0, |s| s.last);
    let next = last
        .checked_add(1)
        .ok_or_else(|| StateError::ReportCounterFull {
            path: o.dir.join(REPORT_SEQ_FILE),
        })?;
    o.write(REPORT_SEQ_FILE, &to_bytes(&ReportSeq { last: next }))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::node::state::open;

    #[test]
    fn report_seq_counts_up_in_the_state_directory_and_a_bad_counter_stops() {
        let d = tempfile::tempdir().unwrap();
        let o = open(d.path()).unwrap();
        assert_eq!(next_report_seq(&o).unwrap(), 1);
        assert_eq!(next_report_seq(&o).unwrap(), 2);
        drop(o);
        // Kept across runs.
        let o = open(d.path()).unwrap();
        assert_eq!(next_report_seq(&o).unwrap(), 3);
        let p = d.path().join(REPORT_SEQ_FILE);
        assert_eq!(std::fs::read(&p).unwrap(), to_bytes(&ReportSeq { last: 3 }));
        // A counter that cannot be read is never taken for "start again at 1".
        std::fs::write(&p, b"{\"last\": \"x\"}").unwrap();
        let e = next_report_seq(&o).unwrap_err();
        assert!(
            matches!(&e, ChannelError::State(StateError::Malformed { path, .. }) if *path == p),
            "{e:?}"
        );
        assert!(e.to_string().contains("report-seq.json: malformed"), "{e}");
    }
}
