//! `stratos export --oci`: an image directory as an OCI image layout (and, on request, a
//! `docker load` archive), written to a staging directory next to the target and put in place
//! in one rename.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, OciLayoutBuilder,
};

use super::layout::{canonical, Blobs, BLOBS};
use super::{
    config, digest_of, Statement, ANNOTATION_EXPORT, ANNOTATION_STRATOS_MANIFEST, LAYOUT_FILES,
    SBOM_TYPE, SECCOMP_FILE, SIGNATURE_TYPE, STATEMENT_TYPE, STRATOS_MANIFEST_TYPE,
    STRATOS_SIGNATURE_TYPE,
};
use crate::archive;
use crate::image::{EROFS_ARTIFACT, ROOTFS_ARTIFACT};
use crate::rootfs::Tree;
use crate::sign::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::{KeyId, Manifest, SecretKey};

/// The most a layer's tar may hold, uncompressed: far above any function image, small enough
/// that a hostile archive cannot take the machine's memory.
pub const MAX_TREE_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", dir.display())]
    Image {
        dir: PathBuf,
        #[source]
        source: crate::sign::verify::VerifyError,
    },
    #[error("{}: the image holds neither {ROOTFS_ARTIFACT} nor {EROFS_ARTIFACT} to read its tree from: export from the image directory `stratos build` wrote", dir.display())]
    NoTree { dir: PathBuf },
    #[error("{}: reading its root tree: {why}", dir.display())]
    Tree { dir: PathBuf, why: String },
    #[error("{}: its tree has no readable {} ({why}); was it built by this stratos?", dir.display(), stratos_wire::CONFIG_PATH)]
    InitConfig { dir: PathBuf, why: String },
    #[error("--image-key {given} is not the key that signed {} (signed by {signed_by}): pass the image's own key", dir.display())]
    WrongKey {
        dir: PathBuf,
        given: KeyId,
        signed_by: String,
    },
    #[error("--seccomp-policy {}: {why}", path.display())]
    Seccomp { path: PathBuf, why: String },
    #[error("refusing to replace {}: {why}; choose another path, or move it away yourself", path.display())]
    NotOurs { path: PathBuf, why: String },
    #[error("--tag {0:?}: expected NAME:TAG or NAME (lowercase letters, digits, `.`, `_`, `-`, `/` in NAME; letters, digits, `.`, `_`, `-` in TAG, at most 128)")]
    BadTag(String),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// The host failed its part (an I/O error writing the result), not the input.
    pub fn is_environment(&self) -> bool {
        matches!(self, ExportError::Io { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `--tag NAME:TAG`: the layout's reference name is TAG (`oci:DIR:TAG`), the docker archive's
/// repository tag NAME:TAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub tag: String,
}

impl Tag {
    /// Parses `NAME:TAG` (or `NAME`, tagged `default_tag`).
    pub fn parse(s: &str, default_tag: &str) -> Result<Tag, ExportError> {
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (s, default_tag),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'));
        if !name_ok || !tag_ok(tag) {
            return Err(ExportError::BadTag(s.to_owned()));
        }
        Ok(Tag {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The image's name and version (a version that is not a valid tag is `latest`).
    pub fn of_image(m: &Manifest) -> Tag {
        let name = m.image.name.to_ascii_lowercase();
        let tag = if tag_ok(&m.image.version) {
            m.image.version.clone()
        } else {
            "latest".into()
        };
        Tag { name, tag }
    }
}

fn tag_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What to export, where, signed how.
pub struct ExportOptions<'a> {
    /// The image directory (`stratos build --out`).
    pub image: &'a Path,
    /// The layout directory to write (replaced if it is an earlier export).
    pub out: &'a Path,
    /// `--tag`: NAME:TAG, or NAME (tagged with the image's version).
    pub tag: Option<&'a str>,
    /// The image key: signs the statement (and must be the key that signed the image).
    pub key: Option<&'a SecretKey>,
    /// The image's seccomp policy file, written as `seccomp.json` (its sha256 must be the one
    /// the image's manifest records).
    pub seccomp_policy: Option<&'a Path>,
    /// Also write a `docker load` archive here.
    pub docker_archive: Option<&'a Path>,
    /// `org.opencontainers.image.source` / `.revision`, when known.
    pub source: Option<String>,
    pub revision: Option<String>,
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub manifest: Manifest,
    pub tag: Tag,
    /// `sha256:<hex>` of the image manifest.
    pub digest: String,
    /// The compressed layer's size, and the whole layout's (every blob).
    pub layer_size: u64,
    pub layout_size: u64,
    pub signed_by: Option<KeyId>,
    /// Written next to the layout: the seccomp policy's path, when given.
    pub seccomp: Option<PathBuf>,
    /// The docker archive and its size.
    pub docker_archive: Option<(PathBuf, u64)>,
    /// The function's TCP port, when the image says it.
    pub port: Option<u16>,
}

/// The image read: its manifest (with its bytes and signature) and its root tree.
struct Source {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
    tree: Tree,
    init: stratos_wire::InitConfig,
    sbom: Vec<u8>,
}

/// Exports `opts.image` as an OCI image layout at `opts.out`.
pub fn export(opts: &ExportOptions) -> Result<Exported, ExportError> {
    previous_export(opts.out)?;
    remove_leftovers(opts.out)?;
    let src = read_image(opts)?;
    let seccomp = opts
        .seccomp_policy
        .map(|p| seccomp_policy(p, &src.manifest))
        .transpose()?;
    let tag = match opts.tag {
        Some(t) => Tag::parse(t, &Tag::of_image(&src.manifest).tag)?,
        None => Tag::of_image(&src.manifest),
    };
    let staging = crate::fsio::staging_dir(opts.out, STAGING_PREFIX)
        .map_err(io(crate::fsio::parent_of(opts.out)))?;
    let written = write_layout(staging.path(), &src, &tag, opts)?;
    if let Some(policy) = &seccomp {
        let p = staging.path().join(SECCOMP_FILE);
        crate::fsio::write_atomic(&p, policy, 0o644).map_err(io(&p))?;
    }
    // Made now, put in place only once the layout is: a failed export replaces nothing.
    let archive = match opts.docker_archive {
        Some(path) => Some((
            path,
            super::docker::archive(path, &tag, &written.config, &written.layer_tar)?,
        )),
        None => None,
    };
    // Checked again: the target may have changed meanwhile.
    let old = previous_export(opts.out)?.unwrap_or_default();
    let replaced = crate::fsio::publish_dir(staging, opts.out).map_err(|e| ExportError::Io {
        path: e.path,
        source: e.source,
    })?;
    if let Some(dir) = replaced {
        remove_ours(&dir, &old);
    }
    let docker_archive = match archive {
        Some((path, bytes)) => {
            crate::fsio::write_atomic(path, &bytes, 0o644).map_err(io(path))?;
            Some((path.to_owned(), bytes.len() as u64))
        }
        None => None,
    };
    Ok(Exported {
        port: config::port(&src.init),
        manifest: src.manifest,
        tag,
        digest: written.digest,
        layer_size: written.layer_size,
        layout_size: written.layout_size,
        signed_by: opts.key.map(|k| k.id().clone()),
        seccomp: seccomp.map(|_| opts.out.join(SECCOMP_FILE)),
        docker_archive,
    })
}

/// Reads and checks the image directory: its manifest, the key, every artifact's digest; then
/// its tree and the init configuration in it.
fn read_image(opts: &ExportOptions) -> Result<Source, ExportError> {
    use crate::sign::verify::{parse_manifest, verify_contents_for, Need};
    let dir = opts.image;
    let image_err = |source| ExportError::Image {
        dir: dir.to_owned(),
        source,
    };
    let read_small = |name: &str, limit, what| {
        crate::fsio::read_regular(&dir.join(name), limit, what, crate::fsio::Links::Refuse)
    };
    let manifest_bytes = read_small(MANIFEST_FILE, crate::fsio::caps::MANIFEST, "a manifest")
        .map_err(|e| image_err(e.into()))?;
    // Parsed from the very bytes exported (and signed over).
    let manifest = parse_manifest(&manifest_bytes).map_err(image_err)?;
    let signature = match read_small(
        SIGNATURE_FILE,
        crate::fsio::caps::SIGNATURE,
        "a signature file",
    ) {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(image_err(e.into())),
    };
    if let (Some(key), Some(sig)) = (opts.key, &signature) {
        let public = key.public();
        if let Err(e) = crate::sign::verify::check_signature(sig, &manifest_bytes, &public) {
            return Err(match e {
                crate::sign::verify::VerifyError::WrongKey { signed_by, given } => {
                    ExportError::WrongKey {
                        dir: dir.to_owned(),
                        given,
                        signed_by: signed_by.to_string(),
                    }
                }
                other => image_err(other),
            });
        }
    }
    if let (Some(key), None) = (opts.key, &signature) {
        eprintln!(
            "warning: {} is UNSIGNED: the statement signed with key {} vouches for an image no key vouched for; sign images when they are built (stratos build --image-key)",
            crate::fsio::Shown(dir),
            key.id()
        );
    }
    verify_contents_for(dir, &manifest, Need::Boot).map_err(image_err)?;
    let tree = read_tree(dir, &manifest)?;
    // The tree read must be the root the image boots (a rootfs.tar.zst that is not is refused).
    super::verify::check_root(&tree, &manifest).map_err(|why| ExportError::Tree {
        dir: dir.to_owned(),
        why,
    })?;
    let init = init_config(dir, &tree)?;
    let sbom = crate::fsio::read_regular(
        &dir.join(&manifest.sbom),
        crate::fsio::caps::SBOM,
        "an SBOM",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| image_err(e.into()))?;
    Ok(Source {
        manifest,
        manifest_bytes,
        signature,
        tree,
        init,
        sbom,
    })
}

/// The image's root tree, from `rootfs.tar.zst`, else (a node's copy keeps only the root it
/// boots) from `rootfs.erofs`; both already checked against the manifest.
fn read_tree(dir: &Path, m: &Manifest) -> Result<Tree, ExportError> {
    let tree_err = |name: &str, why: String| ExportError::Tree {
        dir: dir.to_owned(),
        why: format!("{name}: {why}"),
    };
    let tar = dir.join(ROOTFS_ARTIFACT);
    let regular = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    if m.artifact(ROOTFS_ARTIFACT).is_some() && regular(&tar) {
        let err = |e: &dyn std::fmt::Display| tree_err(ROOTFS_ARTIFACT, e.to_string());
        let file = std::fs::File::open(&tar).map_err(|e| err(&e))?;
        let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| err(&e))?;
        return archive::tar::read_tar(
            std::io::Read::take(decoder, MAX_TREE_BYTES),
            ROOTFS_ARTIFACT,
        )
        .map_err(|e| err(&e));
    }
    let Some(root) = m.root.as_ref().filter(|r| regular(&dir.join(&r.artifact))) else {
        return Err(ExportError::NoTree {
            dir: dir.to_owned(),
        });
    };
    let name = root.artifact.as_str();
    // The filesystem and its verity tree (a 128th of it, and its upper levels).
    let img = crate::fsio::read_regular(
        &dir.join(&root.artifact),
        MAX_TREE_BYTES + MAX_TREE_BYTES / 64,
        "a root filesystem image",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| tree_err(name, e.to_string()))?;
    let fs = usize::try_from(root.verity.data_size)
        .ok()
        .and_then(|n| img.get(..n))
        .ok_or_else(|| tree_err(name, "shorter than its verity data size".into()))?;
    archive::erofs_read::read_erofs(fs, name, MAX_TREE_BYTES)
        .map_err(|e| tree_err(name, e.to_string()))
}

/// The init configuration the builder generated into the tree.
fn init_config(dir: &Path, tree: &Tree) -> Result<stratos_wire::InitConfig, ExportError> {
    config::init_of(tree).map_err(|why| ExportError::InitConfig {
        dir: dir.to_owned(),
        why,
    })
}

/// The policy file's bytes, if the image was built with it (same sha256 as its manifest says).
fn seccomp_policy(path: &Path, m: &Manifest) -> Result<Vec<u8>, ExportError> {
    let bad = |why: String| ExportError::Seccomp {
        path: path.to_owned(),
        why,
    };
    let Some(info) = &m.seccomp else {
        return Err(bad(format!(
            "the image {} has no seccomp policy ([seccomp] in its profile); drop the flag",
            m.image.name
        )));
    };
    let bytes = crate::fsio::read_file(path, crate::fsio::caps::SECCOMP_POLICY, "a seccomp policy")
        .map_err(|e| bad(e.to_string()))?;
    let actual = crate::digest::Sha256::of(&bytes);
    if actual != info.policy_sha256 {
        return Err(bad(format!(
            "its sha256 is {actual}, but the image was built with {} whose sha256 is {}: pass that file",
            info.policy, info.policy_sha256
        )));
    }
    Ok(bytes)
}

/// What [`write_layout`] produced.
struct Written {
    digest: String,
    layer_size: u64,
    layout_size: u64,
    config: Vec<u8>,
    layer_tar: Vec<u8>,
}

/// Writes the layout's blobs, `index.json` and `oci-layout` into `dir`.
fn write_layout(
    dir: &Path,
    src: &Source,
    tag: &Tag,
    opts: &ExportOptions,
) -> Result<Written, ExportError> {
    let m = &src.manifest;
    let blobs_dir = dir.join(BLOBS);
    let mut blobs = Blobs::create(dir).map_err(io(&blobs_dir))?;
    let layer_tar =
        archive::tar::write_tar(&src.tree, m.source_date_epoch).map_err(|e| ExportError::Tree {
            dir: opts.image.to_owned(),
            why: e.to_string(),
        })?;
    let diff_id = digest_of(&layer_tar);
    let layer_gz = gzip(&layer_tar).map_err(io(&blobs_dir))?;
    let layer = blobs
        .put(MediaType::ImageLayerGzip, &layer_gz, None)
        .map_err(io(&blobs_dir))?;
    let image_config = config::image_config(&src.init, m, &diff_id);
    let (config_desc, config_bytes) = blobs
        .put_json(MediaType::ImageConfig, &image_config, None)
        .map_err(io(&blobs_dir))?;
    let created = crate::sbom::rfc3339(m.source_date_epoch);
    let manifest_sha = crate::sign::sha256_hex(&src.manifest_bytes);
    let mut annotations = HashMap::from([
        (oci_spec::image::ANNOTATION_TITLE, m.image.name.clone()),
        (oci_spec::image::ANNOTATION_VERSION, m.image.version.clone()),
        (oci_spec::image::ANNOTATION_CREATED, created.clone()),
        (ANNOTATION_STRATOS_MANIFEST, manifest_sha.clone()),
    ]);
    if let Some(s) = &opts.source {
        annotations.insert(oci_spec::image::ANNOTATION_SOURCE, s.clone());
    }
    if let Some(r) = &opts.revision {
        annotations.insert(oci_spec::image::ANNOTATION_REVISION, r.clone());
    }
    let image_manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer.clone()])
        .annotations(owned(annotations))
        .build()
        .expect("every required field is set");
    let (mut image_desc, _) = blobs
        .put_json(MediaType::ImageManifest, &image_manifest, None)
        .map_err(io(&blobs_dir))?;
    let digest = image_desc.digest().to_string();
    let subject = image_desc.clone();
    write_referrers(&mut blobs, src, &subject, &created, opts.key, &manifest_sha)
        .map_err(io(&blobs_dir))?;
    image_desc.set_platform(Some(
        oci_spec::image::PlatformBuilder::default()
            .architecture(config::arch(m))
            .os(oci_spec::image::Os::Linux)
            .build()
            .expect("every required field is set"),
    ));
    image_desc.set_annotations(Some(owned(HashMap::from([(
        oci_spec::image::ANNOTATION_REF_NAME,
        tag.tag.clone(),
    )]))));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![image_desc])
        .annotations(owned(HashMap::from([(
            ANNOTATION_EXPORT,
            m.image.name.clone(),
        )])))
        .build()
        .expect("every required field is set");
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .expect("every required field is set");
    for (name, bytes) in [
        ("index.json", canonical(&index)),
        ("oci-layout", canonical(&layout)),
    ] {
        let p = dir.join(name);
        crate::fsio::write_atomic(&p, &bytes, 0o644).map_err(io(&p))?;
    }
    let layout_size = dir_size(&blobs_dir).map_err(io(&blobs_dir))?;
    Ok(Written {
        digest,
        layer_size: layer.size(),
        layout_size,
        config: config_bytes,
        layer_tar,
    })
}

fn owned(m: HashMap<&str, String>) -> HashMap<String, String> {
    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The SBOM and the statement, each a manifest whose `subject` is the image manifest.
fn write_referrers(
    blobs: &mut Blobs,
    src: &Source,
    subject: &oci_spec::image::Descriptor,
    created: &str,
    key: Option<&SecretKey>,
    manifest_sha: &str,
) -> std::io::Result<()> {
    let empty = blobs.put(MediaType::EmptyJSON, b"{}", None)?;
    let sbom = blobs.put(MediaType::Other(SBOM_TYPE.into()), &src.sbom, None)?;
    let statement = Statement {
        format: 1,
        image: src.manifest.image.name.clone(),
        version: src.manifest.image.version.clone(),
        image_manifest: subject.digest().to_string(),
        stratos_manifest_sha256: manifest_sha.to_owned(),
    };
    let (statement_desc, statement_bytes) =
        blobs.put_json(MediaType::Other(STATEMENT_TYPE.into()), &statement, None)?;
    let mut layers = vec![statement_desc];
    if let Some(key) = key {
        let sig = crate::sign::manifest::signature_file(key, &statement_bytes);
        layers.push(blobs.put(MediaType::Other(SIGNATURE_TYPE.into()), &sig, None)?);
    }
    layers.push(blobs.put(
        MediaType::Other(STRATOS_MANIFEST_TYPE.into()),
        &src.manifest_bytes,
        None,
    )?);
    if let Some(sig) = &src.signature {
        layers.push(blobs.put(MediaType::Other(STRATOS_SIGNATURE_TYPE.into()), sig, None)?);
    }
    for (artifact_type, layers) in [(SBOM_TYPE, vec![sbom]), (STATEMENT_TYPE, layers)] {
        let m: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(MediaType::Other(artifact_type.into()))
            .config(empty.clone())
            .layers(layers)
            .subject(subject.clone())
            .annotations(owned(HashMap::from([(
                oci_spec::image::ANNOTATION_CREATED,
                created.to_owned(),
            )])))
            .build()
            .expect("every required field is set");
        blobs.put_json(MediaType::ImageManifest, &m, Some(artifact_type))?;
    }
    Ok(())
}

/// gzip with a fixed header (no name, mtime 0, unknown OS): the same input, the same bytes.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        n += e?.metadata()?.len();
    }
    Ok(n)
}

/// The files of an earlier export at `out` (relative paths), `None` when there is nothing
/// there; an error when `out` holds anything else.
fn previous_export(out: &Path) -> Result<Option<Vec<PathBuf>>, ExportError> {
    let refuse = |why: String| ExportError::NotOurs {
        path: out.to_owned(),
        why,
    };
    let names = match crate::fsio::existing(out).map_err(io(out))? {
        crate::fsio::Existing::Nothing => return Ok(None),
        crate::fsio::Existing::NotADir(kind) => {
            return Err(refuse(format!("it is {kind}, not a directory")))
        }
        crate::fsio::Existing::Dir(names) => names,
    };
    if names.is_empty() {
        return Ok(None);
    }
    let index = crate::fsio::read_regular(
        &out.join("index.json"),
        crate::fsio::caps::METADATA,
        "an OCI index",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| refuse(format!("it is not empty and is not a StratOS export ({e})")))?;
    let ours = serde_json::from_slice::<serde_json::Value>(&index)
        .ok()
        .is_some_and(|v| v["annotations"][ANNOTATION_EXPORT].is_string());
    if !ours {
        return Err(refuse(
            "its index.json was not written by `stratos export` (an OCI layout of another tool)"
                .into(),
        ));
    }
    let known: BTreeSet<&str> = LAYOUT_FILES.into_iter().chain(["blobs"]).collect();
    let mut files = Vec::new();
    for (name, ft) in &names {
        if !known.contains(name.as_str()) {
            return Err(refuse(format!(
                "{} is not a file `stratos export` writes",
                crate::rootfs::quote(name)
            )));
        }
        if name == "blobs" && !ft.is_dir() {
            // A link to a shared blob store is not ours to empty.
            return Err(refuse("blobs is not a directory".into()));
        }
        if name != "blobs" {
            if !ft.is_file() {
                return Err(refuse(format!(
                    "{} is not a regular file",
                    crate::rootfs::quote(name)
                )));
            }
            files.push(PathBuf::from(name));
        }
    }
    files.extend(previous_blobs(out).map_err(refuse)?);
    Ok(Some(files))
}

/// The blobs of an earlier export: `blobs/sha256/<64 hex>` regular files, nothing else.
fn previous_blobs(out: &Path) -> Result<Vec<PathBuf>, String> {
    let blobs = out.join("blobs");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&blobs).map_err(|e| format!("blobs: {e}"))? {
        let e = e.map_err(|e| format!("blobs: {e}"))?;
        if e.file_name() != "sha256" {
            return Err(format!(
                "blobs/{} is not a file `stratos export` writes",
                e.file_name().to_string_lossy()
            ));
        }
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            return Err(format!("{BLOBS} is not a directory"));
        }
    }
    for e in std::fs::read_dir(out.join(BLOBS)).map_err(|e| format!("{BLOBS}: {e}"))? {
        let e = e.map_err(|e| format!("{BLOBS}: {e}"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let hex = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || !e.file_type().is_ok_and(|t| t.is_file()) {
            return Err(format!(
                "{BLOBS}/{} is not a blob",
                crate::rootfs::quote(&name)
            ));
        }
        files.push(Path::new(BLOBS).join(name));
    }
    Ok(files)
}

/// The name of an export's staging directory starts with this.
const STAGING_PREFIX: &str = ".stratos-export-";

/// Removes the staging directories interrupted exports left next to `out` (only those StratOS
/// made and no running export holds: see [`crate::fsio::remove_stale_staging`]).
fn remove_leftovers(out: &Path) -> Result<(), ExportError> {
    crate::fsio::remove_stale_staging_near(out, STAGING_PREFIX, "export")
        .map_err(io(crate::fsio::parent_of(out)))
}

/// Removes the named files of an earlier export (now at `dir`), then its directories if that
/// emptied them. Anything else (a file that appeared meanwhile) stays, with a warning.
fn remove_ours(dir: &Path, files: &[PathBuf]) {
    for f in files {
        let p = dir.join(f);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: cannot remove {}: {e}", p.display());
            }
        }
    }
    for d in [dir.join(BLOBS), dir.join("blobs"), dir.to_owned()] {
        if let Err(e) = std::fs::remove_dir(&d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "warning: left {} in place ({e}): it holds files StratOS did not write",
                    d.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::OciVerifyError;
    use super::*;
    use crate::rootfs::{Entry, ImagePath, Origin};

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    fn tree(app: &[u8]) -> Tree {
        let o = Origin::new("t");
        let init = serde_json::json!({
            "format": 1, "hostname": "fn",
            "runtime": {"argv": ["/usr/bin/python3.11", "/srv/fn/app.py"],
                        "env": [["PORT", "8080"]], "cwd": "/srv/fn", "uid": 1000, "gid": 1000}
        });
        let mut t = Tree::new();
        t.insert(
            &p(stratos_wire::CONFIG_PATH),
            Entry::file(init.to_string().into_bytes(), 0o644, &o),
        )
        .unwrap();
        t.insert(
            &p("/srv/fn/app.py"),
            Entry::file(app.to_vec(), 0o644, &o).owned_by(1000, 1000),
        )
        .unwrap();
        t
    }

    /// An image whose manifest signs `signed`'s root, holding `tree`.
    fn source(signed: &Tree, tree: Tree) -> Source {
        let mut manifest: Manifest =
            serde_json::from_slice(include_bytes!("../../../tests/fixtures/oci/manifest.json"))
                .unwrap();
        let salt: [u8; archive::verity::SALT_LEN] =
            hex::decode(&manifest.root.as_ref().unwrap().verity.salt)
                .unwrap()
                .try_into()
                .unwrap();
        let mut img = archive::erofs::write_erofs(signed, manifest.source_date_epoch).unwrap();
        archive::verity::append(&mut img, &salt);
        let sbom = br#"{"bomFormat":"CycloneDX"}"#.to_vec();
        for a in &mut manifest.artifacts {
            let bytes = match a.name.as_str() {
                EROFS_ARTIFACT => &img,
                "sbom.cdx.json" => &sbom,
                _ => continue,
            };
            a.sha256 = crate::digest::Sha256::of(bytes);
            a.size = bytes.len() as u64;
        }
        let init = init_config(Path::new("img"), &tree).unwrap();
        Source {
            manifest_bytes: manifest.to_canonical(),
            manifest,
            signature: None,
            tree,
            init,
            sbom,
        }
    }

    fn layout(src: &Source, key: &SecretKey) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let opts = ExportOptions {
            image: Path::new("img"),
            out: dir.path(),
            tag: None,
            key: Some(key),
            seccomp_policy: None,
            docker_archive: None,
            source: None,
            revision: Some("abc123".into()),
        };
        let tag = Tag::of_image(&src.manifest);
        let w = write_layout(dir.path(), src, &tag, &opts).unwrap();
        (dir, w.digest)
    }

    #[test]
    fn a_layout_verifies_and_is_the_same_bytes_every_time() {
        let key = SecretKey::from_seed([7; 32]);
        let t = tree(b"print('hi')\n");
        let (a, da) = layout(&source(&t, t.clone()), &key);
        let (b, db) = layout(&source(&t, t.clone()), &key);
        assert_eq!(da, db);
        let index = |d: &Path| std::fs::read(d.join("index.json")).unwrap();
        assert_eq!(index(a.path()), index(b.path()));
        let v = super::super::verify(a.path(), &key.public()).unwrap();
        assert_eq!(v.digest, da);
        let e = super::super::verify(a.path(), &SecretKey::from_seed([8; 32]).public())
            .unwrap_err()
            .to_string();
        assert!(e.contains("signed by key"), "{e}");
    }

    #[test]
    fn a_layer_that_is_not_the_signed_root_fails_verification_and_export() {
        let key = SecretKey::from_seed([7; 32]);
        let signed = tree(b"print('hi')\n");
        let other = tree(b"print('pwned')\n");
        // Every digest and the statement's signature hold; only the tree is not the image's.
        let (dir, _) = layout(&source(&signed, other.clone()), &key);
        let e = super::super::verify(dir.path(), &key.public()).unwrap_err();
        assert!(
            matches!(
                &e,
                OciVerifyError::Content {
                    what: "the layer",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("its tree is not the image's"), "{e}");
        let src = source(&signed, other);
        let why = super::super::verify::check_root(&src.tree, &src.manifest).unwrap_err();
        assert!(why.contains("rootfs.erofs"), "{why}");
    }

    #[test]
    fn a_config_that_is_not_the_image_s_init_fails_verification() {
        let key = SecretKey::from_seed([7; 32]);
        let t = tree(b"print('hi')\n");
        let mut src = source(&t, t.clone());
        // Signed and consistent, but the container would run as root.
        src.init.runtime.uid = 0;
        let (dir, _) = layout(&src, &key);
        let e = super::super::verify(dir.path(), &key.public()).unwrap_err();
        assert!(
            matches!(
                &e,
                OciVerifyError::Content {
                    what: "the image config",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn tags_are_name_and_tag() {
        let t = Tag::parse("registry.example/team/fn:1.2.3", "latest").unwrap();
        assert_eq!(
            (t.name.as_str(), t.tag.as_str()),
            ("registry.example/team/fn", "1.2.3")
        );
        let t = Tag::parse("fn", "0.1.0").unwrap();
        assert_eq!((t.name.as_str(), t.tag.as_str()), ("fn", "0.1.0"));
        for bad in ["Fn:1", "fn:", ":1", "fn:-x", "fn:a b"] {
            assert!(Tag::parse(bad, "latest").is_err(), "{bad}");
        }
    }

    #[test]
    fn only_an_earlier_export_is_replaced_and_only_its_files_removed() {
        let key = SecretKey::from_seed([7; 32]);
        let t = tree(b"x\n");
        let (dir, _) = layout(&source(&t, t.clone()), &key);
        let files = previous_export(dir.path()).unwrap().unwrap();
        assert!(files.iter().any(|f| f == Path::new("index.json")));
        assert_eq!(
            files.iter().filter(|f| f.starts_with(BLOBS)).count(),
            std::fs::read_dir(dir.path().join(BLOBS)).unwrap().count()
        );
        // Something of the user's in it: refused, naming it.
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let e = previous_export(dir.path()).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        // Removing an earlier export leaves what is not ours.
        remove_ours(dir.path(), &files);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
        // Another tool's layout is refused.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("index.json"), br#"{"schemaVersion":2}"#).unwrap();
        let e = previous_export(other.path()).unwrap_err().to_string();
        assert!(e.contains("not written by `stratos export`"), "{e}");
    }
}
