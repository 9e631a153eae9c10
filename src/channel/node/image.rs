//! Whether an image directory holds exactly the image a digest names.

use std::path::Path;

use crate::channel::error::ImageCheckError;
use crate::digest::Sha256;

/// Whether `dir` holds exactly the image `digest` names: its manifest hashes to the digest
/// (which a verified channel document carried) and its files to what the manifest lists (those
/// a node boots from: see [`Need::Boot`](crate::sign::verify::Need::Boot)).
/// [`ImageCheckError::is_mismatch`] tells a mismatch (the image is not that image) from an I/O
/// failure.
pub fn check_image(dir: &Path, digest: &Sha256) -> Result<(), ImageCheckError> {
    let m = crate::fsio::read_regular(
        &dir.join(crate::sign::manifest::MANIFEST_FILE),
        crate::fsio::caps::MANIFEST,
        "a manifest",
        crate::fsio::Links::Refuse,
    )
    .map_err(ImageCheckError::Unreadable)?;
    if Sha256::of(&m) != *digest {
        return Err(ImageCheckError::ManifestChanged {
            dir: dir.to_owned(),
        });
    }
    let manifest = crate::sign::verify::load_manifest(dir).map_err(ImageCheckError::BadManifest)?;
    crate::sign::verify::verify_contents_for(dir, &manifest, crate::sign::verify::Need::Boot)
        .map_err(ImageCheckError::Contents)
}
