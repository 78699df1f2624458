//! Header values rendered per response.

use bytes::Bytes;
use http::HeaderValue;

/// How many headers the layers of a full stack add to a response on its way out: the rate
/// limits' (three, and OpenAI's six), the balance, the model and the request id. A map that
/// has this room when the response is made grows once instead of once per layer.
///
/// ```
/// use http::HeaderMap;
/// use tollgate_core::RESPONSE_HEADER_ROOM;
///
/// let mut headers = HeaderMap::new();
/// headers.reserve(RESPONSE_HEADER_ROOM);
/// assert!(headers.capacity() >= RESPONSE_HEADER_ROOM);
/// ```
pub const RESPONSE_HEADER_ROOM: usize = 12;

/// `n` as a header value, in one allocation, shared from the start: a clone is a reference
/// count.
///
/// `HeaderValue::from(n)` makes two allocations: its buffer, then the shared handle the buffer
/// becomes when frozen with room to spare. A value made from a slice makes one, and another
/// on its first clone. Rate-limit counts and balances are rendered per response, and a count
/// that two headers say is cloned.
///
/// ```
/// use tollgate_core::number_value;
///
/// assert_eq!(number_value(1_000_000), "1000000");
/// assert_eq!(number_value(u64::MAX), http::HeaderValue::from(u64::MAX));
/// assert_eq!(number_value(0).clone(), "0");
/// ```
pub fn number_value(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(n).as_bytes();
    let mut owned = Digits {
        bytes: [0; 20],
        len: text.len(),
    };
    owned.bytes[..text.len()].copy_from_slice(text);
    // Digits are always a valid value: the fallback only keeps this free of a panic path.
    HeaderValue::from_maybe_shared(Bytes::from_owner(owned))
        .unwrap_or_else(|_| HeaderValue::from(n))
}

/// The digits of a `u64` (at most 20), owned by the shared bytes of a header value.
struct Digits {
    bytes: [u8; 20],
    len: usize,
}

impl AsRef<[u8]> for Digits {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
