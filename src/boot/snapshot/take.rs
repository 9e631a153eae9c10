//! Taking a snapshot: boot the image with its RAM in a file, wait until the runtime is ready
//! (and warm), pause the VM and save its device state, describe and sign it, and put the
//! directory in place.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::dir::{check_out, create_private, replace, stage, write_private};
use super::migration::save_state;
use super::{
    file_digest, io, manifest_sha256, SnapshotError, SnapshotImage, SnapshotMeta, FORMAT,
    MEMORY_FILE, SIGNATURE_FILE, SNAPSHOT_FILE, STATE_FILE,
};
use crate::boot::image::BootImage;
use crate::boot::vm::console;
use crate::boot::vm::control::{connect_channel, sockets};
use crate::boot::vm::qemu::qemu_version;
use crate::boot::vm::qmp::Qmp;
use crate::boot::vm::{free_port, Accel, Feed, Forward, SnapshotVm, Vm, VmSpec};
use crate::sign::manifest::signature_file;
use crate::sign::SecretKey;

/// What `stratos snapshot` is asked.
pub struct CreateOptions<'a> {
    pub out: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub guest_port: u16,
    pub warm: Vec<String>,
    pub timeout: Duration,
    pub sign_key: Option<&'a SecretKey>,
    /// Which console lines are copied to stdout.
    pub echo: crate::boot::vm::Echo,
}

/// Boots the image with its RAM in a file, waits for `runtime_ready` and the warm-up calls,
/// pauses it and saves its device state; writes the snapshot directory in one rename.
pub fn create(image: &BootImage, o: &CreateOptions) -> Result<SnapshotMeta, SnapshotError> {
    check_out(&o.out)?;
    let staging = stage(&o.out)?;
    let socks = sockets()?;
    let vm = Saving::boot(image, o, staging.path(), socks.path())
        .and_then(|mut vm| {
            vm.wait_ready(o)?;
            vm.save(&staging.path().join(STATE_FILE))?;
            Ok(vm)
        })
        .map_err(|e| out_of_space(staging.path(), e))?;
    let meta = describe(image, o, &vm.spec, staging.path())?;
    let bytes = meta.to_canonical();
    write_private(&staging.path().join(SNAPSHOT_FILE), &bytes)?;
    if let Some(key) = o.sign_key {
        write_private(
            &staging.path().join(SIGNATURE_FILE),
            &signature_file(key, &bytes),
        )?;
    }
    replace(staging, &o.out)?;
    Ok(meta)
}

/// QEMU writes the guest's RAM into the staging directory's memory file as the guest touches
/// it, and the state through `cat`: on a full file system QEMU dies (SIGBUS on the mapped file)
/// or the migration fails, and neither says why. When the file system holding the snapshot has
/// (almost) no room left, that is the error reported (exit 3, the host's), with what QEMU said.
fn out_of_space(staging: &Path, e: SnapshotError) -> SnapshotError {
    match rustix::fs::statvfs(staging) {
        Ok(st) if st.f_bavail.saturating_mul(st.f_frsize) < 1 << 20 => SnapshotError::Io {
            what: format!(
                "saving the snapshot in {} ({e}): its file system is full",
                staging.parent().unwrap_or(Path::new(".")).display()
            ),
            source: std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        },
        _ => e,
    }
}

/// The VM being snapshotted: booted with its RAM in the staging directory's memory file.
struct Saving {
    vm: Vm,
    qmp: Qmp,
    /// The control channel, held from boot to save (see [`Saving::boot`]).
    channel: std::os::unix::net::UnixStream,
    spec: VmSpec,
    /// The host port forwarded to the function (for the warm-up calls).
    host_port: u16,
    /// The warm-up calls' body: `{}` for a Lambda function (each is an invocation, POSTed);
    /// `None`: GETs.
    warm_event: Option<Vec<u8>>,
}

impl Saving {
    fn boot(
        image: &BootImage,
        o: &CreateOptions,
        staging: &Path,
        sockets: &Path,
    ) -> Result<Saving, SnapshotError> {
        let host_port = free_port().map_err(io("finding a free port"))?;
        let mut spec = image.spec(
            o.accel,
            o.memory_mib,
            vec![Forward {
                host: host_port,
                guest: o.guest_port,
            }],
            false,
        );
        let memory = staging.join(MEMORY_FILE);
        // Created 0600 before QEMU opens it: the guest's memory is never readable by others.
        create_private(&memory)?;
        spec.snapshot = Some(SnapshotVm {
            memory_file: memory,
            share: true,
            qmp: sockets.join("qmp"),
            restore_channel: sockets.join("restore"),
            incoming: false,
        });
        spec.cmdline = spec.full_cmdline();
        let mut vm = Vm::start(&spec, o.echo)?;
        let qmp = Qmp::connect(&sockets.join("qmp"), Duration::from_secs(10))?;
        // Connected before the guest opens the control port and kept until the VM is saved:
        // the port's "host connected" state travels in the snapshot, so every restore's init
        // sits blocked in read() until its restore message arrives.
        let channel = connect_channel(&sockets.join("restore"))?;
        vm.attach_control(&channel)
            .map_err(io("reading the control channel"))?;
        Ok(Saving {
            vm,
            qmp,
            channel,
            spec,
            host_port,
            warm_event: image.default_call().1,
        })
    }

    /// `runtime_ready`, the warm-up calls, and a quiet console.
    fn wait_ready(&mut self, o: &CreateOptions) -> Result<(), SnapshotError> {
        let mut state = Readiness::default();
        wait_ready(&mut self.vm, &mut state, o.timeout)?;
        for path in &o.warm {
            let call = Call {
                host: self.host_port,
                path,
                event: self.warm_event.as_deref(),
            };
            warm(&mut self.vm, &mut state, &call, o.timeout)?;
        }
        settle(&mut self.vm, &mut state)
    }

    /// Pauses the VM, writes its device state to `state` (the RAM stays in its file), stops
    /// QEMU and flushes both files to disk.
    fn save(&mut self, state: &Path) -> Result<(), SnapshotError> {
        create_private(state)?;
        self.qmp.execute("stop", json!({}))?;
        save_state(&mut self.qmp, state)?;
        self.vm.stop();
        let _ = self.channel.shutdown(std::net::Shutdown::Both);
        let memory = &self
            .spec
            .snapshot
            .as_ref()
            .expect("a snapshot VM")
            .memory_file;
        for p in [memory.as_path(), state] {
            std::fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(io(format!("flushing {}", p.display())))?;
        }
        Ok(())
    }
}

/// `snapshot.json` for the saved files.
fn describe(
    image: &BootImage,
    o: &CreateOptions,
    spec: &VmSpec,
    staging: &Path,
) -> Result<SnapshotMeta, SnapshotError> {
    Ok(SnapshotMeta {
        format: FORMAT,
        image: SnapshotImage {
            name: image.manifest.image.name.clone(),
            version: image.manifest.image.version.clone(),
            manifest_sha256: manifest_sha256(image)?,
        },
        qemu_version: qemu_version(spec.arch)?,
        machine: spec.machine_line(),
        memory_mib: o.memory_mib,
        accel: o.accel.name().to_owned(),
        cmdline: spec.cmdline.clone(),
        guest_port: o.guest_port,
        warm: o.warm.clone(),
        files: [MEMORY_FILE, STATE_FILE]
            .iter()
            .map(|n| {
                file_digest(
                    staging,
                    &crate::sign::manifest::ArtifactName::from_static(n),
                )
            })
            .collect::<Result<_, _>>()?,
    })
}

/// Follows the VM until it has been quiet for a moment (at most a few seconds): a line still
/// on its way out when the VM is saved would be printed again by every restore.
fn settle(vm: &mut Vm, state: &mut Readiness) -> Result<(), SnapshotError> {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match vm.next(Duration::from_millis(250)) {
            Ok(f) => state.observe(f)?,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// What the control channel said so far while a snapshot is being made: whether the runtime
/// is ready, and whether it is still alive (the console is never read for either).
#[derive(Debug, Default)]
struct Readiness {
    ready: bool,
    /// The init said it set up no network: no warm-up call can reach the function.
    no_network: bool,
}

impl Readiness {
    /// Takes one thing the VM said; the runtime's end, a restart, a fatal error or a broken
    /// channel is an error naming it (a snapshot of a runtime that is not up is worthless).
    fn observe(&mut self, f: Feed) -> Result<(), SnapshotError> {
        use stratos_wire::Control;
        let not_ready = |why: String| Err(SnapshotError::NotReady(why));
        match f {
            Feed::Console(_, line) => match console::hint(&line) {
                Some(console::Hint::KernelPanic(p)) => {
                    not_ready(format!("the kernel panicked: {p}"))
                }
                Some(console::Hint::RootCorrupted(c)) => {
                    not_ready(format!("root filesystem failed verification: {c}"))
                }
                _ => Ok(()),
            },
            Feed::ControlClosed(_) => not_ready("the control channel closed".into()),
            Feed::Control(_, Err(e)) => not_ready(format!("the control channel: {e}")),
            Feed::Control(_, Ok(m)) => match m {
                Control::Phase { name, .. } if name == "runtime_ready" => {
                    self.ready = true;
                    Ok(())
                }
                Control::Fatal { message } => not_ready(format!(
                    "the init failed: {}",
                    stratos_wire::control::printable(message.as_bytes())
                )),
                Control::Ended { ending } => not_ready(format!(
                    "the runtime ended (exit code {})",
                    ending.exit_code()
                )),
                Control::Restart { ending, .. } => not_ready(format!(
                    "the runtime ended (exit code {}) and is restarting",
                    ending.exit_code()
                )),
                Control::Lost { count } => {
                    not_ready(format!("the init lost {count} control messages"))
                }
                Control::PowerOff => not_ready("the init powered off".into()),
                Control::Network { configured } => {
                    self.no_network = !configured;
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }
}

/// Follows the VM until `runtime_ready`; a panic, a fatal init error or the runtime ending
/// is an error naming it.
fn wait_ready(vm: &mut Vm, state: &mut Readiness, timeout: Duration) -> Result<(), SnapshotError> {
    let start = Instant::now();
    while !state.ready {
        if start.elapsed() > timeout {
            return Err(SnapshotError::NotReady(format!(
                "no runtime_ready within {timeout:?}"
            )));
        }
        match vm.next(Duration::from_millis(50)) {
            Ok(f) => state.observe(f)?,
            Err(true) => return Err(SnapshotError::NotReady(qemu_exited(vm))),
            Err(false) => {}
        }
    }
    Ok(())
}

/// Why QEMU went away, for a message: its exit status (the console, kept by the caller, says
/// the rest).
fn qemu_exited(vm: &mut Vm) -> String {
    match vm.try_exit() {
        Some(s) => format!("QEMU exited ({s})"),
        None => "QEMU closed its outputs".into(),
    }
}

/// A warm-up call: a GET of `path`, or a POST of `event` to it, through host port `host`.
struct Call<'a> {
    host: u16,
    path: &'a str,
    event: Option<&'a [u8]>,
}

/// One warm-up call, retried until the function answers (it may still be starting its
/// listener): lazy imports and JIT happen before the save.
fn warm(
    vm: &mut Vm,
    state: &mut Readiness,
    call: &Call<'_>,
    timeout: Duration,
) -> Result<(), SnapshotError> {
    let path = call.path;
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, call.host));
    let start = Instant::now();
    loop {
        // Keep following the VM while waiting.
        while let Ok(f) = vm.next(Duration::ZERO) {
            state.observe(f)?;
        }
        if state.no_network {
            return Err(SnapshotError::NotReady(format!(
                "warm-up {path}: {}",
                crate::boot::run::NO_NETWORK
            )));
        }
        let answer = match call.event {
            None => crate::http::get(addr, path, Duration::from_secs(5)),
            Some(event) => crate::http::request(
                addr,
                "POST",
                &addr.to_string(),
                path,
                event,
                &crate::http::Limits::new(Duration::from_secs(5)),
                64 << 20,
            ),
        };
        let function_error = |r: &crate::http::Response| {
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-function-error"))
                .map(|(_, v)| v.clone())
        };
        match answer {
            Ok(r) if (200..300).contains(&r.status) => match function_error(&r) {
                None => return Ok(()),
                Some(e) => {
                    return Err(SnapshotError::NotReady(format!(
                        "warm-up {path}: the function failed (X-Amz-Function-Error: {}): {}",
                        stratos_wire::control::printable(&e.as_bytes()[..e.len().min(100)]),
                        stratos_wire::control::printable(&r.body[..r.body.len().min(300)])
                    )))
                }
            },
            Ok(r) => {
                return Err(SnapshotError::NotReady(format!(
                    "warm-up {path} answered HTTP {}",
                    r.status
                )))
            }
            Err(e) if start.elapsed() > timeout => {
                return Err(SnapshotError::NotReady(format!("warm-up {path}: {e}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
