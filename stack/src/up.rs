//! `travel up`: the whole stack in one process, for a fresh machine with no PostgreSQL or
//! Redis. The four services run on this process's Tokio runtime, sharing one database pool
//! (like `travel serve all`); the gateway runs from the repository's `gateway.yaml` on a plain
//! OS thread, because Pingora's `Server::run` builds its own runtimes and must not start
//! inside ours. One stop signal stops the gateway first (so no request reaches a service that
//! is going away), then the services, then the pool.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::config::{BackendSpec, ConfigErrors};
use gateway::server::{ShutdownSender, shutdown_channel};
use pingora::server::ShutdownSignal;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use travel::auth::jwt::MIN_SECRET_BYTES;
use travel::running::{RunningServices, StopSignal, StopSignals};
use travel::{AppState, Config, Service};

/// Environment variable holding the token key, for the services and (by default) the gateway.
pub const SECRET_ENV: &str = "JWT_SECRET";

/// How long the gateway may take to accept connections after start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Flags of `travel up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// The gateway's config file.
    #[arg(long, default_value = "gateway.yaml")]
    pub config: PathBuf,
    /// Directory of the SQLite database (DIR/travel.db); created if absent.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Use this database instead of the SQLite file: sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Start from an empty database: delete DIR/travel.db first (not with --database-url).
    #[arg(long, conflicts_with = "database_url")]
    pub fresh: bool,
    /// Gateway listen address, instead of the config's server.listen.
    #[arg(long)]
    pub gateway_listen: Option<SocketAddr>,
    /// Admin listen address (metrics, breakers), instead of the config's admin.listen.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Port of the users service (on 127.0.0.1).
    #[arg(long, default_value_t = Service::Users.default_port())]
    pub users_port: u16,
    /// Port of the paths service.
    #[arg(long, default_value_t = Service::Paths.default_port())]
    pub paths_port: u16,
    /// Port of the trips service.
    #[arg(long, default_value_t = Service::Trips.default_port())]
    pub trips_port: u16,
    /// Port of the parties service.
    #[arg(long, default_value_t = Service::Parties.default_port())]
    pub parties_port: u16,
}

impl UpArgs {
    fn addr(&self, service: Service) -> SocketAddr {
        let port = match service {
            Service::Users => self.users_port,
            Service::Paths => self.paths_port,
            Service::Trips => self.trips_port,
            Service::Parties => self.parties_port,
        };
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }
}

/// One listen address that cannot be used, and why.
#[derive(Debug)]
pub struct TakenPort {
    /// What wanted it: a service name, `gateway` or `admin`.
    pub what: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// `None` when simply in use.
    pub error: Option<io::Error>,
}

/// Why `travel up` could not start (or stopped on its own).
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// No gateway config at the path.
    #[error(
        "gateway config {0} not found: run `travel up` from the repository root or pass --config PATH"
    )]
    ConfigMissing(PathBuf),
    /// The gateway config could not be read.
    #[error("cannot read the gateway config {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The gateway config is invalid (every problem listed).
    #[error("invalid gateway config: {0}")]
    Config(ConfigErrors),
    /// The gateway would verify tokens with a key other than the services' one.
    #[error(
        "{0}: auth.jwt.secret_env must name {SECRET_ENV} (or hold the same value): travel up \
         gives the gateway and the services one key"
    )]
    SecretMismatch(PathBuf),
    /// `JWT_SECRET` is set but unusable.
    #[error("{SECRET_ENV} is set but {0}")]
    BadSecret(String),
    /// No randomness for a generated secret.
    #[error("cannot generate a {SECRET_ENV} for this run: {0}")]
    Random(getrandom::Error),
    /// Listen addresses taken.
    #[error("{}", taken_message(.0))]
    PortsTaken(Vec<TakenPort>),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `--fresh` could not delete the database.
    #[error("--fresh: cannot delete {path}: {source}")]
    Fresh {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The services' configuration was refused.
    #[error(transparent)]
    ServiceConfig(#[from] travel::config::ConfigError),
    /// Database unreachable, migrations failed, ...
    #[error("cannot start the services (database unreachable or migration failed?): {0}")]
    Services(#[from] travel::StartError),
    /// The gateway could not be built.
    #[error("cannot start the gateway: {0}")]
    Gateway(#[from] gateway::StartError),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot listen for stop signals: {0}")]
    Signals(io::Error),
    /// The gateway thread could not be spawned.
    #[error("cannot start the gateway thread: {0}")]
    Thread(io::Error),
    /// The gateway never accepted connections.
    #[error("the gateway did not accept connections on {0} within {READY_WITHIN:?}")]
    NotReady(SocketAddr),
    /// A part of the stack stopped on its own.
    #[error("{0}; the rest was stopped")]
    Stopped(String),
    /// A second stop signal arrived while stopping.
    #[error("second {0}: stopped without waiting for in-flight requests")]
    Interrupted(&'static str),
}

fn taken_message(taken: &[TakenPort]) -> String {
    let list: Vec<String> = taken
        .iter()
        .map(|t| match &t.error {
            None => format!("{} {} (in use)", t.what, t.addr),
            Some(e) => format!("{} {} ({e})", t.what, t.addr),
        })
        .collect();
    format!(
        "cannot listen on {}. Stop whatever holds them (e.g. an earlier `travel up`; `ss -ltnp` \
         shows it) or choose others with --users-port, --paths-port, --trips-port, \
         --parties-port, --gateway-listen, --admin-listen",
        list.join(", ")
    )
}

/// Where the token key of this run came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecretSource {
    Environment,
    Generated,
}

/// `JWT_SECRET` if set (and long enough), else 32 random bytes, hex-encoded.
fn run_secret() -> Result<(String, SecretSource), UpError> {
    match std::env::var(SECRET_ENV) {
        Ok(s) if !s.is_empty() => {
            if s.len() < MIN_SECRET_BYTES {
                return Err(UpError::BadSecret(format!(
                    "is {} bytes; it must be at least {MIN_SECRET_BYTES} (or unset it and a \
                     random one is generated for the run)",
                    s.len()
                )));
            }
            Ok((s, SecretSource::Environment))
        }
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(UpError::Random)?;
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok((hex, SecretSource::Generated))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(UpError::BadSecret("is not valid UTF-8".to_owned()))
        }
    }
}

/// The gateway config to run: compiled from the file, then pointed at this run's services and
/// listeners. `overridden` says whether the flags changed anything the file says.
struct GatewayConfig {
    config: gateway::Config,
    overridden: bool,
}

/// Reads secrets for the gateway config: this run's key under `JWT_SECRET`, the rest from
/// the environment.
fn gateway_env(secret: &str) -> gateway::reload::Env {
    let secret = secret.to_owned();
    Arc::new(move |name: &str| {
        if name == SECRET_ENV {
            Some(secret.clone())
        } else {
            std::env::var(name).ok()
        }
    })
}

/// Read and compile the gateway config, then point it at this run's services and listeners.
fn gateway_config(args: &UpArgs, secret: &str) -> Result<GatewayConfig, UpError> {
    let path = &args.config;
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            UpError::ConfigMissing(path.clone())
        } else {
            UpError::ConfigRead {
                path: path.clone(),
                source,
            }
        }
    })?;
    let env = gateway_env(secret);
    let mut config =
        gateway::Config::parse_with_env(&text, &|name| env(name)).map_err(|errors| {
            UpError::Config(ConfigErrors {
                file: path.display().to_string(),
                errors,
            })
        })?;
    if config
        .auth
        .as_ref()
        .is_some_and(|auth| auth.secret.expose() != secret.as_bytes())
    {
        return Err(UpError::SecretMismatch(path.clone()));
    }
    let mut overridden = false;
    if let Some(addr) = args.gateway_listen {
        overridden |= config.server.listen != addr;
        config.server.listen = addr;
    }
    if let Some(addr) = args.admin_listen {
        overridden |= config.admin.listen != addr;
        config.admin.listen = addr;
    }
    // Upstreams named after a service get exactly that service's address: this process runs
    // one instance of each.
    for service in Service::ALL {
        let addr = args.addr(service);
        if let Some(upstream) = config
            .upstreams
            .iter_mut()
            .find(|u| &*u.name == service.name())
        {
            // The services this process runs speak plain HTTP.
            let wanted = vec![BackendSpec {
                label: Arc::from(addr.to_string()),
                addr,
                tls: None,
            }];
            overridden |= upstream.backends.iter().map(|b| b.addr).ne([addr]);
            upstream.backends = wanted;
        }
    }
    Ok(GatewayConfig { config, overridden })
}

/// Bind the services' listeners and probe the gateway's, reporting every taken one at once.
/// Needs a Tokio runtime (the listeners are Tokio's).
fn bind_all(
    args: &UpArgs,
    gateway: &gateway::Config,
) -> Result<Vec<(Service, TcpListener)>, UpError> {
    let mut taken = Vec::new();
    let mut bound = Vec::new();
    let mut note = |what, addr, e: io::Error| {
        let error = (e.kind() != io::ErrorKind::AddrInUse).then_some(e);
        taken.push(TakenPort { what, addr, error });
    };
    for service in Service::ALL {
        let addr = args.addr(service);
        let listener = std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        });
        match listener {
            Ok(l) => bound.push((service, l)),
            Err(e) => note(service.name(), addr, e),
        }
    }
    // Pingora binds these itself, later; a probe now turns "in use" into a clear error instead
    // of 30 s of retries (GatewayServer::build probes again, just before).
    for (what, addr) in [
        ("gateway", gateway.server.listen),
        ("admin", gateway.admin.listen),
    ] {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            note(what, addr, e);
        }
    }
    if taken.is_empty() {
        Ok(bound)
    } else {
        Err(UpError::PortsTaken(taken))
    }
}

/// The database URL of the run: `--database-url`, else `DIR/travel.db` (directory created).
fn database_url(args: &UpArgs) -> Result<String, UpError> {
    if let Some(url) = &args.database_url {
        return Ok(url.clone());
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|source| UpError::DataDir {
        path: args.data_dir.clone(),
        source,
    })?;
    let file = args.data_dir.join("travel.db");
    if args.fresh {
        // SQLite's write-ahead log and shared-memory files go with the database.
        for suffix in ["", "-wal", "-shm"] {
            let mut path = file.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(UpError::Fresh {
                        path: path.into(),
                        source,
                    });
                }
            }
        }
    }
    Ok(format!("sqlite://{}", file.display()))
}

/// The gateway on its own thread.
struct RunningGateway {
    /// Its stop signal goes over a channel: Pingora then installs no signal handler of its
    /// own, and this process alone owns SIGINT and SIGTERM.
    stop: ShutdownSender,
    done: oneshot::Receiver<()>,
    finished: bool,
    thread: Option<JoinHandle<()>>,
}

impl RunningGateway {
    /// Run from the file, watched and reloaded on edits, when the flags override nothing it
    /// says; otherwise from the overridden config, never reloaded (a reload would lose the
    /// overrides).
    fn start(gateway: &GatewayConfig, args: &UpArgs, secret: &str) -> Result<Self, UpError> {
        let server = if gateway.overridden {
            gateway::GatewayServer::build(gateway.config.clone())?
        } else {
            gateway::GatewayServer::from_file(
                &args.config,
                gateway_env(secret),
                gateway::server::ReloadOptions { on_sighup: false },
            )?
        };
        let (stop, watch) = shutdown_channel();
        let (done_tx, done) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("gateway".to_owned())
            .spawn(move || {
                server.run(watch);
                let _ = done_tx.send(());
            })
            .map_err(UpError::Thread)?;
        Ok(Self {
            stop,
            done,
            finished: false,
            thread: Some(thread),
        })
    }

    /// Completes when the gateway has stopped (asked to or not).
    async fn stopped(&mut self) {
        if !self.finished {
            let _ = (&mut self.done).await;
            self.finished = true;
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Where to connect to reach a listen address (an unspecified address is reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// Poll until `addr` accepts a connection; false if the gateway stopped or time ran out.
async fn wait_ready(addr: SocketAddr, gateway: &mut RunningGateway) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if gateway.done.try_recv().is_ok() {
            gateway.finished = true;
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn print_banner(
    args: &UpArgs,
    chosen: &GatewayConfig,
    database: &str,
    secret: SecretSource,
    took: Duration,
) {
    let config = &chosen.config;
    let gw = format!("http://{}", reachable(config.server.listen));
    let reload = if chosen.overridden {
        "fixed for this run (the flags override it)".to_owned()
    } else {
        format!(
            "{} is watched (checked every {:?}): valid edits apply without a restart",
            args.config.display(),
            config.server.watch_interval
        )
    };
    let admin = format!("http://{}", reachable(config.admin.listen));
    let db = if args.database_url.is_some() {
        "the --database-url database".to_owned()
    } else {
        database.trim_start_matches("sqlite://").to_owned()
    };
    let ports: Vec<String> = Service::ALL
        .iter()
        .map(|s| format!("{} {}", s.name(), args.addr(*s)))
        .collect();
    let key = match secret {
        SecretSource::Environment => format!("{SECRET_ENV} from the environment"),
        SecretSource::Generated => format!(
            "{SECRET_ENV} generated for this run (tokens from earlier runs no longer verify; \
             export {SECRET_ENV} to keep one)"
        ),
    };
    println!(
        "travel up: ready in {:.1} s\n\
         \x20 gateway   {gw}\n\
         \x20 metrics   {admin}/metrics\n\
         \x20 breakers  {admin}/admin/breakers\n\
         \x20 services  {} (database {db})\n\
         \x20 key       {key}\n\
         \x20 config    {reload}\n\
         Try (the first steps of the README's tour):\n\
         \x20 curl -s -X POST {gw}/user -d 'first_name=Ada&last_name=Lovelace&email=ada@example.org&title=Countess&login=ada&password=correct-horse'\n\
         \x20 curl -s -u ada:correct-horse -X POST {gw}/path -d 'startpoint=63 Sunfield Way&endpoint=4 Pawling Point'\n\
         Ctrl-C or SIGTERM stops everything; `--fresh` starts again from an empty database.",
        took.as_secs_f64(),
        ports.join(", "),
    );
}

/// Run the stack until Ctrl-C or SIGTERM (Ok) or until a part of it stops on its own (Err).
pub async fn run(args: UpArgs) -> Result<(), UpError> {
    let started = Instant::now();
    // From here on a stop signal is kept until the stack is up, then stops it cleanly.
    let mut signals = StopSignals::install().map_err(UpError::Signals)?;
    let (secret, source) = run_secret()?;
    let chosen = gateway_config(&args, &secret)?;
    let gateway_config = &chosen.config;
    let listeners = bind_all(&args, gateway_config)?;
    let database = database_url(&args)?;

    let parties = format!("http://{}", args.addr(Service::Parties));
    let mut config = Config::new(Some(&secret))?.with_parties_url(&parties)?;
    config.database_url = database.clone();
    let state = AppState::new(&config).await?;
    tracing::info!(backend = ?state.store.backend(), "database ready");

    let mut services = RunningServices::start(&state, listeners);
    let mut gateway = match RunningGateway::start(&chosen, &args, &secret) {
        Ok(g) => g,
        Err(e) => {
            services.stop().await;
            state.store.close().await;
            return Err(e);
        }
    };
    let listen = reachable(gateway_config.server.listen);
    let admin = reachable(gateway_config.admin.listen);
    let ready = wait_ready(listen, &mut gateway).await && wait_ready(admin, &mut gateway).await;
    let outcome = if ready {
        print_banner(&args, &chosen, &database, source, started.elapsed());
        tokio::select! {
            signal = signals.recv() => Ok(signal),
            what = services.unexpected_exit() => Err(UpError::Stopped(what)),
            () = gateway.stopped() => Err(UpError::Stopped("the gateway stopped".to_owned())),
        }
    } else if gateway.finished {
        Err(UpError::Stopped(
            "the gateway stopped while starting".to_owned(),
        ))
    } else {
        Err(UpError::NotReady(listen))
    };

    // The gateway first: it closes its listeners at once, then lets in-flight requests finish
    // (server.grace_period) while the services still answer them.
    let how = match outcome {
        Ok(StopSignal::Interrupt) => ShutdownSignal::FastShutdown,
        _ => ShutdownSignal::GracefulTerminate,
    };
    match &outcome {
        Ok(signal) => tracing::info!(
            signal = signal.name(),
            grace_period = ?gateway_config.server.grace_period,
            "stopping: gateway, then services"
        ),
        Err(e) => tracing::error!(error = %e, "stopping"),
    }
    gateway.stop.stop(how);
    tokio::select! {
        () = gateway.stopped() => {}
        signal = signals.recv() => return Err(UpError::Interrupted(signal.name())),
    }
    services.stop().await;
    state.store.close().await;
    outcome.map(|_| {
        println!("travel up: stopped");
    })
}
