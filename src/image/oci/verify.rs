//! `stratos verify --oci`: an exported layout checked end to end: the layout's files, every
//! blob's digest (a blob that does not match is named, with what it is), the image manifest and
//! its config, the signed statement and the StratOS manifest it names, the SBOM, and the
//! layer's content: the tree it holds, written again as the image's root, must be the root the
//! StratOS manifest signs (`rootfs.erofs`, or `initramfs.cpio.zst`), and the config the one its
//! init configuration gives; `seccomp.json`, when there, must be the policy the image was built
//! with.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::layout::{blob_path, sha256_hex, BLOBS};
use super::{
    digest_of, Statement, ANNOTATION_STRATOS_MANIFEST, SBOM_TYPE, SIGNATURE_TYPE, STATEMENT_TYPE,
    STRATOS_MANIFEST_TYPE, STRATOS_SIGNATURE_TYPE,
};
use crate::archive;
use crate::sign::verify::{check_signature, parse_manifest, VerifyError};
use crate::sign::{KeyId, Manifest, PublicKey};

/// Why a layout did not verify; each names the file or blob and what it is.
#[derive(Debug, thiserror::Error)]
pub enum OciVerifyError {
    #[error("{file}: {why}")]
    Layout { file: String, why: String },
    #[error("{}", blob_lines(.0))]
    Blobs(Vec<BadBlob>),
    #[error("{what} (blob {digest}): {why}")]
    Content {
        what: &'static str,
        digest: String,
        why: String,
    },
    #[error("the layout is unsigned: its statement has no signature (export it with --image-key)")]
    Unsigned,
    #[error("{what}: {source}")]
    Signature {
        what: &'static str,
        #[source]
        source: VerifyError,
    },
}

/// A blob whose content does not match its name (or that is missing).
#[derive(Debug)]
pub struct BadBlob {
    pub digest: String,
    /// What it is (`the layer`, `the image config`, …), when known.
    pub role: Option<&'static str>,
    pub why: String,
}

fn blob_lines(bad: &[BadBlob]) -> String {
    bad.iter()
        .map(|b| match b.role {
            Some(r) => format!("{BLOBS}/{} ({r}): {}", b.digest, b.why),
            None => format!("{BLOBS}/{}: {}", b.digest, b.why),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a successful check established.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// `sha256:<hex>` of the image manifest.
    pub digest: String,
    pub key_id: KeyId,
    pub blobs: usize,
}

fn layout(file: &str, why: impl std::fmt::Display) -> OciVerifyError {
    OciVerifyError::Layout {
        file: file.to_owned(),
        why: why.to_string(),
    }
}

fn content(what: &'static str, digest: &str, why: impl std::fmt::Display) -> OciVerifyError {
    OciVerifyError::Content {
        what,
        digest: digest.to_owned(),
        why: why.to_string(),
    }
}

/// Checks the layout at `dir` with the image key `key`.
pub fn verify(dir: &Path, key: &PublicKey) -> Result<Verified, OciVerifyError> {
    let version: serde_json::Value =
        serde_json::from_slice(&small(dir, "oci-layout")?).map_err(|e| layout("oci-layout", e))?;
    if version["imageLayoutVersion"] != "1.0.0" {
        return Err(layout("oci-layout", "imageLayoutVersion is not \"1.0.0\""));
    }
    let index: ImageIndex =
        serde_json::from_slice(&small(dir, "index.json")?).map_err(|e| layout("index.json", e))?;
    let [image_desc] = index.manifests().as_slice() else {
        return Err(layout(
            "index.json",
            "expected exactly one manifest (the image): is this a `stratos export` layout?",
        ));
    };
    let digest = image_desc.digest().to_string();
    let image_hex = sha256_hex(image_desc)
        .ok_or_else(|| layout("index.json", format!("{digest} is not a sha256 digest")))?
        .to_owned();
    let hexes = check_blobs(dir, &image_hex)?;
    let image_bytes = blob(
        dir,
        &image_hex,
        "the image manifest",
        image_desc.size(),
        crate::fsio::caps::METADATA,
    )?;
    let image: ImageManifest = serde_json::from_slice(&image_bytes)
        .map_err(|e| content("the image manifest", &digest, e))?;
    let referrers = referrers(dir, &hexes, &digest)?;
    let (statement, key_id, stratos) = check_statement(dir, &referrers, &digest, key)?;
    let annotated = image
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_STRATOS_MANIFEST));
    if annotated != Some(&statement.stratos_manifest_sha256) {
        return Err(content(
            "the image manifest",
            &digest,
            format!("its {ANNOTATION_STRATOS_MANIFEST} annotation is not the signed statement's StratOS manifest"),
        ));
    }
    check_sbom(dir, &referrers, &stratos)?;
    check_layer(dir, &image, &stratos)?;
    check_seccomp(dir, &stratos)?;
    Ok(Verified {
        manifest: stratos,
        digest,
        key_id,
        blobs: hexes.len(),
    })
}

/// `seccomp.json`, when the export wrote one: the policy the StratOS manifest names.
fn check_seccomp(dir: &Path, stratos: &Manifest) -> Result<(), OciVerifyError> {
    let file = super::SECCOMP_FILE;
    let bytes = match crate::fsio::read_regular(
        &dir.join(file),
        crate::fsio::caps::SECCOMP_POLICY,
        "a seccomp policy",
        crate::fsio::Links::Refuse,
    ) {
        Err(e) if e.is_not_found() => return Ok(()),
        other => other.map_err(|e| layout(file, e))?,
    };
    let actual = crate::digest::Sha256::of(&bytes);
    match &stratos.seccomp {
        Some(s) if s.policy_sha256 == actual => Ok(()),
        Some(s) => Err(layout(
            file,
            format!(
                "its sha256 is {actual}, not that of {} ({}) the image was built with",
                s.policy, s.policy_sha256
            ),
        )),
        None => Err(layout(file, "the image has no seccomp policy")),
    }
}

/// A small file of the layout (`oci-layout`, `index.json`).
fn small(dir: &Path, name: &str) -> Result<Vec<u8>, OciVerifyError> {
    crate::fsio::read_regular(
        &dir.join(name),
        crate::fsio::caps::METADATA,
        "an OCI layout file",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| layout(name, e))
}

/// Every blob's sha256 against its name; returns the blobs' names.
fn check_blobs(dir: &Path, image_hex: &str) -> Result<Vec<String>, OciVerifyError> {
    let blobs = dir.join(BLOBS);
    let mut hexes = Vec::new();
    let mut bad = Vec::new();
    for e in std::fs::read_dir(&blobs).map_err(|e| layout(BLOBS, e))? {
        let name = e
            .map_err(|e| layout(BLOBS, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        let (actual, _) = crate::fsio::sha256_file(&blobs.join(&name), crate::fsio::Links::Refuse)
            .map_err(|e| layout(&format!("{BLOBS}/{name}"), e))?;
        if hex::encode(actual) != name {
            bad.push(BadBlob {
                digest: name.clone(),
                role: None,
                why: format!(
                    "its content does not match its digest (sha256 is {}): the blob was altered or damaged",
                    hex::encode(actual)
                ),
            });
        }
        hexes.push(name);
    }
    hexes.sort();
    if !hexes.iter().any(|h| h == image_hex) {
        bad.push(BadBlob {
            digest: image_hex.to_owned(),
            role: Some("the image manifest"),
            why: "missing".into(),
        });
    }
    if bad.is_empty() {
        return Ok(hexes);
    }
    let roles = roles(dir, &hexes, image_hex);
    for b in &mut bad {
        b.role = b.role.or_else(|| roles.get(&b.digest).copied());
    }
    Err(OciVerifyError::Blobs(bad))
}

/// What each blob is, as far as the (possibly damaged) documents still say.
fn roles(dir: &Path, hexes: &[String], image_hex: &str) -> BTreeMap<String, &'static str> {
    let mut roles = BTreeMap::from([(image_hex.to_owned(), "the image manifest")]);
    // Only small regular files can be manifests: a layer is never read here.
    let parse = |hex: &str| -> Option<ImageManifest> {
        let bytes = crate::fsio::read_regular(
            &blob_path(dir, hex),
            crate::fsio::caps::METADATA,
            "a blob",
            crate::fsio::Links::Refuse,
        )
        .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    if let Some(m) = parse(image_hex) {
        if let Some(h) = sha256_hex(m.config()) {
            roles.insert(h.to_owned(), "the image config");
        }
        for l in m.layers() {
            if let Some(h) = sha256_hex(l) {
                roles.insert(h.to_owned(), "the layer");
            }
        }
    }
    for hex in hexes.iter().filter(|h| h.as_str() != image_hex) {
        let Some(m) = parse(hex) else { continue };
        if m.subject().is_none() {
            continue;
        }
        let sbom = m.artifact_type().as_ref().map(|t| t.to_string()) == Some(SBOM_TYPE.into());
        roles.insert(
            hex.clone(),
            if sbom {
                "the SBOM's referrer manifest"
            } else {
                "the statement's referrer manifest"
            },
        );
        for l in m.layers() {
            if let Some(h) = sha256_hex(l) {
                roles.insert(h.to_owned(), layer_role(l.media_type()));
            }
        }
    }
    roles
}

fn layer_role(t: &MediaType) -> &'static str {
    match t.to_string().as_str() {
        SBOM_TYPE => "the SBOM",
        STATEMENT_TYPE => "the signed statement",
        SIGNATURE_TYPE => "the statement's signature",
        STRATOS_MANIFEST_TYPE => "the StratOS manifest",
        STRATOS_SIGNATURE_TYPE => "the StratOS manifest's signature",
        _ => "a referrer's blob",
    }
}

/// A blob (its digest already checked), whose size must be `size` and at most `cap` (the most
/// a blob of its role may hold: the descriptor's size is the layout's word, not a limit).
fn blob(
    dir: &Path,
    hex: &str,
    what: &'static str,
    size: u64,
    cap: u64,
) -> Result<Vec<u8>, OciVerifyError> {
    if size > cap {
        return Err(content(
            what,
            &format!("sha256:{hex}"),
            format!("its descriptor says {size} bytes, more than {what} may hold ({cap})"),
        ));
    }
    let bytes = crate::fsio::read_regular(
        &blob_path(dir, hex),
        cap,
        "a blob",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| content(what, &format!("sha256:{hex}"), e))?;
    if bytes.len() as u64 != size {
        return Err(content(
            what,
            &format!("sha256:{hex}"),
            format!("{} bytes, its descriptor says {size}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The referrers of the image manifest (`subject` = `digest`), by `artifactType`.
fn referrers(
    dir: &Path,
    hexes: &[String],
    digest: &str,
) -> Result<BTreeMap<String, ImageManifest>, OciVerifyError> {
    let mut out = BTreeMap::new();
    for hex in hexes {
        let path = blob_path(dir, hex);
        // A referrer manifest is small: larger blobs (the layer) are not read here.
        let bytes =
            match crate::fsio::read_regular(&path, 1 << 20, "a blob", crate::fsio::Links::Refuse) {
                Ok(b) => b,
                Err(crate::fsio::ReadError::TooLarge { .. }) => continue,
                Err(e) => return Err(layout(&format!("{BLOBS}/{hex}"), e)),
            };
        let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
            continue;
        };
        let about_image = m
            .subject()
            .as_ref()
            .is_some_and(|s| s.digest().to_string() == digest);
        if let (true, Some(t)) = (about_image, m.artifact_type()) {
            out.insert(t.to_string(), m);
        }
    }
    Ok(out)
}

/// The layer of `m` with media type `t`, read.
fn part(
    dir: &Path,
    m: &ImageManifest,
    t: &str,
    what: &'static str,
) -> Result<Option<Vec<u8>>, OciVerifyError> {
    let Some(d) = m.layers().iter().find(|l| l.media_type().to_string() == t) else {
        return Ok(None);
    };
    let hex =
        sha256_hex(d).ok_or_else(|| content(what, d.digest().as_ref(), "not a sha256 digest"))?;
    let cap = match t {
        SBOM_TYPE => crate::fsio::caps::SBOM,
        SIGNATURE_TYPE | STRATOS_SIGNATURE_TYPE => crate::fsio::caps::SIGNATURE,
        STRATOS_MANIFEST_TYPE => crate::fsio::caps::MANIFEST,
        _ => crate::fsio::caps::METADATA,
    };
    blob(dir, hex, what, d.size(), cap).map(Some)
}

/// The statement: signed by `key`, naming the image manifest `digest` and the StratOS
/// manifest stored with it (whose own signature, when there, must hold too).
fn check_statement(
    dir: &Path,
    referrers: &BTreeMap<String, ImageManifest>,
    digest: &str,
    key: &PublicKey,
) -> Result<(Statement, KeyId, Manifest), OciVerifyError> {
    let Some(m) = referrers.get(STATEMENT_TYPE) else {
        return Err(layout(
            BLOBS,
            format!("no statement ({STATEMENT_TYPE} referrer of {digest}): was it written by `stratos export`?"),
        ));
    };
    let what = "the signed statement";
    let bytes =
        part(dir, m, STATEMENT_TYPE, what)?.ok_or_else(|| content(what, digest, "missing"))?;
    let sig = part(dir, m, SIGNATURE_TYPE, "the statement's signature")?
        .ok_or(OciVerifyError::Unsigned)?;
    let key_id =
        check_signature(&sig, &bytes, key).map_err(|source| OciVerifyError::Signature {
            what: "the statement's signature",
            source,
        })?;
    let statement: Statement =
        serde_json::from_slice(&bytes).map_err(|e| content(what, digest, e))?;
    if statement.image_manifest != digest {
        return Err(content(
            what,
            digest,
            format!(
                "it signs image manifest {}, not this one",
                statement.image_manifest
            ),
        ));
    }
    let what = "the StratOS manifest";
    let stratos_bytes = part(dir, m, STRATOS_MANIFEST_TYPE, what)?
        .ok_or_else(|| content(what, digest, "missing from the statement's referrer"))?;
    if crate::sign::sha256_hex(&stratos_bytes) != statement.stratos_manifest_sha256 {
        return Err(content(
            what,
            &digest_of(&stratos_bytes),
            "not the one the statement signs",
        ));
    }
    if let Some(sig) = part(
        dir,
        m,
        STRATOS_SIGNATURE_TYPE,
        "the StratOS manifest's signature",
    )? {
        check_signature(&sig, &stratos_bytes, key).map_err(|source| OciVerifyError::Signature {
            what: "the StratOS manifest's signature",
            source,
        })?;
    }
    let stratos =
        parse_manifest(&stratos_bytes).map_err(|e| content(what, &digest_of(&stratos_bytes), e))?;
    Ok((statement, key_id, stratos))
}

/// The SBOM referrer holds the SBOM the StratOS manifest names.
fn check_sbom(
    dir: &Path,
    referrers: &BTreeMap<String, ImageManifest>,
    stratos: &Manifest,
) -> Result<(), OciVerifyError> {
    let what = "the SBOM";
    let m = referrers.get(SBOM_TYPE).ok_or_else(|| {
        layout(
            BLOBS,
            format!("no SBOM ({SBOM_TYPE} referrer of the image)"),
        )
    })?;
    let bytes = part(dir, m, SBOM_TYPE, what)?
        .ok_or_else(|| layout(BLOBS, "the SBOM referrer holds no SBOM"))?;
    let expected = stratos
        .artifact(stratos.sbom.as_str())
        .map(|a| a.sha256.to_string());
    if Some(crate::sign::sha256_hex(&bytes)) != expected {
        return Err(content(
            what,
            &digest_of(&bytes),
            "not the SBOM the StratOS manifest names",
        ));
    }
    Ok(())
}

/// The layer: its uncompressed digest is the config's `diff_id`; its tree, written again as
/// the image's root, is the root artifact the StratOS manifest signs.
fn check_layer(
    dir: &Path,
    image: &ImageManifest,
    stratos: &Manifest,
) -> Result<(), OciVerifyError> {
    let [layer] = image.layers().as_slice() else {
        return Err(content(
            "the image manifest",
            "",
            "expected exactly one layer",
        ));
    };
    let cd = image.config();
    let config_hex = sha256_hex(cd).ok_or_else(|| {
        content(
            "the image config",
            cd.digest().as_ref(),
            "not a sha256 digest",
        )
    })?;
    let config_bytes = blob(
        dir,
        config_hex,
        "the image config",
        cd.size(),
        crate::fsio::caps::METADATA,
    )?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| content("the image config", cd.digest().as_ref(), e))?;
    let what = "the layer";
    let ld = layer.digest().to_string();
    let tar = read_layer(dir, layer).map_err(|e| content(what, &ld, e))?;
    let diff_id = digest_of(&tar);
    if config.rootfs().diff_ids().as_slice() != [diff_id.clone()] {
        return Err(content(
            what,
            &ld,
            format!("its uncompressed digest {diff_id} is not the config's diff_id"),
        ));
    }
    let tree =
        archive::tar::read_tar(tar.as_slice(), "layer").map_err(|e| content(what, &ld, e))?;
    let epoch = stratos.source_date_epoch;
    if archive::tar::write_tar(&tree, epoch).map_err(|e| content(what, &ld, e))? != tar {
        return Err(content(
            what,
            &ld,
            "not the canonical tar of its tree (times, order or headers differ from the image's)",
        ));
    }
    check_root(&tree, stratos).map_err(|e| content(what, &ld, e))?;
    // The config is the one the image's own init configuration gives.
    let init = super::config::init_of(&tree)
        .map_err(|e| content(what, &ld, format!("{}: {e}", stratos_wire::CONFIG_PATH)))?;
    let expected = super::layout::canonical(&super::config::image_config(&init, stratos, &diff_id));
    if expected != config_bytes {
        return Err(content(
            "the image config",
            cd.digest().as_ref(),
            "not the config the image's init configuration gives (entrypoint, environment, user, port or times differ)",
        ));
    }
    Ok(())
}

/// The layer's uncompressed tar (its size checked against its descriptor).
fn read_layer(dir: &Path, layer: &oci_spec::image::Descriptor) -> Result<Vec<u8>, String> {
    let hex = sha256_hex(layer).ok_or("not a sha256 digest")?;
    let file = std::fs::File::open(blob_path(dir, hex)).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size != layer.size() {
        return Err(format!(
            "{size} bytes, its descriptor says {}",
            layer.size()
        ));
    }
    let mut tar = Vec::new();
    let cap = super::export::MAX_TREE_BYTES;
    std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::GzDecoder::new(file), cap + 1),
        &mut tar,
    )
    .map_err(|e| format!("not a gzip'd tar: {e}"))?;
    if tar.len() as u64 > cap {
        return Err(format!(
            "it inflates past {cap} bytes, more than an image's root may hold"
        ));
    }
    Ok(tar)
}

/// Whether `tree`, written as the image's root the way the builder writes it, is the root
/// artifact `m` signs.
pub(super) fn check_root(tree: &crate::rootfs::Tree, m: &Manifest) -> Result<(), String> {
    let (name, root) = rebuild_root(tree, m)?;
    let expected = m.artifact(name).map(|a| a.sha256.to_string());
    if Some(crate::sign::sha256_hex(&root)) != expected {
        return Err(format!(
            "its tree is not the image's: written as {name} it does not match the StratOS manifest's sha256"
        ));
    }
    Ok(())
}

/// The image's root artifact written from `tree`, as the builder writes it.
fn rebuild_root(
    tree: &crate::rootfs::Tree,
    m: &Manifest,
) -> Result<(&'static str, Vec<u8>), String> {
    let epoch = m.source_date_epoch;
    match &m.root {
        Some(root) => {
            let salt: [u8; archive::verity::SALT_LEN] = hex::decode(&root.verity.salt)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or("the StratOS manifest's verity salt is not 32 bytes of hex")?;
            let mut img = archive::erofs::write_erofs(tree, epoch).map_err(|e| e.to_string())?;
            archive::verity::append(&mut img, &salt);
            Ok((crate::image::EROFS_ARTIFACT, img))
        }
        None => {
            let ours = archive::zst::library_version();
            if m.compression.library_version != ours {
                return Err(format!(
                    "the initramfs was compressed with zstd {}, this stratos has {ours}: verify with the stratos that built it",
                    m.compression.library_version
                ));
            }
            let cpio = archive::cpio::write_cpio(tree, epoch).map_err(|e| e.to_string())?;
            let z =
                archive::zst::compress(&cpio, m.compression.level).map_err(|e| e.to_string())?;
            Ok((crate::image::INITRAMFS_ARTIFACT, z))
        }
    }
}
