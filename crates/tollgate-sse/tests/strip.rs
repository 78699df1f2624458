//! Strip mode over a stream split anywhere: the client gets every byte but the usage-only
//! event's, in order, and no empty frame.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Body;
use proptest::prelude::*;
use tollgate_sse::SseBody;

#[path = "frames/mod.rs"]
mod frames;
use frames::Frames;

const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";

/// The events of a stream: chunks, a comment, a multi-line event, the usage-only chunk and
/// `[DONE]`, with `\r\n` line endings when `crlf`.
fn stream(crlf: bool) -> (String, String) {
    let kept = [
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"one\"}}],\"usage\":null}\n\n",
        ": a comment\n\n",
        "event: message\ndata: {\"choices\":\ndata: [{\"delta\":{\"content\":\"two\"}}]}\n\n",
    ];
    let done = "data: [DONE]\n\n";
    let ending = |text: &str| {
        if crlf {
            text.replace('\n', "\r\n")
        } else {
            text.to_owned()
        }
    };
    let whole = ending(&format!("{}{USAGE}{done}", kept.concat()));
    let expected = ending(&format!("{}{done}", kept.concat()));
    (whole, expected)
}

/// The frames the client receives when the upstream sends `whole` cut at `cuts` (ascending;
/// cuts outside it, or not after the one before, are left out).
fn forwarded(whole: &str, cuts: &[usize]) -> Vec<Bytes> {
    let mut frames = VecDeque::new();
    let mut start = 0;
    for &cut in cuts {
        if cut <= start || cut >= whole.len() {
            continue;
        }
        frames.push_back(Bytes::copy_from_slice(&whole.as_bytes()[start..cut]));
        start = cut;
    }
    frames.push_back(Bytes::copy_from_slice(&whole.as_bytes()[start..]));
    let body = SseBody::stream(Frames(frames), Vec::new(), None, true, None);
    let mut body = std::pin::pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        out.push(frame.unwrap().into_data().unwrap());
    }
    out
}

#[test]
fn an_unsplit_stream_loses_only_its_usage_event() {
    for crlf in [false, true] {
        let (whole, expected) = stream(crlf);
        assert_eq!(forwarded(&whole, &[]).concat(), expected.as_bytes());
    }
}

proptest! {
    #[test]
    fn any_split_forwards_everything_but_the_usage_event(
        mut cuts in proptest::collection::vec(0..400usize, 0..8),
        crlf in any::<bool>(),
    ) {
        let (whole, expected) = stream(crlf);
        cuts.sort_unstable();
        let frames = forwarded(&whole, &cuts);
        prop_assert_eq!(String::from_utf8(frames.concat()).unwrap(), expected);
        prop_assert!(frames.iter().all(|frame| !frame.is_empty()));
    }
}
