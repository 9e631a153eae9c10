//! Booting images under QEMU: one boot with its console, phases and invocations.

pub mod bench;
pub mod console;
pub mod hold;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod stats;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::{INITRAMFS_ARTIFACT, KERNEL_CONFIG_ARTIFACT};
use crate::kernel::Config;
use crate::sign::manifest::{Manifest, MANIFEST_FILE};
use crate::sign::verify::load_manifest;
use console::{Ending, Phase};
use qemu::{Accel, Feed, Forward, Machine, Vm, VmSpec};
use stratos_wire::Control;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {why}")]
    Image { path: PathBuf, why: String },
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
}

impl BootError {
    /// QEMU missing or failing to start, host I/O: not the image's fault.
    pub fn is_environment(&self) -> bool {
        match self {
            Self::Qemu(_) | Self::Io(_) => true,
            Self::Snapshot(e) => e.is_environment(),
            Self::Image { .. } => false,
        }
    }
}

static STOP: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Makes SIGINT, SIGTERM and SIGHUP stop a running boot (and its QEMU) cleanly instead of
/// killing `stratos` and leaving QEMU behind.
pub fn handle_stop_signals() -> std::io::Result<()> {
    let flag = STOP.get_or_init(Default::default).clone();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

/// An image directory, ready to boot.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub machine: Machine,
}

impl BootImage {
    pub fn open(dir: &Path) -> Result<Self, BootError> {
        let mpath = dir.join(MANIFEST_FILE);
        let manifest = load_manifest(dir).map_err(|e| BootError::Image {
            path: mpath.clone(),
            why: format!("{e} (is this a stratos image directory?)"),
        })?;
        let cfg_path = dir.join(KERNEL_CONFIG_ARTIFACT);
        let config =
            match crate::fsio::read_regular(
                &cfg_path,
                crate::fsio::caps::KERNEL_CONFIG,
                "a kernel config",
                crate::fsio::Links::Refuse,
            ) {
                Ok(t) => Some(Config::parse(&String::from_utf8_lossy(&t)).map_err(|e| {
                    BootError::Image {
                        path: cfg_path.clone(),
                        why: e.to_string(),
                    }
                })?),
                // Optional: images of prebuilt kernels without a known config have none.
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    return Err(BootError::Image {
                        path: cfg_path,
                        why: e.to_string(),
                    })
                }
            };
        // QEMU opens these by path: they must be regular files of the image directory, not
        // symlinks to somewhere else.
        let root_artifact = manifest
            .root
            .as_ref()
            .map_or(INITRAMFS_ARTIFACT, |r| r.artifact.as_str());
        for name in [manifest.kernel.artifact.as_str(), root_artifact] {
            let p = dir.join(name);
            crate::fsio::open_regular(&p, crate::fsio::Links::Refuse).map_err(|e| {
                BootError::Image {
                    path: p.clone(),
                    why: e.to_string(),
                }
            })?;
        }
        Ok(BootImage {
            dir: dir.to_owned(),
            machine: Machine::for_kernel(config.as_ref()),
            manifest,
        })
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join(&self.manifest.kernel.artifact)
    }

    pub fn spec(
        &self,
        accel: Accel,
        memory_mib: u32,
        forwards: Vec<Forward>,
        interactive: bool,
    ) -> VmSpec {
        VmSpec {
            kernel: self.kernel(),
            root: match &self.manifest.root {
                None => qemu::Root::Initramfs(self.dir.join(INITRAMFS_ARTIFACT)),
                Some(r) => qemu::Root::Disk(self.dir.join(&r.artifact)),
            },
            cmdline: self.manifest.kernel.cmdline.clone(),
            machine: self.machine,
            accel,
            memory_mib,
            cpus: 1,
            forwards,
            interactive,
            snapshot: None,
            control: None,
        }
    }
}

/// Function calls to make once the runtime is up.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// Host port forwarded to the function's port.
    pub host_port: u16,
    pub path: String,
    pub count: usize,
}

/// One invocation's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Invocation {
    /// Since QEMU was spawned, when the request that got this answer was sent.
    pub sent_ms: f64,
    /// Request → complete response.
    pub latency_ms: f64,
    pub status: u16,
    /// The answer's body; kept for the first answers only, up to [`MAX_BODIES`] bytes a run
    /// (later ones are empty): a run of many calls holds one answer's worth, not many.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// The answer bytes one run keeps, over all its invocations.
pub const MAX_BODIES: usize = 1 << 20;

/// The console a run keeps: its first and its last [`CONSOLE_KEEP`] bytes of lines; what lies
/// between is counted, not kept (a guest can print without end).
pub const CONSOLE_KEEP: usize = 2 << 20;

/// Console lines, bounded: the beginning and the end of what the guest printed.
#[derive(Debug, Clone, Default)]
pub struct ConsoleLog {
    head: Vec<(Duration, String)>,
    head_bytes: usize,
    tail: std::collections::VecDeque<(Duration, String)>,
    tail_bytes: usize,
    /// Lines (and their bytes) that fell out between the two.
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl ConsoleLog {
    pub fn push(&mut self, t: Duration, line: String) {
        if self.head_bytes + line.len() <= CONSOLE_KEEP && self.tail.is_empty() {
            self.head_bytes += line.len();
            self.head.push((t, line));
            return;
        }
        self.tail_bytes += line.len();
        self.tail.push_back((t, line));
        while self.tail_bytes > CONSOLE_KEEP {
            let Some((_, l)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= l.len();
            self.dropped_lines += 1;
            self.dropped_bytes += l.len() as u64;
        }
    }

    /// The lines kept, in order, with one line saying what was left out between them.
    pub fn lines(&self) -> Vec<(Duration, String)> {
        let mut out = self.head.clone();
        if self.dropped_lines > 0 {
            let t = self.tail.front().map_or(Duration::ZERO, |(t, _)| *t);
            out.push((
                t,
                format!(
                    "[stratos: {} console lines ({} bytes) left out here]",
                    self.dropped_lines, self.dropped_bytes
                ),
            ));
        }
        out.extend(self.tail.iter().cloned());
        out
    }
}

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct BootRun {
    pub accel: Accel,
    pub machine: Machine,
    /// The VM's memory (MiB): what no reading of the guest's memory can exceed.
    pub memory_mib: u32,
    /// Console lines with the time since QEMU was spawned (bounded: see [`ConsoleLog`]). For
    /// people: nothing is decided from them.
    pub lines: Vec<(Duration, String)>,
    /// The phases the init sent, checked.
    pub phases: Result<Vec<Phase>, console::PhaseError>,
    /// When the host heard of each phase (since QEMU was spawned).
    pub phase_seen: std::collections::BTreeMap<String, Duration>,
    pub ending: Ending,
    /// When the init said the runtime ended for good.
    pub ended_at: Option<Duration>,
    pub invocations: Vec<Invocation>,
    /// Time from spawning QEMU to the first complete answer (the cold start seen by a caller).
    pub first_response: Option<Duration>,
    /// When the last answer came.
    pub last_response: Option<Duration>,
    /// Time from spawning QEMU until it exited (or was stopped).
    pub wall: Duration,
    pub timed_out: bool,
    /// Why invoking failed, if it did.
    pub invoke_error: Option<String>,
    /// A restore: time from spawning QEMU until the restored VM continued.
    pub resumed: Option<Duration>,
    /// The init's metrics readings (`[observe]`).
    pub readings: Readings,
    /// The runtime's memory high-water mark (bytes), the init's last word on it.
    pub memory_peak: Option<u64>,
    /// `MemAvailable` at `runtime_ready`, KiB.
    pub mem_available_kib: Option<u64>,
    /// Seccomp audit records (log mode), as the init sent them.
    pub seccomp_records: Vec<String>,
    /// The init said hello on its control channel.
    pub hello: bool,
    /// What went wrong on the control channel (a malformed or lost message).
    pub control_error: Option<String>,
}

/// The metrics readings of one boot, and which of them the harness asked for.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Every reading, in order.
    pub all: Vec<stratos_wire::Metrics>,
    /// The reading asked for after the first answer (index in `all`): the cold start.
    pub after_first: Option<usize>,
    /// The reading asked for after the last answer.
    pub after_last: Option<usize>,
    /// Why a reading asked for did not come.
    pub error: Option<String>,
}

/// The most readings one boot keeps (the host asks for two; the init adds one at ready and
/// one at shutdown).
pub const MAX_READINGS: usize = 64;

impl Readings {
    /// The reading the init took at `runtime_ready`.
    pub fn ready(&self) -> Option<&stratos_wire::Metrics> {
        self.all
            .iter()
            .find(|m| m.reason == stratos_wire::MetricsReason::Ready)
    }

    /// Checks that the readings could all be true of one boot: numbered one after the other, taken at
    /// non-decreasing times; counters that never go down (restarts, every system call, the
    /// total, which is their sum); memory used within the VM's. An inconsistent reading fails the
    /// run rather than being used.
    pub fn check(&self, memory_mib: u32) -> Result<(), String> {
        let vm = u64::from(memory_mib) << 20;
        let mut prev: Option<&stratos_wire::Metrics> = None;
        // A restored clone continues the numbering of the boot it was saved from.
        let first = self.all.first().map_or(1, |m| m.seq);
        for (i, m) in self.all.iter().enumerate() {
            let n = i as u64 + 1;
            if m.seq != first.saturating_add(i as u64) {
                return Err(format!(
                    "reading {n} is numbered {}, after {}",
                    m.seq,
                    m.seq.saturating_sub(1).max(first)
                ));
            }
            if let Some(total) = m.syscalls_total {
                let sum: u64 = m
                    .syscalls
                    .iter()
                    .flat_map(|s| s.values())
                    .fold(0u64, |a, &b| a.saturating_add(b));
                if sum != total {
                    return Err(format!(
                        "reading {n}: the system call total {total} is not the sum of its counts ({sum})"
                    ));
                }
            }
            // (`faas.max_memory` is the profile's limit, which may exceed a smaller VM.)
            if let Some(v) = m.mem_usage.filter(|&v| v > vm) {
                return Err(format!(
                    "reading {n}: faas.mem_usage {v} bytes is more than the VM's {memory_mib} MiB"
                ));
            }
            if let Some(p) = prev {
                if m.time_ns < p.time_ns {
                    return Err(format!("reading {n} was taken before reading {}", n - 1));
                }
                if m.restarts < p.restarts {
                    return Err(format!(
                        "reading {n}: restarts went down from {} to {}",
                        p.restarts, m.restarts
                    ));
                }
                if let (Some(a), Some(b)) = (p.syscalls_total, m.syscalls_total) {
                    if b < a {
                        return Err(format!(
                            "reading {n}: the system call total went down from {a} to {b}"
                        ));
                    }
                }
                if let (Some(a), Some(b)) = (&p.syscalls, &m.syscalls) {
                    for (name, &before) in a {
                        let now = b.get(name).copied().unwrap_or(0);
                        if now < before {
                            return Err(format!(
                                "reading {n}: the count of {} went down from {before} to {now}",
                                stratos_wire::control::escape(name.as_bytes())
                            ));
                        }
                    }
                }
            }
            prev = Some(m);
        }
        Ok(())
    }
}

/// What the runtime is called in messages about how it ended.
fn ended(e: stratos_wire::Ending) -> String {
    match e {
        stratos_wire::Ending::Exited { status } => format!("exited with status {status}"),
        stratos_wire::Ending::Killed { signal } => format!(
            "was killed by signal {signal}{}",
            signal_name(signal).map_or(String::new(), |n| format!(" ({n})"))
        ),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return None,
    })
}

impl BootRun {
    /// Why a boot did not produce what was expected.
    pub fn failure_reason(&self) -> String {
        let r = self;
        if let Some(c) = &r.ending.root_corrupted {
            return format!("root filesystem failed verification: {c}");
        }
        if let Some(p) = &r.ending.panic {
            return format!("the kernel panicked: {p}");
        }
        if let Some(f) = &r.ending.fatal {
            return format!("the init failed: {f}");
        }
        // The runtime's own end explains a failed call, so it comes first.
        let call = r
            .invoke_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (the call: {e})"));
        if let Some(e) = r.ending.ended {
            return format!(
                "the runtime {} before the run's last answer{call}",
                ended(e)
            );
        }
        if let Some((_, count, e)) = r.ending.restarts.first() {
            return format!(
                "the runtime {} and was restarted (restart {count}) before the run's last answer{call}",
                ended(*e)
            );
        }
        if let Some(e) = &r.invoke_error {
            return e.clone();
        }
        let channel = r
            .control_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (the control channel: {e})"));
        if r.timed_out {
            let wall = r.wall.as_secs_f64();
            if !r.hello {
                return format!(
                    "timed out after {wall:.0} s without a word from the init on its control channel{channel} (the kernel needs CONFIG_VIRTIO_CONSOLE, or virtio_console in [kernel] modules)"
                );
            }
            let ready = if self.opts_ready() {
                ""
            } else {
                " before the runtime was ready"
            };
            return format!("timed out after {wall:.0} s{ready}{channel}");
        }
        if let Some(e) = &r.control_error {
            return format!("the control channel: {e}");
        }
        if !r.hello {
            return "the VM stopped without a word from the init on its control channel".into();
        }
        "the VM stopped without the init saying how the runtime ended".into()
    }

    fn opts_ready(&self) -> bool {
        self.phase_seen.contains_key("runtime_ready") || self.phase_seen.contains_key("restored")
    }

    /// Why a run that got its answers is still not healthy: the runtime restarted, ended or was
    /// killed at any time of the run (the answers, or the linger after them), the init failed,
    /// a control message was malformed or lost, or the metrics readings contradict each other.
    pub fn health_failure(&self) -> Option<String> {
        if let Some(e) = &self.control_error {
            return Some(format!("the control channel: {e}"));
        }
        if let Some((t, count, e)) = self.ending.restarts.first() {
            return Some(format!(
                "the runtime {} and was restarted (restart {count}, {:.2} s into the run)",
                ended(*e),
                t.as_secs_f64()
            ));
        }
        if let Some(e) = self.ending.ended {
            let when = self.ended_at.map_or(String::new(), |t| {
                let after = match self.last_response {
                    Some(l) if l <= t => " after answering",
                    _ => "",
                };
                format!("{after}, {:.2} s into the run", t.as_secs_f64())
            });
            return Some(format!("the runtime {}{when}", ended(e)));
        }
        if let Some(f) = &self.ending.fatal {
            return Some(format!("the init failed: {f}"));
        }
        if self.ending.powered_off {
            return Some("the init powered the machine off during the run".into());
        }
        if let Some(p) = &self.ending.panic {
            return Some(format!("the kernel panicked: {p}"));
        }
        if let Err(e) = self.readings.check(self.memory_mib) {
            return Some(format!("inconsistent metrics readings: {e}"));
        }
        let vm_kib = u64::from(self.memory_mib) << 10;
        if let Some(kib) = self.mem_available_kib.filter(|&k| k > vm_kib) {
            return Some(format!(
                "the init reported {kib} KiB available in a VM of {} MiB",
                self.memory_mib
            ));
        }
        if let Some(b) = self.memory_peak.filter(|&b| b > vm_kib << 10) {
            return Some(format!(
                "the init reported a memory peak of {b} bytes in a VM of {} MiB",
                self.memory_mib
            ));
        }
        None
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        for (t, l) in &self.lines {
            s.push_str(&format!("[{:>9.3}] {l}\n", t.as_secs_f64()));
        }
        s
    }

    pub fn console_text(&self) -> String {
        let mut s = String::new();
        for (_, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// How to run one boot.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub accel: Accel,
    pub memory_mib: u32,
    pub forwards: Vec<Forward>,
    pub timeout: Duration,
    pub echo: bool,
    pub interactive: bool,
    pub invoke: Option<Invoke>,
    /// Stop the VM once the invocations are done (instead of waiting for it to power off).
    pub stop_after_invoke: bool,
    /// How long to keep following the VM after the invocations before stopping: the runtime
    /// must stay alive through it.
    pub linger: Duration,
    /// Boot with this kernel command line instead of the image's (e.g. a profile boot).
    pub cmdline: Option<String>,
    /// Stop the VM once a console line contains this (a measurement of the kernel, never a
    /// decision about the function: the runtime has not started by then).
    pub until_line: Option<String>,
    /// Restore this snapshot instead of booting (checked by the caller).
    pub restore: Option<std::sync::Arc<snapshot::Snapshot>>,
    /// Once the invocations are done, wait here (the VM running) until released.
    pub hold: Option<std::sync::Arc<hold::Hold>>,
}

/// Boots the image once. Returns when QEMU exits, when the invocations are done (with
/// `stop_after_invoke`), or at the timeout; QEMU is always gone when this returns.
pub fn run(image: &BootImage, opts: &RunOptions) -> Result<BootRun, BootError> {
    let sockets = snapshot::sockets()?;
    let mut spec = match &opts.restore {
        None => {
            let mut spec = image.spec(
                opts.accel,
                opts.memory_mib,
                opts.forwards.clone(),
                opts.interactive,
            );
            spec.control = Some(sockets.path().join("restore"));
            spec
        }
        Some(snap) => snap.restore_spec(image, opts.accel, opts.forwards.clone(), sockets.path()),
    };
    if let Some(c) = &opts.cmdline {
        spec.cmdline = c.clone();
    }
    let memory_mib = spec.memory_mib;
    let mut s = Session::new(Vm::start(&spec, opts.echo)?, opts, memory_mib);
    s.observes = image.manifest.observe.is_some();
    match (&opts.restore, &spec.control) {
        (Some(snap), _) => {
            let channel = snapshot::resume(snap, sockets.path())?;
            s.vm.attach_control(&channel)?;
            s.channel = Some(channel);
            s.resumed = Some(s.vm.started.elapsed());
        }
        (None, Some(path)) => {
            let deadline = s.vm.started + opts.timeout.min(Duration::from_secs(10));
            match snapshot::connect_control(path, deadline, || s.vm.try_exit().is_some()) {
                Ok(Some(c)) => {
                    s.vm.attach_control(&c)?;
                    s.channel = Some(c);
                }
                Ok(None) => s.vm.no_control(),
                Err(e) => {
                    // Not this boot's end: the deadline and the console say what happened.
                    s.control_fault(e.to_string());
                    s.vm.no_control();
                }
            }
        }
        (None, None) => s.vm.no_control(),
    }
    loop {
        // The deadline first, whatever the guest is printing.
        if s.over() {
            break;
        }
        if let Read::Until = s.read() {
            break;
        }
        if let Some(inv) = &opts.invoke {
            if s.invocation_due() {
                let before = s.invocations.len();
                s.invoke(inv);
                let n = s.invocations.len();
                if s.observes && n > before {
                    // Readings that split the cold start from the warm calls.
                    if n == 1 {
                        s.readings.after_first = s.request_metrics();
                    }
                    if n == inv.count {
                        s.readings.after_last = if n == 1 {
                            s.readings.after_first
                        } else {
                            s.request_metrics()
                        };
                    }
                }
                if s.invocations.len() == inv.count && opts.stop_after_invoke {
                    if let Some(h) = &opts.hold {
                        h.arrive(s.vm.pid(), s.vm.started + opts.timeout);
                    }
                    s.linger();
                    break;
                }
            }
        }
    }
    Ok(s.finish(image))
}

/// How long the init gets to answer a metrics request (within the boot's timeout): it answers
/// in milliseconds; this is for a host starved of CPU.
const METRICS_WAIT: Duration = Duration::from_secs(30);

/// After the init said it powers off, how long QEMU gets to exit by itself (a machine without
/// ACPI only halts, and QEMU keeps running).
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);

/// After a call failed, how long the run goes on to hear the init explain it (the runtime's
/// death reaches the host a little after the reset connection does).
const INVOKE_FAIL_GRACE: Duration = Duration::from_secs(2);

/// How long one read waits when nothing is due.
const READ_WAIT: Duration = Duration::from_millis(50);

/// The phases one boot may send (each phase once, and a few spare to name the duplicate).
const MAX_PHASES: usize = 32;

/// The seccomp audit records one boot keeps (the init sends at most 4096).
const MAX_AUDIT_RECORDS: usize = 8192;

/// What reading gave.
enum Read {
    /// Something (recorded).
    Some,
    /// The console line `until_line` asked for (recorded): stop.
    Until,
    /// Nothing within the wait.
    Nothing,
}

/// One boot in progress: the VM, what it said, the invocations made.
struct Session<'a> {
    opts: &'a RunOptions,
    vm: Vm,
    memory_mib: u32,
    console: ConsoleLog,
    phases: Vec<Phase>,
    phase_seen: std::collections::BTreeMap<String, Duration>,
    ending: Ending,
    ended_at: Option<Duration>,
    powered_off_at: Option<Duration>,
    invocations: Vec<Invocation>,
    body_bytes: usize,
    first_response: Option<Duration>,
    last_response: Option<Duration>,
    invoke_error: Option<String>,
    invoke_failed_at: Option<Duration>,
    timed_out: bool,
    runtime_started: bool,
    /// Everything the VM had to say was read: QEMU is gone.
    feed_closed: bool,
    /// A restore: when the VM continued.
    resumed: Option<Duration>,
    /// The control channel (the host's side, for restore messages and metrics requests).
    channel: Option<std::os::unix::net::UnixStream>,
    /// The image observes (`[observe]`): metrics readings are asked for.
    observes: bool,
    readings: Readings,
    memory_peak: Option<u64>,
    mem_available_kib: Option<u64>,
    seccomp_records: Vec<String>,
    hello: bool,
    control_error: Option<String>,
}

impl<'a> Session<'a> {
    fn new(vm: Vm, opts: &'a RunOptions, memory_mib: u32) -> Self {
        Session {
            opts,
            vm,
            memory_mib,
            console: ConsoleLog::default(),
            phases: Vec::new(),
            phase_seen: Default::default(),
            ending: Ending::default(),
            ended_at: None,
            powered_off_at: None,
            invocations: Vec::new(),
            body_bytes: 0,
            first_response: None,
            last_response: None,
            invoke_error: None,
            invoke_failed_at: None,
            timed_out: false,
            runtime_started: false,
            feed_closed: false,
            resumed: None,
            channel: None,
            observes: false,
            readings: Readings::default(),
            memory_peak: None,
            mem_available_kib: None,
            seccomp_records: Vec::new(),
            hello: false,
            control_error: None,
        }
    }

    /// The first thing that went wrong on the control channel is kept.
    fn control_fault(&mut self, why: String) {
        self.control_error.get_or_insert(why);
    }

    /// Records one thing the VM said. Only control messages move the run on.
    fn record(&mut self, feed: Feed) -> bool {
        match feed {
            Feed::Console(t, line) => {
                let until = self
                    .opts
                    .until_line
                    .as_deref()
                    .is_some_and(|u| line.contains(u));
                if let Some(h) = console::hint(&line) {
                    self.ending.observe_hint(&h);
                }
                self.console.push(t, line);
                return until;
            }
            Feed::ControlClosed(_) => {}
            Feed::Control(_, Err(e)) => self.control_fault(e),
            Feed::Control(t, Ok(msg)) => self.control(t, msg),
        }
        false
    }

    fn control(&mut self, t: Duration, msg: Control) {
        // Any message is word from the init (a restored one does not say hello again).
        self.hello = true;
        match msg {
            Control::Hello { format } => {
                if format != stratos_wire::control::CONTROL_FORMAT {
                    self.control_fault(format!(
                        "the init speaks control format {format}, this stratos {}: rebuild the image with this stratos",
                        stratos_wire::control::CONTROL_FORMAT
                    ));
                }
            }
            Control::Phase { name, ns } => {
                if self.phases.len() >= MAX_PHASES {
                    return self.control_fault(format!("more than {MAX_PHASES} phases"));
                }
                // A restored runtime was ready all along; it may be called once the init has
                // reseeded the clone and told it.
                let ready = if self.opts.restore.is_some() {
                    "restored"
                } else {
                    "runtime_ready"
                };
                if name == ready {
                    self.runtime_started = true;
                }
                self.phase_seen.entry(name.clone()).or_insert(t);
                self.phases.push(Phase { name, ns });
            }
            Control::MemoryAvailable { kib } => self.mem_available_kib = Some(kib),
            Control::MemoryPeak { bytes } => {
                self.memory_peak = Some(self.memory_peak.map_or(bytes, |p| p.max(bytes)));
            }
            Control::Metrics(m) => {
                if self.readings.all.len() >= MAX_READINGS {
                    return self
                        .control_fault(format!("more than {MAX_READINGS} metrics readings"));
                }
                self.readings.all.push(*m);
            }
            Control::Restart { count, ending, .. } => {
                if self.ending.restarts.len() < MAX_PHASES {
                    self.ending.restarts.push((t, count, ending));
                }
            }
            Control::Ended { ending } => {
                if self.ending.ended.is_some() {
                    return self.control_fault("the runtime ended twice".into());
                }
                self.ending.ended = Some(ending);
                self.ended_at = Some(t);
            }
            Control::Fatal { message } => {
                self.ending.fatal = Some(stratos_wire::control::printable(message.as_bytes()));
            }
            Control::SeccompLog { record } => {
                if self.seccomp_records.len() < MAX_AUDIT_RECORDS {
                    self.seccomp_records.push(record);
                }
            }
            Control::Lost { count } => {
                self.control_fault(format!("the init lost {count} control messages"));
            }
            Control::PowerOff => {
                self.ending.powered_off = true;
                self.powered_off_at.get_or_insert(t);
            }
        }
    }

    /// Waits briefly for what the VM says next; not at all when an invocation is due (what
    /// arrives keeps its arrival time while a call is in flight, and the call does not wait for
    /// a quiet console).
    fn read(&mut self) -> Read {
        let wait = if self.invocation_due() {
            Duration::ZERO
        } else {
            READ_WAIT
        };
        match self.vm.next(wait) {
            Ok(f) => {
                if self.record(f) {
                    Read::Until
                } else {
                    Read::Some
                }
            }
            Err(closed) => {
                self.feed_closed |= closed;
                Read::Nothing
            }
        }
    }

    /// Whether an invocation should be made now.
    fn invocation_due(&self) -> bool {
        self.opts.invoke.as_ref().is_some_and(|inv| {
            self.runtime_started
                && self.invocations.len() < inv.count
                && self.invoke_error.is_none()
                && !self.runtime_failed()
        })
    }

    /// The runtime did not stay up: it ended, was restarted, or the init gave up. A run that
    /// calls the function has failed then, and ends at once.
    fn runtime_failed(&self) -> bool {
        self.ending.ended.is_some()
            || !self.ending.restarts.is_empty()
            || self.ending.fatal.is_some()
            || self.ending.panic.is_some()
    }

    /// Whether the boot is over: everything QEMU said was read (it exited), the init powered
    /// off (QEMU gets a moment to exit by itself), the kernel halted, the timeout, or a stop
    /// signal. Checked before every read.
    fn over(&mut self) -> bool {
        if self.feed_closed {
            return true;
        }
        if self.ending.halted || stop_requested() {
            return true;
        }
        if self.opts.invoke.is_some() && self.runtime_failed() {
            return true;
        }
        // A call failed: the run has failed; a moment more to hear the init say why.
        if let Some(t) = self.invoke_failed_at {
            if self.vm.started.elapsed() > t + INVOKE_FAIL_GRACE {
                return true;
            }
        }
        let now = self.vm.started.elapsed();
        if let Some(t) = self.powered_off_at {
            if self.vm.try_exit().is_some() || now > t + POWER_OFF_GRACE {
                return true;
            }
        }
        if now > self.opts.timeout {
            self.timed_out = true;
            return true;
        }
        false
    }

    /// One HTTP GET to the function. A function not listening yet (QEMU accepts the connection
    /// and drops it) is retried by the loop; any other failure ends the invocations.
    fn invoke(&mut self, inv: &Invoke) {
        use crate::http::HttpError;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, inv.host_port));
        let sent = self.vm.started.elapsed();
        // The call never outlives the run's deadline.
        let left = self.opts.timeout.saturating_sub(sent);
        let limit = Duration::from_secs(5)
            .min(left)
            .max(Duration::from_millis(1));
        match crate::http::get(addr, &inv.path, limit) {
            Ok(mut resp) => {
                let done = self.vm.started.elapsed();
                self.first_response.get_or_insert(done);
                self.last_response = Some(done);
                if self.body_bytes + resp.body.len() > MAX_BODIES {
                    resp.body.clear();
                }
                self.body_bytes += resp.body.len();
                self.invocations.push(Invocation {
                    sent_ms: sent.as_secs_f64() * 1e3,
                    latency_ms: (done - sent).as_secs_f64() * 1e3,
                    status: resp.status,
                    body: resp.body,
                });
            }
            Err(HttpError::Empty(_) | HttpError::Connect(..)) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(HttpError::Io(..) | HttpError::TimedOut { .. })
                if self.first_response.is_none() =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                self.invoke_error =
                    Some(stratos_wire::control::printable(e.to_string().as_bytes()));
                self.invoke_failed_at = Some(self.vm.started.elapsed());
            }
        }
    }

    /// Asks the init for a metrics reading and waits for it (following the VM meanwhile);
    /// returns its index in the readings. A reading that does not come is recorded as the
    /// readings' error.
    fn request_metrics(&mut self) -> Option<usize> {
        use std::io::Write;
        let seen = self.readings.all.len();
        let line = format!("{}\n", stratos_wire::METRICS_REQUEST);
        let sent = match self.channel.as_mut() {
            Some(c) => c.write_all(line.as_bytes()).map_err(|e| e.to_string()),
            None => Err("no control channel to the init".into()),
        };
        if let Err(e) = sent {
            self.readings.error = Some(format!("cannot ask the init for metrics: {e}"));
            return None;
        }
        let asked = self.vm.started.elapsed();
        let deadline = (asked + METRICS_WAIT).min(self.opts.timeout);
        while self.vm.started.elapsed() < deadline && !stop_requested() && !self.feed_closed {
            if self.control_error.is_some() {
                break;
            }
            if let Some(i) = (seen..self.readings.all.len())
                .find(|&i| self.readings.all[i].reason == stratos_wire::MetricsReason::Request)
            {
                return Some(i);
            }
            match self.vm.next(Duration::from_millis(20)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(closed) => self.feed_closed |= closed,
            }
        }
        self.readings.error = Some(format!(
            "the init did not answer a metrics request within {:.1} s",
            (self.vm.started.elapsed() - asked).as_secs_f64()
        ));
        None
    }

    /// Keeps following the VM for `linger` (within the deadline): the runtime must stay alive
    /// through it, and what the init reports after the calls is recorded.
    fn linger(&mut self) {
        let until = (self.vm.started.elapsed() + self.opts.linger).min(self.opts.timeout);
        while self.vm.started.elapsed() < until && !self.feed_closed && !stop_requested() {
            match self.vm.next(Duration::from_millis(20)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(closed) => self.feed_closed |= closed,
            }
        }
    }

    /// Stops QEMU, reads what it still had to say (briefly, and bounded), and sums up the boot.
    fn finish(mut self, image: &BootImage) -> BootRun {
        let stopped_at = self.vm.started.elapsed();
        self.vm.stop();
        drop(self.channel.take());
        let drain_until = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < drain_until {
            match self.vm.next(Duration::from_millis(100)) {
                Ok(f) => {
                    self.record(f);
                }
                Err(_) => break,
            }
        }
        BootRun {
            accel: self.opts.accel,
            machine: image.machine,
            memory_mib: self.memory_mib,
            phases: console::check_phases(&self.phases),
            phase_seen: self.phase_seen,
            lines: self.console.lines(),
            ending: self.ending,
            ended_at: self.ended_at,
            invocations: self.invocations,
            first_response: self.first_response,
            last_response: self.last_response,
            wall: stopped_at,
            timed_out: self.timed_out,
            invoke_error: self.invoke_error,
            resumed: self.resumed,
            readings: self.readings,
            memory_peak: self.memory_peak,
            mem_available_kib: self.mem_available_kib,
            seccomp_records: self.seccomp_records,
            hello: self.hello,
            control_error: self.control_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u64, total: u64, read: u64) -> stratos_wire::Metrics {
        let mut m = stratos_wire::Metrics::from_json(&format!(
            r#"{{"reason":"request","seq":{seq},"stratos.time_ns":{seq},"faas.coldstart":true,"stratos.restarts":0,"stratos.phases_ns":{{}},"stratos.syscalls":{{"read":{read}}},"stratos.syscalls.total":{total}}}"#
        ))
        .unwrap();
        m.mem_usage = Some(1 << 20);
        m
    }

    #[test]
    fn readings_that_cannot_be_true_of_one_boot_are_refused() {
        let ok = Readings {
            all: vec![reading(1, 5, 5), reading(2, 9, 9)],
            ..Readings::default()
        };
        assert_eq!(ok.check(256), Ok(()));
        let down = Readings {
            all: vec![reading(1, 9, 9), reading(2, 5, 5)],
            ..Readings::default()
        };
        assert!(down.check(256).unwrap_err().contains("went down"));
        let sum = Readings {
            all: vec![reading(1, 7, 5)],
            ..Readings::default()
        };
        assert!(sum.check(256).unwrap_err().contains("not the sum"));
        let seq = Readings {
            all: vec![reading(1, 5, 5), reading(3, 9, 9)],
            ..Readings::default()
        };
        assert!(seq.check(256).unwrap_err().contains("numbered"));
        // A restored clone's first reading is not its boot's first.
        let restored = Readings {
            all: vec![reading(2, 5, 5), reading(3, 9, 9)],
            ..Readings::default()
        };
        assert_eq!(restored.check(256), Ok(()));
        let mut big = reading(1, 5, 5);
        big.mem_usage = Some(1 << 40);
        let big = Readings {
            all: vec![big],
            ..Readings::default()
        };
        assert!(big.check(256).unwrap_err().contains("more than the VM"));
    }

    #[test]
    fn the_console_log_keeps_its_ends_within_bounds() {
        let mut c = ConsoleLog::default();
        let line = "x".repeat(1000);
        for i in 0..10_000 {
            c.push(Duration::from_millis(i), format!("{i} {line}"));
        }
        let lines = c.lines();
        let bytes: usize = lines.iter().map(|(_, l)| l.len()).sum();
        assert!(bytes <= 2 * CONSOLE_KEEP + 200, "{bytes}");
        assert!(lines[0].1.starts_with("0 "));
        assert!(lines.last().unwrap().1.starts_with("9999 "));
        assert!(lines
            .iter()
            .any(|(_, l)| l.contains("console lines") && l.contains("left out")));
    }
}
