//! The report gate (`rollout advance --gate-reports DIR --node-keys DIR`): the canaries' signed
//! health reports decide whether a rollout widens. Only reports signed by the key of the node
//! they name, for this channel and this exact image (at this channel version or before it),
//! from nodes the rollout has reached, count; a node's latest report counts once.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::channel::doc::{cohort, Channel, Report, ReportFile, Track, REPORT_SCHEMA};
use crate::channel::error::{ChannelError, FailedNode, GateError, Tie, UsageError};
use crate::fsio::{self, caps, Links};
use crate::sign::PublicKey;

/// How many canary reports a rollout needs before it may widen.
#[derive(Debug, Clone)]
pub struct ReportGate {
    pub dir: PathBuf,
    /// Node id → its public key.
    pub node_keys: BTreeMap<String, PublicKey>,
    pub min_reports: usize,
    /// Largest share of failed reports allowed, in percent.
    pub max_failures: f64,
}

impl ReportGate {
    /// The gate over the reports in `dir`, trusting the node keys of `keys_dir`: one
    /// `<node id>.pub` per node (`--node-keys`), so one node cannot speak for another.
    pub fn load(
        dir: PathBuf,
        keys_dir: &Path,
        min_reports: usize,
        max_failures: f64,
    ) -> Result<ReportGate, ChannelError> {
        Ok(ReportGate {
            dir,
            node_keys: load_node_keys(keys_dir)?,
            min_reports,
            max_failures,
        })
    }
}

/// `DIR/<node id>.pub`, by node id; at least one.
fn load_node_keys(dir: &Path) -> Result<BTreeMap<String, PublicKey>, ChannelError> {
    let rd = std::fs::read_dir(dir).map_err(|source| UsageError::NodeKeysDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    let mut keys = BTreeMap::new();
    for p in paths {
        let id = p
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| UsageError::NodeKeyName { path: p.clone() })?
            .to_owned();
        keys.insert(id, PublicKey::load(&p)?);
    }
    if keys.is_empty() {
        return Err(UsageError::NoNodeKeys {
            dir: dir.to_owned(),
        }
        .into());
    }
    Ok(keys)
}

/// Checks the reports in `g.dir` against the image of channel `c`'s track `t` (one
/// architecture's: another architecture's nodes report another image) at `now`. A node's latest report is
/// the one for the newest channel version it tested, then with the highest `seq` (its own
/// counter) — never by `at`, the node's clock. Two different reports of one node that tie are
/// an error naming both files (which one is newer cannot be told); a copy of the same report is
/// ignored. Returns a one-line summary, or why the rollout may not widen (naming the failing
/// nodes).
pub fn check(g: &ReportGate, c: &Channel, t: &Track, now: u64) -> Result<String, ChannelError> {
    let reached = t.rollout.reached_bp(now);
    let mut tally = Tally::default();
    for path in list_reports(&g.dir)? {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let counted =
            read_report(&path).and_then(|f| match why_not_counted(g, c, t, reached, &f) {
                Some(why) => Err(why),
                None => Ok(f.report),
            });
        match counted {
            Ok(r) => tally.add(file, r),
            Err(why) => tally.ignored.push(format!("{file}: {why}")),
        }
    }
    let ties = tally.ties();
    if !ties.is_empty() {
        return Err(GateError::ReportsTie {
            dir: g.dir.clone(),
            ties,
        }
        .into());
    }
    verdict(g, t, tally)
}

/// The `*.json` files of `dir`, sorted.
fn list_reports(dir: &Path) -> Result<Vec<PathBuf>, ChannelError> {
    let rd = std::fs::read_dir(dir).map_err(|source| GateError::ReportDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The report file at `p`, or why it is none.
fn read_report(p: &Path) -> Result<ReportFile, String> {
    let bytes = fsio::read_regular(p, caps::METADATA, "a health report", Links::Refuse)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a health report ({e})"))
}

/// Why the report `f` does not count for the track `t` of `c` when its rollout reaches
/// `reached` basis points (`None`: it counts).
fn why_not_counted(
    g: &ReportGate,
    c: &Channel,
    t: &Track,
    reached: u32,
    f: &ReportFile,
) -> Option<String> {
    let r = &f.report;
    if r.schema != REPORT_SCHEMA {
        Some(format!("schema {:?}", r.schema))
    } else if let Err(w) = f.signed_by(&g.node_keys) {
        Some(w.to_string())
    } else if r.channel != c.channel {
        Some(format!("for channel {}", r.channel))
    } else if r.manifest_sha256 != t.image.manifest_sha256 {
        Some(format!("for another image ({} {})", r.image, r.version))
    } else if r.channel_version > c.version {
        Some(format!(
            "for channel version {}, newer than {}",
            r.channel_version, c.version
        ))
    } else if cohort(&r.node_id, c.channel.as_str(), &t.image.version) >= reached {
        Some(format!("node {} is not in the rollout yet", r.node_id))
    } else {
        None
    }
}

/// A node's latest report so far, its file, and the files of other reports that tie with it.
struct Latest {
    report: Report,
    file: String,
    ties: Vec<String>,
}

/// Each node's latest counted report, and the reports that do not count, with why.
#[derive(Default)]
struct Tally {
    newest: BTreeMap<String, Latest>,
    ignored: Vec<String>,
}

impl Tally {
    /// Counts report `r` from `file`: the node's latest so far, an older one, a copy, or a tie.
    fn add(&mut self, file: String, r: Report) {
        let Some(old) = self.newest.get_mut(&r.node_id) else {
            let latest = Latest {
                report: r,
                file,
                ties: Vec::new(),
            };
            self.newest.insert(latest.report.node_id.clone(), latest);
            return;
        };
        match r.order().cmp(&old.report.order()) {
            Ordering::Greater => {
                *old = Latest {
                    report: r,
                    file,
                    ties: Vec::new(),
                }
            }
            Ordering::Less => {}
            Ordering::Equal if r == old.report => {
                let note = format!("{file}: the same report as {}", old.file);
                self.ignored.push(note);
            }
            Ordering::Equal => old.ties.push(file),
        }
    }

    /// The nodes whose latest report cannot be told.
    fn ties(&self) -> Vec<Tie> {
        self.newest
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
            .collect()
    }
}

/// Enough reports, few enough failures: the summary; or why the rollout may not widen.
fn verdict(g: &ReportGate, t: &Track, tally: Tally) -> Result<String, ChannelError> {
    let n = tally.newest.len();
    let failed: Vec<&Report> = tally
        .newest
        .values()
        .map(|l| &l.report)
        .filter(|r| !r.passed)
        .collect();
    if n < g.min_reports {
        return Err(GateError::TooFewReports {
            dir: g.dir.clone(),
            have: n,
            image: t.image.name.clone(),
            version: t.image.version.clone(),
            need: g.min_reports,
            ignored: tally.ignored,
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
            ignored: tally.ignored,
        }
        .into());
    }
    let ignored_note = if tally.ignored.is_empty() {
        String::new()
    } else {
        format!(" (ignored: {})", tally.ignored.join("; "))
    };
    Ok(format!(
        "{n} report(s) for {} {}, {} failed ({rate:.1}% <= {}%){ignored_note}",
        t.image.name,
        t.image.version,
        failed.len(),
        g.max_failures
    ))
}
