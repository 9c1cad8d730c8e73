//! The four services on loopback ephemeral ports, sharing one state (one database pool, like
//! `travel serve all`), each one stoppable and restartable on its own port. This is how the
//! services' own integration tests, the API contract test and the gateway's integration
//! tests (which run the real services behind the gateway) start them: one set-up, in the
//! library those tests already link, so that no test needs another crate, and the services'
//! build never includes the gateway.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{AppState, Config, Service, StartError};

/// How long a stopped service may take to finish, and a freed port to become bindable again.
const PATIENCE: Duration = Duration::from_secs(10);

/// Where the services keep their data.
#[derive(Clone, Debug)]
pub enum Database {
    /// A new SQLite file in a temporary directory, removed when the services are dropped.
    FreshSqlite,
    /// This database (`sqlite://...` or `postgres://...`), left as it is on drop.
    Url(String),
}

/// Wraps a service's router before it serves (a test counting the requests it receives).
pub type Wrap = Arc<dyn Fn(Service, Router) -> Router + Send + Sync>;

/// The services on loopback ports; see the module header.
pub struct LocalServices {
    state: AppState,
    addrs: HashMap<Service, SocketAddr>,
    /// Bound, not yet served.
    idle: HashMap<Service, TcpListener>,
    running: HashMap<Service, Running>,
    wrap: Option<Wrap>,
    /// Last, so the directory goes after everything that uses it.
    _dir: Option<TempDir>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A loopback port or the temporary directory could not be had.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The state could not be built.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl LocalServices {
    /// Binds a loopback ephemeral port for each of the four services (so trips knows where
    /// parties lives, running or not) and builds their state from `config`, with its
    /// database and parties URL replaced. Serves nothing yet: see [`LocalServices::start`].
    pub async fn bind(mut config: Config, database: Database) -> Result<Self, LocalError> {
        let mut idle = HashMap::new();
        let mut addrs = HashMap::new();
        for service in Service::ALL {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(service, listener.local_addr()?);
            idle.insert(service, listener);
        }
        config = config
            .with_parties_url(&format!("http://{}", addrs[&Service::Parties]))
            .map_err(StartError::from)?;
        let dir = match database {
            Database::FreshSqlite => {
                let dir = TempDir::new()?;
                config.database_url = format!("sqlite://{}/travel.db", dir.0.display());
                Some(dir)
            }
            Database::Url(url) => {
                config.database_url = url;
                None
            }
        };
        Ok(LocalServices {
            state: AppState::new(&config).await?,
            addrs,
            idle,
            running: HashMap::new(),
            wrap: None,
            _dir: dir,
        })
    }

    /// Has every router wrapped by `wrap` from now on (restarts included).
    pub fn wrap_routers(&mut self, wrap: Wrap) {
        self.wrap = Some(wrap);
    }

    /// Serves `services` on their ports. Needs a Tokio runtime.
    pub fn start(&mut self, services: &[Service]) {
        for service in services {
            if let Some(listener) = self.idle.remove(service) {
                self.serve(*service, listener);
            }
        }
    }

    /// The address of `service`, running or not.
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs[&service]
    }

    /// The state the services share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops `service` gracefully: its listener closes, in-flight requests finish and every
    /// connection (idle pooled ones included) is closed. An error if it had not stopped
    /// within 10 s (it is then aborted) or ended with one.
    pub async fn stop(&mut self, service: Service) -> io::Result<()> {
        self.idle.remove(&service);
        let Some(Running { stop, mut task }) = self.running.remove(&service) else {
            return Ok(());
        };
        let _ = stop.send(());
        match tokio::time::timeout(PATIENCE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => {
                task.abort();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the {} service did not stop", service.name()),
                ))
            }
        }
    }

    /// Stops `service` if it runs, then serves it again on the same port with the same data.
    pub async fn restart(&mut self, service: Service) -> io::Result<()> {
        self.stop(service).await?;
        let addr = self.addrs[&service];
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(service, listener);
        Ok(())
    }

    fn serve(&mut self, service: Service, listener: TcpListener) {
        let mut router = service.router(self.state.clone());
        if let Some(wrap) = &self.wrap {
            router = wrap(service, router);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        self.running.insert(service, Running { stop, task });
    }
}

impl Drop for LocalServices {
    fn drop(&mut self) {
        for (_, running) in self.running.drain() {
            running.task.abort();
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "travel-local-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
