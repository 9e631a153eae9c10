//! Host tests of the boot logic through a recording fake `Sys`.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;

use stratos_wire::{
    InitConfig, Limits, Network, Readiness, Restart, RestartPolicy, Runtime, Tmpfs, Zram, ZramSize,
    CONFIG_FORMAT,
};

use crate::boot::{boot, sysctl_path, Outcome};
use crate::cgroup::cgroup_plan;
use crate::meminfo::mem_total;
use crate::supervise::restart_delay;
use crate::sys::{ExitKind, Mount, Spawn, Sys, Waited};
use crate::zram::{swap_header, zram_plan};

mod errors;
mod memory_peak;
mod observe;
mod supervise;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Mount(String),
    Umount(String),
    RemountRo,
    Write(String, String),
    Swapon(String, i32),
    Preload(usize),
    Signal(u32, i32),
    Module(String),
    Up(String),
    Addr(String, Ipv4Addr, u8),
    Route(Ipv4Addr),
    Spawn(Vec<String>, u32, u32),
    Kill(i32),
    Sync,
    WatchEntropy,
    AddEntropy(Vec<u8>),
    Reseed,
    SetTime(u128),
    OpenControl,
    FlushControl,
    BpfMap(String),
    BpfLoad(String, usize),
    BpfAttach(String, i32),
}

struct Fake {
    config: Option<Vec<u8>>,
    spawn_result: Option<io::ErrorKind>,
    waits: VecDeque<Waited>,
    /// What `wait` fails with once `waits` is used up (else: no children).
    wait_error: Option<io::ErrorKind>,
    /// Signals to deliver, one per wait_signal call (None = timeout).
    signals: VecDeque<Option<i32>>,
    /// Paths whose writes fail with this error.
    failing_writes: Vec<(String, io::ErrorKind)>,
    /// Seccomp audit records, one batch per call.
    audit: VecDeque<Vec<String>>,
    /// What reading audit records fails with once `audit` is used up.
    audit_error: Option<io::ErrorKind>,
    audit_calls: u32,
    tcp_ready_after: u32,
    probes: u32,
    unreadable: Vec<String>,
    /// What the runtime cgroup's `memory.peak` holds.
    memory_peak: Vec<u8>,
    next_pid: u32,
    calls: Vec<Call>,
    console: Vec<String>,
    /// What was sent on the control channel.
    control: Vec<stratos_wire::Control>,
    clock: u64,
    /// Whether the kernel's random pool is ready.
    entropy: bool,
    /// `kill` fails (after recording the call).
    kill_fails: bool,
    /// How many console lines there were when each `kill` was made.
    console_at_kill: Vec<usize>,
    /// Other files `read_file` returns.
    files: std::collections::BTreeMap<String, Vec<u8>>,
    /// The verifier refuses programs with this log.
    bpf_refuse: Option<String>,
    /// What the counter maps hold, by descriptor (from 100 on, in creation order).
    bpf_values: std::collections::BTreeMap<i32, Vec<u64>>,
    next_fd: i32,
    /// What the boot handed `watch_entropy` and `open_control` to run in the background.
    entropy_waiter: Option<fn(&mut Fake)>,
    host_handler: Option<fn(&mut Fake, &str)>,
}

impl Fake {
    fn new(cfg: &InitConfig) -> Self {
        Fake {
            config: Some(cfg.to_json()),
            spawn_result: None,
            waits: VecDeque::new(),
            wait_error: None,
            signals: VecDeque::new(),
            failing_writes: Vec::new(),
            audit: VecDeque::new(),
            audit_error: None,
            audit_calls: 0,
            tcp_ready_after: 0,
            probes: 0,
            unreadable: Vec::new(),
            memory_peak: b"1048576\n".to_vec(),
            next_pid: 42,
            calls: Vec::new(),
            console: Vec::new(),
            control: Vec::new(),
            clock: 0,
            entropy: true,
            kill_fails: false,
            console_at_kill: Vec::new(),
            files: std::collections::BTreeMap::new(),
            bpf_refuse: None,
            bpf_values: std::collections::BTreeMap::new(),
            next_fd: 100,
            entropy_waiter: None,
            host_handler: None,
        }
    }
    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.console
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }
}

impl Sys for Fake {
    fn now_ns(&self) -> u64 {
        self.clock
    }
    fn log(&mut self, line: &str) {
        self.clock += 1000;
        self.console.push(line.to_owned());
    }
    fn mkdir_p(&mut self, _: &str, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        self.calls.push(Call::Mount(m.target.clone()));
        Ok(())
    }
    fn umount(&mut self, t: &str) -> io::Result<()> {
        self.calls.push(Call::Umount(t.into()));
        Ok(())
    }
    fn remount_root_ro(&mut self) -> io::Result<()> {
        self.calls.push(Call::RemountRo);
        Ok(())
    }
    fn read_file(&mut self, p: &str) -> io::Result<Vec<u8>> {
        if self.unreadable.iter().any(|u| u == p) {
            return Err(io::ErrorKind::NotFound.into());
        }
        match p {
            "/proc/meminfo" => Ok(b"MemTotal:         512000 kB
MemFree: 1 kB
MemAvailable:     480000 kB
"
            .to_vec()),
            "/sys/fs/cgroup/runtime/memory.peak" => Ok(self.memory_peak.clone()),
            _ if self.files.contains_key(p) => Ok(self.files[p].clone()),
            _ => self
                .config
                .clone()
                .ok_or_else(|| io::ErrorKind::NotFound.into()),
        }
    }
    fn write_file(&mut self, p: &str, d: &[u8]) -> io::Result<()> {
        if let Some((_, k)) = self
            .failing_writes
            .iter()
            .find(|(f, _)| p.starts_with(f.as_str()))
        {
            return Err((*k).into());
        }
        let shown = if d.len() > 64 {
            format!("<{} bytes>", d.len())
        } else {
            String::from_utf8_lossy(d).into_owned()
        };
        self.calls.push(Call::Write(p.into(), shown));
        Ok(())
    }
    fn swapon(&mut self, d: &str, prio: i32) -> io::Result<()> {
        self.calls.push(Call::Swapon(d.into(), prio));
        Ok(())
    }
    fn entropy_ready(&mut self) -> bool {
        self.entropy
    }
    fn watch_entropy(&mut self, ready: fn(&mut Self)) {
        self.calls.push(Call::WatchEntropy);
        self.entropy_waiter = Some(ready);
    }
    fn add_entropy(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.calls.push(Call::AddEntropy(bytes.to_vec()));
        Ok(())
    }
    fn reseed_crng(&mut self) -> io::Result<()> {
        self.calls.push(Call::Reseed);
        Ok(())
    }
    fn set_realtime(&mut self, unix_ns: u128) -> io::Result<()> {
        self.calls.push(Call::SetTime(unix_ns));
        Ok(())
    }
    fn settle_relay(&mut self) {}
    fn await_control(&mut self, _: u64) {}
    fn open_control(&mut self, on_message: fn(&mut Self, &str)) {
        self.calls.push(Call::OpenControl);
        self.host_handler = Some(on_message);
    }
    fn control(&mut self, msg: &stratos_wire::Control) {
        self.clock += 1000;
        self.control.push(msg.clone());
    }
    fn flush_control(&mut self, _: u64) {
        self.calls.push(Call::FlushControl);
    }
    fn start_preload(&mut self, paths: &[String]) {
        self.calls.push(Call::Preload(paths.len()));
    }
    fn block_signals(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn wait_signal(&mut self, timeout_ms: u64) -> Option<i32> {
        match self.signals.pop_front() {
            Some(s) => s,
            None => {
                self.clock += timeout_ms * 1_000_000;
                None
            }
        }
    }
    fn kill(&mut self, pid: u32, sig: i32) -> io::Result<()> {
        self.calls.push(Call::Signal(pid, sig));
        self.console_at_kill.push(self.console.len());
        if self.kill_fails {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(())
    }
    fn tcp_probe(&mut self, _: u16) -> bool {
        self.probes += 1;
        self.probes > self.tcp_ready_after
    }
    fn notified(&mut self) -> bool {
        true
    }
    fn seccomp_audit_records(&mut self, out: &mut Vec<String>) -> io::Result<()> {
        self.audit_calls += 1;
        out.extend(self.audit.pop_front().unwrap_or_default());
        match self.audit_error {
            Some(k) if self.audit.is_empty() => Err(k.into()),
            _ => Ok(()),
        }
    }
    fn set_hostname(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn load_module(&mut self, path: &str, _: &str) -> io::Result<()> {
        self.calls.push(Call::Module(path.into()));
        Ok(())
    }
    fn link_up(&mut self, n: &str) -> io::Result<()> {
        self.calls.push(Call::Up(n.into()));
        Ok(())
    }
    fn set_address(&mut self, n: &str, a: Ipv4Addr, p: u8) -> io::Result<()> {
        self.calls.push(Call::Addr(n.into(), a, p));
        Ok(())
    }
    fn add_default_route(&mut self, g: Ipv4Addr) -> io::Result<()> {
        self.calls.push(Call::Route(g));
        Ok(())
    }
    fn spawn(&mut self, s: &Spawn) -> io::Result<u32> {
        if let Some(k) = self.spawn_result {
            return Err(k.into());
        }
        self.calls.push(Call::Spawn(s.argv.to_vec(), s.uid, s.gid));
        let pid = self.next_pid;
        self.next_pid += 1;
        Ok(pid)
    }
    fn wait(&mut self, _block: bool) -> io::Result<Waited> {
        match (self.waits.pop_front(), self.wait_error) {
            (Some(w), _) => Ok(w),
            (None, Some(k)) => Err(k.into()),
            (None, None) => Ok(Waited::NoChildren),
        }
    }
    fn kill_all(&mut self, s: i32) {
        self.calls.push(Call::Kill(s));
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock += ms * 1_000_000;
    }
    fn bpf_map_create(&mut self, name: &str, map: crate::sys::BpfMap) -> io::Result<i32> {
        self.calls.push(Call::BpfMap(name.into()));
        self.next_fd += 1;
        if let crate::sys::BpfMap::Counters { entries } = map {
            self.bpf_values
                .entry(self.next_fd)
                .or_insert_with(|| vec![0; entries as usize]);
        }
        Ok(self.next_fd)
    }
    fn bpf_prog_load(&mut self, name: &str, insns: &[u8]) -> Result<i32, crate::sys::BpfLoadError> {
        self.calls.push(Call::BpfLoad(name.into(), insns.len() / 8));
        if let Some(log) = &self.bpf_refuse {
            return Err(crate::sys::BpfLoadError {
                source: io::Error::from_raw_os_error(13),
                log: log.clone(),
            });
        }
        self.next_fd += 1;
        Ok(self.next_fd)
    }
    fn bpf_attach_raw_tracepoint(&mut self, tp: &str, prog: i32) -> io::Result<()> {
        self.calls.push(Call::BpfAttach(tp.into(), prog));
        Ok(())
    }
    fn bpf_counters(&mut self, map: i32, out: &mut Vec<u64>) -> io::Result<()> {
        // Reading takes time: what happens after a reading is later than it.
        self.clock += 1;
        out.clear();
        out.extend(self.bpf_values.get(&map).ok_or(io::ErrorKind::NotFound)?);
        Ok(())
    }
    fn cgroup_id(&mut self, _: &str) -> io::Result<u64> {
        Ok(0x1234)
    }
    fn sync(&mut self) {
        self.calls.push(Call::Sync);
    }
    fn power_off(&mut self) {}
}

fn config() -> InitConfig {
    InitConfig {
        format: CONFIG_FORMAT,
        hostname: "hello".into(),
        runtime: Runtime {
            argv: vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
        },
        modules: vec![
            stratos_wire::Module {
                name: "failover".into(),
                path: "/lib/modules/x/failover.ko".into(),
                params: String::new(),
            },
            stratos_wire::Module {
                name: "virtio_net".into(),
                path: "/lib/modules/x/virtio_net.ko".into(),
                params: String::new(),
            },
        ],
        network: Some(Network {
            interface: "eth0".into(),
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        }),
        tmpfs: vec![
            Tmpfs {
                path: "/run".into(),
                mode: 0o755,
                size: 0,
            },
            Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
                size: 0,
            },
        ],
        sysctl: vec![("vm.swappiness".into(), "10".into())],
        zram: None,
        readiness: None,
        restart: Restart::default(),
        stop_timeout_ms: 2000,
        limits: Limits::default(),
        read_only_root: true,
        preload: vec![],
        stdio: stratos_wire::Stdio::Console,
        seccomp: None,
        on_restore: None,
        observe: None,
    }
}

/// Outcomes are the same when they end the same way and the console says the same thing.
impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Runtime(a), Outcome::Runtime(b)) => a == b,
            (Outcome::Fatal(a), Outcome::Fatal(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

fn run_with(waits: Vec<Waited>) -> (Fake, Outcome) {
    let mut f = Fake::new(&config());
    f.waits = waits.into();
    let o = boot(&mut f);
    (f, o)
}

#[test]
fn mounts_then_modules_then_network_then_runtime() {
    let (f, o) = run_with(vec![Waited::Reaped(42, ExitKind::Exited(0))]);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(0)));
    let w = |p: &str, v: &str| Call::Write(p.into(), v.into());
    let expected = vec![
        Call::OpenControl,
        Call::Mount("/proc".into()),
        Call::Mount("/sys".into()),
        Call::Mount("/dev".into()),
        Call::Mount("/dev/pts".into()),
        Call::Mount("/dev/shm".into()),
        Call::Mount("/run".into()),
        Call::Mount("/tmp".into()),
        Call::Mount("/sys/fs/cgroup".into()),
        w("/sys/fs/cgroup/cgroup.subtree_control", "+memory"),
        Call::Module("/lib/modules/x/failover.ko".into()),
        Call::Module("/lib/modules/x/virtio_net.ko".into()),
        w("/proc/sys/vm/swappiness", "10"),
        Call::Up("lo".into()),
        Call::Addr("eth0".into(), Ipv4Addr::new(10, 0, 2, 15), 24),
        Call::Up("eth0".into()),
        Call::Route(Ipv4Addr::new(10, 0, 2, 2)),
        Call::RemountRo,
        Call::Spawn(
            vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
            1000,
            1000,
        ),
        Call::Kill(15),
        Call::Sync,
        Call::Umount("/tmp".into()),
        Call::Umount("/run".into()),
        Call::FlushControl,
    ];
    assert_eq!(f.calls, expected);
    assert!(f
        .console
        .contains(&"stratos-init: runtime exited with status 0".to_owned()));
    assert!(f.console.contains(
        &"stratos-init: memory peak 1048576 bytes (1024 KiB) in the runtime's cgroup".to_owned()
    ));
    assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
}

#[test]
fn exit_codes_and_signals_are_reported_exactly() {
    for (how, text) in [
        (
            ExitKind::Exited(3),
            "stratos-init: runtime exited with status 3",
        ),
        (
            ExitKind::Exited(255),
            "stratos-init: runtime exited with status 255",
        ),
        (
            ExitKind::Signaled(9),
            "stratos-init: runtime killed by signal 9 (SIGKILL)",
        ),
        (
            ExitKind::Signaled(15),
            "stratos-init: runtime killed by signal 15 (SIGTERM)",
        ),
    ] {
        let (f, o) = run_with(vec![Waited::Reaped(42, how)]);
        assert_eq!(o, Outcome::Runtime(how));
        assert_eq!(f.lines("stratos-init: runtime "), [text]);
    }
}

#[test]
fn orphans_are_reaped_while_waiting_for_the_runtime() {
    let (f, o) = run_with(vec![
        Waited::Reaped(100, ExitKind::Exited(0)),
        Waited::Reaped(101, ExitKind::Signaled(9)),
        Waited::Reaped(42, ExitKind::Exited(7)),
    ]);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(7)));
    assert_eq!(
        f.lines("stratos-init: runtime "),
        ["stratos-init: runtime exited with status 7"]
    );
}

#[test]
fn runtime_that_cannot_be_executed_is_fatal_and_powers_off() {
    for (kind, text) in [
        (io::ErrorKind::NotFound, "entity not found"),
        (io::ErrorKind::PermissionDenied, "permission denied"),
    ] {
        let mut f = Fake::new(&config());
        f.spawn_result = Some(kind);
        let o = boot(&mut f);
        let Outcome::Fatal(e) = &o else {
            panic!("{o:?}")
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot execute the runtime /bin/busybox: "),
            "{msg}"
        );
        assert!(msg.contains(text), "{msg}");
        assert_eq!(f.lines("stratos-init: fatal:").len(), 1);
        assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
        assert!(f.calls.contains(&Call::Sync));
    }
}

#[test]
fn missing_config_is_fatal() {
    let mut f = Fake::new(&config());
    f.config = None;
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("/etc/stratos/init.json")),
        "{o:?}"
    );
    f.config = Some(b"{garbage".to_vec());
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("malformed")),
        "{o:?}"
    );
}

#[test]
fn phases_are_printed_in_order() {
    let (f, _) = run_with(vec![Waited::Reaped(42, ExitKind::Exited(0))]);
    let names: Vec<&str> = f
        .lines("stratos-phase ")
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "init_start",
            "entropy_ready",
            "mounts_done",
            "zram_ready",
            "preload_started",
            "runtime_exec",
            "runtime_ready",
            "shutdown"
        ]
    );
}

#[test]
fn stubborn_processes_get_sigkill_after_the_grace_period() {
    let mut f = Fake::new(&config());
    let mut w = vec![Waited::Reaped(42, ExitKind::Exited(0))];
    w.extend(std::iter::repeat_n(Waited::NoneReady, 200));
    f.waits = w.into();
    boot(&mut f);
    assert!(f.calls.contains(&Call::Kill(9)), "{:?}", f.calls);
}

#[test]
fn a_failed_wait_at_shutdown_is_a_warning_then_sigkill() {
    let mut f = Fake::new(&config());
    f.waits = vec![Waited::Reaped(42, ExitKind::Exited(0))].into();
    f.wait_error = Some(io::ErrorKind::InvalidInput);
    let o = boot(&mut f);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(0)));
    assert_eq!(
        f.lines("stratos-init: warning:"),
        ["stratos-init: warning: cannot wait for the remaining processes: invalid input parameter"]
    );
    let kills: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Kill(_)))
        .collect();
    assert_eq!(kills, [&Call::Kill(15), &Call::Kill(9)]);
    assert_eq!(f.console.last().unwrap(), "stratos-init: powering off");
}

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
fn restart_decisions_with_capped_backoff() {
    let r = Restart {
        policy: RestartPolicy::OnFailure,
        max_restarts: 4,
        backoff_initial_ms: 100,
        backoff_max_ms: 250,
    };
    assert_eq!(restart_delay(&r, ExitKind::Exited(0), 0), None);
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 0), Some(100));
    assert_eq!(restart_delay(&r, ExitKind::Signaled(9), 1), Some(200));
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 2), Some(250));
    assert_eq!(restart_delay(&r, ExitKind::Exited(1), 4), None);
    let always = Restart {
        policy: RestartPolicy::Always,
        ..r.clone()
    };
    assert_eq!(restart_delay(&always, ExitKind::Exited(0), 0), Some(100));
    let never = Restart {
        policy: RestartPolicy::Never,
        ..r
    };
    assert_eq!(restart_delay(&never, ExitKind::Exited(1), 0), None);
}

#[test]
fn restarts_until_the_limit_then_reports_the_last_exit() {
    let mut cfg = config();
    cfg.restart = Restart {
        policy: RestartPolicy::OnFailure,
        max_restarts: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 10,
    };
    let mut f = Fake::new(&cfg);
    f.waits = vec![
        Waited::Reaped(42, ExitKind::Exited(1)),
        Waited::NoneReady,
        Waited::NoneReady,
        Waited::Reaped(43, ExitKind::Exited(2)),
        Waited::NoneReady,
        Waited::NoneReady,
        Waited::Reaped(44, ExitKind::Exited(3)),
    ]
    .into();
    let o = boot(&mut f);
    assert_eq!(o, Outcome::Runtime(ExitKind::Exited(3)));
    let spawns = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Spawn(..)))
        .count();
    assert_eq!(spawns, 3);
    assert_eq!(
        f.lines("stratos-init: runtime exited"),
        ["stratos-init: runtime exited with status 3"]
    );
    assert_eq!(f.lines("stratos-init: restart ").len(), 2);
}

#[test]
fn sigterm_is_forwarded_once_then_sigkill_after_the_deadline() {
    let mut f = Fake::new(&config());
    // TERM arrives; the runtime ignores it; the deadline (2 s) passes; it dies of SIGKILL.
    f.signals = vec![Some(15)].into();
    let mut waits = vec![Waited::NoneReady; 1];
    waits.extend(std::iter::repeat_n(Waited::NoneReady, 3));
    f.waits = waits.into();
    // After the deadline, the fake reports the kill.
    let o = {
        let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 5).collect();
        w.push(Waited::Reaped(42, ExitKind::Signaled(9)));
        f.waits = w.into();
        boot(&mut f)
    };
    assert_eq!(o, Outcome::Runtime(ExitKind::Signaled(9)));
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(sigs, [&Call::Signal(42, 15), &Call::Signal(42, 9)]);
    assert!(f
        .console
        .iter()
        .any(|l| l.contains("did not stop within 2000 ms")));
}

#[test]
fn other_signals_are_forwarded_exactly_once() {
    let mut f = Fake::new(&config());
    f.signals = vec![Some(1), Some(10), Some(12), Some(17)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 4).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(
        sigs,
        [
            &Call::Signal(42, 1),
            &Call::Signal(42, 10),
            &Call::Signal(42, 12)
        ]
    );
}

#[test]
fn readiness_by_tcp_probe() {
    let mut cfg = config();
    cfg.readiness = Some(Readiness::Tcp {
        port: 8080,
        timeout_ms: 1000,
    });
    let mut f = Fake::new(&cfg);
    f.tcp_ready_after = 3;
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 6).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    assert_eq!(f.probes, 4);
    assert_eq!(f.lines("stratos-phase runtime_ready").len(), 1);
}

#[test]
fn unreadable_seccomp_filter_refuses_to_start_unfiltered() {
    let mut cfg = config();
    cfg.seccomp = Some(stratos_wire::Seccomp {
        filter: "/etc/stratos/seccomp.bpf".into(),
        mode: stratos_wire::SeccompMode::Enforce,
    });
    let mut f = Fake::new(&cfg);
    f.unreadable.push("/etc/stratos/seccomp.bpf".into());
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.to_string().contains("refusing to start the runtime unfiltered")),
        "{o:?}"
    );
    assert!(!f.calls.iter().any(|c| matches!(c, Call::Spawn(..))));
}

#[test]
fn entropy_ready_at_start_is_a_phase_without_a_warning() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let phases = f.lines("stratos-phase");
    assert!(
        phases[0].starts_with("stratos-phase init_start "),
        "{phases:?}"
    );
    assert!(
        phases[1].starts_with("stratos-phase entropy_ready "),
        "{phases:?}"
    );
    assert!(!f.console.iter().any(|l| l.contains("random pool")));
    assert!(!f.calls.contains(&Call::WatchEntropy));
}

#[test]
fn no_entropy_at_start_warns_once_naming_cause_and_fix_and_watches() {
    let mut f = Fake::new(&config());
    f.entropy = false;
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let warnings: Vec<_> = f
        .console
        .iter()
        .filter(|l| l.contains("random pool is not initialised"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", f.console);
    assert!(warnings[0].starts_with("stratos-init: warning:"));
    assert!(warnings[0].contains("virtio-rng"), "names the cause");
    assert!(
        warnings[0].contains("kernel-configs/entropy.config"),
        "names the fix"
    );
    assert!(f.calls.contains(&Call::WatchEntropy));
    // The phase is printed by the waiter when the pool is ready, not now.
    assert!(!f.console.iter().any(|l| l.contains("entropy_ready")));
    let ready = f.entropy_waiter.expect("a waiter");
    ready(&mut f);
    assert_eq!(f.lines("stratos-phase entropy_ready").len(), 1);
}

#[test]
fn memory_available_is_reported_at_ready() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let i = f
        .console
        .iter()
        .position(|l| l.starts_with("stratos-phase runtime_ready"))
        .unwrap();
    assert_eq!(
        f.console[i + 1],
        "stratos-init: memory available 480000 KiB at runtime_ready"
    );
}

#[test]
fn a_restore_reseeds_sets_the_clock_and_tells_the_supervisor() {
    let mut f = Fake::new(&config());
    let entropy = "ab".repeat(32);
    crate::restore::apply(
        &mut f,
        &format!("stratos-restore {entropy} 1764300000123456789"),
    );
    assert_eq!(
        f.calls,
        vec![
            Call::AddEntropy(vec![0xab; 32]),
            Call::Reseed,
            Call::SetTime(1_764_300_000_123_456_789),
            Call::Signal(1, crate::sys::SIGRESTORED),
        ]
    );
    // The supervisor reports `restored`, after telling the runtime.
    assert!(
        f.lines("stratos-phase restored").is_empty(),
        "{:?}",
        f.console
    );
}

#[test]
fn a_restored_runtime_is_told_before_the_host() {
    let mut cfg = config();
    cfg.on_restore = Some(10);
    let mut f = Fake::new(&cfg);
    f.signals = vec![Some(crate::sys::SIGRESTORED)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 2).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(sigs, [&Call::Signal(42, 10)]);
    // The signal was sent before `restored` was printed.
    let restored = f
        .console
        .iter()
        .position(|l| l.starts_with("stratos-phase restored "))
        .expect("restored reported");
    assert!(f.console_at_kill[0] <= restored, "{:?}", f.console);
    assert!(f
        .console
        .iter()
        .any(|l| l == "stratos-init: restored from a snapshot; sent SIGUSR1 to the runtime"));
    // Without an on-restore signal the runtime is not told; the host still is.
    let mut g = Fake::new(&config());
    g.signals = vec![Some(crate::sys::SIGRESTORED)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 2).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    g.waits = w.into();
    boot(&mut g);
    assert!(!g.calls.iter().any(|c| matches!(c, Call::Signal(..))));
    assert_eq!(g.lines("stratos-phase restored ").len(), 1);
}

#[test]
fn a_restore_that_cannot_reach_the_supervisor_is_still_reported() {
    let mut f = Fake::new(&config());
    f.kill_fails = true;
    crate::restore::apply(&mut f, &format!("stratos-restore {} 5", "00".repeat(32)));
    assert!(f
        .console
        .iter()
        .any(|l| l.contains("cannot tell the supervisor about the restore")));
    assert_eq!(f.lines("stratos-phase restored ").len(), 1);
}

#[test]
fn a_malformed_restore_message_changes_nothing() {
    for bad in [
        "stratos-restore zz 5",
        "stratos-restore 00 5",
        "hello",
        &format!("stratos-restore {} notanumber", "00".repeat(32)),
        &format!("stratos-restore {} 5 extra", "00".repeat(32)),
    ] {
        let mut f = Fake::new(&config());
        crate::restore::apply(&mut f, bad);
        assert!(f.calls.is_empty(), "{bad}: {:?}", f.calls);
        assert!(f.console.iter().any(|l| l.contains("malformed message")));
        assert!(f.lines("stratos-phase restored").is_empty());
    }
}

#[test]
fn the_control_channel_is_opened_first_and_flushed_last() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    assert_eq!(f.calls.first(), Some(&Call::OpenControl));
    assert_eq!(f.calls.last(), Some(&Call::FlushControl));
}

#[test]
fn the_host_s_messages_go_to_the_restore_logic() {
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(0)));
    boot(&mut f);
    let on_message = f.host_handler.expect("a handler");
    f.calls.clear();
    on_message(&mut f, stratos_wire::METRICS_REQUEST);
    assert_eq!(f.calls, vec![Call::Signal(1, crate::sys::SIGMETRICS)]);
}

#[test]
fn the_host_learns_everything_it_decides_on_from_the_control_channel() {
    use stratos_wire::{Control, Ending};
    let mut f = Fake::new(&config());
    f.waits.push_back(Waited::Reaped(42, ExitKind::Exited(3)));
    boot(&mut f);
    assert!(matches!(f.control.first(), Some(Control::Hello { .. })));
    let phases: Vec<&str> = f
        .control
        .iter()
        .filter_map(|m| match m {
            Control::Phase { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(phases.first(), Some(&"init_start"));
    assert!(phases.contains(&"runtime_ready"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"shutdown"));
    let n = f.control.len();
    assert_eq!(
        f.control[n - 4..]
            .iter()
            .filter(|m| !matches!(m, Control::Phase { .. } | Control::MemoryPeak { .. }))
            .collect::<Vec<_>>(),
        [
            &Control::Ended {
                ending: Ending::Exited { status: 3 }
            },
            &Control::PowerOff
        ]
    );
    assert!(f
        .control
        .iter()
        .any(|m| matches!(m, Control::MemoryAvailable { kib: 480000 })));
}

#[test]
fn restore_messages_never_panic_whatever_the_host_sends() {
    let valid = format!("stratos-restore {} 1764300000123456789", "ab".repeat(32));
    assert!(crate::restore::parse(&valid).is_some());
    // A seeded mutation of the valid line: byte flips, insertions, deletions, truncations.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for _ in 0..5000 {
        let mut b = valid.clone().into_bytes();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % (b.len() + 1);
            match next() % 4 {
                0 if i < b.len() => b[i] ^= 1 << (next() % 8),
                1 => b.insert(i, (next() % 256) as u8),
                2 if i < b.len() => {
                    b.remove(i);
                }
                _ => b.truncate(i),
            }
        }
        let line = String::from_utf8_lossy(&b);
        if let Some(m) = crate::restore::parse(&line) {
            assert_eq!(m.entropy.len(), 32);
        }
    }
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
