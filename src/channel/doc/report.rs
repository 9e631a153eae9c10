//! Health reports: what a node says about an image it tested (`update apply --report`), signed
//! with its own key, and read back by the operator's report gate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::name::ChannelName;
use super::signed::to_bytes;
use crate::digest::Sha256;
use crate::sign::{PublicKey, SecretKey};

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
    pub manifest_sha256: Sha256,
    pub passed: bool,
    pub reason: String,
    /// The boot test's failures and medians (ms, KiB), by metric.
    pub boot_test: ReportSummary,
    /// When (Unix seconds), by the node's clock: shown, never used to order reports (a node's
    /// clock can be wrong, even years ahead).
    pub at: u64,
    /// The node's own report counter, one more for every report it signs (kept in its state
    /// directory, `report-seq.json`): with `channel_version`, what orders a node's reports.
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSummary {
    pub runs: usize,
    pub failures: Vec<String>,
    pub medians: BTreeMap<String, i64>,
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
    pub fn signed_by(&self, keys: &BTreeMap<String, PublicKey>) -> Result<String, NotSigned> {
        let node = &self.report.node_id;
        let s = self.signature.as_ref().ok_or(NotSigned::Unsigned)?;
        let k = keys
            .get(node)
            .ok_or_else(|| NotSigned::NoKey(node.clone()))?;
        if k.id().as_str() != s.key_id {
            return Err(NotSigned::OtherKey(node.clone()));
        }
        let sig: [u8; 64] = hex::decode(&s.sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(NotSigned::Malformed)?;
        if !k.verify(&to_bytes(&self.report), &sig) {
            return Err(NotSigned::Bad);
        }
        Ok(s.key_id.clone())
    }
}

/// Why a report is not its node's word (it does not count).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSigned {
    #[error("unsigned")]
    Unsigned,
    /// The operator has no key for the node the report names.
    #[error("no key for node {0:?} in --node-keys (<node id>.pub)")]
    NoKey(String),
    /// Signed by another key than the node's: one node speaking for another.
    #[error("not signed by node {0:?}'s key")]
    OtherKey(String),
    #[error("a malformed signature")]
    Malformed,
    #[error("a bad signature")]
    Bad,
}
