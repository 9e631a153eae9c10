//! The setup steps' plans and their failures: zram, sysctl, the cgroup's limits, the printk
//! limit in seccomp log mode.

use std::io;

use stratos_wire::{Limits, Zram, ZramSize};

use super::{config, Call, Fake};
use crate::boot::{boot, sysctl_path, Outcome};
use crate::cgroup::cgroup_plan;
use crate::meminfo::mem_total;
use crate::sys::{ExitKind, Waited};
use crate::zram::{swap_header, zram_plan};

#[test]
fn zram_plan_writes_sysfs_in_order_then_swaps_on() {
    let z = Zram {
        size: ZramSize::PercentOfRam(50),
        algorithm: "lz4".into(),
        priority: 100,
        required: false,
    };
    let total = mem_total("MemTotal:         512000 kB\n").unwrap();
    assert_eq!(total, 512_000 * 1024);
    assert_eq!(
        zram_plan(&z, total),
        [
            (
                "/sys/block/zram0/comp_algorithm".to_owned(),
                "lz4".to_owned()
            ),
            (
                "/sys/block/zram0/disksize".to_owned(),
                "262144000".to_owned()
            ),
        ]
    );
    let mut cfg = config();
    cfg.zram = Some(z);
    let mut f = Fake::new(&cfg);
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    let i = f
        .calls
        .iter()
        .position(|c| matches!(c, Call::Write(p, _) if p == "/sys/block/zram0/comp_algorithm"))
        .unwrap();
    assert_eq!(
        f.calls[i + 1],
        Call::Write("/sys/block/zram0/disksize".into(), "262144000".into())
    );
    assert_eq!(
        f.calls[i + 2],
        Call::Write("/dev/zram0".into(), "<4096 bytes>".into())
    );
    assert_eq!(f.calls[i + 3], Call::Swapon("/dev/zram0".into(), 100));
}

#[test]
fn swap_header_layout() {
    let h = swap_header(1 << 20);
    assert_eq!(&h[4086..], b"SWAPSPACE2");
    assert_eq!(u32::from_le_bytes(h[1024..1028].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(h[1028..1032].try_into().unwrap()), 255);
}

#[test]
fn zram_failure_continues_unless_required() {
    let mut cfg = config();
    cfg.zram = Some(Zram {
        size: ZramSize::Bytes(1 << 26),
        algorithm: "zstd".into(),
        priority: 5,
        required: false,
    });
    let mut f = Fake::new(&cfg);
    f.failing_writes = vec![("/sys/block/zram0".into(), io::ErrorKind::NotFound)];
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    assert_eq!(boot(&mut f), Outcome::Runtime(ExitKind::Exited(0)));
    assert!(f
        .console
        .iter()
        .any(|l| l.contains("warning: zram:") && l.contains("continuing without swap")));
    cfg.zram.as_mut().unwrap().required = true;
    let mut f = Fake::new(&cfg);
    f.failing_writes = vec![("/sys/block/zram0".into(), io::ErrorKind::NotFound)];
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("required = true")),
        "{o:?}"
    );
}

#[test]
fn sysctl_writes_and_unknown_keys() {
    assert_eq!(
        sysctl_path("net.core.somaxconn"),
        "/proc/sys/net/core/somaxconn"
    );
    let mut cfg = config();
    cfg.sysctl = vec![
        ("vm.swappiness".into(), "10".into()),
        ("vm.nope".into(), "1".into()),
    ];
    let mut f = Fake::new(&cfg);
    f.failing_writes = vec![("/proc/sys/vm/nope".into(), io::ErrorKind::NotFound)];
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    boot(&mut f);
    assert!(f
        .calls
        .contains(&Call::Write("/proc/sys/vm/swappiness".into(), "10".into())));
    assert!(f.console.contains(
        &"stratos-init: warning: sysctl vm.nope = 1: no such key in this kernel".to_owned()
    ));
}

#[test]
fn cgroup_files_for_limits() {
    let l = Limits {
        memory_max: Some(256 << 20),
        memory_high: Some(200 << 20),
        cpu_max: Some((50_000, 100_000)),
        pids_max: Some(64),
    };
    assert_eq!(
        cgroup_plan(&l),
        [
            (
                "/sys/fs/cgroup/cgroup.subtree_control".to_owned(),
                "+memory +pids +cpu".to_owned()
            ),
            (
                "/sys/fs/cgroup/runtime/memory.high".to_owned(),
                "209715200".to_owned()
            ),
            (
                "/sys/fs/cgroup/runtime/memory.max".to_owned(),
                "268435456".to_owned()
            ),
            (
                "/sys/fs/cgroup/runtime/cpu.max".to_owned(),
                "50000 100000".to_owned()
            ),
            (
                "/sys/fs/cgroup/runtime/pids.max".to_owned(),
                "64".to_owned()
            ),
        ]
    );
    assert!(cgroup_plan(&Limits::default()).is_empty());
    // A limit that cannot be applied stops the boot.
    let mut cfg = config();
    cfg.limits = l;
    let mut f = Fake::new(&cfg);
    f.failing_writes = vec![(
        "/sys/fs/cgroup/runtime/memory.max".into(),
        io::ErrorKind::PermissionDenied,
    )];
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("memory.max")),
        "{o:?}"
    );
}

#[test]
fn seccomp_log_mode_lifts_the_printk_limit_unless_the_profile_sets_it() {
    let bpf = "/etc/stratos/seccomp.bpf";
    let mut cfg = config();
    cfg.seccomp = Some(stratos_wire::Seccomp {
        filter: bpf.into(),
        mode: stratos_wire::SeccompMode::Log,
    });
    let lifted = Call::Write("/proc/sys/kernel/printk_ratelimit".into(), "0".into());
    let mut f = Fake::new(&cfg);
    f.files.insert(bpf.into(), vec![0u8; 8]);
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    assert!(f.calls.contains(&lifted), "{:?}", f.calls);
    // The profile's own value wins.
    cfg.sysctl = vec![("kernel.printk_ratelimit".into(), "5".into())];
    let mut g = Fake::new(&cfg);
    g.files.insert(bpf.into(), vec![0u8; 8]);
    g.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut g);
    assert!(!g.calls.contains(&lifted));
    // Enforce mode leaves it alone.
    cfg.sysctl.clear();
    cfg.seccomp.as_mut().unwrap().mode = stratos_wire::SeccompMode::Enforce;
    let mut h = Fake::new(&cfg);
    h.files.insert(bpf.into(), vec![0u8; 8]);
    h.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut h);
    assert!(!h.calls.contains(&lifted));
}
