//! Runtime configuration of the services, already validated (main builds it from flags and
//! environment; tests build it directly).

use std::time::Duration;

use crate::auth::jwt::MIN_SECRET_BYTES;

/// Default database: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/travel.db";
/// Default base URL of the parties service, as trips calls it.
pub const DEFAULT_PARTIES_URL: &str = "http://127.0.0.1:8084";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `JWT_SECRET` is unset or empty.
    #[error(
        "JWT_SECRET is not set: export a random secret of at least {MIN_SECRET_BYTES} bytes, \
         e.g. `export JWT_SECRET=$(openssl rand -hex 32)`"
    )]
    MissingSecret,
    /// `JWT_SECRET` is too short.
    #[error("JWT_SECRET is {0} bytes; it must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret(usize),
    /// The parties URL is not an http(s) URL.
    #[error("--parties-url {0:?} must start with http:// or https://")]
    PartiesUrl(String),
}

/// Everything a service needs besides its listener.
#[derive(Clone)]
pub struct Config {
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// HMAC key for tokens.
    pub jwt_secret: Vec<u8>,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// Base URL of the parties service (trips calls it).
    pub parties_url: String,
    /// Timeout of each call from trips to parties.
    pub parties_timeout: Duration,
    /// Password hashes computed at once (the rest wait).
    pub hash_parallelism: usize,
}

impl std::fmt::Debug for Config {
    // The secret and the database URL (which may hold a password) are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("token_ttl", &self.token_ttl)
            .field("parties_url", &self.parties_url)
            .field("parties_timeout", &self.parties_timeout)
            .field("hash_parallelism", &self.hash_parallelism)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with defaults for everything but the secret, which is checked.
    pub fn new(jwt_secret: Option<&str>) -> Result<Self, ConfigError> {
        let secret = jwt_secret
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::MissingSecret)?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::ShortSecret(secret.len()));
        }
        Ok(Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            jwt_secret: secret.as_bytes().to_vec(),
            token_ttl: Duration::from_secs(15 * 60),
            parties_url: DEFAULT_PARTIES_URL.to_owned(),
            parties_timeout: Duration::from_secs(2),
            hash_parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
        })
    }

    /// Set and check the parties URL (trailing `/` removed).
    pub fn with_parties_url(mut self, url: &str) -> Result<Self, ConfigError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::PartiesUrl(url.to_owned()));
        }
        self.parties_url = url.trim_end_matches('/').to_owned();
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_required_and_long() {
        assert!(matches!(Config::new(None), Err(ConfigError::MissingSecret)));
        assert!(matches!(
            Config::new(Some("")),
            Err(ConfigError::MissingSecret)
        ));
        assert!(matches!(
            Config::new(Some("abc")),
            Err(ConfigError::ShortSecret(3))
        ));
        let c = Config::new(Some(&"k".repeat(32))).unwrap();
        assert!(!format!("{c:?}").contains("kkkk"));
    }

    #[test]
    fn parties_url_checked() {
        let c = Config::new(Some(&"k".repeat(32))).unwrap();
        assert!(c.clone().with_parties_url("127.0.0.1:1").is_err());
        assert_eq!(
            c.with_parties_url("http://h:1/").unwrap().parties_url,
            "http://h:1"
        );
    }
}
