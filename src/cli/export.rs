//! `stratos export`: an image as an OCI image layout, the SBOM and a signed statement attached.

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::image::oci::{self, ExportError, ExportOptions};

/// Export an image as an OCI image layout (oci-layout, index.json, blobs/sha256/…) that
/// container tools run: one layer holding the image's root tree (the files, modes and owners of
/// rootfs.tar.zst, or of rootfs.erofs when there is no tarball; times = the source date
/// epoch), a config that starts the function as the image's init would (entrypoint,
/// environment, working directory, user, port), the SBOM and a statement signed with the image
/// key attached as OCI referrers. Two exports of one image are byte-identical. The function runs without stratos-init: zram, sysctl, the init's cgroup
/// limits and seccomp filter are not applied (pass --seccomp-policy and give the runtime
/// DIR/seccomp.json).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos export out/python-fn --oci out/python-fn.oci --image-key keys/release.key \\\n      --seccomp-policy profiles/seccomp/python.json\n  podman run --rm -p 8080:8080 oci:out/python-fn.oci\n  stratos verify --oci out/python-fn.oci --image-key keys/release.pub\n\nThe directory is replaced only when the export succeeded, and only if it is empty or an\nearlier export. Without an image key the layout is written unsigned, with a warning, and\n`stratos verify --oci` rejects it."
)]
pub struct Args {
    /// The image directory (`stratos build --out`).
    pub image: PathBuf,
    /// The OCI image layout directory to write.
    #[arg(long, value_name = "DIR")]
    pub oci: PathBuf,
    /// The reference: NAME:TAG (the layout's tag is TAG, `oci:DIR:TAG`; the docker archive's
    /// is NAME:TAG); NAME alone is tagged with the image's version [default: the image's name
    /// and version].
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Also write the image as a `docker load` / `podman load` archive.
    #[arg(long, value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,
    /// The image key, secret (PREFIX.key from `stratos keygen`; the key that signed the image):
    /// signs the statement naming the image manifest [env: STRATOS_SIGNING_KEY].
    #[arg(long, value_name = "FILE")]
    pub image_key: Option<PathBuf>,
    /// The image's seccomp policy (the profile's `[seccomp] policy` file; its sha256 must be
    /// the one in the image's manifest): written as DIR/seccomp.json for `--security-opt
    /// seccomp=`.
    #[arg(long, value_name = "FILE")]
    pub seccomp_policy: Option<PathBuf>,
    /// The `org.opencontainers.image.source` annotation (the source repository's URL).
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// The `org.opencontainers.image.revision` annotation (the source's commit).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl From<ExportError> for CliError {
    fn from(e: ExportError) -> Self {
        CliError::input_or_env(e.is_environment(), e)
    }
}

pub fn run(a: Args) -> CliResult {
    let key = super::vocab::image_secret_key(a.image_key.as_deref())?;
    if !a.image.is_dir() {
        return Err(CliError::input(anyhow::anyhow!(
            "{} is not a directory (an image directory, `stratos build --out`)",
            a.image.display()
        )));
    }
    let r = oci::export(&ExportOptions {
        image: &a.image,
        out: &a.oci,
        tag: a.tag.as_deref(),
        key: key.as_ref(),
        seccomp_policy: a.seccomp_policy.as_deref(),
        docker_archive: a.docker_archive.as_deref(),
        source: a.source,
        revision: a.revision,
    })?;
    if a.json {
        let j = serde_json::json!({
            "oci": a.oci,
            "image": r.manifest.image.name,
            "version": r.manifest.image.version,
            "arch": r.manifest.image.arch,
            "tag": format!("{}:{}", r.tag.name, r.tag.tag),
            "manifest_digest": r.digest,
            "layer_bytes": r.layer_size,
            "layout_bytes": r.layout_size,
            "signed_by": r.signed_by.as_ref().map(|k| k.as_str()),
            "seccomp": r.seccomp,
            "docker_archive": r.docker_archive.as_ref().map(|(p, _)| p),
            "docker_archive_bytes": r.docker_archive.as_ref().map(|(_, n)| n),
        });
        println!("{j}");
    } else {
        print_summary(&a.oci, &r);
    }
    if r.signed_by.is_none() {
        eprintln!("warning: NO SIGNING KEY (--image-key or $STRATOS_SIGNING_KEY): the layout's statement is UNSIGNED and `stratos verify --oci` will reject it");
    }
    if r.manifest.seccomp.is_some() && r.seccomp.is_none() {
        eprintln!(
            "note: the image's seccomp policy was not written (pass --seccomp-policy with {}): a container runs under the runtime's default policy",
            r.manifest.seccomp.as_ref().map_or("", |s| s.policy.as_str())
        );
    }
    Ok(())
}

fn print_summary(dir: &std::path::Path, r: &oci::Exported) {
    let m = &r.manifest;
    println!(
        "exported {} {} ({}) to {}: image manifest {}",
        m.image.name,
        m.image.version,
        m.image.arch.name(),
        dir.display(),
        r.digest
    );
    println!(
        "  layer {} (gzip), layout {}; SBOM and statement attached as referrers",
        super::human_bytes(r.layer_size),
        super::human_bytes(r.layout_size)
    );
    if let Some(k) = &r.signed_by {
        println!("  statement signed with key {k}");
    }
    if let Some(p) = &r.seccomp {
        println!("  seccomp policy: {}", p.display());
    }
    if let Some((p, n)) = &r.docker_archive {
        println!(
            "  docker archive: {} ({}), tag {}:{}",
            p.display(),
            super::human_bytes(*n),
            r.tag.name,
            r.tag.tag
        );
    }
    let port = r.port.map(|p| format!(" -p {p}:{p}")).unwrap_or_default();
    println!(
        "  run: podman run --rm{port} oci:{}:{}",
        dir.display(),
        r.tag.tag
    );
}
