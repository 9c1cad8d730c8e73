//! `travel`: command line, logging, start-up and shutdown: `serve` (the services), `up` (the
//! whole stack with the gateway), `seed` (the original's data through the gateway).
//! `up` and `seed` live in this crate's library, the services in the `travel` crate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use stack::seed::SeedArgs;
use stack::up::UpArgs;
use travel::running::{RunningServices, StopSignals};
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
    /// Run the whole stack in one process: the four services on 127.0.0.1:8081-8084 with an
    /// SQLite file under ./data/, and the gateway from ./gateway.yaml on its configured
    /// listener (8888). Uses JWT_SECRET if set, else generates one for the run. Ctrl-C or
    /// SIGTERM stops everything.
    Up(UpArgs),
    /// Load the original's seed data (users, paths, trips, memberships) through the gateway.
    /// Exit status 1 when anything failed for a reason other than a 4xx rejection.
    Seed(SeedArgs),
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

/// Default log filter: one line per request from the services, little from the libraries.
const DEFAULT_LOG: &str = "info,sqlx=warn,hyper=warn,reqwest=warn";

/// Logs go to stderr (stdout carries `travel up`'s banner and `travel seed`'s summary).
/// `default` applies unless `RUST_LOG` is set; Pingora's crates are capped so they never
/// log headers.
fn init_logging(json: bool, default: &str) {
    let filter = gateway::telemetry::filter(default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = StopSignals::install().context("cannot listen for stop signals")?;
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

    let mut services = RunningServices::start(&state, listeners);
    let failure = tokio::select! {
        _ = signals.recv() => {
            tracing::info!("shutting down");
            None
        }
        what = services.unexpected_exit() => {
            tracing::error!(what, "service stopped");
            Some(what)
        }
    };
    services.stop().await;
    state.store.close().await;
    if let Some(what) = failure {
        bail!("{what}");
    }
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    // A panic in a Pingora service thread (the gateway runs in this process) would leave the
    // rest running, half alive: end the process instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(70);
    }));
    Ok(stack::up::run(args).await?)
}

/// Seed, print the table (or JSON), and fail when anything failed beyond a 4xx rejection.
async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let summary = stack::seed::run(&args).await?;
    if args.json {
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    if summary.any_failed() {
        bail!(
            "some records failed (5xx or no answer): fix the stack and run again; records already in are kept"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Seed(_) => "warn",
        _ => DEFAULT_LOG,
    };
    init_logging(cli.log_json, default_log);
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Up(args) => up(args).await,
        Command::Seed(args) => seed(args).await,
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
