//! `stratos-init`: the PID 1 of a StratOS image.
//!
//! It mounts the kernel filesystems, reads the config the builder generated
//! (`/etc/stratos/init.json`), loads kernel modules, configures the network, starts the
//! function runtime, reaps every process, and powers off when the runtime ends, printing how
//! it ended. It never panics and never returns (PID 1 exiting panics the kernel).
//!
//! The logic ([`boot`], and [`supervise`] once the runtime runs) is written against the
//! [`sys::Sys`] seam and tested on the host; the real system calls live in [`linux`].
//!
//! Dependencies point one way: [`boot`] (the order of things) uses the steps ([`mounts`],
//! [`cgroup`], [`zram`], [`runtime`]) and [`supervise`]; they use [`observe`], [`console`],
//! [`error`] and [`paths`]; everything ends at the seam, [`sys`]. [`linux`] implements the
//! seam and uses only it and [`channel`], its threads for the console and the control port
//! (what those threads run of the logic, the boot hands them through the seam).
//!
//! [`lambda`] (`[init] interface = "lambda"`) is a small HTTP server of its own, in threads the
//! seam starts: it serves AWS Lambda's Runtime API to the runtime and takes invocations from
//! the host; what the supervisor must act on reaches it as [`lambda::LambdaEvent`]s.

pub mod boot;
pub mod bpf;
pub mod cgroup;
pub mod channel;
pub mod console;
pub mod error;
pub mod lambda;
pub mod linux;
pub mod meminfo;
pub mod mounts;
pub mod observe;
pub mod paths;
pub mod relay;
pub mod restore;
pub mod runtime;
pub mod supervise;
pub mod sys;
pub mod zram;

#[cfg(test)]
mod tests;
