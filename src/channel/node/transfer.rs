//! What a fetch received: per artifact of the staged image, its size, how it came ([`Method`]:
//! reused from an image the node holds, assembled from blocks, patched from a delta, or
//! downloaded whole) and the bytes received for it; the metadata's bytes; the total against the
//! size of the artifacts the node holds. `update fetch` prints it and records it in
//! `last-fetch.json`, which `update status` shows.
//!
//! Bytes received are the bodies of what the repository served (file contents for a
//! directory), headers not counted.

use std::cell::Cell;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::write;
use super::state::read_json;
use crate::channel::doc::{fmt_time, to_bytes};
use crate::channel::error::ChannelError;
use crate::digest::Sha256;

/// The state file holding the figures of the last fetch that staged an image.
pub const LAST_FETCH: &str = "last-fetch.json";

/// How an artifact of a staged image reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Linked or copied from an image the node holds (same sha256); nothing received.
    Reused,
    /// A root image assembled block by block: its hash tree and the blocks the node lacked
    /// received, the others copied from the images it holds.
    Blocks,
    /// Patched from the node's copy of an older version with a delta the channel lists.
    Delta,
    /// Received whole (compressed when the repository has it compressed).
    #[serde(alias = "downloaded")]
    Full,
    /// Completed by an earlier fetch that was interrupted; nothing received this time.
    Resumed,
    /// Not fetched: the node boots without it (an EROFS image's `rootfs.tar.zst`; `update fetch
    /// --all-artifacts` fetches it). Not counted in the size.
    Skipped,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Reused => "reused",
            Method::Blocks => "blocks",
            Method::Delta => "delta",
            Method::Full => "full",
            Method::Resumed => "resumed",
            Method::Skipped => "skipped",
        }
    }
}

/// One artifact of the staged image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactTransfer {
    pub name: String,
    /// Its size, from the signed manifest.
    pub size: u64,
    pub method: Method,
    /// Bytes received from the repository for it.
    pub received: u64,
}

/// The figures of one fetch that staged an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The image staged: name, version, manifest sha256.
    pub image: String,
    pub version: String,
    pub manifest_sha256: Sha256,
    /// When (Unix seconds).
    pub at: u64,
    pub artifacts: Vec<ArtifactTransfer>,
    /// Bytes of metadata received: roots, the channel document and its signatures, the
    /// manifest and its signature.
    pub metadata_received: u64,
    /// Every byte received: metadata and artifacts.
    pub received: u64,
    /// The total size of the artifacts the node holds now (skipped ones not counted).
    pub size: u64,
}

impl Transfer {
    /// `received` as a percentage of `size`.
    pub fn percent(&self) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        self.received as f64 * 100.0 / self.size as f64
    }

    /// The lines `update fetch` and `update status` print: one per artifact and one for the
    /// metadata (then `update fetch` prints [`Transfer::total`]).
    pub fn lines(&self) -> Vec<String> {
        let width = self
            .artifacts
            .iter()
            .map(|a| a.name.len())
            .chain(["metadata".len()])
            .max()
            .unwrap_or(0);
        let mut out: Vec<String> = self
            .artifacts
            .iter()
            .map(|a| {
                format!(
                    "  {:width$}  {:>12} bytes  {:10}  {:>12} bytes received",
                    a.name,
                    a.size,
                    a.method.name(),
                    a.received
                )
            })
            .collect();
        out.push(format!(
            "  {:width$}  {:>12}        {:10}  {:>12} bytes received",
            "metadata", "", "", self.metadata_received
        ));
        out
    }

    /// `received N bytes of M (X%)`.
    pub fn total(&self) -> String {
        format!(
            "received {} bytes of {} ({:.2}%)",
            self.received,
            self.size,
            self.percent()
        )
    }

    /// One line for `update status`: what was fetched, when, and the total.
    pub fn summary(&self) -> String {
        let mut counts: Vec<String> = Vec::new();
        for m in [
            Method::Full,
            Method::Blocks,
            Method::Delta,
            Method::Reused,
            Method::Resumed,
            Method::Skipped,
        ] {
            let n = self.artifacts.iter().filter(|a| a.method == m).count();
            if n > 0 {
                counts.push(format!("{n} {}", m.name()));
            }
        }
        format!(
            "{} {} at {}: {}; artifacts: {}",
            self.image,
            self.version,
            fmt_time(self.at),
            self.total(),
            if counts.is_empty() {
                "none".to_owned()
            } else {
                counts.join(", ")
            }
        )
    }

    /// Records it as the state's last fetch (atomically).
    pub(super) fn record(&self, state: &Path) -> Result<(), ChannelError> {
        write(&state.join(LAST_FETCH), &to_bytes(self))
    }
}

/// The figures of the last fetch that staged an image, if any (read strictly: a malformed file
/// is an error naming it).
pub fn last_fetch(state: &Path) -> Result<Option<Transfer>, ChannelError> {
    read_json(state, LAST_FETCH)
}

/// Counts the bytes of metadata received while verifying.
#[derive(Debug, Default)]
pub(super) struct Meter(Cell<u64>);

impl Meter {
    pub(super) fn add(&self, n: usize) {
        self.0.set(self.0.get() + n as u64);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(artifacts: Vec<ArtifactTransfer>, metadata: u64) -> Transfer {
        let downloaded: u64 = artifacts.iter().map(|a| a.received).sum();
        Transfer {
            image: "hello".into(),
            version: "0.2.0".into(),
            manifest_sha256: Sha256::of(b"m"),
            at: 1_700_000_000,
            size: artifacts.iter().map(|a| a.size).sum(),
            artifacts,
            metadata_received: metadata,
            received: metadata + downloaded,
        }
    }

    fn artifact(name: &str, size: u64, method: Method) -> ArtifactTransfer {
        ArtifactTransfer {
            name: name.into(),
            size,
            method,
            received: if method == Method::Full { size } else { 0 },
        }
    }

    #[test]
    fn lines_and_total() {
        let t = transfer(
            vec![
                artifact("kernel", 14_000_000, Method::Reused),
                artifact("rootfs.erofs", 31_000_000, Method::Full),
            ],
            5_000,
        );
        assert_eq!(t.total(), "received 31005000 bytes of 45000000 (68.90%)");
        let lines = t.lines();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("  kernel ")
                && lines[0].contains(" reused ")
                && lines[0].ends_with("           0 bytes received"),
            "{lines:?}"
        );
        assert!(lines[1].contains("31000000 bytes  full "), "{lines:?}");
        assert!(lines[2].starts_with("  metadata ") && lines[2].ends_with(" 5000 bytes received"));
        assert!(
            t.summary()
                .ends_with("(68.90%); artifacts: 1 full, 1 reused"),
            "{}",
            t.summary()
        );
        // Nothing to fetch: no division by zero.
        assert_eq!(
            transfer(vec![], 10).total(),
            "received 10 bytes of 0 (0.00%)"
        );
    }

    #[test]
    fn json_names_the_method_in_lowercase() {
        let t = transfer(vec![artifact("sbom.cdx.json", 10, Method::Reused)], 1);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["artifacts"][0]["method"], "reused");
        assert_eq!(serde_json::from_value::<Transfer>(v.clone()).unwrap(), t);
        // What an older stratos wrote in last-fetch.json still reads.
        let mut old = v;
        old["artifacts"][0]["method"] = "downloaded".into();
        let read: Transfer = serde_json::from_value(old).unwrap();
        assert_eq!(read.artifacts[0].method, Method::Full);
    }
}
