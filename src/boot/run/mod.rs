//! Running one boot (or one restore of a snapshot): QEMU started, its control channel
//! connected, the VM followed until it is over, the function called on the way, and what it all
//! produced summed up in a [`BootRun`].

mod console_log;
mod outcome;
mod readings;
mod session;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use console_log::{ConsoleLog, CONSOLE_KEEP};
pub use outcome::{BootRun, Invocation, MAX_BODIES};
pub use readings::{Readings, MAX_READINGS};

use super::image::BootImage;
use super::snapshot::Snapshot;
use super::vm::control::sockets;
use super::vm::hold::Hold;
use super::vm::{Accel, Forward, Vm, VmSpec};
use super::BootError;
pub(crate) use session::NO_NETWORK;
use session::{Read, Session};

/// Function calls to make once the runtime is up.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// Host port forwarded to the function's port.
    pub host_port: u16,
    pub path: String,
    pub count: usize,
    /// The body of a POST (a Lambda function's event, `--event`); `None`: a GET.
    pub event: Option<Vec<u8>>,
}

/// The path a Lambda function (`[init] interface = "lambda"`) is invoked on: the Runtime
/// Interface Emulator's.
pub const LAMBDA_INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// The largest event `--event` sends: Lambda's (and RIE's) limit for a synchronous invocation.
pub const MAX_EVENT_BYTES: u64 = 6 * 1024 * 1024 + 100;

/// `--event FILE|JSON`: the file's bytes when a file of that name exists (at most
/// [`MAX_EVENT_BYTES`]), else the argument itself, which must be JSON.
pub fn read_event(arg: &str) -> Result<Vec<u8>, String> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        return crate::fsio::read_regular(
            path,
            MAX_EVENT_BYTES,
            "an event",
            crate::fsio::Links::Follow,
        )
        .map_err(|e| format!("--event {}: {e}", crate::fsio::Shown(path)));
    }
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(_) => Ok(arg.as_bytes().to_vec()),
        Err(e) => Err(format!(
            "--event: {arg:?} is neither a file nor JSON ({e}); give a file's path or a JSON document such as '{{\"name\":\"world\"}}'"
        )),
    }
}

/// How to run one boot.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub accel: Accel,
    pub memory_mib: u32,
    pub forwards: Vec<Forward>,
    pub timeout: Duration,
    /// The console lines copied to stdout as they arrive.
    pub echo: super::vm::Echo,
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
    pub restore: Option<Arc<Snapshot>>,
    /// Once the invocations are done, wait here (the VM running) until released.
    pub hold: Option<Arc<Hold>>,
}
/// Boots the image once. Returns when QEMU exits, when the invocations are done (with
/// `stop_after_invoke`), or at the timeout; QEMU is always gone when this returns.
pub fn run(image: &BootImage, opts: &RunOptions) -> Result<BootRun, BootError> {
    let sockets = sockets()?;
    let spec = vm_spec(image, opts, sockets.path());
    let mut s = Session::new(Vm::start(&spec, opts.echo)?, opts, spec.memory_mib);
    s.observes = image.manifest.observe.is_some();
    s.connect(&spec, sockets.path())?;
    loop {
        // The deadline first, whatever the guest is printing.
        if s.over() {
            break;
        }
        if let Read::Until = s.read() {
            break;
        }
        if let Some(inv) = &opts.invoke {
            if s.invocation_due() && s.call(inv) {
                break;
            }
        }
    }
    Ok(s.finish(image))
}

/// What QEMU runs: the image, booted with a control channel at `sockets`, or the snapshot
/// restored; with the command line the options give.
fn vm_spec(image: &BootImage, opts: &RunOptions, sockets: &Path) -> VmSpec {
    let mut spec = match &opts.restore {
        None => {
            let mut spec = image.spec(
                opts.accel,
                opts.memory_mib,
                opts.forwards.clone(),
                opts.interactive,
            );
            spec.control = Some(sockets.join("restore"));
            spec
        }
        Some(snap) => snap.restore_spec(image, opts.accel, opts.forwards.clone(), sockets),
    };
    if let Some(c) = &opts.cmdline {
        spec.cmdline = c.clone();
    }
    spec
}
