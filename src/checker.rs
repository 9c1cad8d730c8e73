//! The active health checker: a background service that runs one task per checked backend
//! of the running `State`, each probing `GET <health_check.path>` every `interval` and
//! handing the result to [`Upstream::record_check`] (the state machine and its effect on
//! the breaker live in `upstream`; this module only schedules and probes).
//!
//! One supervisor owns every task, keyed by (upstream name, backend address), so there is
//! never more than one checker per backend: after each reload (it notices a new `State`
//! within [`RECONCILE_EVERY`]) it starts the checkers of backends that gained a check and
//! stops those of backends that lost it or are gone. A task that survives a reload reads
//! the current `State` at every round, so a changed path, interval or threshold applies
//! from its next check, and the backend's health (shared across reloads like its breaker)
//! carries over.
//!
//! [`Upstream::record_check`]: crate::upstream::Upstream::record_check

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use pingora::{
    connectors::http::Connector,
    http::RequestHeader,
    server::ShutdownWatch,
    services::background::BackgroundService,
    upstreams::peer::{HttpPeer, Peer},
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    breaker::{FailureKind, classify},
    config::HealthCheckSpec,
    state::State,
    upstream::{
        Upstream,
        health::{CheckResult, Verdict},
    },
};

/// How soon after a reload the checkers follow it.
pub const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Most bytes of a health answer read (the rest is not needed to judge it).
const MAX_BODY_BYTES: usize = 64 * 1024;

type Key = (Arc<str>, SocketAddr);

/// The supervisor, run as a Pingora background service.
pub struct HealthCheckers {
    state: Arc<ArcSwap<State>>,
}

impl HealthCheckers {
    pub fn new(state: Arc<ArcSwap<State>>) -> Self {
        HealthCheckers { state }
    }
}

#[async_trait::async_trait]
impl BackgroundService for HealthCheckers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running: HashMap<Key, JoinHandle<()>> = HashMap::new();
        let mut seen: Option<Arc<State>> = None;
        loop {
            let current = self.state.load_full();
            if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
                reconcile(&self.state, &current, &mut running);
                seen = Some(current);
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
        }
        for (_, task) in running {
            task.abort();
        }
    }
}

/// The backends `state` checks.
fn wanted(state: &State) -> Vec<Key> {
    state
        .upstreams
        .iter()
        .filter(|u| u.health_check.is_some())
        .flat_map(|u| u.backends.iter().map(|b| (u.name.clone(), b.addr)))
        .collect()
}

/// Stops the checkers `state` no longer wants and starts the missing ones.
fn reconcile(
    states: &Arc<ArcSwap<State>>,
    state: &State,
    running: &mut HashMap<Key, JoinHandle<()>>,
) {
    let wanted = wanted(state);
    running.retain(|key, task| {
        let keep = wanted.contains(key) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    for key in wanted {
        running
            .entry(key.clone())
            .or_insert_with(|| tokio::spawn(check_backend(states.clone(), key)));
    }
}

/// Checks one backend until its upstream, the backend or the check is gone from the
/// running config (or the supervisor aborts it).
async fn check_backend(states: Arc<ArcSwap<State>>, (upstream, addr): Key) {
    let connector = Connector::new(None);
    loop {
        let Some(target) = Target::find(&states.load(), &upstream, addr) else {
            return;
        };
        let result = probe(&connector, &target.peer, &target.spec).await;
        // The config may have changed while the probe ran: the result goes to the backend
        // as the running config has it, and nowhere if that no longer checks it (a reload
        // that removed the check has restored the backend; an answer to the old check
        // must not eject it again).
        let Some(target) = Target::find(&states.load(), &upstream, addr) else {
            return;
        };
        match target
            .pool
            .record_check(target.index, result, Instant::now())
        {
            Verdict::Eject { failures } => warn!(
                %upstream, backend = %addr, failures, result = result.as_str(),
                "health check: backend taken out of selection"
            ),
            Verdict::Restore { passes } => info!(
                %upstream, backend = %addr, passes,
                "health check: backend back in selection"
            ),
            Verdict::Unchanged => {}
        }
        tokio::time::sleep(target.spec.interval).await;
    }
}

/// A checked backend as one `State` has it.
struct Target {
    pool: Arc<Upstream>,
    index: usize,
    peer: HttpPeer,
    spec: HealthCheckSpec,
}

impl Target {
    fn find(state: &State, upstream: &str, addr: SocketAddr) -> Option<Target> {
        let pool = state.upstream(upstream)?;
        let spec = pool.health_check.clone()?;
        let index = pool.backends.iter().position(|b| b.addr == addr)?;
        let peer = pool.peer(index)?.clone();
        Some(Target {
            pool: pool.clone(),
            index,
            peer,
            spec,
        })
    }
}

/// One `GET` of the check's path on a fresh connection (so a backend that no longer
/// accepts connections fails its check), judged within `spec.timeout`.
async fn probe(connector: &Connector, peer: &HttpPeer, spec: &HealthCheckSpec) -> CheckResult {
    let mut peer = peer.clone();
    peer.options.connection_timeout = Some(spec.timeout);
    peer.options.total_connection_timeout = Some(spec.timeout);
    peer.options.read_timeout = Some(spec.timeout);
    peer.options.write_timeout = Some(spec.timeout);
    match tokio::time::timeout(spec.timeout, exchange(connector, &peer, &spec.path)).await {
        Err(_) => CheckResult::Timeout,
        Ok(Err(error)) => match classify::failure_kind(&error) {
            Some(
                FailureKind::ConnectTimeout | FailureKind::ReadTimeout | FailureKind::WriteTimeout,
            ) => CheckResult::Timeout,
            _ => CheckResult::Error,
        },
        Ok(Ok(status)) if (200..300).contains(&status) => CheckResult::Pass,
        Ok(Ok(_)) => CheckResult::Fail,
    }
}

async fn exchange(connector: &Connector, peer: &HttpPeer, path: &str) -> pingora::Result<u16> {
    let (mut session, _reused) = connector.get_http_session(peer).await?;
    let mut request = RequestHeader::build("GET", path.as_bytes(), Some(3))?;
    request.insert_header(http::header::HOST, peer.address().to_string())?;
    request.insert_header(http::header::USER_AGENT, "gateway-health-check")?;
    request.insert_header(http::header::CONNECTION, "close")?;
    session.write_request_header(Box::new(request)).await?;
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
    let mut read = 0;
    while let Some(chunk) = session.read_response_body().await? {
        read += chunk.len();
        if read > MAX_BODY_BYTES {
            break;
        }
    }
    Ok(status)
}
