//! The event-stream parser against the HTML standard's rules, and property tests: any split
//! of a stream into chunks yields the same events as the whole, and generated chat and
//! named-event (Responses) streams parse into the events they were made of. The fuzz target
//! `sse_split` (fuzz/) checks splits of arbitrary bytes.

mod oracle;

use oracle::{Owned, check_splits};
use proptest::prelude::*;
use tollgate_sse::SseParser;

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Owned> {
    oracle::parse_chunks(chunks.iter().copied()).events
}

fn parse(stream: &str) -> Vec<Owned> {
    parse_chunks(&[stream.as_bytes()])
}

fn message(data: &str) -> Owned {
    Owned {
        event: "message".into(),
        data: data.into(),
        id: None,
    }
}

#[test]
fn follows_the_standard() {
    // Multi-line data joined with \n; the space after the colon is optional and only one is removed.
    assert_eq!(
        parse("data: a\ndata:b\ndata:  c\n\n"),
        [message("a\nb\n c")]
    );
    // CRLF, CR and LF line endings, mixed.
    assert_eq!(
        parse("data: a\r\n\r\ndata: b\r\rdata: c\n\n"),
        [message("a"), message("b"), message("c")]
    );
    // Event types; the type resets after each event.
    assert_eq!(
        parse("event: ping\ndata: 1\n\ndata: 2\n\n"),
        [
            Owned {
                event: "ping".into(),
                data: "1".into(),
                id: None
            },
            message("2")
        ]
    );
    // Comments are ignored; a blank line with no data dispatches nothing.
    assert_eq!(parse(": keep-alive\n\n:\n\ndata: x\n\n"), [message("x")]);
    // The last event id persists across events; an id with NULL is ignored.
    assert_eq!(
        parse("id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\n")
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [Some("7".into()), Some("7".into()), Some("7".into())]
    );
    // A field with no colon has an empty value; unknown fields are ignored.
    assert_eq!(
        parse("data\n\nfoo: bar\ndata: y\n\n"),
        [message(""), message("y")]
    );
    // A leading BOM is stripped, only at the very start.
    assert_eq!(parse("\u{feff}data: a\n\n"), [message("a")]);
    // An event without its blank line at the end of the stream is discarded.
    assert_eq!(parse("data: a\n\ndata: incomplete\n"), [message("a")]);
}

#[test]
fn retry_is_recorded() {
    let mut parser = SseParser::new();
    parser.feed(b"retry: 3000\n\nretry: soon\n\n", |_| {});
    assert_eq!(parser.retry(), Some(3000));
}

#[test]
fn a_crlf_split_across_chunks_is_one_line_ending() {
    assert_eq!(
        parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]),
        [message("a"), message("b")]
    );
    assert_eq!(
        parse_chunks(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]),
        [message("a")]
    );
    assert_eq!(
        parse_chunks(&[b"da", b"ta: caf\xC3", b"\xA9\n", b"\n"]),
        [message("café")]
    );
}

#[test]
fn event_ends_point_just_past_the_blank_line() {
    let mut ends = Vec::new();
    SseParser::new().feed(b"data: a\n\ndata: b\r\n\r\n: c\n", |event| {
        ends.push(event.end)
    });
    assert_eq!(ends, [9, 20]);
}

const STREAM: &str = concat!(
    "\u{feff}: welcome\r\n\r\n",
    "id: 1\nevent: chunk\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: line one\r\ndata: line two\r\n\r\n",
    "retry: 1000\rdata: {\"usage\":{\"prompt_tokens\":3}}\r\r",
    "data: ünïcödé ✓\n\n",
    "data: [DONE]\n\n",
);

/// One event as a generator writes it.
#[derive(Clone, Debug)]
struct Frame {
    comment: Option<String>,
    retry: Option<u32>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

/// Chat completion chunks: one-line JSON, `data:` only, then `[DONE]`.
fn chat_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        "\\PC{0,12}".prop_map(|text| {
            serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
                .to_string()
        }),
        Just(r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#.to_owned()),
        Just("[DONE]".to_owned()),
    ]
    .prop_map(|data| Frame { comment: None, retry: None, id: None, event: None, data: vec![data] })
}

/// Named events, as the Responses API streams them, and every other field.
fn named_frame() -> impl Strategy<Value = Frame> {
    let event = prop_oneof![
        Just("response.created".to_owned()),
        Just("response.output_text.delta".to_owned()),
        Just("response.completed".to_owned()),
        Just("error".to_owned()),
        "[a-z._]{0,12}",
    ];
    (
        proptest::option::of("[^\r\n]{0,8}"),
        proptest::option::of(any::<u32>()),
        proptest::option::of("[^\r\n]{0,8}"),
        proptest::option::of(event),
        proptest::collection::vec("[^\r\n]{0,16}", 0..3),
    )
        .prop_map(|(comment, retry, id, event, data)| Frame {
            comment,
            retry,
            id,
            event,
            data,
        })
}

/// Writes the frames with the line endings and blanks that `choices` pick, in turn; returns
/// the stream, the events it holds and the `retry` it leaves.
fn write_stream(frames: &[Frame], bom: bool, choices: &[u8]) -> (Vec<u8>, Vec<Owned>, Option<u64>) {
    let mut choices = choices.iter().cycle();
    let mut stream = Vec::new();
    if bom && !frames.is_empty() {
        stream.extend_from_slice("\u{feff}".as_bytes());
    }
    let mut after_cr = false;
    let mut line = |stream: &mut Vec<u8>, text: &str| {
        stream.extend_from_slice(text.as_bytes());
        let mut ending = ["\n", "\r\n", "\r"][usize::from(*choices.next().unwrap() % 3)];
        // A LF right after a line's CR would be read as that line's CRLF, not as a blank line.
        if after_cr && text.is_empty() && ending == "\n" {
            ending = "\r\n";
        }
        after_cr = ending == "\r";
        stream.extend_from_slice(ending.as_bytes());
    };
    let field = |name: &str, value: &str, space: bool| {
        let space = if space || value.starts_with(' ') {
            " "
        } else {
            ""
        };
        format!("{name}:{space}{value}")
    };
    let (mut events, mut last_id, mut retry) = (Vec::new(), None, None);
    for (i, frame) in frames.iter().enumerate() {
        let space = i % 2 == 0;
        if let Some(comment) = &frame.comment {
            line(&mut stream, &format!(":{comment}"));
        }
        if let Some(value) = frame.retry {
            line(&mut stream, &field("retry", &value.to_string(), space));
            retry = Some(u64::from(value));
        }
        if let Some(id) = &frame.id {
            line(&mut stream, &field("id", id, space));
            if !id.contains('\0') {
                last_id = Some(id.clone());
            }
        }
        if let Some(event) = &frame.event {
            line(&mut stream, &field("event", event, space));
        }
        for data in &frame.data {
            line(&mut stream, &field("data", data, !space));
        }
        line(&mut stream, "");
        if !frame.data.is_empty() {
            let event = frame.event.as_deref().filter(|event| !event.is_empty());
            events.push(Owned {
                event: event.unwrap_or("message").to_owned(),
                data: frame.data.join("\n"),
                id: last_id.clone(),
            });
        }
    }
    (stream, events, retry)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_yields_the_same_events(lengths in proptest::collection::vec(1..40usize, 0..12)) {
        let whole = check_splits(STREAM.as_bytes(), &lengths);
        prop_assert_eq!(whole.events.len(), 5);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn generated_streams_parse_into_their_events_however_split(
        frames in prop_oneof![
            proptest::collection::vec(chat_frame(), 0..6),
            proptest::collection::vec(named_frame(), 0..6),
        ],
        bom in any::<bool>(),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
        lengths in proptest::collection::vec(1..40usize, 0..12),
    ) {
        let (stream, events, retry) = write_stream(&frames, bom, &choices);
        let parsed = check_splits(&stream, &lengths);
        prop_assert_eq!(parsed.events, events);
        prop_assert_eq!(parsed.retry, retry);
        prop_assert!(parsed.at_boundary);
    }
}
