//! A recording fake of the [`Sys`] seam: what the boot logic asked of the system, in order,
//! with failures and signals to inject.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;

use stratos_wire::InitConfig;

use crate::sys::{Mount, Spawn, Sys, Waited};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
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
    StartLambda(u16, u16),
    LambdaEnded(String),
    LambdaStarted,
}

pub struct Fake {
    pub config: Option<Vec<u8>>,
    pub spawn_result: Option<io::ErrorKind>,
    pub waits: VecDeque<Waited>,
    /// What `wait` fails with once `waits` is used up (else: no children).
    pub wait_error: Option<io::ErrorKind>,
    /// Signals to deliver, one per wait_signal call (None = timeout).
    pub signals: VecDeque<Option<i32>>,
    /// Paths whose writes fail with this error.
    pub failing_writes: Vec<(String, io::ErrorKind)>,
    /// Seccomp audit records, one batch per call.
    pub audit: VecDeque<Vec<String>>,
    /// What reading audit records fails with once `audit` is used up.
    pub audit_error: Option<io::ErrorKind>,
    pub audit_calls: u32,
    pub tcp_ready_after: u32,
    pub probes: u32,
    pub unreadable: Vec<String>,
    /// What the runtime cgroup's `memory.peak` holds.
    pub memory_peak: Vec<u8>,
    pub next_pid: u32,
    pub calls: Vec<Call>,
    pub console: Vec<String>,
    /// What was sent on the control channel.
    pub control: Vec<stratos_wire::Control>,
    pub clock: u64,
    /// Whether the kernel's random pool is ready.
    pub entropy: bool,
    /// `kill` fails (after recording the call).
    pub kill_fails: bool,
    /// How many console lines there were when each `kill` was made.
    pub console_at_kill: Vec<usize>,
    /// Other files `read_file` returns.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
    /// The verifier refuses programs with this log.
    pub bpf_refuse: Option<String>,
    /// What the counter maps hold, by descriptor (from 100 on, in creation order).
    pub bpf_values: std::collections::BTreeMap<i32, Vec<u64>>,
    pub next_fd: i32,
    /// What the boot handed `watch_entropy` and `open_control` to run in the background.
    pub entropy_waiter: Option<fn(&mut Fake)>,
    pub host_handler: Option<fn(&mut Fake, &str)>,
    /// The environment of each spawn, in order.
    pub spawned_env: Vec<Vec<(String, String)>>,
    /// What the Lambda server says, one batch per `lambda_events` call.
    pub lambda_events: VecDeque<Vec<crate::lambda::LambdaEvent>>,
    /// `start_lambda` fails with this.
    pub lambda_start_error: Option<io::ErrorKind>,
}

impl Fake {
    pub fn new(cfg: &InitConfig) -> Self {
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
            spawned_env: Vec::new(),
            lambda_events: VecDeque::new(),
            lambda_start_error: None,
        }
    }
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
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
        self.spawned_env.push(s.env.to_vec());
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
    fn kill_group(&mut self, pgid: u32, sig: i32) -> io::Result<()> {
        self.calls.push(Call::Signal(pgid, sig));
        if self.kill_fails {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(())
    }
    fn kill_all(&mut self, s: i32) {
        self.calls.push(Call::Kill(s));
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock += ms * 1_000_000;
    }
    fn start_lambda(&mut self, cfg: &stratos_wire::Lambda) -> io::Result<()> {
        if let Some(k) = self.lambda_start_error {
            return Err(k.into());
        }
        self.calls
            .push(Call::StartLambda(cfg.api_port, cfg.invoke_port));
        Ok(())
    }
    fn lambda_events(&mut self) -> Vec<crate::lambda::LambdaEvent> {
        self.lambda_events.pop_front().unwrap_or_default()
    }
    fn lambda_runtime_started(&mut self) {
        self.calls.push(Call::LambdaStarted);
    }
    fn lambda_runtime_ended(&mut self, how: &str) {
        self.calls.push(Call::LambdaEnded(how.into()));
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
