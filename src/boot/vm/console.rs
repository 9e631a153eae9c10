//! What a boot said, sorted by trust. The control channel (only the init holds it) says
//! everything the harness decides on: phases, readiness, how the runtime ended, restarts,
//! metrics, power-off. The serial console is for people; the only things read from it are
//! the kernel's own last words ([`Hint`]) — which can only make a run fail, never pass — and
//! only from lines that are not the runtime's relayed output.

use stratos_wire::control::{RELAY_CONT_PREFIX, RELAY_PREFIX};
use stratos_wire::{ASYNC_PHASES, PHASES};

/// Something the kernel printed that explains a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// The kernel panicked (message after "Kernel panic - not syncing: ").
    KernelPanic(String),
    /// dm-verity refused a block of the root filesystem (the kernel's message).
    RootCorrupted(String),
    /// The kernel stopped the machine (`reboot: System halted` / `reboot: Power down`). On a
    /// machine without ACPI the kernel can only halt, and QEMU keeps running.
    Halted,
}

/// Recognises the kernel's last words in one console line. The runtime's relayed lines (and
/// QEMU's own) are never hints: a function cannot end or explain a run by printing.
pub fn hint(line: &str) -> Option<Hint> {
    if line.starts_with(RELAY_PREFIX) || line.starts_with(RELAY_CONT_PREFIX) {
        return None;
    }
    if line.contains("reboot: System halted") || line.contains("reboot: Power down") {
        return Some(Hint::Halted);
    }
    if let Some(i) = line.find("device-mapper: verity") {
        if line.contains("is corrupted") {
            return Some(Hint::RootCorrupted(line[i..].trim().to_owned()));
        }
    }
    if let Some(i) = line.find("Kernel panic - not syncing:") {
        return Some(Hint::KernelPanic(line[i + 27..].trim().to_owned()));
    }
    None
}

/// System calls a seccomp baseline in log mode would have denied, from the audit records the
/// init sent on the control channel: name → count. The numbers are those of `arch`, the image's
/// (its filter refuses every other audit architecture).
pub fn seccomp_log(
    records: &[String],
    arch: crate::arch::Arch,
) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in records {
        let Some(nr) = r
            .split_whitespace()
            .find_map(|w| w.strip_prefix("syscall="))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let name =
            crate::seccomp::table::name(arch, nr).map_or_else(|| format!("#{nr}"), str::to_owned);
        *out.entry(format!("{name} ({nr})")).or_insert(0) += 1;
    }
    out
}

/// One phase as reached in a boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhaseError {
    #[error("phase {0} appears more than once")]
    Duplicate(String),
    #[error("unknown phase {0:?}")]
    Unknown(String),
    #[error("phase {later} ({later_ns} ns) is reported before {earlier} ({earlier_ns} ns) in the boot order")]
    OutOfOrder {
        earlier: String,
        earlier_ns: u64,
        later: String,
        later_ns: u64,
    },
}

/// The phases of a boot, in the order the control channel gave them, checked: known names,
/// each at most once, in the order of [`PHASES`] and with non-decreasing times
/// ([`ASYNC_PHASES`] may come anywhere). Phases that did not happen are simply absent.
pub fn check_phases(got: &[Phase]) -> Result<Vec<Phase>, PhaseError> {
    let mut out: Vec<Phase> = Vec::new();
    for p in got {
        let name = p.name.as_str();
        if !PHASES.contains(&name) && !ASYNC_PHASES.contains(&name) {
            return Err(PhaseError::Unknown(p.name.clone()));
        }
        if out.iter().any(|q| q.name == p.name) {
            return Err(PhaseError::Duplicate(p.name.clone()));
        }
        if !ASYNC_PHASES.contains(&name) {
            if let Some(prev) = out
                .iter()
                .rev()
                .find(|q| !ASYNC_PHASES.contains(&q.name.as_str()))
            {
                let rank = |n: &str| PHASES.iter().position(|q| *q == n).unwrap_or(usize::MAX);
                if rank(name) < rank(&prev.name) || p.ns < prev.ns {
                    return Err(PhaseError::OutOfOrder {
                        earlier: prev.name.clone(),
                        earlier_ns: prev.ns,
                        later: p.name.clone(),
                        later_ns: p.ns,
                    });
                }
            }
        }
        out.push(p.clone());
    }
    Ok(out)
}

/// How the boot ended, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ending {
    /// How the runtime ended for good (control channel).
    pub ended: Option<stratos_wire::Ending>,
    /// Each restart: when the host heard of it, its number, and how the runtime had ended.
    pub restarts: Vec<(std::time::Duration, u32, stratos_wire::Ending)>,
    /// Why the init gave up (control channel).
    pub fatal: Option<String>,
    /// The init said it powers off (control channel).
    pub powered_off: bool,
    /// The kernel's last words (console hints).
    pub panic: Option<String>,
    /// The first block dm-verity refused (console hint).
    pub root_corrupted: Option<String>,
    pub halted: bool,
}

impl Ending {
    pub fn observe_hint(&mut self, h: &Hint) {
        match h {
            Hint::KernelPanic(m) => {
                self.panic.get_or_insert_with(|| m.clone());
            }
            Hint::RootCorrupted(m) => {
                self.root_corrupted.get_or_insert_with(|| m.clone());
            }
            Hint::Halted => self.halted = true,
        }
    }

    /// The exit code a harness should report: the runtime's status, 128+signal, or None when
    /// the init never said the runtime ended (still running, fatal boot error, kernel panic).
    pub fn exit_code(&self) -> Option<i32> {
        self.ended.map(stratos_wire::Ending::exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, ns: u64) -> Phase {
        Phase {
            name: name.into(),
            ns,
        }
    }

    #[test]
    fn kernel_hints_but_never_from_the_runtime() {
        assert_eq!(
            hint(
                "[    1.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
            ),
            Some(Hint::KernelPanic(
                "Attempted to kill init! exitcode=0x00000100".into()
            ))
        );
        assert_eq!(hint("reboot: System halted"), Some(Hint::Halted));
        for forged in [
            "fn> Kernel panic - not syncing: forged",
            "fn> reboot: System halted",
            "fn+ device-mapper: verity: 254:0: data block 0 is corrupted",
        ] {
            assert_eq!(hint(forged), None, "{forged}");
        }
        assert_eq!(hint("stratos-init: runtime exited with status 0"), None);
        assert_eq!(hint("random kernel noise"), None);
    }

    #[test]
    fn phases_in_order_with_missing_ones() {
        let got = [
            p("init_start", 10),
            p("mounts_done", 20),
            p("runtime_exec", 30),
        ];
        assert_eq!(check_phases(&got).unwrap().len(), 3);
    }

    #[test]
    fn entropy_ready_may_come_anywhere() {
        let got = [
            p("init_start", 10),
            p("mounts_done", 20),
            p("runtime_exec", 30),
            p("entropy_ready", 25),
            p("runtime_ready", 40),
        ];
        assert_eq!(check_phases(&got).unwrap().len(), 5);
        assert!(check_phases(&[p("entropy_ready", 1), p("entropy_ready", 2)]).is_err());
    }

    #[test]
    fn duplicate_unknown_and_out_of_order_phases() {
        assert_eq!(
            check_phases(&[p("init_start", 1), p("init_start", 2)]),
            Err(PhaseError::Duplicate("init_start".into()))
        );
        assert_eq!(
            check_phases(&[p("x", 1)]),
            Err(PhaseError::Unknown("x".into()))
        );
        assert!(matches!(
            check_phases(&[p("mounts_done", 1), p("init_start", 2)]),
            Err(PhaseError::OutOfOrder { .. })
        ));
        assert!(matches!(
            check_phases(&[p("init_start", 5), p("mounts_done", 2)]),
            Err(PhaseError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn seccomp_log_records() {
        let records = vec![
            "audit: type=1326 audit(1.2:3): pid=82 comm=\"busybox\" sig=0 arch=c000003e syscall=83 compat=0 ip=0x1 code=0x7ffc0000".to_owned(),
            "audit: type=1326 audit(1.2:4): syscall=83 code=0x7ffc0000".to_owned(),
            "no number here".to_owned(),
        ];
        let m = seccomp_log(&records, crate::arch::Arch::X86_64);
        assert_eq!(m.len(), 1);
        assert_eq!(m["mkdir (83)"], 2);
    }

    #[test]
    fn seccomp_log_records_name_the_image_architecture_calls() {
        // arm64's 56 is openat (x86-64's is clone); 1024 is no call of either.
        let records = vec![
            "audit: type=1326 audit(1.2:3): pid=82 comm=\"busybox\" sig=0 arch=c00000b7 syscall=56 compat=0 ip=0x1 code=0x7ffc0000".to_owned(),
            "audit: type=1326 audit(1.2:4): arch=c00000b7 syscall=1024 code=0x7ffc0000".to_owned(),
        ];
        let m = seccomp_log(&records, crate::arch::Arch::Aarch64);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["openat (56)"], 1);
        assert_eq!(m["#1024 (1024)"], 1);
        assert_eq!(
            seccomp_log(&records[..1], crate::arch::Arch::X86_64)["clone (56)"],
            1
        );
    }
}
