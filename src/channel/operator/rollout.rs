//! The operator's verbs on a channel's rollout ([`Rollout`]) — set, halt, resume, and advance
//! behind a gate (a boot-test result or the canaries' health reports). Each acts on one
//! architecture's track ([`Track`]; the other's image and rollout do not move). Each verb is a
//! pure change of the track ([`halt`], [`resume`], [`widen`]) and a [`Repo`] method that signs
//! and writes the new version; a verb that fails writes nothing.

use super::repo::Repo;
use super::report_gate::ReportGate;
use super::{gate, report_gate};
use crate::arch::Arch;
use crate::channel::doc::{Channel, ChannelName, Rollout, Track};
use crate::channel::error::{ChannelError, UsageError};
use crate::fsio::{self, caps};
use crate::sign::SecretKey;

/// How far `rollout advance` widens a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widen {
    /// To the next wave of its schedule, starting now.
    NextWave,
    /// To this share of the fleet (1-100), at once.
    Percent(u32),
}

/// Stops selecting new nodes for the track `t` of channel `name`; refuses one already halted.
pub fn halt(name: &ChannelName, t: &mut Track) -> Result<(), ChannelError> {
    if t.halted {
        return Err(UsageError::AlreadyHalted {
            channel: name.clone(),
            arch: t.arch(),
        }
        .into());
    }
    t.halted = true;
    Ok(())
}

/// Continues a halted rollout where its schedule now is; refuses one that is not halted.
pub fn resume(name: &ChannelName, t: &mut Track) -> Result<(), ChannelError> {
    if !t.halted {
        return Err(UsageError::NotHalted {
            channel: name.clone(),
            arch: t.arch(),
        }
        .into());
    }
    t.halted = false;
    Ok(())
}

/// Refuses to widen a halted rollout.
fn ensure_not_halted(name: &ChannelName, t: &Track) -> Result<(), ChannelError> {
    if t.halted {
        return Err(UsageError::Halted {
            channel: name.clone(),
            arch: t.arch(),
        }
        .into());
    }
    Ok(())
}

/// Widens the rollout at time `now`; refuses a halted one and a change that would not widen it.
pub fn widen(name: &ChannelName, t: &mut Track, how: Widen, now: u64) -> Result<(), ChannelError> {
    ensure_not_halted(name, t)?;
    let reached = t.rollout.reached_bp(now);
    match how {
        Widen::Percent(p) => {
            if p * 100 <= reached {
                return Err(UsageError::WouldNotWiden {
                    reached,
                    percent: Some(p),
                }
                .into());
            }
            t.rollout = Rollout::percent(p, now);
        }
        Widen::NextWave => {
            let next_start = t.rollout.wave_beyond(reached).map(|w| w.start_after);
            let next_start = next_start.ok_or(UsageError::WouldNotWiden {
                reached,
                percent: None,
            })?;
            // Re-base the schedule so the next wave starts now; later waves keep their spacing.
            t.rollout.started_at = now.saturating_sub(next_start);
        }
    }
    Ok(())
}

/// What must hold before a rollout widens.
#[derive(Debug, Clone)]
pub enum Gate {
    /// A `stratos boot-test --json-out` result for the channel's image, all objectives met.
    BootTest(std::path::PathBuf),
    /// Enough health reports from the nodes the rollout reached, few enough failures.
    Reports(ReportGate),
}

/// Checks the gate for the image of channel `c`'s track `t` at `now`; returns its summary of
/// what passed.
fn pass_gate(g: &Gate, c: &Channel, t: &Track, now: u64) -> Result<String, ChannelError> {
    match g {
        Gate::BootTest(path) => {
            let bytes = fsio::read_file(path, caps::REPORT, "a boot-test result")
                .map_err(ChannelError::flag("--gate"))?;
            gate::check(&bytes, &path.display().to_string(), &t.image)
        }
        Gate::Reports(r) => report_gate::check(r, c, t, now),
    }
}

/// A rollout widened by [`Repo::advance`].
#[derive(Debug, Clone)]
pub struct Advanced {
    pub channel: Channel,
    /// What the gate says passed.
    pub gate: String,
}

impl Repo {
    /// A new version of the channel whose `arch` track (see [`Channel::pick`]) rolls out as
    /// `rollout` (halted stays halted).
    pub fn set_rollout(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
        rollout: Rollout,
    ) -> Result<Channel, ChannelError> {
        self.update_track(name, arch, keys, expires, |_, t| {
            t.rollout = rollout;
            Ok(())
        })
    }

    /// A new version of the channel, its `arch` track halted.
    pub fn halt(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update_track(name, arch, keys, expires, halt)
    }

    /// A new version of the channel, its halted `arch` track no longer halted.
    pub fn resume(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update_track(name, arch, keys, expires, resume)
    }

    /// A new version of the channel with the rollout of its `arch` track widened at `now`, only
    /// if `gate` holds (a boot-test result for that image that met all its objectives, or the
    /// canaries' health reports). Checked in that order: not halted, the gate, then that the
    /// change widens the rollout.
    #[allow(clippy::too_many_arguments)]
    pub fn advance(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
        gate: &Gate,
        how: Widen,
        now: u64,
    ) -> Result<Advanced, ChannelError> {
        let mut note = String::new();
        let channel = self.update(name, keys, expires, |c| {
            let arch = c.pick(arch)?;
            let t = c.track(arch).expect("picked");
            ensure_not_halted(name, t)?;
            note = pass_gate(gate, c, t, now)?;
            widen(name, c.track_mut(arch).expect("picked"), how, now)
        })?;
        Ok(Advanced {
            channel,
            gate: note,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::doc::{ImageRef, Wave};

    const START: u64 = 1_000_000;

    fn three_waves() -> Rollout {
        Rollout {
            started_at: START,
            waves: vec![
                Wave {
                    start_after: 0,
                    fleet_percent: 1,
                },
                Wave {
                    start_after: 3600,
                    fleet_percent: 10,
                },
                Wave {
                    start_after: 86_400,
                    fleet_percent: 100,
                },
            ],
        }
    }

    fn name() -> ChannelName {
        "stable".parse().unwrap()
    }

    fn channel(rollout: Rollout, halted: bool) -> Track {
        Track {
            image: ImageRef {
                name: "hello".into(),
                version: "1.0".into(),
                arch: Arch::X86_64,
                manifest_sha256: crate::digest::Sha256::parse(&"a".repeat(64)).unwrap(),
                manifest_length: 1,
                signature_sha256: crate::digest::Sha256::parse(&"b".repeat(64)).unwrap(),
                signature_length: 1,
            },
            rollout,
            halted,
            previous: None,
            deltas: Vec::new(),
        }
    }

    #[test]
    fn halt_and_resume_refuse_a_no_op() {
        let mut c = channel(three_waves(), false);
        let e = resume(&name(), &mut c).unwrap_err().to_string();
        assert_eq!(e, "channel stable (x86_64) is not halted");
        halt(&name(), &mut c).unwrap();
        assert!(c.halted);
        let e = halt(&name(), &mut c).unwrap_err().to_string();
        assert_eq!(e, "channel stable (x86_64) is already halted");
        resume(&name(), &mut c).unwrap();
        assert!(!c.halted);
    }

    #[test]
    fn widening_moves_to_the_next_wave_now_and_keeps_the_spacing() {
        let mut c = channel(three_waves(), false);
        // At 1% (one minute in): the next wave (10%, 1h) starts now.
        let now = START + 60;
        widen(&name(), &mut c, Widen::NextWave, now).unwrap();
        assert_eq!(c.rollout.started_at, now - 3600);
        assert_eq!(c.rollout.reached_bp(now), 1000);
        // The last wave keeps its distance from the one before.
        assert_eq!(c.rollout.reached_bp(now + 86_400 - 3600), 10_000);
        widen(&name(), &mut c, Widen::NextWave, now).unwrap();
        let e = widen(&name(), &mut c, Widen::NextWave, now).unwrap_err();
        assert!(
            matches!(
                e,
                ChannelError::Usage(UsageError::WouldNotWiden {
                    reached: 10_000,
                    percent: None
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("already reaches 100.00% of the fleet, its last wave"),
            "{e}"
        );
    }

    #[test]
    fn widening_to_a_percent_must_widen_and_a_halt_wins() {
        let mut c = channel(three_waves(), false);
        let now = START + 3600;
        let e = widen(&name(), &mut c, Widen::Percent(10), now).unwrap_err();
        assert!(
            matches!(
                e,
                ChannelError::Usage(UsageError::WouldNotWiden {
                    reached: 1000,
                    percent: Some(10)
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("--percent 10 would not widen it"),
            "{e}"
        );
        widen(&name(), &mut c, Widen::Percent(50), now).unwrap();
        assert_eq!(c.rollout, Rollout::percent(50, now));
        c.halted = true;
        let e = widen(&name(), &mut c, Widen::Percent(90), now).unwrap_err();
        assert!(
            matches!(e, ChannelError::Usage(UsageError::Halted { .. })),
            "{e:?}"
        );
    }
}
