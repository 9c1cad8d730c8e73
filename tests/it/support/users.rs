//! The real travel services ([`travel::local::LocalServices`]: in-process on ephemeral
//! ports, one SQLite file). The users service counts the `/auth` calls it receives. Any
//! service can be killed (listener closed, connections closed) and restarted on the same
//! port with the same data.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::Response};
use travel::{
    Service,
    local::{Database, LocalServices},
};

fn index_of(service: Service) -> usize {
    Service::ALL.iter().position(|s| *s == service).unwrap_or(0)
}

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

pub struct TestTravel {
    services: LocalServices,
    auth_calls: Arc<AtomicUsize>,
    /// Requests each service received (its middleware saw the header), by `Service::ALL` index.
    requests: Arc<[AtomicUsize; 4]>,
    auth_concurrency: Arc<Concurrency>,
}

/// `/auth` calls in progress at the users service, and the most there ever were at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// The users service alone (what the auth tests need).
pub type TestUsers = TestTravel;

impl TestTravel {
    /// Only the users service.
    pub async fn start(token_ttl: Duration) -> Self {
        Self::start_services(&[Service::Users], token_ttl).await
    }

    /// The given services.
    pub async fn start_services(services: &[Service], token_ttl: Duration) -> Self {
        let mut config = travel::Config::new(Some(JWT_SECRET)).unwrap();
        config.token_ttl = token_ttl;
        // No test here stops parties; a loaded machine must not make trips answer 503 (and
        // undo a trip it just created) because parties took longer than the default 2 s.
        config.parties_timeout = Duration::from_secs(60);
        let mut local = LocalServices::bind(config, Database::FreshSqlite)
            .await
            .unwrap();
        let auth_calls = Arc::new(AtomicUsize::new(0));
        let auth_concurrency = Arc::new(Concurrency::default());
        let counter = auth_calls.clone();
        let requests: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let seen = requests.clone();
        let concurrency = auth_concurrency.clone();
        local.wrap_routers(Arc::new(move |service, router| {
            let counter = counter.clone();
            let seen = seen.clone();
            let concurrency = concurrency.clone();
            router.layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let counter = counter.clone();
                    let seen = seen.clone();
                    let concurrency = concurrency.clone();
                    async move {
                        if let Some(count) = seen.get(index_of(service)) {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        let auth = request.uri().path() == "/auth";
                        if auth {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let now = concurrency.now.fetch_add(1, Ordering::SeqCst) + 1;
                            concurrency.most.fetch_max(now, Ordering::SeqCst);
                        }
                        let response: Response = next.run(request).await;
                        if auth {
                            concurrency.now.fetch_sub(1, Ordering::SeqCst);
                        }
                        response
                    }
                },
            ))
        }));
        local.start(services);
        TestTravel {
            services: local,
            auth_calls,
            requests,
            auth_concurrency,
        }
    }

    /// Requests `service` has received so far, whole or not (counted at the header).
    pub fn requests(&self, service: Service) -> usize {
        self.requests
            .get(index_of(service))
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        self.services.addr(service)
    }

    pub fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    /// The most `/auth` calls the users service ever had in progress at once.
    pub fn most_concurrent_auth_calls(&self) -> usize {
        self.auth_concurrency.most.load(Ordering::SeqCst)
    }

    /// Stops a service: its listener closes and every connection, idle pooled ones
    /// included, is closed. One that does not stop in time is aborted, which is as dead.
    pub async fn kill_service(&mut self, service: Service) {
        let _ = self.services.stop(service).await;
    }

    pub async fn restart_service(&mut self, service: Service) {
        self.services.restart(service).await.unwrap();
    }

    /// The users service's address (for the auth tests).
    pub fn users(&self) -> SocketAddr {
        self.addr(Service::Users)
    }

    pub async fn kill(&mut self) {
        self.kill_service(Service::Users).await;
    }

    pub async fn restart(&mut self) {
        self.restart_service(Service::Users).await;
    }

    /// Registers a user directly at the users service; returns its id.
    pub async fn register(&self, login: &str, password: &str) -> i64 {
        let response = reqwest::Client::new()
            .post(format!("http://{}/user", self.users()))
            .query(&[
                ("first_name", "Test"),
                ("last_name", "User"),
                ("email", &format!("{}@example.org", login.replace(' ', "."))),
                ("title", "tester"),
                ("login", login),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        response.text().await.unwrap().trim().parse().unwrap()
    }
}
