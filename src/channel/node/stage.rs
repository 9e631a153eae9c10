//! Staging a selected image: every artifact downloaded into a temporary directory of the state
//! directory and checked against the signed manifest, the whole moved into
//! `images/<manifest sha256>` when complete, then named in `staged.json`. A failure leaves the
//! state as it was (the temporary directory goes, or is removed at the next run if this one is
//! killed).

use std::path::Path;

use tempfile::TempDir;

use super::client::Node;
use super::files::{sync_dir, write, write_new, RAND_LEN, STAGING_PREFIX};
use super::image::check_image;
use super::state::{failpoint, tidy, Staged};
use super::verify::{Verified, VerifiedImage};
use crate::channel::doc::{to_bytes, Channel, ImageRef};
use crate::channel::error::ChannelError;
use crate::digest::Sha256;
use crate::sign::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};

impl Node {
    /// Downloads, verifies and stages the image `img` of the verified channel `v`; returns its
    /// directory, relative to the state directory.
    pub(super) fn stage(
        &self,
        v: &Verified,
        img: &VerifiedImage,
        notes: &mut Vec<String>,
    ) -> Result<String, ChannelError> {
        let c = &v.channel;
        let rel = format!("images/{}", img.image.manifest_sha256);
        let dest = self.state.join(&rel);
        // The node has this image already (e.g. the previous one, which a channel rollback
        // names again): it is kept as it is, never deleted to be downloaded again.
        if dest.is_dir() && check_image(&dest, &img.image.manifest_sha256).is_ok() {
            return self.record_staged(c, &img.image, rel, notes);
        }
        let tmp = self.staging_dir()?;
        self.download(img, tmp.path())?;
        self.install(tmp, &dest)?;
        self.record_staged(c, &img.image, rel, notes)
    }

    /// A new `.staging-XXXXXX` directory in the state directory.
    fn staging_dir(&self) -> Result<TempDir, ChannelError> {
        tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .rand_bytes(RAND_LEN)
            .tempdir_in(&self.state)
            .map_err(ChannelError::io(format!(
                "creating a directory in {}",
                self.state.display()
            )))
    }

    /// The image `v` into `dir`: every artifact, the manifest and its signature, each file as
    /// the manifest says, and the whole image verified against it.
    fn download(&self, v: &VerifiedImage, dir: &Path) -> Result<(), ChannelError> {
        for a in &v.manifest.artifacts {
            self.download_artifact(a, dir)?;
        }
        write_new(&dir.join(MANIFEST_FILE), &v.manifest_bytes)?;
        write_new(&dir.join(SIGNATURE_FILE), &v.signature_bytes)?;
        sync_dir(dir)?;
        // The signature was checked on these manifest bytes; what is left is that the files on
        // disk are the ones it names and the SBOM agrees with it.
        crate::sign::verify::verify_contents(dir, &v.manifest).map_err(|source| {
            ChannelError::BadImage {
                what: "staged image".to_owned(),
                source,
            }
        })
    }

    /// One artifact into `dir`, within the node's cap, with the size and digest the manifest
    /// gives it.
    fn download_artifact(&self, a: &Artifact, dir: &Path) -> Result<(), ChannelError> {
        let digest = a.sha256;
        if a.size > self.max_artifact_bytes {
            return Err(ChannelError::ArtifactTooLarge {
                name: a.name.to_string(),
                size: a.size,
                cap: self.max_artifact_bytes,
            });
        }
        let bytes = self.fetch(&format!("objects/sha256/{digest}"), a.size)?;
        if bytes.len() as u64 != a.size || Sha256::of(&bytes) != digest {
            return Err(ChannelError::ArtifactMismatch {
                name: a.name.to_string(),
            });
        }
        write_new(&dir.join(&a.name), &bytes)
    }

    /// Moves the verified download to `dest`; a damaged copy there is moved aside first, under
    /// a name the next run removes.
    fn install(&self, tmp: TempDir, dest: &Path) -> Result<(), ChannelError> {
        let images = self.state.join("images");
        std::fs::create_dir_all(&images)
            .map_err(ChannelError::io(format!("creating {}", images.display())))?;
        if dest.exists() {
            let aside = self.staging_dir()?.keep();
            std::fs::rename(dest, aside.join("damaged")).map_err(ChannelError::io(format!(
                "moving the damaged {} aside",
                dest.display()
            )))?;
        }
        failpoint("fetch:downloaded");
        let kept = tmp.keep();
        std::fs::rename(&kept, dest).map_err(ChannelError::io(format!(
            "moving the image to {}",
            dest.display()
        )))?;
        sync_dir(&images)
    }

    /// Names the image (of channel `c`) in `staged.json` and frees the one staged before.
    fn record_staged(
        &self,
        c: &Channel,
        image: &ImageRef,
        rel: String,
        notes: &mut Vec<String>,
    ) -> Result<String, ChannelError> {
        let staged = Staged {
            channel: c.channel.clone(),
            channel_version: c.version,
            image: image.clone(),
            dir: rel.clone(),
        };
        failpoint("fetch:image-moved");
        write(&self.state.join("staged.json"), &to_bytes(&staged))?;
        failpoint("fetch:staged-written");
        // The image staged before this one will not boot now: it goes (never the current or
        // the previous one).
        tidy(&self.state, notes);
        Ok(rel)
    }
}
