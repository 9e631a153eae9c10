//! The node side after a fetch: putting the staged image into service behind a boot test
//! (`update apply`), going back (`update rollback`), the images a node refused, and the health
//! reports canaries send back for `rollout advance --gate-reports`.
//!
//! State files (next to those of [`super::client`]):
//! ```text
//! current.json    the image in service; its `replaces` field is the one before it
//! previous.json   the image before it (written from current.json's `replaces`)
//! rejected.json   images this node refused, with why; never staged or applied again
//! ```
//! `current.json` is the commit point of every switch: it is written first (temp, fsync,
//! rename, fsync of the directory), then `previous.json`, then `staged.json` goes. A run
//! interrupted between those steps is finished by the next one, whatever command it is
//! ([`open`]): `previous.json` is rewritten from `replaces`, a staged image that is current or
//! rejected is unstaged. Then every image directory that is neither current, previous nor
//! staged is removed — and nothing at all when a state file cannot be read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::client::{
    clean_leftovers, lock_state, read_opt, sync_dir, write, Current, Staged, StateLock,
};
use super::{
    is_sha256_hex, to_bytes, ChannelError, ChannelName, FailedNode, GateError, ImageCheckError,
    StateError, Tie,
};
use crate::sign::{PublicKey, SecretKey};

/// Simulates a crash at a named step, for the crash-safety tests: in debug builds, when
/// `$STRATOS_FAILPOINT` names this step, the process aborts on the spot (no destructor, no
/// cleanup, as if killed). Release builds have no fail points.
#[cfg(debug_assertions)]
pub fn failpoint(name: &str) {
    if std::env::var("STRATOS_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("stratos: fail point {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn failpoint(_: &str) {}

/// One refused image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub manifest_sha256: String,
    pub image: String,
    pub version: String,
    pub reason: String,
    /// When (Unix seconds).
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedList {
    pub rejected: Vec<Rejected>,
}

impl RejectedList {
    pub fn find(&self, digest: &str) -> Option<&Rejected> {
        self.rejected.iter().find(|r| r.manifest_sha256 == digest)
    }
}

/// The node's state files, each read strictly: a file that cannot be read or parsed stops the
/// command, naming it (it is never taken for "absent").
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub current: Option<Current>,
    pub previous: Option<Current>,
    pub staged: Option<Staged>,
    pub rejected: RejectedList,
}

fn read_json<T: DeserializeOwned>(state: &Path, name: &str) -> Result<Option<T>, ChannelError> {
    let p = state.join(name);
    read_opt(&p)?
        .map(|b| {
            serde_json::from_slice(&b).map_err(|source| {
                StateError::Malformed {
                    path: p.clone(),
                    source,
                }
                .into()
            })
        })
        .transpose()
}

/// A record's image directory must be `images/<its manifest sha256>`: what cleanup keeps is
/// what is booted, and no record can name a path elsewhere.
fn check_dir(state: &Path, file: &str, dir: &str, digest: &str) -> Result<(), ChannelError> {
    if is_sha256_hex(digest) && dir == format!("images/{digest}") {
        return Ok(());
    }
    Err(StateError::DirMismatch {
        path: state.join(file),
        dir: dir.to_owned(),
        digest: digest.to_owned(),
    }
    .into())
}

impl NodeState {
    pub fn load(state: &Path) -> Result<NodeState, ChannelError> {
        let st = NodeState {
            current: read_json(state, "current.json")?,
            previous: read_json(state, "previous.json")?,
            staged: read_json(state, "staged.json")?,
            rejected: read_json(state, "rejected.json")?.unwrap_or_default(),
        };
        for (file, c) in [
            ("current.json", &st.current),
            ("previous.json", &st.previous),
        ] {
            if let Some(c) = c {
                check_dir(state, file, &c.dir, &c.manifest_sha256)?;
                if let Some(r) = &c.replaces {
                    check_dir(state, file, &r.dir, &r.manifest_sha256)?;
                }
            }
        }
        if let Some(s) = &st.staged {
            check_dir(state, "staged.json", &s.dir, &s.image.manifest_sha256)?;
        }
        Ok(st)
    }

    /// Image directories (relative) that must stay.
    fn kept(&self) -> BTreeSet<String> {
        let mut k = BTreeSet::new();
        for c in [&self.current, &self.previous].into_iter().flatten() {
            k.insert(format!("images/{}", c.manifest_sha256));
            if let Some(r) = &c.replaces {
                k.insert(format!("images/{}", r.manifest_sha256));
            }
        }
        if let Some(s) = &self.staged {
            k.insert(format!("images/{}", s.image.manifest_sha256));
        }
        k
    }
}

/// A locked state directory, recovered from any interrupted run and cleaned.
pub struct Opened {
    pub lock: StateLock,
    pub state: NodeState,
    /// What was done on the way (a switch finished, leftovers removed), for the user.
    pub notes: Vec<String>,
}

/// Locks `dir`, removes leftovers of interrupted runs, finishes an interrupted switch and
/// removes image directories nothing names.
pub fn open(dir: &Path) -> Result<Opened, ChannelError> {
    let lock = lock_state(dir)?;
    let mut notes = clean_leftovers(dir)?;
    let mut st = NodeState::load(dir)?;
    finish_switch(dir, &mut st, &mut notes)?;
    hygiene(dir, &st, &mut notes);
    Ok(Opened {
        lock,
        state: st,
        notes,
    })
}

/// `replaces` without its own history: a record names one step back only.
fn flat(c: &Current) -> Current {
    Current {
        replaces: None,
        ..c.clone()
    }
}

fn finish_switch(
    dir: &Path,
    st: &mut NodeState,
    notes: &mut Vec<String>,
) -> Result<(), ChannelError> {
    if let Some(cur) = &st.current {
        if let Some(r) = &cur.replaces {
            if st.previous.as_ref().map(|p| &p.manifest_sha256) != Some(&r.manifest_sha256) {
                let prev = flat(r);
                write(&dir.join("previous.json"), &to_bytes(&prev))?;
                notes.push(format!(
                    "finished an interrupted {}: {} {} is current, {} {} previous",
                    if cur.by.is_empty() {
                        "switch"
                    } else {
                        cur.by.as_str()
                    },
                    cur.image,
                    cur.version,
                    prev.image,
                    prev.version
                ));
                st.previous = Some(prev);
            }
        }
    }
    let unstage = match (&st.staged, &st.current) {
        (Some(s), Some(c)) if s.image.manifest_sha256 == c.manifest_sha256 => {
            Some("it is the current image (an apply was interrupted)")
        }
        (Some(s), _) if st.rejected.find(&s.image.manifest_sha256).is_some() => {
            Some("it was rejected (a rejection was interrupted)")
        }
        _ => None,
    };
    if let Some(why) = unstage {
        remove_file(&dir.join("staged.json"))?;
        notes.push(format!("unstaged the staged image: {why}"));
        st.staged = None;
    }
    Ok(())
}

fn remove_file(p: &Path) -> Result<(), ChannelError> {
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ChannelError::io(format!("removing {}", p.display()))(e)),
    }
    if let Some(d) = p.parent() {
        sync_dir(d)?;
    }
    Ok(())
}

/// After a fetch staged a new image: the one staged before goes (never current or previous).
/// A state file that cannot be read removes nothing (the fetch itself has succeeded).
pub(super) fn tidy(dir: &Path, notes: &mut Vec<String>) {
    match NodeState::load(dir) {
        Ok(st) => hygiene(dir, &st, notes),
        Err(e) => notes.push(format!("no unused image was removed: {e}")),
    }
}

/// Removes `images/<sha256>` directories that are neither current, previous nor staged. Only
/// directories with such names, never through a symlink. Freeing space never fails a command:
/// what cannot be removed is said in a note and tried again next time.
fn hygiene(dir: &Path, st: &NodeState, notes: &mut Vec<String>) {
    let images = dir.join("images");
    let rd = match std::fs::read_dir(&images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            notes.push(format!("could not list {}: {e}", images.display()));
            return;
        }
    };
    let kept = st.kept();
    let mut removed = false;
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !is_sha256_hex(&name) || kept.contains(&format!("images/{name}")) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => {
                notes.push(format!(
                    "removed {}: neither current, previous nor staged",
                    e.path().display()
                ));
                removed = true;
            }
            Err(err) => notes.push(format!(
                "could not remove the unused image {}: {err}; it is tried again next time",
                e.path().display()
            )),
        }
    }
    if removed {
        if let Err(e) = sync_dir(&images) {
            notes.push(format!("{e}"));
        }
    }
}

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
        manifest_sha256: s.image.manifest_sha256.clone(),
        image: s.image.name.clone(),
        dir: s.dir.clone(),
        channel: Some(s.channel.clone()),
        channel_version: s.channel_version,
        replaces: replaces.map(|r| Box::new(flat(r))),
        by: "apply".into(),
    }
}

/// Puts the staged image into service (`passed`) or rejects it with `reason`. The boot test
/// itself is the caller's; this is the state change, crash-safe at every step.
pub fn commit_apply(
    dir: &Path,
    o: &mut Opened,
    passed: bool,
    reason: &str,
    now: u64,
) -> Result<Applied, ChannelError> {
    let staged = o.state.staged.clone().ok_or(StateError::NothingStaged)?;
    if passed {
        let new = as_current(&staged, o.state.current.as_ref());
        failpoint("apply:tested");
        write(&dir.join("current.json"), &to_bytes(&new))?;
        failpoint("apply:current-written");
        if let Some(r) = &new.replaces {
            write(&dir.join("previous.json"), &to_bytes(r.as_ref()))?;
            o.state.previous = Some((**r).clone());
        }
        failpoint("apply:previous-written");
        remove_file(&dir.join("staged.json"))?;
        failpoint("apply:staged-removed");
        o.state.current = Some(new.clone());
        o.state.staged = None;
        hygiene(dir, &o.state, &mut o.notes);
        Ok(Applied::Switched { current: new })
    } else {
        let r = Rejected {
            manifest_sha256: staged.image.manifest_sha256.clone(),
            image: staged.image.name.clone(),
            version: staged.image.version.clone(),
            reason: reason.to_owned(),
            at: now,
        };
        let mut list = o.state.rejected.clone();
        list.rejected
            .retain(|x| x.manifest_sha256 != r.manifest_sha256);
        list.rejected.push(r.clone());
        write(&dir.join("rejected.json"), &to_bytes(&list))?;
        failpoint("reject:rejected-written");
        remove_file(&dir.join("staged.json"))?;
        failpoint("reject:staged-removed");
        o.state.rejected = list;
        o.state.staged = None;
        hygiene(dir, &o.state, &mut o.notes);
        Ok(Applied::Rejected(r))
    }
}

/// Whether `dir` holds exactly the image `digest` names: its manifest hashes to the digest
/// (which a verified channel document carried) and its files to what the manifest lists.
/// [`ImageCheckError::is_mismatch`] tells a mismatch (the image is not that image) from an I/O
/// failure.
pub fn check_image(dir: &Path, digest: &str) -> Result<(), ImageCheckError> {
    let m = crate::fsio::read_regular(
        &dir.join(crate::sign::manifest::MANIFEST_FILE),
        crate::fsio::caps::MANIFEST,
        "a manifest",
        crate::fsio::Links::Refuse,
    )
    .map_err(ImageCheckError::Unreadable)?;
    if crate::sign::sha256_hex(&m) != digest {
        return Err(ImageCheckError::ManifestChanged {
            dir: dir.to_owned(),
        });
    }
    let manifest = crate::sign::verify::load_manifest(dir).map_err(ImageCheckError::BadManifest)?;
    crate::sign::verify::verify_contents(dir, &manifest).map_err(ImageCheckError::Contents)
}

/// Why an image left service by a rollback (its `rejected.json` reason).
pub const ROLLED_BACK: &str = "rolled back on this node";

/// Makes the previous image current again (and the current one previous). The image rolled
/// back from is held (in `rejected.json`), so the next fetch does not put it back; a rollback
/// already done is not done again.
pub fn rollback(dir: &Path, o: &mut Opened, now: u64) -> Result<Current, ChannelError> {
    let (Some(cur), Some(prev)) = (o.state.current.clone(), o.state.previous.clone()) else {
        return Err(StateError::NothingToRollBack {
            state: dir.to_owned(),
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
    check_image(&dir.join(&prev.dir), &prev.manifest_sha256).map_err(|source| {
        StateError::PreviousImageDamaged {
            image: prev.image.clone(),
            version: prev.version.clone(),
            source: Box::new(source),
        }
    })?;
    // Held first: a crash after this leaves the old current in service, and the next rollback
    // does it all.
    let mut list = o.state.rejected.clone();
    list.rejected
        .retain(|x| x.manifest_sha256 != cur.manifest_sha256);
    list.rejected.push(Rejected {
        manifest_sha256: cur.manifest_sha256.clone(),
        image: cur.image.clone(),
        version: cur.version.clone(),
        reason: ROLLED_BACK.into(),
        at: now,
    });
    failpoint("rollback:start");
    write(&dir.join("rejected.json"), &to_bytes(&list))?;
    o.state.rejected = list;
    failpoint("rollback:held");
    let new = Current {
        replaces: Some(Box::new(flat(&cur))),
        by: "rollback".into(),
        ..flat(&prev)
    };
    write(&dir.join("current.json"), &to_bytes(&new))?;
    failpoint("rollback:current-written");
    write(&dir.join("previous.json"), &to_bytes(&flat(&cur)))?;
    o.state.current = Some(new.clone());
    o.state.previous = Some(flat(&cur));
    Ok(new)
}

/// Forgets rejections (all, or of one manifest digest), so the image may be staged again.
pub fn clear_rejected(
    dir: &Path,
    o: &mut Opened,
    digest: Option<&str>,
) -> Result<Vec<Rejected>, ChannelError> {
    let mut list = o.state.rejected.clone();
    let (gone, kept): (Vec<Rejected>, Vec<Rejected>) = list
        .rejected
        .drain(..)
        .partition(|r| digest.map_or(true, |d| d == r.manifest_sha256));
    if gone.is_empty() {
        return Err(StateError::NotRejected {
            state: dir.to_owned(),
            digest: digest.map(str::to_owned),
        }
        .into());
    }
    list.rejected = kept;
    write(&dir.join("rejected.json"), &to_bytes(&list))?;
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
    if !is_sha256_hex(d) || d != cur.manifest_sha256 {
        return Err(StateError::CurrentDirMismatch {
            state: dir.to_owned(),
            dir: cur.dir,
        }
        .into());
    }
    let path = dir.join(&cur.dir);
    Ok((cur, path))
}

// ---------------------------------------------------------------------------------------
// Health reports

pub const REPORT_SCHEMA: &str = "stratos-health-report/1";

/// What a node says about an image it tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema: String,
    pub node_id: String,
    pub channel: ChannelName,
    pub channel_version: u64,
    pub image: String,
    pub version: String,
    pub manifest_sha256: String,
    pub passed: bool,
    pub reason: String,
    /// The boot test's failures and medians (ms, KiB), by metric.
    pub boot_test: ReportSummary,
    /// When (Unix seconds), by the node's clock: shown, never used to order reports (a node's
    /// clock can be wrong, even years ahead).
    pub at: u64,
    /// The node's own report counter, one more for every report it signs (kept in its state
    /// directory, [`REPORT_SEQ_FILE`]): with `channel_version`, what orders a node's reports.
    /// Absent from reports of nodes older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Report {
    /// What orders one node's reports: the channel version it tested, then its own counter.
    pub fn order(&self) -> (u64, Option<u64>) {
        (self.channel_version, self.seq)
    }
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
pub fn next_report_seq(dir: &Path, o: &Opened) -> Result<u64, ChannelError> {
    let _held = &o.lock;
    let last = read_json::<ReportSeq>(dir, REPORT_SEQ_FILE)?.map_or(0, |s| s.last);
    let next = last
        .checked_add(1)
        .ok_or_else(|| StateError::ReportCounterFull {
            path: dir.join(REPORT_SEQ_FILE),
        })?;
    write(
        &dir.join(REPORT_SEQ_FILE),
        &to_bytes(&ReportSeq { last: next }),
    )?;
    Ok(next)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSummary {
    pub runs: usize,
    pub failures: Vec<String>,
    pub medians: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSignature {
    pub key_id: String,
    pub sig: String,
}

/// The file: the report and, when the node has a key, its signature over the report's
/// canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFile {
    pub report: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ReportSignature>,
}

impl ReportFile {
    pub fn new(report: Report, key: Option<&SecretKey>) -> ReportFile {
        let signature = key.map(|k| ReportSignature {
            key_id: k.id().as_str().to_owned(),
            sig: hex::encode(k.sign(&to_bytes(&report))),
        });
        ReportFile { report, signature }
    }

    /// Whether the node the report names signed it: `keys` maps node ids to their keys
    /// (`--node-keys DIR/<node id>.pub`), so one node cannot speak for another.
    pub fn signed_by(
        &self,
        keys: &std::collections::BTreeMap<String, PublicKey>,
    ) -> Result<String, String> {
        let s = self.signature.as_ref().ok_or("unsigned")?;
        let k = keys.get(&self.report.node_id).ok_or_else(|| {
            format!(
                "no key for node {:?} in --node-keys (<node id>.pub)",
                self.report.node_id
            )
        })?;
        if k.id().as_str() != s.key_id {
            return Err(format!(
                "not signed by node {:?}'s key",
                self.report.node_id
            ));
        }
        let sig: [u8; 64] = hex::decode(&s.sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a malformed signature")?;
        if !k.verify(&to_bytes(&self.report), &sig) {
            return Err("a bad signature".into());
        }
        Ok(s.key_id.clone())
    }
}

/// How many canary reports a rollout needs before it may widen.
#[derive(Debug, Clone)]
pub struct ReportGate {
    pub dir: PathBuf,
    /// Node id → its public key.
    pub node_keys: std::collections::BTreeMap<String, PublicKey>,
    pub min_reports: usize,
    /// Largest share of failed reports allowed, in percent.
    pub max_failures: f64,
}

/// A node's latest report so far, its file, and the files of other reports that tie with it.
struct Latest {
    report: Report,
    file: String,
    ties: Vec<String>,
}

/// Checks the reports in `g.dir` against the channel `c` at `now`: only reports signed by a
/// node key, for this channel and this exact image (at this channel version or before it),
/// from nodes the rollout has reached, count; a node's latest report counts once. Latest is by
/// the channel version it tested, then the node's own `seq` — never by `at`, the node's
/// clock. Two different reports of one node that tie are an error naming both files (which
/// one is newer cannot be told); a copy of the same report is ignored. Returns a one-line summary,
/// or why the rollout may not widen (naming the failing nodes).
pub fn check_reports(g: &ReportGate, c: &super::Channel, now: u64) -> Result<String, ChannelError> {
    let rd = std::fs::read_dir(&g.dir).map_err(|source| GateError::ReportDir {
        dir: g.dir.clone(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let reached = c.rollout.reached_bp(now);
    let mut ignored: Vec<String> = Vec::new();
    let mut newest: std::collections::BTreeMap<String, Latest> = Default::default();
    for p in &paths {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let bytes = match crate::fsio::read_regular(
            p,
            crate::fsio::caps::METADATA,
            "a health report",
            crate::fsio::Links::Refuse,
        ) {
            Ok(b) => b,
            Err(e) => {
                ignored.push(format!("{name}: {e}"));
                continue;
            }
        };
        let f: ReportFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                ignored.push(format!("{name}: not a health report ({e})"));
                continue;
            }
        };
        let r = &f.report;
        let why = if r.schema != REPORT_SCHEMA {
            Some(format!("schema {:?}", r.schema))
        } else if let Err(w) = f.signed_by(&g.node_keys) {
            Some(w)
        } else if r.channel != c.channel {
            Some(format!("for channel {}", r.channel))
        } else if r.manifest_sha256 != c.image.manifest_sha256 {
            Some(format!("for another image ({} {})", r.image, r.version))
        } else if r.channel_version > c.version {
            Some(format!(
                "for channel version {}, newer than {}",
                r.channel_version, c.version
            ))
        } else if super::cohort(&r.node_id, c.channel.as_str(), &c.image.version) >= reached {
            Some(format!("node {} is not in the rollout yet", r.node_id))
        } else {
            None
        };
        if let Some(w) = why {
            ignored.push(format!("{name}: {w}"));
            continue;
        }
        let latest = Latest {
            report: r.clone(),
            file: name.clone(),
            ties: Vec::new(),
        };
        match newest.get_mut(&r.node_id) {
            None => {
                newest.insert(r.node_id.clone(), latest);
            }
            Some(old) => match r.order().cmp(&old.report.order()) {
                std::cmp::Ordering::Greater => *old = latest,
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal if *r == old.report => {
                    ignored.push(format!("{name}: the same report as {}", old.file));
                }
                std::cmp::Ordering::Equal => old.ties.push(name),
            },
        }
    }
    let ties: Vec<Tie> = newest
        .values()
        .filter(|l| !l.ties.is_empty())
        .map(|l| Tie {
            node: l.report.node_id.clone(),
            files: std::iter::once(l.file.clone())
                .chain(l.ties.iter().cloned())
                .collect(),
            channel_version: l.report.channel_version,
            seq: l.report.seq,
        })
        .collect();
    if !ties.is_empty() {
        return Err(GateError::ReportsTie {
            dir: g.dir.clone(),
            ties,
        }
        .into());
    }
    let n = newest.len();
    let failed: Vec<&Report> = newest
        .values()
        .map(|l| &l.report)
        .filter(|r| !r.passed)
        .collect();
    if n < g.min_reports {
        return Err(GateError::TooFewReports {
            dir: g.dir.clone(),
            have: n,
            image: c.image.name.clone(),
            version: c.image.version.clone(),
            need: g.min_reports,
            ignored,
        }
        .into());
    }
    let rate = if n == 0 {
        0.0
    } else {
        failed.len() as f64 * 100.0 / n as f64
    };
    if rate > g.max_failures {
        return Err(GateError::TooManyFailures {
            dir: g.dir.clone(),
            failed: failed
                .iter()
                .map(|r| FailedNode {
                    node: r.node_id.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            total: n,
            rate,
            max: g.max_failures,
            ignored,
        }
        .into());
    }
    let ignored_note = if ignored.is_empty() {
        String::new()
    } else {
        format!(" (ignored: {})", ignored.join("; "))
    };
    Ok(format!(
        "{n} report(s) for {} {}, {} failed ({rate:.1}% <= {}%){ignored_note}",
        c.image.name,
        c.image.version,
        failed.len(),
        g.max_failures
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_seq_counts_up_in_the_state_directory_and_a_bad_counter_stops() {
        let d = tempfile::tempdir().unwrap();
        let o = open(d.path()).unwrap();
        assert_eq!(next_report_seq(d.path(), &o).unwrap(), 1);
        assert_eq!(next_report_seq(d.path(), &o).unwrap(), 2);
        drop(o);
        // Kept across runs.
        let o = open(d.path()).unwrap();
        assert_eq!(next_report_seq(d.path(), &o).unwrap(), 3);
        let p = d.path().join(REPORT_SEQ_FILE);
        assert_eq!(std::fs::read(&p).unwrap(), to_bytes(&ReportSeq { last: 3 }));
        // A counter that cannot be read is never taken for "start again at 1".
        std::fs::write(&p, b"{\"last\": \"x\"}").unwrap();
        let e = next_report_seq(d.path(), &o).unwrap_err();
        assert!(
            matches!(&e, ChannelError::State(StateError::Malformed { path, .. }) if *path == p),
            "{e:?}"
        );
        assert!(e.to_string().contains("report-seq.json: malformed"), "{e}");
    }
}
