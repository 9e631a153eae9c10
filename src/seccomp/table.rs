//! System call numbers by architecture: a policy names calls, a filter compares numbers, and
//! the numbers are the architecture's (Firecracker's seccompiler keeps a table per arch too).
//! The tables live in `stratos_wire`, shared with the init's system call counters.

use crate::arch::Arch;

/// Every system call of the architecture the filter is compiled for: (name, number).
pub fn syscalls(arch: Arch) -> &'static [(&'static str, u32)] {
    match arch {
        Arch::X86_64 => stratos_wire::syscalls::X86_64,
        Arch::Aarch64 => stratos_wire::syscalls::AARCH64,
    }
}

/// The number of a system call, by its name.
pub fn number(arch: Arch, name: &str) -> Option<u32> {
    syscalls(arch)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// The name of a system call, by its number.
pub fn name(arch: Arch, nr: u32) -> Option<&'static str> {
    syscalls(arch)
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_a_table_that_reads_both_ways() {
        for &arch in Arch::ALL {
            let table = syscalls(arch);
            assert!(table.len() > 300, "{arch}");
            for &(n, nr) in table {
                assert_eq!(number(arch, n), Some(nr), "{arch} {n}");
                assert_eq!(name(arch, nr), Some(n), "{arch} {nr}");
            }
        }
        assert_eq!(number(Arch::X86_64, "read"), Some(0));
    }
}
