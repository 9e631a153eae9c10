//! `stratos kernel config|lint`: the resolved kernel config of a profile, and its traps.

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::arch::Arch;
use crate::kernel::{self, config::Value, lint};
use crate::profile::{KernelOrigin, Profile};
use crate::progress::Progress;

/// Inspect a profile's kernel configuration.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Print the resolved config's differences from its base (e.g. tinyconfig), and check that
    /// every option the fragments set holds. Exit 1 if one does not.
    #[command(
        after_help = "Example:\n  stratos kernel config profiles/hello.toml\n  stratos kernel config profiles/hello.toml --full > hello.config"
    )]
    Config {
        profile: PathBuf,
        /// Print the whole resolved .config instead of the difference.
        #[arg(long)]
        full: bool,
        /// The architecture whose kernel to resolve [default: the profile's first].
        #[arg(long, value_name = "ARCH")]
        arch: Option<Arch>,
    },
    /// Flag known slow-boot and hardening traps in the profile's kernel config, with the reason
    /// and the fix. Exit 1 if anything is flagged.
    #[command(after_help = "Example:\n  stratos kernel lint profiles/hello.toml")]
    Lint {
        profile: PathBuf,
        /// Print findings as JSON.
        #[arg(long)]
        json: bool,
        /// The architecture whose kernel to lint [default: the profile's first].
        #[arg(long, value_name = "ARCH")]
        arch: Option<Arch>,
    },
    /// Boot an image with `initcall_debug printk.time=1 loglevel=8` (instead of `quiet`) and
    /// report where the kernel spends its time before /init: the slowest initcalls and the
    /// largest gaps between kernel messages. Console output at that level costs time itself
    /// under emulation: compare rankings, not absolute times, with normal boots.
    #[command(after_help = "Example:
  stratos kernel profile out/hello --runs 3 --top 15 --json-out hello-kernel.json")]
    Profile(ProfileArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The image directory.
    pub image: PathBuf,
    /// Boots to profile (medians are reported).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// How many initcalls and gaps to show.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// Also write the profile as JSON to FILE (schema stratos-kernel-profile/1).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Keep each boot's verbose console as FILE (FILE.2, FILE.3, ... for later boots).
    #[arg(long, value_name = "FILE")]
    pub console: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::boot::vm::AccelChoice::Auto)]
    pub accel: crate::boot::vm::AccelChoice,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Per-boot deadline for reaching /init: a duration such as 90s or 5m (a bare number is
    /// seconds).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::vocab::deadline)]
    pub timeout: std::time::Duration,
}

fn profile_image(o: &ProfileArgs) -> CliResult {
    let image = &o.image;
    use crate::kernel::profile;
    let (runs, top, accel, memory, timeout) = (o.runs, o.top, o.accel, o.memory, o.timeout);
    if runs == 0 {
        return Err(CliError::input(anyhow::anyhow!(
            "--runs must be at least 1"
        )));
    }
    let img = crate::boot::BootImage::open(image)?;
    crate::boot::handle_stop_signals().map_err(CliError::env)?;
    let (accel, why) = img
        .choose_accel(accel, &crate::cache::Cache::new(crate::cache::root()))
        .map_err(CliError::env)?;
    if let Some(why) = why {
        eprintln!("stratos: KVM unavailable ({why}); using TCG (software emulation)");
    }
    let cmdline = profile::profile_cmdline(&img.manifest.kernel.cmdline);
    let mut boots = Vec::new();
    for i in 0..runs {
        eprintln!("stratos: profile boot {}/{runs} ({})", i + 1, accel.name());
        let opts = crate::boot::RunOptions {
            accel,
            memory_mib: memory,
            forwards: Vec::new(),
            timeout,
            echo: crate::boot::vm::Echo::Off,
            interactive: false,
            invoke: None,
            stop_after_invoke: false,
            linger: std::time::Duration::ZERO,
            cmdline: Some(cmdline.clone()),
            // The init's first line: the kernel's part is over.
            until_line: Some(format!("{} init_start", stratos_wire::PHASE_PREFIX)),
            restore: None,
            hold: None,
        };
        let run = crate::boot::run(&img, &opts);
        if crate::boot::stop_requested() {
            return Err(CliError::interrupted("the VM was stopped"));
        }
        let run = run?;
        let text = run.console_text();
        if let Some(c) = &o.console {
            let path = if i == 0 {
                c.clone()
            } else {
                PathBuf::from(format!("{}.{}", c.display(), i + 1))
            };
            crate::fsio::write_atomic(&path, text.as_bytes(), 0o644)
                .map_err(super::writing(&path))?;
        }
        let p = profile::parse(&text);
        if p.run_init_s.is_none() {
            return Err(CliError::check(anyhow::anyhow!(
                "boot {}: the kernel never reached /init ({})",
                i + 1,
                run.failure_reason()
            )));
        }
        boots.push(p);
    }
    let name = format!("{} {}", img.manifest.image.name, img.manifest.image.version);
    let summary = profile::summarise(&name, &cmdline, &boots, top);
    print!("{}", profile::render(&summary));
    if let Some(path) = &o.json_out {
        let mut bytes = serde_json::to_vec_pretty(&summary).expect("plain data");
        bytes.push(b'\n');
        crate::fsio::write_atomic(path, &bytes, 0o644).map_err(super::writing(path))?;
    }
    Ok(())
}

/// The cache kernels are resolved into (`$STRATOS_CACHE`, else the user's cache directory).
fn cache() -> crate::cache::Cache {
    crate::cache::Cache::new(crate::cache::root())
}

fn load(profile: &std::path::Path, arch: Option<Arch>) -> Result<Profile, CliError> {
    Profile::load_for(profile, arch).map_err(CliError::input)
}

pub fn run(a: Args) -> CliResult {
    match a.command {
        Sub::Profile(p) => profile_image(&p),
        Sub::Config {
            profile,
            full,
            arch,
        } => config(&profile, full, arch),
        Sub::Lint {
            profile,
            json,
            arch,
        } => lint_profile(&profile, json, arch),
    }
}

/// `stratos kernel config`.
fn config(profile: &std::path::Path, full: bool, arch: Option<Arch>) -> CliResult {
    let progress = Progress::new(false);
    let p = load(profile, arch)?;
    let KernelOrigin::Source(spec) = &p.kernel.origin else {
        return Err(CliError::input(anyhow::anyhow!(
            "{}: the kernel is prebuilt; `kernel config` resolves kernels built from source (kernel.source)",
            profile.display()
        )));
    };
    let r = kernel::build::resolve(spec, &cache(), p.image.arch, &progress)?;
    if full {
        print!("{}", r.config_text);
    } else {
        println!(
            "# {} + {} fragment(s), against `make {}`:",
            spec.base,
            spec.fragments.len(),
            spec.base
        );
        let show = |v: Option<&Value>| v.map_or("(absent)".to_owned(), ToString::to_string);
        let mut names: Vec<&String> = r
            .config
            .options
            .keys()
            .chain(r.base_config.options.keys())
            .collect();
        names.sort();
        names.dedup();
        let mut changed = 0;
        for n in names {
            let (b, f) = (r.base_config.get(n), r.config.get(n));
            let off = |v: Option<&Value>| matches!(v, None | Some(Value::No));
            if b != f && !(off(b) && off(f)) {
                println!("CONFIG_{n}: {} -> {}", show(b), show(f));
                changed += 1;
            }
        }
        println!("# {changed} option(s) differ from {}", spec.base);
    }
    if !r.mismatches.is_empty() {
        return Err(CliError::check(anyhow::anyhow!(
            "the resolved config does not hold what the fragments ask:\n{}",
            kernel::build::render_mismatches(&r.mismatches)
        )));
    }
    eprintln!("stratos: every option the fragments set holds in the resolved config");
    Ok(())
}

/// `stratos kernel lint`.
fn lint_profile(profile: &std::path::Path, json: bool, arch: Option<Arch>) -> CliResult {
    let progress = Progress::new(false);
    let p = load(profile, arch)?;
    let (config, format) = match &p.kernel.origin {
        KernelOrigin::Source(spec) => {
            let r = kernel::build::resolve(spec, &cache(), p.image.arch, &progress)?;
            (r.config, spec.format.to_string())
        }
        KernelOrigin::Prebuilt { image, config } => {
            let Some(cfg) = config else {
                return Err(CliError::input(anyhow::anyhow!(
                    "{}: set kernel.config to the prebuilt kernel's .config so it can be linted",
                    profile.display()
                )));
            };
            let text =
                crate::fsio::read_text(cfg, crate::fsio::caps::KERNEL_CONFIG, "a kernel config")
                    .map_err(CliError::input)?;
            let c = kernel::Config::parse(&text)
                .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", cfg.display())))?;
            let bytes = crate::fsio::read_file(image, crate::fsio::caps::KERNEL_IMAGE, "a kernel")
                .map_err(CliError::input)?;
            let fmt = kernel::inspect_image(&bytes)
                .map(|k| k.format.to_owned())
                .unwrap_or_else(|_| "bzImage".into());
            (c, fmt)
        }
    };
    let findings = lint::lint(
        &config,
        &lint::Context {
            arch: p.image.arch,
            format: &format,
            cmdline: &p.kernel.cmdline,
            modules_in_image: p.kernel.modules.len(),
            modules_names_rng: p.kernel.modules.iter().any(|m| m == "virtio_rng"),
            erofs_root: p.image.root == crate::profile::RootFormat::Erofs,
        },
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).expect("serialisable")
        );
    } else {
        for f in &findings {
            println!("{} [{}]: {}\n    fix: {}", f.rule, f.kind, f.message, f.fix);
        }
    }
    if findings.is_empty() {
        if !json {
            println!("no findings");
        }
        Ok(())
    } else {
        Err(CliError::check(anyhow::anyhow!(
            "{} finding(s)",
            findings.len()
        )))
    }
}
