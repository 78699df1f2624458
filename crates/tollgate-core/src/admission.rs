//! The one shape of every layer that decides on a request before its inner service sees it
//! (auth, the catalog, the guard, rate limits, the balance gate, SSE usage injection).
//!
//! A layer supplies its check as an [`Admission`]: [`start`](Admission::start) decides at once
//! or names what it waits for (the body, a key lookup, a backend's answer), and
//! [`resume`](Admission::resume) decides once that arrived. Both see the request by reference
//! (they may edit it: add extensions, rewrite the body); it moves only to the inner service.
//! Either way the decision is a [`Verdict`]: admit with a ticket for the response side, or
//! reject with a [`GatewayError`]. The ticket ([`Respond`]) shapes what the client gets: the
//! inner response (with headers added, or its body wrapped) or the rendered rejection.
//!
//! Core owns the rest, once for every layer: [`AdmissionFuture`] (named and unboxed), handing
//! the request to the inner service that was polled ready when the check decided at once, and
//! otherwise swapping in a clone of the inner service so that the ready one serves the request
//! later. [`Start::after`] polls a backend's future once on the spot, so that an in-memory
//! answer takes the direct way; [`Start::with_body`] does the same for a body an earlier layer
//! has read already. [`admission_service!`](crate::admission_service) writes the service's
//! accessors and its `tower::Service` impl.
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::Ready;
//! use http::{Request, Response};
//! use tollgate_core::admission::{Admission, AdmissionFuture, Start, Verdict};
//! use tollgate_core::{Body, ErrorKind, GatewayError};
//! use tower::{ServiceExt, service_fn};
//!
//! /// Admits requests that carry an `x-tenant` header.
//! #[derive(Clone)]
//! struct RequireTenant;
//!
//! impl<B> Admission<B> for RequireTenant {
//!     type Ticket = ();
//!     type Pending = Ready<Verdict<()>>;
//!
//!     fn start(&self, request: &mut Request<B>) -> Start<(), Self::Pending> {
//!         Start::Decided(if request.headers().contains_key("x-tenant") {
//!             Verdict::Admit(())
//!         } else {
//!             Verdict::Reject(GatewayError::new(ErrorKind::Forbidden, "Name your tenant."), ())
//!         })
//!     }
//!
//!     fn resume(&self, verdict: Verdict<()>, _: &mut Request<B>) -> Verdict<()> {
//!         verdict
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let mut inner = service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
//! let response = AdmissionFuture::new(&RequireTenant, &mut inner, Request::new(Body::empty())).await.unwrap();
//! assert_eq!(response.status(), 403);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{
    BodyArrived, BodyLimit, BoxError, ChatRequest, GatewayError, ParseError, ReadBody,
    ResponseBody, read_body,
};

/// A layer's check of a request, run before the inner service sees it.
///
/// See the [module docs](self) for an example.
pub trait Admission<B> {
    /// What the request side hands to the response side: headers to add, a body to wrap, a
    /// reservation to settle. `()` when there is nothing.
    type Ticket;

    /// What a check that cannot decide at once waits for.
    type Pending: Future;

    /// Decides at once, or says what to wait for.
    fn start(&self, request: &mut Request<B>) -> Start<Self::Ticket, Self::Pending>;

    /// Decides once what [`start`](Admission::start) waited for has arrived.
    fn resume(
        &self,
        arrived: <Self::Pending as Future>::Output,
        request: &mut Request<B>,
    ) -> Verdict<Self::Ticket>;
}

/// How a check begins: decided, or waiting.
#[allow(
    clippy::large_enum_variant,
    reason = "lives for one call and is matched at once; boxing would allocate per request"
)]
pub enum Start<T, P> {
    /// The check decided without waiting.
    Decided(Verdict<T>),
    /// The check waits for `P`, then [`Admission::resume`] decides.
    Waiting(P),
}

/// A check's decision.
pub enum Verdict<T> {
    /// The request goes on to the inner service; the ticket meets its response.
    Admit(T),
    /// The client gets this error (rendered by the ticket) and the inner service sees nothing.
    Reject(GatewayError, T),
}

impl<T, P> fmt::Debug for Start<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Decided(verdict) => f.debug_tuple("Decided").field(verdict).finish(),
            Start::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

impl<T> fmt::Debug for Verdict<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Admit(_) => f.write_str("Admit"),
            Verdict::Reject(error, _) => f.debug_tuple("Reject").field(error).finish(),
        }
    }
}

impl<T, F: Future + Unpin, X> Start<T, Carry<F, X>> {
    /// Waits for `future` (a key lookup, a backend's answer) carrying `carried` to
    /// [`resume`](Admission::resume); when `future` is ready at once, as an in-memory
    /// backend's is, decides on the spot instead.
    // Always inlined, like the checks' `start` and `resume`: what is carried then moves once
    // instead of through every enum on the way.
    #[inline(always)]
    pub fn after<A, B>(admission: &A, request: &mut Request<B>, mut future: F, carried: X) -> Self
    where
        A: Admission<B, Ticket = T, Pending = Carry<F, X>>,
    {
        match poll_now(&mut future) {
            Some(output) => Start::Decided(admission.resume((output, carried), request)),
            None => Start::Waiting(Carry {
                future,
                carried: Some(Box::new(carried)),
            }),
        }
    }
}

/// Polls `future` once, on the spot, with a waker that does nothing: the output of a future
/// that is ready at once (an in-memory backend's), or `None` for one to await properly.
///
/// ```
/// use tollgate_core::admission::poll_now;
///
/// assert_eq!(poll_now(&mut std::future::ready(7)), Some(7));
/// assert_eq!(poll_now(&mut std::future::pending::<u8>()), None);
/// ```
#[inline(always)]
pub fn poll_now<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    match Pin::new(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

impl<T, B> Start<T, ReadBody<B>>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    /// Waits for the request's body ([`read_body`], under `limit`); when an earlier layer has
    /// read and parsed it already, decides on the spot instead. Either way
    /// [`resume`](Admission::resume) gets a [`BodyArrived`] to [parse](BodyArrived::parse).
    pub fn with_body<A>(admission: &A, request: &mut Request<B>, limit: BodyLimit) -> Self
    where
        A: Admission<B, Ticket = T, Pending = ReadBody<B>>,
    {
        let extensions = request.extensions();
        if extensions.get::<ChatRequest>().is_some() || extensions.get::<ParseError>().is_some() {
            return Start::Decided(admission.resume(BodyArrived::memoized(), request));
        }
        Start::Waiting(read_body(request, limit))
    }
}

pin_project! {
    /// A future and what the check carries until it resolves ([`Start::after`]).
    pub struct Carry<F, X> {
        #[pin]
        future: F,
        // Boxed: only a check that really waits pays for carrying, and the response future
        // stays small for the common in-memory case.
        carried: Option<Box<X>>,
    }
}

impl<F, X> fmt::Debug for Carry<F, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Carry").finish_non_exhaustive()
    }
}

impl<F: Future, X> Future for Carry<F, X> {
    type Output = (F::Output, X);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.future.poll(cx));
        let carried = this.carried.take().expect("Carry polled after completion");
        Poll::Ready((output, *carried))
    }
}

/// In the extensions of a response the gateway gave in place of the upstream's: a check refused
/// the request, which never reached the provider. A layer further out that charged for the
/// request (the rate limiter's tokens) gives the charge back.
///
/// ```
/// use http::Request;
/// use tollgate_core::admission::{AdmissionFuture, Refused};
/// # use std::future::Ready;
/// # use tollgate_core::admission::{Admission, Start, Verdict};
/// # use tollgate_core::{Body, ErrorKind, GatewayError};
/// # #[derive(Clone)]
/// # struct Closed;
/// # impl<B> Admission<B> for Closed {
/// #     type Ticket = ();
/// #     type Pending = Ready<Verdict<()>>;
/// #     fn start(&self, _: &mut Request<B>) -> Start<(), Self::Pending> {
/// #         Start::Decided(Verdict::Reject(GatewayError::new(ErrorKind::Forbidden, "No."), ()))
/// #     }
/// #     fn resume(&self, verdict: Verdict<()>, _: &mut Request<B>) -> Verdict<()> { verdict }
/// # }
///
/// # tokio_test::block_on(async {
/// let mut inner = tower::service_fn(|_: Request<Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
/// });
/// let response = AdmissionFuture::new(&Closed, &mut inner, Request::new(Body::empty())).await.unwrap();
/// assert!(response.extensions().get::<Refused>().is_some());
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// The response side of a [`Verdict`]'s ticket: what the client gets.
pub trait Respond<B>: Sized {
    /// The response body.
    type Body;

    /// The inner service's response, as the client gets it.
    fn admitted(self, response: Response<B>) -> Response<Self::Body>;

    /// The rejection, as the client gets it.
    fn rejected(self, error: GatewayError) -> Response<Self::Body>;

    /// The inner service failed with an error instead of a response (the outer error layer
    /// renders it); undo what the check did, such as a reservation.
    fn failed(self) {}
}

/// No ticket: the inner response untouched, the rejection rendered as the envelope.
impl<B> Respond<B> for () {
    type Body = ResponseBody<B>;

    fn admitted(self, response: Response<B>) -> Response<ResponseBody<B>> {
        response.map(ResponseBody::inner)
    }

    fn rejected(self, error: GatewayError) -> Response<ResponseBody<B>> {
        error.into_response().map(ResponseBody::from)
    }
}

pin_project! {
    /// The response future of every admission layer: waiting for its check, then for the inner
    /// service, or answering with the rejection.
    pub struct AdmissionFuture<S, A, B>
    where
        S: Service<Request<B>>,
        A: Admission<B>,
    {
        #[pin]
        state: State<S, A, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, A, B>
    where
        S: Service<Request<B>>,
        A: Admission<B>,
    {
        // Boxed: a wait holds the request, the check and a clone of the inner service, most
        // of the future's size, and every layer above moves the future at least once.
        Waiting { waiting: Pin<Box<Waiting<S, A, B>>> },
        Inner { #[pin] future: S::Future, ticket: Option<A::Ticket> },
        Rejected { rejection: Option<(GatewayError, A::Ticket)> },
    }
}

pin_project! {
    /// A check waiting for what it needs, with what it decides on.
    #[project = WaitingProj]
    struct Waiting<S, A, B>
    where
        A: Admission<B>,
    {
        #[pin]
        pending: A::Pending,
        // Taken when the check decides.
        request: Option<Request<B>>,
        admission: A,
        inner: S,
    }
}

impl<S, A, B> AdmissionFuture<S, A, B>
where
    S: Service<Request<B>> + Clone,
    A: Admission<B> + Clone,
{
    /// Runs `admission`'s check on `request` for `inner`, a service that was polled ready.
    ///
    /// A check that decides at once hands the request to `inner` right away; one that waits
    /// takes `inner` along and leaves a clone of it in its place (the ready service serves
    /// this request, the clone the next).
    pub fn new(admission: &A, inner: &mut S, mut request: Request<B>) -> Self {
        // Each arm builds the whole future in place: a state made first and then moved into
        // `Self` would copy the inner future once more on every layer.
        match admission.start(&mut request) {
            Start::Decided(Verdict::Admit(ticket)) => AdmissionFuture {
                state: State::Inner {
                    future: inner.call(request),
                    ticket: Some(ticket),
                },
            },
            Start::Decided(Verdict::Reject(error, ticket)) => AdmissionFuture {
                state: State::Rejected {
                    rejection: Some((error, ticket)),
                },
            },
            Start::Waiting(pending) => {
                let clone = inner.clone();
                AdmissionFuture {
                    state: State::Waiting {
                        waiting: Box::pin(Waiting {
                            pending,
                            request: Some(request),
                            admission: admission.clone(),
                            inner: std::mem::replace(inner, clone),
                        }),
                    },
                }
            }
        }
    }
}

impl<S, A, B> fmt::Debug for AdmissionFuture<S, A, B>
where
    S: Service<Request<B>>,
    A: Admission<B>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionFuture").finish_non_exhaustive()
    }
}

impl<S, A, B, ResBody> Future for AdmissionFuture<S, A, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    A: Admission<B>,
    A::Ticket: Respond<ResBody>,
{
    type Output = Result<Response<<A::Ticket as Respond<ResBody>>::Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future, ticket } => {
                    let result = ready!(future.poll(cx));
                    let ticket = ticket
                        .take()
                        .expect("AdmissionFuture polled after completion");
                    return Poll::Ready(match result {
                        Ok(response) => Ok(ticket.admitted(response)),
                        Err(error) => {
                            ticket.failed();
                            Err(error)
                        }
                    });
                }
                StateProj::Rejected { rejection } => {
                    let (error, ticket) = rejection
                        .take()
                        .expect("AdmissionFuture polled after completion");
                    let mut response = ticket.rejected(error);
                    response.extensions_mut().insert(Refused);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Waiting { waiting } => {
                    let WaitingProj {
                        pending,
                        request,
                        admission,
                        inner,
                    } = waiting.as_mut().project();
                    let arrived = ready!(pending.poll(cx));
                    let mut request = request
                        .take()
                        .expect("AdmissionFuture polled after completion");
                    match admission.resume(arrived, &mut request) {
                        Verdict::Admit(ticket) => State::Inner {
                            future: inner.call(request),
                            ticket: Some(ticket),
                        },
                        Verdict::Reject(error, ticket) => State::Rejected {
                            rejection: Some((error, ticket)),
                        },
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// Writes an admission layer's service: `get_ref`, `get_mut`, `into_inner`, `Clone`, the
/// `tower::Service` impl that runs the check through [`AdmissionFuture`], and the layer's
/// `tower::Layer` impl.
///
/// The service is a struct with the fields `inner: S` and `admission: A`, where `A` is the
/// layer and implements [`Admission`]. The crate needs `http`, `tower-layer` and
/// `tower-service` as dependencies.
///
/// ```
/// # use std::future::Ready;
/// # use http::Request;
/// # use tollgate_core::admission::{Admission, Start, Verdict};
/// /// Admits everything.
/// #[derive(Clone, Debug)]
/// pub struct OpenLayer;
/// # impl<B> Admission<B> for OpenLayer {
/// #     type Ticket = ();
/// #     type Pending = Ready<Verdict<()>>;
/// #     fn start(&self, _: &mut Request<B>) -> Start<(), Self::Pending> {
/// #         Start::Decided(Verdict::Admit(()))
/// #     }
/// #     fn resume(&self, verdict: Verdict<()>, _: &mut Request<B>) -> Verdict<()> { verdict }
/// # }
///
/// /// The service of [`OpenLayer`].
/// #[derive(Debug)]
/// pub struct Open<S> {
///     inner: S,
///     admission: OpenLayer,
/// }
///
/// tollgate_core::admission_service!(Open<S> => OpenLayer);
/// ```
#[macro_export]
macro_rules! admission_service {
    ($service:ident<S $(, $param:ident)*> => $admission:ty) => {
        impl<S $(, $param)*> $service<S $(, $param)*> {
            /// Gets a reference to the inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// Gets a mutable reference to the inner service.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Consumes `self`, returning the inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }

        impl<S $(, $param)*> ::tower_layer::Layer<S> for $admission
        where
            $admission: ::core::clone::Clone,
        {
            type Service = $service<S $(, $param)*>;

            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner,
                    admission: self.clone(),
                }
            }
        }

        impl<S: ::core::clone::Clone $(, $param)*> ::core::clone::Clone for $service<S $(, $param)*>
        where
            $admission: ::core::clone::Clone,
        {
            fn clone(&self) -> Self {
                $service {
                    inner: self.inner.clone(),
                    admission: self.admission.clone(),
                }
            }
        }

        impl<S $(, $param)*, ReqBody, ResBody> ::tower_service::Service<::http::Request<ReqBody>>
            for $service<S $(, $param)*>
        where
            S: ::tower_service::Service<::http::Request<ReqBody>, Response = ::http::Response<ResBody>>
                + ::core::clone::Clone,
            $admission: $crate::admission::Admission<ReqBody> + ::core::clone::Clone,
            <$admission as $crate::admission::Admission<ReqBody>>::Ticket:
                $crate::admission::Respond<ResBody>,
        {
            type Response = ::http::Response<
                <<$admission as $crate::admission::Admission<ReqBody>>::Ticket as $crate::admission::Respond<ResBody>>::Body,
            >;
            type Error = S::Error;
            type Future = $crate::admission::AdmissionFuture<S, $admission, ReqBody>;

            fn poll_ready(
                &mut self,
                cx: &mut ::core::task::Context<'_>,
            ) -> ::core::task::Poll<::core::result::Result<(), S::Error>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, request: ::http::Request<ReqBody>) -> Self::Future {
                $crate::admission::AdmissionFuture::new(&self.admission, &mut self.inner, request)
            }
        }
    };
}
