//! Artifacts the node already holds: the files of the images its state names (current,
//! previous, staged), found by the sha256 their own manifests give them — never by a file name
//! alone — so that a new image's unchanged artifacts (a kernel, an init, an SBOM) are linked or
//! copied into its staging directory instead of downloaded. A placed file is hashed before it
//! is counted as reused (a damaged local copy is downloaded instead), and the whole staged image
//! is verified against its signed manifest afterwards like any other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::blocks::BlockIndex;
use super::state::NodeState;
use crate::archive::verity::VerityInfo;
use crate::channel::error::ChannelError;
use crate::digest::Sha256;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::{Artifact, Manifest, MANIFEST_FILE};

/// A file of an image the node holds, by the sha256 its image's manifest gives it.
pub(super) struct Held {
    files: BTreeMap<Sha256, (PathBuf, u64)>,
    /// The root images (file, verity parameters from its manifest) of those images.
    roots: Vec<(PathBuf, VerityInfo)>,
}

impl Held {
    /// The artifacts of the images `st` names (and the ones they replaced, which are kept too)
    /// under `state/images/`, except the image `skip` (the one being staged). An image whose
    /// directory is gone offers nothing; one whose manifest cannot be read, or does not hash to
    /// the digest its directory is named after, offers nothing either (a note says why).
    pub(super) fn index(
        state: &Path,
        st: &NodeState,
        skip: &Sha256,
        notes: &mut Vec<String>,
    ) -> Held {
        let mut digests = BTreeSet::new();
        for c in [&st.current, &st.previous].into_iter().flatten() {
            digests.insert(c.manifest_sha256);
            if let Some(r) = &c.replaces {
                digests.insert(r.manifest_sha256);
            }
        }
        if let Some(s) = &st.staged {
            digests.insert(s.image.manifest_sha256);
        }
        digests.remove(skip);
        let mut files = BTreeMap::new();
        let mut roots = Vec::new();
        for d in digests {
            let dir = state.join(format!("images/{d}"));
            match manifest_of(&dir, &d) {
                Ok(m) => {
                    if let Some(r) = m.root {
                        roots.push((dir.join(&r.artifact), r.verity));
                    }
                    for a in m.artifacts {
                        files
                            .entry(a.sha256)
                            .or_insert_with(|| (dir.join(&a.name), a.size));
                    }
                }
                Err(None) => {}
                Err(Some(why)) => {
                    notes.push(format!("not reusing the files of {}: {why}", dir.display()))
                }
            }
        }
        Held { files, roots }
    }

    /// The file the node holds with sha256 `sha` (as its image's manifest says; the file is not
    /// hashed here) and its size.
    pub(super) fn file(&self, sha: &Sha256) -> Option<(&Path, u64)> {
        self.files.get(sha).map(|(p, n)| (p.as_path(), *n))
    }

    /// Whether the node holds a root image whose verity salt is `salt` (hex).
    pub(super) fn has_root(&self, salt: &str) -> bool {
        self.roots.iter().any(|(_, v)| v.salt == salt)
    }

    /// The blocks of the root images held whose verity salt is `salt` (hex), by their hashes.
    pub(super) fn block_index(&self, salt: &str, notes: &mut Vec<String>) -> BlockIndex {
        BlockIndex::new(salt, self.roots.iter().cloned(), notes)
    }

    /// Puts the held file with `a`'s sha256 at `to` (a hard link, or a copy when linking fails)
    /// and checks it: `Ok(true)` when it is `a`; `Ok(false)` when the node holds none, or its copy
    /// is not `a` (a note says so; `to` is removed and the artifact is to be downloaded).
    pub(super) fn place(
        &self,
        a: &Artifact,
        to: &Path,
        notes: &mut Vec<String>,
    ) -> Result<bool, ChannelError> {
        let Some((from, size)) = self.files.get(&a.sha256) else {
            return Ok(false);
        };
        if *size != a.size {
            return Ok(false);
        }
        if let Err(link) = std::fs::hard_link(from, to) {
            if let Err(why) = copy(from, to, a.size) {
                notes.push(format!(
                    "could not reuse {} for {} (linking: {link}; copying: {why}); downloading it",
                    from.display(),
                    a.name.as_str()
                ));
                return remove(to).map(|()| false);
            }
        }
        match hash(to, a.size) {
            Ok((sha, len)) if sha == a.sha256 && len == a.size => Ok(true),
            found => {
                let why = match found {
                    Ok(_) => "it no longer matches its manifest".to_owned(),
                    Err(e) => e.to_string(),
                };
                notes.push(format!(
                    "could not reuse {} for {}: {why}; downloading it",
                    from.display(),
                    a.name.as_str()
                ));
                remove(to).map(|()| false)
            }
        }
    }
}

/// The manifest in `dir`, if it hashes to `digest`. `Err(None)`: no such image here;
/// `Err(Some(why))`: it cannot be used.
fn manifest_of(dir: &Path, digest: &Sha256) -> Result<Manifest, Option<String>> {
    let bytes = match fsio::read_regular(
        &dir.join(MANIFEST_FILE),
        caps::MANIFEST,
        "a manifest",
        Links::Refuse,
    ) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    if Sha256::of(&bytes) != *digest {
        return Err(Some(format!(
            "its {MANIFEST_FILE} is not the manifest its name says"
        )));
    }
    crate::sign::verify::parse_manifest(&bytes).map_err(|e| Some(e.to_string()))
}

/// A copy of the regular file `from` (at most one byte past `size`: more is a mismatch the
/// check after it finds) at the new file `to`, flushed to disk.
fn copy(from: &Path, to: &Path, size: u64) -> Result<(), String> {
    let (src, _) = fsio::open_regular(from, Links::Refuse).map_err(|e| e.to_string())?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| format!("creating {}: {e}", to.display()))?;
    std::io::copy(&mut src.take(size + 1), &mut dst)
        .and_then(|_| dst.sync_all())
        .map_err(|e| format!("copying to {}: {e}", to.display()))?;
    Ok(())
}

/// The sha256 and length of the regular file `p` (reading at most one byte past `size`).
fn hash(p: &Path, size: u64) -> Result<(Sha256, u64), String> {
    let (f, _) = fsio::open_regular(p, Links::Refuse).map_err(|e| e.to_string())?;
    Sha256::of_reader(f.take(size + 1)).map_err(|e| format!("reading {}: {e}", p.display()))
}

/// Removes `p` if it is there.
fn remove(p: &Path) -> Result<(), ChannelError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ChannelError::io(format!("removing {}", p.display()))(e)),
    }
}
