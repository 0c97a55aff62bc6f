//! Statistics of the benchmarks' measurements: medians, percentiles, ranges.
//!
//! ```ignore
//! #[path = "common/stats.rs"]
//! mod stats;
//! ```

// Shared by the benchmarks; each uses a part.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};

/// The median, the mean of the two middle values for an even count; NaN values are ignored
/// (NaN when nothing is left).
pub fn median(values: &[f64]) -> f64 {
    let mut s: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The middle of the sorted values, the upper of the two middle ones for an even count: a
/// value that was measured, never an average (NaN when empty).
pub fn upper_median(values: &[f64]) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// [`upper_median`] of durations (zero when empty).
pub fn upper_median_duration(values: &[Duration]) -> Duration {
    let mut s = values.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// The smallest and the largest value (+inf, -inf when empty).
pub fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// Percentiles (nearest rank) of durations in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Dist {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Dist {
    pub fn of(values: &[f64]) -> Dist {
        let mut s = values.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if s.is_empty() {
                return f64::NAN;
            }
            let r = ((p / 100.0) * s.len() as f64).ceil() as usize;
            s[r.clamp(1, s.len()) - 1]
        };
        Dist {
            n: s.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            p999: rank(99.9),
            max: rank(100.0),
        }
    }

    /// `{"n", "p50_s", "p99_s", "p999_s", "max_s"}`.
    pub fn to_json(self) -> Value {
        json!({"n": self.n, "p50_s": self.p50, "p99_s": self.p99, "p999_s": self.p999, "max_s": self.max})
    }
}
