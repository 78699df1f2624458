//! The prompts of embeddings (`input`) and legacy completions (`prompt`): a string, an array of
//! token ids, or an array of strings or of token-id arrays, each item an input of its own. Their
//! shape, and the tokens of each input within the context window.

use tollgate_core::chat::{Input, InputItem, JsonType, StrSpan};
use tollgate_core::{ChatRequest, Field, GatewayError, PromptTokens};

use crate::tokens::Encoding;
use crate::validate::{invalid, missing, wrong_type};

/// What a model reads as one input.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece {
    /// A string.
    Text(StrSpan),
    /// Token ids: how many.
    Tokens(usize),
}

/// One input and where it stands: `None` for a `param` that is a single input, else its index
/// in the array.
pub(crate) type Located = (Option<usize>, Piece);

/// The param naming one input: `input`, or `input[3]`.
pub(crate) fn param_of(param: &str, index: Option<usize>) -> String {
    match index {
        Some(index) => format!("{param}[{index}]"),
        None => param.to_owned(),
    }
}

const EXPECTED: &str =
    "a string, an array of strings, an array of token ids or an array of token-id arrays";
const EXPECTED_ITEM: &str = "a string, a token id or an array of token ids";

/// The inputs `field` holds, once it is present and every item is of the first one's kind
/// (strings, token ids, or arrays of token ids); an empty array is refused.
pub(crate) fn pieces(param: &str, field: &Field<Input>) -> Result<Vec<Located>, GatewayError> {
    let items = match field {
        Field::Absent => return Err(missing(param)),
        Field::Invalid(found) => return Err(wrong_type(param, EXPECTED, *found)),
        Field::Value(Input::Text(text)) => return Ok(vec![(None, Piece::Text(*text))]),
        Field::Value(Input::Tokens(count)) => return Ok(vec![(None, Piece::Tokens(*count))]),
        Field::Value(Input::Items(items)) => items,
    };
    let Some(first) = items.first() else {
        return Err(invalid(
            param,
            format!(
                "Invalid '{param}': empty array. Expected an array with at least one item, but got an empty array instead."
            ),
        ));
    };
    let mut pieces = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let piece = match (first, item) {
            (InputItem::Text(_), InputItem::Text(text)) => Piece::Text(*text),
            (InputItem::Tokens(_), InputItem::Tokens(count)) => Piece::Tokens(*count),
            // Token ids among the items: the array is one input, and an item is not a token id.
            (InputItem::Token, InputItem::Token) => continue,
            _ => return Err(unexpected(param, index, first, item)),
        };
        pieces.push((Some(index), piece));
    }
    Ok(pieces)
}

/// Why `item`, at `index`, does not belong in an array whose first item is `first`.
fn unexpected(param: &str, index: usize, first: &InputItem, item: &InputItem) -> GatewayError {
    let at = format!("{param}[{index}]");
    let expected = match first {
        _ if index == 0 => EXPECTED_ITEM,
        InputItem::Text(_) => "a string, like the items before it",
        InputItem::Tokens(_) => "an array of token ids, like the items before it",
        _ => "a token id, like the items before it",
    };
    match item {
        // A number that is not a token id, or an array holding something else.
        InputItem::Other(JsonType::Number) => invalid(
            &at,
            format!("Invalid '{at}': a token id is a non-negative integer."),
        ),
        InputItem::Other(JsonType::Array) => invalid(
            &at,
            format!("Invalid '{at}': an array of token ids holds only non-negative integers."),
        ),
        _ => wrong_type(&at, expected, item.json_type()),
    }
}

/// The prompt tokens of `pieces`, each within the context window once `completion` tokens are
/// set aside, when the window is known: a text's bytes bound its tokens, and the tokenizer
/// counts it only when they do not fit; token ids count exactly. `too_long` answers an input
/// over the window, given its index and its tokens. Exact when every input was counted.
pub(crate) fn fit(
    chat: &ChatRequest,
    pieces: &[Located],
    window: Option<(u64, u64)>,
    encoding: impl Fn() -> Encoding,
    too_long: impl Fn(Option<usize>, u64) -> GatewayError,
) -> Result<PromptTokens, GatewayError> {
    let fits = |tokens: u64| {
        window.is_none_or(|(context_window, completion)| {
            tokens.saturating_add(completion) <= context_window
        })
    };
    let mut total = 0u64;
    let mut exact = true;
    for &(index, piece) in pieces {
        let (tokens, counted) = match piece {
            Piece::Tokens(count) => (count as u64, true),
            Piece::Text(text) => {
                let bound = text.raw_len() as u64;
                if fits(bound) {
                    (bound, false)
                } else {
                    (encoding().count(&chat.text(text)), true)
                }
            }
        };
        if !fits(tokens) {
            return Err(too_long(index, tokens));
        }
        total = total.saturating_add(tokens);
        exact &= counted;
    }
    Ok(if exact {
        PromptTokens::Exact(total)
    } else {
        PromptTokens::AtMost(total)
    })
}
