//! Small statistics for boot measurements: percentiles, and a bootstrap confidence interval
//! for the median of paired ratios (deterministic: a fixed-seed generator).

use crate::boot_result::Summary;

/// Percentile `p` (0..=100) by linear interpolation between closest ranks (the method of
/// numpy's default and Excel's PERCENTILE.INC). `None` for no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

pub fn summary(samples: &[f64]) -> Option<Summary> {
    Some(Summary {
        n: samples.len(),
        min: percentile(samples, 0.0)?,
        p50: percentile(samples, 50.0)?,
        p95: percentile(samples, 95.0)?,
        p99: percentile(samples, 99.0)?,
        max: percentile(samples, 100.0)?,
    })
}

/// xorshift64*: a tiny deterministic generator, so the same samples give the same interval.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Percentile-bootstrap confidence interval (`level`, e.g. 0.95) for the median of `samples`.
pub fn bootstrap_median_ci(samples: &[f64], level: f64, resamples: usize) -> Option<(f64, f64)> {
    if samples.len() < 2 {
        return None;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut medians = Vec::with_capacity(resamples);
    let mut buf = vec![0.0; samples.len()];
    for _ in 0..resamples {
        for b in buf.iter_mut() {
            *b = samples[rng.below(samples.len())];
        }
        medians.push(median(&buf)?);
    }
    let tail = (1.0 - level) / 2.0 * 100.0;
    Some((
        percentile(&medians, tail)?,
        percentile(&medians, 100.0 - tail)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_on_known_samples() {
        let s = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&s, 0.0), Some(15.0));
        assert_eq!(percentile(&s, 50.0), Some(35.0));
        assert_eq!(percentile(&s, 100.0), Some(50.0));
        assert_eq!(percentile(&s, 25.0), Some(20.0));
        assert!((percentile(&s, 40.0).unwrap() - 29.0).abs() < 1e-9);
        // 1..=100: p95 = 95.05, p99 = 99.01 (inclusive interpolation).
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&hundred, 95.0).unwrap() - 95.05).abs() < 1e-9);
        assert!((percentile(&hundred, 99.0).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
        let sm = summary(&[5.0]).unwrap();
        assert_eq!((sm.min, sm.p50, sm.p99, sm.max), (5.0, 5.0, 5.0, 5.0));
    }

    #[test]
    fn ci_contains_the_true_ratio_and_excludes_one_for_a_real_change() {
        // Synthetic paired ratios around 0.8 with ±5% noise: a 20% improvement.
        let ratios: Vec<f64> = (0..20)
            .map(|i| 0.8 * (1.0 + ((i * 7 % 11) as f64 - 5.0) / 100.0))
            .collect();
        let (lo, hi) = bootstrap_median_ci(&ratios, 0.95, 2000).unwrap();
        assert!(lo <= 0.8 && 0.8 <= hi, "{lo} {hi}");
        assert!(hi < 1.0, "a 20% change must not straddle 1: {lo} {hi}");
        // Same samples, same interval.
        assert_eq!(bootstrap_median_ci(&ratios, 0.95, 2000), Some((lo, hi)));
        // No change: the interval straddles 1.
        let flat: Vec<f64> = (0..20)
            .map(|i| 1.0 + ((i * 7 % 11) as f64 - 5.0) / 100.0)
            .collect();
        let (lo, hi) = bootstrap_median_ci(&flat, 0.95, 2000).unwrap();
        assert!(lo <= 1.0 && 1.0 <= hi, "{lo} {hi}");
        assert_eq!(bootstrap_median_ci(&[1.0], 0.95, 100), None);
    }
}
