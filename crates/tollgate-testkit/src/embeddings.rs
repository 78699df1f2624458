//! `POST /v1/embeddings`: one deterministic unit vector per input.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Rejection};
use crate::tokens::{Text, texts};
use crate::{EMBEDDING_DIMENSIONS, MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS};

/// The fields of an embeddings request the mock reads beyond `model`.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    dimensions: Option<u64>,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    // f32, so the JSON carries the shortest decimal of each (serde_json widens a `Value`'s
    // floats to f64 and their seventeen digits).
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub(crate) fn answer(request: &ChatRequest) -> Result<Answer, Rejection> {
    let fields: Fields<'_> =
        serde_json::from_slice(request.body()).map_err(Rejection::unreadable)?;
    let input = fields
        .input
        .ok_or_else(|| Rejection::bad_request("Missing required parameter: 'input'."))?;
    let inputs = texts("input", input)?;
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(Rejection::bad_request(format!(
            "'input' has {} items; at most {MAX_EMBEDDING_INPUTS} are allowed.",
            inputs.len()
        )));
    }
    let dimensions = fields.dimensions.map_or(EMBEDDING_DIMENSIONS, |asked| {
        usize::try_from(asked).map_or(MAX_EMBEDDING_DIMENSIONS, |asked| {
            asked.clamp(1, MAX_EMBEDDING_DIMENSIONS)
        })
    });
    let prompt_tokens = inputs.iter().map(|text| text.tokens).sum();
    let list = EmbeddingList {
        object: "list",
        data: inputs
            .iter()
            .enumerate()
            .map(|(index, text)| Embedding {
                object: "embedding",
                index,
                embedding: embedding(text, dimensions),
            })
            .collect(),
        model: request.model().unwrap_or("mock"),
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    let body = serde_json::to_vec(&list).expect("strings, numbers and floats serialize");
    Ok(Answer::Json(Bytes::from(body)))
}

/// A unit vector derived from the text's JSON alone, so the same input always embeds the same.
fn embedding(text: &Text<'_>, dimensions: usize) -> Vec<f32> {
    // FNV-1a of the text, then a SplitMix64 sequence from it: cheap, and well spread.
    let mut state = text
        .json
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut components: Vec<f32> = (0..dimensions)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // The top 24 bits, as a float in [-1, 1).
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = components.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        components.iter_mut().for_each(|x| *x /= norm);
    }
    components
}
