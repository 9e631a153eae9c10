//! `stratos kernel config|lint`: the resolved kernel config of a profile, and its traps.

use std::path::PathBuf;

use super::{CliError, CliResult};
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
    },
    /// Flag known slow-boot and hardening traps in the profile's kernel config, with the reason
    /// and the fix. Exit 1 if anything is flagged.
    #[command(after_help = "Example:\n  stratos kernel lint profiles/hello.toml")]
    Lint {
        profile: PathBuf,
        /// Print findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load(profile: &std::path::Path) -> Result<Profile, CliError> {
    Profile::load(profile).map_err(CliError::input)
}

pub fn run(a: Args) -> CliResult {
    let progress = Progress::new(false);
    match a.command {
        Sub::Config { profile, full } => {
            let p = load(&profile)?;
            let KernelOrigin::Source(spec) = &p.kernel.origin else {
                return Err(CliError::input(anyhow::anyhow!(
                    "{}: the kernel is prebuilt; `kernel config` resolves kernels built from source (kernel.source)",
                    profile.display()
                )));
            };
            let r = kernel::build::resolve(spec, &progress).map_err(CliError::input)?;
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
        Sub::Lint { profile, json } => {
            let p = load(&profile)?;
            let (config, format) = match &p.kernel.origin {
                KernelOrigin::Source(spec) => {
                    let r = kernel::build::resolve(spec, &progress).map_err(CliError::input)?;
                    (r.config, spec.format.clone())
                }
                KernelOrigin::Prebuilt { image, config } => {
                    let Some(cfg) = config else {
                        return Err(CliError::input(anyhow::anyhow!(
                            "{}: set kernel.config to the prebuilt kernel's .config so it can be linted",
                            profile.display()
                        )));
                    };
                    let text = crate::fsio::read_text(
                        cfg,
                        crate::fsio::caps::KERNEL_CONFIG,
                        "a kernel config",
                    )
                    .map_err(CliError::input)?;
                    let c = kernel::Config::parse(&text)
                        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", cfg.display())))?;
                    let bytes =
                        crate::fsio::read_file(image, crate::fsio::caps::KERNEL_IMAGE, "a kernel")
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
                    format: &format,
                    cmdline: &p.kernel.cmdline,
                    modules_in_image: p.kernel.modules.len(),
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
    }
}
