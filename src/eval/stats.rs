//! Corpus-level statistics over per-document scores: mean, percentiles and a bootstrap
//! confidence interval of the mean.
//!
//! Pure and deterministic: the bootstrap draws from a seeded built-in generator, so a report
//! is reproducible run to run. This module must not know what the numbers mean (no ROUGE or
//! backend logic) and must not touch global state or the system's randomness.

/// Arithmetic mean; NaN for an empty slice, because there is no honest number to report.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The `p`-th percentile (`p` in 0..=100, clamped) of already sorted values, with numpy's
/// default linear interpolation between closest ranks (`np.percentile(xs, p)`, Hyndman & Fan
/// type 7), computed in numpy's operation order so results agree to the bit. NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "input must be sorted"
    );
    percentile_at(sorted.len(), p, |i| sorted[i])
}

/// `percentile` over `len` sorted values read through `at(i)`, the i-th smallest: the same
/// arithmetic for values kept as counts (`report::Histogram`) as for a sorted slice.
pub fn percentile_at(len: usize, p: f64, at: impl Fn(usize) -> f64) -> f64 {
    if len == 0 {
        return f64::NAN;
    }
    let last = len - 1;
    let virtual_index = last as f64 * (p.clamp(0.0, 100.0) / 100.0);
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let lo = below as usize;
    let (a, b) = (at(lo), at((lo + 1).min(last)));
    let diff = b - a;
    // numpy interpolates from the nearer end to keep the result within [a, b].
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// 95% percentile-bootstrap interval of the mean of `xs`: `resamples` resamples of the same
/// size drawn with replacement, and the 2.5th and 97.5th percentiles of their means. The same
/// `seed` always gives the same interval. (NaN, NaN) when there is nothing to resample.
pub fn bootstrap_ci95(xs: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    bootstrap_ci95_paired(&[xs], resamples, seed)[0]
}

/// The same interval for several columns of one sample at once (say ROUGE-1, -2 and -L of the
/// same documents): each resample draws one set of rows and uses it for every column, which is
/// the paired bootstrap and costs one random draw per row instead of one per row and column.
/// Columns must have equal lengths; a single column gives exactly `bootstrap_ci95`.
pub fn bootstrap_ci95_paired(columns: &[&[f64]], resamples: usize, seed: u64) -> Vec<(f64, f64)> {
    let n = columns.first().map_or(0, |c| c.len());
    debug_assert!(
        columns.iter().all(|c| c.len() == n),
        "columns differ in length"
    );
    if n == 0 || resamples == 0 {
        return vec![(f64::NAN, f64::NAN); columns.len()];
    }
    let k = columns.len();
    // Row-major, so one draw reads k neighbouring values.
    let rows: Vec<f64> = (0..n)
        .flat_map(|r| columns.iter().map(move |c| c[r]))
        .collect();
    let mut rng = SplitMix64(seed);
    let mut means: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); k];
    let mut sums = vec![0.0; k];
    for _ in 0..resamples {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for _ in 0..n {
            let row = &rows[rng.below(n) * k..][..k];
            for (sum, v) in sums.iter_mut().zip(row) {
                *sum += v;
            }
        }
        for (m, sum) in means.iter_mut().zip(&sums) {
            m.push(sum / n as f64);
        }
    }
    means
        .into_iter()
        .map(|mut m| {
            m.sort_by(f64::total_cmp);
            (percentile(&m, 2.5), percentile(&m, 97.5))
        })
        .collect()
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast and statistically sound enough for
/// resampling, which saves a dependency on `rand` for one loop.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform index below `n` by Lemire's multiply-shift; the bias is under n / 2^64.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_values_and_of_nothing() {
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // Expected values from numpy 2.4 `np.percentile(xs, p)`.
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&xs, 0.0), 1.0);
        assert_eq!(percentile(&xs, 25.0), 1.75);
        assert_eq!(percentile(&xs, 50.0), 2.5);
        assert_eq!(percentile(&xs, 100.0), 4.0);
        let ys = [0.1, 0.2, 0.7, 0.75, 0.9];
        assert_eq!(percentile(&ys, 2.5), 0.11000000000000001);
        assert_eq!(percentile(&ys, 97.5), 0.885);
        assert_eq!(percentile(&ys, 33.0), 0.36);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert_eq!(percentile(&xs, 150.0), 4.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn bootstrap_is_deterministic_per_seed() {
        let xs: Vec<f64> = (0..50).map(|i| f64::from(i % 7) / 7.0).collect();
        let a = bootstrap_ci95(&xs, 500, 42);
        assert_eq!(a, bootstrap_ci95(&xs, 500, 42));
        assert_ne!(a, bootstrap_ci95(&xs, 500, 43));
        let m = mean(&xs);
        assert!(a.0 < m && m < a.1, "{a:?} should contain {m}");
    }

    #[test]
    fn bootstrap_width_matches_the_normal_approximation() {
        // 1000 evenly spread values in [0, 1): sd = 0.2887, so the 95% interval of the mean is
        // about 2 * 1.96 * 0.2887 / sqrt(1000) = 0.0358 wide and centred on the mean.
        let xs: Vec<f64> = (0..1000)
            .map(|i| f64::from((i * 379) % 1000) / 1000.0)
            .collect();
        let (lo, hi) = bootstrap_ci95(&xs, 2000, 7);
        let m = mean(&xs);
        assert!((0.031..0.041).contains(&(hi - lo)), "width {}", hi - lo);
        assert!(
            ((lo + hi) / 2.0 - m).abs() < 0.003,
            "({lo}, {hi}) around {m}"
        );
    }

    #[test]
    fn bootstrap_of_constant_or_empty_input() {
        assert_eq!(bootstrap_ci95(&[0.25; 30], 100, 1), (0.25, 0.25));
        let (lo, hi) = bootstrap_ci95(&[], 100, 1);
        assert!(lo.is_nan() && hi.is_nan());
        assert!(bootstrap_ci95(&[1.0], 0, 1).0.is_nan());
    }
}
