//! The layout's files: content-addressed blobs under `blobs/sha256/`, canonical JSON.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};
use serde::Serialize;

/// The directory of the sha256 blobs, relative to the layout.
pub(super) const BLOBS: &str = "blobs/sha256";

/// `value` as canonical JSON bytes (sorted keys: `oci-spec` keeps annotations in hash maps,
/// whose order changes from run to run).
pub(super) fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    let v = serde_json::to_value(value).expect("OCI documents serialise to JSON");
    crate::sign::manifest::canonical_json(&v)
        .expect("OCI documents hold no floats")
        .into_bytes()
}

/// The path of the blob with `hex` digest in `layout`.
pub(super) fn blob_path(layout: &Path, hex: &str) -> PathBuf {
    layout.join(BLOBS).join(hex)
}

/// Blobs being written into a layout directory, each once.
pub(super) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub(super) fn create(layout: &Path) -> std::io::Result<Blobs> {
        let dir = layout.join(BLOBS);
        std::fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    /// Stores `bytes` and returns its descriptor (with `artifact_type` when given).
    pub(super) fn put(
        &mut self,
        media_type: MediaType,
        bytes: &[u8],
        artifact_type: Option<&str>,
    ) -> std::io::Result<Descriptor> {
        use std::io::Write;
        let digest = super::digest_of(bytes);
        let path = self.dir.join(&digest["sha256:".len()..]);
        if !path.exists() {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        let mut d = DescriptorBuilder::default()
            .media_type(media_type)
            .size(bytes.len() as u64)
            .digest(
                digest
                    .parse::<oci_spec::image::Digest>()
                    .expect("a sha256 digest we made"),
            )
            .build()
            .expect("every required field is set");
        if let Some(t) = artifact_type {
            d.set_artifact_type(Some(MediaType::Other(t.to_owned())));
        }
        Ok(d)
    }

    /// Stores `value` as canonical JSON.
    pub(super) fn put_json<T: Serialize>(
        &mut self,
        media_type: MediaType,
        value: &T,
        artifact_type: Option<&str>,
    ) -> std::io::Result<(Descriptor, Vec<u8>)> {
        let bytes = canonical(value);
        let d = self.put(media_type, &bytes, artifact_type)?;
        Ok((d, bytes))
    }
}

/// The hex part of a descriptor's digest, if it is a well-formed sha256 digest.
pub(super) fn sha256_hex(d: &Descriptor) -> Option<&str> {
    let hex = d.digest().as_ref().strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}
