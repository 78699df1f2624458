//! Edits that produce a new body: each splices bytes into a copy of the body and moves the
//! recorded spans, so the copy needs no second parse.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::Request;
use http::header::{CONTENT_LENGTH, HeaderValue};

use super::parse::READ_FIELDS;
use super::{
    ChatRequest, Content, Field, Fields, Input, InputItem, InvalidPart, Message, Part, Span,
    StrSpan, StreamOptions,
};

impl Span {
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

impl ChatRequest {
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
                if self.inner.null_stream_options.is_none() {
                    fields.members += 1;
                    fields.read_members |= read_bit("stream_options");
                }
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
        fields.read_members &= !read_bit("fallbacks");
        ChatRequest {
            inner: Arc::new(fields),
        }
    }

    /// Makes this view the request's body: the body bytes, the memo in the extensions and the
    /// `Content-Length` header all change together. Use it after an edit such as
    /// [`ChatRequest::with_model`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Request;
    /// use tollgate_core::{Body, ChatRequest};
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"model":"a"}"#)).unwrap();
    /// let mut request = Request::new(Body::empty());
    /// chat.with_model("bb").unwrap().install(&mut request);
    /// assert_eq!(request.headers()["content-length"], "14");
    /// assert_eq!(request.extensions().get::<ChatRequest>().unwrap().model(), Some("bb"));
    /// ```
    pub fn install<B: From<Bytes>>(self, request: &mut Request<B>) {
        let bytes = self.body().clone();
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *request.body_mut() = B::from(bytes);
        request.extensions_mut().insert(self);
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
        for input in [&mut fields.input, &mut fields.prompt] {
            if let Field::Value(input) = input {
                input.for_each_span(&mut shift);
            }
        }
        for string in [&mut fields.instructions, &mut fields.encoding_format] {
            if let Field::Value(string) = string {
                shift(&mut string.span);
            }
        }
        if let Some(tools) = &mut fields.tools {
            shift(tools);
        }
        shift_offset(&mut fields.object_end, edited, new_len);
        fields
    }
}

/// The bit of a member the parse reads in `Fields::read_members`.
fn read_bit(member: &str) -> u32 {
    let index = READ_FIELDS.iter().position(|read| *read == member);
    1 << index.expect("a member the parse reads")
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
                    match part {
                        Part::Text(text) | Part::Invalid(InvalidPart::UnknownType(text)) => {
                            f(&mut text.span);
                        }
                        Part::Other | Part::Invalid(_) => {}
                    }
                }
            }
            Content::Absent | Content::Invalid(_) => {}
        }
    }
}

impl Input {
    fn for_each_span(&mut self, f: &mut impl FnMut(&mut Span)) {
        match self {
            Input::Text(text) => f(&mut text.span),
            Input::Tokens(_) => {}
            Input::Items(items) => {
                for item in items {
                    match item {
                        InputItem::Text(text) => f(&mut text.span),
                        InputItem::Object(span) => f(span),
                        InputItem::Token | InputItem::Tokens(_) | InputItem::Other(_) => {}
                    }
                }
            }
        }
    }
}

fn splice_bytes(body: &Bytes, edited: Span, replacement: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() - edited.len() + replacement.len());
    out.extend_from_slice(&body[..edited.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&body[edited.end..]);
    out.freeze()
}
