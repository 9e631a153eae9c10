//! A validated seccomp policy: per system call number, its rules in file order (argument
//! conditions and an action), and the default action; what it decides for a call.

use std::collections::{BTreeMap, BTreeSet};

use super::table;
use crate::arch::Arch;

// seccomp return values (include/uapi/linux/seccomp.h).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// What the runtime that will run under a policy has: conditional rules (Docker's
/// `includes`/`excludes` on architectures, capabilities and kernel versions) are evaluated
/// against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The architecture the filter is compiled for: its system call numbers, its audit value.
    pub arch: Arch,
    /// Whether the runtime holds every capability (it runs as uid 0; StratOS does not drop the
    /// bounding set) or none (any other uid).
    pub all_caps: bool,
    /// The image kernel's version (major, minor), when known.
    pub kernel: Option<(u32, u32)>,
}

impl Target {
    /// From the image's architecture, the profile's runtime uid and the kernel's release
    /// string (`6.1.0-28-cloud`).
    pub fn new(arch: Arch, uid: u32, kernel_release: Option<&str>) -> Target {
        Target {
            arch,
            all_caps: uid == 0,
            kernel: kernel_release.and_then(parse_kernel_version),
        }
    }
}

/// `6.1`, `6.1.119`, `6.1.0-28-cloud` → (6, 1).
pub fn parse_kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// What a rule or the default does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Errno(u16),
    KillProcess,
    KillThread,
    Trap,
    Log,
}

impl Action {
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => RET_ALLOW,
            Action::Errno(e) => RET_ERRNO | u32::from(e),
            Action::KillProcess => RET_KILL_PROCESS,
            Action::KillThread => RET_KILL_THREAD,
            Action::Trap => RET_TRAP,
            Action::Log => RET_LOG,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Action::Allow => "allow".into(),
            Action::Errno(e) => format!("errno {e}"),
            Action::KillProcess => "kill-process".into(),
            Action::KillThread => "kill-thread".into(),
            Action::Trap => "trap".into(),
            Action::Log => "log".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArgCond {
    pub index: u32,
    pub op: Op,
    pub value: u64,
    /// The mask of `MaskedEq` (OCI's `value`), compared against `value_two`.
    pub value_two: u64,
}

impl ArgCond {
    pub fn describe(&self) -> String {
        let op = match self.op {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::MaskedEq => {
                return format!(
                    "arg{} & {:#x} == {:#x}",
                    self.index, self.value, self.value_two
                )
            }
        };
        format!("arg{} {op} {:#x}", self.index, self.value)
    }

    /// Whether the condition holds for an argument value (reference semantics for tests).
    pub fn holds(&self, arg: u64) -> bool {
        match self.op {
            Op::Eq => arg == self.value,
            Op::Ne => arg != self.value,
            Op::Lt => arg < self.value,
            Op::Le => arg <= self.value,
            Op::Gt => arg > self.value,
            Op::Ge => arg >= self.value,
            Op::MaskedEq => arg & self.value == self.value_two,
        }
    }
}

/// One rule for one system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub args: Vec<ArgCond>,
    /// Where it came from: `syscalls[3]`.
    pub origin: String,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The architecture whose system call numbers `rules` is keyed by.
    pub arch: Arch,
    pub default: Action,
    /// System call number → its rules, in file order.
    pub rules: BTreeMap<u32, Vec<Rule>>,
    /// Calls the policy names that another architecture has but this one does not (`open`,
    /// `stat`, `fork` on aarch64), in file order: left out of the filter, as libseccomp does.
    /// [`Policy::skipped_note`] says so.
    pub skipped: Vec<&'static str>,
}

impl Policy {
    /// The same policy in log mode: every action that is not "allow" becomes "log" (the call
    /// is allowed and reported), for building a baseline.
    pub fn log_mode(&self) -> Policy {
        let to_log = |a: Action| if a == Action::Allow { a } else { Action::Log };
        Policy {
            arch: self.arch,
            skipped: self.skipped.clone(),
            default: to_log(self.default),
            rules: self
                .rules
                .iter()
                .map(|(nr, rs)| {
                    (
                        *nr,
                        rs.iter()
                            .map(|r| Rule {
                                action: to_log(r.action),
                                ..r.clone()
                            })
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// The note a build prints when the policy at `path` names calls its architecture does not
    /// have (none when it names none): they are left out, which is only right when the runtime
    /// makes their equivalents (`openat`, `newfstatat`, `clone`), which the policy must allow.
    pub fn skipped_note(&self, path: &str) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        Some(format!(
            "{path}: {} system call(s) it names do not exist on {} and are left out of its filter: {}; the runtime makes their {} forms instead (openat, newfstatat, ppoll, clone, ...), which the policy must allow",
            self.skipped.len(),
            self.arch,
            self.skipped.join(", "),
            self.arch,
        ))
    }

    /// System calls allowed unconditionally, and those allowed only under conditions.
    pub fn allowed(&self) -> (BTreeSet<&'static str>, BTreeMap<&'static str, Vec<String>>) {
        let mut always = BTreeSet::new();
        let mut conditional: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let default_allows = self.default == Action::Allow;
        for &(name, nr) in table::syscalls(self.arch) {
            match self.rules.get(&nr) {
                None if default_allows => {
                    always.insert(name);
                }
                None => {}
                Some(rs) => {
                    if rs
                        .iter()
                        .any(|r| r.args.is_empty() && r.action == Action::Allow)
                    {
                        always.insert(name);
                    } else {
                        let conds: Vec<String> = rs
                            .iter()
                            .filter(|r| r.action == Action::Allow)
                            .map(|r| {
                                r.args
                                    .iter()
                                    .map(ArgCond::describe)
                                    .collect::<Vec<_>>()
                                    .join(" && ")
                            })
                            .collect();
                        if !conds.is_empty() {
                            conditional.insert(name, conds);
                        }
                    }
                }
            }
        }
        (always, conditional)
    }
}

/// What the policy itself says for a call (the reference the compiled program must match).
pub fn decide(p: &Policy, nr: u32, args: [u64; 6]) -> u32 {
    if let Some(rs) = p.rules.get(&nr) {
        for r in rs {
            if r.args.iter().all(|c| c.holds(args[c.index as usize])) {
                return r.action.ret();
            }
        }
    }
    p.default.ret()
}
