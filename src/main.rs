//! The `gateway` binary: command line, logging, config loading, then the server.

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway::{
    Config, GatewayServer,
    config::{explain_breaker, explain_limit, explain_limits, explain_upstream},
    reload::process_env,
    server::{ReloadOptions, StartError},
};

// jemalloc's per-thread caches and size classes cost 8–9 % fewer instructions per request than
// glibc's malloc on every path measured (proxied, cache hit, open breaker), most of them in
// Pingora's and http's own allocations (docs/benchmarks.md, #14).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "A resilient API gateway on Pingora")]
struct Cli {
    /// The gateway's config file. It is watched: valid edits apply without a restart.
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
    Check {
        /// Also say, for each breaker, what makes it open and close.
        #[arg(long)]
        explain: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check { explain }) = cli.command {
        return check(&cli.config, explain);
    }

    gateway::telemetry::init(matches!(cli.log_format, LogFormat::Json));
    // A panic in any Pingora service thread would leave the others running, half alive.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(70);
    }));

    let options = ReloadOptions { on_sighup: true };
    let server = match GatewayServer::from_file(&cli.config, process_env(), options) {
        Ok(server) => server,
        Err(StartError::Config(errors)) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = server.state.load().config.clone();
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.admin.listen,
        config = %cli.config.display(),
        "gateway starting"
    );
    server.run_forever()
}

/// Stands in for a secret variable that is not set where `check` runs: long enough for a
/// JWT key and shaped like a Redis URL, so the rest of the file is still checked.
const STAND_IN: &str = "redis://stand-in-for-an-unset-variable:6379/0";

/// Checking a file's structure does not need the production secrets: a variable that is not
/// set gets a stand-in, and the report says that `gateway` will need it at start. A variable
/// that is set is checked as it is.
/// One line of `gateway check`'s report on stdout. A reader that stops early (`| head`) ends
/// the report quietly: the check's answer is its exit status, and `println!` would panic on
/// the closed pipe.
macro_rules! report {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn check(path: &std::path::Path, explain: bool) -> ExitCode {
    let unset = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let env = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            unset.borrow_mut().insert(name.to_owned());
            Some(STAND_IN.to_owned())
        })
    };
    let mut out = std::io::stdout().lock();
    let config = match Config::load_with_env(path, &env) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    report!(
        out,
        "{}: ok ({} upstreams, {} routes)",
        path.display(),
        config.upstreams.len(),
        config.routes.len()
    );
    if config.admin.is_open_beyond_loopback() {
        eprintln!(
            "warning: admin.listen {} is reachable from other machines with no token (admin.open: true): anyone who reaches it sees the breakers, the config and the live page; set admin.token_env instead",
            config.admin.listen
        );
    }
    for name in unset.borrow().iter() {
        report!(
            out,
            "note: the environment variable {name} is not set here; the file names it, so \
             `gateway` will need it at start"
        );
    }
    if explain {
        let mut seen = std::collections::BTreeMap::new();
        for upstream in &config.upstreams {
            seen.entry(upstream.breaker.clone())
                .or_insert_with(|| (upstream.policy.clone(), Vec::new()))
                .1
                .push(upstream.name.clone());
        }
        for (name, (policy, users)) in seen {
            let users: Vec<&str> = users.iter().map(|u| &**u).collect();
            report!(
                out,
                "\nbreaker {name} (each backend of {}):",
                users.join(", ")
            );
            for line in explain_breaker(&policy) {
                report!(out, "  - {line}");
            }
        }
        for upstream in &config.upstreams {
            let lines = explain_upstream(upstream);
            if !lines.is_empty() {
                report!(out, "\nupstream {}:", upstream.name);
                for line in lines {
                    report!(out, "  - {line}");
                }
            }
        }
        if let Some(auth) = &config.auth {
            let lines = explain_limit(&auth.exchange_limit, "the token exchange");
            if !lines.is_empty() {
                report!(
                    out,
                    "\ntoken exchange (auth.token_endpoint, at {}):",
                    auth.upstream
                );
                for line in lines {
                    report!(out, "  - {line}");
                }
            }
        }
        for (heading, lines) in explain_limits(&config) {
            report!(out, "\n{heading}");
            for line in lines {
                report!(out, "  - {line}");
            }
        }
    }
    ExitCode::SUCCESS
}
