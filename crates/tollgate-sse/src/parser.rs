//! An incremental parser for the HTML event-stream format.

use std::borrow::Cow;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type: `message` unless an `event:` field set it.
    pub event: &'a str,
    /// The data: every `data:` line of the event, joined with `\n`.
    pub data: &'a str,
    /// The last event id seen on the stream, if any.
    pub id: Option<&'a str>,
    /// Where the event ends in the chunk that completed it (just after its blank line).
    pub end: usize,
}

/// Parses an event stream fed in chunks split anywhere, by the rules of the HTML standard's
/// "Interpreting an event stream": `data` (multi-line), `event`, `id`, `retry`, comments,
/// CRLF / CR / LF line endings, a leading BOM, and an incomplete event at the end discarded.
///
/// A single-line `data` event that arrives whole in one chunk is handed over borrowed from the
/// chunk; other events are assembled in buffers that are reused, so steady-state parsing
/// allocates nothing.
///
/// ```
/// use tollgate_sse::SseParser;
///
/// let mut parser = SseParser::new();
/// let mut events = Vec::new();
/// for chunk in ["data: {\"a\"", ":1}\n\nevent: ping\r\ndata: x\r\ndata: y\r\n\r\n"] {
///     parser.feed(chunk.as_bytes(), |event| events.push((event.event.to_owned(), event.data.to_owned())));
/// }
/// assert_eq!(events, [("message".to_owned(), "{\"a\":1}".to_owned()), ("ping".to_owned(), "x\ny".to_owned())]);
/// ```
#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The previous chunk ended with CR: a LF starting the next one belongs to it.
    skip_lf: bool,
    /// Whether the first line (which may start with a BOM) has been seen.
    past_first_line: bool,
    /// A field line (`event`, `id`, `retry`, ...) of an event not dispatched yet.
    pending_fields: bool,
    /// Data of the pending event, when it is not borrowed.
    data: String,
    data_lines: usize,
    /// The pending event's only data line, borrowed from the current chunk.
    borrowed: Option<(usize, usize)>,
    event_type: String,
    last_id: Option<String>,
    retry: Option<u64>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// The reconnection time the stream asked for with `retry:`, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Whether the last chunk ended with `\r`, so that a `\n` opening the next one ends the
    /// same line.
    pub(crate) fn awaits_lf(&self) -> bool {
        self.skip_lf
    }

    /// Whether the stream so far ends at an event boundary: no partial line, and no field of
    /// an event not yet dispatched.
    pub fn at_boundary(&self) -> bool {
        self.partial.is_empty() && self.data_lines == 0 && !self.pending_fields
    }

    /// Feeds the next chunk; `on_event` sees every event the chunk completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&Event<'_>)) {
        let mut position = 0;
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                position = 1;
            }
        }
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &chunk[position..]) {
            let end = position + offset;
            let mut next = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
            if self.partial.is_empty() {
                self.line(chunk, position, end, next, true, &mut on_event);
            } else {
                self.partial.extend_from_slice(&chunk[position..end]);
                let line = std::mem::take(&mut self.partial);
                self.line(&line, 0, line.len(), next, false, &mut on_event);
                // Keep the allocation for the next partial line.
                self.partial = line;
                self.partial.clear();
            }
            position = next;
        }
        self.partial.extend_from_slice(&chunk[position..]);
        // The chunk goes away: a borrowed data line must be copied before it does.
        if let Some((start, end)) = self.borrowed.take() {
            self.data.push_str(&decode(&chunk[start..end]));
        }
    }

    /// Handles the line `source[start..end]`; `next` is where the following line starts in the
    /// current chunk. Only a line read straight from the chunk (`from_chunk`) may be borrowed.
    fn line(
        &mut self,
        source: &[u8],
        mut start: usize,
        end: usize,
        next: usize,
        from_chunk: bool,
        on_event: &mut impl FnMut(&Event<'_>),
    ) {
        if !self.past_first_line {
            self.past_first_line = true;
            if source[start..end].starts_with(BOM) {
                start += BOM.len();
            }
        }
        let line = &source[start..end];
        if line.is_empty() {
            self.dispatch(source, next, on_event);
            return;
        }
        if line[0] == b':' {
            return; // a comment
        }
        self.pending_fields = true;
        let (field, value_start) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = colon + 1;
                let value = if line.get(value) == Some(&b' ') {
                    value + 1
                } else {
                    value
                };
                (&line[..colon], start + value)
            }
            None => (line, end),
        };
        match field {
            b"data" => {
                if self.data_lines == 0 && from_chunk {
                    self.borrowed = Some((value_start, end));
                } else {
                    if let Some((s, e)) = self.borrowed.take() {
                        self.data.push_str(&decode(&source[s..e]));
                    }
                    if self.data_lines > 0 {
                        self.data.push('\n');
                    }
                    self.data.push_str(&decode(&source[value_start..end]));
                }
                self.data_lines += 1;
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&decode(&source[value_start..end]));
            }
            b"id" => {
                let value = &source[value_start..end];
                if !value.contains(&0) {
                    self.last_id = Some(decode(value).into_owned());
                }
            }
            b"retry" => {
                let value = &source[value_start..end];
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, source: &[u8], end: usize, on_event: &mut impl FnMut(&Event<'_>)) {
        if self.data_lines > 0 {
            let borrowed;
            let data: &str = match self.borrowed.take() {
                Some((s, e)) => {
                    borrowed = decode(&source[s..e]);
                    &borrowed
                }
                None => &self.data,
            };
            let event = Event {
                event: if self.event_type.is_empty() {
                    "message"
                } else {
                    &self.event_type
                },
                data,
                id: self.last_id.as_deref(),
                end,
            };
            on_event(&event);
        }
        self.data.clear();
        self.data_lines = 0;
        self.borrowed = None;
        self.event_type.clear();
        self.pending_fields = false;
    }
}

/// UTF-8 decoding with replacement, as the standard asks; borrowed when the bytes are valid.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    // The strict check first: it is several times faster on valid text (every event), and
    // the lossy one runs only on the rare invalid event.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}
