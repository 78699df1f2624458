//! From a parsed request to a model, or the error that explains why not.

use serde_json::{Value, json};
use tollgate_core::{ChatRequest, ErrorKind, Fallbacks, Field, GatewayError, Lifecycle, Principal};

use crate::catalog::{Model, ModelCatalog, Resolution};

/// The model a request may use, whether its name was an alias, and its fallbacks (the ones it
/// named, else the catalog's).
pub(crate) struct Admitted<'a> {
    pub(crate) model: &'a Model,
    pub(crate) via_alias: bool,
    pub(crate) fallbacks: Fallbacks,
}

pub(crate) fn decide<'a>(
    catalog: &'a ModelCatalog,
    chat: &ChatRequest,
    endpoint: &str,
    principal: Option<&Principal>,
) -> Result<Admitted<'a>, GatewayError> {
    let requested = match (chat.model(), chat.model_field()) {
        // No model can have an empty id: it is a missing one, not an unknown one.
        (Some(""), _) => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "You must provide a model parameter: the `model` field is empty.",
            )
            .param("model"));
        }
        (Some(model), _) => model,
        (None, Field::Invalid(found)) => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                format!("`model` must be a string, but it is {found}. Send the model's id, like \"gpt-5.4\"."),
            )
            .param("model"));
        }
        (None, _) => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "You must provide a model parameter: the `model` field is missing.",
            )
            .param("model"));
        }
    };
    let (model, via_alias) = admit(catalog, requested, endpoint, principal, "model")?;
    let fallbacks = match chat.fallbacks_field() {
        // The catalog's own fallbacks, less those this caller may not use here: usually all
        // of them, as one shared list.
        Field::Absent => {
            let usable = |fallback: &Model| {
                principal.is_none_or(|p| p.allows_model(fallback.id())) && fallback.serves(endpoint)
            };
            if model
                .fallbacks
                .iter()
                .all(|&index| usable(catalog.at(index)))
            {
                model.fallback_list.clone()
            } else {
                Fallbacks(
                    model
                        .fallbacks
                        .iter()
                        .map(|&index| catalog.at(index))
                        .filter(|fallback| usable(fallback))
                        .map(|fallback| fallback.info.clone())
                        .collect(),
                )
            }
        }
        Field::Invalid(found) => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                format!("`fallbacks` must be an array of model ids, but it is {found}."),
            )
            .param("fallbacks"));
        }
        Field::Value(names) => {
            let mut fallbacks = Vec::with_capacity(names.len());
            for (index, name) in names.iter().enumerate() {
                let param = format!("fallbacks[{index}]");
                let Field::Value(name) = name else {
                    return Err(GatewayError::new(
                        ErrorKind::InvalidRequest,
                        format!("`{param}` must be a model id string."),
                    )
                    .param(param));
                };
                let (fallback, _) = admit(catalog, &chat.text(*name), endpoint, principal, &param)?;
                fallbacks.push(fallback.info.clone());
            }
            Fallbacks(fallbacks.into())
        }
    };
    Ok(Admitted {
        model,
        via_alias,
        fallbacks,
    })
}

/// Resolves one requested name (the `model`, or one of the `fallbacks`, named by `param`) and
/// checks that the caller may use it here.
fn admit<'a>(
    catalog: &'a ModelCatalog,
    requested: &str,
    endpoint: &str,
    principal: Option<&Principal>,
    param: &str,
) -> Result<(&'a Model, bool), GatewayError> {
    let (model, via_alias) = match catalog.resolve(requested) {
        Resolution::Found { model, via_alias } => (model, via_alias),
        Resolution::NotFound { suggestion } => {
            return Err(not_found(requested, suggestion).param(param.to_owned()));
        }
    };
    if let Lifecycle::Retired {
        retired_on,
        replacement,
    } = &model.info.lifecycle
    {
        let mut message = format!("Model \"{}\" was retired on {retired_on}.", model.id());
        if let Some(replacement) = replacement {
            message.push_str(&format!(" Use \"{replacement}\" instead."));
        }
        return Err(GatewayError::new(ErrorKind::ModelRetired, message)
            .param(param.to_owned())
            .code("model_retired")
            .detail("model", model.id())
            .detail(
                "replacement_model",
                replacement.as_deref().map_or(Value::Null, Value::from),
            )
            .detail("retirement_date", retired_on.to_string()));
    }
    if let Some(principal) = principal
        && !principal.allows_model(model.id())
    {
        return Err(GatewayError::new(
            ErrorKind::Forbidden,
            format!(
                "Your API key may not use the model \"{}\". Use one of the models GET /v1/models lists, or ask for access.",
                model.id()
            ),
        )
        .param(param.to_owned())
        .code("model_not_allowed")
        .detail("model", model.id()));
    }
    if !model.serves(endpoint) {
        return Err(unsupported(model, endpoint, param));
    }
    Ok((model, via_alias))
}

fn not_found(requested: &str, suggestion: Option<&str>) -> GatewayError {
    let shown = shorten(requested);
    let error = match suggestion {
        Some(suggestion) => {
            let mut message =
                format!("The model \"{shown}\" does not exist. Did you mean \"{suggestion}\"?");
            if suggestion.eq_ignore_ascii_case(requested) {
                message.push_str(" Model slugs are case-sensitive and lowercase.");
            }
            GatewayError::new(ErrorKind::ModelNotFound, message).detail("suggestion", suggestion)
        }
        None => GatewayError::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model \"{shown}\" does not exist. List the available models with GET /v1/models."
            ),
        ),
    };
    error
        .param("model")
        .code("model_not_found")
        .detail("model", shown)
}

fn unsupported(model: &Model, endpoint: &str, param: &str) -> GatewayError {
    // The supported endpoint that shares the longest path prefix with the attempted one:
    // /v1/images/edits suggests /v1/images/generations over /v1/chat/completions.
    let suggested = model
        .endpoints
        .iter()
        .max_by_key(|candidate| common_prefix(candidate, endpoint))
        .map(|e| &**e)
        .unwrap_or(crate::catalog::CHAT_COMPLETIONS);
    let mut message = format!(
        "The model \"{}\" does not support {}. Use {suggested} instead.",
        model.id(),
        shorten(endpoint)
    );
    if let Some(hint) = &model.hint {
        message.push(' ');
        message.push_str(hint);
    }
    let mut error = GatewayError::new(ErrorKind::UnsupportedOperation, message)
        .param(param.to_owned())
        .detail("param", param)
        .detail("model", model.id())
        .detail("attempted_endpoint", shorten(endpoint))
        .detail(
            "supported_endpoints",
            json!(model.endpoints.iter().map(|e| &**e).collect::<Vec<_>>()),
        )
        .detail("suggested_endpoint", suggested);
    if let Some(hint) = &model.hint {
        error = error.detail("hint", &**hint);
    }
    if let Some(docs) = &model.docs_url {
        error = error.detail("docs_url", &**docs);
    }
    error
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// The client's text as echoed in a message: at most 200 characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
