//! The event-stream parser against the HTML standard's rules, and a property test: any split
//! of a stream into chunks yields the same events as the whole.

use proptest::prelude::*;
use tollgate_sse::SseParser;

#[derive(Debug, PartialEq, Eq, Clone)]
struct Owned {
    event: String,
    data: String,
    id: Option<String>,
}

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Owned> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |event| {
            events.push(Owned {
                event: event.event.to_owned(),
                data: event.data.to_owned(),
                id: event.id.map(str::to_owned),
            })
        });
    }
    events
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_yields_the_same_events(cuts in proptest::collection::vec(0..STREAM.len(), 0..12)) {
        let whole = parse(STREAM);
        prop_assert_eq!(whole.len(), 5);
        let bytes = STREAM.as_bytes();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(parse_chunks(&chunks), whole);
    }
}
