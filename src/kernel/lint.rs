//! `stratos kernel lint`: known slow-boot and hardening traps in a kernel config, each with why
//! it matters and the fix. Every rule cites where the advice comes from.

use serde::Serialize;

use super::config::{Config, Value};
use crate::arch::Arch;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `vga-console`.
    pub rule: &'static str,
    /// `broken`, `slow-boot` or `hardening`.
    pub kind: &'static str,
    pub message: String,
    pub fix: String,
}

/// What the lint looks at besides the config.
pub struct Context<'a> {
    /// The architecture the kernel boots on (its serial console's name and driver).
    pub arch: Arch,
    /// `bzImage` or `vmlinux`.
    pub format: &'a str,
    pub cmdline: &'a str,
    /// Kernel modules the image carries.
    pub modules_in_image: usize,
    /// Whether the image loads the virtio_rng module (a modular kernel's entropy driver).
    pub modules_names_rng: bool,
    /// Whether the root is an EROFS image on a disk behind dm-verity (`[image] root = "erofs"`).
    pub erofs_root: bool,
}

fn num(c: &Config, name: &str) -> Option<i64> {
    match c.get(name) {
        Some(Value::Num(n)) => n.parse().ok(),
        _ => None,
    }
}

pub fn lint(c: &Config, cx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for rules in [
        boot_requirements,
        serial_console,
        boot_time,
        console_and_size,
        hardening,
    ] {
        rules(c, cx, &mut out);
    }
    out
}

/// What the image needs to boot at all, and to boot without waiting: its root, its devices, entropy.
fn boot_requirements(c: &Config, cx: &Context, out: &mut Vec<Finding>) {
    let mut add = |rule, kind, message: &str, fix: &str| {
        out.push(Finding {
            rule,
            kind,
            message: message.to_owned(),
            fix: fix.to_owned(),
        })
    };
    // A verified EROFS root is set up by the kernel itself from dm-mod.create= before it
    // mounts the root: everything on the way must be built in (there is no initramfs to load
    // modules from). tinyconfig drops EROFS_FS silently without MISC_FILESYSTEMS.
    if cx.erofs_root {
        let missing: Vec<&str> = [
            "VIRTIO_BLK",
            "MISC_FILESYSTEMS",
            "EROFS_FS",
            "BLK_DEV_DM",
            "DM_INIT",
            "DM_VERITY",
            "CRYPTO_SHA256",
        ]
        .into_iter()
        .filter(|o| !c.is_builtin(o))
        .collect();
        if !missing.is_empty() {
            add(
                "erofs-verity-root",
                "broken",
                &format!(
                    "the image's root is an EROFS image behind dm-verity, but {} not built in: the kernel cannot mount its root",
                    missing.iter().map(|o| format!("CONFIG_{o}")).collect::<Vec<_>>().join(", ")
                        + if missing.len() == 1 { " is" } else { " are" }
                ),
                "add kernel-configs/erofs-verity.config to the profile's fragments",
            );
        }
    }
    // Our initramfs is zstd-compressed (archive::zst); the kernel must be able to unpack it.
    if !cx.erofs_root && (!c.is_builtin("BLK_DEV_INITRD") || !c.is_builtin("RD_ZSTD")) {
        add(
            "initramfs-zstd",
            "broken",
            "the image's initramfs is a zstd-compressed cpio, but CONFIG_BLK_DEV_INITRD/CONFIG_RD_ZSTD is not built in: the kernel cannot unpack its root filesystem",
            "CONFIG_BLK_DEV_INITRD=y and CONFIG_RD_ZSTD=y (kernel-configs/base.config)",
        );
    }
    // Without an entropy source the random pool is ready only seconds into a TCG boot (no
    // RDRAND on QEMU's default CPU, no interrupt entropy in a microVM) and every getrandom()
    // blocks until then (NOTES.md, "Where boot time goes": Python waited ~2.6 s).
    if !c.is_builtin("HW_RANDOM_VIRTIO") && !cx.modules_names_rng {
        add(
            "no-entropy-source",
            "slow-boot",
            "no entropy device driver (CONFIG_HW_RANDOM_VIRTIO): the random pool is not ready when the runtime starts, and getrandom() blocks for seconds under emulation",
            "CONFIG_HW_RANDOM=y and CONFIG_HW_RANDOM_VIRTIO=y (kernel-configs/entropy.config); stratos boot and boot-test attach a virtio-rng device",
        );
    }
    // QEMU's microvm describes virtio-mmio devices on the command line
    // (qemu docs/system/i386/microvm.rst, "auto-kernel-cmdline").
    if c.is_builtin("VIRTIO_MMIO") && !c.is_builtin("VIRTIO_MMIO_CMDLINE_DEVICES") {
        add(
            "virtio-mmio-cmdline",
            "broken",
            "virtio-mmio without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: under QEMU microvm the kernel finds no devices (no network)",
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y (kernel-configs/virtio.config)",
        );
    }
}

/// The serial port is the only console a microVM has: `stratos boot` shows it (QEMU's
/// `-serial`), the init writes the runtime's output to `/dev/console`, and a kernel that cannot
/// boot says why only there. The kernel needs the port's driver and its console built in
/// (drivers/tty/serial/8250/Kconfig: SERIAL_8250_CONSOLE "depends on SERIAL_8250=y"; a
/// module registers too late for the boot messages), and `console=` naming it
/// (Documentation/admin-guide/serial-console.rst; without it the console is tty0, a display).
fn serial_console(c: &Config, cx: &Context, out: &mut Vec<Finding>) {
    let port = cx.arch.serial_console();
    let missing: Vec<String> = cx
        .arch
        .serial_console_options()
        .iter()
        .filter(|o| !c.is_builtin(o))
        .map(|o| format!("CONFIG_{o}"))
        .collect();
    if !missing.is_empty() {
        let list = missing.join(" and ");
        out.push(Finding {
            rule: "no-serial-console",
            kind: "broken",
            message: format!(
                "no serial console: {list} not built in, so the kernel has no {port} to print to; `stratos boot` shows nothing, the runtime's output is lost and a boot that fails says nothing"
            ),
            fix: format!(
                "add kernel-configs/serial-console.config to [kernel] fragments ({}=y)",
                missing.join("=y, ")
            ),
        });
    }
    let names_port = cx.cmdline.split_whitespace().any(|w| {
        w.strip_prefix("console=")
            .is_some_and(|dev| dev.split(',').next() == Some(port))
    });
    if !names_port {
        out.push(Finding {
            rule: "serial-console-cmdline",
            kind: "broken",
            message: format!(
                "the kernel command line has no console={port}: the kernel and the init write to tty0 (a display no microVM has), not to the serial port `stratos boot` shows"
            ),
            fix: format!("add console={port} to cmdline in [kernel]"),
        });
    }
}

/// Work the kernel does at boot that a microVM does not need.
fn boot_time(c: &Config, cx: &Context, out: &mut Vec<Finding>) {
    let mut add = |rule, kind, message: &str, fix: &str| {
        out.push(Finding {
            rule,
            kind,
            message: message.to_owned(),
            fix: fix.to_owned(),
        })
    };
    // Firecracker's guest kernel configs (resources/guest_configs/microvm-kernel-ci-x86_64-6.1.config)
    // leave VGA and framebuffer consoles out: a microVM has no display, and drawing costs boot time.
    for opt in ["VGA_CONSOLE", "FRAMEBUFFER_CONSOLE"] {
        if c.is_enabled(opt) {
            add(
                "vga-console",
                "slow-boot",
                &format!("CONFIG_{opt} is on: a console on a display no microVM has; initialising and drawing it costs boot time"),
                &format!("# CONFIG_{opt} is not set; use console=ttyS0 (kernel-configs/serial-console.config)"),
            );
        }
    }
    // Firecracker docs (docs/api_requests/actions.md, boot time guidance) and its default
    // command line "i8042.noaux i8042.nomux i8042.dumbkbd": PS/2 probing is slow in a VM.
    if c.is_enabled("SERIO_I8042") && !cx.cmdline.contains("i8042.") {
        add(
            "i8042-probe",
            "slow-boot",
            "CONFIG_SERIO_I8042 probes a PS/2 keyboard/mouse controller at boot, which a function node never has",
            "# CONFIG_SERIO_I8042 is not set, or add i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd to the cmdline",
        );
    }
    // QEMU (PVH, docs/system/i386/pc.rst) and Firecracker load an uncompressed ELF vmlinux
    // directly; a bzImage spends boot time decompressing itself.
    if cx.format == "bzImage" && c.is_builtin("PVH") {
        add(
            "compressed-image",
            "slow-boot",
            "the kernel is a compressed bzImage although it has a PVH entry point: the VMM could load the uncompressed vmlinux and skip decompression",
            "format = \"vmlinux\" in [kernel]",
        );
    }
    // crypto/Kconfig, CRYPTO_MANAGER_DISABLE_TESTS: "Disable run-time self tests that normally
    // take place at algorithm registration."
    if c.is_enabled("CRYPTO_MANAGER") && !c.is_builtin("CRYPTO_MANAGER_DISABLE_TESTS") {
        add(
            "crypto-self-tests",
            "slow-boot",
            "crypto self-tests run for every algorithm registered at boot",
            "CONFIG_CRYPTO_MANAGER_DISABLE_TESTS=y",
        );
    }
}

/// What costs boot time on the serial console, and in the kernel's size.
fn console_and_size(c: &Config, cx: &Context, out: &mut Vec<Finding>) {
    let mut add = |rule, kind, message: &str, fix: &str| {
        out.push(Finding {
            rule,
            kind,
            message: message.to_owned(),
            fix: fix.to_owned(),
        })
    };
    // drivers/tty/serial/8250/Kconfig: SERIAL_8250_RUNTIME_UARTS ports are registered and probed.
    if num(c, "SERIAL_8250_RUNTIME_UARTS").unwrap_or(0) > 1
        || num(c, "SERIAL_8250_NR_UARTS").unwrap_or(0) > 1
    {
        add(
            "serial-ports",
            "slow-boot",
            "more than one 8250 UART is registered and probed; a microVM has one",
            "CONFIG_SERIAL_8250_NR_UARTS=1 and CONFIG_SERIAL_8250_RUNTIME_UARTS=1",
        );
    }
    // Documentation/admin-guide/kernel-parameters.txt, "quiet": every message printed to an
    // emulated UART costs time; `quiet` keeps warnings and errors.
    if !cx
        .cmdline
        .split_whitespace()
        .any(|w| w == "quiet" || w.starts_with("loglevel="))
    {
        add(
            "console-verbosity",
            "slow-boot",
            "the kernel prints every boot message to the serial console",
            "add quiet to cmdline in [kernel]",
        );
    }
    if c.is_builtin("DEBUG_INFO")
        || c.is_builtin("DEBUG_INFO_DWARF5")
        || c.is_builtin("DEBUG_INFO_DWARF4")
    {
        add(
            "debug-info",
            "slow-boot",
            "debug info makes the kernel much larger (and its build slower); nothing in a node reads it",
            "# CONFIG_DEBUG_INFO is not set (keep it in a debug fragment)",
        );
    }
}

/// What hardens a function node without costing boot time.
fn hardening(c: &Config, cx: &Context, out: &mut Vec<Finding>) {
    let mut add = |rule, kind, message: &str, fix: &str| {
        out.push(Finding {
            rule,
            kind,
            message: message.to_owned(),
            fix: fix.to_owned(),
        })
    };
    // Kernel Self Protection Project, recommended settings
    // (kernsec.org/wiki/index.php/Kernel_Self_Protection_Project/Recommended_Settings).
    if c.is_builtin("MODULES") && cx.modules_in_image == 0 {
        add(
            "modules-unused",
            "hardening",
            "loadable module support is on but the image carries no modules: it only adds an attack surface",
            "# CONFIG_MODULES is not set",
        );
    }
    if !c.is_builtin("SECCOMP") || !c.is_builtin("SECCOMP_FILTER") {
        add(
            "no-seccomp",
            "hardening",
            "no seccomp filters: the runtime cannot be confined to a system call baseline",
            "CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y (kernel-configs/seccomp.config)",
        );
    }
    if c.is_builtin("DEVMEM") {
        add(
            "devmem",
            "hardening",
            "/dev/mem gives root raw access to physical memory",
            "# CONFIG_DEVMEM is not set (or at least CONFIG_STRICT_DEVMEM=y and CONFIG_IO_STRICT_DEVMEM=y)",
        );
        if !c.is_builtin("STRICT_DEVMEM") {
            add(
                "strict-devmem",
                "hardening",
                "/dev/mem is unrestricted (no CONFIG_STRICT_DEVMEM)",
                "CONFIG_STRICT_DEVMEM=y and CONFIG_IO_STRICT_DEVMEM=y",
            );
        }
    }
    if c.is_builtin("DEVKMEM") {
        add(
            "devkmem",
            "hardening",
            "/dev/kmem gives root read/write access to kernel memory",
            "# CONFIG_DEVKMEM is not set",
        );
    }
    if c.is_builtin("64BIT") && !c.is_builtin("STRICT_KERNEL_RWX") {
        add(
            "kernel-rwx",
            "hardening",
            "kernel text and rodata are not write-protected",
            "CONFIG_STRICT_KERNEL_RWX=y",
        );
    }
    if !c.is_builtin("STACKPROTECTOR") {
        add(
            "stack-protector",
            "hardening",
            "the kernel is built without stack canaries",
            "CONFIG_STACKPROTECTOR=y (CONFIG_STACKPROTECTOR_STRONG=y)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            arch: Arch::X86_64,
            format: "vmlinux",
            cmdline: "console=ttyS0 quiet",
            modules_in_image: 0,
            modules_names_rng: false,
            erofs_root: false,
        }
    }

    const GOOD: &str = "CONFIG_64BIT=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_RD_ZSTD=y\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\nCONFIG_SECCOMP=y\nCONFIG_SECCOMP_FILTER=y\nCONFIG_STRICT_KERNEL_RWX=y\nCONFIG_STACKPROTECTOR=y\nCONFIG_PVH=y\nCONFIG_SERIAL_8250_NR_UARTS=1\nCONFIG_HW_RANDOM=y\nCONFIG_HW_RANDOM_VIRTIO=y\nCONFIG_SERIAL_8250=y\nCONFIG_SERIAL_8250_CONSOLE=y\n";

    #[test]
    fn a_kernel_without_an_entropy_source_is_flagged() {
        let c = Config::parse(&GOOD.replace("CONFIG_HW_RANDOM_VIRTIO=y\n", "")).unwrap();
        let f = lint(&c, &cx());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "no-entropy-source");
        assert!(f[0].fix.contains("entropy.config"));
        // A modular kernel that loads virtio_rng has one.
        let modular = Context {
            modules_names_rng: true,
            ..cx()
        };
        assert!(lint(&c, &modular).is_empty());
    }

    #[test]
    fn an_erofs_root_needs_dm_init_and_erofs_built_in() {
        let c = Config::parse(GOOD).unwrap();
        let erofs = Context {
            erofs_root: true,
            ..cx()
        };
        let f = lint(&c, &erofs);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "erofs-verity-root");
        assert!(f[0].message.contains("CONFIG_DM_INIT"), "{}", f[0].message);
        let full = format!("{GOOD}CONFIG_VIRTIO_BLK=y\nCONFIG_MISC_FILESYSTEMS=y\nCONFIG_EROFS_FS=y\nCONFIG_BLK_DEV_DM=y\nCONFIG_DM_INIT=y\nCONFIG_DM_VERITY=y\nCONFIG_CRYPTO_SHA256=y\n");
        assert!(lint(&Config::parse(&full).unwrap(), &erofs).is_empty());
    }

    #[test]
    fn a_kernel_without_a_serial_console_is_flagged() {
        // No 8250 console: the driver as a module does not count.
        let c = Config::parse(
            &GOOD
                .replace("CONFIG_SERIAL_8250=y\n", "CONFIG_SERIAL_8250=m\n")
                .replace("CONFIG_SERIAL_8250_CONSOLE=y\n", ""),
        )
        .unwrap();
        let f = lint(&c, &cx());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].rule, f[0].kind), ("no-serial-console", "broken"));
        assert!(
            f[0].message
                .contains("CONFIG_SERIAL_8250 and CONFIG_SERIAL_8250_CONSOLE not built in"),
            "{}",
            f[0].message
        );
        assert_eq!(
            f[0].fix,
            "add kernel-configs/serial-console.config to [kernel] fragments (CONFIG_SERIAL_8250=y, CONFIG_SERIAL_8250_CONSOLE=y)"
        );
        // The console on the command line: ttyS0 (with or without options), not another one.
        let good = Config::parse(GOOD).unwrap();
        for (cmdline, flagged) in [
            ("console=ttyS0,115200 quiet", false),
            ("console=tty0 console=ttyS0 quiet", false),
            ("quiet", true),
            ("console=tty0 quiet", true),
            ("console=ttyS01 quiet", true),
        ] {
            let f = lint(&good, &Context { cmdline, ..cx() });
            let rules: Vec<&str> = f.iter().map(|f| f.rule).collect();
            assert_eq!(
                rules.contains(&"serial-console-cmdline"),
                flagged,
                "{cmdline}: {rules:?}"
            );
            if flagged {
                assert_eq!(f[0].fix, "add console=ttyS0 to cmdline in [kernel]");
            }
        }
    }

    #[test]
    fn a_good_config_is_clean() {
        assert_eq!(lint(&Config::parse(GOOD).unwrap(), &cx()), vec![]);
    }

    #[test]
    fn each_trap_is_flagged() {
        let bad = format!(
            "{GOOD}CONFIG_VGA_CONSOLE=y\nCONFIG_SERIO_I8042=y\nCONFIG_CRYPTO_MANAGER=y\nCONFIG_MODULES=y\nCONFIG_DEVMEM=y\n# CONFIG_SECCOMP_FILTER is not set\nCONFIG_SERIAL_8250_RUNTIME_UARTS=4\n"
        );
        let c = Config::parse(&bad).unwrap();
        let ctx = Context {
            arch: Arch::X86_64,
            format: "bzImage",
            cmdline: "console=ttyS0",
            modules_in_image: 0,
            modules_names_rng: false,
            erofs_root: false,
        };
        let rules: Vec<&str> = lint(&c, &ctx).iter().map(|f| f.rule).collect();
        for r in [
            "vga-console",
            "i8042-probe",
            "compressed-image",
            "crypto-self-tests",
            "serial-ports",
            "console-verbosity",
            "modules-unused",
            "no-seccomp",
            "devmem",
            "strict-devmem",
        ] {
            assert!(!rules.contains(&"no-entropy-source"), "{rules:?}");
            assert!(rules.contains(&r), "{r} not flagged: {rules:?}");
        }
    }

    #[test]
    fn broken_configs() {
        let c = Config::parse("CONFIG_VIRTIO_MMIO=y\n").unwrap();
        let rules: Vec<&str> = lint(&c, &cx()).iter().map(|f| f.rule).collect();
        assert!(rules.contains(&"initramfs-zstd"));
        assert!(rules.contains(&"virtio-mmio-cmdline"));
    }
}
