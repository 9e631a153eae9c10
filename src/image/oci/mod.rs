//! An image as an OCI image layout (image-spec 1.1): `oci-layout`, `index.json` and
//! `blobs/sha256/…`, written with `oci-spec`'s types and read back by every OCI tool
//! (skopeo, umoci, podman, containerd).
//!
//! What a layout of ours holds:
//! - one image manifest (the only entry of `index.json`, so `oci:DIR` needs no tag): its
//!   config comes from the image's init configuration ([`config`]); its single layer is the
//!   image's root tree as a deterministic tar (the same tar as `rootfs.tar.zst`), gzip'd;
//! - two referrers (manifests whose `subject` is the image manifest, found among the blobs):
//!   the CycloneDX SBOM (`artifactType` [`SBOM_TYPE`]) and the StratOS statement
//!   ([`STATEMENT_TYPE`]): a small document naming the image manifest's digest and the StratOS
//!   manifest's sha256, signed with the image key, next to the StratOS manifest itself;
//! - `seccomp.json`: the image's seccomp policy (OCI runtime-spec JSON), when given, for
//!   `--security-opt seccomp=`.
//!
//! Every JSON document is canonical (sorted keys, fixed indentation), every time is the source
//! date epoch: two exports of one image are the same bytes.

mod config;
mod docker;
pub mod export;
mod layout;
pub mod verify;

pub use export::{export, ExportError, ExportOptions, Exported, Tag};
pub use verify::{verify, OciVerifyError, Verified};

use serde::{Deserialize, Serialize};

/// The `artifactType` of the SBOM referrer, and the media type of its one blob.
pub const SBOM_TYPE: &str = "application/vnd.cyclonedx+json";
/// The `artifactType` of the statement referrer, and the media type of the statement blob.
pub const STATEMENT_TYPE: &str = "application/vnd.stratos.oci-statement.v1+json";
/// The media type of a detached signature (the format of `manifest.sig`).
pub const SIGNATURE_TYPE: &str = "application/vnd.stratos.signature.v1+json";
/// The media type of the StratOS manifest (`manifest.json` of the image directory).
pub const STRATOS_MANIFEST_TYPE: &str = "application/vnd.stratos.manifest.v1+json";
/// The media type of the StratOS manifest's signature (`manifest.sig`).
pub const STRATOS_SIGNATURE_TYPE: &str = "application/vnd.stratos.manifest-signature.v1+json";

/// The image manifest's annotation holding the StratOS manifest's sha256.
pub const ANNOTATION_STRATOS_MANIFEST: &str = "dev.stratos.manifest.sha256";
/// `index.json`'s annotation marking a layout StratOS wrote (its value: the image's name), so
/// that a later export may replace it.
pub const ANNOTATION_EXPORT: &str = "dev.stratos.export";
/// The image's seccomp policy, in the layout's directory.
pub const SECCOMP_FILE: &str = "seccomp.json";
/// The files of a layout besides its blobs.
pub const LAYOUT_FILES: [&str; 3] = ["oci-layout", "index.json", SECCOMP_FILE];

/// What the image key signs: the image manifest's digest and the StratOS manifest it was
/// exported from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always 1.
    pub format: u32,
    /// The image's name and version, as its StratOS manifest has them.
    pub image: String,
    pub version: String,
    /// `sha256:<hex>` of the image manifest.
    pub image_manifest: String,
    /// sha256 (hex) of the StratOS manifest (`manifest.json`), stored next to the statement.
    pub stratos_manifest_sha256: String,
}

/// The sha256 of `bytes` as an OCI digest string (`sha256:<hex>`).
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::sign::sha256_hex(bytes))
}
