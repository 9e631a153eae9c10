//! Host tests of the boot logic through a recording fake `Sys`.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;

use stratos_wire::{InitConfig, Network, Runtime, Tmpfs, CONFIG_FORMAT};

use crate::boot::{boot, Outcome};
use crate::sys::{ExitKind, Mount, Spawn, Sys, Waited};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Mount(String),
    Module(String),
    Up(String),
    Addr(String, Ipv4Addr, u8),
    Route(Ipv4Addr),
    Spawn(Vec<String>, u32, u32),
    Kill(i32),
    Sync,
}

struct Fake {
    config: Option<Vec<u8>>,
    spawn_result: Option<io::ErrorKind>,
    waits: VecDeque<Waited>,
    calls: Vec<Call>,
    console: Vec<String>,
    clock: u64,
}

impl Fake {
    fn new(cfg: &InitConfig) -> Self {
        Fake {
            config: Some(cfg.to_json()),
            spawn_result: None,
            waits: VecDeque::new(),
            calls: Vec::new(),
            console: Vec::new(),
            clock: 0,
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
    fn read_file(&mut self, _: &str) -> io::Result<Vec<u8>> {
        self.config
            .clone()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
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
        Ok(42)
    }
    fn wait(&mut self, _block: bool) -> io::Result<Waited> {
        Ok(self.waits.pop_front().unwrap_or(Waited::NoChildren))
    }
    fn kill_all(&mut self, s: i32) {
        self.calls.push(Call::Kill(s));
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock += ms * 1_000_000;
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
            address: "10.0.2.15".into(),
            prefix_len: 24,
            gateway: Some("10.0.2.2".into()),
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
        sysctl: vec![],
        zram: None,
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
    let expected_prefix = vec![
        Call::Mount("/proc".into()),
        Call::Mount("/sys".into()),
        Call::Mount("/dev".into()),
        Call::Mount("/dev/pts".into()),
        Call::Mount("/dev/shm".into()),
        Call::Mount("/run".into()),
        Call::Mount("/tmp".into()),
        Call::Module("/lib/modules/x/failover.ko".into()),
        Call::Module("/lib/modules/x/virtio_net.ko".into()),
        Call::Up("lo".into()),
        Call::Addr("eth0".into(), Ipv4Addr::new(10, 0, 2, 15), 24),
        Call::Up("eth0".into()),
        Call::Route(Ipv4Addr::new(10, 0, 2, 2)),
        Call::Spawn(
            vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
            1000,
            1000,
        ),
        Call::Kill(15),
        Call::Sync,
    ];
    assert_eq!(f.calls, expected_prefix);
    assert!(f
        .console
        .contains(&"stratos-init: runtime exited with status 0".to_owned()));
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
        let Outcome::Fatal(msg) = &o else {
            panic!("{o:?}")
        };
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
        matches!(o, Outcome::Fatal(ref m) if m.contains("/etc/stratos/init.json")),
        "{o:?}"
    );
    f.config = Some(b"{garbage".to_vec());
    let o = boot(&mut f);
    assert!(
        matches!(o, Outcome::Fatal(ref m) if m.contains("malformed")),
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
        ["init_start", "mounts_done", "runtime_exec", "shutdown"]
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
