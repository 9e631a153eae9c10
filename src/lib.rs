//! StratOS: reproducible, signed, SBOM-attached micro-OS images for serverless function nodes.
//!
//! The pipeline (see docs/architecture.md): [`profile`] → [`rootfs::Tree`] → [`archive`] writers →
//! [`sbom`] + [`sign::manifest`] → signature. The `stratos` binary is a thin shell over this
//! library (see [`cli`]).

pub mod arch;
pub mod archive;
pub mod boot;
pub mod boot_result;
pub mod build;
pub mod cache;
pub mod channel;
pub mod cli;
pub mod digest;
pub mod doctor;
pub mod fsio;
pub mod http;
pub mod image;
pub mod inspect;
pub mod kernel;
pub mod packages;
pub mod profile;
pub mod progress;
pub mod rootfs;
pub mod sandbox;
pub mod sbom;
pub mod seccomp;
pub mod sign;
