//! The OCI runtime-spec / Docker seccomp JSON document as written (strict: unknown keys are
//! errors), and the vocabularies its names come from.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) default_action: String,
    #[serde(default)]
    pub(super) default_errno_ret: Option<u32>,
    #[serde(default)]
    pub(super) architectures: Vec<String>,
    #[serde(default)]
    pub(super) arch_map: Vec<RawArchMap>,
    #[serde(default)]
    pub(super) syscalls: Vec<RawRule>,
    #[serde(default)]
    pub(super) flags: Vec<String>,
    #[serde(default, rename = "listenerPath")]
    pub(super) listener_path: Option<String>,
    #[serde(default, rename = "listenerMetadata")]
    pub(super) listener_metadata: Option<String>,
    /// A free-form note: accepted, not used.
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawArchMap {
    pub(super) architecture: String,
    #[serde(default)]
    pub(super) sub_architectures: Vec<String>,
}

/// libseccomp's architecture names (`SCMP_ARCH_*`).
pub(super) const SCMP_ARCHES: &[&str] = &[
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
pub(super) const GO_ARCHES: &[&str] = &[
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) action: String,
    #[serde(default)]
    pub(super) errno_ret: Option<u32>,
    #[serde(default)]
    pub(super) args: Vec<RawArg>,
    /// A free-form note: accepted, not used.
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) includes: Option<Conditions>,
    #[serde(default)]
    pub(super) excludes: Option<Conditions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Conditions {
    #[serde(default)]
    pub(super) arches: Vec<String>,
    #[serde(default)]
    pub(super) caps: Vec<String>,
    #[serde(default)]
    pub(super) min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawArg {
    pub(super) index: u32,
    pub(super) value: u64,
    #[serde(default)]
    pub(super) value_two: u64,
    pub(super) op: String,
}

/// Linux capability names (`capability.h`, Linux 6.1).
pub(super) const CAPS: &[&str] = &[
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
