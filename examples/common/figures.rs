//! How the benchmarks print figures: seconds, whole numbers with thousands separators, and
//! the verdict on a target (nothing asserts a time; a target HOLDS or is MISSED).
//!
//! ```ignore
//! #[path = "common/figures.rs"]
//! mod figures;
//! ```

// Shared by the benchmarks; each uses a part.
#![allow(dead_code)]

/// Seconds as a short human string: `12.3 µs`, `4.5 ms`, `1.23 s`, `n/a` for NaN.
pub fn fmt_s(s: f64) -> String {
    if s.is_nan() {
        "n/a".to_string()
    } else if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// A number rounded to an integer, with thousands separators (`n/a` when not finite).
pub fn fmt_n(n: f64) -> String {
    if !n.is_finite() {
        return "n/a".to_string();
    }
    let s = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

/// `HOLDS` when a target is met, else `MISSED`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "HOLDS" } else { "MISSED" }
}
