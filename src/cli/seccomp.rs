//! `stratos seccomp check|diff`: validate a baseline, and see what a change opens or closes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CliError, CliResult};
use crate::seccomp::{compile, Policy};

/// Work with seccomp baselines (OCI runtime-spec / Docker seccomp JSON).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Validate and compile a policy; print what it allows and the filter's size.
    #[command(
        after_help = "Example:\n  stratos seccomp check profiles/seccomp/busybox-httpd.json"
    )]
    Check {
        policy: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What changes from policy A to policy B: system calls B opens (allows that A did not),
    /// closes, or allows under different conditions. Exit 0 either way.
    #[command(
        after_help = "Example:\n  stratos seccomp diff profiles/seccomp/generic.json profiles/seccomp/busybox-httpd.json"
    )]
    Diff { a: PathBuf, b: PathBuf },
}

fn load(p: &Path) -> Result<Policy, CliError> {
    let text = crate::fsio::read_text(p, crate::fsio::caps::SECCOMP_POLICY, "a seccomp policy")
        .map_err(CliError::input)?;
    Policy::parse(&text, &p.display().to_string()).map_err(CliError::input)
}

/// name → "always" or the conditions under which it is allowed.
fn allowed_map(p: &Policy) -> BTreeMap<&'static str, String> {
    let (always, cond) = p.allowed();
    let mut m: BTreeMap<&'static str, String> = always
        .into_iter()
        .map(|n| (n, "always".to_owned()))
        .collect();
    for (n, c) in cond {
        m.insert(n, format!("if {}", c.join(" || ")));
    }
    m
}

pub fn run(a: Args) -> CliResult {
    match a.command {
        Sub::Check { policy, json } => {
            let p = load(&policy)?;
            let prog = compile(&p)
                .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", policy.display())))?;
            let (always, cond) = p.allowed();
            if json {
                let v = serde_json::json!({
                    "policy": policy.display().to_string(),
                    "default_action": p.default.describe(),
                    "instructions": prog.len(),
                    "allowed": always,
                    "conditional": cond,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("serialisable")
                );
            } else {
                println!(
                    "{}: valid; default action {}; {} BPF instructions",
                    policy.display(),
                    p.default.describe(),
                    prog.len()
                );
                println!("allowed ({}):", always.len());
                for chunk in always.iter().copied().collect::<Vec<_>>().chunks(8) {
                    println!("  {}", chunk.join(" "));
                }
                if !cond.is_empty() {
                    println!("allowed under conditions ({}):", cond.len());
                    for (n, c) in &cond {
                        println!("  {n}: {}", c.join(" || "));
                    }
                }
                for (nr, rules) in &p.rules {
                    for r in rules
                        .iter()
                        .filter(|r| r.action != crate::seccomp::Action::Allow)
                    {
                        println!(
                            "  {} -> {}{}",
                            crate::seccomp::table::name(*nr).unwrap_or("?"),
                            r.action.describe(),
                            if r.args.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " if {}",
                                    r.args
                                        .iter()
                                        .map(|c| c.describe())
                                        .collect::<Vec<_>>()
                                        .join(" && ")
                                )
                            }
                        );
                    }
                }
            }
            Ok(())
        }
        Sub::Diff { a: pa, b: pb } => {
            let (ma, mb) = (allowed_map(&load(&pa)?), allowed_map(&load(&pb)?));
            let opened: Vec<_> = mb.iter().filter(|(n, _)| !ma.contains_key(*n)).collect();
            let closed: Vec<_> = ma.iter().filter(|(n, _)| !mb.contains_key(*n)).collect();
            let changed: Vec<_> = mb
                .iter()
                .filter(|(n, c)| ma.get(*n).is_some_and(|x| x != *c))
                .collect();
            println!("{} -> {}", pa.display(), pb.display());
            println!("opens ({}):", opened.len());
            for (n, c) in &opened {
                println!("  + {n} ({c})");
            }
            println!("closes ({}):", closed.len());
            for (n, c) in &closed {
                println!("  - {n} (was {c})");
            }
            println!("changes conditions ({}):", changed.len());
            for (n, c) in &changed {
                println!("  ~ {n}: {} -> {c}", ma[*n]);
            }
            Ok(())
        }
    }
}
