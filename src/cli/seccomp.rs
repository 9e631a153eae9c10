//! `stratos seccomp check|diff|suggest`: validate a baseline, see what a change opens or
//! closes, and derive one from what boot tests observed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CliError, CliResult};
use crate::arch::Arch;
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
        /// The architecture to compile it for ("x86_64", "aarch64"): the system call table, the
        /// audit architecture its filter checks.
        #[arg(long, value_name = "ARCH", default_value = "x86_64")]
        arch: Arch,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What changes from policy A to policy B: system calls B opens (allows that A did not),
    /// closes, or allows under different conditions. Exit 0 either way.
    #[command(
        after_help = "Example:\n  stratos seccomp diff profiles/seccomp/generic.json profiles/seccomp/busybox-httpd.json"
    )]
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// The architecture both are read for ("x86_64", "aarch64").
        #[arg(long, value_name = "ARCH", default_value = "x86_64")]
        arch: Arch,
    },
    /// Write the smallest baseline that allows the system calls boot-test runs observed (an
    /// image with [observe] syscalls = true; every successful run of the image in the result
    /// counts), plus exit, exit_group, restart_syscall and rt_sigreturn. With --base, its
    /// default action, architectures and rules other than plain allows are kept, and the diff
    /// from it is printed. The output is sorted and commented: the same runs give the same
    /// bytes. Review it (calls the runs never reached get the default action) before enforcing.
    #[command(after_help = "Example:
  stratos boot-test out/python-fn --runs 3 --json-out boot.json
  stratos seccomp suggest --from boot.json --base profiles/seccomp/python.json --out python.json")]
    Suggest {
        /// A boot-test result (`stratos boot-test --json-out FILE`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The policy the image runs under now: its header and non-allow rules are kept.
        #[arg(long, value_name = "POLICY")]
        base: Option<PathBuf>,
        /// Write the policy here (atomically) instead of to stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The architecture the runs were on ("x86_64", "aarch64") [default: the `image.arch` of
        /// the manifest in the image directory the result names, when it is there and is the
        /// image the result is about; else x86_64].
        #[arg(long, value_name = "ARCH")]
        arch: Option<Arch>,
    },
}

fn load(p: &Path, arch: Arch) -> Result<Policy, CliError> {
    load_with_text(p, arch).map(|(policy, _)| policy)
}

/// The policy at `p` for `arch`, and its text. Calls `arch` does not have are left out with a
/// warning, as the build does.
fn load_with_text(p: &Path, arch: Arch) -> Result<(Policy, String), CliError> {
    let text = crate::fsio::read_text(p, crate::fsio::caps::SECCOMP_POLICY, "a seccomp policy")
        .map_err(CliError::input)?;
    let label = p.display().to_string();
    let policy = Policy::parse(&text, &label, arch).map_err(CliError::input)?;
    if let Some(note) = policy.skipped_note(&label) {
        eprintln!("stratos: WARNING: {note}");
    }
    Ok((policy, text))
}

/// The architecture of the runs a boot-test result is about: `--arch`, else the image
/// directory's manifest when it is the image the result names, else x86-64 (every image before
/// there was a second architecture).
fn runs_arch(
    result: &crate::boot_result::BootTestResult,
    given: Option<Arch>,
) -> Result<Arch, CliError> {
    if let Some(a) = given {
        return Ok(a);
    }
    let Some(dir) = result.image.dir.as_deref().map(Path::new) else {
        return Ok(Arch::X86_64);
    };
    let mpath = dir.join(crate::sign::manifest::MANIFEST_FILE);
    if !mpath.exists() {
        return Ok(Arch::X86_64);
    }
    let bytes = crate::fsio::read_file(&mpath, crate::fsio::caps::MANIFEST, "a manifest")
        .map_err(CliError::input)?;
    if let Some(want) = &result.image.manifest_sha256 {
        if crate::digest::Sha256::of(&bytes) != *want {
            return Err(CliError::input(anyhow::anyhow!(
                "{} is not the image the boot-test result is about (its manifest changed since); pass --arch to say which architecture the runs were on",
                dir.display()
            )));
        }
    }
    let manifest = crate::sign::verify::parse_manifest(&bytes)
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", mpath.display())))?;
    Ok(manifest.image.arch)
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

/// What changes from `a` to `b`, as `seccomp diff` prints it.
fn diff_text(
    la: &str,
    ma: &BTreeMap<&'static str, String>,
    lb: &str,
    mb: &BTreeMap<&'static str, String>,
) -> String {
    let opened: Vec<_> = mb.iter().filter(|(n, _)| !ma.contains_key(*n)).collect();
    let closed: Vec<_> = ma.iter().filter(|(n, _)| !mb.contains_key(*n)).collect();
    let changed: Vec<_> = mb
        .iter()
        .filter(|(n, c)| ma.get(*n).is_some_and(|x| x != *c))
        .collect();
    let mut s = format!("{la} -> {lb}\nopens ({}):\n", opened.len());
    for (n, c) in &opened {
        s.push_str(&format!("  + {n} ({c})\n"));
    }
    s.push_str(&format!("closes ({}):\n", closed.len()));
    for (n, c) in &closed {
        s.push_str(&format!("  - {n} (was {c})\n"));
    }
    s.push_str(&format!("changes conditions ({}):\n", changed.len()));
    for (n, c) in &changed {
        s.push_str(&format!("  ~ {n}: {} -> {c}\n", ma[*n]));
    }
    s
}

/// `seccomp suggest`: the policy to `out` (or stdout), the summary and diff to stderr.
fn suggest(from: &Path, base: Option<&Path>, out: Option<&Path>, arch: Option<Arch>) -> CliResult {
    use crate::seccomp::suggest;
    let bytes = crate::fsio::read_file(from, crate::fsio::caps::REPORT, "a boot-test result")
        .map_err(CliError::input)?;
    let result = crate::boot_result::BootTestResult::from_json(&bytes).map_err(|e| {
        CliError::input(anyhow::anyhow!(
            "{}: not a boot-test result (stratos boot-test --json-out): {e}",
            from.display()
        ))
    })?;
    let arch = runs_arch(&result, arch)?;
    let obs = suggest::observed(&result, arch)
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", from.display())))?;
    let base = match base {
        Some(p) => {
            // Checked as a policy first: the suggestion keeps parts of it.
            let (policy, text) = load_with_text(p, arch)?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", p.display())))?;
            Some((p, policy, v))
        }
        None => None,
    };
    let text = suggest::suggest(
        &obs,
        base.as_ref().map(|(p, _, v)| {
            (
                v,
                p.file_name().and_then(|n| n.to_str()).unwrap_or("the base"),
            )
        }),
        arch,
    )
    .map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
    // What is written must be a policy `seccomp check` and the build accept.
    let label = out.map_or("the suggested policy".to_owned(), |o| {
        o.display().to_string()
    });
    let bad =
        |e: String| CliError::input(anyhow::anyhow!("the suggested policy is not valid: {e}"));
    let policy = Policy::parse(&text, &label, arch).map_err(|e| bad(e.to_string()))?;
    compile(&policy).map_err(|e| bad(e.to_string()))?;
    match out {
        Some(o) => crate::fsio::write_atomic(o, text.as_bytes(), 0o644)
            .map_err(|e| CliError::env(anyhow::anyhow!("writing {}: {e}", o.display())))?,
        None => print!("{text}"),
    }
    let (always, _) = policy.allowed();
    eprintln!(
        "stratos: {} system calls allowed: the {} seen in {} run(s) of {}, plus the lifecycle calls",
        always.len(),
        obs.calls.len(),
        obs.runs,
        obs.image
    );
    if let Some((p, b, _)) = &base {
        eprint!(
            "{}",
            diff_text(
                &p.display().to_string(),
                &allowed_map(b),
                &label,
                &allowed_map(&policy)
            )
        );
    }
    Ok(())
}

pub fn run(a: Args) -> CliResult {
    match a.command {
        Sub::Check { policy, arch, json } => {
            let p = load(&policy, arch)?;
            let prog = compile(&p)
                .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", policy.display())))?;
            let (always, cond) = p.allowed();
            if json {
                let v = serde_json::json!({
                    "policy": policy.display().to_string(),
                    "arch": arch,
                    "skipped": p.skipped,
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
                    "{}: valid; default action {}; {} BPF instructions for {arch}",
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
                            crate::seccomp::table::name(p.arch, *nr).unwrap_or("?"),
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
        Sub::Diff { a: pa, b: pb, arch } => {
            let (ma, mb) = (
                allowed_map(&load(&pa, arch)?),
                allowed_map(&load(&pb, arch)?),
            );
            print!(
                "{}",
                diff_text(
                    &pa.display().to_string(),
                    &ma,
                    &pb.display().to_string(),
                    &mb
                )
            );
            Ok(())
        }
        Sub::Suggest {
            from,
            base,
            out,
            arch,
        } => suggest(&from, base.as_deref(), out.as_deref(), arch),
    }
}
