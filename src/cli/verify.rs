//! `stratos verify`: signature, every artifact digest, SBOM consistency; or an OCI layout
//! `stratos export` wrote (`--oci DIR`).

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::sign::verify::{verify_image_for, Need};

/// Verify an image: the manifest signature (ed25519, strict), then every artifact's size and
/// sha256, then that the SBOM is the one the manifest names. Exit 0 only if all hold. (An
/// EROFS image's rootfs.tar.zst may be absent, as in a node's images: said, not an error.)
/// With --oci DIR: an exported OCI layout, its every blob's digest, the signed statement, the
/// SBOM, the layer's tree against the root the StratOS manifest signs, and the config against
/// the tree's init configuration.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos verify out/hello --image-key keys/release.pub\n  stratos verify --oci out/hello.oci --image-key keys/release.pub\n\nExit codes: 0 verified, 1 verification failed (the first failure is named), 2 bad input."
)]
pub struct Args {
    /// The image directory.
    #[arg(required_unless_present = "oci", conflicts_with = "oci")]
    pub dir: Option<PathBuf>,
    /// Verify an OCI image layout written by `stratos export --oci` instead.
    #[arg(long, value_name = "DIR")]
    pub oci: Option<PathBuf>,
    /// The image key, public (PREFIX.pub from `stratos keygen`): the image must be signed
    /// with its secret half.
    #[arg(long, value_name = "FILE")]
    pub image_key: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `verify` and `inspect` say of a `stratos build --dev` image.
pub(super) const DEV_NOTE: &str =
    "dev build: built with `stratos build --dev` (fast compression); not for release, `stratos publish` refuses it";

pub fn run(a: Args) -> CliResult {
    let key = super::vocab::public_key("--image-key", &a.image_key)?;
    let dir = a
        .oci
        .as_ref()
        .or(a.dir.as_ref())
        .expect("clap requires one");
    if !dir.is_dir() {
        return Err(CliError::input(anyhow::anyhow!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if a.oci.is_some() {
        return run_oci(dir, &key, a.json);
    }
    match verify_image_for(dir, &key, Need::Boot) {
        Ok(v) => {
            if a.json {
                let j = serde_json::json!({
                    "verified": true,
                    "image": v.manifest.image.name,
                    "version": v.manifest.image.version,
                    "arch": v.manifest.image.arch,
                    "key_id": v.key_id.as_str(),
                    "artifacts": v.manifest.artifacts.len(),
                    "dev": v.manifest.dev,
                    "absent": v.absent,
                });
                println!("{j}");
            } else {
                println!(
                    "verified: {} {} ({}) signed by {}; {} artifacts match the manifest; SBOM {} consistent",
                    v.manifest.image.name,
                    v.manifest.image.version,
                    v.manifest.image.arch.name(),
                    v.key_id,
                    v.manifest.artifacts.len() - v.absent.len(),
                    v.manifest.sbom
                );
                if v.manifest.dev {
                    println!("{DEV_NOTE}");
                }
                for name in &v.absent {
                    println!(
                        "{name}: not in the directory (a node does not fetch it: it boots without it); every file present matches"
                    );
                }
            }
            Ok(())
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "reason": e.to_string()})
                );
            }
            Err(CliError::check(anyhow::anyhow!("verification FAILED: {e}")))
        }
    }
}

fn run_oci(dir: &std::path::Path, key: &crate::sign::PublicKey, json: bool) -> CliResult {
    match crate::image::oci::verify(dir, key) {
        Ok(v) => {
            if json {
                let j = serde_json::json!({
                    "verified": true,
                    "image": v.manifest.image.name,
                    "version": v.manifest.image.version,
                    "arch": v.manifest.image.arch,
                    "key_id": v.key_id.as_str(),
                    "manifest_digest": v.digest,
                    "blobs": v.blobs,
                });
                println!("{j}");
            } else {
                println!(
                    "verified: OCI layout of {} {} ({}), image manifest {}, statement signed by {}; {} blobs match their digests; the layer is the image's root tree; SBOM consistent",
                    v.manifest.image.name,
                    v.manifest.image.version,
                    v.manifest.image.arch.name(),
                    v.digest,
                    v.key_id,
                    v.blobs
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "reason": e.to_string()})
                );
            }
            Err(CliError::check(anyhow::anyhow!("verification FAILED: {e}")))
        }
    }
}
