//! The event bus of one gateway: breaker transitions (published by the upstream pools'
//! transition listener), config reloads (published by the reloader) and the admin page's
//! periodic snapshot go out to every `/admin/events` subscriber as Server-Sent Events
//! frames. A frame is serialised once, by the publisher, and shared by all subscribers.
//!
//! Cheap by construction: publishing is one `broadcast::send` of an `Arc`'d frame (a short
//! lock inside tokio's ring, never across an await); each subscriber reads from the shared
//! ring of [`BUFFERED_FRAMES`], and one that falls that far behind is dropped (its stream
//! ends and the browser reconnects) rather than buffered for; the number of subscribers is
//! capped. The last [`RECENT_TRANSITIONS`] transitions are kept for the page and the JSON.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

/// Frames a subscriber may lag behind before it is dropped.
pub const BUFFERED_FRAMES: usize = 64;
/// Transitions remembered for the page.
pub const RECENT_TRANSITIONS: usize = 50;
/// Concurrent `/admin/events` streams; more are refused with 503.
pub const MAX_SUBSCRIBERS: usize = 32;

/// One breaker transition, as the page and `/admin/snapshot` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransitionEvent {
    pub upstream: String,
    pub backend: String,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
    /// RFC 3339, milliseconds.
    pub at: String,
    /// The open period entered, when `to` is `open`.
    pub open_for_seconds: Option<f64>,
}

/// The bus; one per running gateway, shared by `Arc`.
pub struct EventBus {
    sender: broadcast::Sender<Bytes>,
    recent: Mutex<VecDeque<TransitionEvent>>,
    subscribers: Arc<AtomicUsize>,
    max_subscribers: usize,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscribers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(MAX_SUBSCRIBERS)
    }
}

impl EventBus {
    pub fn new(max_subscribers: usize) -> Self {
        let (sender, _) = broadcast::channel(BUFFERED_FRAMES);
        EventBus {
            sender,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TRANSITIONS)),
            subscribers: Arc::new(AtomicUsize::new(0)),
            max_subscribers,
        }
    }

    /// Records a transition and pushes it to every subscriber.
    pub fn transition(&self, event: TransitionEvent) {
        self.publish("transition", &event);
        // A poisoned lock only means a panic elsewhere mid-push; the deque is still whole.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_TRANSITIONS {
            recent.pop_back();
        }
        recent.push_front(event);
    }

    /// The last transitions, newest first.
    pub fn recent_transitions(&self) -> Vec<TransitionEvent> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// Pushes one event named `event` with `data` as JSON to every subscriber; serialised
    /// once, only if anyone listens.
    pub fn publish(&self, event: &str, data: &impl Serialize) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        if let Some(frame) = frame(event, data) {
            // An error only means nobody listens any more.
            let _ = self.sender.send(frame);
        }
    }

    /// Like [`Self::publish`], for JSON serialised already (one compact line).
    pub fn publish_json(&self, event: &str, json: &[u8]) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let mut frame = Vec::with_capacity(json.len() + event.len() + 16);
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(event.as_bytes());
        frame.extend_from_slice(b"\ndata: ");
        frame.extend_from_slice(json);
        frame.extend_from_slice(b"\n\n");
        let _ = self.sender.send(Bytes::from(frame));
    }

    /// Whether anyone listens (the snapshot ticker skips the work otherwise).
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// A new subscriber, or `None` when [`MAX_SUBSCRIBERS`] are already connected.
    pub fn subscribe(&self) -> Option<Subscription> {
        let taken = self
            .subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_subscribers).then_some(n + 1)
            });
        taken.ok()?;
        Some(Subscription {
            receiver: self.sender.subscribe(),
            count: self.subscribers.clone(),
        })
    }
}

/// One SSE frame: `event: NAME\ndata: JSON\n\n`. Compact JSON has no newline, so one
/// `data:` line carries it.
pub fn frame(event: &str, data: &impl Serialize) -> Option<Bytes> {
    let json = serde_json::to_string(data).ok()?;
    Some(Bytes::from(format!("event: {event}\ndata: {json}\n\n")))
}

/// What a subscriber gets next.
#[derive(Debug, PartialEq)]
pub enum Next {
    Frame(Bytes),
    /// It fell more than [`BUFFERED_FRAMES`] behind: drop it.
    Lagged,
    /// The bus is gone.
    Closed,
}

/// A place among the subscribers; frees it when dropped.
pub struct Subscription {
    receiver: broadcast::Receiver<Bytes>,
    count: Arc<AtomicUsize>,
}

impl Subscription {
    pub async fn next(&mut self) -> Next {
        match self.receiver.recv().await {
            Ok(frame) => Next::Frame(frame),
            Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> TransitionEvent {
        TransitionEvent {
            upstream: "u".into(),
            backend: format!("b{n}"),
            from: "closed",
            to: "open",
            reason: "5 consecutive failures".into(),
            at: "2026-01-01T00:00:00.000Z".into(),
            open_for_seconds: Some(1.0),
        }
    }

    #[tokio::test]
    async fn a_transition_reaches_every_subscriber_as_one_frame() {
        let bus = EventBus::default();
        let mut a = bus.subscribe().unwrap();
        let mut b = bus.subscribe().unwrap();
        bus.transition(event(1));
        let Next::Frame(fa) = a.next().await else {
            panic!("no frame")
        };
        let Next::Frame(fb) = b.next().await else {
            panic!("no frame")
        };
        let text = std::str::from_utf8(&fa).unwrap();
        assert!(text.starts_with("event: transition\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 3, "one data line: {text}");
        // The same allocation: serialised once.
        assert_eq!(fa.as_ptr(), fb.as_ptr());
    }

    #[test]
    fn recent_transitions_are_bounded_newest_first() {
        let bus = EventBus::default();
        for n in 0..RECENT_TRANSITIONS + 5 {
            bus.transition(event(n));
        }
        let recent = bus.recent_transitions();
        assert_eq!(recent.len(), RECENT_TRANSITIONS);
        assert_eq!(recent[0].backend, format!("b{}", RECENT_TRANSITIONS + 4));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped() {
        let bus = EventBus::default();
        let mut slow = bus.subscribe().unwrap();
        for n in 0..BUFFERED_FRAMES + 1 {
            bus.publish("snapshot", &n);
        }
        assert_eq!(slow.next().await, Next::Lagged);
    }

    #[test]
    fn subscribers_are_capped_and_places_come_back() {
        let bus = EventBus::new(2);
        let a = bus.subscribe().unwrap();
        let _b = bus.subscribe().unwrap();
        assert!(bus.subscribe().is_none());
        drop(a);
        assert!(bus.subscribe().is_some());
    }

    #[test]
    fn nothing_is_serialised_without_subscribers() {
        let bus = EventBus::default();
        assert!(!bus.has_subscribers());
        bus.publish("snapshot", &1);
        let _s = bus.subscribe().unwrap();
        assert!(bus.has_subscribers());
    }
}
