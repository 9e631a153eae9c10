//! Running an image under `qemu-system-x86_64`: machine and accelerator choice, the command
//! line, and a process handle that kills QEMU when dropped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::kernel::Config;

pub const QEMU: &str = "qemu-system-x86_64";

/// The QEMU executable: `$STRATOS_QEMU` if set (a wrapper, another build), else
/// `qemu-system-x86_64` from `PATH`.
pub fn qemu_binary() -> std::ffi::OsString {
    std::env::var_os("STRATOS_QEMU")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| QEMU.into())
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(
        "{QEMU} is not installed: run `sudo ./ci/setup` (or `apt-get install qemu-system-x86`)"
    )]
    Missing,
    #[error("cannot start {QEMU}: {0}")]
    Spawn(std::io::Error),
    #[error("KVM was requested (--accel kvm) but does not work here: {0}")]
    NoKvm(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM if it works (probed with a short timeout), else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn from_name(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// QEMU's minimal virtio-mmio machine: no PCI, no firmware tables to probe.
    Microvm,
    /// A PC with PCI (virtio-pci), for generic distribution kernels.
    Q35,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    /// `microvm` when the kernel has built-in virtio-mmio with command-line devices (how
    /// QEMU tells microvm guests where their devices are); `q35` otherwise (or unknown config).
    pub fn for_kernel(config: Option<&Config>) -> Machine {
        match config {
            Some(c)
                if c.is_builtin("VIRTIO_MMIO") && c.is_builtin("VIRTIO_MMIO_CMDLINE_DEVICES") =>
            {
                Machine::Microvm
            }
            _ => Machine::Q35,
        }
    }
}

/// A guest TCP port reachable on `127.0.0.1:host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
}

impl std::str::FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (h, g) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected HOSTPORT:GUESTPORT, e.g. 8080:8080"))?;
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
        };
        Ok(Forward {
            host: port(h)?,
            guest: port(g)?,
        })
    }
}

/// A free TCP port on 127.0.0.1 (asked from the kernel, then released for QEMU to bind).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub kernel: PathBuf,
    /// The root: an initramfs the kernel unpacks, or a disk image attached read-only as the
    /// first virtio block device (`/dev/vda`).
    pub root: Root,
    pub cmdline: String,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub forwards: Vec<Forward>,
    /// Give the guest the terminal as its serial console input (`-serial mon:stdio`).
    pub interactive: bool,
    /// What saving or restoring a snapshot adds to the machine.
    pub snapshot: Option<SnapshotVm>,
    /// Without a snapshot: the control channel at this socket (every boot the harness measures
    /// or gates has one; see [`stratos_wire::control`]).
    pub control: Option<PathBuf>,
}

/// What a snapshot boot adds: the guest's RAM as a file (shared, so written through, when
/// saving; private, so mapped copy-on-write, when restoring), a QMP socket to drive it, the
/// control channel (a virtio-serial port the init holds), and for a restore an incoming
/// migration. Save and restore use the same machine and devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotVm {
    pub memory_file: PathBuf,
    pub share: bool,
    pub qmp: PathBuf,
    pub restore_channel: PathBuf,
    pub incoming: bool,
}

pub use stratos_wire::CONTROL_PORT;

/// The longest console line the host keeps whole; a longer one is cut into pieces of this size
/// (nothing is lost). The init cuts the runtime's lines at 4 KiB already.
pub const MAX_CONSOLE_LINE: usize = 64 << 10;

/// What a running VM says: console lines (for people) and control messages (what the harness
/// decides on), each stamped with the time since QEMU was spawned.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A console line, made printable (control characters escaped).
    Console(Duration, String),
    /// A control message from the init, or why a line was not one.
    Control(Duration, Result<stratos_wire::Control, String>),
    /// The control channel closed (QEMU exited, or was stopped).
    ControlClosed(Duration),
}

/// How a VM gets its root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Initramfs(PathBuf),
    /// Attached read-only: nothing in the guest can write to the image.
    Disk(PathBuf),
}

/// The host CPU's nominal rate in kHz, from /proc/cpuinfo (for `tsc_early_khz`).
fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

impl VmSpec {
    /// The kernel command line as booted: the image's, plus what this machine needs.
    pub fn full_cmdline(&self) -> String {
        let mut c = self.cmdline.clone();
        if self.machine == Machine::Microvm && !c.contains("tsc_early_khz=") {
            // microvm under TCG has no HPET or PM timer to calibrate the TSC against; without
            // this some boots hang (measured: 6/6 good with it, see NOTES.md).
            if let Some(khz) = host_tsc_khz() {
                c.push_str(&format!(" tsc_early_khz={khz}"));
            }
        }
        c
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-serial".into(),
            if self.interactive {
                "mon:stdio"
            } else {
                "stdio"
            }
            .into(),
        ];
        let backend = if self.snapshot.is_some() {
            ",memory-backend=mem"
        } else {
            ""
        };
        match self.machine {
            Machine::Microvm => a.extend([
                "-M".into(),
                format!("microvm,x-option-roms=off,acpi=off{backend}"),
            ]),
            Machine::Q35 => a.extend(["-M".into(), format!("q35{backend}")]),
        }
        a.extend([
            "-accel".into(),
            self.accel.name().into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            self.full_cmdline(),
        ]);
        match &self.root {
            Root::Initramfs(p) => a.extend(["-initrd".into(), p.display().to_string()]),
            Root::Disk(p) => {
                let dev = match self.machine {
                    Machine::Microvm => "virtio-blk-device,drive=root",
                    Machine::Q35 => "virtio-blk-pci,drive=root",
                };
                // QEMU's -drive splits on commas: a comma in the path is written twice.
                a.extend([
                    "-drive".into(),
                    format!(
                        "file={},if=none,id=root,format=raw,readonly=on",
                        comma_safe(p)
                    ),
                    "-device".into(),
                    dev.into(),
                ]);
            }
        }
        // User networking, isolated: the guest cannot reach the host or the outside; only the
        // explicit forwards from 127.0.0.1 reach it.
        let mut netdev = "user,id=n0,restrict=on".to_owned();
        for f in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
        }
        let nic = match self.machine {
            Machine::Microvm => "virtio-net-device,netdev=n0",
            Machine::Q35 => "virtio-net-pci,netdev=n0,romfile=",
        };
        a.extend(["-netdev".into(), netdev, "-device".into(), nic.into()]);
        // An entropy device fed from the host: without one the guest's random pool is ready
        // only seconds into the boot under TCG (no RDRAND), and runtimes block in getrandom().
        let rng = match self.machine {
            Machine::Microvm => "virtio-rng-device,rng=rng0",
            Machine::Q35 => "virtio-rng-pci,rng=rng0",
        };
        a.extend([
            "-object".into(),
            "rng-random,filename=/dev/urandom,id=rng0".into(),
            "-device".into(),
            rng.into(),
        ]);
        if let Some(s) = &self.snapshot {
            a.extend(self.snapshot_args(s));
        } else if let Some(c) = &self.control {
            a.extend(self.channel_args(c));
        }
        a
    }

    /// The control channel: a virtio-serial port named [`CONTROL_PORT`] on a socket QEMU
    /// listens on. Two port slots (0, reserved for a console, and ours) instead of QEMU's 31:
    /// every slot costs the guest virtqueues (3.7 MiB less guest memory with 2, measured).
    fn channel_args(&self, socket: &Path) -> Vec<String> {
        let serial = match self.machine {
            Machine::Microvm => "virtio-serial-device,max_ports=2",
            Machine::Q35 => "virtio-serial-pci,max_ports=2",
        };
        vec![
            "-chardev".into(),
            format!(
                "socket,id=restore,path={},server=on,wait=off",
                comma_safe(socket)
            ),
            "-device".into(),
            serial.into(),
            "-device".into(),
            format!("virtserialport,chardev=restore,name={CONTROL_PORT}"),
        ]
    }

    /// The memory file, QMP, the control channel and (restoring) the incoming migration.
    fn snapshot_args(&self, s: &SnapshotVm) -> Vec<String> {
        let mut a = vec![
            "-object".into(),
            format!(
                "memory-backend-file,id=mem,size={}M,mem-path={},share={}",
                self.memory_mib,
                comma_safe(&s.memory_file),
                if s.share { "on" } else { "off" }
            ),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", comma_safe(&s.qmp)),
        ];
        a.extend(self.channel_args(&s.restore_channel));
        if s.incoming {
            a.extend(["-incoming".into(), "defer".into()]);
        }
        a
    }

    /// The machine and its devices, without what differs from one run to the next (file
    /// paths, forwarded ports, the incoming migration): what a snapshot must be restored on.
    pub fn machine_line(&self) -> String {
        let mut spec = self.clone();
        spec.kernel = "KERNEL".into();
        spec.root = match &self.root {
            Root::Initramfs(_) => Root::Initramfs("INITRAMFS".into()),
            Root::Disk(_) => Root::Disk("ROOT".into()),
        };
        spec.forwards.clear();
        spec.interactive = false;
        if spec.control.is_some() {
            spec.control = Some("CONTROL".into());
        }
        if let Some(s) = &mut spec.snapshot {
            s.memory_file = "MEMORY".into();
            s.qmp = "QMP".into();
            s.restore_channel = "RESTORE".into();
            s.share = false;
            s.incoming = false;
        }
        spec.args().join(" ")
    }
}

/// A path for a QEMU option value: commas written twice.
fn comma_safe(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

impl VmSpec {
    /// The QEMU version line (`QEMU emulator version 7.2.22 ...`) of the binary that runs VMs.
    pub fn qemu_version() -> Result<String, QemuError> {
        let out = Command::new(qemu_binary())
            .arg("--version")
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    QemuError::Missing
                } else {
                    QemuError::Spawn(e)
                }
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned())
    }
}

/// A `qemu-system-*` command that dies with the thread that spawns it: QEMU is given a
/// parent-death signal (SIGKILL) before exec, so a `stratos` killed with SIGKILL, or by the OOM
/// killer, leaves no VM behind. The VM is spawned and owned by the same thread for its whole
/// life (the signal follows the spawning thread, not the process).
#[allow(unsafe_code)] // the one documented pre_exec STYLE.md allows (see the SAFETY note)
pub fn qemu_command() -> Command {
    let mut cmd = Command::new(qemu_binary());
    // SAFETY: runs in the forked child before exec; prctl(PR_SET_PDEATHSIG) and getppid are
    // async-signal-safe system calls that touch no memory of the parent's, and nothing is
    // allocated on the success path.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent died between fork and prctl: nobody would ever stop this VM.
            if rustix::process::getppid().map_or(true, |p| p.as_raw_nonzero().get() == 1) {
                return Err(std::io::Error::other("stratos exited while starting QEMU"));
            }
            Ok(())
        });
    }
    cmd
}

/// A running QEMU. Dropping it kills QEMU and waits for it, so no VM outlives its owner.
pub struct Vm {
    child: Child,
    pub started: Instant,
    feed: Receiver<Feed>,
    /// For the control channel's reader, once connected ([`Vm::attach_control`]).
    spare: Option<Sender<Feed>>,
}

impl Vm {
    /// Starts QEMU; what it says arrives on [`Vm::next`], stamped with the time since spawn.
    /// With `echo`, console lines are also printed on our stdout as they arrive (printable).
    pub fn start(spec: &VmSpec, echo: bool) -> Result<Vm, QemuError> {
        let mut cmd = qemu_command();
        cmd.args(spec.args())
            .stdin(if spec.interactive {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                QemuError::Missing
            } else {
                QemuError::Spawn(e)
            }
        })?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let tx2 = tx.clone();
        let spare = tx.clone();
        std::thread::spawn(move || {
            read_lines(stdout, MAX_CONSOLE_LINE, |line| {
                let text = printable_line(&line);
                if echo {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "{text}");
                    let _ = o.flush();
                }
                tx.send(Feed::Console(started.elapsed(), text)).is_ok()
            });
        });
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            read_lines(stderr, MAX_CONSOLE_LINE, |line| {
                let text = format!("[qemu] {}", printable_line(&line));
                tx2.send(Feed::Console(started.elapsed(), text)).is_ok()
            });
        });
        Ok(Vm {
            child,
            started,
            feed: rx,
            spare: Some(spare),
        })
    }

    /// Reads the init's control messages from `stream` (the control channel's socket) in the
    /// background. A VM has one control channel: later calls do nothing.
    pub fn attach_control(
        &mut self,
        stream: &std::os::unix::net::UnixStream,
    ) -> std::io::Result<()> {
        let Some(tx) = self.spare.take() else {
            return Ok(());
        };
        let stream = stream.try_clone()?;
        let started = self.started;
        std::thread::spawn(move || {
            read_lines(stream, stratos_wire::control::MAX_CONTROL_LINE, |line| {
                let msg = if line.len() >= stratos_wire::control::MAX_CONTROL_LINE {
                    Err(format!(
                        "a control message over {} bytes",
                        stratos_wire::control::MAX_CONTROL_LINE
                    ))
                } else {
                    stratos_wire::Control::parse(&line)
                };
                tx.send(Feed::Control(started.elapsed(), msg)).is_ok()
            });
            let _ = tx.send(Feed::ControlClosed(started.elapsed()));
        });
        Ok(())
    }

    /// No control channel will be attached (lets [`Vm::next`] report the end of the feed).
    pub fn no_control(&mut self) {
        self.spare = None;
    }

    /// The next thing the VM said, waiting at most `timeout`. `Err(true)` when everything was
    /// read (QEMU exited and its outputs closed), `Err(false)` on timeout.
    pub fn next(&self, timeout: Duration) -> Result<Feed, bool> {
        match self.feed.recv_timeout(timeout) {
            Ok(f) => Ok(f),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(false),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// QEMU's exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills QEMU (if still running) and reaps it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.spare = None;
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A console line as kept and shown: a trailing carriage return dropped, control characters
/// and bytes that are not UTF-8 escaped.
fn printable_line(line: &[u8]) -> String {
    stratos_wire::control::printable(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Reads `from` line by line (without the newline) until it ends or `each` returns false. A
/// line longer than `max` bytes is handed over in pieces of `max` bytes: memory stays bounded
/// whatever the other side sends, and no byte is lost.
pub fn read_lines(mut from: impl Read, max: usize, mut each: impl FnMut(Vec<u8>) -> bool) {
    let mut buf = vec![0u8; 16 << 10];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !each(std::mem::take(&mut line)) {
                    return;
                }
                continue;
            }
            if line.len() == max && !each(std::mem::take(&mut line)) {
                return;
            }
            line.push(b);
        }
    }
    if !line.is_empty() {
        each(line);
    }
}

/// Whether KVM really runs a guest here: boots `kernel` under KVM for a few seconds and waits
/// for the kernel's first console line. (On some hosts /dev/kvm exists but guests hang right
/// after "Probing EDD".) The answer is cached per host boot.
pub fn probe_kvm(kernel: &Path) -> Result<(), String> {
    let dev = Path::new("/dev/kvm");
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .is_err()
    {
        return Err("/dev/kvm is missing or not accessible".into());
    }
    // The answer holds until the host reboots: cached per boot id. Without a boot id (no
    // /proc) nothing is cached and the probe runs every time.
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if boot_id.is_empty() {
        return run_probe(kernel);
    }
    // v2: the probe waits for the end of the kernel's boot, not its first line (a KVM guest
    // that prints its banner and then hangs is not a working KVM).
    let cache = crate::cache::root().join(format!("kvm-probe-v2-{boot_id}"));
    if let Ok(v) = std::fs::read_to_string(&cache) {
        return if v.trim() == "ok" {
            Ok(())
        } else {
            Err(v.trim().to_owned())
        };
    }
    let result = run_probe(kernel);
    let answer = result.as_ref().map_or_else(|e| e.clone(), |_| "ok".into());
    // Only saves the next probe: a cache that cannot take it is reported, not fatal.
    if let Err(e) = std::fs::create_dir_all(cache.parent().expect("in the cache"))
        .and_then(|()| crate::fsio::write_atomic(&cache, answer.as_bytes(), 0o644))
    {
        eprintln!(
            "stratos: warning: cannot cache the KVM probe in {}: {e}",
            cache.display()
        );
    }
    result
}

/// What a kernel booted with no root prints at the end of its boot: reaching one proves the
/// guest's timers and interrupts work (a guest that hangs under broken nested virtualisation
/// prints its banner, "Linux version …", and stops).
const PROBE_BOOTED: &[&[u8]] = &[
    b"Kernel panic",
    b"Run /init",
    b"No working init",
    b"Unable to mount root",
];

/// A KVM boot to the end takes well under a second; TCG, which the probe never uses, is what
/// takes seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

fn run_probe(kernel: &Path) -> Result<(), String> {
    let mut child = qemu_command()
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .args(["-M", "q35", "-accel", "kvm", "-m", "256", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if PROBE_BOOTED
                .iter()
                .any(|m| seen.windows(m.len()).any(|w| w == *m))
            {
                let _ = tx.send(());
                return;
            }
        }
    });
    let ok = rx.recv_timeout(PROBE_TIMEOUT).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a KVM guest did not get through its boot within {} s (nested virtualisation not working)",
            PROBE_TIMEOUT.as_secs()
        ))
    }
}

/// Resolves `auto` to KVM or TCG; `kvm` fails if KVM does not work.
pub fn choose_accel(
    choice: AccelChoice,
    kernel: &Path,
) -> Result<(Accel, Option<String>), QemuError> {
    match choice {
        AccelChoice::Tcg => Ok((Accel::Tcg, None)),
        AccelChoice::Kvm => probe_kvm(kernel)
            .map(|_| (Accel::Kvm, None))
            .map_err(QemuError::NoKvm),
        AccelChoice::Auto => Ok(match probe_kvm(kernel) {
            Ok(()) => (Accel::Kvm, None),
            Err(why) => (Accel::Tcg, Some(why)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse() {
        assert_eq!(
            "8080:80".parse::<Forward>().unwrap(),
            Forward {
                host: 8080,
                guest: 80
            }
        );
        assert!("8080".parse::<Forward>().is_err());
        assert!("0:80".parse::<Forward>().is_err());
        assert!("70000:80".parse::<Forward>().is_err());
    }

    #[test]
    fn machine_from_config() {
        let c =
            Config::parse("CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n").unwrap();
        assert_eq!(Machine::for_kernel(Some(&c)), Machine::Microvm);
        let c = Config::parse("CONFIG_VIRTIO_MMIO=m\n").unwrap();
        assert_eq!(Machine::for_kernel(Some(&c)), Machine::Q35);
        assert_eq!(Machine::for_kernel(None), Machine::Q35);
    }

    #[test]
    fn args_forward_only_to_loopback_and_restrict_the_guest() {
        let spec = VmSpec {
            kernel: "k".into(),
            root: Root::Initramfs("i".into()),
            cmdline: "console=ttyS0".into(),
            machine: Machine::Q35,
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            forwards: vec![Forward {
                host: 5000,
                guest: 8080,
            }],
            interactive: false,
            snapshot: None,
            control: None,
        };
        let a = spec.args().join(" ");
        assert!(
            a.contains("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:5000-:8080"),
            "{a}"
        );
        assert!(a.contains("-accel tcg"), "{a}");
        // Every VM gets the host's entropy, on the machine's own bus.
        assert!(
            a.contains(
                "-object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0"
            ),
            "{a}"
        );
        let micro = VmSpec {
            machine: Machine::Microvm,
            ..spec
        };
        assert!(micro
            .args()
            .join(" ")
            .contains("-device virtio-rng-device,rng=rng0"));
        // A disk root is attached read-only as the first virtio disk.
        let disk = VmSpec {
            root: Root::Disk("/img/a,b/rootfs.erofs".into()),
            ..micro
        };
        let a = disk.args().join(" ");
        assert!(
            a.contains("-drive file=/img/a,,b/rootfs.erofs,if=none,id=root,format=raw,readonly=on -device virtio-blk-device,drive=root"),
            "{a}"
        );
        assert!(!a.contains("-initrd"));
    }
}
