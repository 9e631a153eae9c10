//! `stratos build`: profile → image directory.

use std::path::PathBuf;

use super::{human_bytes, CliError, CliResult};
use crate::build::{self, BuildOptions};
use crate::profile::Profile;
use crate::progress::Progress;

/// Build an image from a profile: kernel, initramfs, rootfs, SBOM, manifest and signature.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos build profiles/hello.toml --out out/hello --image-key keys/release.key\n\nThe image key may also come from $STRATOS_SIGNING_KEY (a path). Without a key the image\nis built unsigned, with a warning. The output directory is replaced only when the build\nsucceeded, and only if it is a previous image (or empty)."
)]
pub struct Args {
    /// The profile (TOML).
    pub profile: PathBuf,
    /// The architecture to build for, one the profile's `[image] arch` lists ("x86_64",
    /// "aarch64") [default: the first it lists].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::arch::Arch>,
    /// Output directory [default: out/<image name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The image key, secret (PREFIX.key from `stratos keygen`): signs the manifest
    /// [env: STRATOS_SIGNING_KEY].
    #[arg(long, value_name = "FILE")]
    pub image_key: Option<PathBuf>,
    /// Never download: packages must already be in the cache.
    #[arg(long)]
    pub offline: bool,
    /// Where Go modules the cache lacks are fetched from (an https:// module proxy, a file://
    /// URL or a directory laid out as one), instead of the profile's `[runtime.go] proxy`.
    /// Every module is checked against go.sum whatever its source.
    #[arg(long, value_name = "URL|DIR")]
    pub go_proxy: Option<String>,
    /// Build a kernel even if its resolved config does not hold every option the fragments
    /// set (prints each difference as a warning).
    #[arg(long)]
    pub allow_config_drift: bool,
    /// Fast compression (zstd -3 instead of -19) for local iteration: the manifest says
    /// `"dev": true`, `verify` and `inspect` show it, and `publish` refuses the image.
    #[arg(long)]
    pub dev: bool,
    /// Only check every input (the profile, the locks and every package, wheel, npm
    /// tarball and Go module they pin — fetched into the cache unless --offline —, the seccomp policy, the
    /// signing key, the kernel's config) and exit; nothing is compiled or written to --out.
    /// A build runs the same checks before its first expensive step.
    #[arg(long)]
    pub check: bool,
    /// Print only the result and warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--go-proxy`, relative to the working directory.
fn go_proxy(arg: Option<&str>) -> Result<Option<crate::profile::GoProxy>, CliError> {
    let Some(s) = arg else { return Ok(None) };
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::env(anyhow::anyhow!("the working directory: {e}")))?;
    crate::profile::GoProxy::parse(s, &cwd)
        .map(Some)
        .map_err(|m| CliError::input(anyhow::anyhow!("--go-proxy {m}")))
}

pub fn run(a: Args) -> CliResult {
    let progress = Progress::new(a.quiet);
    let profile = Profile::load_for(&a.profile, a.arch).map_err(CliError::input)?;
    let key = super::vocab::image_secret_key(a.image_key.as_deref())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&profile.image.name));
    let init_binary = build::init_binary::locate(profile.image.arch).map_err(CliError::env)?;
    let opts = BuildOptions {
        out: out.clone(),
        sign_key: key.as_ref(),
        init_binary,
        allow_config_drift: a.allow_config_drift,
        sources: crate::packages::fetch::Sources {
            go_proxy: go_proxy(a.go_proxy.as_deref())?,
            ..crate::packages::fetch::Sources::from_env(a.offline)
        },
        dev: a.dev,
    };
    let failed = |e: build::BuildError| {
        let env = e.is_environment();
        let doing = if a.check { "checking" } else { "building" };
        CliError::input_or_env(
            env,
            anyhow::Error::new(e).context(format!("{doing} {}", a.profile.display())),
        )
    };
    if a.check {
        let c = build::check(&profile, &opts, &progress).map_err(failed)?;
        println!(
            "{}: every input checked ({} .debs, {} wheels, {} npm packages, {} Go module files, {} crates, the kernel's config); nothing built",
            a.profile.display(),
            c.debs,
            c.wheels,
            c.npm,
            c.go_modules,
            c.crates
        );
        return Ok(());
    }
    let r = build::build(&profile, &opts, &progress).map_err(failed)?;
    println!(
        "built {} {} -> {} ({} entries)",
        r.manifest.image.name,
        r.manifest.image.version,
        r.out.display(),
        r.files
    );
    for art in &r.manifest.artifacts {
        println!(
            "  {:<20} {:>10}  sha256:{}",
            art.name,
            human_bytes(art.size),
            art.sha256
        );
    }
    for o in &r.overrides {
        println!(
            "  note: {} from {} replaced the one from {}",
            o.path, o.by, o.replaced
        );
    }
    if r.manifest.dev {
        progress.warn(
            "--dev: fast compression; the manifest marks the image as a dev build, not for release (`stratos publish` refuses it)",
        );
    }
    match &r.signed_by {
        Some(k) => println!("signed with key {k}"),
        None => progress.warn(
            "NO SIGNING KEY (--image-key or $STRATOS_SIGNING_KEY): the image is UNSIGNED and `stratos verify` will reject it",
        ),
    }
    Ok(())
}
