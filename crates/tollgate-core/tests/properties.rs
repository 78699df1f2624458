//! Property tests of the request view: generated request bodies, laid out and escaped every
//! way JSON allows, read as serde_json reads them, and every edit equal to the same edit made
//! on serde_json's reading; then the same bodies damaged a byte at a time, which must never
//! panic. The fuzz targets `chat_parse` and `chat_edit` (fuzz/) check the same on arbitrary
//! bytes, for longer than CI can.

#[path = "oracle/edits.rs"]
mod edits;
#[path = "oracle/view.rs"]
mod view;

use std::fmt::Write;

use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{Map, Value, json};

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9./:_-]{1,16}",
        "\\PC{0,8}",
        Just("quote \" backslash \\ slash / newline \n tab \t nul \0".to_owned()),
        Just("😀 café \u{2028} İ".to_owned()),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        (0u64..10).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // serde_json's fast float parsing may miss the last digit: only floats it reads back.
        any::<f64>()
            .prop_filter("read back", |f| {
                f.is_finite()
                    && serde_json::from_str::<f64>(&Value::from(*f).to_string()).ok() == Some(*f)
            })
            .prop_map(Value::from),
    ]
    .boxed()
}

/// A value of any JSON type, for the fields that must refuse most of them.
fn any_value() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
        Just(json!([])),
        Just(json!([1, "a", null])),
        Just(json!({})),
        Just(json!({"k": [true]})),
    ]
    .boxed()
}

fn string_or_any() -> BoxedStrategy<Value> {
    prop_oneof![3 => text().prop_map(Value::String), 1 => any_value()].boxed()
}

fn part() -> BoxedStrategy<Value> {
    prop_oneof![
        text().prop_map(|text| json!({"type": "text", "text": text})),
        Just(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})),
        any_value().prop_map(|text| json!({"type": "text", "text": text})),
        any_value(),
    ]
    .boxed()
}

fn message() -> BoxedStrategy<Value> {
    let content = prop_oneof![
        text().prop_map(Value::String),
        proptest::collection::vec(part(), 0..3).prop_map(Value::Array),
        any_value(),
    ];
    let members = (
        proptest::option::of(string_or_any()),
        proptest::option::of(content),
        proptest::option::of(string_or_any()),
        proptest::option::of(any_value()),
    );
    prop_oneof![
        4 => members.prop_map(|(role, content, name, tool_calls)| {
            let mut message = Map::new();
            for (key, value) in [("role", role), ("content", content), ("name", name), ("tool_calls", tool_calls)] {
                if let Some(value) = value {
                    message.insert(key.to_owned(), value);
                }
            }
            Value::Object(message)
        }),
        1 => any_value(),
    ]
    .boxed()
}

/// `input` or `prompt`: text, token ids, or items of every kind.
fn input() -> BoxedStrategy<Value> {
    let token = (0u64..100_000).prop_map(Value::from);
    let item = prop_oneof![
        text().prop_map(Value::String),
        token.clone(),
        proptest::collection::vec(token.clone(), 0..4).prop_map(Value::Array),
        Just(json!({"role": "user", "content": [{"type": "input_text", "text": "Hi"}]})),
        any_value(),
    ];
    prop_oneof![
        text().prop_map(Value::String),
        proptest::collection::vec(token, 1..5).prop_map(Value::Array),
        proptest::collection::vec(item, 0..5).prop_map(Value::Array),
        any_value(),
    ]
    .boxed()
}

fn member(key: &'static str) -> BoxedStrategy<Value> {
    match key {
        "model" | "instructions" | "encoding_format" | "previous_response_id" => string_or_any(),
        "messages" => prop_oneof![
            4 => proptest::collection::vec(message(), 0..4).prop_map(Value::Array),
            1 => any_value(),
        ]
        .boxed(),
        "stream" => prop_oneof![any::<bool>().prop_map(Value::Bool), any_value()].boxed(),
        "stream_options" => prop_oneof![
            Just(json!({})),
            any::<bool>().prop_map(|usage| json!({"include_usage": usage})),
            any_value().prop_map(|usage| json!({"include_usage": usage})),
            Just(json!({"other": [1], "include_usage": false})),
            any_value(),
        ]
        .boxed(),
        "fallbacks" => prop_oneof![
            proptest::collection::vec(string_or_any(), 0..3).prop_map(Value::Array),
            any_value(),
        ]
        .boxed(),
        "input" | "prompt" => input(),
        "tools" => prop_oneof![
            Just(json!([{"type": "function", "function": {"name": "f", "parameters": {}}}])),
            any_value(),
        ]
        .boxed(),
        "max_tokens"
        | "max_completion_tokens"
        | "max_output_tokens"
        | "temperature"
        | "n"
        | "dimensions" => prop_oneof![3 => number(), 1 => any_value()].boxed(),
        _ => any_value(),
    }
}

/// Members of every endpoint the view reads, and some it does not.
const MEMBERS: [&str; 20] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "fallbacks",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "n",
    "tools",
    "input",
    "prompt",
    "instructions",
    "previous_response_id",
    "conversation",
    "dimensions",
    "encoding_format",
    "seed",
    "x-custom",
];

fn request() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    subsequence(&MEMBERS[..], 0..=MEMBERS.len())
        .prop_shuffle()
        .prop_flat_map(|keys| {
            keys.into_iter()
                .map(|key| member(key).prop_map(move |value| (key, value)))
                .collect::<Vec<_>>()
        })
}

/// Writes JSON with the blanks and escapes that `choices` pick, in turn.
struct Layout<'a> {
    choices: &'a [u8],
    next: usize,
}

impl Layout<'_> {
    fn pick(&mut self) -> u8 {
        let choice = self.choices[self.next % self.choices.len()];
        self.next += 1;
        choice
    }

    fn blank(&mut self, out: &mut String) {
        out.push_str(match self.pick() % 6 {
            0 => " ",
            1 => "\n  ",
            2 => "\t",
            3 => "\r\n",
            _ => "",
        });
    }

    fn string(&mut self, text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match self.pick() % 5 {
                0 => {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        write!(out, "\\u{unit:04x}").unwrap();
                    }
                }
                1 if c == '/' => out.push_str("\\/"),
                _ => {
                    let escaped = serde_json::to_string(&c).unwrap();
                    out.push_str(&escaped[1..escaped.len() - 1]);
                }
            }
        }
        out.push('"');
    }

    fn value(&mut self, value: &Value, out: &mut String) {
        match value {
            Value::String(text) => self.string(text, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.blank(out);
                    self.value(item, out);
                    self.blank(out);
                }
                out.push(']');
            }
            Value::Object(members) => self.object(members.iter(), out),
            scalar => out.push_str(&scalar.to_string()),
        }
    }

    fn object<'v>(
        &mut self,
        members: impl Iterator<Item = (&'v String, &'v Value)>,
        out: &mut String,
    ) {
        out.push('{');
        for (i, (key, value)) in members.enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.blank(out);
            self.string(key, out);
            self.blank(out);
            out.push(':');
            self.blank(out);
            self.value(value, out);
            self.blank(out);
        }
        out.push('}');
    }
}

/// The body of `members` in their order, laid out by `choices`, and serde_json's reading.
fn render(members: &[(&'static str, Value)], choices: &[u8]) -> (String, Map<String, Value>) {
    let members: Vec<(String, Value)> = members
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    let mut body = String::new();
    let mut layout = Layout { choices, next: 0 };
    layout.blank(&mut body);
    layout.object(members.iter().map(|(key, value)| (key, value)), &mut body);
    layout.blank(&mut body);
    (body, members.into_iter().collect())
}

/// A byte of damage: cut the body, drop a byte, put one in, or change one.
#[derive(Clone, Debug)]
enum Damage {
    Truncate(usize),
    Remove(usize),
    Insert(usize, u8),
    Replace(usize, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop_oneof![
        Just(b'"'),
        Just(b'\\'),
        Just(b','),
        Just(b'{'),
        Just(b']'),
        Just(b'\0'),
        Just(0xC3),
        any::<u8>(),
    ];
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        any::<usize>().prop_map(Damage::Remove),
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Damage::Replace(at, b)),
    ]
}

impl Damage {
    fn apply(&self, body: &mut Vec<u8>) {
        let len = body.len().max(1);
        match *self {
            Damage::Truncate(at) => body.truncate(at % len),
            Damage::Remove(at) if !body.is_empty() => {
                body.remove(at % len);
            }
            Damage::Remove(_) => {}
            Damage::Insert(at, byte) => body.insert(at % (body.len() + 1), byte),
            Damage::Replace(at, byte) => {
                if let Some(b) = body.get_mut(at % len) {
                    *b = byte;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_view_and_its_edits_agree_with_serde_json(
        members in request(),
        choices in proptest::collection::vec(any::<u8>(), 1..32),
        model in text(),
    ) {
        let (body, object) = render(&members, &choices);
        prop_assert_eq!(view::strict_object(body.as_bytes()), Some(object), "{}", body);
        edits::check_edits(body.as_bytes(), &model);
    }

    #[test]
    fn a_damaged_body_never_panics_and_is_read_right_when_it_still_reads(
        members in request(),
        choices in proptest::collection::vec(any::<u8>(), 1..32),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let (body, _) = render(&members, &choices);
        let mut body = body.into_bytes();
        for damage in &damages {
            damage.apply(&mut body);
        }
        edits::check_edits(&body, "gpt-5.4");
    }
}
