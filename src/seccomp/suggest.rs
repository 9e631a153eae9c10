//! `stratos seccomp suggest`: the smallest baseline that allows what boot tests observed.
//!
//! An image with `[observe]` records, per boot-test run, the system calls its runtime made
//! (`runs_detail[].syscalls.total` in the result). The suggestion allows exactly those calls
//! made by every successful run of the image (their union), plus the few a process makes
//! only on its way out or back from a signal handler, which a run stopped after its last
//! answer never reaches. Everything else gets the default action. With a base policy, its
//! default action, architectures and every rule that is not a plain allow (kill lists,
//! errno answers, argument conditions) are kept as they are; only its plain allow list is
//! replaced.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::arch::Arch;
use crate::boot_result::BootTestResult;

/// Calls no run may show that a runtime still needs: ending (`exit`, `exit_group`) and
/// returning from a signal handler (`rt_sigreturn`, `restart_syscall`).
pub const LIFECYCLE: &[&str] = &["exit", "exit_group", "restart_syscall", "rt_sigreturn"];

/// What the runs of one boot-test result observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `name version` of the image.
    pub image: String,
    /// Runs that contributed.
    pub runs: usize,
    /// Call name → the most calls one run made.
    pub calls: BTreeMap<String, u64>,
}

/// A string from the boot-test result (which the image's name and the guest's readings come
/// from) for a message or a comment: control characters escaped, so printing it cannot drive
/// the terminal or forge a line.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::fsio::escape_controls(s, &mut out).expect("writing to a String");
    out
}

/// The calls of every successful run of the image in `r`. A result without system call
/// counts (an image without `[observe]`) is an error saying so.
pub fn observed(r: &BootTestResult, arch: Arch) -> Result<Observed, String> {
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut runs = 0;
    // The image's runs come after the baseline's (which may be an older build of the same
    // name): the last `runs` of the list.
    let own = &r.runs_detail[r.runs_detail.len().saturating_sub(r.runs)..];
    for run in own.iter().filter(|x| x.ok && x.image == r.image.name) {
        let Some(s) = &run.syscalls else { continue };
        runs += 1;
        for (name, &n) in &s.total {
            let e = calls.entry(name.clone()).or_default();
            *e = (*e).max(n);
        }
    }
    if runs == 0 {
        return Err(format!(
            "no successful run of {} has system call counts: boot-test an image built with [observe] syscalls = true",
            shown(&r.image.name)
        ));
    }
    if let Some(n) = calls
        .keys()
        .find(|n| super::table::number(arch, n).is_none())
    {
        return Err(format!(
            "the runs made system call {}, which has no name in the {arch} table: a policy cannot name it",
            shown(n)
        ));
    }
    Ok(Observed {
        image: shown(&format!("{} {}", r.image.name, r.image.version)),
        runs,
        calls,
    })
}

/// What the suggestion starts from: a header (every key but `syscalls` and `comment`), the
/// rules kept as they are, and the names those rules decide (no plain allow is added for them).
struct Start {
    header: serde_json::Map<String, Value>,
    rules: Vec<Value>,
    decided: BTreeSet<String>,
}

impl Start {
    /// No base: refuse with EPERM what was not seen, on `arch` only.
    fn fresh(arch: Arch) -> Start {
        let mut header = serde_json::Map::new();
        header.insert("defaultAction".into(), json!("SCMP_ACT_ERRNO"));
        header.insert("defaultErrnoRet".into(), json!(1));
        header.insert("architectures".into(), json!([arch.seccomp()]));
        Start {
            header,
            rules: Vec::new(),
            decided: BTreeSet::new(),
        }
    }

    /// A base policy: its default action and header, and every rule that is not a plain allow.
    /// A base whose default allows is refused (the suggestion would allow everything). A rule
    /// for other architectures only (`includes.arches` without `arch`, or `excludes.arches`
    /// with it) is kept but decides nothing on `arch`: what the runs made gets a plain allow.
    fn from_base(b: &Value, arch: Arch) -> Result<Start, String> {
        let b = b
            .as_object()
            .ok_or("the base policy is not a JSON object")?;
        let default = b.get("defaultAction").and_then(Value::as_str).unwrap_or("");
        if matches!(default, "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG") {
            return Err(format!(
                "the base's defaultAction is {default}: every call not listed would still be allowed; give a base whose default refuses (SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS), or no --base"
            ));
        }
        let header = b
            .iter()
            .filter(|(k, _)| *k != "syscalls" && *k != "comment")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut start = Start {
            header,
            rules: Vec::new(),
            decided: BTreeSet::new(),
        };
        let rules = b.get("syscalls").and_then(Value::as_array);
        for rule in rules.into_iter().flatten().filter(|r| !is_plain_allow(r)) {
            if !for_other_arches(rule, arch) {
                let names = rule.get("names").and_then(Value::as_array);
                for n in names.into_iter().flatten().filter_map(Value::as_str) {
                    start.decided.insert(n.to_owned());
                }
            }
            start.rules.push(rule.clone());
        }
        Ok(start)
    }
}

/// Whether a rule's architecture conditions leave it out on `arch` (Docker's
/// `includes.arches` / `excludes.arches`, in Go's names).
fn for_other_arches(rule: &Value, arch: Arch) -> bool {
    let names_arch = |key: &str| {
        rule.get(key)
            .and_then(|c| c.get("arches"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .any(|n| arch.policy_names().contains(&n))
            })
    };
    names_arch("includes") == Some(false) || names_arch("excludes") == Some(true)
}

/// An allow without argument conditions or `includes`/`excludes`: what the suggestion replaces.
fn is_plain_allow(rule: &Value) -> bool {
    rule.get("action").and_then(Value::as_str) == Some("SCMP_ACT_ALLOW")
        && rule
            .get("args")
            .and_then(Value::as_array)
            .map_or(true, Vec::is_empty)
        && rule.get("includes").is_none()
        && rule.get("excludes").is_none()
}

/// The policy's `comment`: where it comes from and what to check before enforcing it.
fn comment(obs: &Observed, seen: usize, base: Option<&str>) -> Vec<String> {
    let mut comment = vec![
        format!(
            "Suggested by `stratos seccomp suggest` from {} boot-test run(s) of {} with [observe]:",
            obs.runs, obs.image
        ),
        format!(
            "it allows the {seen} system calls the runtime made (from its execve through its last answer), plus"
        ),
        "the calls a process makes only when it ends or returns from a signal handler. Calls the runs never".into(),
        "reached (error paths, rare requests) get the default action: boot-test with the invocations your".into(),
        "function really serves, and review before enforcing.".into(),
    ];
    if let Some(name) = base {
        comment.push(format!(
            "Default action, architectures and every rule other than a plain allow are kept from {name}."
        ));
    }
    comment
}

/// The suggested policy, as the JSON text to write (sorted, two-space indent, newline).
/// `base`: a policy's JSON and the name to cite it by; without one, the policy is for `arch`.
pub fn suggest(obs: &Observed, base: Option<(&Value, &str)>, arch: Arch) -> Result<String, String> {
    let start = match base {
        Some((b, _)) => Start::from_base(b, arch)?,
        None => Start::fresh(arch),
    };
    // Names the base decides otherwise than by a plain allow keep their rule, unchanged.
    let undecided = |n: &&str| !start.decided.contains(*n);
    let seen: Vec<&str> = obs
        .calls
        .keys()
        .map(String::as_str)
        .filter(undecided)
        .collect();
    let lifecycle: Vec<&str> = LIFECYCLE
        .iter()
        .copied()
        .filter(|n| !obs.calls.contains_key(*n))
        .filter(undecided)
        .collect();
    let mut rules = vec![json!({
        "names": seen,
        "action": "SCMP_ACT_ALLOW",
        "comment": "observed in the runs",
    })];
    if !lifecycle.is_empty() {
        rules.push(json!({
            "names": lifecycle,
            "action": "SCMP_ACT_ALLOW",
            "comment": "ending, and returning from signal handlers: not reached by runs stopped after their last answer",
        }));
    }
    rules.extend(start.rules);
    let mut doc = start.header;
    let comment = comment(obs, seen.len(), base.map(|(_, name)| name));
    doc.insert("comment".into(), json!(comment));
    doc.insert("syscalls".into(), Value::Array(rules));
    let mut text = serde_json::to_string_pretty(&Value::Object(doc))
        .map_err(|e| format!("cannot write the policy: {e}"))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{compile, Policy};

    fn obs(names: &[(&str, u64)]) -> Observed {
        Observed {
            image: "python-fn 0.1.0".into(),
            runs: 2,
            calls: names.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
        }
    }

    #[test]
    fn allows_what_was_observed_and_the_lifecycle_calls_only() {
        let text = suggest(
            &obs(&[("read", 5), ("accept4", 2), ("exit_group", 1)]),
            None,
            Arch::X86_64,
        )
        .unwrap();
        let p = Policy::parse(&text, "suggested", Arch::X86_64).unwrap();
        compile(&p).unwrap();
        let (always, cond) = p.allowed();
        let mut want: Vec<&str> = vec![
            "accept4",
            "exit",
            "exit_group",
            "read",
            "restart_syscall",
            "rt_sigreturn",
        ];
        want.sort();
        assert_eq!(always.into_iter().collect::<Vec<_>>(), want);
        assert!(cond.is_empty());
        // Reproducible: same input, same bytes.
        assert_eq!(
            text,
            suggest(
                &obs(&[("accept4", 2), ("read", 5), ("exit_group", 1)]),
                None,
                Arch::X86_64,
            )
            .unwrap()
        );
    }

    #[test]
    fn a_base_keeps_its_default_and_its_other_rules() {
        let base: Value = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["read","write","mount"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                            {"names":["reboot"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        )
        .unwrap();
        let text = suggest(
            &obs(&[("read", 5), ("clone3", 1)]),
            Some((&base, "base.json")),
            Arch::X86_64,
        )
        .unwrap();
        let p = Policy::parse(&text, "suggested", Arch::X86_64).unwrap();
        let (always, _) = p.allowed();
        assert!(always.contains("read"));
        assert!(!always.contains("write"), "not observed");
        assert!(!always.contains("mount"));
        assert!(
            !always.contains("clone3"),
            "the base answers it with ENOSYS"
        );
        assert!(text.contains("\"errnoRet\": 38"));
        assert!(text.contains("SCMP_ACT_KILL_PROCESS"));
        assert!(text.contains("kept from base.json"));
    }

    #[test]
    fn a_base_rule_for_another_architecture_decides_nothing_on_this_one() {
        // python.json's shape: setitimer allowed on arm64 only (glibc's alarm there).
        let base: Value = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"],
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["setitimer"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
                            {"names":["openat"],"action":"SCMP_ACT_ERRNO","excludes":{"arches":["amd64"]}}]}"#,
        )
        .unwrap();
        let seen = obs(&[("read", 1), ("setitimer", 1), ("openat", 3)]);
        let text = suggest(&seen, Some((&base, "base.json")), Arch::X86_64).unwrap();
        let p = Policy::parse(&text, "suggested", Arch::X86_64).unwrap();
        let (always, _) = p.allowed();
        assert!(always.contains("setitimer"), "{text}");
        assert!(always.contains("openat"), "{text}");
        assert!(text.contains("\"arm64\""), "the rule is kept: {text}");
        // On arm64 the same rules decide: no plain allow is added for them.
        let text = suggest(&seen, Some((&base, "base.json")), Arch::Aarch64).unwrap();
        let p = Policy::parse(&text, "suggested", Arch::Aarch64).unwrap();
        let (always, _) = p.allowed();
        assert!(
            always.contains("setitimer") && !always.contains("openat"),
            "{text}"
        );
    }

    #[test]
    fn a_base_that_allows_by_default_is_refused() {
        let base: Value =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#).unwrap();
        let e = suggest(&obs(&[("read", 1)]), Some((&base, "b.json")), Arch::X86_64).unwrap_err();
        assert!(e.contains("SCMP_ACT_ALLOW"), "{e}");
    }
}
