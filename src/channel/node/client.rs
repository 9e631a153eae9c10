//! A node following a channel: `update check` verifies the repository's metadata and decides;
//! `update fetch` also downloads, verifies and stages the image. Both lock the state directory
//! first and store the newly trusted metadata last.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decide::{decide, Decision};
use super::files::{lock_state, write};
use super::state::{open, NodeState, Opened};
use super::transport::Source;
use crate::arch::Arch;
use crate::channel::doc::{fmt_time, parse_root, verify_threshold, Channel, ChannelName, RoleName};
use crate::channel::error::ChannelError;
use crate::channel::fs::metadata_if_there;
use crate::fsio::{self, caps};

pub struct Node {
    pub source: Source,
    pub channel: ChannelName,
    pub node_id: String,
    /// The node's architecture: only the channel's image for it is fetched.
    pub arch: Arch,
    pub state: PathBuf,
    /// The time decisions are made at (seconds); `now()` outside tests.
    pub now: u64,
    /// Largest artifact accepted.
    pub max_artifact_bytes: u64,
    /// Fetch the artifacts a node does not boot from too (an EROFS image's `rootfs.tar.zst`).
    pub all_artifacts: bool,
    /// Oldest channel document accepted, in seconds since it was signed (freeze protection;
    /// [`crate::channel::DEFAULT_MAX_AGE`] unless the operator of the node says otherwise).
    pub max_age: u64,
}

/// What `update check --json` prints when the check failed: the shape of a [`Decision`] that
/// selected nothing, with why. (Fields in the order the JSON lists them.)
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub channel: ChannelName,
    /// Always null: no channel document was accepted.
    pub channel_version: Option<u64>,
    /// Always null.
    pub image_version: Option<String>,
    pub reason: String,
    /// Verification refused something; a failed or slow repository or a local error is not a
    /// rejection (the exit code is 1 or 2 all the same).
    pub rejected: bool,
    pub selected: bool,
}

impl Failure {
    pub fn of(channel: &ChannelName, e: &ChannelError) -> Failure {
        Failure {
            channel: channel.clone(),
            channel_version: None,
            image_version: None,
            reason: e.to_string(),
            rejected: e.is_rejection(),
            selected: false,
        }
    }
}

/// Copies a trusted root (and its `.sigs.json` next to it) into a new state directory.
pub fn bootstrap(state: &Path, root_json: &Path) -> Result<(), ChannelError> {
    let trusted = state.join("trusted/root.json");
    // Only a root known to be there is kept: one that cannot be looked at is an error, never
    // taken for "none yet" and replaced by the bootstrap root.
    if metadata_if_there(&trusted)?.is_some() {
        return Ok(());
    }
    let read = |p: &Path| {
        fsio::read_file(p, caps::METADATA, "a root document")
            .map_err(ChannelError::flag("--bootstrap-root"))
    };
    let bytes = read(root_json)?;
    let sigs_path =
        root_json.with_file_name(root_json.file_name().and_then(|n| n.to_str()).map_or(
            "root.sigs.json".to_owned(),
            |n| {
                n.replace(".root.json", ".sigs.json")
                    .replace("root.json", "root.sigs.json")
            },
        ));
    let sigs = read(&sigs_path)?;
    let root = parse_root(&bytes, &root_json.display().to_string())?;
    verify_threshold("bootstrap root", &bytes, &sigs, &root, RoleName::Root)?;
    std::fs::create_dir_all(state)
        .map_err(ChannelError::io(format!("creating {}", state.display())))?;
    let _lock = lock_state(state)?;
    write(&state.join("trusted/root.sigs.json"), &sigs)?;
    write(&trusted, &bytes)
}

impl Node {
    /// The decision for this node, from the state [`Node::begin`] read (strictly: a malformed
    /// state file already stopped the run).
    fn decide(&self, c: &Channel, st: &NodeState) -> Decision {
        let mut d = decide(
            c,
            self.arch,
            &self.node_id,
            self.now,
            st.current.as_ref(),
            st.staged.as_ref(),
        );
        // An image this node refused is never staged again, whatever the channel says.
        let track = c.track(self.arch);
        if let Some(r) = track.and_then(|t| st.rejected.find(&t.image.manifest_sha256)) {
            d.selected = false;
            d.reason = format!(
                "rejected on this node at {}: {} ({} {}); `stratos update clear-rejected --state {} --digest {}` lets it be tried again",
                fmt_time(r.at),
                r.reason,
                r.image,
                r.version,
                self.state.display(),
                r.manifest_sha256
            );
        }
        d
    }

    /// Locks the state, removes what an interrupted run left in it and finishes an
    /// interrupted switch (see [`open`]).
    fn begin(&self) -> Result<Opened, ChannelError> {
        open(&self.state)
    }

    /// Verifies metadata and decides; stores the newly trusted metadata. Downloads nothing but
    /// the image's manifest and signature.
    pub fn check(&self) -> Result<Decision, ChannelError> {
        let o = self.begin()?;
        let v = self.verify_metadata()?;
        let mut d = self.decide(&v.channel, &o.state);
        d.notes = o.notes;
        v.store(self)?;
        Ok(d)
    }

    /// Like [`Node::check`], and when selected downloads (or reuses what the node holds of),
    /// verifies and stages the image, and records what was received (`last-fetch.json`).
    pub fn fetch_update(&self) -> Result<Decision, ChannelError> {
        let o = self.begin()?;
        let v = self.verify_metadata()?;
        let mut d = self.decide(&v.channel, &o.state);
        d.notes = o.notes.clone();
        // Selected means the channel carries this node's image, which was verified.
        if let (true, Some(img)) = (d.selected, &v.image) {
            let (dir, transfer) = self.stage(&v, img, &o.state, &mut d.notes)?;
            transfer.record(&self.state)?;
            d.staged = Some(dir);
            d.reason = format!("{}; staged", d.reason);
            d.transfer = Some(transfer);
        }
        v.store(self)?;
        Ok(d)
    }
}
