//! Header values rendered per response (remaining requests, reset times, balances) without an
//! allocation each: the bytes go into a per-thread buffer, and each value shares a piece of it
//! (one allocation per few hundred values, freed when the last of them is).
//!
//! ```
//! use tollgate_core::header_value;
//!
//! assert_eq!(header_value::number(999_999_937), "999999937");
//! assert_eq!(header_value::copied(b"1.5s").unwrap(), "1.5s");
//! assert!(header_value::copied(b"line\nbreak").is_none());
//! ```

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderValue;

/// The size of each thread's buffer: a few hundred values' worth.
const BLOCK: usize = 4096;

thread_local! {
    static BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A header value of `bytes`, copied into the thread's shared buffer; `None` when they are not
/// a valid header value (a control character, say).
///
/// ```
/// let value = tollgate_core::header_value::copied(b"6m0s").unwrap();
/// assert_eq!(value.to_str().unwrap(), "6m0s");
/// ```
pub fn copied(bytes: &[u8]) -> Option<HeaderValue> {
    BUFFER.with_borrow_mut(|buffer| {
        if buffer.capacity() < bytes.len() {
            // The pieces handed out keep the old block alive until they are dropped.
            *buffer = BytesMut::with_capacity(BLOCK.max(bytes.len()));
        }
        buffer.extend_from_slice(bytes);
        HeaderValue::from_maybe_shared(buffer.split().freeze()).ok()
    })
}

/// A header value of the number `n`, in decimal.
///
/// ```
/// let value = tollgate_core::header_value::number(18_446_744_073_709_551_615);
/// assert_eq!(value, "18446744073709551615");
/// ```
pub fn number(n: u64) -> HeaderValue {
    copied(itoa::Buffer::new().format(n).as_bytes()).unwrap_or_else(|| HeaderValue::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_a_block_start_a_new_one_and_keep_their_bytes() {
        let values: Vec<HeaderValue> = (0..3 * BLOCK as u64).map(number).collect();
        for (n, value) in values.iter().enumerate() {
            assert_eq!(value.to_str().unwrap(), n.to_string());
        }
        let long = vec![b'a'; 2 * BLOCK];
        assert_eq!(copied(&long).unwrap().as_bytes(), &long[..]);
        assert_eq!(number(7), "7");
    }
}
