//! Reading a policy: the OCI JSON checked (architectures, flags, actions, operators, system
//! call names, rules that could never apply) and turned into a [`Policy`], Docker's
//! conditional rules evaluated for the runtime that will run under it.

use std::collections::BTreeMap;

use super::oci::{Conditions, RawPolicy, RawRule, CAPS, GO_ARCHES, SCMP_ARCHES};
use super::policy::{parse_kernel_version, Action, ArgCond, Op, Policy, Rule, Target};
use super::table;
use crate::arch::Arch;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{path}: malformed policy JSON at line {line}, column {column}: {why}")]
    Json {
        path: String,
        line: usize,
        column: usize,
        why: String,
    },
    #[error("{path}: {what}")]
    Policy { path: String, what: String },
}

/// The largest errno a seccomp filter can return (`SECCOMP_RET_DATA` is 16 bits, and the kernel
/// treats values above 4095 as not an error).
pub const MAX_ERRNO: u32 = 4095;

/// How a rule's `includes`/`excludes` conditions came out: whether every condition holds
/// (for `includes`) and whether any does (for `excludes`).
struct Outcome {
    all: bool,
    any: bool,
}

fn conditions(c: &Conditions, target: &Target, at: &str) -> Result<Outcome, String> {
    let mut results = Vec::new();
    if !c.arches.is_empty() {
        for a in &c.arches {
            if !GO_ARCHES.contains(&a.as_str()) {
                return Err(format!(
                    "{at}.arches: unknown architecture {a:?} (Go's names: amd64, arm64, ...)"
                ));
            }
        }
        let names = target.arch.policy_names();
        results.push(c.arches.iter().any(|a| names.contains(&a.as_str())));
    }
    for cap in &c.caps {
        if !CAPS.contains(&cap.as_str()) {
            return Err(format!("{at}.caps: unknown capability {cap:?}"));
        }
    }
    if !c.caps.is_empty() {
        // Docker: includes needs every listed capability, excludes any of them; the runtime
        // has all or none, so both reduce to that.
        results.push(target.all_caps);
    }
    if let Some(v) = &c.min_kernel {
        let want = parse_kernel_version(v)
            .ok_or_else(|| format!("{at}.minKernel: {v:?} is not a kernel version like \"5.8\""))?;
        let have = target.kernel.ok_or_else(|| {
            format!("{at}.minKernel: the image's kernel version is unknown, so this condition cannot be evaluated; remove it or use a kernel whose version the builder can read")
        })?;
        results.push(have >= want);
    }
    Ok(Outcome {
        all: results.iter().all(|&b| b),
        any: results.iter().any(|&b| b),
    })
}

/// An OCI action name (`SCMP_ACT_*`) and its errno.
fn parse_action(s: &str, errno: Option<u32>, default_errno: u32) -> Result<Action, String> {
    Ok(match s {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => {
            let e = errno.unwrap_or(default_errno);
            if e > MAX_ERRNO {
                return Err(format!(
                    "errno {e} is out of range: an errno return is 0-{MAX_ERRNO}"
                ));
            }
            Action::Errno(e as u16)
        }
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => {
            return Err(format!("action {s} is not supported (no tracer or notification listener in a StratOS image)"))
        }
        other => return Err(format!("unknown action {other:?}; use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP or SCMP_ACT_LOG")),
    })
}

/// The policy as a whole: no notification listener, no flags, known architectures, the
/// image's among them.
fn check_header(raw: &RawPolicy, arch: Arch) -> Result<(), String> {
    let ours = arch.seccomp();
    if raw.listener_path.is_some() || raw.listener_metadata.is_some() {
        return Err("listenerPath/listenerMetadata (user notification) is not supported".into());
    }
    if let Some(f) = raw.flags.first() {
        return Err(format!(
            "flags: {f:?} is not supported (StratOS installs the filter without flags); remove \"flags\""
        ));
    }
    for a in raw.architectures.iter().chain(
        raw.arch_map
            .iter()
            .flat_map(|m| std::iter::once(&m.architecture).chain(m.sub_architectures.iter())),
    ) {
        if !SCMP_ARCHES.contains(&a.as_str()) {
            return Err(format!(
                "unknown architecture {a:?}; names are libseccomp's, like {ours:?}"
            ));
        }
    }
    if !raw.arch_map.is_empty() && !raw.arch_map.iter().any(|m| m.architecture == ours) {
        return Err(format!(
            "archMap has no entry for {ours}, the architecture of the image it is compiled for; add one to use the policy on {arch}"
        ));
    }
    if !raw.architectures.is_empty() && !raw.architectures.iter().any(|a| a == ours) {
        return Err(format!(
            "architectures {:?} do not include {ours}, the architecture of the image it is compiled for; add it to use the policy on {arch}",
            raw.architectures
        ));
    }
    Ok(())
}

/// One rule of `syscalls`, for each system call it names, unless its `includes`/`excludes`
/// conditions leave it out for this runtime.
fn add_rule(
    rules: &mut BTreeMap<u32, Vec<Rule>>,
    skipped: &mut Vec<&'static str>,
    r: &RawRule,
    origin: &str,
    default_errno: u32,
    target: &Target,
) -> Result<(), String> {
    if !applies(r, target, origin)? {
        return Ok(());
    }
    let action = parse_action(&r.action, r.errno_ret, default_errno)
        .map_err(|e| format!("{origin}: {e}"))?;
    let args = arg_conds(r, origin)?;
    let mut names: Vec<&str> = r.names.iter().map(String::as_str).collect();
    if let Some(n) = &r.name {
        names.push(n);
    }
    if names.is_empty() {
        return Err(format!("{origin}: a rule needs \"names\""));
    }
    for name in names {
        let Some(nr) = table::number(target.arch, name) else {
            // A call of another architecture (`open` on aarch64) is left out, as libseccomp
            // does; a name no architecture has is a mistake.
            let other = Arch::ALL
                .iter()
                .find_map(|&a| table::syscalls(a).iter().find(|(n, _)| *n == name));
            match other {
                Some(&(known, _)) => {
                    if !skipped.contains(&known) {
                        skipped.push(known);
                    }
                    continue;
                }
                None => {
                    return Err(format!(
                        "{origin}: unknown system call {name:?} (in no table of Linux 6.1: {})",
                        Arch::ALL
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        };
        let rule = Rule {
            action,
            args: args.clone(),
            origin: origin.to_owned(),
        };
        push_rule(rules.entry(nr).or_default(), name, rule)?;
    }
    Ok(())
}

/// Whether a conditional rule (Docker's default profile) is in force for this runtime: no
/// `excludes` condition holds and every `includes` condition does.
fn applies(r: &RawRule, target: &Target, origin: &str) -> Result<bool, String> {
    if let Some(exc) = &r.excludes {
        if conditions(exc, target, &format!("{origin}.excludes"))?.any {
            return Ok(false);
        }
    }
    if let Some(inc) = &r.includes {
        if !conditions(inc, target, &format!("{origin}.includes"))?.all {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A rule's argument conditions.
fn arg_conds(r: &RawRule, origin: &str) -> Result<Vec<ArgCond>, String> {
    let mut args = Vec::new();
    for (j, a) in r.args.iter().enumerate() {
        if a.index > 5 {
            return Err(format!(
                "{origin}.args[{j}]: index {} is out of range (0-5)",
                a.index
            ));
        }
        let op = match a.op.as_str() {
            "SCMP_CMP_EQ" => Op::Eq,
            "SCMP_CMP_NE" => Op::Ne,
            "SCMP_CMP_LT" => Op::Lt,
            "SCMP_CMP_LE" => Op::Le,
            "SCMP_CMP_GT" => Op::Gt,
            "SCMP_CMP_GE" => Op::Ge,
            "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
            other => {
                return Err(format!(
                    "{origin}.args[{j}]: unsupported argument operator {other:?} (use SCMP_CMP_EQ, NE, LT, LE, GT, GE or MASKED_EQ)"
                ))
            }
        };
        args.push(ArgCond {
            index: a.index,
            op,
            value: a.value,
            value_two: a.value_two,
        });
    }
    Ok(args)
}

/// Appends a rule to a system call's list, refusing one with the same arguments as an earlier
/// rule, and one that could never apply.
fn push_rule(list: &mut Vec<Rule>, name: &str, rule: Rule) -> Result<(), String> {
    let origin = &rule.origin;
    if let Some(prev) = list.iter().find(|p| p.args == rule.args) {
        return Err(format!(
            "{origin}: duplicate rule for {name} (same arguments as {}); merge or remove one",
            prev.origin
        ));
    }
    // Rules for one call are tried in file order and the first that matches wins: after a
    // rule without conditions, no later rule for the call is ever reached (an unconditional
    // allow followed by a conditional kill kills nothing).
    if let Some(prev) = list.iter().find(|p| p.args.is_empty()) {
        return Err(format!(
            "{origin}: its rule for {name} ({}{}) can never apply: {} already decides {name} ({}) with no conditions, and the first rule that matches wins; remove one, or put the conditional rule first",
            rule.action.describe(),
            if rule.args.is_empty() {
                String::new()
            } else {
                format!(
                    " if {}",
                    rule.args
                        .iter()
                        .map(ArgCond::describe)
                        .collect::<Vec<_>>()
                        .join(" && ")
                )
            },
            prev.origin,
            prev.action.describe()
        ));
    }
    list.push(rule);
    Ok(())
}

impl Policy {
    /// Parses OCI/Docker seccomp JSON for a root runtime on Linux 6.1 on `arch` (what
    /// `stratos seccomp check` assumes). `path` is used in messages.
    pub fn parse(text: &str, path: &str, arch: Arch) -> Result<Policy, SeccompError> {
        Self::parse_for(
            text,
            path,
            &Target {
                arch,
                all_caps: true,
                kernel: Some((6, 1)),
            },
        )
    }

    /// Parses OCI/Docker seccomp JSON for the runtime described by `target`. Unknown keys,
    /// architecture names, capability names and flags are errors; conditional rules are
    /// evaluated the way Docker does (a rule is skipped when an `excludes` condition holds or
    /// an `includes` condition does not). A call another architecture has but `target`'s does
    /// not is left out and listed in [`Policy::skipped`]; a call no architecture has is an
    /// error.
    pub fn parse_for(text: &str, path: &str, target: &Target) -> Result<Policy, SeccompError> {
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| SeccompError::Json {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            why: e.to_string(),
        })?;
        let bad = |what: String| SeccompError::Policy {
            path: path.to_owned(),
            what,
        };
        check_header(&raw, target.arch).map_err(bad)?;
        let default_errno = raw.default_errno_ret.unwrap_or(1);
        if default_errno > MAX_ERRNO {
            return Err(bad(format!(
                "defaultErrnoRet {default_errno} is out of range (0-{MAX_ERRNO})"
            )));
        }
        let default = parse_action(&raw.default_action, raw.default_errno_ret, 1)
            .map_err(|e| bad(format!("defaultAction: {e}")))?;
        let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (i, r) in raw.syscalls.iter().enumerate() {
            add_rule(
                &mut rules,
                &mut skipped,
                r,
                &format!("syscalls[{i}]"),
                default_errno,
                target,
            )
            .map_err(bad)?;
        }
        Ok(Policy {
            arch: target.arch,
            default,
            rules,
            skipped,
        })
    }
}
