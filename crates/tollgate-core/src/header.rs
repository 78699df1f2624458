//! Header values rendered per response.

use http::HeaderValue;

/// `n` as a header value, in one allocation of its exact size.
///
/// `HeaderValue::from(n)` makes two: its buffer, then the shared handle the buffer becomes
/// when frozen with room to spare. Rate-limit counts and balances are rendered per response.
///
/// ```
/// use tollgate_core::number_value;
///
/// assert_eq!(number_value(1_000_000), "1000000");
/// assert_eq!(number_value(u64::MAX), http::HeaderValue::from(u64::MAX));
/// ```
pub fn number_value(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n);
    // Digits are always a valid value: the fallback only keeps this free of a panic path.
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| HeaderValue::from(n))
}
