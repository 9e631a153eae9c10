//! Every error of the init, word for word as the console prints it: a changed message is a
//! visible diff here.

use std::io;
use std::net::Ipv4Addr;

use crate::error::{CgroupError, InitError, MountError, NetworkError, ZramError};
use crate::mounts::cgroup_mount;
use crate::sys::{Mount, MountFlags};

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(2)
}

/// `e` prints `text`, word for word.
#[track_caller]
fn says(e: InitError, text: &str) {
    assert_eq!(e.to_string(), text);
}

#[test]
fn fatal_mount_config_and_cgroup_messages_word_for_word() {
    let tmpfs = Mount {
        source: "tmpfs".into(),
        target: "/run".into(),
        fstype: "tmpfs".into(),
        flags: MountFlags::default(),
        data: "mode=755".into(),
    };
    says(
        InitError::from(MountError::MountPoint {
            target: "/run".into(),
            source: enoent(),
        }),
        "cannot create mount point /run: No such file or directory (os error 2)",
    );
    says(
        InitError::from(MountError::Mount {
            mount: tmpfs,
            source: enoent(),
        }),
        "cannot mount tmpfs (tmpfs) on /run: No such file or directory (os error 2)",
    );
    says(
        InitError::ReadConfig(enoent()),
        "cannot read /etc/stratos/init.json: No such file or directory (os error 2)",
    );
    says(
        InitError::BadConfig("malformed init config: EOF".into()),
        "/etc/stratos/init.json: malformed init config: EOF",
    );
    says(
        InitError::CgroupForLimits(CgroupError::Mount(MountError::Mount {
            mount: cgroup_mount(),
            source: enoent(),
        })),
        "cannot mount cgroup2 (cgroup2) on /sys/fs/cgroup: No such file or directory (os error 2) (needed for the runtime's limits)",
    );
    says(
        InitError::CgroupForLimits(CgroupError::Create(enoent())),
        "cannot create /sys/fs/cgroup/runtime: No such file or directory (os error 2) (needed for the runtime's limits)",
    );
    says(
        InitError::CgroupLimit {
            path: "/sys/fs/cgroup/runtime/pids.max".into(),
            value: "64".into(),
            source: enoent(),
        },
        "cannot write 64 to /sys/fs/cgroup/runtime/pids.max: No such file or directory (os error 2)",
    );
}

#[test]
fn fatal_setup_messages_word_for_word() {
    says(
        InitError::Module {
            name: "virtio_net".into(),
            path: "/lib/modules/x/virtio_net.ko".into(),
            source: enoent(),
        },
        "cannot load kernel module virtio_net (/lib/modules/x/virtio_net.ko): No such file or directory (os error 2)",
    );
    says(
        InitError::ZramRequired(ZramError::NoMemTotal),
        "zram: no MemTotal in /proc/meminfo (the profile says required = true)",
    );
    says(
        InitError::ZramRequired(ZramError::Write {
            path: "/sys/block/zram0/comp_algorithm".into(),
            value: "lz4".into(),
            source: enoent(),
        }),
        "zram: cannot write lz4 to /sys/block/zram0/comp_algorithm: No such file or directory (os error 2) (is zram built in or its module loaded?) (the profile says required = true)",
    );
    says(
        InitError::SeccompFilter {
            path: "/etc/stratos/seccomp.bpf".into(),
            source: enoent(),
        },
        "cannot read the seccomp filter /etc/stratos/seccomp.bpf: No such file or directory (os error 2); refusing to start the runtime unfiltered",
    );
    says(
        InitError::RemountRo(enoent()),
        "cannot remount / read-only: No such file or directory (os error 2)",
    );
}

#[test]
fn fatal_runtime_messages_word_for_word() {
    says(
        InitError::Spawn {
            program: "/bin/busybox".into(),
            source: io::Error::from_raw_os_error(13),
        },
        "cannot execute the runtime /bin/busybox: Permission denied (os error 13)",
    );
    says(
        InitError::StoppedWhileRestarting(15),
        "stopped by SIGTERM before the runtime could restart",
    );
    says(
        InitError::StoppedWhileRestarting(2),
        "stopped by SIGINT before the runtime could restart",
    );
    says(
        InitError::RuntimeVanished,
        "the runtime disappeared without being reaped",
    );
    says(
        InitError::Wait(io::Error::from_raw_os_error(22)),
        "wait failed: Invalid argument (os error 22)",
    );
}

#[test]
fn warning_and_step_messages_word_for_word() {
    let cases: Vec<(String, &str)> = vec![
        (
            ZramError::ReadMeminfo(enoent()).to_string(),
            "cannot read /proc/meminfo: No such file or directory (os error 2)",
        ),
        (
            ZramError::SwapSignature(enoent()).to_string(),
            "cannot write the swap signature to /dev/zram0: No such file or directory (os error 2)",
        ),
        (
            ZramError::Swapon(io::Error::from_raw_os_error(16)).to_string(),
            "swapon /dev/zram0: Device or resource busy (os error 16)",
        ),
        (
            CgroupError::Create(enoent()).to_string(),
            "cannot create /sys/fs/cgroup/runtime: No such file or directory (os error 2)",
        ),
        (
            NetworkError::LinkUp {
                interface: "lo".into(),
                source: enoent(),
            }
            .to_string(),
            "cannot bring up lo: No such file or directory (os error 2)",
        ),
        (
            NetworkError::SetAddress {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                interface: "eth0".into(),
                source: enoent(),
            }
            .to_string(),
            "cannot set 10.0.2.15/24 on eth0: No such file or directory (os error 2)",
        ),
        (
            NetworkError::Route {
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                source: io::Error::from_raw_os_error(101),
            }
            .to_string(),
            "cannot add a default route via 10.0.2.2: Network is unreachable (os error 101)",
        ),
    ];
    for (got, text) in cases {
        assert_eq!(got, text);
    }
}
