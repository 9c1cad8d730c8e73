//! The reconnect logic against a fake store whose server can be up, hung or down, in
//! paused Tokio time: no sockets, no sleeping.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tokio::time::Instant as TokioInstant;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Up,
    /// Accepts nothing and answers nothing (SIGSTOP).
    Hung,
    /// Refuses connections (killed).
    Down,
}

/// The server's state and its life: a restart ends every connection of an earlier life.
#[derive(Default)]
struct World {
    state: Mutex<(Option<Server>, u64)>,
    connects: AtomicUsize,
    /// The next operation gets an error reply.
    reply_error: Mutex<bool>,
}

impl World {
    fn server(&self) -> (Server, u64) {
        let (state, life) = *self.state.lock().unwrap();
        (state.unwrap_or(Server::Up), life)
    }

    fn set(&self, server: Server) {
        let mut state = self.state.lock().unwrap();
        if server == Server::Down {
            state.1 += 1;
        }
        state.0 = Some(server);
    }
}

#[derive(Clone)]
struct FakeConnector(Arc<World>);

#[derive(Clone)]
struct FakeConnection {
    world: Arc<World>,
    life: u64,
}

#[derive(Debug)]
enum FakeError {
    Refused,
    Broken,
    Reply,
}

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl Connector for FakeConnector {
    type Connection = FakeConnection;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConnection, FakeError> {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        match self.0.server() {
            (Server::Up, life) => Ok(FakeConnection {
                world: self.0.clone(),
                life,
            }),
            (Server::Hung, _) => std::future::pending().await,
            (Server::Down, _) => Err(FakeError::Refused),
        }
    }

    fn is_reply(error: &FakeError) -> bool {
        matches!(error, FakeError::Reply)
    }
}

impl FakeConnection {
    async fn op(self) -> Result<u8, FakeError> {
        if std::mem::take(&mut *self.world.reply_error.lock().unwrap()) {
            return Err(FakeError::Reply);
        }
        match self.world.server() {
            (Server::Up, life) if life == self.life => Ok(7),
            (Server::Hung, life) if life == self.life => std::future::pending().await,
            _ => Err(FakeError::Broken),
        }
    }
}

const DEADLINE: Duration = Duration::from_millis(50);

fn link() -> (Link<FakeConnector>, Arc<World>) {
    let world = Arc::new(World::default());
    (
        Link::new(
            FakeConnector(world.clone()),
            Signals {
                what: "fake store",
                meanwhile: "doing without",
                name: Arc::from("fake"),
                available: &crate::metrics::CACHE_STORE_AVAILABLE,
                errors: &crate::metrics::CACHE_STORE_ERRORS,
            },
            DEADLINE,
        ),
        world,
    )
}

/// One operation, and how long it took.
async fn op(link: &Link<FakeConnector>) -> (Result<u8, Failure>, Duration) {
    let started = TokioInstant::now();
    let result = link
        .run(FakeConnection::op)
        .await
        .map_err(|(failure, _)| failure);
    (result, started.elapsed())
}

/// Polls (in paused time) until an operation succeeds; returns how long that took.
async fn until_up(link: &Link<FakeConnector>) -> Duration {
    let started = TokioInstant::now();
    loop {
        let (result, took) = op(link).await;
        assert!(took <= DEADLINE, "an operation took {took:?}");
        if result.is_ok() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never up again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_operation_starts_connecting_and_fails_at_once() {
    let (link, world) = link();
    assert_eq!(op(&link).await, (Err(Failure::Down), Duration::ZERO));
    assert!(until_up(&link).await < RETRY_EVERY);
    assert_eq!(world.connects.load(Ordering::SeqCst), 1);
    assert!(link.health().up);
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_costs_one_deadline_then_nothing_until_it_answers() {
    let (link, world) = link();
    link.start();
    until_up(&link).await;

    world.set(Server::Hung);
    assert_eq!(op(&link).await, (Err(Failure::Timeout), DEADLINE));
    // The connection is gone: later operations fail at once while reconnects hang.
    for _ in 0..20 {
        assert_eq!(op(&link).await, (Err(Failure::Down), Duration::ZERO));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = link.health();
    assert!(!health.up);
    assert!(health.failed_attempts >= 1, "{health:?}");

    world.set(Server::Up);
    let took = until_up(&link).await;
    assert!(took <= MIN_CONNECT_TIMEOUT + RETRY_EVERY, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn every_failure_but_a_reply_replaces_the_connection() {
    let (link, world) = link();
    link.start();
    until_up(&link).await;
    let connects = || world.connects.load(Ordering::SeqCst);

    *world.reply_error.lock().unwrap() = true;
    assert_eq!(op(&link).await.0, Err(Failure::Reply));
    assert_eq!(
        op(&link).await.0,
        Ok(7),
        "an error reply keeps the connection"
    );
    assert_eq!(connects(), 1);

    // Killed and restarted before anyone noticed: the old connection is broken.
    world.set(Server::Down);
    world.set(Server::Up);
    assert_eq!(op(&link).await.0, Err(Failure::Broken));
    until_up(&link).await;
    assert_eq!(connects(), 2);

    world.set(Server::Hung);
    assert_eq!(op(&link).await.0, Err(Failure::Timeout));
    world.set(Server::Up);
    until_up(&link).await;
    assert_eq!(connects(), 3);
}

/// The sequence: hung 3 s, resumed, killed 1.5 s later, restarted 3 s after that.
#[tokio::test(start_paused = true)]
async fn hang_resume_kill_restart_is_up_again_within_the_retry_period() {
    let (link, world) = link();
    link.start();
    until_up(&link).await;

    let drive = |until: Duration| {
        let link = &link;
        async move {
            let end = TokioInstant::now() + until;
            while TokioInstant::now() < end {
                let (_, took) = op(link).await;
                assert!(took <= DEADLINE, "an operation took {took:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    world.set(Server::Hung);
    drive(Duration::from_secs(3)).await;
    world.set(Server::Up);
    drive(Duration::from_millis(1500)).await;
    world.set(Server::Down);
    drive(Duration::from_secs(3)).await;
    assert!(!link.health().up);
    world.set(Server::Up);
    let took = until_up(&link).await;
    assert!(took <= RETRY_EVERY + DEADLINE, "up again after {took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_store_stops_reconnecting() {
    let (link, world) = link();
    world.set(Server::Down);
    link.start();
    tokio::time::sleep(RETRY_EVERY * 4).await;
    let tried = world.connects.load(Ordering::SeqCst);
    assert!(tried >= 4, "{tried}");
    // A reload replaced the store: its task ends instead of trying forever.
    drop(link);
    tokio::time::sleep(RETRY_EVERY * 20).await;
    assert!(world.connects.load(Ordering::SeqCst) <= tried + 1);
    world.set(Server::Up);
    tokio::time::sleep(RETRY_EVERY * 20).await;
    assert!(world.connects.load(Ordering::SeqCst) <= tried + 1);
}

#[test]
fn a_reconnect_task_dropped_with_its_runtime_does_not_block_the_next() {
    let (link, world) = link();
    world.set(Server::Hung);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    first.block_on(async {
        link.start();
        tokio::task::yield_now().await;
    });
    assert_eq!(world.connects.load(Ordering::SeqCst), 1);
    // The task that was connecting dies with its runtime, mid-attempt.
    drop(first);

    world.set(Server::Up);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    second.block_on(async {
        until_up(&link).await;
    });
}
