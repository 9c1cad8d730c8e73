//! The travel-companion backend: users, paths, trips and parties services, compatible with the
//! original C++ course project's API (see `docs/compatibility.md` for every deliberate change).
//!
//! Everything is a library so that the `travel` command (the `stack` crate), the integration
//! tests and the gateway's tests start services the same way: build an [`AppState`] from a
//! [`Config`], bind a listener, call [`serve`] ([`running`] does it for a set of services;
//! [`local`] runs them on loopback ephemeral ports for tests). Nothing here knows the
//! gateway: the services build and test without it.

pub mod auth;
pub mod config;
pub mod db;
pub mod http;
pub mod local;
pub mod params;
pub mod parties_client;
pub mod problem;
pub mod running;
pub mod services;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

pub use config::Config;
pub use db::Store;

use auth::{Jwt, Passwords};
use parties_client::PartiesClient;
use problem::Instance;

/// One of the four services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Registration, login (`/auth`), token check, user reads.
    Users,
    /// Paths.
    Paths,
    /// Trips (calls parties).
    Trips,
    /// Trip memberships.
    Parties,
}

impl Service {
    /// All four, in port order.
    pub const ALL: [Service; 4] = [
        Service::Users,
        Service::Paths,
        Service::Trips,
        Service::Parties,
    ];

    /// Default TCP port.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Users => 8081,
            Service::Paths => 8082,
            Service::Trips => 8083,
            Service::Parties => 8084,
        }
    }

    /// Name used in logs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Paths => "paths",
            Service::Trips => "trips",
            Service::Parties => "parties",
        }
    }

    /// The original's `instance` label for this service's errors.
    pub fn instance(self) -> Instance {
        match self {
            Service::Users => Instance::User,
            Service::Paths => Instance::Path,
            Service::Trips => Instance::Trip,
            Service::Parties => Instance::Party,
        }
    }

    fn routes(self) -> services::Routes {
        match self {
            Service::Users => services::users::routes(),
            Service::Paths => services::paths::routes(),
            Service::Trips => services::trips::routes(),
            Service::Parties => services::parties::routes(),
        }
    }

    /// The paths of the service's API (`/healthz` aside), as its router mounts them.
    pub fn paths(self) -> Vec<&'static str> {
        self.routes().into_iter().map(|(path, _)| path).collect()
    }

    /// The service's routes, `/healthz`, fallbacks and middleware.
    pub fn router(self, state: AppState) -> Router {
        let routes = self
            .routes()
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(path, methods)
            });
        let instance = self.instance();
        let name = self.name();
        routes
            .route("/healthz", get(http::healthz))
            .fallback(move || async move { http::not_found(instance) })
            .layer(axum::middleware::from_fn(move |req, next| {
                http::problems(instance, req, next)
            }))
            .layer(axum::middleware::from_fn(move |req, next| {
                http::trace(name, req, next)
            }))
            .with_state(state)
    }
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .ok_or_else(|| format!("unknown service {s:?}"))
    }
}

/// Why the shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration refused.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Database unreachable or migrations failed.
    #[error(transparent)]
    Store(#[from] db::StoreError),
    /// Secret refused.
    #[error(transparent)]
    Jwt(#[from] auth::jwt::JwtError),
    /// Hasher could not start.
    #[error(transparent)]
    Password(#[from] auth::password::PasswordError),
    /// HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What every handler can reach; one per process, cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Database.
    pub store: Store,
    /// Token keys.
    pub jwt: Jwt,
    /// Password hasher.
    pub passwords: Passwords,
    /// Trips' client of the parties service.
    pub parties: PartiesClient,
    /// Seconds a client should wait before retrying after a 503.
    pub retry_after_secs: u32,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connect to the database (running migrations) and build the rest from `config`.
    pub async fn new(config: &Config) -> Result<Self, StartError> {
        let store = Store::connect(&config.database_url).await?;
        Self::with_store(config, store).await
    }

    /// Build the state around an existing store.
    pub async fn with_store(config: &Config, store: Store) -> Result<Self, StartError> {
        Ok(Self(Arc::new(Inner {
            store,
            jwt: Jwt::new(&config.jwt_secret, config.token_ttl)?,
            passwords: Passwords::new(config.hash_parallelism).await?,
            parties: PartiesClient::new(&config.parties_url, config.parties_timeout)?,
            retry_after_secs: 2,
        })))
    }
}

/// Serve `service` on `listener` until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    service: Service,
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = service.router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
