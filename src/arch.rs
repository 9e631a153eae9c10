//! The architecture an image is built for: the one place that knows its name in each tool's
//! vocabulary — Debian's, Rust's, the kernel's, QEMU's, the audit subsystem's, libseccomp's,
//! Go's and PyPI's — as mkosi's `architecture.py` and apko's `Architecture` do.
//!
//! x86-64 is the only architecture built today. Code that depends on the architecture asks
//! this type rather than writing a literal, so a second one is a new variant and its answers.

use std::fmt;

/// An image's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Arch {
    /// x86-64 (Debian `amd64`).
    #[default]
    X86_64,
}

impl Arch {
    /// Every architecture StratOS builds for.
    pub const ALL: &'static [Arch] = &[Arch::X86_64];

    /// Debian's name (`Architecture:` in package indices, `arch=` in purls).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
        }
    }

    /// The multiarch tuple: the library directories' name (`/usr/lib/<tuple>`).
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
        }
    }

    /// The directories the dynamic loader searches, in order.
    pub fn library_dirs(self) -> [String; 2] {
        [
            format!("/lib/{}", self.multiarch()),
            format!("/usr/lib/{}", self.multiarch()),
        ]
    }

    /// The Rust target triple the init is built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// The kernel's `ARCH=` for `make`.
    pub fn kernel_make_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
        }
    }

    /// The kernel's source directory under `arch/` (what `Kconfig` is read with as `SRCARCH`).
    pub fn kernel_src_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
        }
    }

    /// The compressed boot image `make` leaves in the source tree.
    pub fn kernel_boot_image(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
        }
    }

    /// The QEMU system emulator.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
        }
    }

    /// The Debian package holding [`Arch::qemu_binary`] (what `ci/setup` installs).
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
        }
    }

    /// The plainest full machine QEMU has for the architecture (the KVM probe boots on it).
    pub fn qemu_plain_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "q35",
        }
    }

    /// The first serial port as the kernel names it on that machine (`console=`).
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
        }
    }

    /// The kernel options that make [`Arch::serial_console`] exist at boot and usable as the
    /// console, each of which must be built in (`y`).
    pub fn serial_console_options(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["SERIAL_8250", "SERIAL_8250_CONSOLE"],
        }
    }

    /// npm's name (`process.arch`, what a package's `cpu` field lists).
    pub fn npm_cpu(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
        }
    }

    /// `AUDIT_ARCH_*`: what a seccomp filter compares `seccomp_data.arch` with.
    pub fn audit_arch(self) -> u32 {
        match self {
            // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::X86_64 => 0xC000_003E,
        }
    }

    /// The bit that marks a second ABI's system call numbers under the same audit architecture,
    /// which a seccomp filter must refuse: x32's `__X32_SYSCALL_BIT` on x86-64.
    pub fn second_abi_syscall_bit(self) -> Option<u32> {
        match self {
            Arch::X86_64 => Some(0x4000_0000),
        }
    }

    /// libseccomp's name (`SCMP_ARCH_*`, as OCI seccomp policies write it).
    pub fn seccomp(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
        }
    }

    /// The names OCI policies' `includes.arches` may use for it (Go's and the kernel's).
    pub fn policy_names(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["amd64", "x86_64"],
        }
    }

    /// The machine suffix of a manylinux wheel's platform tag (`manylinux_2_17_<suffix>`).
    pub fn wheel_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
        }
    }

    /// The ELF `e_machine` of its executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => goblin::elf::header::EM_X86_64,
        }
    }

    /// How people write it in messages.
    pub fn human(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.human())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_names_match_each_tool() {
        let a = Arch::X86_64;
        assert_eq!(a.debian(), "amd64");
        assert_eq!(
            a.library_dirs(),
            ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
        );
        assert_eq!(a.kernel_src_arch(), "x86");
        assert_eq!(a.qemu_package(), "qemu-system-x86");
        assert_eq!(a.qemu_plain_machine(), "q35");
        assert_eq!(a.serial_console(), "ttyS0");
        assert_eq!(a.npm_cpu(), "x64");
        assert!(a.kernel_boot_image().starts_with("arch/x86/"));
        // linux/audit.h: AUDIT_ARCH_X86_64 = EM_X86_64 (62) | 64-bit | little-endian.
        assert_eq!(a.audit_arch(), 62 | 0x8000_0000 | 0x4000_0000);
        assert_eq!(u32::from(a.elf_machine()), a.audit_arch() & 0xffff);
        assert!(a.policy_names().contains(&"amd64"));
        // arch/x86/include/uapi/asm/unistd.h: __X32_SYSCALL_BIT 0x40000000.
        assert_eq!(a.second_abi_syscall_bit(), Some(1 << 30));
    }
}
