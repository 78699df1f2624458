//! The light view of an OpenAI chat/completions body, parsed once per request.
//!
//! One pass of `serde_json` over the body records the fields the layers need and the byte
//! spans of the ones they may rewrite (the model, `stream_options`), without building a
//! `serde_json::Value` or copying message text. Fields with the wrong JSON type are recorded
//! as [`Field::Invalid`] rather than failing the parse, so a validating layer can name the
//! offending `param`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

use crate::{ErrorKind, GatewayError};

/// A byte range of the request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span's length in bytes.
    pub fn len(self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// Moves a span that lies after an edit of `edited` (which became `new_len` bytes long).
    fn shift(&mut self, edited: Span, new_len: usize) {
        if self.start >= edited.end {
            self.start = self.start - edited.len() + new_len;
            self.end = self.end - edited.len() + new_len;
        } else if *self == edited {
            self.end = self.start + new_len;
        } else if self.start <= edited.start && self.end >= edited.end && self.end > edited.start {
            // The edit lies inside this span (an insertion at its very end is outside it).
            self.end = self.end - edited.len() + new_len;
        }
    }
}

/// A JSON string in the body: its span, quotes included, and whether it holds escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StrSpan {
    /// The string token, quotes included.
    pub span: Span,
    /// Whether the token holds a `\` escape (its text must then be decoded).
    pub escaped: bool,
}

impl StrSpan {
    /// Bytes of the raw text between the quotes: an upper bound of the decoded UTF-8 length,
    /// since every JSON escape is at least as long as what it stands for.
    pub fn raw_len(self) -> usize {
        self.span.len().saturating_sub(2)
    }
}

/// The type of a JSON value, for messages like "`messages` must be an array, not a string".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonType {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl JsonType {
    fn of(raw: &str) -> JsonType {
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

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        })
    }
}

/// A field of the request as found: absent (or `null`), of the wrong type, or a value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Field<T> {
    /// Missing, or `null`.
    #[default]
    Absent,
    /// Present with the wrong JSON type.
    Invalid(JsonType),
    /// Present with the expected type.
    Value(T),
}

impl<T> Field<T> {
    /// The value, when present with the expected type.
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(value) => Some(value),
            _ => None,
        }
    }
}

/// One entry of `messages`.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `role`: a string, validated by the guard.
    pub role: Field<StrSpan>,
    /// `content`.
    pub content: Content,
    /// `name`, when a string.
    pub name: Option<StrSpan>,
    /// Whether `tool_calls` (or the legacy `function_call`) is present and not null: an
    /// assistant message may then have no content.
    pub has_tool_calls: bool,
}

/// The `content` of a message.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Content {
    /// Missing, or `null`.
    #[default]
    Absent,
    /// A string.
    Text(StrSpan),
    /// An array of content parts.
    Parts(Vec<Part>),
    /// Neither a string nor an array.
    Invalid(JsonType),
}

/// One content part.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// `{"type":"text","text":"..."}`
    Text(StrSpan),
    /// Any other part (an image, audio, a file), counted but not tokenized.
    Other,
}

/// `stream_options` when it is an object.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamOptions {
    /// The whole object.
    pub span: Span,
    /// `include_usage`.
    pub include_usage: Field<bool>,
    /// The span of the `include_usage` value, when present.
    pub include_usage_span: Option<Span>,
}

/// Why a body is not a JSON object: where, and what the parser expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the fault.
    pub line: usize,
    /// 1-based column of the fault (0 at the very start of an empty body).
    pub column: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// What the parser expected or found, without the position, e.g. ``expected `,` or `}` ``.
    pub reason: String,
}

/// The class of a [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not valid JSON.
    Syntax,
    /// The body ended in the middle of a value (or was empty).
    Eof,
    /// Valid JSON, but not an object.
    NotAnObject(JsonType),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.reason, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

impl From<&ParseError> for GatewayError {
    fn from(error: &ParseError) -> Self {
        let message = match error.kind {
            ParseErrorKind::NotAnObject(found) => format!(
                "The request body must be a JSON object, but it is {found}. Send an object like {{\"model\": ..., \"messages\": [...]}}."
            ),
            ParseErrorKind::Syntax | ParseErrorKind::Eof => format!(
                "We could not parse the JSON body of your request: {error}. Check the JSON syntax (unclosed braces or strings, trailing commas, unquoted keys)."
            ),
        };
        GatewayError::new(ErrorKind::InvalidRequest, message)
            .detail("line", error.line)
            .detail("column", error.column)
    }
}

/// The chat request view: the body bytes and the fields parsed from them.
///
/// Cheap to clone (one `Arc`). Memoized in the request extensions by
/// [`crate::buffer_chat_request`], so every body-aware layer shares one parse.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::ChatRequest;
///
/// let body = Bytes::from_static(br#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}],"max_tokens":16,"stream":true}"#);
/// let chat = ChatRequest::parse(body).unwrap();
/// assert_eq!(chat.model(), Some("gpt-5.4"));
/// assert_eq!(chat.message_count(), 1);
/// assert_eq!(chat.max_completion_tokens(), Some(16));
/// assert!(chat.stream());
/// assert!(!chat.include_usage());
/// ```
#[derive(Clone)]
pub struct ChatRequest {
    inner: Arc<Fields>,
}

#[derive(Clone, Debug, Default)]
struct Fields {
    body: Bytes,
    model: Field<StrSpan>,
    decoded_model: Option<Box<str>>,
    messages: Field<Vec<Result<Message, JsonType>>>,
    stream: Field<bool>,
    stream_options: Field<StreamOptions>,
    /// Where a `null` `stream_options` stands, so an edit can replace it rather than add a twin.
    null_stream_options: Option<Span>,
    /// `fallbacks`: the models to try, in order, when `model` fails.
    fallbacks: Field<Vec<Field<StrSpan>>>,
    /// The whole `"fallbacks": [...]` member, to remove it before the body goes upstream.
    fallbacks_member: Option<Span>,
    max_tokens: Field<Number>,
    max_completion_tokens: Field<Number>,
    temperature: Field<Number>,
    top_p: Field<Number>,
    n: Field<Number>,
    presence_penalty: Field<Number>,
    frequency_penalty: Field<Number>,
    unknown_fields: Vec<Box<str>>,
    prompt_bytes: usize,
    members: usize,
    object_end: usize,
}

/// Top-level fields of OpenAI's chat/completions request, for strict mode's unknown-field check.
pub const KNOWN_FIELDS: &[&str] = &[
    "audio",
    "fallbacks",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "metadata",
    "modalities",
    "model",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

impl ChatRequest {
    /// Parses a body in one pass. Fails only when the body is not a JSON object; fields of the
    /// wrong type are recorded as [`Field::Invalid`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::chat::{ChatRequest, ParseErrorKind};
    ///
    /// let error = ChatRequest::parse(Bytes::from_static(b"{\"model\": \"a\",}")).unwrap_err();
    /// assert_eq!(error.kind, ParseErrorKind::Syntax);
    /// assert_eq!((error.line, error.column), (1, 15));
    /// ```
    pub fn parse(body: Bytes) -> Result<ChatRequest, ParseError> {
        let base = body.as_ptr() as usize;
        let mut deserializer = serde_json::Deserializer::from_slice(&body);
        let parsed = de::Deserializer::deserialize_any(&mut deserializer, TopVisitor { base })
            .and_then(|fields| deserializer.end().map(|()| fields));
        let mut fields = match parsed {
            Ok(fields) => fields,
            Err(error) => return Err(parse_error(&body, &error)),
        };
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

    /// The body bytes this view was parsed from.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// `model`, when it is a string.
    pub fn model(&self) -> Option<&str> {
        let model = self.inner.model.value()?;
        Some(match &self.inner.decoded_model {
            Some(decoded) => decoded,
            None => raw_text(&self.inner.body, *model),
        })
    }

    /// `model` as found, with its span.
    pub fn model_field(&self) -> &Field<StrSpan> {
        &self.inner.model
    }

    /// `messages` as found.
    pub fn messages(&self) -> &Field<Vec<Result<Message, JsonType>>> {
        &self.inner.messages
    }

    /// How many entries `messages` has (0 when it is not an array).
    pub fn message_count(&self) -> usize {
        self.inner.messages.value().map_or(0, Vec::len)
    }

    /// Bytes of message text (string contents, text parts and names) as written in the JSON:
    /// an upper bound of the decoded text, and so of its tokens under a byte-level BPE.
    pub fn prompt_bytes(&self) -> usize {
        self.inner.prompt_bytes
    }

    /// The decoded text of a string in the body (borrowed unless it holds escapes).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::chat::{ChatRequest, Content};
    /// use tollgate_core::Field;
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"messages":[{"role":"user","content":"a\nb"}]}"#)).unwrap();
    /// let Field::Value(messages) = chat.messages() else { unreachable!() };
    /// let Ok(message) = &messages[0] else { unreachable!() };
    /// let Content::Text(text) = message.content else { unreachable!() };
    /// assert_eq!(chat.text(text), "a\nb");
    /// ```
    pub fn text(&self, string: StrSpan) -> Cow<'_, str> {
        if string.escaped {
            Cow::Owned(decode(&self.inner.body, string))
        } else {
            Cow::Borrowed(raw_text(&self.inner.body, string))
        }
    }

    /// `stream`, when a boolean; `false` otherwise.
    pub fn stream(&self) -> bool {
        self.inner.stream.value().copied().unwrap_or(false)
    }

    /// `stream` as found.
    pub fn stream_field(&self) -> &Field<bool> {
        &self.inner.stream
    }

    /// `stream_options` as found.
    pub fn stream_options(&self) -> &Field<StreamOptions> {
        &self.inner.stream_options
    }

    /// Whether `stream_options.include_usage` is `true`.
    pub fn include_usage(&self) -> bool {
        match &self.inner.stream_options {
            Field::Value(options) => options.include_usage.value().copied().unwrap_or(false),
            _ => false,
        }
    }

    /// `fallbacks` as found: the models the client asks to try, in order, when `model` fails
    /// (each a string, else `Invalid`).
    pub fn fallbacks(&self) -> &Field<Vec<Field<StrSpan>>> {
        &self.inner.fallbacks
    }

    /// A copy of this request without its `fallbacks` member (a gateway extension the upstream
    /// does not know), the rest of the body unchanged. The same request when it has none.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"model":"a", "fallbacks": ["b"], "n":1}"#)).unwrap();
    /// assert_eq!(chat.without_fallbacks().body(), r#"{"model":"a", "n":1}"#);
    /// let last = ChatRequest::parse(Bytes::from_static(br#"{"model":"a" , "fallbacks":["b"]}"#)).unwrap();
    /// assert_eq!(last.without_fallbacks().body(), r#"{"model":"a" }"#);
    /// ```
    pub fn without_fallbacks(&self) -> ChatRequest {
        let Some(member) = self.inner.fallbacks_member else {
            return self.clone();
        };
        let body = &self.inner.body;
        let after = body[member.end..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|at| member.end + at);
        let cut = match after {
            // A comma follows: take it and the blanks up to the next member.
            Some(comma) if body[comma] == b',' => {
                let next = body[comma + 1..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .map_or(body.len(), |at| comma + 1 + at);
                Span {
                    start: member.start,
                    end: next,
                }
            }
            // The last member: take the comma before it, and the blanks around.
            _ => {
                let before = body[..member.start]
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                let start = if body[before] == b',' {
                    before
                } else {
                    member.start
                };
                Span {
                    start,
                    end: after.unwrap_or(member.end),
                }
            }
        };
        let mut fields = self.splice(cut, b"");
        fields.fallbacks = Field::Absent;
        fields.fallbacks_member = None;
        fields.members -= 1;
        ChatRequest {
            inner: Arc::new(fields),
        }
    }

    /// `max_tokens` as found.
    pub fn max_tokens_field(&self) -> &Field<Number> {
        &self.inner.max_tokens
    }

    /// `max_completion_tokens` as found.
    pub fn max_completion_tokens_field(&self) -> &Field<Number> {
        &self.inner.max_completion_tokens
    }

    /// The requested completion budget: `max_completion_tokens`, else `max_tokens`, when a
    /// positive integer.
    pub fn max_completion_tokens(&self) -> Option<u64> {
        let positive = |field: &Field<Number>| field.value()?.as_u64().filter(|&n| n > 0);
        positive(&self.inner.max_completion_tokens).or_else(|| positive(&self.inner.max_tokens))
    }

    /// The completion tokens a request may use: its own budget, else the model's max output.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::{ChatRequest, ModelInfo};
    ///
    /// let model = ModelInfo::new("m", 8_192, 1_024);
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"max_tokens": 100}"#)).unwrap();
    /// assert_eq!(chat.completion_budget(Some(&model)), Some(100));
    /// let chat = ChatRequest::parse(Bytes::from_static(b"{}")).unwrap();
    /// assert_eq!(chat.completion_budget(Some(&model)), Some(1_024));
    /// assert_eq!(chat.completion_budget(None), None);
    /// ```
    pub fn completion_budget(&self, model: Option<&crate::ModelInfo>) -> Option<u64> {
        self.max_completion_tokens()
            .or_else(|| model.map(|model| model.max_output_tokens))
    }

    /// `temperature` as found.
    pub fn temperature(&self) -> &Field<Number> {
        &self.inner.temperature
    }

    /// `top_p` as found.
    pub fn top_p(&self) -> &Field<Number> {
        &self.inner.top_p
    }

    /// `n` as found.
    pub fn n(&self) -> &Field<Number> {
        &self.inner.n
    }

    /// `presence_penalty` as found.
    pub fn presence_penalty(&self) -> &Field<Number> {
        &self.inner.presence_penalty
    }

    /// `frequency_penalty` as found.
    pub fn frequency_penalty(&self) -> &Field<Number> {
        &self.inner.frequency_penalty
    }

    /// Top-level fields that are not part of OpenAI's chat/completions request.
    pub fn unknown_fields(&self) -> &[Box<str>] {
        &self.inner.unknown_fields
    }

    /// A copy of this request whose `model` is `model`, spliced into the body: every other byte
    /// stays as the client sent it. Returns `None` when the body has no string `model`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{ "model" : "fast", "messages": [] }"#)).unwrap();
    /// let rewritten = chat.with_model("vendor/fast-2").unwrap();
    /// assert_eq!(rewritten.body(), r#"{ "model" : "vendor/fast-2", "messages": [] }"#);
    /// assert_eq!(rewritten.model(), Some("vendor/fast-2"));
    /// ```
    pub fn with_model(&self, model: &str) -> Option<ChatRequest> {
        let Field::Value(current) = self.inner.model else {
            return None;
        };
        let literal = serde_json::to_string(model).unwrap_or_default();
        let mut fields = self.splice(current.span, literal.as_bytes());
        let escaped = literal.contains('\\');
        fields.model = Field::Value(StrSpan {
            span: Span {
                start: current.span.start,
                end: current.span.start + literal.len(),
            },
            escaped,
        });
        fields.decoded_model = escaped.then(|| model.into());
        Some(ChatRequest {
            inner: Arc::new(fields),
        })
    }

    /// A copy of this request that asks for `stream_options.include_usage: true`, spliced into
    /// the body (the value replaced, the member added to `stream_options`, or `stream_options`
    /// added), so that a stream always ends with a usage chunk.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"model":"m","stream":true}"#)).unwrap();
    /// let with_usage = chat.with_include_usage();
    /// assert_eq!(with_usage.body(), r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
    /// assert!(with_usage.include_usage());
    /// ```
    pub fn with_include_usage(&self) -> ChatRequest {
        const MEMBER_KEY: &[u8] = b"\"include_usage\":";
        const OPTIONS_KEY: &[u8] = b"\"stream_options\":";
        let body = &self.inner.body;
        let fields = match &self.inner.stream_options {
            _ if self.include_usage() => return self.clone(),
            // An invalid `stream_options` is the client's to fix; adding a second one would
            // leave the upstream to pick between duplicate keys.
            Field::Invalid(_) => return self.clone(),
            Field::Value(options) => match options.include_usage_span {
                Some(value) => {
                    let mut fields = self.splice(value, b"true");
                    if let Field::Value(options) = &mut fields.stream_options {
                        options.include_usage = Field::Value(true);
                    }
                    fields
                }
                None => {
                    let open = options.span.start + 1;
                    let empty = body[open..options.span.end - 1]
                        .iter()
                        .all(u8::is_ascii_whitespace);
                    let mut member = [MEMBER_KEY, b"true"].concat();
                    if !empty {
                        member.push(b',');
                    }
                    let mut fields = self.splice(
                        Span {
                            start: open,
                            end: open,
                        },
                        &member,
                    );
                    if let Field::Value(options) = &mut fields.stream_options {
                        let start = open + MEMBER_KEY.len();
                        options.include_usage = Field::Value(true);
                        options.include_usage_span = Some(Span {
                            start,
                            end: start + 4,
                        });
                    }
                    fields
                }
            },
            Field::Absent => {
                let value = [b"{", MEMBER_KEY, b"true}"].concat();
                let (edit, prefix) = match self.inner.null_stream_options {
                    Some(null) => (null, Vec::new()),
                    None => {
                        let at = self.inner.object_end;
                        let separator: &[u8] = if self.inner.members == 0 { b"" } else { b"," };
                        (
                            Span { start: at, end: at },
                            [separator, OPTIONS_KEY].concat(),
                        )
                    }
                };
                let mut fields = self.splice(edit, &[&prefix[..], &value].concat());
                let start = edit.start + prefix.len();
                let usage_start = start + 1 + MEMBER_KEY.len();
                fields.null_stream_options = None;
                fields.stream_options = Field::Value(StreamOptions {
                    span: Span {
                        start,
                        end: start + value.len(),
                    },
                    include_usage: Field::Value(true),
                    include_usage_span: Some(Span {
                        start: usage_start,
                        end: usage_start + 4,
                    }),
                });
                fields
            }
        };
        ChatRequest {
            inner: Arc::new(fields),
        }
    }

    fn splice(&self, edited: Span, replacement: &[u8]) -> Fields {
        let mut fields = (*self.inner).clone();
        fields.body = splice_bytes(&self.inner.body, edited, replacement);
        let new_len = replacement.len();
        let mut shift = |span: &mut Span| span.shift(edited, new_len);
        if let Field::Value(model) = &mut fields.model {
            shift(&mut model.span);
        }
        if let Some(null) = &mut fields.null_stream_options {
            shift(null);
        }
        if let Some(member) = &mut fields.fallbacks_member {
            shift(member);
        }
        if let Field::Value(fallbacks) = &mut fields.fallbacks {
            for fallback in fallbacks {
                if let Field::Value(name) = fallback {
                    shift(&mut name.span);
                }
            }
        }
        if let Field::Value(options) = &mut fields.stream_options {
            shift(&mut options.span);
            if let Some(value) = &mut options.include_usage_span {
                shift(value);
            }
        }
        if let Field::Value(messages) = &mut fields.messages {
            for message in messages.iter_mut().flatten() {
                message.for_each_span(&mut shift);
            }
        }
        shift_offset(&mut fields.object_end, edited, new_len);
        fields
    }
}

fn shift_offset(offset: &mut usize, edited: Span, new_len: usize) {
    if *offset >= edited.end {
        *offset = *offset - edited.len() + new_len;
    }
}

impl Message {
    fn for_each_span(&mut self, f: &mut impl FnMut(&mut Span)) {
        if let Field::Value(role) = &mut self.role {
            f(&mut role.span);
        }
        if let Some(name) = &mut self.name {
            f(&mut name.span);
        }
        match &mut self.content {
            Content::Text(text) => f(&mut text.span),
            Content::Parts(parts) => {
                for part in parts {
                    if let Part::Text(text) = part {
                        f(&mut text.span);
                    }
                }
            }
            Content::Absent | Content::Invalid(_) => {}
        }
    }
}

impl fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Message text is the caller's data: it does not belong in Debug output or logs.
        f.debug_struct("ChatRequest")
            .field("model", &self.model())
            .field("messages", &self.message_count())
            .field("prompt_bytes", &self.prompt_bytes())
            .field("stream", &self.stream())
            .field("max_completion_tokens", &self.max_completion_tokens())
            .finish_non_exhaustive()
    }
}

fn splice_bytes(body: &Bytes, edited: Span, replacement: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() - edited.len() + replacement.len());
    out.extend_from_slice(&body[..edited.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&body[edited.end..]);
    out.freeze()
}

fn raw_text(body: &[u8], string: StrSpan) -> &str {
    let inner = &body[string.span.start + 1..string.span.end - 1];
    // The span was cut from a `&str` that serde_json validated, at ASCII quote boundaries.
    std::str::from_utf8(inner).unwrap_or_default()
}

fn decode(body: &[u8], string: StrSpan) -> String {
    serde_json::from_slice(&body[string.span.start..string.span.end]).unwrap_or_default()
}

fn parse_error(body: &[u8], error: &serde_json::Error) -> ParseError {
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

fn string_field(base: usize, raw: &RawValue) -> Field<StrSpan> {
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

struct TopVisitor {
    base: usize,
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let base = self.base;
        let mut fields = Fields::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            fields.members += 1;
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
                    fields.fallbacks_member = key_start.map(|start| Span {
                        start,
                        end: value.end,
                    });
                }
                "model" => fields.model = string_field(base, map.next_value()?),
                "messages" => {
                    let (messages, prompt_bytes) = map.next_value_seed(MessagesSeed { base })?;
                    fields.messages = messages;
                    fields.prompt_bytes = prompt_bytes;
                }
                "stream" => fields.stream = bool_field(map.next_value()?),
                "stream_options" => {
                    let raw: &RawValue = map.next_value()?;
                    fields.stream_options = stream_options(base, raw);
                    fields.null_stream_options = (JsonType::of(raw.get()) == JsonType::Null)
                        .then(|| span_of(base, raw.get()));
                }
                "max_tokens" => fields.max_tokens = number_field(map.next_value()?),
                "max_completion_tokens" => {
                    fields.max_completion_tokens = number_field(map.next_value()?)
                }
                "temperature" => fields.temperature = number_field(map.next_value()?),
                "top_p" => fields.top_p = number_field(map.next_value()?),
                "n" => fields.n = number_field(map.next_value()?),
                "presence_penalty" => fields.presence_penalty = number_field(map.next_value()?),
                "frequency_penalty" => fields.frequency_penalty = number_field(map.next_value()?),
                other => {
                    if !KNOWN_FIELDS.contains(&other) {
                        fields.unknown_fields.push(other.into());
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
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

fn stream_options(base: usize, raw: &RawValue) -> Field<StreamOptions> {
    #[derive(serde::Deserialize)]
    struct Wire<'a> {
        #[serde(borrow)]
        include_usage: Option<&'a RawValue>,
    }
    let text = raw.get();
    match JsonType::of(text) {
        JsonType::Object => {
            // `text` is a slice of the body, so spans borrowed from it stay relative to `base`.
            let wire: Wire<'_> = match serde_json::from_str(text) {
                Ok(wire) => wire,
                Err(_) => return Field::Invalid(JsonType::Object),
            };
            Field::Value(StreamOptions {
                span: span_of(base, text),
                include_usage: wire.include_usage.map_or(Field::Absent, bool_field),
                include_usage_span: wire.include_usage.map(|raw| span_of(base, raw.get())),
            })
        }
        JsonType::Null => Field::Absent,
        other => Field::Invalid(other),
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
        while let Some(message) = seq.next_element_seed(MessageSeed { base: self.base })? {
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
                    Part::Other => 0,
                })
                .sum(),
            Content::Absent | Content::Invalid(_) => 0,
        };
        content + self.name.map_or(0, StrSpan::raw_len)
    }
}

struct MessageSeed {
    base: usize,
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
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                "role" => message.role = string_field(base, map.next_value()?),
                "content" => message.content = content(base, map.next_value()?),
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

fn content(base: usize, raw: &RawValue) -> Content {
    #[derive(serde::Deserialize)]
    struct WirePart<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        text: Option<&'a RawValue>,
    }
    let text = raw.get();
    match JsonType::of(text) {
        JsonType::String => match string_field(base, raw) {
            Field::Value(string) => Content::Text(string),
            _ => Content::Invalid(JsonType::String),
        },
        JsonType::Array => {
            // Parts are small next to the whole body; reading them from their own slice keeps
            // the one-pass parse simple, and the spans stay relative to the body.
            let parts: Vec<&RawValue> = serde_json::from_str(text).unwrap_or_default();
            Content::Parts(
                parts
                    .into_iter()
                    .map(
                        |part| match serde_json::from_str::<WirePart<'_>>(part.get()) {
                            Ok(WirePart {
                                kind: Some(kind),
                                text: Some(text),
                            }) if kind == "text" => match string_field(base, text) {
                                Field::Value(text) => Part::Text(text),
                                _ => Part::Other,
                            },
                            _ => Part::Other,
                        },
                    )
                    .collect(),
            )
        }
        JsonType::Null => Content::Absent,
        other => Content::Invalid(other),
    }
}
