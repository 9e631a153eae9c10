//! The operator's verbs on a channel's rollout ([`Rollout`]) — set, halt, resume, and advance
//! behind a gate (a boot-test result or the canaries' health reports). Each verb is a pure change
//! of the channel document ([`halt`], [`resume`], [`widen`]) and a [`Repo`] method that signs and
//! writes the new version; a verb that fails writes nothing.

use super::repo::Repo;
use super::report_gate::ReportGate;
use super::{gate, report_gate};
use crate::channel::doc::{Channel, ChannelName, Rollout};
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

/// Stops selecting new nodes; refuses a channel that is already halted.
pub fn halt(c: &mut Channel) -> Result<(), ChannelError> {
    if c.halted {
        return Err(UsageError::AlreadyHalted {
            channel: c.channel.clone(),
        }
        .into());
    }
    c.halted = true;
    Ok(())
}

/// Continues a halted rollout where its schedule now is; refuses one that is not halted.
pub fn resume(c: &mut Channel) -> Result<(), ChannelError> {
    if !c.halted {
        return Err(UsageError::NotHalted {
            channel: c.channel.clone(),
        }
        .into());
    }
    c.halted = false;
    Ok(())
}

/// Refuses to widen a halted rollout.
fn ensure_not_halted(c: &Channel) -> Result<(), ChannelError> {
    if c.halted {
        return Err(UsageError::Halted {
            channel: c.channel.clone(),
        }
        .into());
    }
    Ok(())
}

/// Widens the rollout at time `now`; refuses a halted one and a change that would not widen it.
pub fn widen(c: &mut Channel, how: Widen, now: u64) -> Result<(), ChannelError> {
    ensure_not_halted(c)?;
    let reached = c.rollout.reached_bp(now);
    match how {
        Widen::Percent(p) => {
            if p * 100 <= reached {
                return Err(UsageError::WouldNotWiden {
                    reached,
                    percent: Some(p),
                }
                .into());
            }
            c.rollout = Rollout::percent(p, now);
        }
        Widen::NextWave => {
            let next_start = c.rollout.wave_beyond(reached).map(|w| w.start_after);
            let next_start = next_start.ok_or(UsageError::WouldNotWiden {
                reached,
                percent: None,
            })?;
            // Re-base the schedule so the next wave starts now; later waves keep their spacing.
            c.rollout.started_at = now.saturating_sub(next_start);
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

/// Checks the gate for `c`'s image at `now`; returns its summary of what passed.
fn pass_gate(g: &Gate, c: &Channel, now: u64) -> Result<String, ChannelError> {
    match g {
        Gate::BootTest(path) => {
            let bytes = fsio::read_file(path, caps::REPORT, "a boot-test result")
                .map_err(ChannelError::flag("--gate"))?;
            gate::check(&bytes, &path.display().to_string(), &c.image)
        }
        Gate::Reports(r) => report_gate::check(r, c, now),
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
    /// A new version of the channel rolling out as `rollout` (halted stays halted).
    pub fn set_rollout(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
        rollout: Rollout,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, |c| {
            c.rollout = rollout;
            Ok(())
        })
    }

    /// A new, halted version of the channel.
    pub fn halt(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, halt)
    }

    /// A new version of a halted channel, no longer halted.
    pub fn resume(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, resume)
    }

    /// A new version of the channel with its rollout widened at `now`, only if `gate` holds (a
    /// boot-test result for the channel's image that met all its objectives, or the canaries'
    /// health reports). Checked in that
    /// order: not halted, the gate, then that the change widens the rollout.
    pub fn advance(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
        gate: &Gate,
        how: Widen,
        now: u64,
    ) -> Result<Advanced, ChannelError> {
        let mut note = String::new();
        let channel = self.update(name, keys, expires, |c| {
            ensure_not_halted(c)?;
            note = pass_gate(gate, c, now)?;
            widen(c, how, now)
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
    use crate::channel::doc::{ImageRef, Wave, CHANNEL_TYPE, SPEC_VERSION};

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

    fn channel(rollout: Rollout, halted: bool) -> Channel {
        Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: "stable".parse().unwrap(),
            version: 1,
            expires: u64::MAX,
            timestamp: 0,
            image: ImageRef {
                name: "hello".into(),
                version: "1.0".into(),
                manifest_sha256: crate::digest::Sha256::parse(&"a".repeat(64)).unwrap(),
                manifest_length: 1,
                signature_sha256: crate::digest::Sha256::parse(&"b".repeat(64)).unwrap(),
                signature_length: 1,
            },
            rollout,
            min_version: None,
            halted,
            previous: None,
        }
    }

    #[test]
    fn halt_and_resume_refuse_a_no_op() {
        let mut c = channel(three_waves(), false);
        let e = resume(&mut c).unwrap_err().to_string();
        assert_eq!(e, "channel stable is not halted");
        halt(&mut c).unwrap();
        assert!(c.halted);
        let e = halt(&mut c).unwrap_err().to_string();
        assert_eq!(e, "channel stable is already halted");
        resume(&mut c).unwrap();
        assert!(!c.halted);
    }

    #[test]
    fn widening_moves_to_the_next_wave_now_and_keeps_the_spacing() {
        let mut c = channel(three_waves(), false);
        // At 1% (one minute in): the next wave (10%, 1h) starts now.
        let now = START + 60;
        widen(&mut c, Widen::NextWave, now).unwrap();
        assert_eq!(c.rollout.started_at, now - 3600);
        assert_eq!(c.rollout.reached_bp(now), 1000);
        // The last wave keeps its distance from the one before.
        assert_eq!(c.rollout.reached_bp(now + 86_400 - 3600), 10_000);
        widen(&mut c, Widen::NextWave, now).unwrap();
        let e = widen(&mut c, Widen::NextWave, now).unwrap_err();
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
        let e = widen(&mut c, Widen::Percent(10), now).unwrap_err();
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
        widen(&mut c, Widen::Percent(50), now).unwrap();
        assert_eq!(c.rollout, Rollout::percent(50, now));
        c.halted = true;
        let e = widen(&mut c, Widen::Percent(90), now).unwrap_err();
        assert!(
            matches!(e, ChannelError::Usage(UsageError::Halted { .. })),
            "{e:?}"
        );
    }
}
