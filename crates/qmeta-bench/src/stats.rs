//! Latency percentiles over recorded samples (microseconds).

use serde_json::{json, Value};

/// Nearest-rank percentile `p` (0..=100) of `sorted` (ascending); 0 when empty.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `samples` and summarises them as JSON (µs).
pub fn summary(samples: &mut [u32]) -> Value {
    samples.sort_unstable();
    let mean =
        if samples.is_empty() { 0.0 } else { samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64 };
    json!({
        "count": samples.len(),
        "mean_us": mean.round(),
        "p50_us": percentile(samples, 50.0),
        "p90_us": percentile(samples, 90.0),
        "p99_us": percentile(samples, 99.0),
        "p999_us": percentile(samples, 99.9),
        "max_us": samples.last().copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.9), 7);
    }

    #[test]
    fn summary_sorts_first() {
        let mut s = vec![30, 10, 20];
        let v = summary(&mut s);
        assert_eq!(v["p50_us"], 20);
        assert_eq!(v["max_us"], 30);
        assert_eq!(v["mean_us"], 20.0);
        assert_eq!(v["count"], 3);
    }
}
