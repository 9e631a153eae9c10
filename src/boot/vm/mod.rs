//! One QEMU virtual machine: what it is asked to run ([`spec`]), the process and what it says
//! ([`qemu`]), the accelerator ([`kvm`]), its sockets and control channel ([`control`]), QMP
//! ([`qmp`]), reading its console ([`console`]), holding several up together ([`hold`]) and
//! stopping on a signal ([`stop`]). Nothing here knows images, snapshots or benchmarks.

pub mod console;
pub mod control;
pub mod hold;
pub mod kvm;
pub mod qemu;
pub mod qmp;
pub mod spec;
pub mod stop;

pub use kvm::{choose_accel, AccelChoice};
pub use qemu::{free_port, Echo, Feed, QemuError, Vm};
pub use spec::{Accel, Forward, Machine, Root, SnapshotVm, VmSpec};
pub use stop::{handle_stop_signals, stop_requested};
