//! Test harness: a fresh database (SQLite file in a temp dir, or a new PostgreSQL database on
//! the local server), any subset of the four services on 127.0.0.1 ephemeral ports
//! ([`travel::local::LocalServices`]), and small request helpers. Everything is torn down on
//! drop (PostgreSQL databases are dropped).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use travel::local::{Database, LocalServices};
use travel::{AppState, Config, Service};

/// Secret used by every test service.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// Which backend a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Run an `async fn(Db)` scenario once per backend, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Db::Postgres).await
            }
        }
    )+};
}

fn pg_admin_url() -> String {
    std::env::var("TRAVEL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    dir: Option<PathBuf>,
}

impl TestDb {
    pub async fn new(kind: Db) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        match kind {
            Db::Sqlite => {
                let dir = std::env::temp_dir().join(format!("travel_test_{suffix}"));
                std::fs::create_dir_all(&dir).unwrap();
                Self {
                    url: format!("sqlite://{}/travel.db", dir.display()),
                    pg_name: None,
                    dir: Some(dir),
                }
            }
            Db::Postgres => {
                let admin = pg_admin_url();
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => panic!(
                        "PostgreSQL is not reachable at {admin}: {e}\n\
                         These tests need the local PostgreSQL (see docs/travel.md). Start it as root with:\n  \
                         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                         or point TRAVEL_TEST_PG_URL at a server where the user may CREATE DATABASE."
                    ),
                };
                let name = format!("travel_test_{suffix}");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.ok();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                Self {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async context guarantees: use a private runtime on a thread.
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Services under test, sharing one state (one pool) like `travel serve all`.
pub struct TestApp {
    pub http: reqwest::Client,
    services: LocalServices,
    // Held for its Drop (which removes the database); declared last so it goes last.
    _db: TestDb,
}

/// All four services on a fresh database.
pub async fn spawn_app(kind: Db) -> TestApp {
    spawn_services(kind, &Service::ALL).await
}

/// The given services on a fresh database. Ports are reserved for all four so that trips
/// always knows where parties lives, running or not.
pub async fn spawn_services(kind: Db, services: &[Service]) -> TestApp {
    let db = TestDb::new(kind).await;
    let mut config = Config::new(Some(SECRET)).unwrap();
    config.parties_timeout = Duration::from_millis(1500);
    let mut local = LocalServices::bind(config, Database::Url(db.url.clone()))
        .await
        .unwrap();
    local.start(services);
    TestApp {
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        services: local,
        _db: db,
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// Assert a problem answer: status, media type, numeric status member, type, instance.
    pub fn assert_problem(&self, status: u16, kind: &str, instance: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.header("content-type"), "application/problem+json");
        let v = self.json();
        assert_eq!(v["status"], status, "{v}");
        assert_eq!(v["type"], kind, "{v}");
        assert_eq!(v["instance"], instance, "{v}");
        assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
        v
    }

    /// The reasons of a 400's `errors` member as (field, reason).
    pub fn reasons(&self) -> Vec<(String, String)> {
        self.json()["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap().to_owned(),
                            e["reason"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Authorization to send.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
    Raw(&'a str),
}

/// Percent-encode a query value.
pub fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

impl TestApp {
    /// The state the services share (its store, its token keys).
    pub fn state(&self) -> &AppState {
        self.services.state()
    }

    /// Stop a service (graceful) and wait until it has.
    pub async fn stop(&mut self, service: Service) {
        self.services.stop(service).await.unwrap();
    }

    /// Start a stopped service again on its old port.
    pub async fn start(&mut self, service: Service) {
        self.services.restart(service).await.unwrap();
    }

    pub fn url(&self, service: Service, path_and_query: &str) -> String {
        format!("http://{}{}", self.services.addr(service), path_and_query)
    }

    /// Send a request; `body` is sent as a urlencoded form when given.
    pub async fn call(
        &self,
        method: Method,
        service: Service,
        path_and_query: &str,
        auth: Auth<'_>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(service, path_and_query));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(l, p) => req.basic_auth(l, Some(p)),
            Auth::Raw(v) => req.header("authorization", v),
        };
        if let Some(b) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, service: Service, pq: &str, token: &str) -> Reply {
        self.call(Method::GET, service, pq, Auth::Bearer(token), None)
            .await
    }

    pub async fn post(&self, service: Service, pq: &str, token: &str) -> Reply {
        self.call(Method::POST, service, pq, Auth::Bearer(token), None)
            .await
    }

    pub async fn put(&self, service: Service, pq: &str, token: &str) -> Reply {
        self.call(Method::PUT, service, pq, Auth::Bearer(token), None)
            .await
    }

    /// Register `login` with valid defaults for the other fields; returns the id.
    pub async fn register(&self, login: &str, password: &str) -> i64 {
        let q = format!(
            "/user?first_name=Alice&last_name=Smith&email={}%40example.org&title=dr&login={}&password={}",
            enc(&login.replace(' ', "_")),
            enc(login),
            enc(password)
        );
        let r = self
            .call(Method::POST, Service::Users, &q, Auth::None, None)
            .await;
        assert_eq!(r.status, 200, "registering {login}: {}", r.text);
        r.text.parse().unwrap()
    }

    /// `GET /auth` for `login`; panics unless 200.
    pub async fn token(&self, login: &str, password: &str) -> String {
        let r = self
            .call(
                Method::GET,
                Service::Users,
                "/auth",
                Auth::Basic(login, password),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "login {login}: {}", r.text);
        r.text
    }

    /// A registered user and a token: (id, token).
    pub async fn user(&self, login: &str) -> (i64, String) {
        let id = self.register(login, "pw-of-the-user").await;
        (id, self.token(login, "pw-of-the-user").await)
    }
}
