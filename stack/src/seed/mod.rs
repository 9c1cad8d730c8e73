//! `travel seed`: the original's init script done right. Loads `users_init.json`,
//! `paths_init.json` and `trips_init.json` **through the gateway**, in four phases: register
//! users (route with no auth), create paths and trips with each owner's Basic credentials
//! (the gateway exchanges them for a token), then join a deterministic spread of other users
//! to every trip. Bounded concurrency, a progress bar per phase, and a final tally per kind:
//! created, existing, rejected (4xx, by reason) and failed (5xx or no answer).
//!
//! Re-running is safe: a 409 on a record this run owns is "existing", and a path is searched
//! for before it is created. [`plan`] decides logins and memberships; [`report`] counts.

pub mod plan;
pub mod report;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use plan::{PlannedUser, SeedData, joiners, plan_users};
use report::{BreakerState, Outcome, Summary, Tally};

/// Timeout of each request (a registration or a first login waits for a password hash).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `travel seed`.
#[derive(Clone, Debug, clap::Args)]
pub struct SeedArgs {
    /// Directory holding users_init.json, paths_init.json and trips_init.json.
    #[arg(long, default_value = "data/seed")]
    pub data: PathBuf,
    /// Base URL of the gateway every record goes through.
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    pub gateway: String,
    /// Base URL of the gateway's admin listener (for the users breaker's state). The
    /// environment's `GATEWAY_ADMIN_TOKEN`, when set, goes along as its bearer token.
    #[arg(long, default_value = "http://127.0.0.1:9091")]
    pub admin: String,
    /// Requests in flight at once. Registrations and first logins each cost a password hash
    /// (one per CPU at a time at the users service), so more than the CPU count buys little.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Send repeated logins as they are (each then gets 409, counted as rejected) instead of
    /// renaming them <login>-<record index>.
    #[arg(long)]
    pub strict: bool,
    /// Print the summary as JSON on stdout; the table goes to stderr.
    #[arg(long)]
    pub json: bool,
}

/// Why seeding could not run at all (outcomes of single records are never errors).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A seed file is missing or malformed.
    #[error(transparent)]
    Data(#[from] plan::DataError),
    /// `--gateway` or `--admin` is not an http(s) URL.
    #[error("{flag} {url:?} must start with http:// or https://")]
    Url {
        /// Which flag.
        flag: &'static str,
        /// Its value.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
    /// Nothing answers at the gateway address.
    #[error("cannot reach the gateway at {url}: {reason} (is `travel up` running?)")]
    Unreachable {
        /// The gateway URL.
        url: String,
        /// Why.
        reason: String,
    },
}

fn base_url(flag: &'static str, url: &str) -> Result<String, SeedError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(SeedError::Url {
            flag,
            url: url.to_owned(),
        })
    }
}

/// Percent-encoded `a=1&b=2`.
fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A reqwest error in a few words, without the URL, with its causes.
fn network_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut reason = if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

/// The reason of a 4xx/5xx answer: the problem's `detail`, plus its per-field reasons.
fn problem_reason(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let line: String = body.chars().take(100).collect();
        return line.replace(['\n', '\r'], " ");
    };
    let detail = ["detail", "title", "error"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .unwrap_or("")
        .to_owned();
    let fields: Vec<String> = v["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| {
                    Some(format!(
                        "{}: {}",
                        e["field"].as_str()?,
                        e["reason"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        detail
    } else {
        format!("{detail} ({})", fields.join("; "))
    }
}

/// Credentials of a user that can log in.
#[derive(Clone, Debug)]
struct Login {
    login: String,
    password: String,
}

/// The HTTP side: one client, the gateway's base URL, how many requests may be in flight,
/// a request counter.
struct Seeder {
    http: reqwest::Client,
    gateway: String,
    concurrency: usize,
    requests: AtomicU64,
}

type Answer = Result<(StatusCode, String), reqwest::Error>;

impl Seeder {
    async fn send(&self, request: RequestBuilder) -> Answer {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// A urlencoded POST to the gateway, with Basic credentials if given.
    async fn post(&self, path: &str, form: &[(&str, &str)], who: Option<&Login>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.gateway))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(form));
        if let Some(who) = who {
            request = request.basic_auth(&who.login, Some(&who.password));
        }
        self.send(request).await
    }

    /// The outcome of an answer; a 409 means "existing" when `conflict` says so.
    fn classify(answer: Answer, conflict: Outcome) -> Outcome {
        match answer {
            Ok((status, _)) if status.is_success() => Outcome::Created,
            Ok((StatusCode::CONFLICT, _)) if conflict == Outcome::Existing => Outcome::Existing,
            Ok((status, body)) if status.is_client_error() => Outcome::Rejected {
                status: status.as_u16(),
                reason: match conflict {
                    Outcome::Rejected { reason, .. } if status == StatusCode::CONFLICT => {
                        format!("{} ({reason})", problem_reason(&body))
                    }
                    _ => problem_reason(&body),
                },
            },
            Ok((status, body)) => Outcome::Failed {
                status: Some(status.as_u16()),
                reason: problem_reason(&body),
            },
            Err(e) => Outcome::Failed {
                status: None,
                reason: network_reason(&e),
            },
        }
    }

    async fn register(&self, user: PlannedUser) -> Outcome {
        let r = &user.record;
        let form = [
            ("first_name", r.first_name.as_str()),
            ("last_name", r.last_name.as_str()),
            ("email", r.email.as_str()),
            ("title", r.title.as_str()),
            ("login", r.login.as_str()),
            ("password", r.password.as_str()),
        ];
        let answer = self.post("/user", &form, None).await;
        let conflict = if user.repeat {
            Outcome::Rejected {
                status: 409,
                reason: "--strict: login repeated in the file".to_owned(),
            }
        } else {
            Outcome::Existing
        };
        Self::classify(answer, conflict)
    }

    /// Existing if an identical path is found by a search on its start, else created.
    async fn path(&self, start: String, end: String, who: Login) -> Outcome {
        #[derive(Deserialize)]
        struct Found {
            startpoint: String,
            endpoint: String,
        }
        let url = format!(
            "{}/path/search?{}",
            self.gateway,
            encode(&[("startpoint", &start), ("limit", "1000")])
        );
        let search = self
            .send(
                self.http
                    .get(url)
                    .basic_auth(&who.login, Some(&who.password)),
            )
            .await;
        let found = match search {
            Ok((StatusCode::OK, body)) => match serde_json::from_str::<Vec<Found>>(&body) {
                Ok(found) => found,
                Err(e) => {
                    return Outcome::Failed {
                        status: Some(200),
                        reason: format!("unexpected answer to GET /path/search: {e}"),
                    };
                }
            },
            other => return Self::classify(other, Outcome::Existing),
        };
        if found
            .iter()
            .any(|p| p.startpoint == start && p.endpoint == end)
        {
            return Outcome::Existing;
        }
        let form = [("startpoint", start.as_str()), ("endpoint", end.as_str())];
        Self::classify(
            self.post("/path", &form, Some(&who)).await,
            Outcome::Existing,
        )
    }

    async fn trip(&self, trip: plan::TripRecord, who: Login) -> Outcome {
        let id = trip.id.to_string();
        let id_path = trip.id_path.to_string();
        let form = [
            ("id", id.as_str()),
            ("id_path", id_path.as_str()),
            ("name", trip.name.as_str()),
            ("start_time", trip.start_time.as_str()),
            ("fin_time", trip.fin_time.as_str()),
        ];
        Self::classify(
            self.post("/trip", &form, Some(&who)).await,
            Outcome::Existing,
        )
    }

    async fn join(&self, trip: i64, who: Login) -> Outcome {
        let path = format!("/party/join?id_trip={trip}");
        Self::classify(self.post(&path, &[], Some(&who)).await, Outcome::Existing)
    }
}

fn progress(name: &str, len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos:>5}/{len:<5} {rate:>7} {elapsed:>4} {msg}",
    ) {
        // indicatif's own `per_sec` prints ten decimals (`104.5612301569/s`).
        let style = style.with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        });
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_owned());
    bar
}

/// Run `f` on every job, at most `concurrency` at once; outcomes in job order.
async fn run_all<J, F, Fut>(
    jobs: Vec<J>,
    concurrency: usize,
    bar: &ProgressBar,
    f: F,
) -> Vec<Outcome>
where
    F: Fn(J) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
    let mut record = |done: Result<(usize, Outcome), tokio::task::JoinError>| {
        if let Ok((i, outcome)) = done {
            outcomes[i] = Some(outcome);
        }
        bar.inc(1);
    };
    for (i, job) in jobs.into_iter().enumerate() {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let request = f(job);
        tasks.spawn(async move {
            let outcome = request.await;
            drop(permit);
            (i, outcome)
        });
        while let Some(done) = tasks.try_join_next() {
            record(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        record(done);
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome::Failed {
                status: None,
                reason: "internal error: request task panicked".to_owned(),
            })
        })
        .collect()
}

/// One phase of the seed (users, paths, trips, memberships): a progress bar and a clock
/// from [`Phase::start`], jobs sent through the seeder at most `concurrency` at a time, and
/// the tally from [`Phase::finish`]. [`phase`] does all three for a phase sent in one go.
struct Phase {
    bar: ProgressBar,
    started: Instant,
}

impl Phase {
    fn start(name: &str, len: usize) -> Phase {
        Phase {
            bar: progress(name, len),
            started: Instant::now(),
        }
    }

    /// Sends every job with `send`; the outcomes in job order.
    async fn send<J, F, Fut>(&self, seeder: &Arc<Seeder>, jobs: Vec<J>, send: F) -> Vec<Outcome>
    where
        F: Fn(Arc<Seeder>, J) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        run_all(jobs, seeder.concurrency, &self.bar, |job| {
            send(seeder.clone(), job)
        })
        .await
    }

    fn finish(self, outcomes: &[Outcome]) -> Tally {
        let mut t = Tally::of(outcomes);
        t.seconds = self.started.elapsed().as_secs_f64();
        self.bar.finish_with_message(format!(
            "{} created, {} existing, {} rejected, {} failed",
            t.created, t.existing, t.rejected, t.failed
        ));
        t
    }
}

/// A whole phase: every job sent with `send`, tallied.
async fn phase<J, F, Fut>(name: &str, seeder: &Arc<Seeder>, jobs: Vec<J>, send: F) -> Tally
where
    F: Fn(Arc<Seeder>, J) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let phase = Phase::start(name, jobs.len());
    let outcomes = phase.send(seeder, jobs, send).await;
    phase.finish(&outcomes)
}

/// The outcome of a record no user could own, because no user could log in.
fn no_owner() -> Outcome {
    Outcome::Failed {
        status: None,
        reason: "no user could be registered to own it".to_owned(),
    }
}

/// The users breaker's backends from `GET {admin}/admin/breakers`.
async fn users_breaker(http: &reqwest::Client, admin: &str) -> Result<Vec<BreakerState>, String> {
    let url = format!("{admin}/admin/breakers");
    let mut request = http.get(&url);
    if let Ok(token) = std::env::var("GATEWAY_ADMIN_TOKEN") {
        request = request.bearer_auth(token);
    }
    let report: Value = request
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("GET {url}: {}", network_reason(&e)))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let upstreams = report["upstreams"].as_array().cloned().unwrap_or_default();
    let Some(users) = upstreams.iter().find(|u| u["name"] == "users") else {
        return Ok(Vec::new());
    };
    let backends = users["backends"].as_array().cloned().unwrap_or_default();
    Ok(backends
        .iter()
        .map(|b| BreakerState {
            backend: b["backend"].as_str().unwrap_or("?").to_owned(),
            state: b["state"].as_str().unwrap_or("?").to_owned(),
            last_transition: b["last_transition"].as_object().map(|t| {
                format!(
                    "last transition {} -> {}: {}, {:.0} s ago",
                    t.get("from").and_then(Value::as_str).unwrap_or("?"),
                    t.get("to").and_then(Value::as_str).unwrap_or("?"),
                    t.get("reason").and_then(Value::as_str).unwrap_or("?"),
                    t.get("seconds_ago").and_then(Value::as_f64).unwrap_or(0.0),
                )
            }),
        })
        .collect())
}

/// Load the seed files through the gateway and report what happened.
pub async fn run(args: &SeedArgs) -> Result<Summary, SeedError> {
    let gateway = base_url("--gateway", &args.gateway)?;
    let admin = base_url("--admin", &args.admin)?;
    let data = SeedData::load(&args.data)?;
    let concurrency = usize::from(args.concurrency);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(SeedError::Client)?;
    // Any answer will do: it only shows that something listens there.
    if let Err(e) = http.get(format!("{gateway}/auth_check")).send().await {
        return Err(SeedError::Unreachable {
            url: gateway,
            reason: network_reason(&e),
        });
    }
    eprintln!(
        "seeding {} users, {} paths, {} trips from {} through {gateway} ({concurrency} at a time)",
        data.users.len(),
        data.paths.len(),
        data.trips.len(),
        args.data.display()
    );
    let seeder = Arc::new(Seeder {
        http: http.clone(),
        gateway: gateway.clone(),
        concurrency,
        requests: AtomicU64::new(0),
    });
    let started = Instant::now();

    // Users. A repeated login (--strict) goes only after every first occurrence is in, so the
    // first record always owns the login, whatever the interleaving.
    let planned = plan_users(&data.users, args.strict);
    let renamed_logins = planned.iter().filter(|p| p.renamed_from.is_some()).count();
    let users_phase = Phase::start("users", planned.len());
    let (repeats, firsts): (Vec<_>, Vec<_>) = planned.iter().cloned().partition(|p| p.repeat);
    // Outcomes in file order, whatever the wave.
    let mut by_index: Vec<Option<Outcome>> = vec![None; planned.len()];
    for wave in [firsts, repeats] {
        let indices: Vec<usize> = wave.iter().map(|p| p.index).collect();
        let outcomes = users_phase
            .send(&seeder, wave, |s, p| async move { s.register(p).await })
            .await;
        for (index, outcome) in indices.into_iter().zip(outcomes) {
            by_index[index] = Some(outcome);
        }
    }
    let user_outcomes: Vec<Outcome> = by_index.into_iter().flatten().collect();
    let users = users_phase.finish(&user_outcomes);
    let usable: Vec<Login> = planned
        .iter()
        .zip(&user_outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Created | Outcome::Existing))
        .map(|(p, _)| Login {
            login: p.record.login.clone(),
            password: p.record.password.clone(),
        })
        .collect();
    let n = usable.len();
    // Record i is owned by user i mod n, like the original's zip of the two lists.
    let owner = |i: usize| (n > 0).then(|| usable[i % n].clone());

    let jobs = data.paths.iter().enumerate();
    let jobs = jobs.map(|(i, p)| (p.startpoint.clone(), p.endpoint.clone(), owner(i)));
    let paths = phase(
        "paths",
        &seeder,
        jobs.collect(),
        |s, (start, end, who)| async move {
            match who {
                Some(who) => s.path(start, end, who).await,
                None => no_owner(),
            }
        },
    )
    .await;

    // Trips keep the file's ids.
    let jobs = data.trips.iter().enumerate();
    let jobs = jobs.map(|(i, t)| (t.clone(), owner(i)));
    let trips = phase(
        "trips",
        &seeder,
        jobs.collect(),
        |s, (trip, who)| async move {
            match who {
                Some(who) => s.trip(trip, who).await,
                None => no_owner(),
            }
        },
    )
    .await;

    // Memberships beyond the owner's.
    let jobs = data.trips.iter().enumerate().flat_map(|(i, t)| {
        joiners(i, n)
            .into_iter()
            .map(|u| (t.id, usable[u].clone()))
            .collect::<Vec<_>>()
    });
    let memberships = phase(
        "memberships",
        &seeder,
        jobs.collect(),
        |s, (trip, who)| async move { s.join(trip, who).await },
    )
    .await;

    let elapsed = started.elapsed().as_secs_f64();
    let requests = seeder.requests.load(Ordering::Relaxed);
    let (users_breaker, users_breaker_error) = match users_breaker(&http, &admin).await {
        Ok(b) => (Some(b), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Summary {
        gateway,
        elapsed_seconds: elapsed,
        requests,
        requests_per_second: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        renamed_logins,
        usable_users: n,
        users,
        paths,
        trips,
        memberships,
        users_breaker,
        users_breaker_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_reasons_read_detail_and_fields() {
        let body = r#"{"detail":"User data is not valid","errors":[{"field":"first_name","reason":"Name must be at leas 3 signs"}],"status":400}"#;
        assert_eq!(
            problem_reason(body),
            "User data is not valid (first_name: Name must be at leas 3 signs)"
        );
        assert_eq!(problem_reason(r#"{"detail":"x"}"#), "x");
        assert_eq!(problem_reason("plain\ntext"), "plain text");
    }

    #[test]
    fn conflicts_are_existing_unless_said_otherwise() {
        let conflict = || {
            Ok((
                StatusCode::CONFLICT,
                r#"{"detail":"User already exists..."}"#.to_owned(),
            ))
        };
        assert_eq!(
            Seeder::classify(conflict(), Outcome::Existing),
            Outcome::Existing
        );
        let repeat = Outcome::Rejected {
            status: 409,
            reason: "repeated".to_owned(),
        };
        assert_eq!(
            Seeder::classify(conflict(), repeat),
            Outcome::Rejected {
                status: 409,
                reason: "User already exists... (repeated)".to_owned()
            }
        );
        assert!(matches!(
            Seeder::classify(
                Ok((StatusCode::SERVICE_UNAVAILABLE, String::new())),
                Outcome::Existing
            ),
            Outcome::Failed {
                status: Some(503),
                ..
            }
        ));
        assert_eq!(
            Seeder::classify(Ok((StatusCode::OK, "7".to_owned())), Outcome::Existing),
            Outcome::Created
        );
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(base_url("--gateway", "http://h:1/").unwrap(), "http://h:1");
        assert!(base_url("--gateway", "h:1").is_err());
    }
}
