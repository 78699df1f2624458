//! W3C Trace Context (`traceparent`, `tracestate`): a client's trace continued through the
//! gateway and on to the provider.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` carried on: W3C lets a vendor truncate past 512 characters, and a
/// longer one is dropped rather than cut mid-entry.
const MAX_TRACESTATE: usize = 512;

/// The gateway's place in a distributed trace: the trace it belongs to, the client's span that
/// called it (when the client sent a valid `traceparent`), and the span the provider's request
/// hangs under: the gateway's own once a tracer records one, else the client's.
///
/// ```
/// use http::HeaderMap;
/// use tollgate_core::{SpanId, TraceContext};
///
/// let mut headers = HeaderMap::new();
/// let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// headers.insert("traceparent", client.parse().unwrap());
/// let context = TraceContext::continue_from(&headers).unwrap();
/// assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(context.parent_span_id().unwrap().to_string(), "00f067aa0ba902b7");
/// assert!(context.sampled());
/// // A gateway that records no span passes the client's context on as it came...
/// assert_eq!(context.traceparent(), client);
/// // ...and one that does is the parent of the provider's request.
/// let recorded = context.with_span_id(SpanId([0, 0, 0, 0, 0, 0, 0, 7]));
/// assert_eq!(
///     recorded.traceparent(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000007-01"
/// );
///
/// // Without a (valid) traceparent there is no trace to continue.
/// assert!(TraceContext::continue_from(&HeaderMap::new()).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    parent_span_id: Option<SpanId>,
    span_id: SpanId,
    flags: u8,
    tracestate: Option<HeaderValue>,
    /// The client's `traceparent` as it came (version `00`), sent on as is until the gateway's
    /// span replaces the client's as the parent.
    received: Option<HeaderValue>,
}

/// A W3C trace id: 16 bytes, never all zero, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span (parent) id: 8 bytes, never all zero, written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0; 32];
        write_hex(&mut hex, &self.0);
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0; 16];
        write_hex(&mut hex, &self.0);
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

/// `bytes` as lowercase hex digits into `out` (twice as long).
pub(crate) fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// Each byte's two lowercase hex digits (a lookup per byte: ids are rendered per request).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

impl TraceContext {
    /// The trace of a request with `headers`: its `traceparent` when valid (any version but
    /// `ff`, lowercase hex, ids not all zero), with its `tracestate`, and the client's span as
    /// the provider's parent until [`with_span_id`](Self::with_span_id) names the gateway's.
    /// `None` without one: a gateway that records no span has no trace of its own to start.
    pub fn continue_from(headers: &HeaderMap) -> Option<TraceContext> {
        // A pass over the request's few names rather than a lookup: most requests have no
        // `traceparent`, and comparing names costs less than hashing this one.
        let parent = headers
            .iter()
            .find_map(|(name, value)| (*name == TRACEPARENT).then_some(value))?;
        let (trace_id, parent_span_id, flags) = parse_traceparent(parent.as_bytes())?;
        Some(TraceContext {
            trace_id,
            parent_span_id: Some(parent_span_id),
            span_id: parent_span_id,
            flags,
            tracestate: headers
                .get(TRACESTATE)
                .filter(|state| state.len() <= MAX_TRACESTATE)
                .cloned(),
            // A later version's extra fields are not ours to pass on: that one is re-rendered.
            received: (parent.len() == TRACEPARENT_LEN && parent.as_bytes()[..2] == *b"00")
                .then(|| parent.clone()),
        })
    }

    /// A new trace, sampled, with no parent.
    pub fn start() -> TraceContext {
        let high = nonzero_u64();
        let low = random_u64();
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&high.to_be_bytes());
        trace_id[8..].copy_from_slice(&low.to_be_bytes());
        TraceContext {
            trace_id: TraceId(trace_id),
            parent_span_id: None,
            span_id: SpanId(nonzero_u64().to_be_bytes()),
            flags: 0x01,
            tracestate: None,
            received: None,
        }
    }

    /// The trace this request belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The client's span, when the client sent a valid `traceparent`.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }

    /// The parent of the request to the provider: the gateway's span once it has one (a new
    /// trace's, or [`with_span_id`](Self::with_span_id)'s), else the client's.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The same context with `span_id` as the gateway's span: the id a tracer gave the span it
    /// exports for this request, so that the provider's spans hang under that span. An all-zero
    /// id is invalid in W3C Trace Context and leaves the context unchanged.
    ///
    /// ```
    /// use tollgate_core::{SpanId, TraceContext};
    ///
    /// let context = TraceContext::start().with_span_id(SpanId([0, 0, 0, 0, 0, 0, 0, 7]));
    /// assert_eq!(context.span_id().to_string(), "0000000000000007");
    /// let upstream = context.traceparent();
    /// assert_eq!(&upstream.to_str().unwrap()[36..52], "0000000000000007");
    ///
    /// let unchanged = context.clone().with_span_id(SpanId([0; 8]));
    /// assert_eq!(unchanged, context);
    /// ```
    pub fn with_span_id(mut self, span_id: SpanId) -> Self {
        if span_id.0 != [0; 8] {
            self.span_id = span_id;
            self.received = None;
        }
        self
    }

    /// The caller's sampling decision (`trace-flags` bit 0); a new trace is sampled.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The `traceparent` for the request to the provider: this trace, [`span_id`](Self::span_id)
    /// as the parent, the caller's flags, version `00`.
    pub fn traceparent(&self) -> HeaderValue {
        if let Some(received) = &self.received {
            return received.clone();
        }
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut value[3..35], &self.trace_id.0);
        write_hex(&mut value[36..52], &self.span_id.0);
        write_hex(&mut value[53..55], &[self.flags]);
        // Only hex digits and dashes: always a valid header value. Shared from the start, as
        // the upstream client copies its headers for each attempt.
        HeaderValue::from_maybe_shared(Bytes::from_owner(value))
            .unwrap_or(HeaderValue::from_static(""))
    }

    /// The caller's `tracestate`, carried on unchanged (the gateway adds no entry of its own).
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }
}

/// The length of a version `00` `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// `version-traceid-parentid-flags`, per W3C Trace Context level 1: a future version may add
/// fields after a `-`, version `ff` is invalid, and all-zero ids are invalid.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    if value.len() < TRACEPARENT_LEN
        || (value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-')
    {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != TRACEPARENT_LEN) {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = hex_bytes(&value[3..35])?;
    let span_id: [u8; 8] = hex_bytes(&value[36..52])?;
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((TraceId(trace_id), SpanId(span_id), flags))
}

/// Two lowercase hex digits (W3C forbids uppercase).
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let high = HEX[usize::from(digits[0])];
    let low = HEX[usize::from(digits[1])];
    (high | low < 16).then_some(high << 4 | low)
}

/// `2 * N` lowercase hex digits.
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut bytes = [0; N];
    let mut invalid = 0;
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    // Every value of the table is below 16 but for non-digits, which have the high bit.
    (invalid < 16).then_some(bytes)
}

/// Each byte's value as a lowercase hex digit, or 0x80 when it is not one.
const HEX: [u8; 256] = {
    let mut table = [0x80; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

/// 64 bits that look random: a per-process secret seed (from the operating system, once)
/// plus a counter, through SplitMix64's finalizer. No system call per id; ids need to be
/// unique and evenly spread, not unguessable.
pub(crate) fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn nonzero_u64() -> u64 {
    loop {
        let value = random_u64();
        if value != 0 {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_parent(value: &str) -> TraceContext {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
        headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        TraceContext::continue_from(&headers).unwrap()
    }

    #[test]
    fn invalid_parents_are_no_trace() {
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, HeaderValue::from_str(invalid).unwrap());
            headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
            assert_eq!(TraceContext::continue_from(&headers), None, "{invalid}");
        }
    }

    #[test]
    fn a_later_version_with_more_fields_is_continued() {
        let context = with_parent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!context.sampled());
        assert_eq!(context.tracestate().unwrap(), "congo=t61rcWkgMzE");
        assert_eq!(
            context.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn the_clients_parent_is_replaced_by_the_gateways_span_only() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = with_parent(client);
        assert_eq!(context.span_id(), context.parent_span_id().unwrap());
        assert_eq!(context.traceparent(), client);
        let unchanged = context.clone().with_span_id(SpanId([0; 8]));
        assert_eq!(unchanged.traceparent(), client);
        let recorded = context.with_span_id(SpanId([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(
            recorded.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert_eq!(recorded.tracestate().unwrap(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn new_ids_differ_and_are_well_formed() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                TraceContext::start()
                    .traceparent()
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let parsed = parse_traceparent(id.as_bytes());
            assert!(parsed.is_some(), "{id}");
        }
    }
}
