//! Information-theoretic helpers.

/// Binary entropy h(q) = −q·log2 q − (1−q)·log2(1−q); 0 at q ∈ {0, 1}.
pub fn h2(q: f64) -> f64 {
    if q <= 0.0 || q >= 1.0 {
        return 0.0;
    }
    -q * q.log2() - (1.0 - q) * (1.0 - q).log2()
}

/// Asymptotic BB84 secret fraction with ideal error correction: 1 − 2h(Q)
/// (clamped at 0).
pub fn asymptotic_rate(q: f64) -> f64 {
    (1.0 - 2.0 * h2(q)).max(0.0)
}

/// Secret fraction with an error-correction efficiency `f`: 1 − h(Q) − f·h(Q).
pub fn rate_with_efficiency(q: f64, f: f64) -> f64 {
    (1.0 - h2(q) - f * h2(q)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_values() {
        assert_eq!(h2(0.0), 0.0);
        assert!((h2(0.5) - 1.0).abs() < 1e-12);
        assert!((h2(0.11) - 0.4999).abs() < 1e-3);
        assert!(asymptotic_rate(0.111) < 0.002);
        assert!((rate_with_efficiency(0.02, 1.0) - asymptotic_rate(0.02)).abs() < 1e-12);
    }
}
