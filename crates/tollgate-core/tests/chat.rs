//! The one-pass chat request view.

use bytes::Bytes;
use tollgate_core::chat::{Content, Input, InputItem, JsonType, Message, ParseErrorKind, Part};
use tollgate_core::{ChatRequest, ErrorKind, Field, GatewayError};

fn parse(json: &'static str) -> ChatRequest {
    ChatRequest::parse(Bytes::from_static(json.as_bytes())).unwrap()
}

fn messages(chat: &ChatRequest) -> &[Result<Message, JsonType>] {
    match chat.messages_field() {
        Field::Value(messages) => messages,
        other => panic!("messages: {other:?}"),
    }
}

#[test]
fn reads_every_field_the_layers_need() {
    let chat = parse(
        r#"{
  "model": "gpt-5.4",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}
  ],
  "stream": true,
  "stream_options": {"include_usage": true},
  "max_tokens": 100,
  "temperature": 0.5,
  "top_p": 1,
  "n": 2,
  "presence_penalty": -1.5,
  "frequency_penalty": 0,
  "seed": 7
}"#,
    );
    assert_eq!(chat.model(), Some("gpt-5.4"));
    assert_eq!(chat.message_count(), 3);
    assert!(chat.stream());
    assert!(chat.include_usage());
    assert_eq!(chat.max_completion_tokens(), Some(100));
    assert_eq!(
        chat.temperature_field().value().and_then(|n| n.as_f64()),
        Some(0.5)
    );
    assert_eq!(
        chat.top_p_field().value().and_then(|n| n.as_f64()),
        Some(1.0)
    );
    assert_eq!(chat.n_field().value().and_then(|n| n.as_u64()), Some(2));
    assert_eq!(
        chat.presence_penalty_field()
            .value()
            .and_then(|n| n.as_f64()),
        Some(-1.5)
    );
    assert!(chat.unknown_fields().is_empty(), "seed is a known field");
    // "You are terse." + "Hi" + "ann"
    assert_eq!(chat.prompt_bytes(), 14 + 2 + 3);

    let list = messages(&chat);
    let system = list[0].as_ref().unwrap();
    assert_eq!(chat.text(*system.role.value().unwrap()), "system");
    let Content::Text(text) = system.content else {
        panic!()
    };
    assert_eq!(chat.text(text), "You are terse.");
    let user = list[1].as_ref().unwrap();
    assert_eq!(chat.text(user.name.unwrap()), "ann");
    let Content::Parts(parts) = &user.content else {
        panic!()
    };
    assert!(matches!(parts[0], Part::Text(t) if chat.text(t) == "Hi"));
    assert_eq!(parts[1], Part::Other);
    let assistant = list[2].as_ref().unwrap();
    assert_eq!(assistant.content, Content::Absent);
    assert!(assistant.has_tool_calls);
}

#[test]
fn wrong_types_are_recorded_not_fatal() {
    let chat = parse(
        r#"{"model": 42, "messages": "hi", "stream": "yes", "temperature": "hot", "max_tokens": null, "stream_options": 3, "extra": 1}"#,
    );
    assert_eq!(chat.model(), None);
    assert_eq!(chat.model_field(), &Field::Invalid(JsonType::Number));
    assert_eq!(chat.messages_field(), &Field::Invalid(JsonType::String));
    assert_eq!(chat.stream_field(), &Field::Invalid(JsonType::String));
    assert_eq!(chat.temperature_field(), &Field::Invalid(JsonType::String));
    assert_eq!(chat.max_tokens_field(), &Field::Absent);
    assert!(matches!(
        chat.stream_options_field(),
        Field::Invalid(JsonType::Number)
    ));
    assert_eq!(chat.unknown_fields(), &["extra".into()]);

    let chat = parse(r#"{"messages": [1, "x", null, [], {"content": 5}]}"#);
    let list = messages(&chat);
    assert_eq!(list[0], Err(JsonType::Number));
    assert_eq!(list[1], Err(JsonType::String));
    assert_eq!(list[2], Err(JsonType::Null));
    assert_eq!(list[3], Err(JsonType::Array));
    let message = list[4].as_ref().unwrap();
    assert_eq!(message.role, Field::Absent);
    assert_eq!(message.content, Content::Invalid(JsonType::Number));
}

#[test]
fn escaped_strings_are_decoded_and_bound_by_their_raw_length() {
    let chat =
        parse(r#"{"model":"gpt\u002d5","messages":[{"role":"user","content":"caf\u00e9\n"}]}"#);
    assert_eq!(chat.model(), Some("gpt-5"));
    let message = messages(&chat)[0].as_ref().unwrap();
    let Content::Text(text) = message.content else {
        panic!()
    };
    assert!(text.escaped);
    assert_eq!(chat.text(text), "café\n");
    assert!(chat.prompt_bytes() >= "café\n".len());
}

#[test]
fn syntax_errors_carry_line_column_and_what_was_expected() {
    let cases: [(&str, ParseErrorKind, usize, usize, &str); 5] = [
        (
            "{\"model\": \"a\",\n \"messages\": [}",
            ParseErrorKind::Syntax,
            2,
            15,
            "expected value",
        ),
        (
            "{\"model\": \"a\",}",
            ParseErrorKind::Syntax,
            1,
            15,
            "trailing comma",
        ),
        (
            "{\"model\": \"a\"",
            ParseErrorKind::Eof,
            1,
            13,
            "EOF while parsing an object",
        ),
        ("", ParseErrorKind::Eof, 1, 0, "EOF while parsing a value"),
        (
            "[1, 2]",
            ParseErrorKind::NotAnObject(JsonType::Array),
            1,
            1,
            "invalid type: sequence, expected a JSON object",
        ),
    ];
    for (body, kind, line, column, reason) in cases {
        let error = ChatRequest::parse(Bytes::from_static(body.as_bytes())).unwrap_err();
        assert_eq!(error.kind, kind, "{body}");
        assert_eq!((error.line, error.column), (line, column), "{body}");
        assert_eq!(error.reason, reason, "{body}");
    }
    let error = ChatRequest::parse(Bytes::from_static(b"{} x")).unwrap_err();
    assert_eq!(error.reason, "trailing characters");
}

#[test]
fn parse_errors_become_400_envelopes() {
    let error = ChatRequest::parse(Bytes::from_static(b"{\"model\": \"a\",}")).unwrap_err();
    let gateway = GatewayError::from(&error);
    assert_eq!(gateway.kind, ErrorKind::InvalidRequest);
    assert_eq!(
        gateway.message,
        "We could not parse the JSON body of your request: trailing comma at line 1, column 15. Check the JSON syntax (unclosed braces or strings, trailing commas, unquoted keys)."
    );
    assert_eq!(gateway.details["line"], 1);
    assert_eq!(gateway.details["column"], 15);

    let error = ChatRequest::parse(Bytes::from_static(b"\"hello\"")).unwrap_err();
    assert_eq!(
        GatewayError::from(&error).message,
        "The request body must be a JSON object, but it is a string. Send an object like {\"model\": ..., \"messages\": [...]}."
    );
}

/// A part of an unknown type names it by span; a rewrite before it moved every other span but
/// not that one, so the edited view named the wrong bytes (found by the damaged-body property).
#[test]
fn an_unknown_part_type_is_read_right_after_a_rewrite_before_it() {
    let chat = parse(r#"{"model":"","messages":[{"role":"user","content":[{"type":"x-new"}]}]}"#);
    let rewritten = chat.with_model("gpt-5.4").unwrap();
    let Ok(message) = &messages(&rewritten)[0] else {
        panic!("a message");
    };
    let Content::Parts(parts) = &message.content else {
        panic!("parts");
    };
    let Part::Invalid(tollgate_core::chat::InvalidPart::UnknownType(kind)) = parts[0] else {
        panic!("an unknown type: {:?}", parts[0]);
    };
    assert_eq!(rewritten.text(kind), "x-new");
}

#[test]
fn model_rewrite_changes_only_the_model_bytes_and_keeps_spans_exact() {
    let original = r#"{"messages":[{"role":"user","content":"x"}], "model" :"fast" ,"stream_options":{"include_usage":false},"tail":"\u00e9"}"#;
    let chat = parse(original);
    let rewritten = chat.with_model("acme/fast-2\"quoted\"").unwrap();
    let expected = original.replace(r#""fast""#, r#""acme/fast-2\"quoted\"""#);
    assert_eq!(rewritten.body(), expected.as_str());
    assert_eq!(rewritten.model(), Some("acme/fast-2\"quoted\""));
    // Spans after the edit moved with it: a further edit still lands in the right place.
    let with_usage = rewritten.with_include_usage();
    assert_eq!(
        with_usage.body(),
        expected
            .replace(r#"{"include_usage":false}"#, r#"{"include_usage":true}"#)
            .as_str()
    );
    assert!(with_usage.include_usage());
    assert_eq!(with_usage.model(), Some("acme/fast-2\"quoted\""));
    // And the edited body parses to the same view.
    let reparsed = ChatRequest::parse(with_usage.body().clone()).unwrap();
    assert_eq!(reparsed.model(), with_usage.model());
    assert_eq!(reparsed.messages_field(), with_usage.messages_field());
    assert_eq!(
        reparsed.stream_options_field(),
        with_usage.stream_options_field()
    );
}

#[test]
fn include_usage_is_added_wherever_it_is_missing() {
    let cases = [
        (
            r#"{"model":"m"}"#,
            r#"{"model":"m","stream_options":{"include_usage":true}}"#,
        ),
        ("{ }", r#"{ "stream_options":{"include_usage":true}}"#),
        (
            r#"{"stream_options":{}}"#,
            r#"{"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream_options":{"x":1}}"#,
            r#"{"stream_options":{"include_usage":true,"x":1}}"#,
        ),
        (
            r#"{"stream_options":null,"n":1}"#,
            r#"{"stream_options":{"include_usage":true},"n":1}"#,
        ),
        (
            r#"{"stream_options":{"include_usage":true}}"#,
            r#"{"stream_options":{"include_usage":true}}"#,
        ),
    ];
    for (before, after) in cases {
        let chat = parse(before).with_include_usage();
        assert_eq!(chat.body(), after, "{before}");
        assert!(chat.include_usage(), "{before}");
        let reparsed = ChatRequest::parse(chat.body().clone()).unwrap();
        assert!(reparsed.include_usage(), "{before}");
        assert_eq!(
            reparsed.stream_options_field(),
            chat.stream_options_field(),
            "{before}"
        );
    }
}

#[test]
fn debug_output_leaves_message_text_out() {
    let chat = parse(r#"{"model":"m","messages":[{"role":"user","content":"my secret plan"}]}"#);
    let debug = format!("{chat:?}");
    assert!(debug.contains("\"m\""));
    assert!(!debug.contains("secret"));
}

#[test]
fn fallbacks_are_read_and_removed_with_every_span_kept_exact() {
    let chat = parse(
        r#"{"fallbacks": ["b", 7, "c"], "model": "a", "messages": [{"role":"user","content":"x"}]}"#,
    );
    let Field::Value(fallbacks) = chat.fallbacks_field() else {
        panic!()
    };
    assert_eq!(chat.text(*fallbacks[0].value().unwrap()), "b");
    assert_eq!(fallbacks[1], Field::Invalid(JsonType::Number));
    let stripped = chat.without_fallbacks();
    assert_eq!(
        stripped.body(),
        r#"{"model": "a", "messages": [{"role":"user","content":"x"}]}"#
    );
    assert_eq!(stripped.fallbacks_field(), &Field::Absent);
    let rewritten = stripped.with_model("zz").unwrap();
    assert_eq!(
        rewritten.body(),
        r#"{"model": "zz", "messages": [{"role":"user","content":"x"}]}"#
    );
    assert_eq!(
        ChatRequest::parse(rewritten.body().clone())
            .unwrap()
            .messages_field(),
        rewritten.messages_field()
    );
    assert!(
        chat.unknown_fields().is_empty(),
        "fallbacks is a known field"
    );
}

#[test]
fn an_insertion_right_after_a_span_leaves_that_span_alone() {
    // `model` ends where `stream_options` is inserted.
    let chat = parse(r#"{"stream":true,"model":"a"}"#).with_include_usage();
    assert_eq!(chat.model(), Some("a"));
    assert_eq!(
        chat.with_model("b").unwrap().body(),
        r#"{"stream":true,"model":"b","stream_options":{"include_usage":true}}"#
    );
    // `fallbacks` ends there: removing it keeps the inserted member.
    let chat = parse(r#"{"model":"a","stream":true,"fallbacks":["b"]}"#).with_include_usage();
    let stripped = chat.without_fallbacks();
    assert_eq!(
        stripped.body(),
        r#"{"model":"a","stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert!(
        ChatRequest::parse(stripped.body().clone())
            .unwrap()
            .include_usage()
    );
}

fn parse_err(body: &[u8]) -> tollgate_core::ParseError {
    tollgate_core::ChatRequest::parse(bytes::Bytes::copy_from_slice(body)).unwrap_err()
}

/// Providers disagree on which of two members counts (the first, the last, an error), so a
/// body the gateway checked on one could be served on the other: a second member of the same
/// name is refused, naming it.
#[test]
fn a_duplicate_member_is_refused_naming_it() {
    use tollgate_core::chat::ParseErrorKind;
    let cases: [(&str, &str); 7] = [
        (
            r#"{"model":"gpt-4o","model":"gpt-5.4","messages":[]}"#,
            "model",
        ),
        (
            r#"{"model":"m","max_tokens":10,"messages":[],"max_tokens":100000}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","user":"a","messages":[],"user":"b"}"#,
            "user",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b","content":"c"}]}"#,
            "messages[1].content",
        ),
        (
            r#"{"model":"m","messages":[],"stream":false,"stream":true}"#,
            "stream",
        ),
        (
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
            "stream_options.include_usage",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b","text":"a much longer text"}]}]}"#,
            "messages[0].content[1].text",
        ),
    ];
    for (body, member) in cases {
        let error = parse_err(body.as_bytes());
        assert_eq!(error.kind, ParseErrorKind::DuplicateMember, "{body}");
        assert_eq!(error.reason, member);
        let envelope = tollgate_core::GatewayError::from(&error);
        assert_eq!(envelope.param.as_deref(), Some(member));
        assert_eq!(envelope.code.as_deref(), Some("duplicate_member"));
        assert_eq!(envelope.status(), 400);
    }
}

#[test]
fn text_the_gateway_cannot_read_is_refused() {
    use tollgate_core::chat::ParseErrorKind;
    for body in [
        &b"{\"model\":\"m\",\"user\":\"\xff\",\"messages\":[]}"[..],
        br#"{"model":"m","user":"\ud800","messages":[]}"#,
        br#"{"model":"m","user":"\udc00 trailing","messages":[]}"#,
        br#"{"model":"m","messages":[],"metadata":{"k":"\ud83d\u0041"}}"#,
    ] {
        let error = parse_err(body);
        assert_eq!(
            error.kind,
            ParseErrorKind::InvalidText,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(tollgate_core::GatewayError::from(&error).status(), 400);
    }
    for body in [
        &br#"{"model":"m","user":"\ud83d\ude00 a pair","messages":[]}"#[..],
        br#"{"model":"m","user":"\\ud800 is a literal backslash","messages":[]}"#,
        r#"{"model":"m","user":"déjà vu","messages":[]}"#.as_bytes(),
    ] {
        assert!(
            tollgate_core::ChatRequest::parse(bytes::Bytes::copy_from_slice(body)).is_ok(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

/// Members the parse skips were not limited in depth: a body nested 100,000 deep in
/// `metadata` (or in a message's content) went upstream. Nothing deeper than `serde_json`
/// reads (128) is accepted, wherever it is; brackets inside strings do not count.
#[test]
fn a_body_nested_deeper_than_128_is_refused_wherever_it_nests() {
    use tollgate_core::chat::ParseErrorKind;
    let nested = |member: &str, depth: usize| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"{member}":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    for body in [
        nested("metadata", 100_000),
        nested("metadata", 129),
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
    ] {
        let error = parse_err(body.as_bytes());
        assert_eq!(error.kind, ParseErrorKind::Syntax);
        assert!(
            error.reason.contains("nested more than 128 deep"),
            "{error}"
        );
        assert_eq!(tollgate_core::GatewayError::from(&error).status(), 400);
    }
    // The top-level object is one level: 127 more fit.
    let fits = nested("metadata", 127);
    let brackets_in_text = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}\"{}"}}]}}"#,
        "[".repeat(500),
        "{".repeat(500)
    );
    for body in [fits, brackets_in_text] {
        assert!(
            tollgate_core::ChatRequest::parse(bytes::Bytes::from(body.clone())).is_ok(),
            "{body}"
        );
    }
}

fn input(chat: &ChatRequest) -> &Input {
    match chat.input_field() {
        Field::Value(input) => input,
        other => panic!("input: {other:?}"),
    }
}

#[test]
fn input_and_prompt_shapes_are_recorded_with_their_bytes_as_written() {
    let cases = [
        r#""Hello""#,
        "[1, 2,3]",
        r#"[ "a" , "b\n" ]"#,
        "[[1,2], [3] ,[]]",
        r#"[{"role":"user","content":"Hi"}, {"type":"item_reference","id":"x"}]"#,
        "[ ]",
        r#"[1, "a", 2, -3, 1.5, [4, "b"], null]"#,
    ];
    for case in cases {
        for member in ["input", "prompt"] {
            let body = format!(r#"{{"model":"m", "{member}" : {case} , "n":1}}"#);
            let chat = ChatRequest::parse(Bytes::from(body.clone())).unwrap();
            assert_eq!(chat.prompt_bytes(), case.len(), "{body}");
            let (found, other) = match member {
                "input" => (chat.input_field(), chat.prompt_field()),
                _ => (chat.prompt_field(), chat.input_field()),
            };
            assert!(matches!(found, Field::Value(_)), "{body}");
            assert_eq!(other, &Field::Absent, "{body}");
        }
    }
    let parse_input =
        |value: &str| ChatRequest::parse(Bytes::from(format!(r#"{{"input":{value}}}"#))).unwrap();
    let chat = parse_input(r#""Hello""#);
    let Input::Text(text) = input(&chat) else {
        panic!()
    };
    assert_eq!(chat.text(*text), "Hello");
    assert_eq!(input(&parse_input("[1, 2,3]")), &Input::Tokens(3));
    let chat = parse_input(r#"[ "a" , "b\n" ]"#);
    let Input::Items(items) = input(&chat) else {
        panic!()
    };
    let texts: Vec<_> = items
        .iter()
        .map(|item| match item {
            InputItem::Text(text) => chat.text(*text),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["a", "b\n"]);
    assert_eq!(
        input(&parse_input("[[1,2], [3] ,[]]")),
        &Input::Items(vec![
            InputItem::Tokens(2),
            InputItem::Tokens(1),
            InputItem::Tokens(0)
        ])
    );
    let chat = parse_input(r#"[{"role":"user","content":"Hi"}, {"id":"x"}]"#);
    let Input::Items(items) = input(&chat) else {
        panic!()
    };
    let InputItem::Object(span) = items[1] else {
        panic!()
    };
    assert_eq!(chat.raw(span), r#"{"id":"x"}"#);
    assert_eq!(input(&parse_input("[ ]")), &Input::Items(vec![]));
    // Token ids before an item of another kind become items of their own.
    let chat = parse_input(r#"[1, "a", 2, -3, 1.5, [4, "b"], null]"#);
    let kinds: Vec<_> = match input(&chat) {
        Input::Items(items) => items.iter().map(InputItem::json_type).collect(),
        other => panic!("{other:?}"),
    };
    use JsonType::*;
    assert_eq!(kinds, [Number, String, Number, Number, Number, Array, Null]);
    let Input::Items(items) = input(&chat) else {
        panic!()
    };
    assert_eq!(items[0], InputItem::Token);
    assert_eq!(items[3], InputItem::Other(Number), "-3 is no token id");
    assert_eq!(items[4], InputItem::Other(Number), "1.5 is no token id");
    assert_eq!(items[5], InputItem::Other(Array));

    let chat = parse(r#"{"input":{"a":1},"prompt":7}"#);
    assert_eq!(chat.input_field(), &Field::Invalid(Object));
    assert_eq!(chat.prompt_field(), &Field::Invalid(Number));
    let chat = parse(r#"{"input":null}"#);
    assert_eq!(chat.input_field(), &Field::Absent);
    assert_eq!(chat.prompt_bytes(), 0);
}

#[test]
fn an_input_named_with_escapes_is_read_all_the_same() {
    // The key has no place in the body to look ahead from: the array is read from its slice.
    let chat = parse(r#"{"model":"m","inp\u0075t":[ "x\ty", [5,6] ]}"#);
    assert_eq!(chat.prompt_bytes(), r#"[ "x\ty", [5,6] ]"#.len());
    let Input::Items(items) = input(&chat) else {
        panic!()
    };
    assert!(matches!(items[0], InputItem::Text(text) if chat.text(text) == "x\ty"));
    assert_eq!(items[1], InputItem::Tokens(2));
}

#[test]
fn input_spans_move_with_an_edit() {
    let chat = parse(
        r#"{"model":"a","instructions":"Be brief.","input":["one",{"role":"user","content":"two"}],"tools":[{"type":"web_search"}]}"#,
    );
    let edited = chat.with_model("a-much-longer-model").unwrap();
    let reparsed = ChatRequest::parse(edited.body().clone()).unwrap();
    assert_eq!(edited.input_field(), reparsed.input_field());
    assert_eq!(edited.instructions_field(), reparsed.instructions_field());
    assert_eq!(edited.tools_span(), reparsed.tools_span());
    assert_eq!(
        edited.raw(edited.tools_span().unwrap()),
        r#"[{"type":"web_search"}]"#
    );
    let Input::Items(items) = input(&edited) else {
        panic!()
    };
    let (InputItem::Text(one), InputItem::Object(two)) = (&items[0], &items[1]) else {
        panic!()
    };
    assert_eq!(edited.text(*one), "one");
    let texts: Vec<_> = edited
        .item_texts(*two)
        .into_iter()
        .map(|text| edited.text(text).into_owned())
        .collect();
    assert_eq!(texts, ["user", "two"]);
}

#[test]
fn the_other_endpoints_fields_are_read_and_stay_unknown_to_chat() {
    let chat = parse(
        r#"{"model":"m","input":"x","instructions":7,"previous_response_id":"resp_1","dimensions":256,"encoding_format":"base64","best_of":3,"max_output_tokens":64}"#,
    );
    assert!(chat.continues_conversation());
    assert_eq!(chat.instructions_field(), &Field::Invalid(JsonType::Number));
    assert_eq!(
        chat.dimensions_field().value().and_then(|n| n.as_u64()),
        Some(256)
    );
    let format = *chat.encoding_format_field().value().unwrap();
    assert_eq!(chat.text(format), "base64");
    assert_eq!(
        chat.best_of_field().value().and_then(|n| n.as_u64()),
        Some(3)
    );
    // Strict chat validation names each of them.
    let unknown: Vec<&str> = chat.unknown_fields().iter().map(|f| &**f).collect();
    assert_eq!(
        unknown,
        [
            "input",
            "instructions",
            "previous_response_id",
            "dimensions",
            "encoding_format",
            "best_of",
            "max_output_tokens"
        ]
    );
    assert!(parse(r#"{"conversation":{"id":"conv_1"}}"#).continues_conversation());
    assert!(!parse(r#"{"previous_response_id":null}"#).continues_conversation());
}

#[test]
fn members_names_each_top_level_member_once() {
    let chat = parse(
        r#"{"model":"m","input":"x","seed":1,"messages":[],"x-custom":true,"inp\u0075t_2":0,"store":false}"#,
    );
    let mut members: Vec<&str> = chat.members().collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "input", "input_2", "messages", "model", "seed", "store", "x-custom"
        ]
    );
    assert_eq!(parse("{}").members().count(), 0);
}

// Findings of the fuzz targets (fuzz/), each kept as the input that found it.

#[test]
fn a_body_ending_in_a_backslash_is_refused_not_a_panic() {
    // fuzz chat_parse: the check for lone surrogates stepped past the end of the body.
    for body in [
        &b"\\"[..],
        br#"{{"m\u006fdel":"gpt"mo\"#,
        br#"{"model":"a\"#,
    ] {
        assert!(ChatRequest::parse(Bytes::from_static(body)).is_err());
    }
}

#[test]
fn an_edit_keeps_the_members_in_step_with_the_body() {
    // fuzz chat_edit: `stream_options` added, or `fallbacks` removed, went unlisted.
    let chat = parse("{ }").with_include_usage();
    assert_eq!(chat.members().collect::<Vec<_>>(), ["stream_options"]);
    let chat = parse(r#"{"fallbacks":["b"],"stream_options":null}"#)
        .without_fallbacks()
        .with_include_usage();
    assert_eq!(chat.body(), r#"{"stream_options":{"include_usage":true}}"#);
    assert_eq!(chat.members().collect::<Vec<_>>(), ["stream_options"]);
}

#[test]
fn encoding_format_moves_with_a_model_rewrite() {
    // fuzz chat_edit: its span stayed put, so a rewritten model left it pointing elsewhere
    // (past the end of a shorter body: a panic).
    let chat = parse(r#"{"model":"text-embedding-3-small","input":"x","encoding_format":"float"}"#);
    for model in ["e", "openai/text-embedding-3-small"] {
        let rewritten = chat.with_model(model).unwrap();
        let format = *rewritten.encoding_format_field().value().unwrap();
        assert_eq!(rewritten.text(format), "float");
    }
}

#[test]
fn fallbacks_named_with_escapes_are_removed_all_the_same() {
    // fuzz chat_edit: an escaped key hid the member from the removal, so the upstream got it.
    for (body, stripped) in [
        (
            r#"{"model":"a","fallb\u0061cks":["b"]}"#,
            r#"{"model":"a"}"#,
        ),
        (
            r#"{"f\"allbacks":1, "fallb\u0061cks" : ["b"] ,"n":1}"#,
            r#"{"f\"allbacks":1, "n":1}"#,
        ),
        (r#"{"\\":0,"\u0066allbacks":[]}"#, r#"{"\\":0}"#),
    ] {
        let chat = parse(body).without_fallbacks();
        assert_eq!(chat.body(), stripped);
        assert_eq!(chat.fallbacks_field(), &Field::Absent);
    }
}

#[test]
fn a_null_include_usage_is_replaced_not_doubled() {
    // proptest (tests/properties.rs): `null` read as no member, so the edit added a second
    // `include_usage`, and an upstream reading the last one streamed without usage.
    let chat = parse(r#"{"stream":true,"stream_options":{"include_usage":null}}"#);
    assert_eq!(
        chat.with_include_usage().body(),
        r#"{"stream":true,"stream_options":{"include_usage":true}}"#
    );
}
