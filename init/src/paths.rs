//! Where the init puts what it makes in the guest (its messages name these too).

/// The runtime's cgroup.
pub const CGROUP: &str = "/sys/fs/cgroup/runtime";
/// The compressed swap device.
pub const ZRAM_DEV: &str = "/dev/zram0";
