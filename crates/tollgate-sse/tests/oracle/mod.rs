//! What a split of an event stream into chunks must not change: the events, the `retry` asked
//! for, and whether the stream ends at an event boundary.
//!
//! Shared by the parser's tests (`tests/parser.rs`) and the fuzz target (`fuzz/`), which
//! includes this file by path.

use tollgate_sse::SseParser;

/// An event, owned (its `end` is where it ends in the chunk that completed it, which a split
/// moves, so it is left out).
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Owned {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// What a parser made of a stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<Owned>,
    pub retry: Option<u64>,
    pub at_boundary: bool,
}

/// Feeds `chunks` in order to a new parser.
pub fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Parsed {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |event| {
            assert!(event.end <= chunk.len(), "an event ends past its chunk");
            events.push(Owned {
                event: event.event.to_owned(),
                data: event.data.to_owned(),
                id: event.id.map(str::to_owned),
            });
        });
    }
    Parsed {
        events,
        retry: parser.retry(),
        at_boundary: parser.at_boundary(),
    }
}

/// Cuts `stream` into chunks of `lengths` (each at least one byte), the rest as the last.
pub fn split<'a>(stream: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(lengths.len() + 1);
    let mut rest = stream;
    for &length in lengths {
        let (chunk, after) = rest.split_at(length.max(1).min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    chunks.push(rest);
    chunks
}

/// Asserts that `stream` parses the same whole, in the chunks of `lengths`, and byte by byte;
/// returns the parse.
pub fn check_splits(stream: &[u8], lengths: &[usize]) -> Parsed {
    let whole = parse_chunks([stream]);
    assert_eq!(
        parse_chunks(split(stream, lengths)),
        whole,
        "split by {lengths:?}"
    );
    assert_eq!(parse_chunks(stream.chunks(1)), whole, "byte by byte");
    whole
}
