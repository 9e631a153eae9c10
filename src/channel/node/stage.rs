//! Staging a selected image: every artifact the node already holds (same sha256, in one of its
//! images) linked or copied, every other one streamed from the repository, into a temporary
//! directory of the state directory; the whole checked against the signed manifest, moved into
//! `images/<manifest sha256>` when complete, then named in `staged.json`. A failure leaves the
//! state as it was (the temporary directory goes, with any partial file, or is removed at the
//! next run if this one is killed).

use std::path::Path;

use tempfile::TempDir;

use super::client::Node;
use super::files::{sync_dir, write, write_new, RAND_LEN, STAGING_PREFIX};
use super::image::check_image;
use super::reuse::Held;
use super::state::{failpoint, tidy, NodeState, Staged};
use super::transfer::{ArtifactTransfer, Method, Transfer};
use super::transport::Download;
use super::verify::{Verified, VerifiedImage};
use crate::channel::doc::{to_bytes, Channel, ImageRef};
use crate::channel::error::ChannelError;
use crate::sign::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};

impl Node {
    /// Downloads (or reuses what the node holds of), verifies and stages the image `img` of
    /// the verified channel `v`, the node's state being `st`; returns its directory, relative
    /// to the state directory, and what was received.
    pub(super) fn stage(
        &self,
        v: &Verified,
        img: &VerifiedImage,
        st: &NodeState,
        notes: &mut Vec<String>,
    ) -> Result<(String, Transfer), ChannelError> {
        let c = &v.channel;
        let digest = img.image.manifest_sha256;
        let rel = format!("images/{digest}");
        let dest = self.state.join(&rel);
        // The node has this image already (e.g. the previous one, which a channel rollback
        // names again): it is kept as it is, never deleted to be downloaded again.
        if dest.is_dir() && check_image(&dest, &digest).is_ok() {
            let all_reused = img
                .manifest
                .artifacts
                .iter()
                .map(|a| ArtifactTransfer {
                    name: a.name.as_str().to_owned(),
                    size: a.size,
                    method: Method::Reused,
                    received: 0,
                })
                .collect();
            let rel = self.record_staged(c, &img.image, rel, notes)?;
            return Ok((rel, self.transfer(v, img, all_reused)));
        }
        let held = Held::index(&self.state, st, &digest, notes);
        let tmp = self.staging_dir()?;
        let artifacts = self.download(img, &held, tmp.path(), notes)?;
        self.install(tmp, &dest)?;
        let rel = self.record_staged(c, &img.image, rel, notes)?;
        Ok((rel, self.transfer(v, img, artifacts)))
    }

    /// The figures of a fetch of `img` whose artifacts came as `artifacts`.
    fn transfer(
        &self,
        v: &Verified,
        img: &VerifiedImage,
        artifacts: Vec<ArtifactTransfer>,
    ) -> Transfer {
        let downloaded: u64 = artifacts.iter().map(|a| a.received).sum();
        Transfer {
            image: img.image.name.clone(),
            version: img.image.version.clone(),
            manifest_sha256: img.image.manifest_sha256,
            at: self.now,
            size: artifacts.iter().map(|a| a.size).sum(),
            artifacts,
            metadata_received: v.received,
            received: v.received + downloaded,
        }
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

    /// The image `v` into `dir`: every artifact (from `held` when the node has it, else
    /// downloaded), the manifest and its signature, each file as the manifest says, and the
    /// whole image verified against it. Returns how each artifact came.
    fn download(
        &self,
        v: &VerifiedImage,
        held: &Held,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<Vec<ArtifactTransfer>, ChannelError> {
        let mut artifacts = Vec::new();
        for a in &v.manifest.artifacts {
            if a.size > self.max_artifact_bytes {
                return Err(ChannelError::ArtifactTooLarge {
                    name: a.name.to_string(),
                    size: a.size,
                    cap: self.max_artifact_bytes,
                });
            }
            let (method, received) = if held.place(a, &dir.join(&a.name), notes)? {
                (Method::Reused, 0)
            } else {
                let received = self.download_artifact(a, dir)?;
                failpoint("fetch:artifact-received");
                (Method::Downloaded, received)
            };
            artifacts.push(ArtifactTransfer {
                name: a.name.as_str().to_owned(),
                size: a.size,
                method,
                received,
            });
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
        })?;
        Ok(artifacts)
    }

    /// One artifact streamed into its file in `dir`, hashed as it arrives: more bytes than the
    /// manifest's size are refused as they arrive, fewer or other ones once all arrived (the
    /// partial file goes with the staging directory). Returns the bytes received.
    fn download_artifact(&self, a: &Artifact, dir: &Path) -> Result<u64, ChannelError> {
        let rel = format!("objects/sha256/{}", a.sha256);
        let mut file = Download::create(&dir.join(&a.name))?;
        if !self.source.fetch_to(&rel, a.size, &mut file)? {
            return Err(ChannelError::NotFound { rel });
        }
        let (sha256, len) = file.finish()?;
        if len != a.size || sha256 != a.sha256 {
            return Err(ChannelError::ArtifactMismatch {
                name: a.name.to_string(),
            });
        }
        Ok(len)
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
