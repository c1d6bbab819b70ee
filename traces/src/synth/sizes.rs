//! Size distributions: each is sampled from one random `u64` with no floating point on the hot
//! path, so sampling costs a few ns and gives the same sizes on every platform.
//!
//! * [`Sizes::Uniform`]: every size in `lo..=hi` equally likely;
//! * [`Sizes::Mixture`]: pick a component by probability, then a uniform size inside it (the
//!   FancyAllocator ring benchmark's 60/30/10 split, AllocatorBench's weighted small sizes);
//! * [`Sizes::Quantile`]: any continuous distribution given by its quantile function, stored as
//!   4097 quantiles and interpolated linearly (log-normal, truncated to `lo..=hi` exactly — no
//!   spikes at the bounds as clamping would give).

/// Quantile points of a [`Sizes::Quantile`] table (4096 intervals).
const QBITS: u32 = 12;
const QN: usize = 1 << QBITS;
/// Fixed-point fraction bits of quantile values, so that interpolation between close
/// quantiles of small sizes does not always round down.
const QFRAC: u32 = 8;

/// A distribution of request sizes in bytes.
#[derive(Clone, Debug)]
pub(crate) enum Sizes {
    /// `lo + [0, span)`: uniform over `lo..lo + span`.
    Uniform { lo: u64, span: u64 },
    /// Components `(threshold, lo, span)`: the first whose threshold exceeds the top 32 random
    /// bits is chosen, then a size uniform in `lo..lo + span` from the low 32 bits.
    Mixture(Box<[(u64, u64, u64)]>),
    /// Quantiles at `i / 4096`, `i = 0..=4096`, in 1/256 bytes.
    Quantile(Box<[u64]>),
}

/// `floor(r * n / 2^64)`: a uniform number below `n` from a uniform `u64`.
#[inline(always)]
pub(crate) fn below(r: u64, n: u64) -> u64 {
    ((r as u128 * n as u128) >> 64) as u64
}

impl Sizes {
    /// Uniform over `lo..=hi`.
    pub(crate) fn uniform(lo: u64, hi: u64) -> Sizes {
        assert!(lo <= hi);
        Sizes::Uniform {
            lo,
            span: hi - lo + 1,
        }
    }

    /// Components `(probability, lo, hi)`, each uniform over `lo..=hi`; probabilities are
    /// normalised.
    pub(crate) fn mixture(parts: &[(f64, u64, u64)]) -> Sizes {
        let total: f64 = parts.iter().map(|p| p.0).sum();
        let mut cum = 0.0;
        let mut out = Vec::with_capacity(parts.len());
        for (i, &(p, lo, hi)) in parts.iter().enumerate() {
            assert!(lo <= hi && hi - lo < u32::MAX as u64);
            cum += p / total;
            let threshold = if i + 1 == parts.len() {
                u64::MAX
            } else {
                (cum * 4294967296.0).round() as u64
            };
            out.push((threshold, lo, hi - lo + 1));
        }
        Sizes::Mixture(out.into_boxed_slice())
    }

    /// AllocatorBench's "weighted" sizes: the range cut into power-of-two buckets
    /// `[lo, 2lo], (2lo, 4lo], …` up to `hi`, each bucket `ratio` times as likely as the one
    /// below it, uniform inside a bucket.
    pub(crate) fn weighted_pow2(lo: u64, hi: u64, ratio: f64) -> Sizes {
        let mut parts = Vec::new();
        let (mut a, mut b) = (lo, lo.max(1).saturating_mul(2).min(hi));
        let mut w = 1.0;
        loop {
            parts.push((w, a, b));
            if b >= hi {
                break;
            }
            a = b + 1;
            b = b.saturating_mul(2).min(hi);
            w *= ratio;
        }
        Sizes::mixture(&parts)
    }

    /// A log-normal distribution with the given median and shape `sigma`, truncated to
    /// `lo..=hi`.
    pub(crate) fn log_normal(median: f64, sigma: f64, lo: u64, hi: u64) -> Sizes {
        assert!(lo >= 1 && lo <= hi && median > 0.0 && sigma > 0.0);
        let mu = median.ln();
        let cdf = |x: f64| normal_cdf((x.ln() - mu) / sigma);
        // Truncate on the continuous scale just inside the integer bounds.
        let (plo, phi) = (cdf(lo as f64), cdf(hi as f64));
        let mut q = Vec::with_capacity(QN + 1);
        for i in 0..=QN {
            let v = if i == 0 {
                lo as f64
            } else if i == QN {
                hi as f64
            } else {
                let p = plo + (phi - plo) * (i as f64 / QN as f64);
                (mu + sigma * inverse_normal_cdf(p)).exp()
            };
            let v = v.clamp(lo as f64, hi as f64);
            q.push((v * (1u64 << QFRAC) as f64).round() as u64);
        }
        Sizes::Quantile(q.into_boxed_slice())
    }

    /// One size from one uniform random `u64`.
    #[inline(always)]
    pub(crate) fn sample(&self, r: u64) -> u64 {
        match self {
            Sizes::Uniform { lo, span } => lo + below(r, *span),
            Sizes::Mixture(parts) => {
                let pick = r >> 32;
                let low = r & 0xffff_ffff;
                for &(threshold, lo, span) in parts.iter() {
                    if pick < threshold {
                        return lo + ((low * span) >> 32);
                    }
                }
                unreachable!("the last threshold is u64::MAX")
            }
            Sizes::Quantile(q) => {
                let i = (r >> (64 - QBITS)) as usize;
                let f = (r >> (32 - QBITS)) & 0xffff_ffff;
                let (a, b) = (q[i], q[i + 1]);
                (a + (((b - a) as u128 * f as u128) >> 32) as u64 + (1 << (QFRAC - 1))) >> QFRAC
            }
        }
    }

    /// The smallest and largest size this distribution can give.
    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (u64, u64) {
        match self {
            Sizes::Uniform { lo, span } => (*lo, lo + span - 1),
            Sizes::Mixture(parts) => (
                parts.iter().map(|p| p.1).min().unwrap_or(0),
                parts.iter().map(|p| p.1 + p.2 - 1).max().unwrap_or(0),
            ),
            Sizes::Quantile(q) => (
                (q[0] + (1 << (QFRAC - 1))) >> QFRAC,
                (q[QN] + (1 << (QFRAC - 1))) >> QFRAC,
            ),
        }
    }

    /// The mean size (exact for uniform and mixture, from the quantile table otherwise).
    #[cfg(test)]
    pub(crate) fn mean(&self) -> f64 {
        match self {
            Sizes::Uniform { lo, span } => *lo as f64 + (*span as f64 - 1.0) / 2.0,
            Sizes::Mixture(parts) => {
                let mut prev = 0u64;
                let mut m = 0.0;
                for &(t, lo, span) in parts.iter() {
                    let t = t.min(1 << 32);
                    m += (t - prev) as f64 / 4294967296.0 * (lo as f64 + (span as f64 - 1.0) / 2.0);
                    prev = t;
                }
                m
            }
            Sizes::Quantile(q) => {
                let s: f64 = q.windows(2).map(|w| (w[0] + w[1]) as f64 / 2.0).sum();
                s / QN as f64 / (1u64 << QFRAC) as f64
            }
        }
    }
}

/// Φ(x), the standard normal CDF (Abramowitz–Stegun 7.1.26 through erfc; |error| < 1.5e-7,
/// enough to place the truncation bounds).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// Φ⁻¹(p) for `0 < p < 1` (Acklam's rational approximation, relative error < 1.2e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn draw(s: &Sizes, n: usize) -> Vec<u64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        (0..n).map(|_| s.sample(rng.next_u64())).collect()
    }

    #[test]
    fn uniform_covers_its_bounds_and_nothing_else() {
        let s = Sizes::uniform(16, 19);
        let v = draw(&s, 10_000);
        for k in 16..=19 {
            let c = v.iter().filter(|&&x| x == k).count();
            assert!((2300..2700).contains(&c), "{k}: {c}");
        }
        assert_eq!(s.bounds(), (16, 19));
        assert_eq!(s.mean(), 17.5);
    }

    #[test]
    fn mixture_keeps_its_proportions() {
        let s = Sizes::mixture(&[(0.6, 16, 256), (0.3, 512, 2048), (0.1, 4096, 32768)]);
        let v = draw(&s, 100_000);
        let small = v.iter().filter(|&&x| x <= 256).count() as f64 / 1e5;
        let large = v.iter().filter(|&&x| x >= 4096).count() as f64 / 1e5;
        assert!((small - 0.6).abs() < 0.01 && (large - 0.1).abs() < 0.01);
        assert!(v.iter().all(|&x| (16..=32768).contains(&x)));
        let mean = v.iter().sum::<u64>() as f64 / 1e5;
        assert!(
            (mean / s.mean() - 1.0).abs() < 0.02,
            "{mean} vs {}",
            s.mean()
        );
    }

    #[test]
    fn weighted_buckets_halve_by_ratio() {
        let s = Sizes::weighted_pow2(16, 512, 0.5);
        let v = draw(&s, 100_000);
        let b1 = v.iter().filter(|&&x| x <= 32).count() as f64;
        let b2 = v.iter().filter(|&&x| x > 32 && x <= 64).count() as f64;
        let b5 = v.iter().filter(|&&x| x > 256).count() as f64;
        assert!((b2 / b1 - 0.5).abs() < 0.03, "{}", b2 / b1);
        assert!((b5 / b1 - 0.0625).abs() < 0.01, "{}", b5 / b1);
        assert_eq!(s.bounds(), (16, 512));
        // [16,32] [33,64] [65,128] [129,256] [257,512], weights 1, 1/2, 1/4, 1/8, 1/16.
        let m = (24.0 + 48.5 / 2.0 + 96.5 / 4.0 + 192.5 / 8.0 + 384.5 / 16.0) / (31.0 / 16.0);
        assert!((s.mean() - m).abs() < 0.01, "{} vs {m}", s.mean());
    }

    #[test]
    fn log_normal_median_and_truncation() {
        let s = Sizes::log_normal(64.0, 1.0, 8, 4096);
        let mut v = draw(&s, 100_001);
        v.sort_unstable();
        let med = v[50_000];
        assert!((60..=68).contains(&med), "median {med}");
        assert!(v[0] >= 8 && v[100_000] <= 4096);
        // e^(sigma^2/2) * median for the untruncated law: 105.5; truncation removes little.
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        assert!((95.0..110.0).contains(&mean), "mean {mean}");
        assert!((s.mean() / mean - 1.0).abs() < 0.02);
    }

    #[test]
    fn inverse_cdf_inverts_cdf() {
        for &p in &[1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1.0 - 1e-6] {
            let x = inverse_normal_cdf(p);
            assert!((normal_cdf(x) - p).abs() < 2e-7, "{p}");
        }
    }
}
