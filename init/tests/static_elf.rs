//! The init must be a static executable: the image has no dynamic loader. Both builds are
//! checked: the one of this target, and the arm64 one cross-built next to it
//! (`target/aarch64-unknown-linux-gnu/<profile>/stratos-init`), which `stratos build --arch
//! aarch64` puts in arm64 images.

use std::path::{Path, PathBuf};

/// `e_machine` of x86-64 and of arm64 executables (`<elf.h>`).
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Program header types of an ELF64 little-endian file for `machine`.
fn program_header_types(b: &[u8], machine: u16) -> Vec<u32> {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(b[4], 2, "not ELF64");
    assert_eq!(b[5], 1, "not little-endian");
    assert_eq!(u16_at(b, 18), machine, "e_machine is not {machine}");
    let phoff = u64_at(b, 32) as usize;
    let phentsize = u16_at(b, 54) as usize;
    let phnum = u16_at(b, 56) as usize;
    (0..phnum)
        .map(|i| u32_at(b, phoff + i * phentsize))
        .collect()
}

/// Checks that the executable at `path` is a static ELF for `machine`.
fn assert_static(path: &Path, machine: u16) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let types = program_header_types(&bytes, machine);
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    assert!(types.contains(&PT_LOAD), "{}", path.display());
    assert!(
        !types.contains(&PT_INTERP),
        "{} has a PT_INTERP: it is dynamically linked",
        path.display()
    );
    // static-pie keeps a PT_DYNAMIC for self-relocation but needs no shared libraries.
    let _ = PT_DYNAMIC;
}

#[test]
fn init_has_no_program_interpreter() {
    let machine = if cfg!(target_arch = "aarch64") {
        EM_AARCH64
    } else {
        EM_X86_64
    };
    assert_static(Path::new(env!("CARGO_BIN_EXE_stratos-init")), machine);
}

/// The arm64 init of the same Cargo profile as this test's init:
/// `<target dir>/<triple>/<profile>/stratos-init` → `<target dir>/aarch64-unknown-linux-gnu/<profile>/stratos-init`.
fn aarch64_init() -> (PathBuf, String) {
    let native = Path::new(env!("CARGO_BIN_EXE_stratos-init"));
    let profile_dir = native.parent().expect("the init is in a profile directory");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("a profile directory name")
        .to_owned();
    // Built with an explicit --target (.cargo/config.toml names one): <target dir>/<triple>/<profile>.
    let target_dir = profile_dir
        .parent()
        .and_then(Path::parent)
        .expect("the init is in <target dir>/<triple>/<profile>");
    let path = target_dir
        .join("aarch64-unknown-linux-gnu")
        .join(&profile)
        .join("stratos-init");
    let release = if profile == "release" {
        " --release"
    } else {
        ""
    };
    let build = format!(
        "`cargo build --locked{release} -p stratos-init --target aarch64-unknown-linux-gnu` (with CARGO_TARGET_DIR={}; ci/setup installs the Rust target and Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross)",
        target_dir.display()
    );
    (path, build)
}

#[test]
fn the_arm64_init_is_a_static_aarch64_executable() {
    let (path, build) = aarch64_init();
    assert!(
        path.is_file(),
        "{} is missing: the arm64 init is cross-built, not by this test; build it with {build}",
        path.display()
    );
    assert_static(&path, EM_AARCH64);
}

#[test]
fn refuses_to_run_when_not_pid_1() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratos-init"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("must run as PID 1"), "{stdout}");
}
