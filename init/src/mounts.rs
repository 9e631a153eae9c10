//! The mounts the init makes: the kernel filesystems, the config's tmpfs, cgroup2.

use stratos_wire::InitConfig;

use crate::error::MountError;
use crate::sys::{Mount, MountFlags, Sys};

fn m(source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> Mount {
    Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

const HARD: MountFlags = MountFlags {
    nosuid: true,
    nodev: true,
    noexec: true,
};
const DEV: MountFlags = MountFlags {
    nosuid: true,
    nodev: false,
    noexec: true,
};
const DATA: MountFlags = MountFlags {
    nosuid: true,
    nodev: true,
    noexec: false,
};

/// The kernel filesystems, mounted before the config is read, in this order.
pub fn early_mounts() -> Vec<Mount> {
    vec![
        m("proc", "/proc", "proc", HARD, ""),
        m("sysfs", "/sys", "sysfs", HARD, ""),
        m("devtmpfs", "/dev", "devtmpfs", DEV, "mode=0755"),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            DEV,
            "mode=0620,ptmxmode=0666",
        ),
        m("tmpfs", "/dev/shm", "tmpfs", DATA, "mode=1777"),
    ]
}

/// The tmpfs mounts the config asks for.
pub fn config_mounts(cfg: &InitConfig) -> Vec<Mount> {
    cfg.tmpfs
        .iter()
        .map(|t| {
            let mut data = format!("mode={:o}", t.mode);
            if t.size > 0 {
                data.push_str(&format!(",size={}", t.size));
            }
            m("tmpfs", &t.path, "tmpfs", DATA, &data)
        })
        .collect()
}

pub fn cgroup_mount() -> Mount {
    m("cgroup2", "/sys/fs/cgroup", "cgroup2", HARD, "")
}

pub fn mount_all<S: Sys>(sys: &mut S, mounts: &[Mount]) -> Result<(), MountError> {
    for mt in mounts {
        sys.mkdir_p(&mt.target, 0o755)
            .map_err(|source| MountError::MountPoint {
                target: mt.target.clone(),
                source,
            })?;
        sys.mount(mt).map_err(|source| MountError::Mount {
            mount: mt.clone(),
            source,
        })?;
    }
    Ok(())
}
