//! Validation and compilation of the file shape into runtime types, one file per top-level
//! key of `gateway.yaml` (`server:` is checked in `server.rs`, `breakers:` in
//! `breakers.rs`, ...) plus `cross_checks.rs` for the rules that tie sections together.
//! A key that names another section's entry (an upstream's `breaker`, a route's
//! `upstream`, `auth.token_endpoint.upstream`) is resolved in the file of the key that
//! names it. Every check runs and every problem is returned, each tied to the YAML path it
//! is about.

mod admin;
mod auth;
mod breakers;
mod cache;
mod cross_checks;
mod rate_limits;
mod routes;
mod server;
mod upstreams;

use std::{net::SocketAddr, time::Duration};

use super::{Config, ConfigError, file::GatewayConfig, source_map::SourceMap};

/// Reads an environment variable (secrets such as `auth.jwt.secret_env`).
type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

pub(super) fn compile(
    shape: GatewayConfig,
    map: &SourceMap,
    env: Env<'_>,
) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems {
        map,
        errors: Vec::new(),
    };
    let mut server = server::compile(&mut problems, &shape.server);
    let trusted_proxies =
        rate_limits::trusted_proxies(&mut problems, &shape.server.trusted_proxies);
    if let Some(server) = server.as_mut() {
        server.trusted_proxies = trusted_proxies;
    }
    let rate_limits = rate_limits::compile(&mut problems, &shape.rate_limits, env);
    let admin = admin::compile(&mut problems, &shape.admin, env);
    let breakers = breakers::compile(&mut problems, &shape.breakers);
    let upstreams = upstreams::compile(&mut problems, &shape.upstreams, &breakers);
    let routes = routes::compile(
        &mut problems,
        &shape.routes,
        &shape.upstreams,
        &shape.server,
        &shape.rate_limits,
    );
    let auth = shape
        .auth
        .as_ref()
        .and_then(|config| auth::compile(&mut problems, config, &shape.upstreams, env));
    let exchange_limits = shape
        .auth
        .as_ref()
        .and_then(|config| rate_limits::exchange(&mut problems, &config.exchange_limits));
    let cache = cache::compile(&mut problems, &shape.cache, env);
    cross_checks::run(&mut problems, &shape);

    match (server, admin, cache) {
        (Some(server), Some(admin), Some(cache)) if problems.errors.is_empty() => Ok(Config {
            server,
            admin,
            upstreams,
            routes,
            auth,
            cache,
            rate_limits,
            exchange_limits,
        }),
        _ => Err(problems.errors),
    }
}

/// Every problem found so far.
struct Problems<'a> {
    map: &'a SourceMap,
    errors: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    /// Reports a problem at a full YAML path.
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.errors.push(ConfigError {
            line: self.map.line(&path),
            path,
            message: super::redact_userinfo(&message.into()),
        });
    }

    /// Starts the checks of the part of the file at `path` (`breakers.default`,
    /// `routes[2]`).
    fn part(&mut self, path: impl Into<String>) -> Part<'_, 'a> {
        Part {
            first_problem: self.errors.len(),
            path: path.into(),
            problems: self,
        }
    }
}

/// The checks of one part of the file. Problems are reported by keys relative to the
/// part's path, and [`Part::passed`] says whether the part may be compiled: a part with a
/// problem is reported, never half-used.
struct Part<'p, 'a> {
    problems: &'p mut Problems<'a>,
    path: String,
    first_problem: usize,
}

impl Part<'_, '_> {
    /// The full YAML path of `key` in this part: `""` is the part itself, `"[1]"` an item
    /// of a list part, anything else a key below it.
    fn path_of(&self, key: &str) -> String {
        match key {
            "" => self.path.clone(),
            _ if key.starts_with('[') => format!("{}{key}", self.path),
            _ => format!("{}.{key}", self.path),
        }
    }

    /// Reports a problem at `key` in this part (see [`Part::path_of`]).
    fn add(&mut self, key: &str, message: impl Into<String>) {
        let path = self.path_of(key);
        self.problems.add(path, message);
    }

    /// Ends the part's checks: `Some` when none of them reported a problem, so that
    /// `part.passed()?` stops compiling a part whose problems are already reported.
    fn passed(self) -> Option<()> {
        (self.problems.errors.len() == self.first_problem).then_some(())
    }

    /// Checks that a duration is not zero, and hands it back.
    fn positive_duration(&mut self, key: &str, value: Duration) -> Duration {
        if value.is_zero() {
            self.add(key, "must be greater than zero");
        }
        value
    }

    /// Parses a listen address (`ip:port`; no names: a listener binds an address).
    fn listen_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        let addr = text.trim().parse::<SocketAddr>().ok();
        if addr.is_none() {
            self.add(
                key,
                format!("invalid listen address {text:?}; expected ip:port such as 0.0.0.0:8888"),
            );
        }
        addr
    }
}
