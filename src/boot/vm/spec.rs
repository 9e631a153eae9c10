//! What QEMU is asked to run: the machine, the accelerator, the guest's devices and the command
//! line that says so ([`VmSpec::args`]).

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::kernel::Config;

pub use stratos_wire::CONTROL_PORT;

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
    /// arm64's `-M virt`: virtio over MMIO transports the device tree describes (the kernel
    /// finds them without command-line devices), a GIC, a PL011 UART and PSCI.
    Virt,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
            Machine::Virt => "virt",
        }
    }

    /// `microvm` when the kernel has built-in virtio-mmio with command-line devices (how
    /// QEMU tells microvm guests where their devices are); `q35` otherwise (or unknown config).
    /// An aarch64 guest always gets `virt`.
    pub fn for_kernel(arch: Arch, config: Option<&Config>) -> Machine {
        if arch == Arch::Aarch64 {
            return Machine::Virt;
        }
        match config {
            Some(c)
                if c.is_builtin("VIRTIO_MMIO") && c.is_builtin("VIRTIO_MMIO_CMDLINE_DEVICES") =>
            {
                Machine::Microvm
            }
            _ => Machine::Q35,
        }
    }

    /// The virtio device `name` on this machine's bus (`virtio-<name>-device` on microvm's
    /// MMIO, `virtio-<name>-pci` on q35).
    fn virtio(self, name: &str) -> String {
        match self {
            Machine::Microvm | Machine::Virt => format!("virtio-{name}-device"),
            Machine::Q35 => format!("virtio-{name}-pci"),
        }
    }
}

/// The CPU QEMU emulates for an arm64 guest under TCG.
pub const ARM_CPU_TCG: &str = "cortex-a57";

/// The variable that replaces [`ARM_CPU_TCG`] (a QEMU `-cpu` value: letters, digits, `,=_-.`).
pub const ARM_CPU_ENV: &str = "STRATOS_ARM_CPU";

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

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The guest's architecture: which QEMU runs it.
    pub arch: Arch,
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

    /// QEMU's arguments: no defaults and no display, the serial console on stdio, the machine,
    /// the kernel and its root, the network, the entropy device, and the control channel.
    pub fn args(&self) -> Vec<String> {
        let mut a = self.console_args();
        a.extend(self.machine_args());
        a.extend(self.kernel_args());
        a.extend(self.root_args());
        a.extend(self.net_args());
        a.extend(self.rng_args());
        if let Some(s) = &self.snapshot {
            a.extend(self.snapshot_args(s));
        } else if let Some(c) = &self.control {
            a.extend(self.channel_args(c));
        }
        a
    }

    /// Nothing QEMU would add by itself; the serial console on stdio (the terminal's input too
    /// when interactive).
    fn console_args(&self) -> Vec<String> {
        vec![
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
        ]
    }

    /// The machine (its RAM from the snapshot's memory backend, when there is one).
    fn machine_args(&self) -> Vec<String> {
        let backend = if self.snapshot.is_some() {
            ",memory-backend=mem"
        } else {
            ""
        };
        let machine = match self.machine {
            Machine::Microvm => format!("microvm,x-option-roms=off,acpi=off{backend}"),
            Machine::Q35 => format!("q35{backend}"),
            Machine::Virt => format!("virt{backend}"),
        };
        let mut a = vec!["-M".into(), machine];
        if self.machine == Machine::Virt {
            a.extend(["-cpu".into(), self.arm_cpu()]);
        }
        a
    }

    /// The CPU of an arm64 guest. Under KVM the host's own. Under TCG, QEMU 7.2's `virt`
    /// would default to a 32-bit Cortex-A15: `cortex-a57`, a plain ARMv8.0 core, which LinuxKit
    /// boots arm64 with too. `max,pauth-impdef=on` (ARMv8.x with pointer authentication, its
    /// emulation made cheap) was measured against it: see ARM_CPU_TCG. `$STRATOS_ARM_CPU`
    /// replaces the TCG choice (for benchmarks: `ci/bench-arm64` tries both).
    fn arm_cpu(&self) -> String {
        match self.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => std::env::var(ARM_CPU_ENV)
                .ok()
                .filter(|c| {
                    !c.is_empty()
                        && c.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ",=_-.".contains(ch))
                })
                .unwrap_or_else(|| ARM_CPU_TCG.into()),
        }
    }

    /// The accelerator, memory, CPUs, the kernel and its command line.
    fn kernel_args(&self) -> Vec<String> {
        vec![
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
        ]
    }

    fn root_args(&self) -> Vec<String> {
        match &self.root {
            Root::Initramfs(p) => vec!["-initrd".into(), p.display().to_string()],
            // QEMU's -drive splits on commas: a comma in the path is written twice.
            Root::Disk(p) => vec![
                "-drive".into(),
                format!(
                    "file={},if=none,id=root,format=raw,readonly=on",
                    comma_safe(p)
                ),
                "-device".into(),
                format!("{},drive=root", self.machine.virtio("blk")),
            ],
        }
    }

    /// User networking, isolated: the guest cannot reach the host or the outside; only the
    /// explicit forwards from 127.0.0.1 reach it.
    fn net_args(&self) -> Vec<String> {
        let mut netdev = "user,id=n0,restrict=on".to_owned();
        for f in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
        }
        let nic = match self.machine {
            Machine::Microvm | Machine::Virt => "virtio-net-device,netdev=n0",
            Machine::Q35 => "virtio-net-pci,netdev=n0,romfile=",
        };
        vec!["-netdev".into(), netdev, "-device".into(), nic.into()]
    }

    /// An entropy device fed from the host: without one the guest's random pool is ready only
    /// seconds into the boot under TCG (no RDRAND), and runtimes block in getrandom().
    fn rng_args(&self) -> Vec<String> {
        vec![
            "-object".into(),
            "rng-random,filename=/dev/urandom,id=rng0".into(),
            "-device".into(),
            format!("{},rng=rng0", self.machine.virtio("rng")),
        ]
    }

    /// The control channel: a virtio-serial port named [`CONTROL_PORT`] on a socket QEMU
    /// listens on. Two port slots (0, reserved for a console, and ours) instead of QEMU's 31:
    /// every slot costs the guest virtqueues (3.7 MiB less guest memory with 2, measured).
    fn channel_args(&self, socket: &Path) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!(
                "socket,id=restore,path={},server=on,wait=off",
                comma_safe(socket)
            ),
            "-device".into(),
            format!("{},max_ports=2", self.machine.virtio("serial")),
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
        assert_eq!(
            Machine::for_kernel(Arch::X86_64, Some(&c)),
            Machine::Microvm
        );
        // arm64 guests always get `virt` (devices from its device tree).
        assert_eq!(Machine::for_kernel(Arch::Aarch64, Some(&c)), Machine::Virt);
        let c = Config::parse("CONFIG_VIRTIO_MMIO=m\n").unwrap();
        assert_eq!(Machine::for_kernel(Arch::X86_64, Some(&c)), Machine::Q35);
        assert_eq!(Machine::for_kernel(Arch::X86_64, None), Machine::Q35);
    }

    #[test]
    fn an_arm64_guest_gets_virt_a_64_bit_cpu_and_mmio_devices() {
        let mut spec = VmSpec {
            arch: Arch::Aarch64,
            kernel: "Image".into(),
            root: Root::Disk("root.erofs".into()),
            cmdline: "console=ttyAMA0".into(),
            machine: Machine::Virt,
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            forwards: vec![],
            interactive: false,
            snapshot: None,
            control: Some("c.sock".into()),
        };
        let a = spec.args().join(" ");
        assert!(a.contains("-M virt -cpu cortex-a57"), "{a}");
        assert!(a.contains("virtio-blk-device,drive=root"), "{a}");
        assert!(a.contains("virtio-net-device,netdev=n0"), "{a}");
        assert!(a.contains("virtio-rng-device,rng=rng0"), "{a}");
        assert!(a.contains("virtio-serial-device,max_ports=2"), "{a}");
        assert!(!a.contains("-pci"), "{a}");
        assert!(!spec.full_cmdline().contains("tsc_early_khz"));
        spec.accel = Accel::Kvm;
        assert!(spec.args().join(" ").contains("-cpu host"));
    }

    #[test]
    fn args_forward_only_to_loopback_and_restrict_the_guest() {
        let spec = VmSpec {
            arch: Arch::X86_64,
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
