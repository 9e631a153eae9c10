//! The integration tests: one harness (as youki's `contest`), a module per topic, sharing one
//! fixture kit (`common`) and one store of built images.
//!
//! Tiers (docs/development.md; `./ci/test --fast | --vm | --slow`):
//! - **fast**: every module outside `vm` — no kernel build, no VM (a fake kernel, a fake QEMU);
//! - **VM**: `vm::*` — kernels built from source (cached), images booted under QEMU;
//! - **slow**: `#[ignore = "slow tier: …"]` tests anywhere — a second kernel build from scratch,
//!   double builds of the large images; run with `--include-ignored` (what `--slow` does).

mod common;

mod arm64_build;
mod arm64_packages;
mod boot_test;
mod build_sandbox;
mod cargo_fn;
mod channel;
mod cli_vocab;
mod deps;
mod erofs_verity;
mod fuzz;
mod getting_started;
mod go_fn;
mod golden;
mod hostile;
mod interrupted;
mod iterate;
mod lambda_python;
mod lock;
mod pipeline;
mod preflight;
mod seccomp_arch;
mod walkthrough;

/// Tests that build kernels from source and boot images under QEMU.
mod vm {
    mod arm64;
    mod boot_test;
    mod go_fn;
    mod hello_boot;
    mod hostile_guest;
    mod init_vm;
    mod kernel;
    mod lambda_clients;
    mod lambda_vm;
    mod new_fn;
    mod node_fn;
    mod node_lifecycle;
    mod observe;
    mod oci_export;
    mod python_api;
    mod python_fn;
    mod seccomp_vm;
    mod snapshot;
    mod update_targets;
}
