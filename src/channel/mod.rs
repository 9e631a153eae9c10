//! Signed release channels: a static repository of signed metadata and content-addressed
//! objects, operator commands that write it, and the node-side client that decides, verifies
//! and stages updates.
//!
//! Layout (servable by any static HTTP server, object store or CDN):
//! ```text
//! root.json, root.sigs.json                 current root: keys, role thresholds, version, expiry
//! roots/<N>.root.json, roots/<N>.sigs.json   every root version, for nodes walking rotations
//! channels/<name>.json, <name>.sigs.json    channel: version, expiry, and per architecture its
//!                                           image, rollout, halted, previous, kernel deltas
//! objects/sha256/<hex>                      manifest.json, manifest.sig, every artifact, and
//!                                           every kernel delta
//! objects/sha256/<hex>.zst                  an artifact as one zstd frame, when that is smaller
//! ```
//! A kernel delta (`deltas` in the channel, [`Delta`]) rebuilds the track's kernel from the
//! kernel of an image the track carried before ([`crate::archive::delta`]); `publish` writes
//! them ([`operator::deltas`]). Objects are never rewritten once whole in the store.
//! Signatures are detached: `*.sigs.json` holds ed25519 signatures over the exact bytes of the
//! document next to it.
//!
//! Freshness: every channel document carries the time it was signed (`timestamp`); nodes refuse
//! one older than their maximum age ([`DEFAULT_MAX_AGE`], `update --max-age`), so a mirror
//! cannot freeze a node on an old but unexpired document. `stratos repo refresh` re-signs a
//! channel unchanged (a new version and timestamp) for channels that do not change for weeks.
//!
//! Three rooms, by who reads the code: [`doc`] (the documents both sides share: parsing,
//! signing, verification), [`operator`] (writing the repository, rollouts and their gates) and
//! [`node`] (the client, its state directory and lifecycle). Neither side uses the other;
//! both use the documents and [`ChannelError`].

pub mod doc;
mod error;
mod fs;
pub mod node;
pub mod operator;

pub use doc::{
    check_expiry_bound, cohort, compare_versions, fmt_age, fmt_time, now, parse_channel,
    parse_root, sign_bytes, to_bytes, verify_threshold, Channel, ChannelName, Delta, ImageRef,
    KeyEntry, Role, RoleName, Roles, Rollout, Root, Signature, Signatures, Track, Wave,
    CHANNEL_TYPE, CLOCK_SKEW, DEFAULT_MAX_AGE, MAX_METADATA_BYTES, MAX_VALIDITY, ROOT_TYPE,
    SPEC_VERSION,
};
pub use error::{
    ChannelError, FailedNode, GateError, ImageCheckError, ImageNamed, StateError, Tie, UsageError,
    WaveFault, WavesError,
};
