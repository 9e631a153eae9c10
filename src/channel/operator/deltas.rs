//! Kernel deltas: when `publish` puts an image on a track, a binary delta
//! ([`crate::archive::delta`]) from the kernel of each image the track carried before (its image
//! and its previous one) to the new image's kernel, written as a content-addressed object and
//! listed in the track ([`Delta`]). Nodes running one of those images download the delta
//! instead of the kernel; a delta is kept only when it is smaller than the compressed kernel.

use crate::archive::delta;
use crate::channel::doc::{Delta, ImageRef, Track, MAX_DELTAS};
use crate::channel::error::ChannelError;
use crate::channel::fs::metadata_if_there;
use crate::digest::Sha256;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::Artifact;

use super::repo::Repo;

/// What `publish` did about the delta from one base image, for its report.
#[derive(Debug, Clone)]
pub enum DeltaNote {
    /// Computed and written: `delta.size` bytes against the `compressed` kernel's.
    Written {
        from: ImageRef,
        delta: Delta,
        compressed: u64,
    },
    /// The track already listed it and its object is there (the same image published again):
    /// listed again, not recomputed.
    Kept { from: ImageRef, delta: Delta },
    /// Computed, but not smaller than the compressed kernel: not written, not listed.
    NotSmaller {
        from: ImageRef,
        size: u64,
        compressed: u64,
    },
    /// The base image's kernel could not be read from the repository (`why`): no delta from it.
    Unavailable { from: ImageRef, why: String },
}

impl Repo {
    /// The path of object `sha256` (with `suffix`, e.g. `.zst`).
    pub(super) fn object_path(&self, sha256: &Sha256, suffix: &str) -> std::path::PathBuf {
        self.dir
            .join("objects/sha256")
            .join(format!("{}{suffix}", sha256.hex()))
    }

    /// Object `want` (`size` bytes at most `cap`), checked against its digest.
    fn read_object(
        &self,
        want: &Sha256,
        cap: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, ChannelError> {
        let path = self.object_path(want, "");
        let bytes = fsio::read_regular(&path, cap, what, Links::Refuse)
            .map_err(ChannelError::RefusedFile)?;
        if Sha256::of(&bytes) != *want {
            return Err(ChannelError::DamagedObject { path });
        }
        Ok(bytes)
    }

    /// The kernel artifact of an image in the repository, from its manifest object.
    pub(super) fn image_kernel(&self, image: &ImageRef) -> Result<Artifact, ChannelError> {
        let manifest = self.read_object(&image.manifest_sha256, caps::MANIFEST, "a manifest")?;
        let m = crate::sign::verify::parse_manifest(&manifest).map_err(|source| {
            ChannelError::BadImage {
                what: format!(
                    "{} {} (manifest {})",
                    image.name, image.version, image.manifest_sha256
                ),
                source,
            }
        })?;
        Ok(kernel_of(&m).clone())
    }

    /// The size a node downloads for the whole of object `a`: its `.zst` when there is one.
    fn compressed_size(&self, a: &Artifact) -> Result<u64, ChannelError> {
        Ok(metadata_if_there(&self.object_path(&a.sha256, ".zst"))?.map_or(a.size, |m| m.len()))
    }

    /// The deltas to `kernel` (the kernel of the image being put on the track) from the kernels
    /// of the images `old` carried (its image and previous one, each kernel once; none from a
    /// kernel equal to `kernel`). Deltas `old` already lists whose object is there are kept as
    /// they are; the others are computed and written before the channel document names them.
    pub(super) fn kernel_deltas(
        &self,
        old: Option<&Track>,
        kernel: &Artifact,
    ) -> Result<(Vec<Delta>, Vec<DeltaNote>), ChannelError> {
        let (mut deltas, mut notes) = (Vec::new(), Vec::new());
        let Some(old) = old else {
            return Ok((deltas, notes));
        };
        let compressed = self.compressed_size(kernel)?;
        let mut seen = vec![kernel.sha256];
        let mut target: Option<Vec<u8>> = None;
        for base in std::iter::once(&old.image).chain(old.previous.as_ref()) {
            let unavailable = |e: ChannelError| DeltaNote::Unavailable {
                from: base.clone(),
                why: e.to_string(),
            };
            let from = match self.image_kernel(base) {
                Ok(a) => a,
                Err(e) => {
                    notes.push(unavailable(e));
                    continue;
                }
            };
            if seen.contains(&from.sha256) {
                continue;
            }
            seen.push(from.sha256);
            let listed = old.deltas.iter().find(|d| {
                d.artifact == kernel.name && d.from == from.sha256 && d.to == kernel.sha256
            });
            if let Some(d) = listed {
                if metadata_if_there(&self.object_path(&d.sha256, ""))?.is_some() {
                    deltas.push(d.clone());
                    notes.push(DeltaNote::Kept {
                        from: base.clone(),
                        delta: d.clone(),
                    });
                    continue;
                }
            }
            let base_bytes = match self.read_object(&from.sha256, caps::KERNEL_IMAGE, "a kernel") {
                Ok(b) => b,
                Err(e) => {
                    notes.push(unavailable(e));
                    continue;
                }
            };
            if target.is_none() {
                target = Some(self.read_object(&kernel.sha256, caps::KERNEL_IMAGE, "a kernel")?);
            }
            let target = target.as_deref().expect("read above");
            // bsdiff's suffix sort: about a minute for a 14 MB kernel on two cores.
            let started = std::time::Instant::now();
            eprintln!(
                "stratos: making the kernel delta from {} {} ({} bytes to {}; bsdiff takes about a minute for a 14 MB kernel) ...",
                base.name,
                base.version,
                base_bytes.len(),
                target.len()
            );
            let bytes = delta::encode(&base_bytes, target).map_err(ChannelError::io(format!(
                "computing the kernel delta from {} {}",
                base.name, base.version
            )))?;
            let size = bytes.len() as u64;
            eprintln!(
                "stratos: kernel delta from {} {} made in {:.1}s",
                base.name,
                base.version,
                started.elapsed().as_secs_f64()
            );
            if size >= compressed {
                notes.push(DeltaNote::NotSmaller {
                    from: base.clone(),
                    size,
                    compressed,
                });
                continue;
            }
            let sha256 = self.put_object(&bytes)?;
            let d = Delta {
                artifact: kernel.name.clone(),
                from: from.sha256,
                to: kernel.sha256,
                sha256,
                size,
            };
            deltas.push(d.clone());
            notes.push(DeltaNote::Written {
                from: base.clone(),
                delta: d,
                compressed,
            });
        }
        deltas.truncate(MAX_DELTAS);
        Ok((deltas, notes))
    }

    /// `deltas` less those that do not rebuild `image`'s kernel (each base once, at most
    /// [`MAX_DELTAS`]): what a track keeps when `promote` or `rollback` points it at `image`.
    pub(super) fn deltas_to(
        &self,
        image: &ImageRef,
        deltas: impl IntoIterator<Item = Delta>,
    ) -> Result<Vec<Delta>, ChannelError> {
        let mut deltas = deltas.into_iter().peekable();
        if deltas.peek().is_none() {
            return Ok(Vec::new()); // nothing to filter: the manifest is not read
        }
        let kernel = self.image_kernel(image)?;
        let mut kept: Vec<Delta> = Vec::new();
        for d in deltas {
            let to_kernel = d.artifact == kernel.name && d.to == kernel.sha256;
            if to_kernel && !kept.iter().any(|k| k.from == d.from) && kept.len() < MAX_DELTAS {
                kept.push(d);
            }
        }
        Ok(kept)
    }
}

/// The manifest's kernel artifact (`parse_manifest` checked that the manifest lists it).
pub(super) fn kernel_of(m: &crate::sign::manifest::Manifest) -> &Artifact {
    m.artifact(m.kernel.artifact.as_str())
        .expect("parse_manifest checks that kernel.artifact is listed")
}
