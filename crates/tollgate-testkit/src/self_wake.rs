//! Polling a connection again when it woke itself while being polled, instead of sending it
//! back through Tokio's queue.
//!
//! A service that reads the request body in the connection's own task, as every body-aware
//! layer does, makes hyper's connection wake itself: asking the body channel for the body
//! wakes the connection, which waits to be asked. Tokio takes a task woken during its own
//! poll for one that yields: it queues the task again and wakes a parked worker thread to
//! take it, and that thread often takes the connection over. A bare proxy, whose body is
//! read by the upstream connection's task, pays none of this. Polled again on the spot, the
//! connection sees the same progress without a thread woken or a connection moved.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Not being polled: a wake goes to the task.
const IDLE: u8 = 0;
/// Being polled: a wake is noted, and the poll loop polls again.
const POLLING: u8 = 1;
/// Woken while being polled.
const WOKEN: u8 = 2;

/// Polls in a row before a connection that keeps waking itself goes back through the queue,
/// so that the other tasks of its thread get their turn.
const MAX_POLLS: usize = 4;

/// The waker a connection is polled with (see the module docs).
pub(crate) struct SelfWake {
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    /// The waker of the task the connection runs in, as of its latest poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            // Noted: the poll loop polls again before it returns.
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                if let Ok(task) = self.task.lock()
                    && let Some(task) = task.as_ref()
                {
                    task.wake_by_ref();
                }
            }
        }
    }
}

impl SelfWake {
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        let waker = Waker::from(shared.clone());
        SelfWake { shared, waker }
    }

    /// Polls `poll` with this waker, again while it wakes itself during its poll (up to
    /// [`MAX_POLLS`] times).
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if let Ok(mut task) = self.shared.task.lock()
            && !task.as_ref().is_some_and(|task| task.will_wake(cx.waker()))
        {
            *task = Some(cx.waker().clone());
        }
        let mut own = Context::from_waker(&self.waker);
        for _ in 0..MAX_POLLS {
            self.shared.state.store(POLLING, Ordering::SeqCst);
            let polled = poll(&mut own);
            // From here on, a wake goes to the task.
            let woken = self.shared.state.swap(IDLE, Ordering::SeqCst) == WOKEN;
            if polled.is_ready() || !woken {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts the wakes of the task.
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself on each of its first `times` polls, then is ready.
    struct WakesItself {
        times: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.times {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn task() -> (Arc<Counting>, Waker) {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(counting.clone());
        (counting, waker)
    }

    #[test]
    fn a_self_wake_is_a_poll_again_not_a_wake_of_the_task() {
        let (counting, waker) = task();
        let self_wake = SelfWake::new();
        let mut future = WakesItself { times: 2, polls: 0 };
        let polled = self_wake.poll(&mut Context::from_waker(&waker), |cx| {
            Pin::new(&mut future).poll(cx)
        });
        assert_eq!(polled, Poll::Ready(3));
        assert_eq!(counting.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_connection_that_keeps_waking_itself_goes_back_through_the_queue() {
        let (counting, waker) = task();
        let self_wake = SelfWake::new();
        let mut future = WakesItself {
            times: usize::MAX,
            polls: 0,
        };
        let polled = self_wake.poll(&mut Context::from_waker(&waker), |cx| {
            Pin::new(&mut future).poll(cx)
        });
        assert_eq!(polled, Poll::Pending);
        assert_eq!(future.polls, MAX_POLLS);
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_between_polls_wakes_the_task() {
        let (counting, waker) = task();
        let self_wake = SelfWake::new();
        let mut stored = None;
        let polled: Poll<()> = self_wake.poll(&mut Context::from_waker(&waker), |cx| {
            stored = Some(cx.waker().clone());
            Poll::Pending
        });
        assert_eq!(polled, Poll::Pending);
        assert_eq!(counting.0.load(Ordering::SeqCst), 0);
        stored.expect("the poll stored its waker").wake();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    }
}
