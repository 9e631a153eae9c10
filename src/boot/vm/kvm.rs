//! Choosing the accelerator: KVM when it really runs a guest here (probed once per host boot),
//! else TCG.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::qemu::{qemu_command, QemuError};
use super::spec::Accel;
use crate::arch::Arch;
use crate::cache::Cache;
use crate::progress::Traced;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM if it works (probed with a short timeout), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Whether KVM really runs an `arch` guest here: boots `kernel` under KVM for a few seconds and
/// waits for the kernel's first console line. (On some hosts /dev/kvm exists but guests hang
/// right after "Probing EDD".) The answer is kept in `cache` per host boot.
pub fn probe_kvm(arch: Arch, kernel: &Path, cache: &Cache) -> Result<(), String> {
    if Arch::host() != Some(arch) {
        // KVM runs guests of the host's own architecture only.
        return Err(format!(
            "KVM cannot run an {} guest on this {} host",
            arch.name(),
            Arch::host().map_or("unknown", Arch::name)
        ));
    }
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
        return run_probe(arch, kernel);
    }
    // v2: the probe waits for the end of the kernel's boot, not its first line (a KVM guest
    // that prints its banner and then hangs is not a working KVM).
    let memo = cache.root.join(format!("kvm-probe-v2-{boot_id}"));
    if let Ok(v) = std::fs::read_to_string(&memo) {
        return if v.trim() == "ok" {
            Ok(())
        } else {
            Err(v.trim().to_owned())
        };
    }
    let result = run_probe(arch, kernel);
    let answer = result.as_ref().map_or_else(|e| e.clone(), |_| "ok".into());
    // Only saves the next probe: a cache that cannot take it is reported, not fatal.
    if let Err(e) = std::fs::create_dir_all(memo.parent().expect("in the cache"))
        .and_then(|()| crate::fsio::write_atomic(&memo, answer.as_bytes(), 0o644))
    {
        eprintln!(
            "stratos: warning: cannot cache the KVM probe in {}: {e}",
            memo.display()
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

/// The machine the probe boots on: the plainest one QEMU has for `arch`.
fn probe_machine(arch: Arch) -> &'static str {
    arch.qemu_plain_machine()
}

/// The probe's kernel command line: everything on the first serial port, as early as the
/// kernel can print, and no reboot after the panic that ends a boot without a root.
fn probe_cmdline(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1",
        Arch::Aarch64 => "console=ttyAMA0 earlycon=pl011,0x9000000 panic=-1",
    }
}

fn run_probe(arch: Arch, kernel: &Path) -> Result<(), String> {
    let mut child = qemu_command(arch)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .args([
            "-M",
            probe_machine(arch),
            "-accel",
            "kvm",
            "-m",
            "256",
            "-kernel",
        ])
        .arg(kernel)
        .args(["-append", probe_cmdline(arch)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .traced()
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", arch.qemu_binary()))?;
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

/// Resolves `auto` to KVM or TCG for an `arch` guest booting `kernel` (the probe's answer kept
/// in `cache`); `kvm` fails if KVM does not work.
pub fn choose_accel(
    choice: AccelChoice,
    arch: Arch,
    kernel: &Path,
    cache: &Cache,
) -> Result<(Accel, Option<String>), QemuError> {
    match choice {
        AccelChoice::Tcg => Ok((Accel::Tcg, None)),
        AccelChoice::Kvm => probe_kvm(arch, kernel, cache)
            .map(|_| (Accel::Kvm, None))
            .map_err(QemuError::NoKvm),
        AccelChoice::Auto => Ok(match probe_kvm(arch, kernel, cache) {
            Ok(()) => (Accel::Kvm, None),
            Err(why) => (Accel::Tcg, Some(why)),
        }),
    }
}
