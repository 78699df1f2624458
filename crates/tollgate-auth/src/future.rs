use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, ErrorKind, GatewayError, ResponseBody};
use tower_service::Service;

use crate::KeyRecord;
use crate::credentials::{Failure, Sources};

pin_project! {
    /// The response future of [`BearerAuth`](crate::BearerAuth).
    pub struct ResponseFuture<S, L, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, L, ReqBody>,
        sources: Arc<Sources>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, L, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Lookup {
            #[pin]
            lookup: L,
            request: Option<Request<ReqBody>>,
            inner: S,
        },
        Inner { #[pin] future: S::Future },
        Rejected { error: Option<GatewayError> },
    }
}

impl<S, L, ReqBody> ResponseFuture<S, L, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn reject(failure: Failure, sources: Arc<Sources>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                error: Some(failure.into_error(&sources)),
            },
            sources,
        }
    }

    pub(crate) fn lookup(
        lookup: L,
        request: Request<ReqBody>,
        inner: S,
        sources: Arc<Sources>,
    ) -> Self {
        ResponseFuture {
            state: State::Lookup {
                lookup,
                request: Some(request),
                inner,
            },
            sources,
        }
    }
}

impl<S, L, ReqBody, ResBody> Future for ResponseFuture<S, L, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    L: Future<Output = Result<Option<KeyRecord>, BoxError>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    return future
                        .poll(cx)
                        .map_ok(|response| response.map(ResponseBody::inner));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or_else(GatewayError::internal);
                    return Poll::Ready(Ok(rejection(error)));
                }
                StateProj::Lookup {
                    lookup,
                    request,
                    inner,
                } => match ready!(lookup.poll(cx)) {
                    Ok(Some(record)) => match check(&record) {
                        Ok(()) => {
                            let mut request = request.take().expect("polled after completion");
                            tracing::Span::current().record("key_id", record.principal.key_id());
                            request.extensions_mut().insert(record.principal);
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(failure) => State::Rejected {
                            error: Some(failure.into_error(this.sources)),
                        },
                    },
                    Ok(None) => State::Rejected {
                        error: Some(Failure::Unknown.into_error(this.sources)),
                    },
                    Err(error) => {
                        tracing::error!(error = %error, "key store lookup failed");
                        State::Rejected {
                            error: Some(GatewayError::new(
                                ErrorKind::ServiceUnavailable,
                                "The API key could not be checked right now. Retry after a short delay.",
                            )),
                        }
                    }
                },
            };
            this.state.set(next);
        }
    }
}

fn check(record: &KeyRecord) -> Result<(), Failure> {
    if record.revoked {
        Err(Failure::Revoked)
    } else if record.expires_at.is_some() && record.is_expired(SystemTime::now()) {
        Err(Failure::Expired)
    } else {
        Ok(())
    }
}

fn rejection<B>(error: GatewayError) -> Response<ResponseBody<B>> {
    let auth_failure = error.kind == ErrorKind::Auth;
    let mut response = error.into_response().map(ResponseBody::from);
    if auth_failure {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
