//! One pass over a stream chunk's JSON for [`ChatStreamSummary`](crate::ChatStreamSummary),
//! without allocating: a serde parse of each chunk into a view cost about a quarter of a
//! stream's forwarding.
//!
//! It reads only what it reads exactly as serde would. An escaped key, a `\u` escape, a
//! member the summary reads named twice, a value of another type, a number serde would refuse,
//! or nesting deeper than [`MAX_DEPTH`]: it answers `None`, and the serde view decides.

use tollgate_core::Usage;

/// The bytes that end a string's plain run: its closing quote, an escape, a control character.
static STRING_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stops[byte] = true;
        byte += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// The high bit of each byte of `word` (read little-endian) that ends a string's plain run,
/// exact up to the first one (a borrow may mark bytes after it).
fn stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH_BITS: u64 = ONES << 7;
    // A byte below `n` (at most 0x80) borrows when `n` is subtracted and had its high bit clear.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    (control | quote | backslash) & HIGH_BITS
}

/// What one chunk adds to the summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkFacts {
    pub(crate) usage: Option<Usage>,
    pub(crate) error: bool,
    pub(crate) content_bytes: usize,
}

/// Deeper than this, the chunk is left to serde (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// The Responses API's events that end a stream badly.
pub(crate) fn is_error_kind(kind: &[u8]) -> bool {
    matches!(kind, b"error" | b"response.failed")
}

/// The Responses API's event whose `delta` is output text.
pub(crate) const TEXT_DELTA: &str = "response.output_text.delta";

/// Reads `data`, appending its non-null finish reasons to `finish_reasons`; `None` (and maybe
/// some reasons appended) when the serde view must decide.
pub(crate) fn read(data: &str, finish_reasons: &mut Vec<String>) -> Option<ChunkFacts> {
    let mut reader = Reader {
        text: data.as_bytes(),
        at: 0,
    };
    let facts = reader.chunk(finish_reasons)?;
    (reader.peek().is_none()).then_some(facts)
}

/// Reads bytes, not `str`: a `str` slice checks both ends for a character boundary, and
/// every key and value read here is cut at an ASCII quote.
struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

/// Marks `bit` of `seen`; `None` if it was already: a member named twice.
fn once(seen: &mut u8, bit: u8) -> Option<()> {
    let mask = 1 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

impl<'a> Reader<'a> {
    fn byte(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// The next byte that is not whitespace.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        // Providers write chunks without whitespace: one look at the byte here nearly always
        // settles it.
        match self.byte() {
            Some(byte) if byte > b' ' => Some(byte),
            _ => self.skip_whitespace(),
        }
    }

    #[cold]
    fn skip_whitespace(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
            self.at += 1;
        }
        self.byte()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.text[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Whether the value here is `null` (read if so).
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null").map(|()| true)
    }

    /// A string: its text between the quotes, and how many escapes it holds (each one byte
    /// shorter decoded).
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a [u8], usize)> {
        self.eat(b'"')?;
        let bytes = self.text;
        let start = self.at;
        let mut end = start;
        let mut escapes = 0;
        loop {
            // Strings here are short (keys, words): eight bytes at a time beats a vector
            // search's setup.
            while let Some(word) = bytes.get(end..end + 8) {
                let stops = stops(u64::from_le_bytes(word.try_into().ok()?));
                if stops != 0 {
                    end += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                end += 8;
            }
            while !STRING_STOPS[usize::from(*bytes.get(end)?)] {
                end += 1;
            }
            match bytes[end] {
                b'"' => break,
                b'\\'
                    if matches!(
                        bytes.get(end + 1)?,
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
                    ) =>
                {
                    escapes += 1;
                    end += 2;
                }
                // A `\u` escape, an invalid one, or a control character.
                _ => return None,
            }
        }
        self.at = end + 1;
        Some((&bytes[start..end], escapes))
    }

    /// A string without escapes.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let (text, escapes) = self.string()?;
        (escapes == 0).then_some(text)
    }

    /// A string's decoded length, 0 for `null`.
    fn text_len(&mut self) -> Option<usize> {
        if self.null()? {
            return Some(0);
        }
        let (text, escapes) = self.string()?;
        Some(text.len() - escapes)
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.byte() {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }

    /// A number as JSON writes it.
    fn number(&mut self) -> Option<()> {
        if self.byte() == Some(b'-') {
            self.at += 1;
        }
        match self.byte()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.byte() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.byte() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.at += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// The members of an object: `member` reads each value, given its key.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The elements of an array, each read by `element`.
    fn array(
        &mut self,
        depth: usize,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Any value, read past.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, |reader, _| reader.skip(depth + 1)),
            b'[' => self.array(depth + 1, |reader| reader.skip(depth + 1)),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// A usage object, read by serde (it comes once per stream).
    fn usage(&mut self, depth: usize) -> Option<Usage> {
        self.peek()?;
        let start = self.at;
        self.skip(depth)?;
        serde_json::from_slice(&self.text[start..self.at]).ok()
    }

    /// The chunk: an object with `choices`, `usage`, `error`, and the Responses API's `type`,
    /// `response.usage` and `delta`.
    fn chunk(&mut self, finish_reasons: &mut Vec<String>) -> Option<ChunkFacts> {
        let mut seen = 0;
        let mut facts = ChunkFacts::default();
        let mut kind = None;
        let mut delta_bytes = 0;
        let mut response_usage = None;
        self.object(0, |reader, key| {
            match key {
                b"choices" => {
                    once(&mut seen, 0)?;
                    if !reader.null()? {
                        reader.array(1, |reader| {
                            reader.choice(finish_reasons, &mut facts.content_bytes)
                        })?;
                    }
                }
                b"usage" => {
                    once(&mut seen, 1)?;
                    if !reader.null()? {
                        facts.usage = Some(reader.usage(1)?);
                    }
                }
                b"error" => {
                    once(&mut seen, 2)?;
                    if !reader.null()? {
                        facts.error = true;
                        reader.skip(1)?;
                    }
                }
                b"type" => {
                    once(&mut seen, 3)?;
                    if !reader.null()? {
                        kind = Some(reader.plain_string()?);
                    }
                }
                b"response" => {
                    once(&mut seen, 4)?;
                    if !reader.null()? {
                        let mut response_seen = 0;
                        reader.object(1, |reader, key| {
                            if key != b"usage" {
                                return reader.skip(1);
                            }
                            once(&mut response_seen, 0)?;
                            if !reader.null()? {
                                response_usage = Some(reader.usage(2)?);
                            }
                            Some(())
                        })?;
                    }
                }
                b"delta" => {
                    once(&mut seen, 5)?;
                    delta_bytes = reader.text_len()?;
                }
                _ => reader.skip(0)?,
            }
            Some(())
        })?;
        facts.usage = facts.usage.or(response_usage);
        facts.error |= kind.is_some_and(is_error_kind);
        if kind == Some(TEXT_DELTA.as_bytes()) {
            facts.content_bytes += delta_bytes;
        }
        Some(facts)
    }

    /// One of `choices`: its `finish_reason`, and the text of its `delta`.
    fn choice(
        &mut self,
        finish_reasons: &mut Vec<String>,
        content_bytes: &mut usize,
    ) -> Option<()> {
        let mut seen = 0;
        self.object(2, |reader, key| {
            match key {
                b"delta" => {
                    once(&mut seen, 0)?;
                    if !reader.null()? {
                        reader.delta(content_bytes)?;
                    }
                }
                b"finish_reason" => {
                    once(&mut seen, 1)?;
                    if !reader.null()? {
                        // Cut at quotes from a `str`: always text.
                        let reason = std::str::from_utf8(reader.plain_string()?).ok()?;
                        finish_reasons.push(reason.to_owned());
                    }
                }
                _ => reader.skip(2)?,
            }
            Some(())
        })
    }

    /// A choice's `delta`: its `content` and its tool calls' `function.arguments`.
    fn delta(&mut self, content_bytes: &mut usize) -> Option<()> {
        let mut seen = 0;
        self.object(3, |reader, key| {
            match key {
                b"content" => {
                    once(&mut seen, 0)?;
                    *content_bytes += reader.text_len()?;
                }
                b"tool_calls" => {
                    once(&mut seen, 1)?;
                    if !reader.null()? {
                        reader.array(4, |reader| reader.tool_call(content_bytes))?;
                    }
                }
                _ => reader.skip(3)?,
            }
            Some(())
        })
    }

    /// One of a delta's `tool_calls`: the length of its `function.arguments`.
    fn tool_call(&mut self, content_bytes: &mut usize) -> Option<()> {
        let mut seen = 0;
        self.object(5, |reader, key| {
            if key != b"function" {
                return reader.skip(5);
            }
            once(&mut seen, 0)?;
            if reader.null()? {
                return Some(());
            }
            let mut function_seen = 0;
            reader.object(6, |reader, key| {
                if key != b"arguments" {
                    return reader.skip(6);
                }
                once(&mut function_seen, 0)?;
                *content_bytes += reader.text_len()?;
                Some(())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{ChunkFacts, STRING_STOPS, read, stops};
    use crate::observer::parsed;

    type Read = Option<(ChunkFacts, Vec<String>)>;

    fn fast(data: &str) -> Read {
        let mut reasons = Vec::new();
        read(data, &mut reasons).map(|facts| (facts, reasons))
    }

    fn serde(data: &str) -> Read {
        let mut reasons = Vec::new();
        parsed(data, &mut reasons).map(|facts| (facts, reasons))
    }

    const USAGE: &str = r#"{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"completion_tokens_details":{"reasoning_tokens":1}}"#;

    /// What OpenAI sends, chat and Responses API.
    fn openai_chunks() -> Vec<String> {
        let id = r#""id":"chatcmpl-1","object":"chat.completion.chunk","created":1714000000,"model":"gpt-5.4""#;
        vec![
            format!(r#"{{{id},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}],"usage":null}}"#),
            format!(r#"{{{id},"choices":[{{"index":0,"delta":{{"content":"Hel\"lo\n"}},"logprobs":null,"finish_reason":null}}]}}"#),
            format!(r#"{{{id},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"usage":null}}"#),
            format!(r#"{{{id},"choices":[],"usage":{USAGE}}}"#),
            format!(r#"{{{id},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"f","arguments":"{{\"a\":1}}"}}}}]}},"finish_reason":null}}]}}"#),
            format!(r#" {{ {id} , "choices" : [ {{ "delta" : {{ "content" : "x" }} , "finish_reason" : "length" }} , {{ "delta" : null }} ] , "n" : -1.5e+3 }} "#),
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi\t","sequence_number":4}"#.to_owned(),
            format!(r#"{{"type":"response.completed","response":{{"id":"resp_1","status":"completed","output":[],"usage":{USAGE}}},"sequence_number":9}}"#),
            r#"{"type":"response.failed","response":{"id":"resp_1","error":{"code":"server_error"},"usage":null}}"#.to_owned(),
            r#"{"type":"error","code":"provider_error","message":"failed","param":null}"#.to_owned(),
            r#"{"error":{"message":"failed","type":"server_error","param":null,"code":null}}"#.to_owned(),
        ]
    }

    #[test]
    fn eight_bytes_at_a_time_find_the_first_stop() {
        for position in 0..8 {
            for byte in 0..=255u8 {
                // Every byte after `position` a stop too, or none.
                for rest in [b'a', b'"', 0x7f, 0xff, 0x1f] {
                    let mut word = [b'a'; 8];
                    word[position] = byte;
                    word[position + 1..].fill(rest);
                    let found = stops(u64::from_le_bytes(word));
                    let first = word.iter().position(|&b| STRING_STOPS[usize::from(b)]);
                    let found = (found != 0).then(|| (found.trailing_zeros() / 8) as usize);
                    assert_eq!(found, first, "{word:?}");
                }
            }
        }
    }

    #[test]
    fn openai_chunks_are_read_in_one_pass_as_serde_reads_them() {
        for chunk in openai_chunks() {
            let read = fast(&chunk);
            assert!(read.is_some(), "left to serde: {chunk}");
            assert_eq!(read, serde(&chunk), "{chunk}");
        }
        let (facts, reasons) = fast(&openai_chunks()[5]).unwrap();
        assert_eq!(
            (facts.content_bytes, reasons),
            (1, vec!["length".to_owned()])
        );
        let (facts, _) = fast(&openai_chunks()[1]).unwrap();
        assert_eq!(facts.content_bytes, "Hel\"lo\n".len());
    }

    #[test]
    fn what_it_would_not_read_as_serde_does_is_left_to_serde() {
        for chunk in [
            r#"{"choic\u0065s":[{"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[{"finish_reason":"stop","finish_reason":"stop"}]}"#,
            r#"{"choices":{}}"#,
            r#"{"choices":[1]}"#,
            r#"{"type":5}"#,
            r#"{"choices":[],}"#,
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"[[],null]"#,
            "{\"delta\":\"a\u{1}b\"}",
            r#"{"choices":[]} x"#,
            r#"{"usage":{"prompt_tokens":"nine"}}"#,
        ] {
            assert_eq!(fast(chunk), None, "{chunk}");
        }
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        assert_eq!(fast(&deep), None);
        assert!(serde(&deep).is_some());
    }

    /// Characters that change a JSON text's meaning (or are whitespace, or a control character
    /// that is not), for the edits below.
    const EDITS: &[u8] = b"{}[]\",:\\ \t\n\r\x010-.eEnu";

    proptest! {
        /// Any edit of a real chunk is either left to serde or read as serde reads it.
        #[test]
        fn an_edited_chunk_is_read_as_serde_reads_it_or_left_to_serde(
            which in 0..11usize,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<prop::sample::Index>()), 1..4),
        ) {
            let mut bytes = openai_chunks()[which].clone().into_bytes();
            for (at, action, byte) in edits {
                let at = at.index(bytes.len() + 1);
                let byte = *byte.get(EDITS);
                match action {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => {}
                }
            }
            let Ok(chunk) = String::from_utf8(bytes) else { return Ok(()) };
            if let Some(read) = fast(&chunk) {
                prop_assert_eq!(Some(read), serde(&chunk), "{}", chunk);
            }
        }
    }
}
