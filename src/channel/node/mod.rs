//! The node side: verify the repository's metadata against what the node already trusts,
//! decide from a stable hash whether the rollout has reached this node, stage the image, and
//! put it into service behind a boot test (or go back).
//!
//! State directory:
//! ```text
//! trusted/root.json, trusted/root.sigs.json          the newest root the node accepted
//! trusted/channels/<name>.json, <name>.sigs.json      the newest channel document accepted
//! images/<manifest sha256>/                          images (manifest, signature, artifacts)
//! staged.json                                        which image boots next (A/B slots build on this)
//! current.json                                       the image in service; `replaces` is the one before it
//! previous.json                                      the image before it (written from current.json's `replaces`)
//! rejected.json                                      images this node refused, with why; never staged or applied again
//! last-fetch.json                                    what the last fetch that staged an image received ([`transfer`])
//! report-seq.json                                    the node's health-report counter
//! reports/<manifest sha256>.json                     a health report `apply --report` could not write where asked
//! .partial-<manifest sha256>/                        an image being fetched: kept when a fetch fails or is killed (the
//!                                                    next fetch of it resumes there), removed by a fetch of another image
//! .staging-XXXXXX/                                   a damaged image directory moved aside (removed at the next run)
//! ```
//! Nothing in the state changes unless every check passed; trusted metadata is stored last. A
//! run holds an exclusive lock on the state directory; with it held, what an interrupted run
//! left behind (only names StratOS makes) is removed first ([`files`]), and an interrupted
//! switch is finished ([`state::open`]).
//!
//! The rooms: [`client`] (a [`Node`] checks and fetches: `verify` the metadata,
//! [`decide`](mod@decide), `stage`), [`transport`] (where it reads from), `reuse` (the
//! artifacts it already holds), `blocks` (a root image fetched block by block),
//! [`transfer`] (what a fetch received), [`state`] and [`files`]
//! (the state directory),
//! [`lifecycle`] (apply, rollback, the rejected list), [`apply`] (`update apply`'s steps),
//! [`report_out`] (where its health report goes) and
//! [`image`] (is an image directory the image a digest names).

pub mod apply;
mod blocks;
pub mod client;
pub mod decide;
pub mod files;
pub mod image;
pub mod lifecycle;
pub mod report_out;
mod reuse;
mod stage;
pub mod state;
pub mod transfer;
pub mod transport;
mod verify;

pub use apply::{Apply, Begun, Verdict};
pub use client::{bootstrap, Failure, Node};
pub use decide::{decide, Decision};
pub use image::check_image;
pub use lifecycle::{
    clear_rejected, commit_apply, current_image, next_report_seq, rollback, Applied, ROLLED_BACK,
};
pub use state::{open, Current, NodeState, Opened, Rejected, RejectedList, Staged};
pub use transfer::{last_fetch, ArtifactTransfer, Method, Transfer};
pub use transport::{Download, Source};
