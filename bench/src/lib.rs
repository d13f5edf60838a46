//! What the benchmark binaries in `src/bin/` share.

/// The median of `values` (sorted in place); the mean of the middle two for an even count,
/// NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
