//! Staging a selected image, in `.partial-<manifest sha256>` of the state directory: every
//! artifact the node already holds (same sha256, in one of its images) linked or copied; a root
//! image assembled from the blocks the node holds and the ones it lacks ([`blocks`]); every
//! other artifact downloaded whole, compressed when the repository has it so, streamed to disk;
//! the artifacts a node does not boot from (an EROFS image's tarball) skipped unless asked for.
//! The whole is checked against the signed manifest, moved into `images/<manifest sha256>` when
//! complete, then named in `staged.json`.
//!
//! Nothing half-written is ever staged. A fetch that fails or is killed leaves its partial
//! directory: the next fetch of the same image goes on from what it holds (every file and
//! block checked again before use; a partial download continued with a `Range` request); the
//! next fetch of another image removes it. A fetch refused (something served was not what the
//! signed metadata names) removes it at once.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::blocks;
use super::client::Node;
use super::files::{sync_dir, write, PARTIAL_PREFIX, RAND_LEN, STAGING_PREFIX};
use super::image::check_image;
use super::reuse::Held;
use super::state::{failpoint, tidy, NodeState, Staged};
use super::transfer::{ArtifactTransfer, Method, Transfer};
use super::transport::{Download, Ranged};
use super::verify::{Verified, VerifiedImage};
use crate::channel::doc::{to_bytes, Channel, Delta, ImageRef};
use crate::channel::error::ChannelError;
use crate::digest::Sha256;
use crate::sign::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::verify::Need;

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
        // (Unless asked for artifacts it skipped then.)
        let lacks_asked = self.all_artifacts
            && img.manifest.artifacts.iter().any(|a| {
                std::fs::symlink_metadata(dest.join(&a.name))
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            });
        if dest.is_dir() && !lacks_asked && check_image(&dest, &digest).is_ok() {
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
        let partial = self.partial_dir(&digest, notes)?;
        let artifacts = match self.download(v, img, &held, &partial, notes) {
            Ok(a) => a,
            Err(e) => {
                // What was refused is not kept to be resumed; what a failed transfer received
                // is (the next fetch goes on from it).
                if e.is_rejection() {
                    let _ = std::fs::remove_dir_all(&partial);
                }
                return Err(e);
            }
        };
        self.install(&partial, &dest)?;
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
            size: artifacts
                .iter()
                .filter(|a| a.method != Method::Skipped)
                .map(|a| a.size)
                .sum(),
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

    /// The directory the image `digest` is assembled in, `.partial-<digest>`: what an earlier,
    /// interrupted fetch of the same image left there is kept (and checked before it is used);
    /// the partial downloads of other images go.
    fn partial_dir(
        &self,
        digest: &Sha256,
        notes: &mut Vec<String>,
    ) -> Result<PathBuf, ChannelError> {
        let dir = self.state.join(partial_name(digest));
        remove_partials(&self.state, Some(digest), notes)?;
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                notes.push(format!(
                    "resuming the interrupted fetch in {}",
                    dir.display()
                ));
                return Ok(dir);
            }
            Ok(_) => {
                return Err(ChannelError::io(format!("using {}", dir.display()))(
                    std::io::Error::other("it is not a directory; remove it"),
                ))
            }
            Err(_) => {}
        }
        std::fs::create_dir(&dir)
            .map_err(ChannelError::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    }

    /// The image `v` into `dir`: every artifact (from `held` when the node has it, else
    /// fetched), the manifest and its signature, each file as the manifest says, and the
    /// whole image verified against it. Returns how each artifact came.
    fn download(
        &self,
        channel: &Verified,
        v: &VerifiedImage,
        held: &Held,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<Vec<ArtifactTransfer>, ChannelError> {
        let mut artifacts = Vec::new();
        let mut blocks = None;
        for a in &v.manifest.artifacts {
            if a.size > self.max_artifact_bytes {
                return Err(ChannelError::ArtifactTooLarge {
                    name: a.name.to_string(),
                    size: a.size,
                    cap: self.max_artifact_bytes,
                });
            }
            let to = dir.join(&a.name);
            let (method, received) = if !self.all_artifacts && v.manifest.boots_without(&a.name) {
                remove_file(&to)?;
                (Method::Skipped, 0)
            } else if is_complete(&to, a) {
                (Method::Resumed, 0)
            } else if held.place(a, &to, notes)? {
                (Method::Reused, 0)
            } else {
                let root = v
                    .manifest
                    .root
                    .as_ref()
                    .filter(|r| r.artifact == a.name)
                    .map(|r| &r.verity);
                let (done, tried) = match root {
                    // Blocks pay off when the node holds a root image to take them from;
                    // without one the compressed artifact is smaller.
                    Some(info) if held.has_root(&info.salt) => {
                        let index =
                            blocks.get_or_insert_with(|| held.block_index(&info.salt, notes));
                        self.fetch_root(a, info, dir, index, notes)?
                    }
                    _ => (false, 0),
                };
                let (patched, tried) = match (done, self.delta_for(channel, a, held)) {
                    (false, Some((d, base))) => {
                        let (ok, n) = self.fetch_delta(a, d, base, dir, notes)?;
                        (ok, tried + n)
                    }
                    _ => (false, tried),
                };
                if done {
                    (Method::Blocks, tried)
                } else if patched {
                    (Method::Delta, tried)
                } else {
                    // What a failed block or delta fetch received counts too.
                    (Method::Full, tried + self.fetch_full(a, dir, notes)?)
                }
            };
            if method != Method::Skipped && method != Method::Resumed {
                failpoint("fetch:artifact-received");
            }
            artifacts.push(ArtifactTransfer {
                name: a.name.as_str().to_owned(),
                size: a.size,
                method,
                received,
            });
        }
        // What fetching used on the side (trees, partial downloads an artifact reused this time
        // made useless, a temporary file a killed write left) is not part of the image.
        remove_side_files(dir, &v.manifest)?;
        write_replacing(&dir.join(MANIFEST_FILE), &v.manifest_bytes)?;
        write_replacing(&dir.join(SIGNATURE_FILE), &v.signature_bytes)?;
        sync_dir(dir)?;
        // The signature was checked on these manifest bytes; what is left is that the files on
        // disk are the ones it names and the SBOM agrees with it.
        crate::sign::verify::verify_contents_for(dir, &v.manifest, Need::Boot).map_err(
            |source| ChannelError::BadImage {
                what: "staged image".to_owned(),
                source,
            },
        )?;
        Ok(artifacts)
    }

    /// The root image `a` (verity parameters `info`) assembled from blocks in `dir`, its
    /// sha256 checked: `(true, bytes received)`, or `(false, bytes received)` when it could
    /// not be (a note says why; the caller downloads it whole).
    fn fetch_root(
        &self,
        a: &Artifact,
        info: &crate::archive::verity::VerityInfo,
        dir: &Path,
        index: &blocks::BlockIndex,
        notes: &mut Vec<String>,
    ) -> Result<(bool, u64), ChannelError> {
        let rel = format!("objects/sha256/{}", a.sha256);
        let to = dir.join(&a.name);
        let (why, received) = match blocks::fetch(&self.source, &rel, a, info, dir, index)? {
            blocks::Outcome::Done(b) => {
                if is_complete(&to, a) {
                    notes.push(format!(
                        "{}: {} of the tree's {} bottom hash blocks fetched; {} blocks fetched ({} more between them), {} copied from the images held ({} distinct blocks indexed), {} already in place; {} requests",
                        a.name.as_str(),
                        b.tree_fetched,
                        b.tree_fetched + b.tree_local,
                        b.fetched,
                        b.extra,
                        b.local,
                        index.len(),
                        b.kept,
                        b.requests
                    ));
                    return Ok((true, b.received));
                }
                (
                    "the assembled file does not have the manifest's sha256".to_owned(),
                    b.received,
                )
            }
            blocks::Outcome::Fallback { why, received } => (why, received),
        };
        notes.push(format!(
            "{}: fetching blocks failed: {why}; downloading it whole",
            a.name.as_str()
        ));
        // The blocks written so far stay (each is checked again before a later fetch uses it);
        // the whole download replaces the file.
        Ok((false, received))
    }

    /// A delta the channel lists for `a` (for the node's architecture) from a file the node
    /// holds, and that file: the first such, if any, and only when smaller than the artifact.
    fn delta_for<'h>(
        &self,
        v: &'h Verified,
        a: &Artifact,
        held: &'h Held,
    ) -> Option<(&'h Delta, &'h Path)> {
        let track = v.channel.track(self.arch)?;
        track
            .deltas
            .iter()
            .filter(|d| d.artifact == a.name && d.to == a.sha256 && d.size < a.size)
            .find_map(|d| held.file(&d.from).map(|(p, _)| (d, p)))
    }

    /// `a` rebuilt in `dir` from the node's `base` (the file with sha256 `d.from`) and the delta
    /// `d`, fetched (resumed if an interrupted fetch began it) and checked against the sha256 the
    /// signed channel lists, then the result against the manifest: `(true, bytes received)`, or
    /// `(false, bytes received)` when it could not be (a note says why; the caller downloads the
    /// artifact whole).
    fn fetch_delta(
        &self,
        a: &Artifact,
        d: &Delta,
        base: &Path,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<(bool, u64), ChannelError> {
        let to = dir.join(&a.name);
        // Named after the delta: a part of another delta is never continued with this one.
        let part = dir.join(format!("{}.delta-{}", a.name.as_str(), d.sha256));
        let rel = format!("objects/sha256/{}", d.sha256);
        let received = match optional(self.fetch_resuming(&rel, d.size, &part))? {
            Ok(r) => r,
            Err(why) => {
                notes.push(format!(
                    "{}: the delta {} could not be fetched ({why}); downloading it whole",
                    a.name.as_str(),
                    d.sha256
                ));
                remove_file(&part)?;
                return Ok((false, 0));
            }
        };
        let why = match received {
            None => "the repository does not have it".to_owned(),
            Some(_) if !is_object(&part, &d.sha256, d.size) => {
                "it is not the delta the signed channel lists".to_owned()
            }
            Some(_) => match apply_delta(base, &part, &to, a) {
                Ok(()) => {
                    remove_file(&part)?;
                    notes.push(format!(
                        "{}: patched from {} with a {}-byte delta",
                        a.name.as_str(),
                        base.display(),
                        d.size
                    ));
                    return Ok((true, received.unwrap_or(0)));
                }
                Err(why) => why,
            },
        };
        notes.push(format!(
            "{}: the delta {} could not be used ({why}); downloading it whole",
            a.name.as_str(),
            d.sha256
        ));
        remove_file(&part)?;
        remove_file(&to)?;
        Ok((false, received.unwrap_or(0)))
    }

    /// One artifact downloaded whole into `dir`: compressed (`<object>.zst`) when the
    /// repository has it so, else as it is; resumed from what an interrupted fetch received
    /// (`Range`), streamed to disk, its size and sha256 checked. Returns the bytes received.
    fn fetch_full(
        &self,
        a: &Artifact,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<u64, ChannelError> {
        let to = dir.join(&a.name);
        let rel = format!("objects/sha256/{}", a.sha256);
        let mut received = 0;
        let zpart = dir.join(format!("{}.zst.part", a.name.as_str()));
        // zstd's bound on a compressed frame, and some room for its headers.
        let zcap = a.size + a.size / 128 + (1 << 20);
        let compressed = match optional(self.fetch_resuming(&format!("{rel}.zst"), zcap, &zpart))? {
            Ok(r) => r,
            Err(why) => {
                notes.push(format!(
                    "{}: the compressed copy could not be fetched ({why}); downloading it uncompressed",
                    a.name.as_str()
                ));
                remove_file(&zpart)?;
                None
            }
        };
        if let Some(n) = compressed {
            received += n;
            match unpack_zst(&zpart, &to, a) {
                Ok(()) => {
                    remove_file(&zpart)?;
                    return Ok(received);
                }
                Err(why) => {
                    notes.push(format!(
                        "{}: the compressed copy is not the artifact ({why}); downloading it uncompressed",
                        a.name.as_str()
                    ));
                    remove_file(&zpart)?;
                    remove_file(&to)?;
                }
            }
        }
        let part = dir.join(format!("{}.part", a.name.as_str()));
        match self.fetch_resuming(&rel, a.size, &part)? {
            Some(n) => received += n,
            None => return Err(ChannelError::NotFound { rel }),
        }
        // (A transfer cut short is an error before this: the server said Content-Length.)
        if !is_complete(&part, a) {
            remove_file(&part)?;
            return Err(ChannelError::ArtifactMismatch {
                name: a.name.to_string(),
            });
        }
        std::fs::rename(&part, &to).map_err(ChannelError::io(format!(
            "moving {} to {}",
            part.display(),
            to.display()
        )))?;
        Ok(received)
    }

    /// `rel` into the file `part` (at most `cap` bytes): continued from where an interrupted
    /// fetch stopped when `part` has bytes (a `Range` request; from the start when the server
    /// does not do ranges), else from the start. `None` when the repository has no `rel`.
    /// Returns the bytes received; the caller checks what `part` holds.
    fn fetch_resuming(
        &self,
        rel: &str,
        cap: u64,
        part: &Path,
    ) -> Result<Option<u64>, ChannelError> {
        let have = std::fs::symlink_metadata(part)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        if have > 0 && have == cap {
            // All there is room for arrived before: nothing to ask for (the caller checks it).
            return Ok(Some(0));
        }
        if have > 0 && have < cap {
            let mut f = Download::append(part)?;
            let r = self
                .source
                .fetch_range(rel, (have, None), cap - have, &mut f)?;
            f.finish()?;
            match r {
                Ranged::Part(n) => return Ok(Some(n)),
                Ranged::PastTheEnd => return Ok(Some(0)),
                Ranged::NotFound => {
                    remove_file(part)?;
                    return Ok(None);
                }
                // Not the rest of this object: start again.
                Ranged::Unsupported | Ranged::Bad(_) => {}
            }
        }
        remove_file(part)?;
        let mut f = Download::create(part)?;
        if !self.source.fetch_to(rel, cap, &mut f)? {
            drop(f);
            remove_file(part)?;
            return Ok(None);
        }
        let (_, n) = f.finish()?;
        Ok(Some(n))
    }

    /// Moves the verified download to `dest`; a damaged copy there is moved aside first, under
    /// a name the next run removes.
    fn install(&self, partial: &Path, dest: &Path) -> Result<(), ChannelError> {
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
        std::fs::rename(partial, dest).map_err(ChannelError::io(format!(
            "moving the image to {}",
            dest.display()
        )))?;
        sync_dir(&images)?;
        sync_dir(&self.state)
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

/// `.partial-<digest>`: where the image `digest` is assembled.
pub(super) fn partial_name(digest: &Sha256) -> String {
    format!("{PARTIAL_PREFIX}{digest}")
}

/// Removes the `.partial-<digest>` directories of the state directory `state` but `keep`'s
/// (only real directories with such names; a note per removal).
pub(super) fn remove_partials(
    state: &Path,
    keep: Option<&Sha256>,
    notes: &mut Vec<String>,
) -> Result<(), ChannelError> {
    let rd = match std::fs::read_dir(state) {
        Ok(rd) => rd,
        Err(e) => return Err(ChannelError::io(format!("listing {}", state.display()))(e)),
    };
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(d) = name.strip_prefix(PARTIAL_PREFIX) else {
            continue;
        };
        let ours = Sha256::is_valid(d) && e.file_type().is_ok_and(|t| t.is_dir());
        if !ours || keep.is_some_and(|k| k.hex() == d) {
            continue;
        }
        std::fs::remove_dir_all(e.path())
            .map_err(ChannelError::io(format!("removing {}", e.path().display())))?;
        notes.push(format!(
            "removed {}, an interrupted fetch of another image",
            e.path().display()
        ));
    }
    Ok(())
}

/// Whether `p` is a regular file with `a`'s size and sha256.
fn is_complete(p: &Path, a: &Artifact) -> bool {
    is_object(p, &a.sha256, a.size)
}

/// Decompresses the zstd file `from` into the new file `to`, which must then be `a` (at most
/// one byte past its size is written).
fn unpack_zst(from: &Path, to: &Path, a: &Artifact) -> Result<(), String> {
    use std::io::Read;
    let (f, _) =
        crate::fsio::open_regular(from, crate::fsio::Links::Refuse).map_err(|e| e.to_string())?;
    let mut d = zstd::stream::Decoder::new(f).map_err(|e| e.to_string())?;
    // The frame's window may not need more than the default limit (128 MiB).
    d.window_log_max(27).map_err(|e| e.to_string())?;
    remove_file(to).map_err(|e| e.to_string())?;
    let mut out = Download::create(to).map_err(|e| e.to_string())?;
    std::io::copy(&mut d.take(a.size + 1), &mut out).map_err(|e| format!("decompressing: {e}"))?;
    let (sha, len) = out.finish().map_err(|e| e.to_string())?;
    if len != a.size || sha != a.sha256 {
        return Err(format!(
            "{len} bytes with sha256 {sha}, not the manifest's {} bytes with {}",
            a.size, a.sha256
        ));
    }
    Ok(())
}

/// Removes the file `p` if it is there.
fn remove_file(p: &Path) -> Result<(), ChannelError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ChannelError::io(format!("removing {}", p.display()))(e)),
    }
}

/// Writes `p` atomically, replacing what an interrupted fetch wrote there.
fn write_replacing(p: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    crate::fsio::write_atomic(p, bytes, 0o644)
        .map_err(ChannelError::io(format!("writing {}", p.display())))
}

/// Whether `p` is a regular file of `size` bytes with sha256 `sha`.
fn is_object(p: &Path, sha: &Sha256, size: u64) -> bool {
    let Ok((f, m)) = crate::fsio::open_regular(p, crate::fsio::Links::Refuse) else {
        return false;
    };
    use std::io::Read;
    m.len() == size && Sha256::of_reader(f.take(size)).is_ok_and(|(s, n)| s == *sha && n == size)
}

/// The new file `to` made from the node's file `base` and the delta in `delta`; it must then
/// be `a` (at most one byte past its size is written).
fn apply_delta(base: &Path, delta: &Path, to: &Path, a: &Artifact) -> Result<(), String> {
    let (bf, bm) =
        crate::fsio::open_regular(base, crate::fsio::Links::Refuse).map_err(|e| e.to_string())?;
    // The base is a file of an image the node verified, no larger than the largest artifact
    // it accepts; read whole (the patch refers to it anywhere).
    let mut old = Vec::new();
    {
        use std::io::Read;
        bf.take(bm.len())
            .read_to_end(&mut old)
            .map_err(|e| format!("reading {}: {e}", base.display()))?;
    }
    let (df, _) =
        crate::fsio::open_regular(delta, crate::fsio::Links::Refuse).map_err(|e| e.to_string())?;
    remove_file(to).map_err(|e| e.to_string())?;
    let mut out = Download::create(to).map_err(|e| e.to_string())?;
    crate::archive::delta::decode(&old, std::io::BufReader::new(df), &mut out, a.size)
        .map_err(|e| e.to_string())?;
    let (sha, len) = out.finish().map_err(|e| e.to_string())?;
    if len != a.size || sha != a.sha256 {
        return Err(format!(
            "it gives {len} bytes with sha256 {sha}, not the manifest's {} bytes with {}",
            a.size, a.sha256
        ));
    }
    Ok(())
}

/// An optional object's fetch (a compressed copy, a delta): what it refuses or a status the
/// server answers is `Ok(Err(why))`, for the caller to fall back to the artifact itself; a
/// failed transfer stays an error (what arrived is kept to resume).
fn optional<T>(r: Result<T, ChannelError>) -> Result<Result<T, String>, ChannelError> {
    match r {
        Ok(t) => Ok(Ok(t)),
        Err(e) if e.is_rejection() => Ok(Err(e.to_string())),
        Err(ChannelError::Http(crate::http::HttpError::Status(url, s))) => {
            Ok(Err(format!("{url}: HTTP {s}")))
        }
        Err(e) => Err(e),
    }
}

/// Removes the regular files of the partial directory `dir` that are not the image's: neither
/// an artifact `m` lists nor its manifest or signature (trees, partial downloads, deltas,
/// temporary files; all made by a fetch in this directory, which is StratOS's own).
fn remove_side_files(dir: &Path, m: &crate::sign::manifest::Manifest) -> Result<(), ChannelError> {
    let rd =
        std::fs::read_dir(dir).map_err(ChannelError::io(format!("listing {}", dir.display())))?;
    for e in rd {
        let e = e.map_err(ChannelError::io(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let keep = name == MANIFEST_FILE
            || name == SIGNATURE_FILE
            || m.artifacts.iter().any(|a| a.name.as_str() == name);
        if !keep && e.file_type().is_ok_and(|t| t.is_file()) {
            remove_file(&e.path())?;
        }
    }
    Ok(())
}
