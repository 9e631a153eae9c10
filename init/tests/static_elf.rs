//! The init must be a static executable: the image has no dynamic loader.

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Program header types of an ELF64 little-endian file.
fn program_header_types(b: &[u8]) -> Vec<u32> {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(b[4], 2, "not ELF64");
    assert_eq!(u16_at(b, 18), 62, "not x86-64");
    let phoff = u64_at(b, 32) as usize;
    let phentsize = u16_at(b, 54) as usize;
    let phnum = u16_at(b, 56) as usize;
    (0..phnum)
        .map(|i| u32_at(b, phoff + i * phentsize))
        .collect()
}

#[test]
fn init_has_no_program_interpreter() {
    let path = env!("CARGO_BIN_EXE_stratos-init");
    let bytes = std::fs::read(path).unwrap();
    let types = program_header_types(&bytes);
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    assert!(types.contains(&PT_LOAD));
    assert!(
        !types.contains(&PT_INTERP),
        "{path} has a PT_INTERP: it is dynamically linked"
    );
    // static-pie keeps a PT_DYNAMIC for self-relocation but needs no shared libraries.
    let _ = PT_DYNAMIC;
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
