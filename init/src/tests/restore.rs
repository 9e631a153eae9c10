//! A restored clone: the host's restore message reseeds, sets the clock and tells the
//! supervisor, which tells the runtime before the host; whatever the host sends, nothing
//! panics.

use super::{config, Call, Fake};
use crate::boot::boot;
use crate::sys::{ExitKind, Waited};

#[test]
fn a_restore_reseeds_sets_the_clock_and_tells_the_supervisor() {
    let mut f = Fake::new(&config());
    let entropy = "ab".repeat(32);
    crate::restore::apply(
        &mut f,
        &format!("stratos-restore {entropy} 1764300000123456789"),
    );
    assert_eq!(
        f.calls,
        vec![
            Call::AddEntropy(vec![0xab; 32]),
            Call::Reseed,
            Call::SetTime(1_764_300_000_123_456_789),
            Call::Signal(1, crate::sys::SIGRESTORED),
        ]
    );
    // The supervisor reports `restored`, after telling the runtime.
    assert!(
        f.lines("stratos-phase restored").is_empty(),
        "{:?}",
        f.console
    );
}

#[test]
fn a_restored_runtime_is_told_before_the_host() {
    let mut cfg = config();
    cfg.on_restore = Some(10);
    let mut f = Fake::new(&cfg);
    f.signals = vec![Some(crate::sys::SIGRESTORED)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 2).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    f.waits = w.into();
    boot(&mut f);
    let sigs: Vec<&Call> = f
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Signal(..)))
        .collect();
    assert_eq!(sigs, [&Call::Signal(42, 10)]);
    // The signal was sent before `restored` was printed.
    let restored = f
        .console
        .iter()
        .position(|l| l.starts_with("stratos-phase restored "))
        .expect("restored reported");
    assert!(f.console_at_kill[0] <= restored, "{:?}", f.console);
    assert!(f
        .console
        .iter()
        .any(|l| l == "stratos-init: restored from a snapshot; sent SIGUSR1 to the runtime"));
    // Without an on-restore signal the runtime is not told; the host still is.
    let mut g = Fake::new(&config());
    g.signals = vec![Some(crate::sys::SIGRESTORED)].into();
    let mut w: Vec<Waited> = std::iter::repeat_n(Waited::NoneReady, 2).collect();
    w.push(Waited::Reaped(42, ExitKind::Exited(0)));
    g.waits = w.into();
    boot(&mut g);
    assert!(!g.calls.iter().any(|c| matches!(c, Call::Signal(..))));
    assert_eq!(g.lines("stratos-phase restored ").len(), 1);
}

#[test]
fn a_restore_that_cannot_reach_the_supervisor_is_still_reported() {
    let mut f = Fake::new(&config());
    f.kill_fails = true;
    crate::restore::apply(&mut f, &format!("stratos-restore {} 5", "00".repeat(32)));
    assert!(f
        .console
        .iter()
        .any(|l| l.contains("cannot tell the supervisor about the restore")));
    assert_eq!(f.lines("stratos-phase restored ").len(), 1);
}

#[test]
fn a_malformed_restore_message_changes_nothing() {
    for bad in [
        "stratos-restore zz 5",
        "stratos-restore 00 5",
        "hello",
        &format!("stratos-restore {} notanumber", "00".repeat(32)),
        &format!("stratos-restore {} 5 extra", "00".repeat(32)),
    ] {
        let mut f = Fake::new(&config());
        crate::restore::apply(&mut f, bad);
        assert!(f.calls.is_empty(), "{bad}: {:?}", f.calls);
        assert!(f.console.iter().any(|l| l.contains("malformed message")));
        assert!(f.lines("stratos-phase restored").is_empty());
    }
}

#[test]
fn restore_messages_never_panic_whatever_the_host_sends() {
    let valid = format!("stratos-restore {} 1764300000123456789", "ab".repeat(32));
    assert!(crate::restore::parse(&valid).is_some());
    // A seeded mutation of the valid line: byte flips, insertions, deletions, truncations.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for _ in 0..5000 {
        let mut b = valid.clone().into_bytes();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % (b.len() + 1);
            match next() % 4 {
                0 if i < b.len() => b[i] ^= 1 << (next() % 8),
                1 => b.insert(i, (next() % 256) as u8),
                2 if i < b.len() => {
                    b.remove(i);
                }
                _ => b.truncate(i),
            }
        }
        let line = String::from_utf8_lossy(&b);
        if let Some(m) = crate::restore::parse(&line) {
            assert_eq!(m.entropy.len(), 32);
        }
    }
}
