//! Rendering rate-limit state into response headers and 429 messages.

use std::sync::LazyLock;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use tollgate_core::admission::Respond;
use tollgate_core::error::ceil_secs;
use tollgate_core::{GatewayError, ResponseBody, number_value};

use crate::backend::{QuotaState, Scope};

/// Go-style durations, as OpenAI writes them in `x-ratelimit-reset-*` and its 429 messages:
/// `12ms`, `1.2s`, `6m0s`, `1h2m3s`.
pub(crate) fn go_duration(duration: Duration) -> String {
    GoDuration(duration).to_string()
}

/// Header values of the resets under a second (`0s`, `1ms` to `999ms`), made once: a
/// request quota's reset is nearly always one of them, and a clone is a reference count where
/// rendering allocates. Index 0 is a zero duration, index `n` is `n` milliseconds.
static SUB_SECOND_RESETS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    // All of them or none (then every reset is rendered): an index must mean its duration.
    (0..1000)
        .map(|millis| render_go_duration(Duration::from_millis(millis)))
        .collect::<Option<_>>()
        .unwrap_or_default()
});

/// [`go_duration`] as a header value.
fn go_duration_header(duration: Duration) -> Option<HeaderValue> {
    // A duration under a millisecond but not zero is written `1ms`.
    let index = if duration.is_zero() {
        0
    } else {
        duration.as_millis().max(1)
    };
    match usize::try_from(index)
        .ok()
        .and_then(|index| SUB_SECOND_RESETS.get(index))
    {
        Some(value) => Some(value.clone()),
        None => render_go_duration(duration),
    }
}

/// [`go_duration`] as a header value, rendered on the stack (one allocation, the value's).
fn render_go_duration(duration: Duration) -> Option<HeaderValue> {
    use std::io::Write as _;
    // The longest, `5124095576030431h0m15s` (`Duration::MAX`), is 22 bytes.
    let mut buffer = [0; 32];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{}", GoDuration(duration)).ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

struct GoDuration(Duration);

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str(if self.0.is_zero() { "0s" } else { "1ms" });
        }
        if millis < 1000 {
            return write!(f, "{millis}ms");
        }
        let secs = millis / 1000;
        let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if hours > 0 || minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        // Milliseconds only under a minute, without trailing zeros: `1.2s`, `1.25s`, `1.001s`.
        match millis % 1000 {
            fraction if fraction == 0 || hours > 0 || minutes > 0 => write!(f, "{seconds}s"),
            fraction if fraction % 100 == 0 => write!(f, "{seconds}.{}s", fraction / 100),
            fraction if fraction % 10 == 0 => write!(f, "{seconds}.{:02}s", fraction / 10),
            fraction => write!(f, "{seconds}.{fraction:03}s"),
        }
    }
}

/// "min" for a minute, "sec", "hour", "day", else the seconds.
pub(crate) fn period_name(period: Duration) -> String {
    match period.as_secs() {
        1 => "sec".into(),
        60 => "min".into(),
        3600 => "hour".into(),
        86400 => "day".into(),
        _ => format!("{}s", go_duration(period).trim_end_matches('s')),
    }
}

/// The state that constrains most: the smallest share left (ties: the later reset).
pub(crate) fn most_constraining<'a>(
    states: impl Iterator<Item = &'a (Scope, QuotaState, Duration)>,
) -> Option<&'a (Scope, QuotaState, Duration)> {
    states.min_by(|(_, a, _), (_, b, _)| tighter(a, b))
}

/// Orders states by the share they have left (ties: the later reset first).
fn tighter(a: &QuotaState, b: &QuotaState) -> std::cmp::Ordering {
    (u128::from(a.remaining) * u128::from(b.limit))
        .cmp(&(u128::from(b.remaining) * u128::from(a.limit)))
        .then(b.reset.cmp(&a.reset))
}

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Header values of the numbers most responses carry, made once: a clone of one of them is
/// a reference count, not an allocation.
static SMALL_NUMBERS: LazyLock<Vec<HeaderValue>> =
    LazyLock::new(|| (0..=1024u64).map(HeaderValue::from).collect());

fn number(n: u64) -> HeaderValue {
    usize::try_from(n)
        .ok()
        .and_then(|n| SMALL_NUMBERS.get(n))
        .cloned()
        .unwrap_or_else(|| number_value(n))
}

/// Header values of the configured limits, made with the rules: the limit of nearly every
/// response is one of them, and a clone is a reference count where rendering allocates.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimitValues(Box<[(u64, HeaderValue)]>);

impl LimitValues {
    pub(crate) fn new(limits: impl IntoIterator<Item = u64>) -> Self {
        let mut limits: Vec<u64> = limits.into_iter().collect();
        limits.sort_unstable();
        limits.dedup();
        LimitValues(limits.into_iter().map(|n| (n, number(n))).collect())
    }

    fn get(&self, limit: u64) -> HeaderValue {
        match self.0.iter().find(|(known, _)| *known == limit) {
            Some((_, value)) => value.clone(),
            None => number(limit),
        }
    }
}

/// Which header families to write.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Families {
    pub(crate) openai: bool,
    pub(crate) ietf: bool,
}

impl Families {
    /// Whether any optional family is on.
    pub(crate) fn any(self) -> bool {
        self.openai || self.ietf
    }
}

/// The rate-limit headers of one response, rendered when the decision is made and written on
/// the response head, whether the request was admitted or refused.
#[derive(Debug, Default)]
pub(crate) struct RateHeaders {
    /// Limit, remaining and reset of the most constraining rule.
    basic: Option<[HeaderValue; 3]>,
    /// OpenAI's and the IETF draft's, when enabled: a list (not a map, which would hash every
    /// name twice), applied in order.
    extra: Vec<(HeaderName, HeaderValue)>,
    /// What `basic` says is remaining, as a number (for the request's telemetry).
    pub(crate) remaining: Option<u64>,
}

impl RateHeaders {
    /// The `X-RateLimit-*` trio of the most constraining of `states`.
    pub(crate) fn basic(states: &[QuotaState], limits: &LimitValues) -> Self {
        let top = states.iter().min_by(|a, b| tighter(a, b));
        RateHeaders {
            basic: top.map(|top| {
                [
                    limits.get(top.limit),
                    number(top.remaining),
                    number(ceil_secs(top.reset)),
                ]
            }),
            extra: Vec::new(),
            remaining: top.map(|top| top.remaining),
        }
    }

    /// Renders the headers for a request's rules: `(scope, state, period)` each.
    pub(crate) fn render(
        states: &[(Scope, QuotaState, Duration)],
        families: Families,
        limits: &LimitValues,
    ) -> Self {
        let Some((_, top, _)) = most_constraining(states.iter()) else {
            return RateHeaders::default();
        };
        let remaining = number(top.remaining);
        let mut extra = Vec::new();
        if families.openai || families.ietf {
            extra.reserve_exact(8);
            let top_remaining = (top.remaining, &remaining);
            write_extra(&mut extra, states, families, limits, top_remaining);
        }
        RateHeaders {
            basic: Some([
                limits.get(top.limit),
                remaining,
                number(ceil_secs(top.reset)),
            ]),
            extra,
            remaining: Some(top.remaining),
        }
    }

    fn apply(self, headers: &mut HeaderMap) {
        // One growth of the response's map at most, rather than one per crossing.
        headers.reserve(3 + self.extra.len());
        if let Some([limit, remaining, reset]) = self.basic {
            headers.insert(LIMIT, limit);
            headers.insert(REMAINING, remaining);
            headers.insert(RESET, reset);
        }
        for (name, value) in self.extra {
            headers.insert(name, value);
        }
    }
}

impl<B> Respond<B> for RateHeaders {
    type Body = ResponseBody<B>;

    fn admitted(self, mut response: Response<B>) -> Response<ResponseBody<B>> {
        self.apply(response.headers_mut());
        response.map(ResponseBody::inner)
    }

    fn rejected(self, error: GatewayError) -> Response<ResponseBody<B>> {
        let mut response = error.into_response().map(ResponseBody::from);
        self.apply(response.headers_mut());
        response
    }
}

/// OpenAI's names: limit, remaining and reset, for requests and for tokens.
const OPENAI_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const OPENAI_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

fn write_extra(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    states: &[(Scope, QuotaState, Duration)],
    families: Families,
    limits: &LimitValues,
    // The most constraining rule's remaining count, rendered already: the OpenAI header of its
    // kind says the same number, and a clone is a reference count where rendering allocates.
    (top_remaining, top_value): (u64, &HeaderValue),
) {
    if families.openai {
        for (tokens, [limit, remaining, reset]) in [(false, OPENAI_REQUESTS), (true, OPENAI_TOKENS)]
        {
            let Some((_, state, _)) = most_constraining(
                states
                    .iter()
                    .filter(|(scope, _, _)| scope.counts_tokens() == tokens),
            ) else {
                continue;
            };
            headers.push((limit, limits.get(state.limit)));
            let remaining_value = if state.remaining == top_remaining {
                top_value.clone()
            } else {
                number(state.remaining)
            };
            headers.push((remaining, remaining_value));
            if let Some(value) = go_duration_header(state.reset) {
                headers.push((reset, value));
            }
        }
    }
    if families.ietf {
        let policies: Vec<String> = states
            .iter()
            .map(|(scope, state, period)| {
                format!(
                    "\"{}\";q={};w={}",
                    scope.name(),
                    state.limit,
                    ceil_secs(*period)
                )
            })
            .collect();
        if let Ok(value) = HeaderValue::try_from(policies.join(", ")) {
            headers.push((HeaderName::from_static("ratelimit-policy"), value));
        }
        if let Some((scope, state, _)) = most_constraining(states.iter())
            && let Ok(value) = HeaderValue::try_from(format!(
                "\"{}\";r={};t={}",
                scope.name(),
                state.remaining,
                ceil_secs(state.reset)
            ))
        {
            headers.push((HeaderName::from_static("ratelimit"), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_writes_durations_as_openai_does() {
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(10)), "1ms");
        assert_eq!(go_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(go_duration(Duration::from_millis(59_001)), "59.001s");
        assert_eq!(go_duration(Duration::from_millis(61_500)), "1m1s");
        let durations = (0..1100)
            .map(Duration::from_millis)
            .chain([Duration::from_micros(10), Duration::from_micros(999_999)])
            .chain([Duration::from_millis(1250), Duration::MAX]);
        for duration in durations {
            let header = go_duration_header(duration).unwrap();
            assert_eq!(
                header.to_str().unwrap(),
                go_duration(duration),
                "{duration:?}"
            );
        }
    }
}
