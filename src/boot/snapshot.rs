//! Snapshots: boot an image once, let the runtime get ready (and warm up), save the VM, and
//! restore it for every cold start instead of booting.
//!
//! A snapshot directory holds `memory` (the guest's RAM: QEMU maps it shared while saving, so
//! the RAM is the file; every restore maps it copy-on-write), `state` (the device state QEMU's
//! migration writes, small because the RAM is left out with `x-ignore-shared`), and
//! `snapshot.json` naming the image (its manifest digest), the QEMU version, the exact machine
//! and devices, the memory size, the accelerator, the kernel command line and the digests of
//! both files; `snapshot.sig` signs it like a manifest. Every file is mode 0600: a snapshot is
//! the guest's memory, with whatever the function read at start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::console;
use super::qemu::{free_port, Accel, Forward, SnapshotVm, Vm, VmSpec};
use super::qmp::{Qmp, QmpError};
use super::BootImage;
use crate::sign::manifest::{canonical_json, signature_file, Artifact, ArtifactName};
use crate::sign::{KeyId, PublicKey, SecretKey};

pub const FORMAT: u32 = 1;
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const SIGNATURE_FILE: &str = "snapshot.sig";
pub const MEMORY_FILE: &str = "memory";
pub const STATE_FILE: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Qemu(#[from] super::qemu::QemuError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {dir}: {why}")]
    Invalid { dir: PathBuf, why: String },
    /// The snapshot was made for something else than what would restore it.
    #[error("snapshot {dir} cannot be restored here: {why}")]
    Mismatch { dir: PathBuf, why: String },
    #[error("the image never became ready to snapshot: {0}")]
    NotReady(String),
    #[error(transparent)]
    Verify(#[from] crate::sign::verify::VerifyError),
    #[error(transparent)]
    File(#[from] crate::fsio::ReadError),
}

impl SnapshotError {
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Qemu(_) | Self::Qmp(_) | Self::Io { .. })
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMeta {
    pub format: u32,
    pub image: SnapshotImage,
    /// `qemu-system-x86_64 --version`'s first line: migration state is only read back by the
    /// same QEMU.
    pub qemu_version: String,
    /// The machine and its devices (paths and ports left out): see [`VmSpec::machine_line`].
    pub machine: String,
    pub memory_mib: u32,
    pub accel: String,
    /// The kernel command line exactly as booted.
    pub cmdline: String,
    /// The function's port in the guest.
    pub guest_port: u16,
    /// The paths invoked before the save (lazy imports, JIT).
    pub warm: Vec<String>,
    /// `memory` and `state`, sorted by name.
    pub files: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotImage {
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
}

impl SnapshotMeta {
    pub fn to_canonical(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(self).expect("plain data"))
            .expect("no floats")
            .into_bytes()
    }
}

/// The digest of an image's manifest: what ties a snapshot to exactly one image.
pub fn manifest_sha256(image: &BootImage) -> Result<String, SnapshotError> {
    let (d, _) = crate::fsio::sha256_file(
        &image.dir.join(crate::sign::manifest::MANIFEST_FILE),
        crate::fsio::Links::Refuse,
    )?;
    Ok(hex::encode(d))
}

/// What `stratos snapshot` is asked.
pub struct CreateOptions<'a> {
    pub out: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub guest_port: u16,
    pub warm: Vec<String>,
    pub timeout: Duration,
    pub sign_key: Option<&'a SecretKey>,
    pub echo: bool,
}

/// A scratch directory for QEMU's sockets: short paths (a unix socket path is limited to 108
/// bytes), removed when dropped.
pub fn sockets() -> Result<tempfile::TempDir, SnapshotError> {
    tempfile::Builder::new()
        .prefix("stratos-vm-")
        .tempdir_in("/tmp")
        .map_err(io("creating a directory for QEMU's sockets in /tmp"))
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

/// A private staging directory next to `out`, renamed onto it once complete.
fn stage(out: &Path) -> Result<tempfile::TempDir, SnapshotError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".stratos-snapshot-")
        .tempdir_in(parent)
        .map_err(io(format!("creating a directory in {}", parent.display())))?;
    set_private(staging.path())?;
    Ok(staging)
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
        })
    }

    /// `runtime_ready`, the warm-up calls, and a quiet console.
    fn wait_ready(&mut self, o: &CreateOptions) -> Result<(), SnapshotError> {
        let mut state = Readiness::default();
        wait_ready(&mut self.vm, &mut state, o.timeout)?;
        for path in &o.warm {
            warm(&mut self.vm, &mut state, self.host_port, path, o.timeout)?;
        }
        settle(&mut self.vm, &mut state)
    }

    /// Pauses the VM, writes its device state to `state` (the RAM stays in its file), stops
    /// QEMU and flushes both files to disk.
    fn save(&mut self, state: &Path) -> Result<(), SnapshotError> {
        create_private(state)?;
        self.qmp.execute("stop", json!({}))?;
        ignore_shared(&mut self.qmp)?;
        self.qmp.execute(
            "migrate",
            json!({ "uri": format!("exec:cat > {}", shell_path(state)?) }),
        )?;
        self.qmp.wait_migration(Duration::from_secs(120))?;
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
        qemu_version: VmSpec::qemu_version()?,
        machine: spec.machine_line(),
        memory_mib: o.memory_mib,
        accel: o.accel.name().to_owned(),
        cmdline: spec.cmdline.clone(),
        guest_port: o.guest_port,
        warm: o.warm.clone(),
        files: [MEMORY_FILE, STATE_FILE]
            .iter()
            .map(|n| file_digest(staging, &ArtifactName::from_static(n)))
            .collect::<Result<_, _>>()?,
    })
}

/// The output may be new, or a previous snapshot (only its own files); nothing else is replaced.
fn check_out(out: &Path) -> Result<(), SnapshotError> {
    let refuse = |why: String| SnapshotError::Invalid {
        dir: out.to_owned(),
        why,
    };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("looking at {}", out.display()))(e)),
        Ok(m) if !m.is_dir() => {
            return Err(refuse(
                "refusing to replace it: it is not a directory (a symlink is not followed); choose another --out".into(),
            ))
        }
        Ok(_) => {}
    }
    let entries = match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("reading {}", out.display()))(e)),
        Ok(r) => r,
    };
    let ours = [SNAPSHOT_FILE, SIGNATURE_FILE, MEMORY_FILE, STATE_FILE];
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(io(format!("reading {}", out.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !ours.contains(&name.as_str()) {
            return Err(refuse(format!(
                "refusing to replace it: {} is not a file of a snapshot; choose another --out",
                crate::rootfs::quote(&name)
            )));
        }
        names.push(name);
    }
    if !names.is_empty() && !names.iter().any(|n| n == SNAPSHOT_FILE) {
        return Err(refuse(
            "refusing to replace it: it holds no snapshot.json; choose another --out".into(),
        ));
    }
    Ok(())
}

/// Puts the staged snapshot in place of `out` (removing a previous snapshot's own files).
fn replace(staging: tempfile::TempDir, out: &Path) -> Result<(), SnapshotError> {
    let parent = staging.path().parent().unwrap_or(Path::new(".")).to_owned();
    // The previous snapshot moves aside first, so `out` is always a whole snapshot (the old one
    // or the new one); its own files are then removed.
    let old = if out.exists() {
        let aside = tempfile::Builder::new()
            .prefix(".stratos-snapshot-old-")
            .tempdir_in(&parent)
            .map_err(io(format!("creating a directory in {}", parent.display())))?;
        let to = aside.path().join("snap");
        std::fs::rename(out, &to).map_err(io(format!("moving {} aside", out.display())))?;
        Some((aside, to))
    } else {
        None
    };
    let kept = staging.keep();
    std::fs::rename(&kept, out).map_err(io(format!("moving the snapshot to {}", out.display())))?;
    crate::fsio::sync_dir(&parent).map_err(io(format!("flushing {}", parent.display())))?;
    if let Some((aside, to)) = old {
        for n in [SNAPSHOT_FILE, SIGNATURE_FILE, MEMORY_FILE, STATE_FILE] {
            match std::fs::remove_file(to.join(n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(format!("removing the previous {n}"))(e))
                }
                _ => {}
            }
        }
        std::fs::remove_dir(&to).map_err(io("removing the previous snapshot's directory"))?;
        drop(aside);
    }
    Ok(())
}

fn set_private(p: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("protecting {}", p.display())))
}

fn create_private(p: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map(drop)
        .map_err(io(format!("creating {}", p.display())))
}

fn write_private(p: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(io(format!("creating {}", p.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", p.display())))
}

fn file_digest(dir: &Path, name: &ArtifactName) -> Result<Artifact, SnapshotError> {
    let (d, size) = crate::fsio::sha256_file(&dir.join(name), crate::fsio::Links::Refuse)?;
    Ok(Artifact {
        name: name.clone(),
        size,
        sha256: crate::digest::Sha256::from_bytes(d),
    })
}

/// Leaves RAM that lives in a shared file out of the migration stream (both sides).
fn ignore_shared(qmp: &mut Qmp) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": [ { "capability": "x-ignore-shared", "state": true } ] }),
    )
    .map(drop)
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
}

impl Readiness {
    /// Takes one thing the VM said; the runtime's end, a restart, a fatal error or a broken
    /// channel is an error naming it (a snapshot of a runtime that is not up is worthless).
    fn observe(&mut self, f: super::qemu::Feed) -> Result<(), SnapshotError> {
        use stratos_wire::Control;
        let not_ready = |why: String| Err(SnapshotError::NotReady(why));
        match f {
            super::qemu::Feed::Console(_, line) => match console::hint(&line) {
                Some(console::Hint::KernelPanic(p)) => {
                    not_ready(format!("the kernel panicked: {p}"))
                }
                Some(console::Hint::RootCorrupted(c)) => {
                    not_ready(format!("root filesystem failed verification: {c}"))
                }
                _ => Ok(()),
            },
            super::qemu::Feed::ControlClosed(_) => not_ready("the control channel closed".into()),
            super::qemu::Feed::Control(_, Err(e)) => not_ready(format!("the control channel: {e}")),
            super::qemu::Feed::Control(_, Ok(m)) => match m {
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

/// One warm-up call, retried until the function answers (it may still be starting its
/// listener): lazy imports and JIT happen before the save.
fn warm(
    vm: &mut Vm,
    state: &mut Readiness,
    host: u16,
    path: &str,
    timeout: Duration,
) -> Result<(), SnapshotError> {
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, host));
    let start = Instant::now();
    loop {
        // Keep following the VM while waiting.
        while let Ok(f) = vm.next(Duration::ZERO) {
            state.observe(f)?;
        }
        match crate::http::get(addr, path, Duration::from_secs(5)) {
            Ok(r) if (200..300).contains(&r.status) => return Ok(()),
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

/// Guest memory a snapshot may claim, in MiB: what `stratos snapshot --memory` can make. A
/// value outside is a damaged or hand-edited `snapshot.json`, refused before QEMU sees it.
pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 16..=65536;

/// The largest device state file read back: the RAM is not in it (`x-ignore-shared`), so it
/// holds the devices' state and video memory, a few MiB.
pub const STATE_MAX: u64 = 256 << 20;

/// How QEMU's migration stream begins: `QEVM` and stream version 3.
const STATE_MAGIC: [u8; 8] = *b"QEVM\0\0\0\x03";

/// A snapshot read back for restoring.
#[derive(Debug)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub meta: SnapshotMeta,
    pub bytes: Vec<u8>,
    /// Set by a successful [`Snapshot::verify`]: the key that signed `snapshot.json` (whose
    /// digests then held for `memory` and `state`). What restores from it may say so.
    verified: std::sync::OnceLock<KeyId>,
}

impl Snapshot {
    pub fn load(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let bytes = crate::fsio::read_regular(
            &dir.join(SNAPSHOT_FILE),
            crate::fsio::caps::MANIFEST,
            "a snapshot description",
            crate::fsio::Links::Refuse,
        )?;
        Snapshot::parse(dir, bytes)
    }

    /// `snapshot.json`'s bytes, checked (the files are not looked at).
    pub fn parse(dir: &Path, bytes: Vec<u8>) -> Result<Snapshot, SnapshotError> {
        let meta: SnapshotMeta =
            serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!("{SNAPSHOT_FILE}: {e}"),
            })?;
        if Accel::from_name(&meta.accel).is_none() {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!("{SNAPSHOT_FILE}: unknown accelerator {:?}", meta.accel),
            });
        }
        if meta.format != FORMAT {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!(
                    "{SNAPSHOT_FILE}: format {} is not supported (this stratos reads {FORMAT})",
                    meta.format
                ),
            });
        }
        if !MEMORY_MIB.contains(&meta.memory_mib) {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                why: format!(
                    "{SNAPSHOT_FILE}: memory_mib {} is outside {}..={} MiB: the file is damaged or was edited; make the snapshot again",
                    meta.memory_mib,
                    MEMORY_MIB.start(),
                    MEMORY_MIB.end()
                ),
            });
        }
        Ok(Snapshot {
            dir: dir.to_owned(),
            meta,
            bytes,
            verified: std::sync::OnceLock::new(),
        })
    }

    /// The key `snapshot.json` was verified with ([`Snapshot::verify`]), if it was.
    pub fn verified_by(&self) -> Option<&KeyId> {
        self.verified.get()
    }

    /// The accelerator it was made with (a restore runs on the same).
    pub fn accel(&self) -> Accel {
        Accel::from_name(&self.meta.accel).unwrap_or(Accel::Tcg)
    }

    /// `--verify`: the signature over `snapshot.json` and the digests of `memory` and `state`.
    /// A failure is the snapshot's, named by its files (never the image's `manifest.sig`).
    pub fn verify(&self, key: &PublicKey) -> Result<KeyId, SnapshotError> {
        use crate::sign::verify::VerifyError;
        let invalid = |why: String| SnapshotError::Invalid {
            dir: self.dir.clone(),
            why,
        };
        let sig = match crate::fsio::read_regular(
            &self.dir.join(SIGNATURE_FILE),
            crate::fsio::caps::SIGNATURE,
            "a signature",
            crate::fsio::Links::Refuse,
        ) {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return Err(invalid(format!(
                "it is unsigned (no {SIGNATURE_FILE}); make it with `stratos snapshot --sign-key`"
            )))
            }
            Err(e) => return Err(e.into()),
        };
        let id = crate::sign::verify::check_signature(&sig, &self.bytes, key).map_err(|e| {
            invalid(match e {
                VerifyError::BadSignature => format!(
                    "{SIGNATURE_FILE}: the signature does not match {SNAPSHOT_FILE} ({SNAPSHOT_FILE} or its signature was modified)"
                ),
                VerifyError::WrongKey { signed_by, given } => format!(
                    "{SIGNATURE_FILE}: signed by key {signed_by}, but the public key given is {given}"
                ),
                VerifyError::MalformedSignature(why) => {
                    format!("{SIGNATURE_FILE}: malformed signature file: {why}")
                }
                other => format!("{SIGNATURE_FILE}: {other}"),
            })
        })?;
        for f in &self.meta.files {
            let got = file_digest(&self.dir, &f.name)?;
            if got.size != f.size || got.sha256 != f.sha256 {
                return Err(SnapshotError::Invalid {
                    dir: self.dir.clone(),
                    why: format!(
                        "{}: sha256 {} ({} bytes), but {SNAPSHOT_FILE} says {} ({} bytes)",
                        f.name, got.sha256, got.size, f.sha256, f.size
                    ),
                });
            }
        }
        let _ = self.verified.set(id.clone());
        Ok(id)
    }

    /// Refuses, naming the difference, a snapshot of another image or taken with another QEMU
    /// or machine than `spec` (the spec a restore would run).
    pub fn check_restorable(&self, image: &BootImage, spec: &VmSpec) -> Result<(), SnapshotError> {
        let mismatch = |why: String| SnapshotError::Mismatch {
            dir: self.dir.clone(),
            why,
        };
        let m = &self.meta;
        let digest = manifest_sha256(image)?;
        if m.image.manifest_sha256 != digest {
            return Err(mismatch(format!(
                "it was made for {} {} (manifest sha256 {}), not for this image {} {} (manifest sha256 {digest})",
                m.image.name,
                m.image.version,
                m.image.manifest_sha256,
                image.manifest.image.name,
                image.manifest.image.version
            )));
        }
        let qemu = VmSpec::qemu_version()?;
        if m.qemu_version != qemu {
            return Err(mismatch(format!(
                "it was made with {:?}, this host runs {qemu:?}; a migration is only read back by the same QEMU",
                m.qemu_version
            )));
        }
        let machine = spec.machine_line();
        if m.machine != machine {
            return Err(mismatch(format!(
                "it was made on the machine `{}`, the restore would be `{machine}`",
                m.machine
            )));
        }
        self.check_files()
    }

    /// The RAM and state files are there, regular, and of the sizes `snapshot.json` gives (the
    /// RAM file exactly the guest's memory), the state file within [`STATE_MAX`] and beginning
    /// as a QEMU migration stream does: a cheap check that catches a truncated, swapped or
    /// garbage file before QEMU does (as a failed migration over QMP, naming nothing). Their
    /// digests are `--verify`'s.
    fn check_files(&self) -> Result<(), SnapshotError> {
        use std::io::Read;
        let invalid = |why: String| SnapshotError::Invalid {
            dir: self.dir.clone(),
            why,
        };
        for name in [MEMORY_FILE, STATE_FILE] {
            let Some(f) = self.meta.files.iter().find(|f| f.name == name) else {
                return Err(invalid(format!("{SNAPSHOT_FILE} lists no {name} file")));
            };
            let path = self.dir.join(name);
            let (file, md) = crate::fsio::open_regular(&path, crate::fsio::Links::Refuse)?;
            if md.len() != f.size {
                return Err(invalid(format!(
                    "{name} is {} bytes, but {SNAPSHOT_FILE} says {}",
                    md.len(),
                    f.size
                )));
            }
            if name == STATE_FILE {
                if md.len() > STATE_MAX {
                    return Err(invalid(format!(
                        "{name} is {} bytes, more than a device state file holds ({STATE_MAX} at most): not a snapshot's state",
                        md.len()
                    )));
                }
                let mut head = Vec::with_capacity(STATE_MAGIC.len());
                file.take(STATE_MAGIC.len() as u64)
                    .read_to_end(&mut head)
                    .map_err(io(format!("reading {}", path.display())))?;
                if head != STATE_MAGIC {
                    return Err(invalid(format!(
                        "{name} is not a QEMU device state (it does not begin as a migration stream does): the file is damaged or was replaced; make the snapshot again"
                    )));
                }
            }
        }
        let ram = u64::from(self.meta.memory_mib) << 20;
        match self.meta.files.iter().find(|f| f.name == MEMORY_FILE) {
            Some(f) if f.size != ram => Err(invalid(format!(
                "{MEMORY_FILE} is {} bytes, but the guest has {} MiB ({ram} bytes)",
                f.size, self.meta.memory_mib
            ))),
            _ => Ok(()),
        }
    }

    /// The spec that restores it: the image's, with the snapshot's memory, command line and
    /// RAM file (mapped copy-on-write), paused for an incoming migration.
    pub fn restore_spec(
        &self,
        image: &BootImage,
        accel: Accel,
        forwards: Vec<Forward>,
        sockets: &Path,
    ) -> VmSpec {
        let mut spec = image.spec(accel, self.meta.memory_mib, forwards, false);
        spec.cmdline = self.meta.cmdline.clone();
        spec.snapshot = Some(SnapshotVm {
            memory_file: self.dir.join(MEMORY_FILE),
            share: false,
            qmp: sockets.join("qmp"),
            restore_channel: sockets.join("restore"),
            incoming: true,
        });
        spec
    }
}

/// A restored VM's QMP session: load the device state, continue, and hand the guest fresh
/// entropy and the time over the control channel. Returns once the guest runs, with the
/// channel (kept open while the VM runs).
pub fn resume(
    snapshot: &Snapshot,
    sockets: &Path,
) -> Result<std::os::unix::net::UnixStream, SnapshotError> {
    let mut qmp = Qmp::connect(&sockets.join("qmp"), Duration::from_secs(10))?;
    // Connected before the guest runs, so the port is "host connected" as it was when saved.
    let channel = connect_channel(&sockets.join("restore"))?;
    ignore_shared(&mut qmp)?;
    qmp.execute(
        "migrate-incoming",
        json!({ "uri": format!("exec:cat {}", shell_path(&snapshot.dir.join(STATE_FILE))?) }),
    )?;
    qmp.wait_status("paused", Duration::from_secs(60))?;
    // Queued before the guest runs, so the init reads it the moment it is scheduled.
    let channel = send_restore_message(channel)?;
    qmp.execute("cont", json!({}))?;
    Ok(channel)
}

/// Connects to the control channel of a VM just started (QEMU creates the socket as it
/// starts: retried until `deadline`). `None` when QEMU exited first (`exited`): its own error
/// is the one to report, and the caller's session does.
pub fn connect_control(
    path: &Path,
    deadline: Instant,
    mut exited: impl FnMut() -> bool,
) -> Result<Option<std::os::unix::net::UnixStream>, SnapshotError> {
    loop {
        match connect_channel(path) {
            Ok(c) => return Ok(Some(c)),
            Err(_) if exited() => return Ok(None),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn connect_channel(path: &Path) -> Result<std::os::unix::net::UnixStream, SnapshotError> {
    std::os::unix::net::UnixStream::connect(path).map_err(io(format!(
        "connecting to the control channel {}",
        path.display()
    )))
}

/// `stratos-restore <64 hex bytes of entropy> <unix time in ns>`: every clone gets its own
/// bytes from the host's getrandom, so no two clones share random output after the init
/// reseeds; and the current time, which did not advance while the snapshot slept.
fn send_restore_message(
    mut channel: std::os::unix::net::UnixStream,
) -> Result<std::os::unix::net::UnixStream, SnapshotError> {
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy)
        .map_err(|e| io("reading the host's entropy")(std::io::Error::other(e.to_string())))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let line = format!(
        "{} {} {now}\n",
        stratos_wire::RESTORE_PREFIX,
        hex::encode(entropy)
    );
    channel
        .write_all(line.as_bytes())
        .map_err(io("writing to the control channel"))?;
    Ok(channel)
}

/// `exec:` migration URIs go through a shell: a path is quoted, and one holding a quote is
/// refused.
fn shell_path(p: &Path) -> Result<String, SnapshotError> {
    let s = p.display().to_string();
    if s.contains('\'') {
        return Err(SnapshotError::Invalid {
            dir: p.to_owned(),
            why: "the path holds a single quote; use another directory".into(),
        });
    }
    Ok(format!("'{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_new_or_a_previous_snapshot_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("snap");
        check_out(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_out(&out).unwrap();
        // A previous snapshot (its own files only) may be replaced.
        for n in [SNAPSHOT_FILE, MEMORY_FILE, STATE_FILE] {
            std::fs::write(out.join(n), b"x").unwrap();
        }
        check_out(&out).unwrap();
        // Anything else is someone's data.
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = check_out(&out).unwrap_err().to_string();
        assert!(
            e.contains("\"notes.txt\" is not a file of a snapshot"),
            "{e}"
        );
        std::fs::remove_file(out.join("notes.txt")).unwrap();
        std::fs::remove_file(out.join(SNAPSHOT_FILE)).unwrap();
        let e = check_out(&out).unwrap_err().to_string();
        assert!(e.contains("holds no snapshot.json"), "{e}");
        // A symlink is not followed, whatever it points at.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let e = check_out(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert!(check_out(&d.path().join("file")).is_err());
    }

    #[test]
    fn replacing_keeps_a_whole_snapshot_in_place() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("snap");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(SNAPSHOT_FILE), b"old").unwrap();
        std::fs::write(out.join(MEMORY_FILE), b"old").unwrap();
        let staging = stage(&out).unwrap();
        std::fs::write(staging.path().join(SNAPSHOT_FILE), b"new").unwrap();
        replace(staging, &out).unwrap();
        assert_eq!(std::fs::read(out.join(SNAPSHOT_FILE)).unwrap(), b"new");
        assert!(!out.join(MEMORY_FILE).exists());
        // Nothing left behind: only the snapshot directory.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["snap"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    /// A snapshot directory as `stratos snapshot` leaves it (16 MiB of RAM, a state file that
    /// begins like a migration stream), signed by `key`.
    fn fake(dir: &Path, key: &SecretKey, state: &[u8]) -> SnapshotMeta {
        std::fs::write(dir.join(MEMORY_FILE), vec![0u8; 16 << 20]).unwrap();
        std::fs::write(dir.join(STATE_FILE), state).unwrap();
        let meta = SnapshotMeta {
            format: FORMAT,
            image: SnapshotImage {
                name: "hello".into(),
                version: "1.0".into(),
                manifest_sha256: "a".repeat(64),
            },
            qemu_version: "QEMU emulator version 7.2.0".into(),
            machine: "microvm".into(),
            memory_mib: 16,
            accel: "tcg".into(),
            cmdline: "console=ttyS0".into(),
            guest_port: 8080,
            warm: Vec::new(),
            files: [MEMORY_FILE, STATE_FILE]
                .iter()
                .map(|n| file_digest(dir, &ArtifactName::from_static(n)).unwrap())
                .collect(),
        };
        write_meta(dir, key, &meta);
        meta
    }

    fn write_meta(dir: &Path, key: &SecretKey, meta: &SnapshotMeta) {
        let bytes = meta.to_canonical();
        std::fs::write(dir.join(SNAPSHOT_FILE), &bytes).unwrap();
        std::fs::write(dir.join(SIGNATURE_FILE), signature_file(key, &bytes)).unwrap();
    }

    const GOOD_STATE: &[u8] = b"QEVM\0\0\0\x03 devices";

    #[test]
    fn a_tampered_snapshot_json_is_the_snapshots_fault_not_the_images() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([7; 32]);
        let mut meta = fake(d.path(), &key, GOOD_STATE);
        let s = Snapshot::load(d.path()).unwrap();
        assert!(s.verified_by().is_none());
        assert_eq!(s.verify(&key.public()).unwrap(), *key.id());
        assert_eq!(s.verified_by(), Some(key.id()));
        // Edited after signing: another image's digest.
        meta.image.manifest_sha256 = "b".repeat(64);
        std::fs::write(d.path().join(SNAPSHOT_FILE), meta.to_canonical()).unwrap();
        let s = Snapshot::load(d.path()).unwrap();
        let e = s.verify(&key.public()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "snapshot {}: snapshot.sig: the signature does not match snapshot.json (snapshot.json or its signature was modified)",
                d.path().display()
            )
        );
        assert!(!e.contains("manifest"), "{e}");
        assert!(s.verified_by().is_none());
        // Another key; no signature at all.
        let other = SecretKey::from_seed([8; 32]);
        let e = s.verify(&other.public()).unwrap_err().to_string();
        assert!(e.contains("snapshot.sig: signed by key"), "{e}");
        std::fs::remove_file(d.path().join(SIGNATURE_FILE)).unwrap();
        let e = s.verify(&key.public()).unwrap_err().to_string();
        assert!(e.contains("it is unsigned (no snapshot.sig)"), "{e}");
    }

    #[test]
    fn an_absurd_memory_size_is_refused_on_load_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([7; 32]);
        let mut meta = fake(d.path(), &key, GOOD_STATE);
        for mib in [0, 15, 65537, u32::MAX] {
            meta.memory_mib = mib;
            write_meta(d.path(), &key, &meta);
            let e = Snapshot::load(d.path()).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "snapshot {}: snapshot.json: memory_mib {mib} is outside 16..=65536 MiB: the file is damaged or was edited; make the snapshot again",
                    d.path().display()
                )
            );
        }
        // Within bounds but not the RAM file's size: named too, before QEMU.
        meta.memory_mib = 32;
        write_meta(d.path(), &key, &meta);
        let e = Snapshot::load(d.path())
            .unwrap()
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memory is 16777216 bytes, but the guest has 32 MiB"),
            "{e}"
        );
    }

    #[test]
    fn a_garbage_state_file_is_named_before_qemu_reads_it() {
        let key = SecretKey::from_seed([7; 32]);
        let d = tempfile::tempdir().unwrap();
        fake(d.path(), &key, GOOD_STATE);
        Snapshot::load(d.path()).unwrap().check_files().unwrap();
        for garbage in [
            &b""[..],
            b"QEVM",
            b"\x7fELF\x02\x01\x01\0 not a state",
            b"QEVM\0\0\0\x02",
        ] {
            let d = tempfile::tempdir().unwrap();
            fake(d.path(), &key, garbage);
            let e = Snapshot::load(d.path())
                .unwrap()
                .check_files()
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "snapshot {}: state is not a QEMU device state (it does not begin as a migration stream does): the file is damaged or was replaced; make the snapshot again",
                    d.path().display()
                ),
                "{garbage:?}"
            );
        }
        // Not a regular file.
        let d = tempfile::tempdir().unwrap();
        fake(d.path(), &key, GOOD_STATE);
        std::fs::remove_file(d.path().join(STATE_FILE)).unwrap();
        std::fs::create_dir(d.path().join(STATE_FILE)).unwrap();
        let e = Snapshot::load(d.path())
            .unwrap()
            .check_files()
            .unwrap_err()
            .to_string();
        assert!(e.contains("state"), "{e}");
    }

    #[test]
    fn shell_paths_are_quoted_and_quotes_refused() {
        assert_eq!(shell_path(Path::new("/a b/state")).unwrap(), "'/a b/state'");
        assert!(shell_path(Path::new("/a'b/state")).is_err());
    }
}
