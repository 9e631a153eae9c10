//! `stratos doctor`: what this host has and lacks, each lack with its fix (`crate::doctor`).

use super::{CliError, CliResult};

/// Check this host: QEMU, KVM, the cache, the kernel source and build tools, the build sandbox,
/// the prefetch directories and the image checkers, each lack with its fix.
///
/// Nothing is built or booted (KVM is tried by letting QEMU create a VM with no machine in
/// it). Exit 0 when everything required to build and boot the shipped profiles is here, 1 when
/// something required is missing (listed last). KVM, the prefetch directories and the
/// checkers are not required: they are reported as warnings.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  stratos doctor\n  stratos doctor --json | jq '.missing'")]
pub struct Args {
    /// Print the report as JSON on stdout: {ok, missing, checks: [{name, required, ok, found,
    /// fix}], cache: {root, bytes, kinds}}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let report = crate::doctor::run(&crate::doctor::Host::from_env());
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", crate::doctor::render(&report));
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::check(anyhow::anyhow!(
            "this host lacks what building and booting need: {} (each with its fix above)",
            report.missing.join(", ")
        )))
    }
}
