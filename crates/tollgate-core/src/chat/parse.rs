//! The one pass of `serde_json` over the body: visitors and seeds that record each field's
//! value or JSON type, and the spans of the strings, without copying them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

use super::{
    ChatRequest, Content, Field, Fields, Input, InputItem, InvalidPart, JsonType, KNOWN_FIELDS,
    Message, PART_TYPES, ParseError, ParseErrorKind, Part, Span, StrSpan, StreamOptions, decode,
};

impl ChatRequest {
    /// Parses a body in one pass. Fails only when the body is not a JSON object, or nests
    /// arrays and objects more than 128 deep anywhere (the members it skips included); fields
    /// of the wrong type are recorded as [`Field::Invalid`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::chat::{ChatRequest, ParseErrorKind};
    ///
    /// let error = ChatRequest::parse(Bytes::from_static(b"{\"model\": \"a\",}")).unwrap_err();
    /// assert_eq!(error.kind, ParseErrorKind::Syntax);
    /// assert_eq!((error.line, error.column), (1, 15));
    ///
    /// let deep = format!("{{\"metadata\":{}{}}}", "[".repeat(200), "]".repeat(200));
    /// let error = ChatRequest::parse(Bytes::from(deep)).unwrap_err();
    /// assert_eq!((error.kind, error.column), (ParseErrorKind::Syntax, 140));
    /// ```
    pub fn parse(body: Bytes) -> Result<ChatRequest, ParseError> {
        let text = check_text(&body)?;
        check_depth(&body)?;
        let base = body.as_ptr() as usize;
        // From the checked text: serde then reads its strings and raw values without checking
        // their UTF-8 again.
        let mut deserializer = serde_json::Deserializer::from_str(text);
        // Filled in place: returned through serde's calls, the fields would be copied at each.
        let mut fields = Fields::default();
        let top = TopVisitor {
            base,
            body: &body,
            fields: &mut fields,
        };
        let parsed = de::Deserializer::deserialize_any(&mut deserializer, top)
            .and_then(|()| deserializer.end());
        if let Err(error) = parsed {
            return Err(parse_error(&body, &error));
        }
        fields.object_end = body.iter().rposition(|&b| b == b'}').unwrap_or(body.len());
        if let Field::Value(model) = fields.model
            && model.escaped
        {
            fields.decoded_model = Some(decode(&body, model).into());
        }
        fields.body = body;
        Ok(ChatRequest {
            inner: Arc::new(fields),
        })
    }
}

impl JsonType {
    pub(super) fn of(raw: &str) -> JsonType {
        match raw.as_bytes().first() {
            Some(b'n') => JsonType::Null,
            Some(b't' | b'f') => JsonType::Bool,
            Some(b'"') => JsonType::String,
            Some(b'[') => JsonType::Array,
            Some(b'{') => JsonType::Object,
            _ => JsonType::Number,
        }
    }
}

/// Starts the message of the serde error that aborts the parse at a duplicate member; the
/// member's path follows.
const DUPLICATE: &str = "duplicate member: ";

/// The members an object named so far, to refuse a second one of the same name.
///
/// The members the parse reads are one bit each; others are kept in a list made only when an
/// object has such a member.
#[derive(Default)]
struct Seen<'de> {
    read: u32,
    others: Vec<Cow<'de, str>>,
}

impl<'de> Seen<'de> {
    /// Records `key` (bit `bit` when the parse reads it); an error naming `path()` when the
    /// object already had it.
    fn record<E: de::Error>(
        &mut self,
        key: Cow<'de, str>,
        bit: Option<u32>,
        path: impl FnOnce() -> String,
    ) -> Result<(), E> {
        let again = match bit {
            Some(bit) => {
                let again = self.read & (1 << bit) != 0;
                self.read |= 1 << bit;
                again
            }
            None if self.others.contains(&key) => true,
            None => {
                self.others.push(key);
                false
            }
        };
        if again {
            Err(E::custom(format_args!("{DUPLICATE}{}", path())))
        } else {
            Ok(())
        }
    }
}

/// Refuses what the gateway cannot read as text: bytes that are not UTF-8, and `\u` escapes of
/// half a surrogate pair (serde reads them only in the strings the parse looks at). The body
/// as text, when it is.
fn check_text(body: &[u8]) -> Result<&str, ParseError> {
    let invalid = |at: usize, reason: &str| located(body, at, ParseErrorKind::InvalidText, reason);
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(error) => return Err(invalid(error.valid_up_to(), "invalid UTF-8")),
    };
    let hex = |at: usize| {
        body.get(at..at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u16::from_str_radix(digits, 16).ok())
    };
    let mut at = 0;
    // `at` steps past the end after a backslash that ends the body.
    while let Some(offset) = body.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let escape = at + offset;
        at = escape + 2;
        if body.get(escape + 1) != Some(&b'u') {
            continue;
        }
        let Some(unit) = hex(escape + 2) else {
            continue;
        };
        at = escape + 6;
        match unit {
            0xD800..=0xDBFF => {
                let low = (body.get(at..at + 2) == Some(b"\\u"))
                    .then(|| hex(at + 2))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Err(invalid(escape, "a lone leading surrogate in a \\u escape"));
                }
                at += 6;
            }
            0xDC00..=0xDFFF => {
                return Err(invalid(escape, "a lone trailing surrogate in a \\u escape"));
            }
            _ => {}
        }
    }
    Ok(text)
}

/// The deepest nesting of arrays and objects a body may have: `serde_json`'s own limit for the
/// members the parse reads, applied to the members it skips too, so that nothing deeper than
/// the gateway itself would read is forwarded.
const MAX_DEPTH: usize = 128;

/// Refuses a body nested deeper than [`MAX_DEPTH`] anywhere. Strings, most of a chat body,
/// are skipped with `memchr` to their closing quote rather than walked byte by byte; an
/// unterminated string ends the check (the parse refuses it).
fn check_depth(body: &[u8]) -> Result<(), ParseError> {
    // No more opening brackets than the limit, strings' included, cannot nest deeper: one
    // vectorized search spares nearly every body the walk below.
    let opening = memchr::memchr2_iter(b'[', b'{', body);
    if opening.take(MAX_DEPTH + 1).count() <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => match string_end(body, at + 1) {
                Some(end) => at = end,
                None => return Ok(()),
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let reason = format!("arrays and objects nested more than {MAX_DEPTH} deep");
                    return Err(located(body, at, ParseErrorKind::Syntax, &reason));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The index of the quote that closes the string whose contents start at `from`.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let offset = memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[from + offset] == b'"' {
            return Some(from + offset);
        }
        // A backslash escapes the byte after it, whatever it is.
        from += offset + 2;
    }
}

/// A parse error at byte `at` of `body`, with its line and column.
fn located(body: &[u8], at: usize, kind: ParseErrorKind, reason: &str) -> ParseError {
    let before = &body[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1)
        + 1;
    ParseError {
        line,
        column,
        kind,
        reason: reason.to_owned(),
    }
}

fn parse_error(body: &[u8], error: &serde_json::Error) -> ParseError {
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix(DUPLICATE) {
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        return ParseError {
            line: error.line(),
            column: error.column(),
            kind: ParseErrorKind::DuplicateMember,
            reason: rest.strip_suffix(&suffix).unwrap_or(rest).to_owned(),
        };
    }
    let kind = match error.classify() {
        serde_json::error::Category::Eof => ParseErrorKind::Eof,
        serde_json::error::Category::Data => {
            let first = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .map_or(b'n', |&b| b);
            ParseErrorKind::NotAnObject(JsonType::of(std::str::from_utf8(&[first]).unwrap_or("n")))
        }
        _ => ParseErrorKind::Syntax,
    };
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    ParseError {
        line: error.line(),
        column: error.column(),
        kind,
        reason,
    }
}

fn span_of(base: usize, raw: &str) -> Span {
    let start = raw.as_ptr() as usize - base;
    Span {
        start,
        end: start + raw.len(),
    }
}

pub(super) fn string_field(base: usize, raw: &RawValue) -> Field<StrSpan> {
    let text = raw.get();
    match JsonType::of(text) {
        JsonType::String => Field::Value(StrSpan {
            span: span_of(base, text),
            escaped: memchr::memchr(b'\\', text.as_bytes()).is_some(),
        }),
        JsonType::Null => Field::Absent,
        other => Field::Invalid(other),
    }
}

fn bool_field(raw: &RawValue) -> Field<bool> {
    match raw.get() {
        "true" => Field::Value(true),
        "false" => Field::Value(false),
        text => match JsonType::of(text) {
            JsonType::Null => Field::Absent,
            other => Field::Invalid(other),
        },
    }
}

fn number_field(raw: &RawValue) -> Field<Number> {
    match JsonType::of(raw.get()) {
        JsonType::Number => serde_json::from_str(raw.get())
            .map(Field::Value)
            .unwrap_or(Field::Invalid(JsonType::Number)),
        JsonType::Null => Field::Absent,
        other => Field::Invalid(other),
    }
}

/// A map key, borrowed from the body unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct TopVisitor<'de, 'f> {
    base: usize,
    body: &'de [u8],
    fields: &'f mut Fields,
}

/// The top-level members the parse reads: chat completions' first ([`CHAT_READ`] of them),
/// then the other endpoints'.
pub(super) const READ_FIELDS: [&str; 22] = [
    "fallbacks",
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "input",
    "instructions",
    "prompt",
    "max_output_tokens",
    "previous_response_id",
    "conversation",
    "dimensions",
    "encoding_format",
    "best_of",
];

/// How many of [`READ_FIELDS`] are members of OpenAI's chat request.
const CHAT_READ: u32 = 13;

// One bit each in a `u32` (`Seen::read`) and a `u64` (`Fields::chat_members`).
const _: () = assert!(READ_FIELDS.len() <= 32 && KNOWN_FIELDS.len() <= 64);

impl<'de> Visitor<'de> for TopVisitor<'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.base;
        let fields = self.fields;
        let mut seen = Seen::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            fields.members += 1;
            let bit = READ_FIELDS
                .iter()
                .position(|read| *read == key)
                .map(|i| i as u32);
            seen.record(key.clone(), bit, || key.to_string())?;
            if bit.is_some_and(|bit| bit >= CHAT_READ) {
                // Not a chat completion member: strict chat validation still names it.
                fields.unknown_fields.push((*key).into());
            }
            // Where the key's opening quote is, when the key was borrowed from the body.
            let key_start = match &key {
                Cow::Borrowed(text) => (text.as_ptr() as usize).checked_sub(base + 1),
                Cow::Owned(_) => None,
            };
            match &*key {
                "fallbacks" => {
                    let raw: &RawValue = map.next_value()?;
                    let value = span_of(base, raw.get());
                    fields.fallbacks = string_list(base, raw);
                    let key_start = key_start.or_else(|| escaped_key_start(self.body, value.start));
                    fields.fallbacks_member = key_start.map(|start| Span {
                        start,
                        end: value.end,
                    });
                }
                "model" => fields.model = string_field(base, map.next_value()?),
                // What else a model reads as its prompt: the Responses API's `input` and
                // `instructions`, legacy completions' and embeddings' `prompt`/`input` (text or
                // token ids), and tool definitions. Their JSON as written bounds their tokens
                // from above (a token id takes at least one byte).
                "input" | "prompt" => {
                    // Where the value starts, when the key was borrowed from the body.
                    let value_start = key_start.and_then(|start| {
                        let after_key = start + key.len() + 2;
                        value_start(self.body, after_key)
                    });
                    let (input, bytes) = match value_start {
                        Some(start) if self.body[start] == b'[' => {
                            let (input, last_end) = map.next_value_seed(InputSeed { base })?;
                            let end = array_end(self.body, last_end.unwrap_or(start + 1));
                            (Field::Value(input), end - start)
                        }
                        _ => input_field(base, map.next_value()?),
                    };
                    fields.prompt_bytes += bytes;
                    match &*key {
                        "input" => fields.input = input,
                        _ => fields.prompt = input,
                    }
                }
                "instructions" | "tools" => {
                    let raw: &RawValue = map.next_value()?;
                    if JsonType::of(raw.get()) != JsonType::Null {
                        fields.prompt_bytes += raw.get().len();
                        if key == "tools" {
                            fields.tools = Some(span_of(base, raw.get()));
                        }
                    }
                    if key == "instructions" {
                        fields.instructions = string_field(base, raw);
                    }
                }
                "previous_response_id" | "conversation" => {
                    let raw: &RawValue = map.next_value()?;
                    fields.continues_conversation |= JsonType::of(raw.get()) != JsonType::Null;
                }
                "dimensions" => fields.dimensions = number_field(map.next_value()?),
                "encoding_format" => fields.encoding_format = string_field(base, map.next_value()?),
                "best_of" => fields.best_of = number_field(map.next_value()?),
                "messages" => {
                    let (messages, prompt_bytes) = map.next_value_seed(MessagesSeed { base })?;
                    fields.messages = messages;
                    fields.prompt_bytes += prompt_bytes;
                }
                "stream" => fields.stream = bool_field(map.next_value()?),
                "stream_options" => {
                    let raw: &RawValue = map.next_value()?;
                    fields.stream_options = stream_options(base, raw).map_err(|member| {
                        de::Error::custom(format_args!("{DUPLICATE}stream_options.{member}"))
                    })?;
                    fields.null_stream_options = (JsonType::of(raw.get()) == JsonType::Null)
                        .then(|| span_of(base, raw.get()));
                }
                "max_tokens" => fields.max_tokens = number_field(map.next_value()?),
                "max_completion_tokens" => {
                    fields.max_completion_tokens = number_field(map.next_value()?)
                }
                "max_output_tokens" => fields.max_output_tokens = number_field(map.next_value()?),
                "temperature" => fields.temperature = number_field(map.next_value()?),
                "top_p" => fields.top_p = number_field(map.next_value()?),
                "n" => fields.n = number_field(map.next_value()?),
                "presence_penalty" => fields.presence_penalty = number_field(map.next_value()?),
                "frequency_penalty" => fields.frequency_penalty = number_field(map.next_value()?),
                other => {
                    match KNOWN_FIELDS.iter().position(|known| *known == other) {
                        Some(bit) => fields.chat_members |= 1 << bit,
                        None => fields.unknown_fields.push(other.into()),
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        fields.read_members = seen.read;
        Ok(())
    }
}

/// The first byte of a member's value, after the blanks, the colon and the blanks that follow
/// its key (which ends at `after_key`).
fn value_start(body: &[u8], after_key: usize) -> Option<usize> {
    let skip_blanks = |at: usize| {
        let blanks = body
            .get(at..)?
            .iter()
            .position(|b| !b.is_ascii_whitespace())?;
        Some(at + blanks)
    };
    let colon = skip_blanks(after_key)?;
    (body[colon] == b':').then(|| skip_blanks(colon + 1))?
}

/// Where the key of the value at `value_start` starts (its opening quote), for a key with
/// escapes, which serde hands over decoded: back over the colon and the blanks around it, past
/// the key's closing quote, to the first quote that no odd run of backslashes escapes (a key
/// holds no other).
fn escaped_key_start(body: &[u8], value_start: usize) -> Option<usize> {
    let last_before = |end: usize| body[..end].iter().rposition(|b| !b.is_ascii_whitespace());
    let colon = last_before(value_start).filter(|&at| body[at] == b':')?;
    let mut quote = last_before(colon).filter(|&at| body[at] == b'"')?;
    loop {
        quote = body[..quote].iter().rposition(|&b| b == b'"')?;
        let backslashes = body[..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
    }
}

/// One past the `]` of an array whose last item (or whose `[`) ends at `from`: only blanks lie
/// between, in the JSON the parse accepted.
fn array_end(body: &[u8], from: usize) -> usize {
    body[from..]
        .iter()
        .position(|&b| b == b']')
        .map_or(body.len(), |at| from + at + 1)
}

/// `input` or `prompt` from its raw value, and the bytes it adds to the prompt.
fn input_field(base: usize, raw: &RawValue) -> (Field<Input>, usize) {
    let text = raw.get();
    let input = match string_field(base, raw) {
        Field::Value(string) => Field::Value(Input::Text(string)),
        Field::Absent => return (Field::Absent, 0),
        // Only when the key held escapes (so the value could not be found ahead of the parse):
        // the array is read from its own slice, and its spans stay relative to the body.
        Field::Invalid(JsonType::Array) => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let seed = InputSeed { base };
            match seed.deserialize(&mut deserializer) {
                Ok((input, _)) => Field::Value(input),
                Err(_) => Field::Invalid(JsonType::Array),
            }
        }
        Field::Invalid(other) => Field::Invalid(other),
    };
    (input, text.len())
}

/// Reads an `input` or `prompt` array item by item, in the same pass as the rest of the body.
struct InputSeed {
    base: usize,
}

/// The input, and where its last item ends (`None` for an empty array).
type InputArray = (Input, Option<usize>);

impl<'de> DeserializeSeed<'de> for InputSeed {
    type Value = InputArray;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<InputArray, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputSeed {
    type Value = InputArray;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputArray, A::Error> {
        // Leading token ids are only counted; they become items if an item of another kind
        // follows them.
        let mut tokens = 0;
        let mut items = Vec::new();
        let mut last_end = None;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            last_end = Some(span_of(self.base, raw.get()).end);
            let item = input_item(self.base, raw);
            if items.is_empty() {
                if item == InputItem::Token {
                    tokens += 1;
                    continue;
                }
                items.extend(std::iter::repeat_n(InputItem::Token, tokens));
            }
            items.push(item);
        }
        let input = if items.is_empty() && tokens > 0 {
            Input::Tokens(tokens)
        } else {
            Input::Items(items)
        };
        Ok((input, last_end))
    }
}

fn input_item(base: usize, raw: &RawValue) -> InputItem {
    let text = raw.get();
    match JsonType::of(text) {
        JsonType::String => InputItem::Text(StrSpan {
            span: span_of(base, text),
            escaped: memchr::memchr(b'\\', text.as_bytes()).is_some(),
        }),
        JsonType::Number if text.bytes().all(|b| b.is_ascii_digit()) => InputItem::Token,
        JsonType::Array => {
            token_count(text).map_or(InputItem::Other(JsonType::Array), InputItem::Tokens)
        }
        JsonType::Object => InputItem::Object(span_of(base, text)),
        other => InputItem::Other(other),
    }
}

/// How many token ids an array holds, when it holds nothing else: between its brackets, an
/// array of non-negative JSON integers has only digits, commas and blanks.
fn token_count(array: &str) -> Option<usize> {
    let inner = array.strip_prefix('[')?.strip_suffix(']')?;
    let only_ids = inner
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b',' || b.is_ascii_whitespace());
    let empty = !inner.bytes().any(|b| b.is_ascii_digit());
    only_ids.then(|| match empty {
        true => 0,
        false => 1 + inner.bytes().filter(|&b| b == b',').count(),
    })
}

fn string_list(base: usize, raw: &RawValue) -> Field<Vec<Field<StrSpan>>> {
    match JsonType::of(raw.get()) {
        JsonType::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            Field::Value(
                items
                    .into_iter()
                    .map(|item| string_field(base, item))
                    .collect(),
            )
        }
        JsonType::Null => Field::Absent,
        other => Field::Invalid(other),
    }
}

/// The member a serde-derived struct found twice, from its error (``duplicate field `x` ``).
fn duplicate_field(error: &serde_json::Error) -> Option<String> {
    let text = error.to_string();
    let rest = text.strip_prefix("duplicate field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// `stream_options` as found; `Err(member)` when the object names `member` twice.
fn stream_options(base: usize, raw: &RawValue) -> Result<Field<StreamOptions>, String> {
    #[derive(serde::Deserialize)]
    struct Wire<'a> {
        // A `null` too: its span is where an edit writes `true` (not a second member).
        #[serde(borrow, default, deserialize_with = "present")]
        include_usage: Option<&'a RawValue>,
    }
    fn present<'a, D: de::Deserializer<'a>>(value: D) -> Result<Option<&'a RawValue>, D::Error> {
        de::Deserialize::deserialize(value).map(Some)
    }
    let text = raw.get();
    match JsonType::of(text) {
        JsonType::Object => {
            // `text` is a slice of the body, so spans borrowed from it stay relative to `base`.
            let wire: Wire<'_> = match serde_json::from_str(text) {
                Ok(wire) => wire,
                Err(error) => {
                    return match duplicate_field(&error) {
                        Some(member) => Err(member),
                        None => Ok(Field::Invalid(JsonType::Object)),
                    };
                }
            };
            Ok(Field::Value(StreamOptions {
                span: span_of(base, text),
                include_usage: wire.include_usage.map_or(Field::Absent, bool_field),
                include_usage_span: wire.include_usage.map(|raw| span_of(base, raw.get())),
            }))
        }
        JsonType::Null => Ok(Field::Absent),
        other => Ok(Field::Invalid(other)),
    }
}

/// Visits `messages` in the same pass as the rest of the body.
struct MessagesSeed {
    base: usize,
}

type MessagesField = (Field<Vec<Result<Message, JsonType>>>, usize);

impl<'de> DeserializeSeed<'de> for MessagesSeed {
    type Value = MessagesField;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<MessagesField, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Answers every non-matching JSON type with `Invalid(type)` (or `Absent` for null).
macro_rules! other_types_are_invalid {
    ($absent:expr, $invalid:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($invalid(JsonType::Bool))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($invalid(JsonType::Number))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($invalid(JsonType::Number))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($invalid(JsonType::Number))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($invalid(JsonType::String))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
}

impl<'de> Visitor<'de> for MessagesSeed {
    type Value = MessagesField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    other_types_are_invalid!((Field::Absent, 0), |t| (Field::Invalid(t), 0));

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessagesField, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok((Field::Invalid(JsonType::Object), 0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessagesField, A::Error> {
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        let mut prompt_bytes = 0;
        let mut index = 0;
        while let Some(message) = seq.next_element_seed(MessageSeed {
            base: self.base,
            index,
        })? {
            index += 1;
            if let Ok(message) = &message {
                prompt_bytes += message.text_bytes();
            }
            messages.push(message);
        }
        Ok((Field::Value(messages), prompt_bytes))
    }
}

impl Message {
    fn text_bytes(&self) -> usize {
        let content = match &self.content {
            Content::Text(text) => text.raw_len(),
            Content::Parts(parts) => parts
                .iter()
                .map(|part| match part {
                    Part::Text(text) => text.raw_len(),
                    Part::Other | Part::Invalid(_) => 0,
                })
                .sum(),
            Content::Absent | Content::Invalid(_) => 0,
        };
        content + self.name.map_or(0, StrSpan::raw_len)
    }
}

struct MessageSeed {
    base: usize,
    /// Its place in `messages`, to name a duplicate member.
    index: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Result<Message, JsonType>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Result<Message, JsonType>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    other_types_are_invalid!(Err(JsonType::Null), Err);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(JsonType::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let base = self.base;
        let mut message = Message {
            role: Field::Absent,
            content: Content::Absent,
            name: None,
            has_tool_calls: false,
        };
        let mut seen = Seen::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let bit = ["role", "content", "name", "tool_calls", "function_call"]
                .iter()
                .position(|read| *read == key)
                .map(|i| i as u32);
            seen.record(key.clone(), bit, || {
                format!("messages[{}].{key}", self.index)
            })?;
            match &*key {
                "role" => message.role = string_field(base, map.next_value()?),
                "content" => {
                    message.content = content(base, map.next_value()?).map_err(|part| {
                        de::Error::custom(format_args!(
                            "{DUPLICATE}messages[{}].content{part}",
                            self.index
                        ))
                    })?;
                }
                "name" => message.name = string_field(base, map.next_value()?).value().copied(),
                "tool_calls" | "function_call" => {
                    let raw: &RawValue = map.next_value()?;
                    message.has_tool_calls |= JsonType::of(raw.get()) != JsonType::Null;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Ok(message))
    }
}

/// A message's `content`; `Err(path)` (such as `[1].text`) when a part names a member twice.
/// One content part: its text when it is a text part; a member named twice is the error.
fn content_part(base: usize, part: &RawValue) -> Result<Part, String> {
    #[derive(serde::Deserialize)]
    struct WirePart<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a RawValue>,
        #[serde(borrow)]
        text: Option<&'a RawValue>,
    }
    let found = JsonType::of(part.get());
    if found != JsonType::Object {
        return Ok(Part::Invalid(InvalidPart::NotAnObject(found)));
    }
    let wire = match serde_json::from_str::<WirePart<'_>>(part.get()) {
        Ok(wire) => wire,
        Err(error) => return duplicate_field(&error).map_or(Ok(Part::Other), Err),
    };
    let kind = match wire.kind.map(|kind| (kind, string_field(base, kind))) {
        Some((_, Field::Value(kind))) => kind,
        Some((raw, _)) => {
            return Ok(Part::Invalid(InvalidPart::Type(Some(JsonType::of(
                raw.get(),
            )))));
        }
        None => return Ok(Part::Invalid(InvalidPart::Type(None))),
    };
    let kind_text: Cow<'_, str> = match wire.kind {
        Some(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
        None => Cow::Borrowed(""),
    };
    if kind_text != "text" {
        return Ok(if PART_TYPES.contains(&&*kind_text) {
            Part::Other
        } else {
            Part::Invalid(InvalidPart::UnknownType(kind))
        });
    }
    Ok(
        match wire.text.map(|text| (text, string_field(base, text))) {
            Some((_, Field::Value(text))) => Part::Text(text),
            Some((raw, _)) => Part::Invalid(InvalidPart::Text(Some(JsonType::of(raw.get())))),
            None => Part::Invalid(InvalidPart::Text(None)),
        },
    )
}

fn content(base: usize, raw: &RawValue) -> Result<Content, String> {
    let text = raw.get();
    Ok(match JsonType::of(text) {
        JsonType::String => match string_field(base, raw) {
            Field::Value(string) => Content::Text(string),
            _ => Content::Invalid(JsonType::String),
        },
        JsonType::Array => {
            // Parts are small next to the whole body; reading them from their own slice keeps
            // the one-pass parse simple, and the spans stay relative to the body.
            let parts: Vec<&RawValue> = serde_json::from_str(text).unwrap_or_default();
            let mut read = Vec::with_capacity(parts.len());
            for (index, part) in parts.into_iter().enumerate() {
                read.push(
                    content_part(base, part).map_err(|member| format!("[{index}].{member}"))?,
                );
            }
            Content::Parts(read)
        }
        JsonType::Null => Content::Absent,
        other => Content::Invalid(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_fields_of_chat_come_first() {
        let (chat, others) = READ_FIELDS.split_at(CHAT_READ as usize);
        assert!(chat.iter().all(|field| KNOWN_FIELDS.contains(field)));
        assert!(others.iter().all(|field| !KNOWN_FIELDS.contains(field)));
    }
}
