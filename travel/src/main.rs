//! `travel`: command line, logging, start-up and shutdown of the travel services.
//! Everything else lives in the library.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing_subscriber::EnvFilter;

use travel::{AppState, Config, Service};

#[derive(Parser)]
#[command(
    name = "travel",
    version,
    about = "The travel-companion backend services"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "TRAVEL_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one service, or all four in one process (sharing one database pool).
    ///
    /// The token key is read from the environment variable JWT_SECRET (at least 32 bytes);
    /// the service refuses to start without it.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Users,
    Paths,
    Trips,
    Parties,
    All,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Which service to run.
    #[arg(value_enum)]
    which: Which,
    /// Database: sqlite://FILE (created if missing) or postgres://USER@HOST/DB.
    #[arg(long, env = "DATABASE_URL", default_value = travel::config::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Address to listen on.
    #[arg(long, env = "TRAVEL_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the users service.
    #[arg(long, env = "USERS_PORT", default_value_t = 8081)]
    users_port: u16,
    /// Port of the paths service.
    #[arg(long, env = "PATHS_PORT", default_value_t = 8082)]
    paths_port: u16,
    /// Port of the trips service.
    #[arg(long, env = "TRIPS_PORT", default_value_t = 8083)]
    trips_port: u16,
    /// Port of the parties service.
    #[arg(long, env = "PARTIES_PORT", default_value_t = 8084)]
    parties_port: u16,
    /// Lifetime of issued tokens (e.g. 15m, 1h).
    #[arg(long, env = "JWT_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    token_ttl: Duration,
    /// Base URL at which trips calls the parties service.
    #[arg(long, env = "PARTIES_URL", default_value = travel::config::DEFAULT_PARTIES_URL)]
    parties_url: String,
    /// Timeout of each call from trips to parties (e.g. 2s, 500ms).
    #[arg(long, env = "PARTIES_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    parties_timeout: Duration,
}

impl ServeArgs {
    fn services(&self) -> Vec<Service> {
        match self.which {
            Which::Users => vec![Service::Users],
            Which::Paths => vec![Service::Paths],
            Which::Trips => vec![Service::Trips],
            Which::Parties => vec![Service::Parties],
            Which::All => Service::ALL.to_vec(),
        }
    }

    fn port(&self, service: Service) -> u16 {
        match service {
            Service::Users => self.users_port,
            Service::Paths => self.paths_port,
            Service::Trips => self.trips_port,
            Service::Parties => self.parties_port,
        }
    }

    fn config(&self) -> anyhow::Result<Config> {
        let secret = std::env::var("JWT_SECRET").ok();
        let mut config = Config::new(secret.as_deref())?.with_parties_url(&self.parties_url)?;
        config.database_url = self.database_url.clone();
        config.token_ttl = self.token_ttl;
        config.parties_timeout = self.parties_timeout;
        Ok(config)
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let state = AppState::new(&config)
        .await
        .context("cannot start (database unreachable or migration failed?)")?;
    tracing::info!(backend = ?state.store.backend(), "database ready");

    // Bind every port first, so a taken port fails start-up before anything serves.
    let mut listeners = Vec::new();
    for service in args.services() {
        let addr = SocketAddr::new(args.host, args.port(service));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for {}", service.name()))?;
        tracing::info!(service = service.name(), %addr, "listening");
        listeners.push((service, listener));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (service, listener) in listeners {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            // Either a `true` or a dropped sender means stop.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let state = state.clone();
        tasks.spawn(async move {
            (
                service,
                travel::serve(service, listener, state, stopped).await,
            )
        });
    }

    let mut failed = false;
    tokio::select! {
        () = shutdown_signal() => tracing::info!("shutting down"),
        Some(done) = tasks.join_next() => {
            failed = true;
            match done {
                Ok((service, result)) => tracing::error!(service = service.name(), ?result, "service stopped"),
                Err(e) => tracing::error!(error = %e, "service task failed"),
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok((service, Err(e))) = done {
            tracing::error!(service = service.name(), error = %e, "service error");
        }
    }
    state.store.close().await;
    if failed {
        bail!("a service stopped unexpectedly");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with the whole cause chain (no backtrace noise for operators).
            eprintln!("travel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
