//! Seccomp baselines: OCI runtime-spec / Docker seccomp JSON, compiled into a classic BPF
//! program for x86-64 that the init installs on the runtime.
//!
//! Program layout: check the architecture (anything but x86-64 is killed), refuse x32 system
//! call numbers, then one `jeq nr` + `ja` pair per system call leading to its rules; each rule
//! checks its argument conditions and returns its action; falling through returns the default
//! action. Rules for one system call are tried in file order; the first that matches wins.

pub use stratos_wire::syscalls as table;

pub mod suggest;

mod bpf;
mod oci;
mod parse;
mod policy;

pub use bpf::{
    compile, from_bytes, run, to_bytes, Insn, AUDIT_ARCH_X86_64, BPF_MAXINSNS, X32_SYSCALL_BIT,
};
pub use parse::{SeccompError, MAX_ERRNO};
pub use policy::{
    decide, parse_kernel_version, Action, ArgCond, Op, Policy, Rule, Target, RET_ALLOW, RET_ERRNO,
    RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRAP,
};

#[cfg(test)]
mod tests;
