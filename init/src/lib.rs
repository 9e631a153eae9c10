//! `stratos-init`: the PID 1 of a StratOS image.
//!
//! It mounts the kernel filesystems, reads the config the builder generated
//! (`/etc/stratos/init.json`), loads kernel modules, configures the network, starts the
//! function runtime, reaps every process, and powers off when the runtime ends, printing how
//! it ended. It never panics and never returns (PID 1 exiting panics the kernel).
//!
//! The logic ([`boot`], and [`supervise`] once the runtime runs) is written against the
//! [`sys::Sys`] seam and tested on the host; the real system calls live in [`linux`].

pub mod boot;
pub mod bpf;
pub mod channel;
pub mod error;
pub mod linux;
pub mod observe;
pub mod relay;
pub mod restore;
pub mod supervise;
pub mod sys;

#[cfg(test)]
mod tests;
