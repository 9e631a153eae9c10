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
use console::{Ending, Event, Phase};
use qemu::{Accel, Forward, Machine, Vm, VmSpec};

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
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct BootRun {
    pub accel: Accel,
    pub machine: Machine,
    /// Console lines with the time since QEMU was spawned.
    pub lines: Vec<(Duration, String)>,
    pub phases: Result<Vec<Phase>, console::PhaseError>,
    pub ending: Ending,
    pub invocations: Vec<Invocation>,
    /// Time from spawning QEMU to the first complete answer (the cold start seen by a caller).
    pub first_response: Option<Duration>,
    /// Time from spawning QEMU until it exited (or was stopped).
    pub wall: Duration,
    pub timed_out: bool,
    /// Why invoking failed, if it did.
    pub invoke_error: Option<String>,
    /// A restore: time from spawning QEMU until the restored VM continued.
    pub resumed: Option<Duration>,
    /// The init's `stratos-metrics` lines (`[observe]`).
    pub readings: Readings,
}

/// The `stratos-metrics` lines of one boot, and which of them the harness asked for.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Every metrics line, in order.
    pub all: Vec<stratos_wire::Metrics>,
    /// Why lines that looked like metrics lines were not.
    pub malformed: Vec<String>,
    /// The reading asked for after the first answer (index in `all`): the cold start.
    pub after_first: Option<usize>,
    /// The reading asked for after the last answer.
    pub after_last: Option<usize>,
    /// Why a reading asked for did not come.
    pub error: Option<String>,
}

impl Readings {
    /// The reading the init printed at `runtime_ready`.
    pub fn ready(&self) -> Option<&stratos_wire::Metrics> {
        self.all
            .iter()
            .find(|m| m.reason == stratos_wire::MetricsReason::Ready)
    }
}

impl BootRun {
    /// Why a boot did not produce what was expected, from its console.
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
        if let Some(e) = &r.invoke_error {
            return e.clone();
        }
        if r.timed_out {
            return format!("timed out after {:.0} s", r.wall.as_secs_f64());
        }
        if let Some(c) = r.ending.exit_code() {
            return format!("the runtime ended with exit code {c} before answering");
        }
        "the VM stopped without the runtime reporting how it ended".into()
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
    /// How long to keep reading the console after the invocations before stopping.
    pub linger: Duration,
    /// Boot with this kernel command line instead of the image's (e.g. a profile boot).
    pub cmdline: Option<String>,
    /// Stop the VM once a console line contains this.
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
    let observes = image.manifest.observe.is_some();
    let mut spec = match &opts.restore {
        None => {
            let mut spec = image.spec(
                opts.accel,
                opts.memory_mib,
                opts.forwards.clone(),
                opts.interactive,
            );
            if observes {
                spec.control = Some(sockets.path().join("restore"));
            }
            spec
        }
        Some(snap) => snap.restore_spec(image, opts.accel, opts.forwards.clone(), sockets.path()),
    };
    if let Some(c) = &opts.cmdline {
        spec.cmdline = c.clone();
    }
    let mut s = Session::new(Vm::start(&spec, opts.echo)?, opts);
    s.observes = observes;
    match (&opts.restore, &spec.control) {
        (Some(snap), _) => {
            s.channel = Some(snapshot::resume(snap, sockets.path())?);
            s.resumed = Some(s.vm.started.elapsed());
        }
        (None, Some(path)) => {
            s.channel = snapshot::connect_control(path, || s.vm.try_exit().is_some())?;
        }
        (None, None) => {}
    }
    loop {
        // Drain what the console has said first.
        match s.read_line() {
            Read::Line => continue,
            Read::Until => break,
            Read::Nothing => {}
        }
        if s.over() {
            break;
        }
        if s.ending.fatal.is_some() || s.ending.panic.is_some() {
            // Give the guest a moment to power off by itself, then stop.
            continue;
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

/// What reading the console gave.
enum Read {
    /// A line (recorded).
    Line,
    /// The line `until_line` asked for (recorded): stop.
    Until,
    /// Nothing within the wait.
    Nothing,
}

/// One boot in progress: the VM, what its console said, the invocations made.
struct Session<'a> {
    opts: &'a RunOptions,
    vm: Vm,
    lines: Vec<(Duration, String)>,
    ending: Ending,
    invocations: Vec<Invocation>,
    first_response: Option<Duration>,
    invoke_error: Option<String>,
    timed_out: bool,
    runtime_started: bool,
    console_closed: bool,
    /// A restore: when the VM continued.
    resumed: Option<Duration>,
    /// The restore channel (a restore, or an image that observes).
    channel: Option<std::os::unix::net::UnixStream>,
    /// The image observes (`[observe]`): metrics readings are asked for.
    observes: bool,
    readings: Readings,
}

impl<'a> Session<'a> {
    fn new(vm: Vm, opts: &'a RunOptions) -> Self {
        Session {
            opts,
            vm,
            lines: Vec::new(),
            ending: Ending::default(),
            invocations: Vec::new(),
            first_response: None,
            invoke_error: None,
            timed_out: false,
            runtime_started: false,
            console_closed: false,
            resumed: None,
            channel: None,
            observes: false,
            readings: Readings::default(),
        }
    }

    fn record(&mut self, line: (Duration, String)) {
        if let Some(m) = console::metrics(&line.1) {
            match m {
                Ok(m) => self.readings.all.push(m),
                Err(e) => self.readings.malformed.push(e),
            }
        }
        if let Some(e) = console::parse_line(&line.1) {
            // A restored runtime was ready all along; it may be called once the init has
            // reseeded the clone and told it.
            let ready = if self.opts.restore.is_some() {
                "restored"
            } else {
                "runtime_ready"
            };
            if matches!(&e, Event::Phase { name, .. } if name == ready) {
                self.runtime_started = true;
            }
            self.ending.observe(&e);
        }
        self.lines.push(line);
    }

    /// Waits briefly for a console line; not at all when an invocation is due (the lines keep
    /// their arrival times while a call is in flight, and the call does not wait for a quiet
    /// console).
    fn read_line(&mut self) -> Read {
        let due = self.invocation_due();
        let wait = if due {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        match self.vm.next_line(wait) {
            Ok(l) => {
                let until = self
                    .opts
                    .until_line
                    .as_deref()
                    .is_some_and(|u| l.1.contains(u));
                self.record(l);
                if until {
                    Read::Until
                } else {
                    Read::Line
                }
            }
            Err(closed) => {
                self.console_closed |= closed;
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
        })
    }

    /// Whether the boot is over: QEMU exited and its console is read, the guest halted (QEMU
    /// stays up when the machine cannot power off, e.g. microvm without ACPI), the timeout, or
    /// a stop signal.
    fn over(&mut self) -> bool {
        if self.vm.try_exit().is_some() && self.console_closed {
            return true;
        }
        if self.ending.halted || stop_requested() {
            return true;
        }
        if self.vm.started.elapsed() > self.opts.timeout {
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
        match crate::http::get(addr, &inv.path, Duration::from_secs(5)) {
            Ok(resp) => {
                let done = self.vm.started.elapsed();
                self.first_response.get_or_insert(done);
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
            Err(e) => self.invoke_error = Some(e.to_string()),
        }
    }

    /// Asks the init for a metrics reading and waits for it (reading the console meanwhile);
    /// returns its index in the readings. A reading that does not come is recorded as the
    /// readings' error.
    fn request_metrics(&mut self) -> Option<usize> {
        use std::io::Write;
        let seen = self.readings.all.len();
        let line = format!("{}\n", stratos_wire::METRICS_REQUEST);
        let sent = match self.channel.as_mut() {
            Some(c) => c.write_all(line.as_bytes()).map_err(|e| e.to_string()),
            None => Err("no restore channel to the init".into()),
        };
        if let Err(e) = sent {
            self.readings.error = Some(format!("cannot ask the init for metrics: {e}"));
            return None;
        }
        let asked = self.vm.started.elapsed();
        let deadline = (asked + METRICS_WAIT).min(self.opts.timeout);
        let malformed = self.readings.malformed.len();
        while self.vm.started.elapsed() < deadline && !stop_requested() {
            if let Some(e) = self.readings.malformed.get(malformed) {
                self.readings.error =
                    Some(format!("the init answered a metrics request with a {e}"));
                return None;
            }
            if let Some(i) = (seen..self.readings.all.len())
                .find(|&i| self.readings.all[i].reason == stratos_wire::MetricsReason::Request)
            {
                return Some(i);
            }
            match self.vm.next_line(Duration::from_millis(20)) {
                Ok(l) => self.record(l),
                Err(true) => break,
                Err(false) => {}
            }
        }
        self.readings.error = Some(format!(
            "the init did not answer a metrics request within {:.1} s",
            (self.vm.started.elapsed() - asked).as_secs_f64()
        ));
        None
    }

    /// Keeps reading the console for `linger` (what the init reports after the calls).
    fn linger(&mut self) {
        let until = self.vm.started.elapsed() + self.opts.linger;
        while self.vm.started.elapsed() < until {
            match self.vm.next_line(Duration::from_millis(20)) {
                Ok(l) => self.record(l),
                Err(true) => break,
                Err(false) => {}
            }
        }
    }

    /// Stops QEMU, reads what its console still had buffered, and sums up the boot.
    fn finish(mut self, image: &BootImage) -> BootRun {
        let stopped_at = self.vm.started.elapsed();
        self.vm.stop();
        drop(self.channel.take());
        while let Ok(l) = self.vm.next_line(Duration::from_millis(100)) {
            self.record(l);
        }
        let text: String = self.lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        BootRun {
            accel: self.opts.accel,
            machine: image.machine,
            phases: console::phases(&text),
            lines: self.lines,
            ending: self.ending,
            invocations: self.invocations,
            first_response: self.first_response,
            wall: stopped_at,
            timed_out: self.timed_out,
            invoke_error: self.invoke_error,
            resumed: self.resumed,
            readings: self.readings,
        }
    }
}
