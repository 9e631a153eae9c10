//! The operator's side: writing the release repository ([`Repo`]: [`init`], [`publish`],
//! [`rotate`]), rolling a channel's image out ([`rollout`], [`waves`]) behind a gate — a boot-test
//! result ([`gate`]) or the canaries' health reports ([`report_gate`]) — and the keys the
//! commands sign with ([`keys`]).

pub mod deltas;
pub mod gate;
pub mod init;
pub mod keys;
pub mod publish;
pub mod repo;
pub mod report_gate;
pub mod rollout;
pub mod rotate;
pub mod waves;

pub use deltas::DeltaNote;
pub use publish::{Published, OBJECT_LEVEL};
pub use repo::{Repo, Status, StatusRow};
pub use report_gate::ReportGate;
pub use rollout::{Advanced, Gate, Widen};
pub use rotate::Rotation;
