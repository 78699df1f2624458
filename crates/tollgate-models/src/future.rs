use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, BufferRequest, Fallbacks, GatewayError, Principal, ResponseBody};
use tower_service::Service;

use crate::decide::decide;
use crate::layer::Shared;

pin_project! {
    /// The response future of [`ModelResolution`](crate::ModelResolution).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        shared: Arc<Shared>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Buffering { #[pin] buffer: BufferRequest<B>, inner: S },
        Inner { #[pin] future: S::Future, model: Option<usize> },
        Rejected { error: Option<GatewayError> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn passthrough(future: S::Future, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                model: None,
            },
            shared,
        }
    }

    pub(crate) fn buffering(buffer: BufferRequest<B>, inner: S, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            state: State::Buffering { buffer, inner },
            shared,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future, model } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(index) = *model {
                        let headers = response.headers_mut();
                        for (name, value) in &this.shared.catalog.at(index).headers {
                            if !headers.contains_key(name) {
                                headers.insert(name.clone(), value.clone());
                            }
                        }
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or_else(GatewayError::internal);
                    return Poll::Ready(Ok(error.into_response().map(ResponseBody::from)));
                }
                StateProj::Buffering { buffer, inner } => match ready!(buffer.poll(cx)) {
                    Err(error) => State::Rejected {
                        error: Some(GatewayError::from(&error)),
                    },
                    Ok((_, Err(error))) => State::Rejected {
                        error: Some(GatewayError::from(&error)),
                    },
                    Ok((mut request, Ok(chat))) => {
                        let catalog = &this.shared.catalog;
                        let endpoint = request.uri().path();
                        let principal = request.extensions().get::<Principal>();
                        match decide(catalog, &chat, endpoint, principal) {
                            Err(error) => State::Rejected { error: Some(error) },
                            Ok(admitted) => {
                                let model = admitted.model;
                                if admitted.via_alias
                                    && let Some(rewritten) = chat.with_model(model.id())
                                {
                                    rewritten.install(&mut request);
                                }
                                request.extensions_mut().insert(model.info.clone());
                                if !admitted.fallbacks.is_empty() {
                                    let fallbacks =
                                        admitted.fallbacks.iter().map(|m| m.info.clone()).collect();
                                    request.extensions_mut().insert(Fallbacks(fallbacks));
                                }
                                State::Inner {
                                    model: Some(model.index),
                                    future: inner.call(request),
                                }
                            }
                        }
                    }
                },
            };
            this.state.set(next);
        }
    }
}
