//! Assembles the Pingora server: the proxy service on `server.listen`, the admin service on
//! `admin.listen`, both over one shared, swappable [`State`]. `main` and the integration
//! tests build the gateway the same way, through [`GatewayServer::build`].

use std::{
    io,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Instant,
};

use arc_swap::ArcSwap;
use pingora::{
    server::{RunArgs, Server, ShutdownSignalWatch, ShutdownWatch, configuration::ServerConf},
    services::{
        background::{BackgroundService, background_service},
        listening::Service,
    },
};
use pingora_proxy::http_proxy_service_with_name;

use crate::{
    admin::Admin,
    auth::{JwtVerifier, TokenProvider, exchange::UsersTokenSource},
    cache::ResponseCache,
    config::Config,
    proxy::{Gateway, State},
};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key} {addr} is already in use by another process")]
    AddressInUse { key: &'static str, addr: SocketAddr },
    #[error("cache store: {0}")]
    Cache(crate::cache::StoreError),
    #[error("{key} {addr} cannot be bound: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// Time the runtimes get to wind down after the grace period.
const RUNTIME_SHUTDOWN_SECONDS: u64 = 1;

pub struct GatewayServer {
    server: Server,
    pub state: Arc<ArcSwap<State>>,
}

impl GatewayServer {
    /// Builds the services. Fails fast when a listen address is taken: Pingora itself would
    /// retry for 30 s and then panic in a service thread while the process lives on.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        check_bindable("server.listen", config.server.listen)?;
        check_bindable("admin.listen", config.admin.listen)?;

        let conf = ServerConf {
            threads: config.server.threads,
            grace_period_seconds: Some(config.server.grace_period.as_millis().div_ceil(1000) as u64),
            graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_SECONDS),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let state = Arc::new(ArcSwap::from_pointee(State::new(config, Instant::now())));
        let auth = config.auth.as_ref().map(|settings| {
            let source = UsersTokenSource::new(
                state.clone(),
                settings.upstream.clone(),
                settings.path.clone(),
            );
            let verifier = JwtVerifier::new(
                settings.secret.expose(),
                &settings.algorithms,
                settings.leeway,
            );
            Arc::new(TokenProvider::new(
                settings.upstream.clone(),
                verifier,
                Arc::new(source),
                settings.cache,
            ))
        });
        let cache = Arc::new(ResponseCache::new(&config.cache).map_err(StartError::Cache)?);
        let mut proxy = http_proxy_service_with_name(
            &server.configuration,
            Gateway::new(state.clone(), auth, cache.clone()),
            "gateway",
        );
        proxy.add_tcp(&config.server.listen.to_string());
        let cache_for_warm_up = cache.clone();
        let mut admin = Service::new("admin".to_owned(), Admin::new(state.clone(), cache));
        admin.threads = Some(1);
        admin.add_tcp(&config.admin.listen.to_string());
        server.add_service(proxy);
        server.add_service(admin);
        server.add_service(background_service(
            "cache store",
            StoreConnector(cache_for_warm_up),
        ));
        Ok(GatewayServer { server, state })
    }

    /// Runs until `shutdown` fires; returns once every service has stopped.
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch>) {
        self.server.run(RunArgs {
            shutdown_signal: shutdown,
        });
    }

    /// Runs until SIGTERM (graceful, waits `server.grace_period`) or SIGINT (immediate),
    /// then exits the process.
    pub fn run_forever(self) -> ! {
        self.server.run_forever()
    }
}

/// Connects a remote cache store when the server starts, so the first requests need not
/// go uncached while it connects. Its runtime lives until shutdown, and with it the
/// connection's driver task.
struct StoreConnector(Arc<ResponseCache>);

#[async_trait::async_trait]
impl BackgroundService for StoreConnector {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0.connect();
        let _ = shutdown.changed().await;
    }
}

fn check_bindable(key: &'static str, addr: SocketAddr) -> Result<(), StartError> {
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(StartError::AddressInUse { key, addr })
        }
        Err(source) => Err(StartError::Bind { key, addr, source }),
    }
}
