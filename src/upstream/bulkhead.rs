//! Concurrency limits (bulkheads): at most `max_in_flight` calls on a slot counter at once,
//! and a bounded queue of callers waiting for a slot, each for at most `queue_timeout`;
//! anyone beyond is refused at once. [`Upstream::attempt`] takes a backend's slot before
//! the breaker's permit (so a refused call never touches the breaker) and the attempt gives
//! it back when dropped; the token exchange keeps a bulkhead of its own.
//!
//! The counters are atomics and the queue is a `tokio::sync::Notify` plus a count of
//! waiters: nobody holds a lock while waiting, a freed slot wakes one waiter, and a waiter
//! that gives up (timeout, client gone) passes an unconsumed wake-up on to the next one
//! (tokio's `Notified` does that on drop). The order among waiters is approximately FIFO:
//! a caller arriving just as a slot frees may take it before a woken waiter does, which
//! costs fairness, never the bound.
//!
//! [`Upstream::attempt`]: super::Upstream::attempt

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::{config::ConcurrencyLimit, metrics};

/// How long a refused caller is told to wait: slots free as calls finish, so soon.
pub const SHED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Every slot taken and the queue full (or no queue).
    QueueFull,
    /// Waited `queue_timeout` without a slot freeing.
    QueueTimeout,
}

impl Shed {
    /// The `reason` label of `gateway_upstream_shed_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::QueueTimeout => "queue_timeout",
        }
    }
}

/// Creates at 0 the series of `gateway_upstream_shed_total` that `limit` can count (for
/// `upstream`, under `limit_label`: `upstream` or `token_exchange`): none without a limit.
/// A series born at 1 would read as no increase to Prometheus's `increase()`, hiding the
/// first refusal. (`queue_timeout` too without a queue: a caller queued before a reload
/// took the queue away can still time out.)
pub fn init_shed_series(upstream: &str, limit_label: &str, limit: ConcurrencyLimit) {
    if limit.max_in_flight.is_none() {
        return;
    }
    for reason in [Shed::QueueFull, Shed::QueueTimeout] {
        metrics::UPSTREAM_SHED.with_label_values(&[upstream, limit_label, reason.as_str()]);
    }
}

/// The limits and the wait queue of one bulkhead. The slot counters it guards are the
/// caller's (one per backend for an upstream), so several counters can share one queue.
/// Shared across reloads like the breakers: a reload changes the limits in place.
#[derive(Debug)]
pub struct Bulkhead {
    limit: ArcSwap<ConcurrencyLimit>,
    queued: AtomicUsize,
    freed: Notify,
}

impl Bulkhead {
    pub fn new(limit: ConcurrencyLimit) -> Self {
        Bulkhead {
            limit: ArcSwap::from_pointee(limit),
            queued: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    pub fn limit(&self) -> ConcurrencyLimit {
        **self.limit.load()
    }

    /// Applies new limits at once. Calls in flight keep their slots (a lowered limit admits
    /// nobody until enough of them finish); waiters re-check now, so a raised limit lets
    /// them in without waiting for a call to end.
    pub fn set_limit(&self, limit: ConcurrencyLimit) {
        self.limit.store(Arc::new(limit));
        self.freed.notify_waiters();
    }

    /// Callers waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Takes a slot of `slots` if it has one free under `max_in_flight`.
    pub fn try_take(&self, slots: &AtomicUsize) -> bool {
        match self.limit().max_in_flight {
            None => {
                slots.fetch_add(1, Ordering::SeqCst);
                true
            }
            Some(max) => slots
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// Gives back a slot taken with [`Bulkhead::try_take`] and wakes one waiter, if any.
    pub fn release(&self, slots: &AtomicUsize) {
        slots.fetch_sub(1, Ordering::SeqCst);
        // SeqCst on both sides: either this sees the waiter counted, or the waiter (which
        // counts itself before it looks for a slot) sees the slot free.
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.freed.notify_one();
        }
    }

    /// Runs `try_admit` (which returns `None` when every slot it may use is taken) now, and
    /// if it finds none, again each time a slot frees, for up to `queue_timeout`, provided
    /// the queue has room. Holds no lock across the wait.
    pub async fn admit<T>(&self, mut try_admit: impl FnMut() -> Option<T>) -> Result<T, Shed> {
        if let Some(admitted) = try_admit() {
            return Ok(admitted);
        }
        let limit = self.limit();
        let Some(_ticket) = self.enqueue(limit.max_queued) else {
            return Err(Shed::QueueFull);
        };
        let deadline = tokio::time::Instant::now() + limit.queue_timeout;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            if let Some(admitted) = try_admit() {
                return Ok(admitted);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Shed::QueueTimeout);
            }
        }
    }

    /// A place in the queue, if it has room.
    fn enqueue(&self, max_queued: usize) -> Option<QueueTicket<'_>> {
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max_queued).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueTicket(&self.queued))
    }
}

/// A counted place in the queue, given back when the wait ends however it ends.
struct QueueTicket<'a>(&'a AtomicUsize);

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bulkhead over a counter of its own: the token exchange's limit. Shared across
/// reloads by the `State`s, like the upstreams' bulkheads.
#[derive(Debug)]
pub struct Limiter {
    bulkhead: Bulkhead,
    in_flight: AtomicUsize,
}

impl Limiter {
    pub fn new(limit: ConcurrencyLimit) -> Self {
        Limiter {
            bulkhead: Bulkhead::new(limit),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }

    /// Slots taken now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits for a slot under the limits in force (see [`Bulkhead::admit`]).
    pub async fn take(self: &Arc<Self>) -> Result<Slot, Shed> {
        self.bulkhead
            .admit(|| {
                self.bulkhead.try_take(&self.in_flight).then(|| Slot {
                    limiter: self.clone(),
                })
            })
            .await
    }
}

/// One slot of a [`Limiter`], given back on drop.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.bulkhead.release(&self.limiter.in_flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_in_flight: usize, max_queued: usize, timeout_ms: u64) -> ConcurrencyLimit {
        ConcurrencyLimit {
            max_in_flight: Some(max_in_flight),
            max_queued,
            queue_timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn setup(l: ConcurrencyLimit) -> (Arc<Bulkhead>, Arc<AtomicUsize>) {
        (Arc::new(Bulkhead::new(l)), Arc::new(AtomicUsize::new(0)))
    }

    fn limiter(l: ConcurrencyLimit) -> Arc<Limiter> {
        Arc::new(Limiter::new(l))
    }

    #[test]
    fn takes_slots_up_to_the_limit_and_gives_them_back() {
        let (b, slots) = setup(limit(2, 0, 1000));
        assert!(b.try_take(&slots));
        assert!(b.try_take(&slots));
        assert!(!b.try_take(&slots));
        b.release(&slots);
        assert!(b.try_take(&slots));
        assert_eq!(slots.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn no_limit_counts_without_refusing() {
        let (b, slots) = setup(ConcurrencyLimit::UNLIMITED);
        for _ in 0..1000 {
            assert!(b.try_take(&slots));
        }
        assert_eq!(slots.load(Ordering::SeqCst), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_queue_a_full_bulkhead_refuses_at_once() {
        let l = limiter(limit(1, 0, 1000));
        let _held = l.take().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(l.take().await.unwrap_err(), Shed::QueueFull);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_a_finished_call_frees() {
        let l = limiter(limit(1, 1, 60_000));
        let held = l.take().await.unwrap();
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.take().await.map(|_| ()) }
        });
        while l.bulkhead().queued() == 0 {
            tokio::task::yield_now().await;
        }
        // The queue holds one: a third caller is refused at once.
        assert_eq!(l.take().await.unwrap_err(), Shed::QueueFull);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(l.bulkhead().queued(), 0);
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_the_queue_timeout() {
        let l = limiter(limit(1, 4, 250));
        let _held = l.take().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(l.take().await.unwrap_err(), Shed::QueueTimeout);
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(l.bulkhead().queued(), 0, "the ticket is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_passes_its_wake_up_on() {
        let l = limiter(limit(1, 2, 60_000));
        let held = l.take().await.unwrap();
        let first = tokio::spawn({
            let l = l.clone();
            async move { l.take().await.map(|_| ()) }
        });
        while l.bulkhead().queued() < 1 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn({
            let l = l.clone();
            async move { l.take().await.map(|_| ()) }
        });
        while l.bulkhead().queued() < 2 {
            tokio::task::yield_now().await;
        }
        // The first waiter is woken and cancelled before it runs: the wake-up must reach
        // the second.
        drop(held);
        first.abort();
        assert_eq!(second.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_limit_admits_waiters_at_once() {
        let l = limiter(limit(1, 1, 60_000));
        let _held = l.take().await.unwrap();
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.take().await.map(|_| ()) }
        });
        while l.bulkhead().queued() == 0 {
            tokio::task::yield_now().await;
        }
        l.bulkhead().set_limit(limit(2, 1, 60_000));
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[test]
    fn a_lowered_limit_keeps_the_calls_in_flight_and_admits_none_until_they_end() {
        let (b, slots) = setup(limit(3, 0, 1000));
        for _ in 0..3 {
            assert!(b.try_take(&slots));
        }
        b.set_limit(limit(1, 0, 1000));
        assert!(!b.try_take(&slots));
        b.release(&slots);
        b.release(&slots);
        assert!(!b.try_take(&slots), "still one in flight: the new limit");
        b.release(&slots);
        assert!(b.try_take(&slots));
    }
}
