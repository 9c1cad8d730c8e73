//! The `gateway` binary: command line, logging, config loading, then the server.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway::{Config, GatewayServer};

#[derive(Parser)]
#[command(version, about = "A resilient API gateway on Pingora")]
struct Cli {
    /// The gateway's config file.
    #[arg(long, global = true, default_value = "gateway.yaml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config file and exit: 0 when valid, 1 with every problem otherwise.
    Check,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Check) = cli.command {
        println!(
            "{}: ok ({} upstreams, {} routes)",
            cli.config.display(),
            config.upstreams.len(),
            config.routes.len()
        );
        return ExitCode::SUCCESS;
    }

    gateway::telemetry::init(matches!(cli.log_format, LogFormat::Json));
    // A panic in any Pingora service thread would leave the others running, half alive.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(70);
    }));

    let server = match GatewayServer::build(&config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.admin.listen,
        config = %cli.config.display(),
        "gateway starting"
    );
    server.run_forever()
}
