//! Who has a channel's image when: waves of growing shares of the fleet, and the stable hash that
//! puts each node in its place in them (its cohort). Nodes and the operator's gates both decide
//! from these.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// Seconds after the rollout started.
    pub start_after: u64,
    /// Share of the fleet (0-100) that has the image once this wave started.
    pub fleet_percent: u32,
}

/// Who has the channel's image when: waves of growing shares of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Unix seconds when the rollout started.
    pub started_at: u64,
    pub waves: Vec<Wave>,
}

impl Rollout {
    pub fn percent(p: u32, started_at: u64) -> Rollout {
        Rollout {
            started_at,
            waves: vec![Wave {
                start_after: 0,
                fleet_percent: p,
            }],
        }
    }

    /// A rollout in `waves` (from a waves file) starting at `started_at`.
    pub fn waves(waves: Vec<Wave>, started_at: u64) -> Rollout {
        Rollout { started_at, waves }
    }

    /// The share of the fleet (in basis points, 0-10000) reached at time `t`.
    pub fn reached_bp(&self, t: u64) -> u32 {
        // Before the rollout starts (e.g. a node whose clock is behind the operator's) it
        // reaches nobody.
        let Some(elapsed) = t.checked_sub(self.started_at) else {
            return 0;
        };
        self.waves
            .iter()
            .filter(|w| w.start_after <= elapsed)
            .map(|w| w.fleet_percent * 100)
            .max()
            .unwrap_or(0)
            .min(10_000)
    }

    /// The first wave that reaches more than `reached` basis points, if any.
    pub fn wave_beyond(&self, reached: u32) -> Option<&Wave> {
        self.waves.iter().find(|w| w.fleet_percent * 100 > reached)
    }
}

/// The node's cohort in basis points: SHA-256(node-id ‖ channel ‖ image version) → [0, 10000).
pub fn cohort(node_id: &str, channel: &str, image_version: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(node_id.as_bytes());
    h.update([0]);
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(image_version.as_bytes());
    let d = h.finalize();
    (u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % 10_000) as u32
}

/// Orders versions like `1.2.10` > `1.2.9`: numeric runs compare as numbers, the rest as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((kind, cur)) if *kind == d => cur.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xs, ys) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            _ => x.1.cmp(&y.1),
        };
        if o.is_ne() {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_reach_their_share_over_time() {
        let r = Rollout {
            started_at: 1000,
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
        };
        assert_eq!(r.reached_bp(999), 0);
        assert_eq!(r.reached_bp(1000), 100);
        assert_eq!(r.reached_bp(1000 + 3599), 100);
        assert_eq!(r.reached_bp(1000 + 3600), 1000);
        assert_eq!(r.reached_bp(1000 + 86_400), 10_000);
    }

    #[test]
    fn versions_order_naturally() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.2.10", "1.2.9"), Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Greater);
    }

    #[test]
    fn cohorts_are_spread_evenly_and_stable() {
        let n = 100_000;
        for pct in [1u32, 10, 25, 50] {
            let sel = (0..n)
                .filter(|i| cohort(&format!("node-{i}"), "stable", "1.2.0") < pct * 100)
                .count();
            let share = sel as f64 / n as f64 * 100.0;
            assert!((share - pct as f64).abs() <= 1.0, "{pct}%: {share}%");
        }
        assert_eq!(cohort("a", "b", "c"), cohort("a", "b", "c"));
        assert_ne!(cohort("a", "b", "1"), cohort("a", "b", "2"));
    }
}
