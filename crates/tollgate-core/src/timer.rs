//! A deadline that a body or a connection checks each time it waits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// A Tokio timer for something that waits many times: a streamed body waits once per chunk
/// or more, a connection's reads once per request.
///
/// Polling a Tokio timer takes its waker lock even when the same task is registered already:
/// about a hundred instructions a wait, a few thousand per stream. This one remembers the task
/// it registered and is not polled again from that task until it fires or moves. A poll that
/// Tokio's cooperative budget turned away registered nothing, so it is not remembered.
///
/// Boxed: what holds one carries a pointer, and `Option<WaitTimer>` too.
///
/// ```
/// use std::future::poll_fn;
/// use std::task::Poll;
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tollgate_core::timer::WaitTimer;
///
/// # tokio_test::block_on(async {
/// let mut timer = WaitTimer::at(Instant::now() + Duration::from_millis(5));
/// // A body with nothing to read yet checks its deadline, and its task is woken at it.
/// let expired = poll_fn(|cx| Poll::Ready(timer.poll_expired(cx).is_ready())).await;
/// assert!(!expired);
/// poll_fn(|cx| timer.poll_expired(cx)).await;
/// # });
/// ```
pub struct WaitTimer {
    armed: Pin<Box<Armed>>,
}

pin_project! {
    struct Armed {
        #[pin]
        sleep: Sleep,
        // The task the timer wakes, once a poll registered it.
        registered: Option<Waker>,
    }
}

impl WaitTimer {
    /// A timer that fires at `deadline` (it needs a Tokio runtime with the time driver).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use tollgate_core::timer::WaitTimer;
    ///
    /// # tokio_test::block_on(async {
    /// let timer = WaitTimer::at(Instant::now() + Duration::from_secs(30));
    /// assert!(timer.deadline() > Instant::now());
    /// # });
    /// ```
    pub fn at(deadline: Instant) -> Self {
        WaitTimer {
            armed: Box::pin(Armed {
                sleep: tokio::time::sleep_until(deadline),
                registered: None,
            }),
        }
    }

    /// Moves the deadline; the next wait registers the task again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use tollgate_core::timer::WaitTimer;
    ///
    /// # tokio_test::block_on(async {
    /// let mut timer = WaitTimer::at(Instant::now());
    /// let later = Instant::now() + Duration::from_secs(1);
    /// timer.reset(later);
    /// assert_eq!(timer.deadline(), later);
    /// # });
    /// ```
    pub fn reset(&mut self, deadline: Instant) {
        let armed = self.armed.as_mut().project();
        armed.sleep.reset(deadline);
        *armed.registered = None;
    }

    /// When the timer fires.
    ///
    /// ```
    /// use tokio::time::Instant;
    /// use tollgate_core::timer::WaitTimer;
    ///
    /// # tokio_test::block_on(async {
    /// let deadline = Instant::now();
    /// assert_eq!(WaitTimer::at(deadline).deadline(), deadline);
    /// # });
    /// ```
    pub fn deadline(&self) -> Instant {
        self.armed.sleep.deadline()
    }

    /// `Ready` once the deadline has passed; otherwise the current task is woken at it.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use tokio::time::Instant;
    /// use tollgate_core::timer::WaitTimer;
    ///
    /// # tokio_test::block_on(async {
    /// let mut timer = WaitTimer::at(Instant::now());
    /// poll_fn(|cx| timer.poll_expired(cx)).await;
    /// # });
    /// ```
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut armed = self.armed.as_mut().project();
        let task = cx.waker();
        if !armed.sleep.is_elapsed() && armed.registered.as_ref().is_some_and(|t| t.will_wake(task))
        {
            return Poll::Pending;
        }
        // Out of budget, Tokio answers `Pending` without registering anything (and wakes the
        // task to poll again).
        let registers = tokio::task::coop::has_budget_remaining();
        match armed.sleep.as_mut().poll(cx) {
            Poll::Pending => {
                *armed.registered = registers.then(|| task.clone());
                Poll::Pending
            }
            Poll::Ready(()) => {
                *armed.registered = None;
                Poll::Ready(())
            }
        }
    }
}

impl fmt::Debug for WaitTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitTimer")
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Future, poll_fn};
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::WaitTimer;

    #[tokio::test(start_paused = true)]
    async fn a_wait_turned_away_by_the_budget_still_fires_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(10);
        let mut timer = WaitTimer::at(deadline);
        // Spend the task's whole budget, as a connection task that wrote many frames in one
        // poll has, then wait: Tokio turns the timer's poll away.
        poll_fn(|cx| {
            while tokio::task::coop::has_budget_remaining() {
                let _ = pin!(tokio::task::coop::consume_budget()).poll(cx);
            }
            assert!(timer.poll_expired(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let fired = tokio::time::timeout(
            Duration::from_secs(60),
            poll_fn(|cx| timer.poll_expired(cx)),
        )
        .await;
        assert!(fired.is_ok(), "the timer never fired");
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_timer_fires_at_its_new_deadline() {
        let start = Instant::now();
        let mut timer = WaitTimer::at(start + Duration::from_millis(10));
        assert!(
            poll_fn(|cx| Poll::Ready(timer.poll_expired(cx)))
                .await
                .is_pending()
        );
        timer.reset(start + Duration::from_secs(5));
        poll_fn(|cx| timer.poll_expired(cx)).await;
        assert!(Instant::now() >= start + Duration::from_secs(5));
    }
}
