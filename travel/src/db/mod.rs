//! Storage: one sqlx `Any` pool over SQLite (embedded default) or PostgreSQL (production),
//! migrations per backend, and the error vocabulary of the data layer.
//!
//! The SQL is portable (numbered `$n` placeholders, `RETURNING`, `ON CONFLICT DO NOTHING`,
//! `LIKE ... ESCAPE`), so every query is written once; only the schema differs per backend
//! (`migrations/sqlite`, `migrations/postgres`). Each entity has its own module.

pub mod parties;
pub mod paths;
pub mod trips;
pub mod users;

use std::borrow::Cow;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Which database a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend of `url`, from its scheme.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Url(url_scheme(url).to_owned()))
        }
    }
}

/// The scheme of a URL, for error messages that must not echo passwords.
fn url_scheme(url: &str) -> &str {
    url.split_once(':').map_or("?", |(s, _)| s)
}

/// Errors of the data layer, classified the way handlers need them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL scheme {0:?} (use sqlite:// or postgres://)")]
    Url(String),
    /// A unique constraint refused the row (login taken, trip id taken, membership exists).
    #[error("already exists")]
    Conflict,
    /// The database cannot be reached right now (pool timeout, I/O, closed pool).
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Anything else: a bug or a broken schema.
    #[error("database error: {0}")]
    Other(sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Creating the SQLite directory failed.
    #[error("cannot create database directory {0}: {1}")]
    Dir(String, std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
                StoreError::Conflict
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Other(e),
        }
    }
}

/// The shared database handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Migrations compiled into the binary, per backend.
#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>>
                + Send,
        >,
    > {
        let files: &[(i64, &str, &str)] = match self.0 {
            Backend::Sqlite => &[(
                1,
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
            )],
            Backend::Postgres => &[(
                1,
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            )],
        };
        let migrations = files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// For a `sqlite:` URL: create the file's directory and ask sqlx to create the file.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        }
    }
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("{url}?mode=rwc"))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

impl Store {
    /// Connect to `url` (`sqlite://...` or `postgres://...`) and run the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        let pool = match backend {
            Backend::Sqlite => {
                let url = prepare_sqlite_url(url)?;
                options
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; busy_timeout makes
                            // writers from other processes wait instead of failing;
                            // case_sensitive_like keeps the original's case-sensitive prefix
                            // search and lets LIKE 'x%' use the BINARY indexes.
                            use sqlx::Executor as _;
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA case_sensitive_like = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(16).connect(url).await?,
        };
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = Migrator::new(Embedded(self.backend)).await?;
        // Separate processes may start together on one SQLite file, which has no migration
        // lock: the loser's transaction fails, and a retry then finds the work done.
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migration failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Check that a connection can be had and answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        use sqlx::Connection as _;
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// The pool, for the entity modules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Close every connection (used at shutdown and by tests before dropping a database).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A `LIKE` pattern matching values that start with `prefix`, with `\`, `%` and `_` escaped
/// (to be used with `ESCAPE '\'`), so user input never acts as a wildcard.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("ab"), "ab%");
        assert_eq!(like_prefix(""), "%");
        assert_eq!(like_prefix("50%_off\\"), "50\\%\\_off\\\\%");
        assert_eq!(like_prefix("O'Brien\"; --"), "O'Brien\"; --%");
    }

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::of("sqlite://data/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(
            Backend::of("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(
            Backend::of("mysql://u:secret@h/db")
                .unwrap_err()
                .to_string()
                .contains("\"mysql\"")
        );
    }

    #[test]
    fn sqlite_url_gets_create_mode() {
        let dir = std::env::temp_dir().join(format!("travel-url-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:?cache=shared").unwrap(),
            "sqlite::memory:?cache=shared&mode=rwc"
        );
        assert_eq!(
            prepare_sqlite_url("sqlite:x.db?mode=ro").unwrap(),
            "sqlite:x.db?mode=ro"
        );
    }
}
