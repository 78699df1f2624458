//! The text of a Responses API input item, read from its span when a layer asks for it.

use serde_json::value::RawValue;

use super::parse::string_field;
use super::{ChatRequest, Field, JsonType, Span, StrSpan};

impl ChatRequest {
    /// The strings a model reads as text in a Responses API input item (an
    /// [`InputItem::Object`](super::InputItem::Object) of `input`): a message's `role` and
    /// `content` (a string, or the `text` of each part), a tool call's `name` and `arguments`,
    /// a tool result's `output`. Images, files and other members are left out, as chat's image
    /// parts are.
    ///
    /// The parse records only the item's span: this reads the item, for the rare request whose
    /// size calls for an exact count. An item that is not such an object has no text.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate_core::chat::{Input, InputItem};
    /// use tollgate_core::{ChatRequest, Field};
    ///
    /// let chat = ChatRequest::parse(Bytes::from_static(br#"{"input":[
    ///     {"role":"user","content":[{"type":"input_text","text":"What is this?"},{"type":"input_image","image_url":"data:..."}]},
    ///     {"type":"function_call_output","call_id":"c1","output":"42"}
    /// ]}"#))?;
    /// let Field::Value(Input::Items(items)) = chat.input_field() else { unreachable!() };
    /// let texts = |item: &InputItem| {
    ///     let InputItem::Object(span) = item else { unreachable!() };
    ///     chat.item_texts(*span).into_iter().map(|text| chat.text(text)).collect::<Vec<_>>()
    /// };
    /// assert_eq!(texts(&items[0]), ["user", "What is this?"]);
    /// assert_eq!(texts(&items[1]), ["42"]);
    /// # Ok::<(), tollgate_core::ParseError>(())
    /// ```
    pub fn item_texts(&self, item: Span) -> Vec<StrSpan> {
        #[derive(serde::Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            role: Option<&'a RawValue>,
            #[serde(borrow)]
            content: Option<&'a RawValue>,
            #[serde(borrow)]
            name: Option<&'a RawValue>,
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
            #[serde(borrow)]
            output: Option<&'a RawValue>,
        }
        // The item is a slice of the body, so spans cut from it stay relative to the body.
        let base = self.body().as_ptr() as usize;
        let Ok(wire) = serde_json::from_str::<Wire<'_>>(self.raw(item)) else {
            return Vec::new();
        };
        let mut texts = Vec::new();
        for raw in [wire.role, wire.name, wire.arguments].into_iter().flatten() {
            if let Field::Value(text) = string_field(base, raw) {
                texts.push(text);
            }
        }
        for raw in [wire.content, wire.output].into_iter().flatten() {
            text_or_parts(base, raw, &mut texts);
        }
        texts
    }
}

/// A string, or the `text` of each part of an array.
fn text_or_parts(base: usize, raw: &RawValue, texts: &mut Vec<StrSpan>) {
    #[derive(serde::Deserialize)]
    struct WirePart<'a> {
        #[serde(borrow)]
        text: Option<&'a RawValue>,
    }
    match JsonType::of(raw.get()) {
        JsonType::String => texts.extend(string_field(base, raw).value()),
        JsonType::Array => {
            let parts: Vec<WirePart<'_>> = serde_json::from_str(raw.get()).unwrap_or_default();
            let text = |part: WirePart<'_>| string_field(base, part.text?).value().copied();
            texts.extend(parts.into_iter().filter_map(text));
        }
        _ => {}
    }
}
