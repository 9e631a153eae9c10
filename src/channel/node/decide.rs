//! Whether the rollout has reached a node: a pure decision from the channel document, the node's
//! id and clock, and what it runs and has staged — the same inputs give the same decision on
//! every node.

use serde::Serialize;

use super::state::{Current, Staged};
use super::transfer::Transfer;
use crate::arch::Arch;
use crate::channel::doc::track::list_arches;
use crate::channel::doc::{cohort, compare_versions, Channel, ChannelName};

/// What a check decided, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub selected: bool,
    pub reason: String,
    pub channel: ChannelName,
    pub channel_version: u64,
    /// The node's architecture: only the channel's image for it is considered.
    pub arch: Arch,
    /// Empty when the channel carries no image for the node's architecture.
    pub image: String,
    pub image_version: String,
    /// This node's cohort and the share reached, in basis points (0-10000).
    pub cohort: u32,
    pub reached: u32,
    pub staged: Option<String>,
    /// What a fetch that staged the image received (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// Housekeeping done on the way (leftovers of an interrupted run removed, …).
    pub notes: Vec<String>,
}

/// Whether the node `node_id` of architecture `arch`, running `current` with `staged` waiting,
/// takes the channel's image for `arch` at time `now`, and why (a channel carrying no image for
/// `arch` has nothing for it). Pure: the same inputs give the same decision on every node.
pub fn decide(
    c: &Channel,
    arch: Arch,
    node_id: &str,
    now: u64,
    current: Option<&Current>,
    staged: Option<&Staged>,
) -> Decision {
    let Some(t) = c.track(arch) else {
        return Decision {
            selected: false,
            reason: format!(
                "nothing for this node: the channel carries no {} image (it carries {})",
                arch.name(),
                list_arches(&c.arches())
            ),
            channel: c.channel.clone(),
            channel_version: c.version,
            arch,
            image: String::new(),
            image_version: String::new(),
            cohort: 0,
            reached: 0,
            staged: None,
            transfer: None,
            notes: Vec::new(),
        };
    };
    let cohort = cohort(node_id, c.channel.as_str(), &t.image.version);
    let reached = t.rollout.reached_bp(now);
    let mut d = Decision {
        selected: false,
        reason: String::new(),
        channel: c.channel.clone(),
        channel_version: c.version,
        arch,
        image: t.image.name.clone(),
        image_version: t.image.version.clone(),
        cohort,
        reached,
        staged: None,
        transfer: None,
        notes: Vec::new(),
    };
    let target = &t.image.manifest_sha256;
    if current.is_some_and(|cur| &cur.manifest_sha256 == target) {
        d.reason = format!(
            "up to date: already running {} {}",
            t.image.name, t.image.version
        );
    } else if staged.is_some_and(|s| &s.image.manifest_sha256 == target) {
        d.reason = format!("already staged: {} {}", t.image.name, t.image.version);
        d.staged = staged.map(|s| s.dir.clone());
    } else if t.halted {
        // A halt wins over everything else, min_version included: the operator has seen
        // something wrong with this image.
        d.reason = format!(
            "rollout halted at {:.2}% of the fleet; cohort {:.2}% not selected",
            f64::from(reached) / 100.0,
            f64::from(cohort) / 100.0
        );
    } else if let (Some(min), Some(cur)) = (&c.min_version, current) {
        if compare_versions(&cur.version, min).is_lt() {
            d.selected = true;
            d.reason = format!("running {} below the channel's min_version {min}: updating regardless of the rollout", cur.version);
        }
    }
    if d.reason.is_empty() {
        if cohort < reached {
            d.selected = true;
            d.reason = format!(
                "selected: cohort {:.2}% < {:.2}% of the fleet reached",
                f64::from(cohort) / 100.0,
                f64::from(reached) / 100.0
            );
        } else {
            d.reason = format!(
                "not yet: cohort {:.2}% >= {:.2}% of the fleet reached",
                f64::from(cohort) / 100.0,
                f64::from(reached) / 100.0
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::doc::{ImageRef, Rollout, Track, Wave, CHANNEL_TYPE, SPEC_VERSION};

    fn channel(waves: Vec<Wave>, halted: bool) -> Channel {
        Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: "stable".parse().unwrap(),
            version: 7,
            expires: u64::MAX,
            timestamp: 0,
            min_version: None,
            tracks: vec![Track {
                image: ImageRef {
                    name: "hello".into(),
                    version: "1.4.0".into(),
                    arch: Arch::X86_64,
                    manifest_sha256: crate::digest::Sha256::parse(&"a".repeat(64)).unwrap(),
                    manifest_length: 10,
                    signature_sha256: crate::digest::Sha256::parse(&"b".repeat(64)).unwrap(),
                    signature_length: 10,
                },
                rollout: Rollout {
                    started_at: 1_000_000,
                    waves,
                },
                halted,
                previous: None,
                deltas: Vec::new(),
            }],
        }
    }

    const X86: Arch = Arch::X86_64;

    fn current(version: &str, digest: &str) -> Current {
        Current {
            version: version.into(),
            manifest_sha256: crate::digest::Sha256::parse(&digest.repeat(64)).unwrap(),
            image: "hello".into(),
            dir: format!("images/{}", digest.repeat(64)),
            channel: None,
            channel_version: 0,
            replaces: None,
            by: String::new(),
        }
    }

    fn waves() -> Vec<Wave> {
        vec![
            Wave {
                start_after: 0,
                fleet_percent: 1,
            },
            Wave {
                start_after: 3_600,
                fleet_percent: 10,
            },
            Wave {
                start_after: 6 * 3_600,
                fleet_percent: 50,
            },
            Wave {
                start_after: 86_400,
                fleet_percent: 100,
            },
        ]
    }

    #[test]
    fn a_hundred_thousand_nodes_follow_the_waves() {
        let c = channel(waves(), false);
        let ids: Vec<String> = (0..100_000).map(|i| format!("node-{i:06}")).collect();
        let start = c.tracks[0].rollout.started_at;
        // Just before the rollout: nobody. Then each wave: its share of the fleet, ±1%.
        assert!(ids
            .iter()
            .all(|n| !decide(&c, X86, n, start - 1, None, None).selected));
        let mut first_selected: Vec<Option<u64>> = vec![None; ids.len()];
        for w in &c.tracks[0].rollout.waves {
            let t = start + w.start_after;
            for probe in [t, t + w.start_after / 2] {
                let mut n = 0;
                for (i, id) in ids.iter().enumerate() {
                    if decide(&c, X86, id, probe, None, None).selected {
                        n += 1;
                        first_selected[i].get_or_insert(probe);
                    }
                }
                let share = n as f64 / ids.len() as f64 * 100.0;
                assert!(
                    (share - f64::from(w.fleet_percent)).abs() <= 1.0,
                    "wave {}%: {share:.2}%",
                    w.fleet_percent
                );
            }
        }
        // No node is selected before its wave: a node first selected at t has a cohort below
        // the share reached at t and not below the share reached just before that wave began.
        for (i, id) in ids.iter().enumerate() {
            let t = first_selected[i].expect("everyone is selected by the last wave");
            let co = cohort(id, "stable", "1.4.0");
            let wave = c.tracks[0]
                .rollout
                .waves
                .iter()
                .rev()
                .find(|w| start + w.start_after <= t)
                .unwrap();
            assert!(co < wave.fleet_percent * 100);
            assert!(
                !decide(&c, X86, id, start + wave.start_after - 1, None, None).selected
                    || wave.start_after == 0
            );
        }
    }

    #[test]
    fn nodes_that_missed_a_wave_catch_up_and_halting_stops_new_selections() {
        let c = channel(waves(), false);
        let start = c.tracks[0].rollout.started_at;
        // A node in the first 1% that was offline for the whole first day is still selected.
        let early = (0..)
            .map(|i| format!("n{i}"))
            .find(|n| cohort(n, "stable", "1.4.0") < 100)
            .unwrap();
        assert!(decide(&c, X86, &early, start + 2 * 86_400, None, None).selected);
        // Halted: no new selection at any time; a node that already staged it says so.
        let h = channel(waves(), true);
        let mut staged_here = None;
        for i in 0..5_000 {
            let id = format!("n{i}");
            let d = decide(&h, X86, &id, start + 2 * 86_400, None, None);
            assert!(!d.selected, "{id}: {}", d.reason);
            assert!(d.reason.contains("halted"));
            if staged_here.is_none()
                && decide(&c, X86, &id, start + 2 * 86_400, None, None).selected
            {
                staged_here = Some(id);
            }
        }
        let staged = Staged {
            channel: "stable".parse().unwrap(),
            channel_version: 7,
            image: h.tracks[0].image.clone(),
            dir: "images/x".into(),
        };
        let d = decide(
            &h,
            X86,
            &staged_here.unwrap(),
            start + 2 * 86_400,
            None,
            Some(&staged),
        );
        assert!(
            !d.selected && d.reason.starts_with("already staged"),
            "{}",
            d.reason
        );
        // Running the image: up to date, whatever the rollout says.
        let cur = current("1.4.0", "a");
        assert!(decide(&c, X86, "x", start, Some(&cur), None)
            .reason
            .starts_with("up to date"));
    }

    #[test]
    fn min_version_overrides_the_rollout_but_not_a_halt() {
        let mut c = channel(
            vec![Wave {
                start_after: 0,
                fleet_percent: 1,
            }],
            false,
        );
        c.min_version = Some("1.3.0".into());
        let late = (0..)
            .map(|i| format!("n{i}"))
            .find(|n| cohort(n, "stable", "1.4.0") >= 100)
            .unwrap();
        let old = current("1.2.9", "c");
        let newer = current("1.3.1", "c");
        assert!(
            decide(
                &c,
                X86,
                &late,
                c.tracks[0].rollout.started_at,
                Some(&old),
                None
            )
            .selected
        );
        assert!(
            !decide(
                &c,
                X86,
                &late,
                c.tracks[0].rollout.started_at,
                Some(&newer),
                None
            )
            .selected
        );
        c.tracks[0].halted = true;
        assert!(
            !decide(
                &c,
                X86,
                &late,
                c.tracks[0].rollout.started_at,
                Some(&old),
                None
            )
            .selected
        );
    }

    #[test]
    fn a_node_takes_only_its_architecture_s_image() {
        let mut c = channel(waves(), false);
        let start = c.tracks[0].rollout.started_at + 2 * 86_400;
        let d = decide(&c, Arch::Aarch64, "n1", start, None, None);
        assert!(!d.selected);
        assert_eq!(
            d.reason,
            "nothing for this node: the channel carries no aarch64 image (it carries x86_64)"
        );
        assert_eq!((d.arch, d.image.as_str(), d.cohort), (Arch::Aarch64, "", 0));
        // With an aarch64 image of its own (halted), the aarch64 node follows that rollout and
        // the x86_64 node the other.
        let mut arm = c.tracks[0].clone();
        arm.image.arch = Arch::Aarch64;
        arm.image.manifest_sha256 = crate::digest::Sha256::parse(&"c".repeat(64)).unwrap();
        arm.halted = true;
        c.set_track(arm);
        let d = decide(&c, Arch::Aarch64, "n1", start, None, None);
        assert!(!d.selected && d.reason.contains("halted"), "{}", d.reason);
        assert_eq!(d.image_version, "1.4.0");
        assert!(decide(&c, X86, "n1", start, None, None).selected);
    }
}
