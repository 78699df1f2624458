//! The edits a view splices into its body, against the same edits made on serde_json's reading
//! of the body: the spliced body must stay JSON, read as the edited reading, and the edited
//! view (whose spans moved with the splice) must agree with it.
//!
//! Shared by the property tests (`tests/properties.rs`) and the fuzz targets (`fuzz/`), which
//! include this file by path, next to `view.rs` as `crate::view`.

use serde_json::{Map, Value, json};
use tollgate_core::{ChatRequest, Field};

use crate::view::{assert_agrees, check_parse, strict_object};

#[derive(Clone, Copy, Debug)]
enum Edit {
    /// `with_model`
    Model,
    /// `with_include_usage`
    IncludeUsage,
    /// `without_fallbacks`
    RemoveFallbacks,
}

impl Edit {
    fn apply(self, chat: &ChatRequest, model: &str) -> ChatRequest {
        match self {
            Edit::Model => {
                let edited = chat.with_model(model);
                let has_model = matches!(chat.model_field(), Field::Value(_));
                assert_eq!(
                    edited.is_some(),
                    has_model,
                    "with_model on {:?}",
                    chat.model_field()
                );
                edited.unwrap_or_else(|| chat.clone())
            }
            Edit::IncludeUsage => chat.with_include_usage(),
            Edit::RemoveFallbacks => chat.without_fallbacks(),
        }
    }

    /// The edit on serde_json's reading.
    fn expect(self, object: &Map<String, Value>, model: &str) -> Map<String, Value> {
        let mut edited = object.clone();
        match self {
            Edit::Model => {
                if let Some(Value::String(current)) = edited.get_mut("model") {
                    model.clone_into(current);
                }
            }
            Edit::IncludeUsage => match edited.get_mut("stream_options") {
                Some(Value::Object(options)) => {
                    options.insert("include_usage".into(), Value::Bool(true));
                }
                // Another type is the client's to fix: left as it is.
                Some(options) if !options.is_null() => {}
                _ => {
                    edited.insert("stream_options".into(), json!({"include_usage": true}));
                }
            },
            Edit::RemoveFallbacks => {
                edited.remove("fallbacks");
            }
        }
        edited
    }
}

/// The orders edits are chained in: each edit alone, and all three in two orders.
const CHAINS: [&[Edit]; 5] = [
    &[Edit::Model],
    &[Edit::IncludeUsage],
    &[Edit::RemoveFallbacks],
    &[Edit::Model, Edit::IncludeUsage, Edit::RemoveFallbacks],
    &[Edit::RemoveFallbacks, Edit::IncludeUsage, Edit::Model],
];

/// Checks the parse of `body` (see `check_parse`), then every chain of edits, `model` being
/// the model `with_model` writes.
pub fn check_edits(body: &[u8], model: &str) {
    let Some(chat) = check_parse(body) else {
        return;
    };
    let object = strict_object(body);
    for chain in CHAINS {
        let mut view = chat.clone();
        let mut reading = object.clone();
        for &edit in chain {
            let edited = edit.apply(&view, model);
            let step = format!("{edit:?} in {chain:?}");
            // Whatever the body, the spliced one is JSON the view reads.
            let reparsed = ChatRequest::parse(edited.body().clone());
            assert!(
                reparsed.is_ok(),
                "{step}: {reparsed:?} from {:?}",
                edited.body()
            );
            if let Some(before) = &reading {
                let expected = edit.expect(before, model);
                let read = strict_object(edited.body());
                assert_eq!(
                    read.as_ref(),
                    Some(&expected),
                    "{step}: {:?}",
                    edited.body()
                );
                if expected == *before && !matches!(edit, Edit::Model) {
                    assert_eq!(
                        edited.body(),
                        view.body(),
                        "{step} changed nothing, but the bytes"
                    );
                }
                assert_agrees(&edited, &expected);
                reading = Some(expected);
            }
            view = edited;
        }
    }
}
