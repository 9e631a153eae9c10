//! `stratos inspect`: what is inside an image.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::{human_bytes, CliError, CliResult};
use crate::archive;
use crate::build::ROOTFS_ARTIFACT;
use crate::sign::manifest::{Artifact, MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::verify::parse_manifest;

/// Summarise an image: name, kernel, artifact sizes, SBOM components, the largest files, and
/// which layer won where two put the same path. Does not verify (use `stratos verify`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos inspect out/hello\n  stratos inspect out/hello --json | jq .largest_files"
)]
pub struct Args {
    /// The image directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only list the image's entries that no SBOM component claims; exit 1 if there are any.
    #[arg(long)]
    pub orphans: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub image: String,
    pub version: String,
    pub signed: bool,
    pub builder_version: String,
    pub source_date_epoch: u64,
    pub kernel: KernelReport,
    /// The block-device root, when the image has one (else the initramfs is the root).
    pub root: Option<crate::sign::manifest::RootInfo>,
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
    pub format: String,
    pub version: Option<String>,
    pub cmdline: String,
    pub config_sha256: Option<String>,
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

pub fn report(dir: &Path) -> anyhow::Result<Report> {
    let mpath = dir.join(MANIFEST_FILE);
    let bytes = crate::fsio::read_regular(
        &mpath,
        crate::fsio::caps::MANIFEST,
        "a manifest",
        crate::fsio::Links::Refuse,
    )?;
    let m = parse_manifest(&bytes).with_context(|| format!("reading {}", mpath.display()))?;
    let sbom_path = dir.join(&m.sbom);
    let sbom: serde_json::Value = serde_json::from_slice(&crate::fsio::read_regular(
        &sbom_path,
        crate::fsio::caps::SBOM,
        "an SBOM",
        crate::fsio::Links::Refuse,
    )?)
    .with_context(|| format!("parsing {}", sbom_path.display()))?;
    let mut components = Vec::new();
    let mut overrides = Vec::new();
    let mut claimed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for c in sbom["components"].as_array().into_iter().flatten() {
        let occ = c["evidence"]["occurrences"].as_array();
        let files = occ.map_or(0, Vec::len);
        for o in occ.into_iter().flatten() {
            if let Some(l) = o["location"].as_str() {
                claimed.insert(l.to_owned());
            }
        }
        let prop = |name: &str| {
            c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["value"].as_str())
                .and_then(|v| v.parse::<u64>().ok())
        };
        components.push(ComponentReport {
            bom_ref: c["bom-ref"].as_str().unwrap_or("").to_owned(),
            name: c["name"].as_str().unwrap_or("").to_owned(),
            version: c["version"].as_str().unwrap_or("").to_owned(),
            files,
            bytes_installed: prop("stratos:bytes-installed"),
            bytes_trimmed: prop("stratos:bytes-trimmed"),
        });
        for p in c["properties"].as_array().into_iter().flatten() {
            if p["name"] == "stratos:overrides" {
                overrides.push(format!(
                    "{}: {}",
                    c["bom-ref"].as_str().unwrap_or(""),
                    p["value"].as_str().unwrap_or("")
                ));
            }
        }
    }
    let tar_path = dir.join(ROOTFS_ARTIFACT);
    let tar = archive::zst::decompress_capped(
        &crate::fsio::read_regular(
            &tar_path,
            crate::fsio::caps::KERNEL_IMAGE.max(4 << 30),
            "a root filesystem archive",
            crate::fsio::Links::Refuse,
        )?,
        16 << 30,
    )
    .with_context(|| format!("decompressing {}", tar_path.display()))?;
    let listed =
        archive::tar::list_tar(&tar).with_context(|| format!("reading {}", tar_path.display()))?;
    let orphans: Vec<String> = listed
        .iter()
        .map(|l| {
            let p = l.path.trim_end_matches('/');
            if p.is_empty() || p == "." {
                "/".to_owned()
            } else {
                format!("/{}", p.trim_start_matches("./"))
            }
        })
        .filter(|p| !claimed.contains(p))
        .collect();
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
    files.truncate(10);
    Ok(Report {
        image: m.image.name.clone(),
        version: m.image.version.clone(),
        signed: dir.join(SIGNATURE_FILE).is_file(),
        builder_version: m.builder.version.clone(),
        source_date_epoch: m.source_date_epoch,
        kernel: KernelReport {
            format: m.kernel.format.clone(),
            version: m.kernel.version.clone(),
            cmdline: m.kernel.cmdline.clone(),
            config_sha256: m.kernel.config_sha256.clone(),
        },
        root: m.root.clone(),
        artifacts: m.artifacts.clone(),
        components,
        files: listed.len(),
        content_bytes,
        largest_files: files,
        overrides,
        orphans,
    })
}

pub fn run(a: Args) -> CliResult {
    let r = report(&a.dir).map_err(CliError::input)?;
    if a.orphans {
        for o in &r.orphans {
            println!("{o}");
        }
        if r.orphans.is_empty() {
            eprintln!(
                "no orphans: every entry of the root filesystem belongs to an SBOM component"
            );
            return Ok(());
        }
        return Err(CliError::check(anyhow::anyhow!(
            "{} entries belong to no SBOM component",
            r.orphans.len()
        )));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("report serialises")
        );
        return Ok(());
    }
    println!(
        "image:    {} {} ({})",
        r.image,
        r.version,
        if r.signed { "signed" } else { "UNSIGNED" }
    );
    println!(
        "builder:  stratos {}, source date epoch {}",
        r.builder_version, r.source_date_epoch
    );
    println!(
        "kernel:   {} {} | cmdline: {}",
        r.kernel.format,
        r.kernel.version.as_deref().unwrap_or("(version unknown)"),
        r.kernel.cmdline
    );
    match &r.root {
        Some(root) => println!(
            "root:     {} in {} ({} blocks), dm-verity sha256 root hash {} (salt {}), hash tree at byte {}",
            root.format,
            root.artifact,
            root.verity.data_blocks,
            root.verity.root_hash,
            root.verity.salt,
            root.verity.hash_offset
        ),
        None => println!("root:     initramfs (unpacked into RAM by the kernel)"),
    }
    println!("artifacts:");
    for art in &r.artifacts {
        println!("  {:<20} {:>10}", art.name, human_bytes(art.size));
    }
    println!(
        "contents: {} entries, {} of file data",
        r.files,
        human_bytes(r.content_bytes)
    );
    println!("components ({}):", r.components.len());
    for c in &r.components {
        let trim = match (c.bytes_installed, c.bytes_trimmed) {
            (Some(i), Some(t)) => format!(
                "  {} installed, {} after trim",
                human_bytes(i),
                human_bytes(i.saturating_sub(t))
            ),
            _ => String::new(),
        };
        println!(
            "  {:<60} {:>6} files  {}{trim}",
            c.bom_ref, c.files, c.version
        );
    }
    println!("largest files:");
    for f in &r.largest_files {
        println!("  {:>10}  {}", human_bytes(f.size), f.path);
    }
    if !r.overrides.is_empty() {
        println!("paths provided by more than one layer (the later one is in the image):");
        for o in &r.overrides {
            println!("  {o}");
        }
    }
    Ok(())
}
