//! Histogram bucket boundaries for the GenAI series: the `prometheus` and `otlp` features'
//! exporters use them, and they are here for configuring any other.
//!
//! ```
//! use tollgate_metrics::buckets::DURATION_BUCKETS;
//!
//! assert_eq!(DURATION_BUCKETS.first(), Some(&0.01));
//! assert!(DURATION_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
//! ```

/// OpenTelemetry's recommended boundaries for `gen_ai.server.request.duration`, seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.server.time_to_first_token`, seconds.
pub const TIME_TO_FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.server.time_per_output_token`, seconds.
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.client.token.usage`, tokens.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Boundaries for `tollgate.server.overhead`, seconds: from 10 µs, where a gateway's own work
/// lies, to a second.
pub const OVERHEAD_BUCKETS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1.0,
];

/// The boundaries for the histogram `name` (one of [`names`](crate::names)), if it is one of
/// the bucketed series.
#[cfg(feature = "otlp")]
pub(crate) fn for_histogram(name: &str) -> Option<&'static [f64]> {
    use crate::names;
    match name {
        names::REQUEST_DURATION | names::TIME_TO_HEAD => Some(&DURATION_BUCKETS),
        names::TIME_TO_FIRST_TOKEN => Some(&TIME_TO_FIRST_TOKEN_BUCKETS),
        names::TIME_PER_OUTPUT_TOKEN => Some(&TIME_PER_OUTPUT_TOKEN_BUCKETS),
        names::TOKEN_USAGE => Some(&TOKEN_BUCKETS),
        names::OVERHEAD => Some(&OVERHEAD_BUCKETS),
        _ => None,
    }
}
/// Boundaries for any other histogram of a [`TextRecorder`](crate::TextRecorder) without its
/// own: seconds, from 1 ms to a minute.
pub const DEFAULT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0, 60.0,
];
