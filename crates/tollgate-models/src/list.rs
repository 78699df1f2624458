use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::Full;
use tollgate_core::{ErrorKind, GatewayError, Principal};
use tower_service::Service;

use crate::LiveCatalog;
use crate::catalog::model_object;

/// `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape, from the catalog: retired
/// models left out, and only the models the caller's
/// [`Principal`](tollgate_core::Principal) may use when it has a list. The unfiltered listing
/// is rendered once.
///
/// ```
/// use http::Request;
/// use http_body_util::BodyExt;
/// use tollgate_models::{ListModels, ModelCatalog};
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// let catalog = ModelCatalog::from_json(r#"{"models": [
///     {"id": "gpt-5.4", "owned_by": "openai", "context_window": 400000, "max_output_tokens": 128000}
/// ]}"#).unwrap();
/// let request = Request::get("/v1/models").body(()).unwrap();
/// let response = ListModels::new(catalog).oneshot(request).await.unwrap();
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(body, r#"{"data":[{"created":0,"id":"gpt-5.4","object":"model","owned_by":"openai"}],"object":"list"}"#);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ListModels {
    catalog: LiveCatalog,
}

impl ListModels {
    /// Lists `catalog` (a [`ModelCatalog`](crate::ModelCatalog), or a [`LiveCatalog`] that is
    /// replaced while serving).
    pub fn new(catalog: impl Into<LiveCatalog>) -> Self {
        ListModels {
            catalog: catalog.into(),
        }
    }

    fn answer<B>(&self, request: &Request<B>) -> Result<Bytes, GatewayError> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "The models endpoint only answers GET and HEAD.",
            ));
        }
        let principal = request.extensions().get::<Principal>();
        let allowed = principal.and_then(Principal::allowed_models);
        let path = request.uri().path().trim_end_matches('/');
        let snapshot = self.catalog.snapshot();
        let Some(id) = path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) else {
            return Ok(match allowed {
                None => snapshot.listing.clone(),
                Some(allowed) => snapshot.catalog.listing(Some(allowed)),
            });
        };
        match snapshot.catalog.get(id) {
            Some(model)
                if !model.info.lifecycle.is_retired()
                    && principal.is_none_or(|p| p.allows_model(id)) =>
            {
                Ok(Bytes::from(model_object(model).to_string()))
            }
            _ => Err(GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model \"{id}\" does not exist. List the available models with GET /v1/models."),
            )
            .param("model")
            .code("model_not_found")),
        }
    }
}

impl<B> Service<Request<B>> for ListModels {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(match self.answer(&request) {
            Ok(body) => {
                let mut response = Response::new(Full::new(body));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(error) => error.into_response(),
        }))
    }
}
