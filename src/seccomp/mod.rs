//! Seccomp baselines: OCI runtime-spec / Docker seccomp JSON, compiled into a classic BPF
//! program for the image's architecture that the init installs on the runtime.
//!
//! Program layout: check the architecture (any other is killed), refuse the system call
//! numbers of a second ABI sharing it (x32), then one `jeq nr` + `ja` pair per system call leading to its rules; each rule
//! checks its argument conditions and returns its action; falling through returns the default
//! action. Rules for one system call are tried in file order; the first that matches wins.

pub mod suggest;
pub mod table;

mod bpf;
mod oci;
mod parse;
mod policy;

pub use bpf::{compile, from_bytes, run, to_bytes, Insn, BPF_MAXINSNS};
pub use parse::{SeccompError, MAX_ERRNO};
pub use policy::{
    decide, parse_kernel_version, Action, ArgCond, Op, Policy, Rule, Target, RET_ALLOW, RET_ERRNO,
    RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRAP,
};

#[cfg(test)]
mod tests;
