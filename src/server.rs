//! Assembles the Pingora server: the proxy service on `server.listen` (and, with
//! `server.tls`, on `server.tls.listen` over a swappable certificate), the admin service on
//! `admin.listen`, and background services (cache store connection, config watcher), all
//! over one shared, swappable [`State`]. `main` and the integration tests build the gateway
//! the same way, through [`GatewayServer::build`] or [`GatewayServer::from_file`].

use std::{
    io,
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    time::Instant,
};

use arc_swap::ArcSwap;
use pingora::{
    listeners::tls::TlsSettings,
    server::{
        RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
        UnixShutdownSignalWatch, configuration::ServerConf,
    },
    services::{
        background::{BackgroundService, background_service},
        listening::Service,
    },
};
use pingora_proxy::http_proxy;

use crate::{
    admin::Admin,
    checker::HealthCheckers,
    config::{Config, ConfigErrors},
    drain::{Drain, DrainingShutdown, UntilExit},
    events::EventBus,
    proxy::{Gateway, HeaderDeadline},
    reload::{self, CertWatcher, Env, Reloader},
    state::State,
    tls::CertResolver,
};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{key} {addr} is already in use by another process")]
    AddressInUse { key: &'static str, addr: SocketAddr },
    #[error("cache store: {0}")]
    Cache(crate::cache::StoreError),
    #[error("server.tls: {0}")]
    Tls(String),
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
    drain: Arc<Drain>,
    /// The TLS listener's certificate, when `server.tls` is configured.
    pub certificates: Option<Arc<CertResolver>>,
}

/// How a gateway built from a file reacts to changes of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadOptions {
    /// Reload on SIGHUP too (the binary does; in-process tests need not).
    pub on_sighup: bool,
}

impl GatewayServer {
    /// A gateway for a config given in memory; it never reloads.
    pub fn build(config: Config) -> Result<Self, StartError> {
        Self::assemble(config, None)
    }

    /// A gateway for a config file, which it watches and reloads.
    pub fn from_file(path: &Path, env: Env, options: ReloadOptions) -> Result<Self, StartError> {
        let (config, hash) = reload::load(path, &env).map_err(StartError::Config)?;
        Self::assemble(config, Some((path, env, hash, options)))
    }

    fn assemble(
        config: Config,
        file: Option<(&Path, Env, String, ReloadOptions)>,
    ) -> Result<Self, StartError> {
        check_bindable("server.listen", config.server.listen)?;
        check_bindable("admin.listen", config.admin.listen)?;
        if let Some(tls) = &config.server.tls {
            check_bindable("server.tls.listen", tls.listen)?;
        }

        let conf = ServerConf {
            threads: config.server.threads,
            work_stealing: config.server.work_stealing,
            grace_period_seconds: Some(config.server.grace_period.as_millis().div_ceil(1000) as u64),
            graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_SECONDS),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let (listen, admin_listen) = (config.server.listen, config.admin.listen);
        let tls = config.server.tls.clone();
        let origin = Instant::now();
        let events = Arc::new(EventBus::default());
        let state = State::build(config, origin, None, &events).map_err(StartError::Cache)?;
        let state = Arc::new(ArcSwap::from_pointee(state));
        let reloader = file.map(|(path, env, hash, options)| {
            let reloader = Reloader::new(path.to_path_buf(), env, state.clone(), origin, hash);
            (Arc::new(reloader), options)
        });

        let drain = Arc::new(Drain::default());
        let gateway = http_proxy(
            &server.configuration,
            Gateway::new(state.clone(), drain.clone()),
        );
        let mut proxy = Service::new(
            "gateway".to_owned(),
            HeaderDeadline::new(gateway, state.clone()),
        );
        proxy.add_tcp(&listen.to_string());
        let mut resolver = None;
        if let Some(tls) = tls {
            let certs = Arc::new(CertResolver::new(tls.loaded.clone()));
            // Pingora reads no file when given a resolver: every handshake asks it.
            let mut settings =
                TlsSettings::intermediate("", "").map_err(|e| StartError::Tls(e.to_string()))?;
            settings.set_cert_resolver(certs.clone());
            if tls.http2 {
                settings.enable_h2();
            }
            proxy.add_tls_with_settings(&tls.listen.to_string(), None, settings);
            resolver = Some(certs);
        }
        let admin_app = Admin::new(
            state.clone(),
            reloader.as_ref().map(|(r, _)| r.clone()),
            drain.clone(),
        );
        server.add_service(background_service("admin snapshots", admin_app.ticker()));
        let mut admin = Service::new("admin".to_owned(), admin_app);
        admin.threads = Some(1);
        admin.add_tcp(&admin_listen.to_string());
        server.add_service(proxy);
        // Probes keep getting an answer ("draining") until the process exits.
        server.add_service(UntilExit(admin));
        server.add_service(background_service(
            "cache store",
            StoreConnector(state.clone()),
        ));
        server.add_service(background_service(
            "health checks",
            HealthCheckers::new(state.clone()),
        ));
        if let Some(resolver) = &resolver {
            let watcher = CertWatcher::new(resolver.clone(), state.clone());
            let options = reloader.as_ref().map(|(_, o)| *o).unwrap_or_default();
            server.add_service(background_service(
                "certificate watcher",
                CertWatch { watcher, options },
            ));
        }
        if let Some((reloader, options)) = reloader {
            server.add_service(background_service(
                "config watcher",
                Watcher { reloader, options },
            ));
        }
        Ok(GatewayServer {
            server,
            state,
            drain,
            certificates: resolver,
        })
    }

    /// Runs until `shutdown` fires; returns once every service has stopped. A graceful
    /// terminate drains first (see [`crate::drain`]).
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch + Send + Sync>) {
        let state = self.state.clone();
        let shutdown = DrainingShutdown {
            inner: shutdown,
            drain: self.drain,
            delay: Box::new(move || state.load().config.server.shutdown_delay),
        };
        self.server.run(RunArgs {
            shutdown_signal: Box::new(shutdown),
        });
    }

    /// Runs until SIGTERM (drains for `server.shutdown_delay`, then waits
    /// `server.grace_period` for in-flight requests) or SIGINT (immediate), then exits the
    /// process.
    pub fn run_forever(self) -> ! {
        self.run(Box::new(UnixShutdownSignalWatch));
        std::process::exit(0)
    }
}

/// A shutdown trigger for [`GatewayServer::run`] that installs no signal handlers: for
/// tests and for programs that embed the gateway and handle signals themselves.
pub fn shutdown_channel() -> (ShutdownSender, Box<dyn ShutdownSignalWatch + Send + Sync>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    (
        ShutdownSender(sender),
        Box::new(ChannelShutdown(tokio::sync::Mutex::new(receiver))),
    )
}

/// Asks a gateway started with [`shutdown_channel`] to stop.
#[derive(Debug, Clone)]
pub struct ShutdownSender(tokio::sync::mpsc::Sender<ShutdownSignal>);

impl ShutdownSender {
    /// `GracefulTerminate` waits `server.grace_period` for in-flight requests;
    /// `FastShutdown` stops at once. Never blocks; a second request is ignored.
    pub fn stop(&self, how: ShutdownSignal) {
        let _ = self.0.try_send(how);
    }
}

struct ChannelShutdown(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<ShutdownSignal>>);

#[async_trait::async_trait]
impl ShutdownSignalWatch for ChannelShutdown {
    async fn recv(&self) -> ShutdownSignal {
        // A dropped sender means nobody can ask any more: stop.
        self.0
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}

/// Connects a remote cache store (and the rate limits' Redis) when the server starts, so
/// the first requests need not go uncached (or be counted locally) while it connects. Its runtime lives until shutdown, and with it the
/// connection's driver task.
struct StoreConnector(Arc<ArcSwap<State>>);

#[async_trait::async_trait]
impl BackgroundService for StoreConnector {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let state = self.0.load();
        state.cache.connect();
        state.rate_limits.connect();
        drop(state);
        let _ = shutdown.changed().await;
    }
}

struct Watcher {
    reloader: Arc<Reloader>,
    options: ReloadOptions,
}

#[async_trait::async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.reloader.watch(shutdown, self.options.on_sighup).await;
    }
}

struct CertWatch {
    watcher: CertWatcher,
    options: ReloadOptions,
}

#[async_trait::async_trait]
impl BackgroundService for CertWatch {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.watcher.watch(shutdown, self.options.on_sighup).await;
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
