//! The live side of the admin listener: the [`Ticker`] computes the page's [`Snapshot`]
//! once a second (whether one page watches or fifty, and only serialises it for them when
//! someone does), and `GET /admin/events` streams the gateway's [`EventBus`] as
//! Server-Sent Events: the latest snapshot at once, then transitions and reloads as they
//! happen and a snapshot every second. A subscriber that cannot keep up, or stops reading
//! for [`WRITE_TIMEOUT`], is dropped; the browser's `EventSource` reconnects by itself.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::{Bytes, BytesMut};
use http::{StatusCode, header};
use pingora::{
    http::ResponseHeader, protocols::http::ServerSession, services::background::BackgroundService,
};

use super::{
    breakers_report,
    snapshot::{AuthReport, Rates, Sample, Snapshot, service_state},
};
use crate::{
    events::{EventBus, Next},
    reload::Reloader,
    state::State,
};

/// How often the snapshot is recomputed and pushed.
pub const TICK: Duration = Duration::from_secs(1);
/// A subscriber that has not taken a frame for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Live {
    pub(super) state: Arc<ArcSwap<State>>,
    /// Present when the gateway runs from a file.
    pub(super) reloader: Option<Arc<Reloader>>,
    rates: Mutex<Rates>,
    /// JSON of the latest snapshot.
    latest: ArcSwapOption<Bytes>,
}

impl Live {
    pub(super) fn new(state: Arc<ArcSwap<State>>, reloader: Option<Arc<Reloader>>) -> Self {
        Live {
            state,
            reloader,
            rates: Mutex::new(Rates::default()),
            latest: ArcSwapOption::empty(),
        }
    }

    fn events(&self) -> Arc<EventBus> {
        self.state.load().events.clone()
    }

    /// Computes the snapshot, keeps it for `/admin/snapshot`, and pushes it to the
    /// subscribers.
    fn tick(&self, now: Instant) -> Bytes {
        let state = self.state.load();
        let routes: Vec<String> = state
            .config
            .routes
            .iter()
            .map(|r| r.id.to_string())
            .chain(std::iter::once("unmatched".to_owned()))
            .collect();
        let window = {
            // Only the ticker (and a first `/admin/snapshot`) take it, never across an await.
            let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
            rates.push(now, Sample::gather(), &routes)
        };
        let upstreams = breakers_report(&state, now).upstreams;
        let auth = state.token_upstream().map(|u| {
            let report = upstreams.iter().find(|r| r.name == *u.name);
            AuthReport {
                upstream: u.name.to_string(),
                state: service_state(
                    report
                        .into_iter()
                        .flat_map(|r| r.backends.iter().map(|b| b.state)),
                ),
                token_cache_hit_ratio: window.token_cache_hit_ratio,
            }
        });
        let snapshot = Snapshot {
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            upstreams,
            transitions: state.events.recent_transitions(),
            window_seconds: window.seconds,
            routes: window.routes,
            auth,
            config: self.reloader.as_ref().map(|r| (*r.status()).clone()),
        };
        let json = Bytes::from(serde_json::to_vec(&snapshot).unwrap_or_default());
        self.latest.store(Some(Arc::new(json.clone())));
        state.events.publish_json("snapshot", &json);
        json
    }

    /// The latest snapshot's JSON (computed now if the ticker has not run yet).
    pub(super) fn latest(&self) -> Bytes {
        match self.latest.load_full() {
            Some(json) => (*json).clone(),
            None => self.tick(Instant::now()),
        }
    }

    /// Streams events until the client goes away, falls behind, or stops reading.
    pub(super) async fn serve_events(&self, mut session: ServerSession) {
        session.set_keepalive(None);
        session.set_write_timeout(Some(WRITE_TIMEOUT));
        let Some(mut subscription) = self.events().subscribe() else {
            let body = Bytes::from_static(br#"{"error":"too many event streams"}"#);
            let _ = write_head(
                &mut session,
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                Some(body.len()),
            )
            .await;
            let _ = session.write_response_body(body, true).await;
            return;
        };
        if write_head(&mut session, StatusCode::OK, "text/event-stream", None)
            .await
            .is_err()
        {
            return;
        }
        // The browser retries a second after the stream ends (a gateway restart, a drop).
        let mut first = BytesMut::from(&b"retry: 1000\n\n"[..]);
        first.extend_from_slice(b"event: snapshot\ndata: ");
        first.extend_from_slice(&self.latest());
        first.extend_from_slice(b"\n\n");
        if session
            .write_response_body(first.freeze(), false)
            .await
            .is_err()
        {
            return;
        }
        while let Next::Frame(frame) = subscription.next().await {
            if session.write_response_body(frame, false).await.is_err() {
                return;
            }
        }
        let _ = session.write_response_body(Bytes::new(), true).await;
    }
}

async fn write_head(
    session: &mut ServerSession,
    status: StatusCode,
    content_type: &str,
    length: Option<usize>,
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(status, Some(4))?;
    head.insert_header(header::CONTENT_TYPE, content_type)?;
    head.insert_header(header::CACHE_CONTROL, "no-store")?;
    match length {
        Some(length) => head.insert_header(header::CONTENT_LENGTH, length)?,
        None => head.insert_header(header::TRANSFER_ENCODING, "chunked")?,
    }
    session.write_response_header(Box::new(head)).await
}

/// Computes the snapshot every [`TICK`]; see [`super::Admin::ticker`].
pub struct Ticker(pub(super) Arc<Live>);

#[async_trait::async_trait]
impl BackgroundService for Ticker {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {
                    self.0.tick(Instant::now());
                }
            }
        }
    }
}
