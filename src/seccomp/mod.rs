//! Seccomp baselines: OCI runtime-spec / Docker seccomp JSON, compiled into a classic BPF
//! program for x86-64 that the init installs on the runtime.
//!
//! Program layout: check the architecture (anything but x86-64 is killed), refuse x32 system
//! call numbers, then one `jeq nr` + `ja` pair per system call leading to its rules; each rule
//! checks its argument conditions and returns its action; falling through returns the default
//! action. Rules for one system call are tried in file order; the first that matches wins.

pub use stratos_wire::syscalls as table;

pub mod suggest;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// System call numbers at or above this are the x32 ABI.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The largest errno a seccomp filter can return (`SECCOMP_RET_DATA` is 16 bits, and the kernel
/// treats values above 4095 as not an error).
pub const MAX_ERRNO: u32 = 4095;
/// The kernel's limit on a filter's length.
pub const BPF_MAXINSNS: usize = 4096;

// seccomp return values (include/uapi/linux/seccomp.h).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

/// One BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

/// Serialises a program as the init reads it: 8-byte little-endian records.
pub fn to_bytes(prog: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

pub fn from_bytes(b: &[u8]) -> Vec<Insn> {
    b.chunks_exact(8)
        .map(|c| {
            Insn::new(
                u16::from_le_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect()
}

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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<RawArchMap>,
    #[serde(default)]
    syscalls: Vec<RawRule>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default, rename = "listenerPath")]
    listener_path: Option<String>,
    #[serde(default, rename = "listenerMetadata")]
    listener_metadata: Option<String>,
    /// A free-form note: accepted, not used.
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

/// libseccomp's architecture names (`SCMP_ARCH_*`).
const SCMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

/// Go's architecture names, as Docker's `includes`/`excludes` use them.
const GO_ARCHES: &[&str] = &[
    "386",
    "amd64",
    "x86_64",
    "x32",
    "arm",
    "arm64",
    "aarch64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64n32",
    "mipsel",
    "mipsel64",
    "mipsel64n32",
    "ppc",
    "ppc64",
    "ppc64le",
    "s390",
    "s390x",
    "riscv64",
    "loong64",
    "loongarch64",
    "parisc",
    "parisc64",
];

/// What the runtime that will run under a policy has: conditional rules (Docker's
/// `includes`/`excludes` on capabilities and kernel versions) are evaluated against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the runtime holds every capability (it runs as uid 0; StratOS does not drop the
    /// bounding set) or none (any other uid).
    pub all_caps: bool,
    /// The image kernel's version (major, minor), when known.
    pub kernel: Option<(u32, u32)>,
}

impl Target {
    /// From the profile's runtime uid and the kernel's release string (`6.1.0-28-cloud-amd64`).
    pub fn new(uid: u32, kernel_release: Option<&str>) -> Target {
        Target {
            all_caps: uid == 0,
            kernel: kernel_release.and_then(parse_kernel_version),
        }
    }
}

/// `6.1`, `6.1.119`, `6.1.0-28-cloud-amd64` → (6, 1).
pub fn parse_kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<RawArg>,
    /// A free-form note: accepted, not used.
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    includes: Option<Conditions>,
    #[serde(default)]
    excludes: Option<Conditions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Conditions {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// Linux capability names (`capability.h`, Linux 6.1).
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

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
        results.push(c.arches.iter().any(|a| a == "amd64" || a == "x86_64"));
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
    fn parse(s: &str, errno: Option<u32>, default_errno: u32) -> Result<Action, String> {
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
    pub default: Action,
    /// System call number → its rules, in file order.
    pub rules: BTreeMap<u32, Vec<Rule>>,
}

fn line_col(text: &str, e: &serde_json::Error) -> (usize, usize) {
    let _ = text;
    (e.line(), e.column())
}

/// The policy as a whole: no notification listener, no flags, known architectures, x86-64
/// among them.
fn check_header(raw: &RawPolicy) -> Result<(), String> {
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
                "unknown architecture {a:?}; names are libseccomp's, like \"SCMP_ARCH_X86_64\""
            ));
        }
    }
    if !raw.arch_map.is_empty()
        && !raw
            .arch_map
            .iter()
            .any(|m| m.architecture == "SCMP_ARCH_X86_64")
    {
        return Err(
            "archMap has no entry for SCMP_ARCH_X86_64, the only architecture StratOS images run on".into(),
        );
    }
    if !raw.architectures.is_empty() && !raw.architectures.iter().any(|a| a == "SCMP_ARCH_X86_64") {
        return Err(format!(
            "architectures {:?} do not include SCMP_ARCH_X86_64, the only architecture StratOS images run on",
            raw.architectures
        ));
    }
    Ok(())
}

/// One rule of `syscalls`, for each system call it names, unless its `includes`/`excludes`
/// conditions leave it out for this runtime.
fn add_rule(
    rules: &mut BTreeMap<u32, Vec<Rule>>,
    r: &RawRule,
    origin: &str,
    default_errno: u32,
    target: &Target,
) -> Result<(), String> {
    // Conditional rules (Docker's default profile), evaluated for this runtime.
    if let Some(exc) = &r.excludes {
        if conditions(exc, target, &format!("{origin}.excludes"))?.any {
            return Ok(());
        }
    }
    if let Some(inc) = &r.includes {
        if !conditions(inc, target, &format!("{origin}.includes"))?.all {
            return Ok(());
        }
    }
    let action = Action::parse(&r.action, r.errno_ret, default_errno)
        .map_err(|e| format!("{origin}: {e}"))?;
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
    let mut names: Vec<&str> = r.names.iter().map(String::as_str).collect();
    if let Some(n) = &r.name {
        names.push(n);
    }
    if names.is_empty() {
        return Err(format!("{origin}: a rule needs \"names\""));
    }
    for name in names {
        let nr = table::number(name)
            .ok_or_else(|| format!("{origin}: unknown system call {name:?} (x86-64, Linux 6.1)"))?;
        let list = rules.entry(nr).or_default();
        if let Some(prev) = list.iter().find(|p| p.args == args) {
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
                action.describe(),
                if args.is_empty() {
                    String::new()
                } else {
                    format!(
                        " if {}",
                        args.iter()
                            .map(ArgCond::describe)
                            .collect::<Vec<_>>()
                            .join(" && ")
                    )
                },
                prev.origin,
                prev.action.describe()
            ));
        }
        list.push(Rule {
            action,
            args: args.clone(),
            origin: origin.to_owned(),
        });
    }
    Ok(())
}

impl Policy {
    /// Parses OCI/Docker seccomp JSON for a root runtime on Linux 6.1 (what `stratos seccomp
    /// check` assumes). `path` is used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Policy, SeccompError> {
        Self::parse_for(
            text,
            path,
            &Target {
                all_caps: true,
                kernel: Some((6, 1)),
            },
        )
    }

    /// Parses OCI/Docker seccomp JSON for the runtime described by `target`. Unknown keys,
    /// architecture names, capability names and flags are errors; conditional rules are
    /// evaluated the way Docker does (a rule is skipped when an `excludes` condition holds or
    /// an `includes` condition does not).
    pub fn parse_for(text: &str, path: &str, target: &Target) -> Result<Policy, SeccompError> {
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| {
            let (line, column) = line_col(text, &e);
            SeccompError::Json {
                path: path.to_owned(),
                line,
                column,
                why: e.to_string(),
            }
        })?;
        let bad = |what: String| SeccompError::Policy {
            path: path.to_owned(),
            what,
        };
        check_header(&raw).map_err(bad)?;
        let default_errno = raw.default_errno_ret.unwrap_or(1);
        if default_errno > MAX_ERRNO {
            return Err(bad(format!(
                "defaultErrnoRet {default_errno} is out of range (0-{MAX_ERRNO})"
            )));
        }
        let default = Action::parse(&raw.default_action, raw.default_errno_ret, 1)
            .map_err(|e| bad(format!("defaultAction: {e}")))?;
        let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
        for (i, r) in raw.syscalls.iter().enumerate() {
            add_rule(
                &mut rules,
                r,
                &format!("syscalls[{i}]"),
                default_errno,
                target,
            )
            .map_err(bad)?;
        }
        Ok(Policy { default, rules })
    }

    /// The same policy in log mode: every action that is not "allow" becomes "log" (the call
    /// is allowed and reported), for building a baseline.
    pub fn log_mode(&self) -> Policy {
        let to_log = |a: Action| if a == Action::Allow { a } else { Action::Log };
        Policy {
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

    /// System calls allowed unconditionally, and those allowed only under conditions.
    pub fn allowed(&self) -> (BTreeSet<&'static str>, BTreeMap<&'static str, Vec<String>>) {
        let mut always = BTreeSet::new();
        let mut conditional: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        let default_allows = self.default == Action::Allow;
        for (nr, name) in table::SYSCALLS.iter().map(|(n, nr)| (*nr, *n)) {
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

struct Asm {
    prog: Vec<Insn>,
}

/// Jump offsets are relative to the next instruction and must fit in a byte.
fn rel(from: usize, to: usize) -> Result<u8, String> {
    let d = to.checked_sub(from + 1).ok_or("backward jump")?;
    u8::try_from(d)
        .map_err(|_| format!("a rule's argument checks are too long ({d} instructions to skip)"))
}

impl Asm {
    fn push(&mut self, i: Insn) -> usize {
        self.prog.push(i);
        self.prog.len() - 1
    }

    /// Emits the checks of one condition; each failing branch jumps to `fail` (patched later).
    fn cond(&mut self, c: &ArgCond, fails: &mut Vec<(usize, bool)>) {
        let lo_off = 16 + 8 * c.index;
        let hi_off = lo_off + 4;
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        match c.op {
            Op::Eq | Op::Ne | Op::MaskedEq => {
                let (mhi, mlo, thi, tlo) = if c.op == Op::MaskedEq {
                    (
                        (c.value >> 32) as u32,
                        c.value as u32,
                        (c.value_two >> 32) as u32,
                        c.value_two as u32,
                    )
                } else {
                    (u32::MAX, u32::MAX, vhi, vlo)
                };
                // hi word
                self.push(Insn::new(LD_W_ABS, 0, 0, hi_off));
                if mhi != u32::MAX {
                    self.push(Insn::new(ALU_AND_K, 0, 0, mhi));
                }
                if c.op == Op::Ne {
                    // hi != thi → match (skip the rest of this condition); else check lo.
                    // jeq thi ? next : skip-to-matched
                    let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, thi));
                    // lo word
                    self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                    let j2 = self.push(Insn::new(JMP_JEQ_K, 0, 0, tlo));
                    fails.push((j2, true)); // equal in both → condition fails
                    let end = self.prog.len();
                    self.prog[j].jf = rel(j, end).unwrap_or(0);
                    return;
                }
                let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, thi));
                fails.push((j, false));
                self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                if mlo != u32::MAX {
                    self.push(Insn::new(ALU_AND_K, 0, 0, mlo));
                }
                let j = self.push(Insn::new(JMP_JEQ_K, 0, 0, tlo));
                fails.push((j, false));
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                // Compare the high words first: decisive if different.
                // For > and >=: hi > vhi → ok; hi < vhi → fail (hi != vhi && !(hi > vhi)); equal → lo.
                // For < and <=: hi < vhi → ok; hi > vhi → fail.
                let greater = matches!(c.op, Op::Gt | Op::Ge);
                self.push(Insn::new(LD_W_ABS, 0, 0, hi_off));
                let j_gt = self.push(Insn::new(JMP_JGT_K, 0, 0, vhi)); // hi > vhi ?
                let j_eq = self.push(Insn::new(JMP_JEQ_K, 0, 0, vhi)); // hi == vhi ?
                                                                       // hi < vhi here.
                let j_lt_result = self.push(Insn::new(JMP_JA, 0, 0, 0));
                let lo_start = self.push(Insn::new(LD_W_ABS, 0, 0, lo_off));
                let lo_cmp = match c.op {
                    Op::Gt => self.push(Insn::new(JMP_JGT_K, 0, 0, vlo)), // jt ok
                    Op::Ge => self.push(Insn::new(JMP_JGE_K, 0, 0, vlo)),
                    Op::Lt => self.push(Insn::new(JMP_JGE_K, 0, 0, vlo)), // jt fail
                    _ => self.push(Insn::new(JMP_JGT_K, 0, 0, vlo)),      // Le: jt fail
                };
                let ok = self.prog.len();
                // Patch: jt of j_gt, jf of j_eq, the ja, and lo_cmp.
                self.prog[j_eq].jt = rel(j_eq, lo_start).unwrap_or(0);
                if greater {
                    self.prog[j_gt].jt = rel(j_gt, ok).unwrap_or(0);
                    fails.push((j_lt_result, false)); // hi < vhi → fail (ja patched to fail)
                    self.prog[lo_cmp].jt = rel(lo_cmp, ok).unwrap_or(0);
                    fails.push((lo_cmp, false));
                } else {
                    fails.push((j_gt, true)); // hi > vhi → fail
                    self.prog[j_lt_result].k = (ok - j_lt_result - 1) as u32; // hi < vhi → ok
                    fails.push((lo_cmp, true));
                    self.prog[lo_cmp].jf = rel(lo_cmp, ok).unwrap_or(0);
                }
            }
        }
    }
}

/// Compiles a policy into a BPF program. Errors name the rule that could not be compiled.
pub fn compile(p: &Policy) -> Result<Vec<Insn>, String> {
    let mut a = Asm { prog: Vec::new() };
    // Architecture check first: a filter for x86-64 means nothing to another ABI.
    a.push(Insn::new(LD_W_ABS, 0, 0, 4));
    a.push(Insn::new(JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64));
    a.push(Insn::new(RET_K, 0, 0, RET_KILL_PROCESS));
    a.push(Insn::new(LD_W_ABS, 0, 0, 0));
    // x32 system calls (nr | 0x40000000) would bypass per-number rules.
    a.push(Insn::new(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT));
    a.push(Insn::new(RET_K, 0, 0, RET_KILL_PROCESS));
    // Dispatch: jeq nr → ja body.
    let mut dispatch = Vec::new();
    for nr in p.rules.keys() {
        a.push(Insn::new(JMP_JEQ_K, 0, 1, *nr));
        let ja = a.push(Insn::new(JMP_JA, 0, 0, 0));
        dispatch.push((*nr, ja));
    }
    a.push(Insn::new(RET_K, 0, 0, p.default.ret()));
    for (nr, ja) in dispatch {
        let body = a.prog.len();
        a.prog[ja].k = (body - ja - 1) as u32;
        for r in &p.rules[&nr] {
            let mut fails = Vec::new();
            for c in &r.args {
                a.cond(c, &mut fails);
            }
            a.push(Insn::new(RET_K, 0, 0, r.action.ret()));
            let next = a.prog.len();
            for (at, on_true) in fails {
                let d = if a.prog[at].code == JMP_JA {
                    a.prog[at].k = (next - at - 1) as u32;
                    continue;
                } else {
                    rel(at, next).map_err(|e| format!("{}: {e}", r.origin))?
                };
                if on_true {
                    a.prog[at].jt = d;
                } else {
                    a.prog[at].jf = d;
                }
            }
        }
        // No rule matched: the default.
        a.push(Insn::new(RET_K, 0, 0, p.default.ret()));
    }
    if a.prog.len() > BPF_MAXINSNS {
        return Err(format!(
            "the filter has {} instructions, over the kernel's limit of {BPF_MAXINSNS}; remove rules or argument conditions",
            a.prog.len()
        ));
    }
    Ok(a.prog)
}

/// What a program decides for a call (a small classic-BPF interpreter, for tests and
/// `stratos seccomp check`).
pub fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while pc < prog.len() {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
            }
            ALU_AND_K => acc &= i.k,
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
            JMP_JGT_K => pc += if acc > i.k { i.jt } else { i.jf } as usize,
            JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
            RET_K => return i.k,
            other => panic!("unknown opcode {other:#x}"),
        }
    }
    panic!("program fell off its end")
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

#[cfg(test)]
mod tests;
