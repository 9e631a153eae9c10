//! The QEMU process: finding the binary, starting it so it dies with us, and following what
//! it says ([`Vm`]); the process handle kills QEMU when dropped.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use super::spec::VmSpec;
use crate::arch::Arch;
use crate::progress::Traced;

/// The QEMU executable for `arch`: `$STRATOS_QEMU` if set (a wrapper, another build), else
/// the arch's system emulator (`qemu-system-x86_64`) from `PATH`.
pub fn qemu_binary(arch: Arch) -> std::ffi::OsString {
    std::env::var_os("STRATOS_QEMU")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| arch.qemu_binary().into())
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU binary is not there: `binary` is what was looked for (`$STRATOS_QEMU`, or the
    /// arch's emulator in `PATH`).
    #[error("{}", missing_message(*arch, binary))]
    Missing { arch: Arch, binary: String },
    #[error("cannot start {}: {}", .0.qemu_binary(), .1)]
    Spawn(Arch, std::io::Error),
    #[error("KVM was requested (--accel kvm) but does not work here: {0}")]
    NoKvm(String),
    /// Host I/O around the VM: its sockets' directory, its control channel.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl QemuError {
    /// A spawn of `arch`'s QEMU that failed: not installed, or not startable.
    pub(super) fn spawning(arch: Arch) -> impl FnOnce(std::io::Error) -> QemuError {
        move |e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                QemuError::Missing {
                    arch,
                    binary: qemu_binary(arch).to_string_lossy().into_owned(),
                }
            } else {
                QemuError::Spawn(arch, e)
            }
        }
    }
}

/// What to do when QEMU is missing: the binary looked for, its Debian package and the command
/// that installs it (`./ci/setup` exists only in a checkout of StratOS).
fn missing_message(arch: Arch, binary: &str) -> String {
    let package = arch.qemu_package();
    if binary == arch.qemu_binary() {
        format!(
            "QEMU is not installed: {binary} is not in PATH; install the Debian/Ubuntu package {package}: `sudo apt-get install {package}` (in a checkout of StratOS, `sudo ./ci/setup` installs it with the other tools)"
        )
    } else {
        format!(
            "QEMU not found: $STRATOS_QEMU names {binary}, which does not exist; point it at a QEMU binary, or unset it to use {} from PATH (Debian/Ubuntu package {package}: `sudo apt-get install {package}`)",
            arch.qemu_binary()
        )
    }
}

/// A [`QemuError::Io`] saying what was being done.
pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QemuError {
    let what = what.into();
    move |source| QemuError::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (asked from the kernel, then released for QEMU to bind).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

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

/// The QEMU version line (`QEMU emulator version 7.2.22 ...`) of the binary that runs `arch`'s
/// VMs.
pub fn qemu_version(arch: Arch) -> Result<String, QemuError> {
    let out = Command::new(qemu_binary(arch))
        .arg("--version")
        .traced()
        .output()
        .map_err(QemuError::spawning(arch))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// A `qemu-system-*` command that dies with the thread that spawns it: QEMU is given a
/// parent-death signal (SIGKILL) before exec, so a `stratos` killed with SIGKILL, or by the OOM
/// killer, leaves no VM behind. The VM is spawned and owned by the same thread for its whole
/// life (the signal follows the spawning thread, not the process).
#[allow(unsafe_code)] // the one documented pre_exec STYLE.md allows (see the SAFETY note)
pub fn qemu_command(arch: Arch) -> Command {
    let mut cmd = Command::new(qemu_binary(arch));
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

/// Which console lines a VM copies to our stdout as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Off,
    /// Only the runtime's output the init relays (`fn> ` lines): what a person reads.
    Relayed,
    /// Every line: the kernel, the init's phases and metrics, the runtime.
    All,
}

impl Echo {
    pub fn shows(self, line: &str) -> bool {
        use stratos_wire::control::{RELAY_CONT_PREFIX, RELAY_PREFIX};
        match self {
            Echo::Off => false,
            Echo::All => true,
            Echo::Relayed => line.starts_with(RELAY_PREFIX) || line.starts_with(RELAY_CONT_PREFIX),
        }
    }
}

/// `true`: every line; `false`: none.
impl From<bool> for Echo {
    fn from(all: bool) -> Echo {
        if all {
            Echo::All
        } else {
            Echo::Off
        }
    }
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
    /// The console lines `echo` shows are also printed on our stdout as they arrive (printable).
    pub fn start(spec: &VmSpec, echo: impl Into<Echo>) -> Result<Vm, QemuError> {
        let echo = echo.into();
        let mut cmd = qemu_command(spec.arch);
        cmd.args(spec.args())
            .stdin(if spec.interactive {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .traced()
            .spawn()
            .map_err(QemuError::spawning(spec.arch))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let tx2 = tx.clone();
        let spare = tx.clone();
        std::thread::spawn(move || {
            read_lines(stdout, MAX_CONSOLE_LINE, |line| {
                let text = printable_line(&line);
                if echo.shows(&text) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qemu_is_named_with_its_package() {
        let missing = |binary: &str| QemuError::Missing {
            arch: Arch::X86_64,
            binary: binary.to_owned(),
        };
        assert_eq!(
            missing("qemu-system-x86_64").to_string(),
            "QEMU is not installed: qemu-system-x86_64 is not in PATH; install the Debian/Ubuntu package qemu-system-x86: `sudo apt-get install qemu-system-x86` (in a checkout of StratOS, `sudo ./ci/setup` installs it with the other tools)"
        );
        let e = missing("/opt/qemu/bin/q").to_string();
        assert!(
            e.starts_with("QEMU not found: $STRATOS_QEMU names /opt/qemu/bin/q, which does not exist; point it at a QEMU binary, or unset it to use qemu-system-x86_64 from PATH"),
            "{e}"
        );
        assert!(e.contains("`sudo apt-get install qemu-system-x86`"), "{e}");
        assert_eq!(
            QemuError::Spawn(Arch::X86_64, std::io::Error::other("denied")).to_string(),
            "cannot start qemu-system-x86_64: denied"
        );
    }
}
