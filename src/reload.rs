//! Live reload. The config file is polled for changes (by content hash, so editors that
//! replace the file and ones that rewrite it in place both work) and reloaded on SIGHUP. A
//! changed file is validated exactly as `gateway check` does; a valid one becomes the
//! running `State` atomically, keeping breaker state, the token cache and the response
//! cache; an invalid one never takes effect: the previous config keeps serving, every
//! problem is logged, and `/admin/config` and the reload metrics say what happened.
//!
//! The TLS listener's certificate and key files are watched the same way ([`CertWatcher`]),
//! apart from the config file: a renewed pair is served from the next handshake on, while
//! connections already made keep theirs; a broken pair (unreadable, not PEM, a key of
//! another certificate, as during a non-atomic copy) never replaces a working one.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use pingora::server::ShutdownWatch;
use serde::Serialize;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::Mutex,
};
use tracing::{info, warn};

use crate::{
    config::{Config, ConfigErrors},
    metrics,
    state::State,
    tls::{CertResolver, ServerCert},
};

/// How the reloader reads secrets named in the config (`auth.jwt.secret_env`).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|name| std::env::var(name).ok())
}

/// What `/admin/config` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStatus {
    pub path: String,
    /// SHA-256 of the running config file's bytes.
    pub hash: String,
    pub loaded_at: String,
    pub last_reload: Option<ReloadAttempt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadAttempt {
    pub at: String,
    /// `file` (the watcher saw a change) or `sighup`.
    pub trigger: &'static str,
    pub hash: Option<String>,
    pub applied: bool,
    pub errors: Vec<String>,
}

pub struct Reloader {
    path: PathBuf,
    env: Env,
    state: Arc<ArcSwap<State>>,
    origin: Instant,
    status: ArcSwap<ConfigStatus>,
    /// Reloads run one at a time (the watcher and SIGHUP may both ask).
    busy: Mutex<Option<String>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads and compiles a config file; returns it with the hash of its bytes.
pub fn load(path: &Path, env: &Env) -> Result<(Config, String), ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: file.clone(),
        errors: vec![crate::config::ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let config = Config::parse_with_env(&text, &|name| env(name))
        .map_err(|errors| ConfigErrors { file, errors })?;
    Ok((config, hash(text.as_bytes())))
}

fn hash(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        env: Env,
        state: Arc<ArcSwap<State>>,
        origin: Instant,
        hash: String,
    ) -> Self {
        metrics::CONFIG_LAST_SUCCESS.set(unix_secs(SystemTime::now()));
        metrics::CONFIG_LAST_RELOAD_SUCCESSFUL.set(1);
        // Both results from 0, so that the first rejected reload is an increase.
        for result in ["success", "failure"] {
            metrics::CONFIG_RELOADS.with_label_values(&[result]);
        }
        Reloader {
            status: ArcSwap::from_pointee(ConfigStatus {
                path: path.display().to_string(),
                hash: hash.clone(),
                loaded_at: timestamp(SystemTime::now()),
                last_reload: None,
            }),
            path,
            env,
            state,
            origin,
            busy: Mutex::new(Some(hash)),
        }
    }

    pub fn status(&self) -> Arc<ConfigStatus> {
        self.status.load_full()
    }

    /// Reloads if the file's bytes differ from the last ones seen (`trigger: file`), or
    /// always (`sighup`). Returns whether a new config was applied.
    pub async fn reload(&self, trigger: &'static str) -> bool {
        let mut last_seen = self.busy.lock().await;
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                if trigger == "sighup" {
                    self.reject(
                        trigger,
                        None,
                        vec![format!(
                            "{}: cannot read the file: {error}",
                            self.path.display()
                        )],
                    );
                }
                return false;
            }
        };
        let new_hash = hash(&bytes);
        if trigger == "file" && last_seen.as_deref() == Some(new_hash.as_str()) {
            return false;
        }
        *last_seen = Some(new_hash.clone());
        match self.apply(&bytes).await {
            Ok(()) => {
                metrics::CONFIG_RELOADS
                    .with_label_values(&["success"])
                    .inc();
                metrics::CONFIG_LAST_SUCCESS.set(unix_secs(SystemTime::now()));
                metrics::CONFIG_LAST_RELOAD_SUCCESSFUL.set(1);
                let now = timestamp(SystemTime::now());
                self.status.store(Arc::new(ConfigStatus {
                    path: self.path.display().to_string(),
                    hash: new_hash.clone(),
                    loaded_at: now.clone(),
                    last_reload: Some(ReloadAttempt {
                        at: now,
                        trigger,
                        hash: Some(new_hash),
                        applied: true,
                        errors: Vec::new(),
                    }),
                }));
                info!(path = %self.path.display(), trigger, "config reloaded");
                self.announce();
                true
            }
            Err(errors) => {
                self.reject(trigger, Some(new_hash), errors);
                false
            }
        }
    }

    fn reject(&self, trigger: &'static str, hash: Option<String>, errors: Vec<String>) {
        metrics::CONFIG_RELOADS
            .with_label_values(&["failure"])
            .inc();
        metrics::CONFIG_LAST_RELOAD_SUCCESSFUL.set(0);
        for error in &errors {
            warn!(trigger, problem = %error, "config reload rejected; the previous config keeps serving");
        }
        let mut status = (*self.status.load_full()).clone();
        status.last_reload = Some(ReloadAttempt {
            at: timestamp(SystemTime::now()),
            trigger,
            hash,
            applied: false,
            errors,
        });
        self.status.store(Arc::new(status));
        self.announce();
    }

    /// Pushes the new `/admin/config` to the live page (event `config`).
    fn announce(&self) {
        self.state.load().events.publish("config", &*self.status());
    }

    async fn apply(&self, bytes: &[u8]) -> Result<(), Vec<String>> {
        let file = self.path.display().to_string();
        let text = std::str::from_utf8(bytes)
            .map_err(|_| vec![format!("{file}: the file is not UTF-8")])?;
        let env = &self.env;
        let config = Config::parse_with_env(text, &|name| env(name)).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{file}:{e}"))
                .collect::<Vec<_>>()
        })?;
        let current = self.state.load_full();
        let restart = needs_restart(&current.config, &config);
        if !restart.is_empty() {
            return Err(restart
                .into_iter()
                .map(|e| format!("{file}: {e}"))
                .collect());
        }
        let next = State::build(config, self.origin, Some(&current), &current.events)
            .map_err(|e| vec![format!("{file}: cache store: {e}")])?;
        for upstream in &current.upstreams {
            upstream.retire_removed(next.upstream(&upstream.name).map(|u| &**u));
        }
        let now = Instant::now();
        for upstream in &next.upstreams {
            upstream.forget_checks(now);
        }
        // Entries of routes that are gone become unreachable (their shared generation moves).
        let removed: Vec<Arc<str>> = current
            .config
            .routes
            .iter()
            .filter(|old| !next.config.routes.iter().any(|new| new.path == old.path))
            .map(|old| Arc::from(old.path.as_str()))
            .collect();
        if !removed.is_empty() {
            next.cache.invalidate(&removed, None).await;
        }
        self.state.store(Arc::new(next));
        Ok(())
    }

    /// Polls the file every `server.watch_interval` of the running config and reloads on
    /// SIGHUP if `sighup`, until shutdown.
    pub async fn watch(&self, shutdown: ShutdownWatch, sighup: bool) {
        poll_or_hangup(
            "the config",
            &self.state,
            shutdown,
            sighup,
            |trigger| async move {
                self.reload(trigger).await;
            },
        )
        .await;
    }
}

/// Watches the files of the TLS listener's certificate and key (the paths the running config
/// names, read anew each round, so a reload that points elsewhere applies too) and stores a
/// changed, valid pair in the listener's [`CertResolver`].
pub struct CertWatcher {
    resolver: Arc<CertResolver>,
    state: Arc<ArcSwap<State>>,
    /// The last problem logged, so a broken pair is reported once, not at every poll.
    last_problem: std::sync::Mutex<Option<String>>,
}

impl CertWatcher {
    pub fn new(resolver: Arc<CertResolver>, state: Arc<ArcSwap<State>>) -> Self {
        metrics::TLS_CERTIFICATE_EXPIRY.set(resolver.current().not_after());
        // Both results from 0, as the config reloads' (see `Reloader::new`).
        for result in ["success", "failure"] {
            metrics::TLS_CERTIFICATE_RELOADS.with_label_values(&[result]);
        }
        CertWatcher {
            resolver,
            state,
            last_problem: std::sync::Mutex::new(None),
        }
    }

    /// Reads the files; if they differ from the pair being served and form a valid pair,
    /// serves it from the next handshake on. Returns whether a new pair was stored.
    pub fn check(&self, trigger: &'static str) -> bool {
        let state = self.state.load();
        let Some(tls) = &state.config.server.tls else {
            return false;
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let loaded = read(&tls.certificate)
            .and_then(|cert| Ok((cert, read(&tls.key)?)))
            .and_then(|(cert, key)| {
                if self.resolver.current().came_from(&cert, &key) {
                    return Ok(None);
                }
                ServerCert::from_pem(&cert, &key, &tls.certificate, &tls.key)
                    .map(Some)
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(None) => false,
            Ok(Some(cert)) => {
                info!(
                    trigger,
                    subject = cert.subject(),
                    not_after = cert.not_after(),
                    "TLS certificate reloaded; new connections get it"
                );
                metrics::TLS_CERTIFICATE_RELOADS
                    .with_label_values(&["success"])
                    .inc();
                metrics::TLS_CERTIFICATE_EXPIRY.set(cert.not_after());
                self.resolver.store(cert);
                self.note_problem(None);
                true
            }
            Err(problem) => {
                if self.note_problem(Some(&problem)) {
                    metrics::TLS_CERTIFICATE_RELOADS
                        .with_label_values(&["failure"])
                        .inc();
                    warn!(
                        trigger, %problem,
                        "TLS certificate reload rejected; the previous certificate keeps serving"
                    );
                }
                false
            }
        }
    }

    /// Records the current problem; true when it is new (worth a log line and a count).
    fn note_problem(&self, problem: Option<&str>) -> bool {
        let Ok(mut last) = self.last_problem.lock() else {
            return true;
        };
        let new = problem.is_some() && last.as_deref() != problem;
        *last = problem.map(str::to_owned);
        new
    }

    /// Polls every `server.watch_interval` of the running config and checks on SIGHUP if
    /// `sighup` (as nginx re-reads its certificates on reload), until shutdown.
    pub async fn watch(&self, shutdown: ShutdownWatch, sighup: bool) {
        poll_or_hangup(
            "the TLS certificate",
            &self.state,
            shutdown,
            sighup,
            |trigger| {
                self.check(trigger);
                std::future::ready(())
            },
        )
        .await;
    }
}

/// The loop both watchers run: `action("file")` every `server.watch_interval` of the running
/// config (read anew each round, so an edit of the interval applies too; zero turns polling
/// off) and `action("sighup")` on each SIGHUP if `sighup`, until shutdown. `what` names the
/// thing reloaded, for the one warning when SIGHUP cannot be listened for.
async fn poll_or_hangup<F, Fut>(
    what: &'static str,
    state: &ArcSwap<State>,
    mut shutdown: ShutdownWatch,
    sighup: bool,
    mut action: F,
) where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut hangup = if sighup {
        match signal(SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                warn!(%error, "cannot listen for SIGHUP; {what} reloads only when its file changes");
                None
            }
        }
    } else {
        None
    };
    loop {
        let interval = state.load().config.server.watch_interval;
        let poll = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(poll) => {
                if !interval.is_zero() {
                    action("file").await;
                }
            }
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                action("sighup").await;
            }
        }
    }
}

/// Changes a running process cannot take in place.
fn needs_restart(current: &Config, next: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let (a, b) = (&current.server, &next.server);
    if a.listen != b.listen {
        problems.push(format!(
            "server.listen: changing the listener ({} to {}) needs a restart",
            a.listen, b.listen
        ));
    }
    if a.threads != b.threads {
        problems.push(format!(
            "server.threads: changing the worker threads ({} to {}) needs a restart",
            a.threads, b.threads
        ));
    }
    if a.work_stealing != b.work_stealing {
        problems
            .push("server.work_stealing: changing the worker runtimes needs a restart".to_owned());
    }
    if a.grace_period != b.grace_period {
        problems.push("server.grace_period: changing the grace period needs a restart".to_owned());
    }
    let listener = |s: &crate::config::ServerSettings| s.tls.as_ref().map(|t| (t.listen, t.http2));
    if listener(a) != listener(b) {
        problems.push(
            "server.tls: adding or removing the TLS listener, or changing its listen or http2, needs a restart (the certificate and key files reload live)".to_owned(),
        );
    }
    if current.admin.listen != next.admin.listen {
        problems.push(format!(
            "admin.listen: changing the admin listener ({} to {}) needs a restart",
            current.admin.listen, next.admin.listen
        ));
    }
    problems
}

fn unix_secs(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
