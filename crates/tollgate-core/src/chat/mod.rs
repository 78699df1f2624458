//! The light view of an OpenAI request body, parsed once per request: chat completions', and
//! the prompts of the Responses API, legacy completions and embeddings ([`Input`]).
//!
//! One pass of `serde_json` over the body records the fields the layers need and the byte
//! spans of the ones they may rewrite (the model, `stream_options`, `fallbacks`) or count (the
//! prompt's strings), without building a `serde_json::Value` or copying message text. Fields
//! with the wrong JSON type are recorded as [`Field::Invalid`] rather than failing the parse,
//! so a validating layer can name the offending `param`.

mod edit;
mod items;
mod parse;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Number;

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
    /// Another part OpenAI knows (an image, audio, a file, a refusal), counted but not
    /// tokenized.
    Other,
    /// A part OpenAI refuses, and why.
    Invalid(InvalidPart),
}

/// Why a content part is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidPart {
    /// The part is not an object.
    NotAnObject(JsonType),
    /// Its `type` is missing or not a string.
    Type(Option<JsonType>),
    /// Its `type` is a string no part has (the span of the string).
    UnknownType(StrSpan),
    /// A `text` part whose `text` is missing or not a string.
    Text(Option<JsonType>),
}

/// The `type`s of the content parts of a chat message.
pub const PART_TYPES: [&str; 6] = [
    "text",
    "image_url",
    "input_audio",
    "audio",
    "file",
    "refusal",
];

/// `input` or `prompt` as found: what a model reads on the Responses API (`input`), embeddings
/// (`input`) and legacy completions (`prompt`).
///
/// The parse does not know the endpoint, so it records the value's shape and leaves the rules
/// to the validating layer: a string, an array of token ids (non-negative integers, counted),
/// or any other array, item by item.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::chat::{Input, InputItem};
/// use tollgate_core::{ChatRequest, Field};
///
/// let chat = ChatRequest::parse(Bytes::from_static(br#"{"input":[[1,2,3],[4]]}"#))?;
/// let Field::Value(Input::Items(items)) = chat.input_field() else { unreachable!() };
/// assert_eq!(items, &[InputItem::Tokens(3), InputItem::Tokens(1)]);
///
/// let chat = ChatRequest::parse(Bytes::from_static(br#"{"prompt":[1,2,3]}"#))?;
/// assert_eq!(chat.prompt_field(), &Field::Value(Input::Tokens(3)));
/// # Ok::<(), tollgate_core::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A string.
    Text(StrSpan),
    /// A non-empty array of token ids: how many.
    Tokens(usize),
    /// Any other array (an empty one too), item by item.
    Items(Vec<InputItem>),
}

/// One item of an [`Input`] array.
#[derive(Clone, Debug, PartialEq)]
pub enum InputItem {
    /// A string.
    Text(StrSpan),
    /// A token id, a non-negative integer (in an array whose other items are not all token ids).
    Token,
    /// An array of token ids: how many (0 for an empty array).
    Tokens(usize),
    /// An object, such as an input item of the Responses API: its span.
    Object(Span),
    /// Anything else: `null`, a boolean, a number that is not a token id, or an array holding
    /// something other than token ids.
    Other(JsonType),
}

impl InputItem {
    /// The item's JSON type.
    ///
    /// ```
    /// use tollgate_core::chat::{InputItem, JsonType};
    ///
    /// assert_eq!(InputItem::Tokens(2).json_type(), JsonType::Array);
    /// assert_eq!(InputItem::Token.json_type(), JsonType::Number);
    /// ```
    pub fn json_type(&self) -> JsonType {
        match self {
            InputItem::Text(_) => JsonType::String,
            InputItem::Token => JsonType::Number,
            InputItem::Tokens(_) => JsonType::Array,
            InputItem::Object(_) => JsonType::Object,
            InputItem::Other(found) => *found,
        }
    }
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
    /// An object names the same member twice; `reason` is the member's path, such as `model`
    /// or `messages[0].role`. Providers disagree on which one counts, so the gateway checks
    /// neither.
    DuplicateMember,
    /// Bytes that are not UTF-8, or a `\u` escape of half a surrogate pair: text the gateway
    /// cannot read and must not forward.
    InvalidText,
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
            ParseErrorKind::DuplicateMember => {
                let message = format!(
                    "The request body names `{}` twice. Send each member once.",
                    error.reason
                );
                return GatewayError::new(ErrorKind::InvalidRequest, message)
                    .param(error.reason.clone())
                    .code("duplicate_member");
            }
            ParseErrorKind::InvalidText => format!(
                "The request body is not valid text: {error}. Send UTF-8 JSON, with surrogate pairs complete in \\u escapes."
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
/// Getters follow one rule: `x()` is the value the gateway acts on (a plain value or an
/// `Option`), `x_field()` the field as found ([`Field`]: absent, of the wrong type, or a value),
/// for a layer that must tell those apart.
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
    max_output_tokens: Field<Number>,
    /// `input` (the Responses API's and embeddings') and `prompt` (legacy completions').
    input: Field<Input>,
    prompt: Field<Input>,
    instructions: Field<StrSpan>,
    /// The span of `tools`, when present and not null.
    tools: Option<Span>,
    /// Whether `previous_response_id` or `conversation` is present and not null.
    continues_conversation: bool,
    dimensions: Field<Number>,
    encoding_format: Field<StrSpan>,
    best_of: Field<Number>,
    temperature: Field<Number>,
    top_p: Field<Number>,
    n: Field<Number>,
    presence_penalty: Field<Number>,
    frequency_penalty: Field<Number>,
    unknown_fields: Vec<Box<str>>,
    /// The top-level members the parse reads that the body names, one bit each
    /// (`parse::READ_FIELDS`).
    read_members: u32,
    /// The other members of OpenAI's chat request the body names, one bit each
    /// ([`KNOWN_FIELDS`]).
    chat_members: u64,
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
    pub fn messages_field(&self) -> &Field<Vec<Result<Message, JsonType>>> {
        &self.inner.messages
    }

    /// How many entries `messages` has (0 when it is not an array).
    pub fn message_count(&self) -> usize {
        self.inner.messages.value().map_or(0, Vec::len)
    }

    /// Bytes of prompt text as written in the JSON: message text (string contents, text parts
    /// and names), and the whole of `input`, `instructions`, `prompt` and `tools` (the Responses
    /// API's, legacy completions' and embeddings' prompts, and tool definitions). An upper
    /// bound of the decoded text, and so of its tokens under a byte-level BPE.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let embeddings = ChatRequest::parse(Bytes::from_static(br#"{"model":"e","input":["hello","world"]}"#))?;
    /// assert_eq!(embeddings.prompt_bytes(), r#"["hello","world"]"#.len());
    /// # Ok::<(), tollgate_core::ParseError>(())
    /// ```
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
    /// let Field::Value(messages) = chat.messages_field() else { unreachable!() };
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
    pub fn stream_options_field(&self) -> &Field<StreamOptions> {
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
    pub fn fallbacks_field(&self) -> &Field<Vec<Field<StrSpan>>> {
        &self.inner.fallbacks
    }

    /// `max_tokens` as found.
    pub fn max_tokens_field(&self) -> &Field<Number> {
        &self.inner.max_tokens
    }

    /// `max_completion_tokens` as found.
    pub fn max_completion_tokens_field(&self) -> &Field<Number> {
        &self.inner.max_completion_tokens
    }

    /// `max_output_tokens` (the Responses API's budget) as found.
    pub fn max_output_tokens_field(&self) -> &Field<Number> {
        &self.inner.max_output_tokens
    }

    /// `input` as found: the prompt of the Responses API (a string or an array of input items)
    /// and of embeddings (a string, or an array of strings, token ids or arrays of token ids).
    pub fn input_field(&self) -> &Field<Input> {
        &self.inner.input
    }

    /// `prompt` as found: the prompt of legacy completions (a string, or an array of strings,
    /// token ids or arrays of token ids). On the Responses API it is a reference to a stored
    /// prompt, an object: `Invalid(Object)` here.
    pub fn prompt_field(&self) -> &Field<Input> {
        &self.inner.prompt
    }

    /// `instructions` (the Responses API's system message) as found.
    pub fn instructions_field(&self) -> &Field<StrSpan> {
        &self.inner.instructions
    }

    /// The span of `tools` (the tool definitions), when present and not null.
    pub fn tools_span(&self) -> Option<Span> {
        self.inner.tools
    }

    /// Whether the request continues a conversation the provider stores (`previous_response_id`
    /// or `conversation` present and not null, on the Responses API): the provider then adds
    /// earlier turns the body does not show.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let next = ChatRequest::parse(Bytes::from_static(br#"{"input":"And then?","previous_response_id":"resp_1"}"#))?;
    /// assert!(next.continues_conversation());
    /// let first = ChatRequest::parse(Bytes::from_static(br#"{"input":"Hi","conversation":null}"#))?;
    /// assert!(!first.continues_conversation());
    /// # Ok::<(), tollgate_core::ParseError>(())
    /// ```
    pub fn continues_conversation(&self) -> bool {
        self.inner.continues_conversation
    }

    /// `dimensions` (embeddings) as found.
    pub fn dimensions_field(&self) -> &Field<Number> {
        &self.inner.dimensions
    }

    /// `encoding_format` (embeddings) as found.
    pub fn encoding_format_field(&self) -> &Field<StrSpan> {
        &self.inner.encoding_format
    }

    /// `best_of` (legacy completions: candidates generated per prompt) as found.
    pub fn best_of_field(&self) -> &Field<Number> {
        &self.inner.best_of
    }

    /// The raw JSON text of a span of the body, such as an [`InputItem::Object`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::chat::{Input, InputItem};
    /// use tollgate_core::{ChatRequest, Field};
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"input":[{"role":"user","content":"Hi"}]}"#))?;
    /// let Field::Value(Input::Items(items)) = chat.input_field() else { unreachable!() };
    /// let InputItem::Object(span) = items[0] else { unreachable!() };
    /// assert_eq!(chat.raw(span), r#"{"role":"user","content":"Hi"}"#);
    /// # Ok::<(), tollgate_core::ParseError>(())
    /// ```
    pub fn raw(&self, span: Span) -> &str {
        // The body was checked to be UTF-8, and spans start and end at JSON token boundaries.
        std::str::from_utf8(&self.inner.body[span.start..span.end]).unwrap_or_default()
    }

    /// The names of the top-level members the body has, each once, in no particular order:
    /// for a validating layer to hold the body to an endpoint's list of fields.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::ChatRequest;
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"model":"m","input":"x","seed":1,"extra":true}"#))?;
    /// let mut members: Vec<&str> = chat.members().collect();
    /// members.sort_unstable();
    /// assert_eq!(members, ["extra", "input", "model", "seed"]);
    /// # Ok::<(), tollgate_core::ParseError>(())
    /// ```
    pub fn members(&self) -> impl Iterator<Item = &str> {
        let read = self.inner.read_members;
        let chat = self.inner.chat_members;
        let read = parse::READ_FIELDS
            .iter()
            .enumerate()
            .filter(move |(bit, _)| read & (1 << bit) != 0)
            .map(|(_, name)| *name);
        let known = KNOWN_FIELDS
            .iter()
            .enumerate()
            .filter(move |(bit, _)| chat & (1 << bit) != 0)
            .map(|(_, name)| *name);
        // The members the parse reads that chat does not know are in both lists.
        let others = self
            .inner
            .unknown_fields
            .iter()
            .map(|name| &**name)
            .filter(|name| !parse::READ_FIELDS.contains(name));
        read.chain(known).chain(others)
    }

    /// The requested completion budget: `max_completion_tokens`, else `max_output_tokens` (the
    /// Responses API's), else `max_tokens`, when a positive integer.
    pub fn max_completion_tokens(&self) -> Option<u64> {
        let positive = |field: &Field<Number>| field.value()?.as_u64().filter(|&n| n > 0);
        positive(&self.inner.max_completion_tokens)
            .or_else(|| positive(&self.inner.max_output_tokens))
            .or_else(|| positive(&self.inner.max_tokens))
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
    pub fn temperature_field(&self) -> &Field<Number> {
        &self.inner.temperature
    }

    /// `top_p` as found.
    pub fn top_p_field(&self) -> &Field<Number> {
        &self.inner.top_p
    }

    /// `n` as found.
    pub fn n_field(&self) -> &Field<Number> {
        &self.inner.n
    }

    /// `presence_penalty` as found.
    pub fn presence_penalty_field(&self) -> &Field<Number> {
        &self.inner.presence_penalty
    }

    /// `frequency_penalty` as found.
    pub fn frequency_penalty_field(&self) -> &Field<Number> {
        &self.inner.frequency_penalty
    }

    /// Top-level fields that are not part of OpenAI's chat/completions request.
    pub fn unknown_fields(&self) -> &[Box<str>] {
        &self.inner.unknown_fields
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

fn raw_text(body: &[u8], string: StrSpan) -> &str {
    let inner = &body[string.span.start + 1..string.span.end - 1];
    // The span was cut from a `&str` that serde_json validated, at ASCII quote boundaries.
    std::str::from_utf8(inner).unwrap_or_default()
}

fn decode(body: &[u8], string: StrSpan) -> String {
    serde_json::from_slice(&body[string.span.start..string.span.end]).unwrap_or_default()
}
