//! Checking an image directory: signature first, then every artifact, then the SBOM.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::keys::{KeyId, PublicKey};
use super::manifest::{
    ArtifactName, Manifest, SignatureFile, FORMAT, MANIFEST_FILE, SIGNATURE_FILE,
};
use crate::digest::Sha256;

/// Why an image did not verify. Each names the file that failed and how.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: the image is unsigned (no {SIGNATURE_FILE}); build it with --image-key or $STRATOS_SIGNING_KEY")]
    Unsigned(PathBuf),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::fsio::ReadError),
    #[error("{SIGNATURE_FILE}: malformed signature file: {0}")]
    MalformedSignature(String),
    #[error("{SIGNATURE_FILE}: signed by key {signed_by}, but the public key given is {given}")]
    WrongKey { signed_by: KeyId, given: KeyId },
    #[error("{SIGNATURE_FILE}: the signature does not match {MANIFEST_FILE} (the manifest or the signature was modified)")]
    BadSignature,
    #[error("{MANIFEST_FILE}: malformed manifest: {0}")]
    MalformedManifest(String),
    #[error("{name}: listed in the manifest but missing from the image directory")]
    Missing { name: ArtifactName },
    #[error("{name}: size is {actual} bytes, the manifest says {expected}")]
    Size {
        name: ArtifactName,
        expected: u64,
        actual: u64,
    },
    #[error("{name}: sha256 is {actual}, the manifest says {expected}")]
    Digest {
        name: ArtifactName,
        expected: Sha256,
        actual: Sha256,
    },
    #[error("{name}: {why}")]
    Sbom { name: ArtifactName, why: String },
    #[error("{name}: dm-verity: {why}")]
    Verity { name: ArtifactName, why: String },
}

/// What a successful verification established.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub key_id: KeyId,
    /// Artifacts the manifest lists that are not in the directory, as [`Need::Boot`] allows
    /// (a node's image: no `rootfs.tar.zst`).
    pub absent: Vec<ArtifactName>,
}

/// Reads a small file of the image directory: a regular file, never through a symlink.
fn read(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    Ok(crate::fsio::read_regular(
        path,
        limit,
        what,
        crate::fsio::Links::Refuse,
    )?)
}

/// Checks the signature over `manifest.json` with `key`, then the artifacts and the SBOM.
pub fn verify_image(dir: &Path, key: &PublicKey) -> Result<Verified, VerifyError> {
    verify_image_for(dir, key, Need::Every)
}

/// [`verify_image`] of the artifacts `need` asks for.
pub fn verify_image_for(dir: &Path, key: &PublicKey, need: Need) -> Result<Verified, VerifyError> {
    let sig_path = dir.join(SIGNATURE_FILE);
    match std::fs::symlink_metadata(&sig_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::Unsigned(dir.to_owned()))
        }
        Err(source) => {
            return Err(VerifyError::Read {
                path: sig_path,
                source,
            })
        }
        Ok(_) => {}
    }
    let sig_bytes = read(&sig_path, crate::fsio::caps::SIGNATURE, "a signature")?;
    let manifest_bytes = read(
        &dir.join(MANIFEST_FILE),
        crate::fsio::caps::MANIFEST,
        "a manifest",
    )?;
    let key_id = check_signature(&sig_bytes, &manifest_bytes, key)?;
    let manifest = parse_manifest(&manifest_bytes)?;
    verify_contents_for(dir, &manifest, need)?;
    let absent = manifest
        .artifacts
        .iter()
        .filter(|a| {
            std::fs::symlink_metadata(dir.join(&a.name))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(|a| a.name.clone())
        .collect();
    Ok(Verified {
        manifest,
        key_id,
        absent,
    })
}

/// Checks a detached signature file (`manifest.sig`, `snapshot.sig`) over `signed`'s exact
/// bytes with `key`; returns the signer's key id.
pub fn check_signature(
    sig_bytes: &[u8],
    signed: &[u8],
    key: &PublicKey,
) -> Result<KeyId, VerifyError> {
    let sig: SignatureFile = serde_json::from_slice(sig_bytes)
        .map_err(|e| VerifyError::MalformedSignature(e.to_string()))?;
    if sig.format != 1 || sig.algorithm != "ed25519" {
        return Err(VerifyError::MalformedSignature(format!(
            "format {} / algorithm {:?} is not supported (expected 1 / \"ed25519\")",
            sig.format, sig.algorithm
        )));
    }
    if &sig.key_id != key.id() {
        return Err(VerifyError::WrongKey {
            signed_by: sig.key_id,
            given: key.id().clone(),
        });
    }
    let raw: [u8; 64] = hex::decode(&sig.signature)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            VerifyError::MalformedSignature("signature must be 128 hex digits".into())
        })?;
    if !key.verify(signed, &raw) {
        return Err(VerifyError::BadSignature);
    }
    Ok(sig.key_id)
}

/// Reads and parses an image directory's `manifest.json` (a regular file, capped), without
/// checking its signature.
pub fn load_manifest(dir: &Path) -> Result<Manifest, VerifyError> {
    let bytes = read(
        &dir.join(MANIFEST_FILE),
        crate::fsio::caps::MANIFEST,
        "a manifest",
    )?;
    parse_manifest(&bytes)
}

/// Parses a manifest (its artifact names and digests are checked as they are read) of the
/// format this stratos reads, whose kernel, SBOM and root are among its artifacts.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, VerifyError> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| VerifyError::MalformedManifest(e.to_string()))?;
    if m.format != FORMAT {
        return Err(VerifyError::MalformedManifest(format!(
            "format {} is not supported (this stratos reads format {FORMAT})",
            m.format
        )));
    }
    // Names used to open files must be artifacts (so digested).
    let root = m.root.as_ref().map(|r| ("root.artifact", &r.artifact));
    for (what, name) in [("kernel.artifact", &m.kernel.artifact), ("sbom", &m.sbom)]
        .into_iter()
        .chain(root)
    {
        if m.artifact(name.as_str()).is_none() {
            return Err(VerifyError::MalformedManifest(format!(
                "{what} {:?} is not one of the manifest's artifacts",
                name
            )));
        }
    }
    Ok(m)
}

/// Which artifacts an image directory must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every artifact the manifest lists (what `build` writes, `verify` and `publish` check).
    Every,
    /// Those a node boots from: an EROFS image's `rootfs.tar.zst` may be absent (nodes do not
    /// fetch it); every file present is still checked.
    Boot,
}

/// Checks every artifact's size and digest (without the signature), then the SBOM.
pub fn verify_contents(dir: &Path, manifest: &Manifest) -> Result<(), VerifyError> {
    verify_contents_for(dir, manifest, Need::Every)
}

/// [`verify_contents`] of the artifacts `need` asks for.
pub fn verify_contents_for(dir: &Path, manifest: &Manifest, need: Need) -> Result<(), VerifyError> {
    for a in &manifest.artifacts {
        let path = dir.join(&a.name);
        let absent = || {
            std::fs::symlink_metadata(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        };
        if need == Need::Boot && manifest.boots_without(&a.name) && absent() {
            continue;
        }
        // A regular file, checked on the descriptor: a symlink (to anything, inside the
        // image or not) or a FIFO is refused, not followed or waited on.
        let (f, meta) = match crate::fsio::open_regular(&path, crate::fsio::Links::Refuse) {
            Ok(x) => x,
            Err(e) if e.is_not_found() => {
                return Err(VerifyError::Missing {
                    name: a.name.clone(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let len = meta.len();
        if len != a.size {
            return Err(VerifyError::Size {
                name: a.name.clone(),
                expected: a.size,
                actual: len,
            });
        }
        let (actual, _) =
            Sha256::of_reader(f.take(a.size)).map_err(|source| VerifyError::Read {
                path: path.clone(),
                source,
            })?;
        if actual != a.sha256 {
            return Err(VerifyError::Digest {
                name: a.name.clone(),
                expected: a.sha256,
                actual,
            });
        }
    }
    check_root(dir, manifest)?;
    check_sbom(dir, manifest)
}

/// A block-device root: the dm-verity tree recomputed from the filesystem's blocks matches the
/// one stored after it, and its root hash is the manifest's (the one the kernel will check).
fn check_root(dir: &Path, m: &Manifest) -> Result<(), VerifyError> {
    let Some(root) = &m.root else {
        return Ok(());
    };
    let size = m
        .artifact(root.artifact.as_str())
        .map(|a| a.size)
        .ok_or_else(|| {
            VerifyError::MalformedManifest(format!("{} is not an artifact", root.artifact))
        })?;
    let bytes = read(&dir.join(&root.artifact), size, "a root filesystem image")?;
    crate::archive::verity::check(&bytes, &root.verity).map_err(|why| VerifyError::Verity {
        name: root.artifact.clone(),
        why,
    })
}

fn check_sbom(dir: &Path, m: &Manifest) -> Result<(), VerifyError> {
    let name = m.sbom.clone();
    let bad = |why: String| VerifyError::Sbom {
        name: name.clone(),
        why,
    };
    if m.artifact(m.sbom.as_str()).is_none() {
        return Err(bad(
            "the manifest names it as the SBOM but does not list it as an artifact".into(),
        ));
    }
    let bytes = read(&dir.join(&m.sbom), crate::fsio::caps::SBOM, "an SBOM")?;
    let v = crate::sbom::view::SbomView::parse(&bytes).map_err(&bad)?;
    let c = &v.metadata.component;
    if c.name != m.image.name || c.version != m.image.version {
        return Err(bad(format!(
            "describes {:?} {:?}, but the manifest is for {} {}",
            c.name, c.version, m.image.name, m.image.version
        )));
    }
    // Components that stand for an artifact must carry that artifact's digest.
    for comp in &v.components {
        let Some(artifact) = comp.prop(crate::sbom::prop::ARTIFACT) else {
            continue;
        };
        let listed = m.artifact(artifact).ok_or_else(|| {
            bad(format!(
                "component {:?} names artifact {artifact}, which the manifest does not list",
                comp.bom_ref
            ))
        })?;
        if !comp.sha256().is_some_and(|s| listed.sha256 == s) {
            return Err(bad(format!(
                "component {:?} has a different sha256 than artifact {artifact}",
                comp.bom_ref
            )));
        }
    }
    Ok(())
}
