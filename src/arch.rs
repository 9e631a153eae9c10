//! The architecture an image is built for: the one place that knows its name in each tool's
//! vocabulary — Debian's, Rust's, the kernel's, QEMU's, the audit subsystem's, libseccomp's,
//! Go's and PyPI's — as mkosi's `architecture.py` and apko's `Architecture` do.
//!
//! Two are built: x86-64 and aarch64 (arm64). Code that depends on the architecture asks this
//! type rather than writing a literal, so a third one is a new variant and its answers.

use std::fmt;

/// An image's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Arch {
    /// x86-64 (Debian `amd64`).
    #[default]
    X86_64,
    /// 64-bit Arm (Debian `arm64`).
    Aarch64,
}

impl Arch {
    /// Every architecture StratOS builds for.
    pub const ALL: &'static [Arch] = &[Arch::X86_64, Arch::Aarch64];

    /// Debian's name (`Architecture:` in package indices, `arch=` in purls).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The multiarch tuple: the library directories' name (`/usr/lib/<tuple>`).
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
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
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The kernel's `ARCH=` for `make`.
    pub fn kernel_make_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The kernel's source directory under `arch/` (what `Kconfig` is read with as `SRCARCH`).
    pub fn kernel_src_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The compressed boot image `make` leaves in the source tree.
    pub fn kernel_boot_image(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
            Arch::Aarch64 => "arch/arm64/boot/Image",
        }
    }

    /// The QEMU system emulator.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package holding [`Arch::qemu_binary`] (what `ci/setup` installs).
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }

    /// The plainest full machine QEMU has for the architecture (the KVM probe boots on it).
    pub fn qemu_plain_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "q35",
            Arch::Aarch64 => "virt",
        }
    }

    /// The first serial port as the kernel names it on that machine (`console=`).
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// The kernel options that make [`Arch::serial_console`] exist at boot and usable as the
    /// console, each of which must be built in (`y`).
    pub fn serial_console_options(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["SERIAL_8250", "SERIAL_8250_CONSOLE"],
            Arch::Aarch64 => &["SERIAL_AMBA_PL011", "SERIAL_AMBA_PL011_CONSOLE"],
        }
    }

    /// npm's name (`process.arch`, what a package's `cpu` field lists).
    pub fn npm_cpu(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// `AUDIT_ARCH_*`: what a seccomp filter compares `seccomp_data.arch` with.
    pub fn audit_arch(self) -> u32 {
        match self {
            // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::X86_64 => 0xC000_003E,
            // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::Aarch64 => 0xC000_00B7,
        }
    }

    /// The bit that marks a second ABI's system call numbers under the same audit architecture,
    /// which a seccomp filter must refuse: x32's `__X32_SYSCALL_BIT` on x86-64.
    pub fn second_abi_syscall_bit(self) -> Option<u32> {
        match self {
            Arch::X86_64 => Some(0x4000_0000),
            // 32-bit Arm processes have their own audit architecture (AUDIT_ARCH_ARM), which
            // the filter's architecture check already refuses.
            Arch::Aarch64 => None,
        }
    }

    /// libseccomp's name (`SCMP_ARCH_*`, as OCI seccomp policies write it).
    pub fn seccomp(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
        }
    }

    /// The names OCI policies' `includes.arches` may use for it (Go's and the kernel's).
    pub fn policy_names(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["amd64", "x86_64"],
            Arch::Aarch64 => &["arm64", "aarch64"],
        }
    }

    /// The machine suffix of a manylinux wheel's platform tag (`manylinux_2_17_<suffix>`).
    pub fn wheel_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The ELF `e_machine` of its executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => goblin::elf::header::EM_X86_64,
            Arch::Aarch64 => goblin::elf::header::EM_AARCH64,
        }
    }

    /// The word profiles, the CLI, manifests and channels use (`[image] arch`, `--arch`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The architecture a word names: the profile's word, Debian's or the kernel's.
    pub fn parse(word: &str) -> Option<Arch> {
        Arch::ALL
            .iter()
            .copied()
            .find(|a| a.name() == word || a.debian() == word || a.kernel_make_arch() == word)
    }

    /// The words [`Arch::parse`] accepts, for messages.
    pub fn allowed() -> String {
        Arch::ALL
            .iter()
            .map(|a| format!("\"{}\"", a.name()))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// The architecture this program runs on.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The GNU cross toolchain's prefix (`CROSS_COMPILE=`) when building for it on another
    /// architecture; none when the host builds its own.
    pub fn cross_compile(self) -> Option<&'static str> {
        if Arch::host() == Some(self) {
            return None;
        }
        Some(match self {
            Arch::X86_64 => "x86_64-linux-gnu-",
            Arch::Aarch64 => "aarch64-linux-gnu-",
        })
    }

    /// The Debian package holding [`Arch::cross_compile`]'s compiler.
    pub fn cross_gcc_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "gcc-x86-64-linux-gnu",
            Arch::Aarch64 => "gcc-aarch64-linux-gnu",
        }
    }

    /// The user-mode emulator that runs its programs on another architecture (the build's
    /// bytecode step), from Debian's `qemu-user-static`.
    pub fn qemu_user(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-x86_64-static",
            Arch::Aarch64 => "qemu-aarch64-static",
        }
    }

    /// How people write it in messages.
    pub fn human(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl serde::Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Arch::parse(&word).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{word:?} is not an architecture StratOS builds; use {}",
                Arch::allowed()
            ))
        })
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::parse(s).ok_or_else(|| {
            format!(
                "{s:?} is not an architecture StratOS builds; use {}",
                Arch::allowed()
            )
        })
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

    #[test]
    fn aarch64_names_match_each_tool() {
        let a = Arch::Aarch64;
        assert_eq!(a.debian(), "arm64");
        assert_eq!(
            a.library_dirs(),
            ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        );
        assert_eq!(a.kernel_src_arch(), "arm64");
        assert_eq!(a.kernel_make_arch(), "arm64");
        assert_eq!(a.kernel_boot_image(), "arch/arm64/boot/Image");
        assert_eq!(a.qemu_binary(), "qemu-system-aarch64");
        assert_eq!(a.serial_console(), "ttyAMA0");
        assert_eq!(a.npm_cpu(), "arm64");
        // linux/audit.h: AUDIT_ARCH_AARCH64 = EM_AARCH64 (183) | 64-bit | little-endian.
        assert_eq!(a.audit_arch(), 183 | 0x8000_0000 | 0x4000_0000);
        assert_eq!(u32::from(a.elf_machine()), a.audit_arch() & 0xffff);
        assert_eq!(a.second_abi_syscall_bit(), None);
        assert_eq!(a.seccomp(), "SCMP_ARCH_AARCH64");
    }

    #[test]
    fn words_parse_back() {
        for &a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()), Some(a));
            assert_eq!(Arch::parse(a.debian()), Some(a));
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
        }
        assert_eq!(Arch::parse("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::parse("i386"), None);
        assert!("riscv64"
            .parse::<Arch>()
            .unwrap_err()
            .contains("\"aarch64\""));
        assert_eq!(Arch::host(), Some(Arch::X86_64));
        assert_eq!(Arch::X86_64.cross_compile(), None);
        assert_eq!(Arch::Aarch64.cross_compile(), Some("aarch64-linux-gnu-"));
    }
}
