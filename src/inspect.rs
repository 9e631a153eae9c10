//! What is inside an image: the report `stratos inspect` prints, read from the manifest, the
//! SBOM (through its typed view) and the root filesystem's tar.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive;
use crate::image::ROOTFS_ARTIFACT;
use crate::sbom::prop;
use crate::sbom::view::SbomView;
use crate::sign::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::verify::load_manifest;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Read(#[from] crate::fsio::ReadError),
    #[error("{}: {why}", crate::fsio::Shown(path))]
    Parse { path: PathBuf, why: String },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub image: String,
    pub version: String,
    /// The architecture the image runs on.
    pub arch: crate::arch::Arch,
    pub signed: bool,
    pub builder_version: String,
    pub source_date_epoch: u64,
    /// Built with `stratos build --dev`: not for release.
    pub dev: bool,
    /// The zstd level of the compressed artifacts.
    pub compression_level: i32,
    pub kernel: KernelReport,
    /// The block-device root, when the image has one (else the initramfs is the root).
    pub root: Option<crate::sign::manifest::RootInfo>,
    /// `[observe]`: what the init counts of the runtime.
    pub observe: Option<crate::sign::manifest::ObserveInfo>,
    /// `[runtime.go]`: the function compiled at build time.
    pub go: Option<crate::sign::manifest::GoInfo>,
    /// `[runtime.cargo]`: the Rust function compiled at build time.
    pub rust: Option<crate::sign::manifest::RustInfo>,
    pub artifacts: Vec<Artifact>,
    pub components: Vec<ComponentReport>,
    pub files: usize,
    pub content_bytes: u64,
    pub largest_files: Vec<FileReport>,
    pub overrides: Vec<String>,
    /// Entries of the root filesystem no SBOM component lists.
    pub orphans: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KernelReport {
    pub format: crate::sign::manifest::KernelFormat,
    pub version: Option<String>,
    pub cmdline: String,
    pub config_sha256: Option<crate::digest::Sha256>,
}

#[derive(Debug, Serialize)]
pub struct ComponentReport {
    pub bom_ref: String,
    pub name: String,
    pub version: String,
    pub files: usize,
    /// For Debian packages: bytes their data.tar put in the tree, and bytes trimmed from that.
    pub bytes_installed: Option<u64>,
    pub bytes_trimmed: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub size: u64,
}

/// Reads an image directory (manifest, SBOM, rootfs.tar.zst) into a [`Report`]. Does not verify.
pub fn report(dir: &Path) -> Result<Report, InspectError> {
    let m = load_manifest(dir).map_err(|e| InspectError::Parse {
        path: dir.join(MANIFEST_FILE),
        why: e.to_string(),
    })?;
    let sbom = read_sbom(&dir.join(&m.sbom))?;
    let (components, overrides) = components(&sbom);
    let claimed: BTreeSet<&str> = sbom.components.iter().flat_map(|c| c.files()).collect();
    let listed = list_rootfs(&dir.join(ROOTFS_ARTIFACT))?;
    let (content_bytes, largest_files) = largest_files(&listed, 10);
    Ok(Report {
        image: m.image.name.clone(),
        version: m.image.version.clone(),
        arch: m.image.arch,
        signed: std::fs::symlink_metadata(dir.join(SIGNATURE_FILE)).is_ok_and(|m| m.is_file()),
        builder_version: m.builder.version.clone(),
        source_date_epoch: m.source_date_epoch,
        dev: m.dev,
        compression_level: m.compression.level,
        kernel: KernelReport {
            format: m.kernel.format,
            version: m.kernel.version.clone(),
            cmdline: m.kernel.cmdline.clone(),
            config_sha256: m.kernel.config_sha256,
        },
        root: m.root.clone(),
        observe: m.observe,
        go: m.go.clone(),
        rust: m.rust.clone(),
        artifacts: m.artifacts.clone(),
        components,
        files: listed.len(),
        content_bytes,
        largest_files,
        overrides,
        orphans: orphans(&listed, &claimed),
    })
}

fn read_sbom(path: &Path) -> Result<SbomView, InspectError> {
    SbomView::parse(&crate::fsio::read_regular(
        path,
        crate::fsio::caps::SBOM,
        "an SBOM",
        crate::fsio::Links::Refuse,
    )?)
    .map_err(|why| InspectError::Parse {
        path: path.to_owned(),
        why,
    })
}

/// Each SBOM component with its file count (and, for Debian packages, bytes installed and
/// trimmed); and the paths where one layer overrode another, by component.
fn components(sbom: &SbomView) -> (Vec<ComponentReport>, Vec<String>) {
    let mut overrides = Vec::new();
    let mut components = Vec::new();
    for c in &sbom.components {
        let number = |name: &str| c.prop(name).and_then(|v| v.parse::<u64>().ok());
        components.push(ComponentReport {
            bom_ref: c.bom_ref.clone(),
            name: c.name.clone(),
            version: c.version.clone(),
            files: c.files().count(),
            bytes_installed: number(prop::BYTES_INSTALLED),
            bytes_trimmed: number(prop::BYTES_TRIMMED),
        });
        overrides.extend(
            c.props(prop::OVERRIDES)
                .map(|v| format!("{}: {v}", c.bom_ref)),
        );
    }
    (components, overrides)
}

/// The entries of the root filesystem's tar.
fn list_rootfs(tar_path: &Path) -> Result<Vec<archive::tar::Listed>, InspectError> {
    let tar = archive::zst::decompress_capped(
        &crate::fsio::read_regular(
            tar_path,
            crate::fsio::caps::KERNEL_IMAGE.max(4 << 30),
            "a root filesystem archive",
            crate::fsio::Links::Refuse,
        )?,
        16 << 30,
    )
    .map_err(|e| InspectError::Parse {
        path: tar_path.to_owned(),
        why: format!("decompressing: {e}"),
    })?;
    archive::tar::list_tar(&tar).map_err(|e| InspectError::Parse {
        path: tar_path.to_owned(),
        why: e.to_string(),
    })
}

/// Entries (as in-image paths) that no SBOM component claims.
fn orphans(listed: &[archive::tar::Listed], claimed: &BTreeSet<&str>) -> Vec<String> {
    listed
        .iter()
        .map(|l| {
            let p = l.path.trim_end_matches('/');
            if p.is_empty() || p == "." {
                "/".to_owned()
            } else {
                format!("/{}", p.trim_start_matches("./"))
            }
        })
        .filter(|p| !claimed.contains(p.as_str()))
        .collect()
}

/// All file data in bytes, and the `n` largest files (ties by path).
fn largest_files(listed: &[archive::tar::Listed], n: usize) -> (u64, Vec<FileReport>) {
    let mut files: Vec<FileReport> = listed
        .iter()
        .filter(|l| l.kind == 'f')
        .map(|l| FileReport {
            path: format!("/{}", l.path),
            size: l.size,
        })
        .collect();
    let content_bytes = files.iter().map(|f| f.size).sum();
    files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    files.truncate(n);
    (content_bytes, files)
}
