//! Booting images under QEMU: one boot with its console, phases and invocations.

pub mod bench;
pub mod console;
pub mod qemu;
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
}

impl BootError {
    /// QEMU missing or failing to start, host I/O: not the image's fault.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Qemu(_) | Self::Io(_))
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
}

/// Boots the image once. Returns when QEMU exits, when the invocations are done (with
/// `stop_after_invoke`), or at the timeout; QEMU is always gone when this returns.
pub fn run(image: &BootImage, opts: &RunOptions) -> Result<BootRun, BootError> {
    let mut spec = image.spec(
        opts.accel,
        opts.memory_mib,
        opts.forwards.clone(),
        opts.interactive,
    );
    if let Some(c) = &opts.cmdline {
        spec.cmdline = c.clone();
    }
    let mut vm = Vm::start(&spec, opts.echo)?;
    let mut lines = Vec::new();
    let mut ending = Ending::default();
    let mut invocations = Vec::new();
    let mut first_response = None;
    let mut invoke_error = None;
    let mut timed_out = false;
    let mut runtime_started = false;
    let mut console_closed = false;
    let invoke_timeout = Duration::from_secs(5);

    let record = |line: (Duration, String),
                  lines: &mut Vec<(Duration, String)>,
                  ending: &mut Ending,
                  started: &mut bool| {
        if let Some(e) = console::parse_line(&line.1) {
            if let Event::Phase { name, .. } = &e {
                if name == "runtime_ready" {
                    *started = true;
                }
            }
            ending.observe(&e);
        }
        lines.push(line);
    };

    loop {
        // Drain what the console has said.
        let wait = if opts.invoke.is_some() && runtime_started {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        };
        match vm.next_line(wait) {
            Ok(l) => {
                let stop = opts.until_line.as_deref().is_some_and(|u| l.1.contains(u));
                record(l, &mut lines, &mut ending, &mut runtime_started);
                if stop {
                    break;
                }
                continue;
            }
            Err(closed) => console_closed |= closed,
        }
        if vm.try_exit().is_some() && console_closed {
            break;
        }
        // The guest halted itself: nothing more can happen (QEMU stays up when the machine
        // cannot power off, e.g. microvm without ACPI). Stop it.
        if ending.halted {
            break;
        }
        if vm.started.elapsed() > opts.timeout {
            timed_out = true;
            break;
        }
        if stop_requested() {
            break;
        }
        if ending.fatal.is_some() || ending.panic.is_some() {
            // Give the guest a moment to power off by itself, then stop.
            continue;
        }
        if let Some(inv) = &opts.invoke {
            if runtime_started && invocations.len() < inv.count && invoke_error.is_none() {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, inv.host_port));
                let sent = vm.started.elapsed();
                match crate::http::get(addr, &inv.path, invoke_timeout) {
                    Ok(resp) => {
                        let done = vm.started.elapsed();
                        if first_response.is_none() {
                            first_response = Some(done);
                        }
                        invocations.push(Invocation {
                            sent_ms: sent.as_secs_f64() * 1e3,
                            latency_ms: (done - sent).as_secs_f64() * 1e3,
                            status: resp.status,
                            body: resp.body,
                        });
                    }
                    // Not listening yet: QEMU accepts the connection and then drops it.
                    Err(crate::http::HttpError::Empty(_))
                    | Err(crate::http::HttpError::Connect(..)) => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e)
                        if first_response.is_none()
                            && matches!(
                                e,
                                crate::http::HttpError::Io(..)
                                    | crate::http::HttpError::TimedOut { .. }
                            ) =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => invoke_error = Some(e.to_string()),
                }
                if invocations.len() == inv.count && opts.stop_after_invoke {
                    let until = vm.started.elapsed() + opts.linger;
                    while vm.started.elapsed() < until {
                        match vm.next_line(Duration::from_millis(20)) {
                            Ok(l) => record(l, &mut lines, &mut ending, &mut runtime_started),
                            Err(true) => break,
                            Err(false) => {}
                        }
                    }
                    break;
                }
            }
        }
    }
    let stopped_at = vm.started.elapsed();
    vm.stop();
    // Whatever the console still had buffered.
    while let Ok(l) = vm.next_line(Duration::from_millis(100)) {
        record(l, &mut lines, &mut ending, &mut runtime_started);
    }
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    Ok(BootRun {
        accel: opts.accel,
        machine: image.machine,
        phases: console::phases(&text),
        lines,
        ending,
        invocations,
        first_response,
        wall: stopped_at,
        timed_out,
        invoke_error,
    })
}
