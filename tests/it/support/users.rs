//! The real travel services, in-process on ephemeral ports sharing one SQLite file. The
//! users service counts the `/auth` calls it receives. Any service can be killed (listener
//! closed, connections closed) and restarted on the same port with the same data.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{extract::Request, middleware::Next, response::Response};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use travel::{AppState, Service};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

pub struct TestTravel {
    addrs: HashMap<Service, SocketAddr>,
    auth_calls: Arc<AtomicUsize>,
    state: AppState,
    running: HashMap<Service, (oneshot::Sender<()>, JoinHandle<()>)>,
    _dir: TempDir,
}

/// The users service alone (what the auth tests need).
pub type TestUsers = TestTravel;

impl TestTravel {
    /// Only the users service.
    pub async fn start(token_ttl: Duration) -> Self {
        Self::start_services(&[Service::Users], token_ttl).await
    }

    /// The given services; ports are reserved for all four so trips knows where parties is.
    pub async fn start_services(services: &[Service], token_ttl: Duration) -> Self {
        let dir = TempDir::new();
        let mut listeners = HashMap::new();
        let mut addrs = HashMap::new();
        for service in Service::ALL {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.insert(service, listener.local_addr().unwrap());
            listeners.insert(service, listener);
        }
        let mut config = travel::Config::new(Some(JWT_SECRET))
            .unwrap()
            .with_parties_url(&format!("http://{}", addrs[&Service::Parties]))
            .unwrap();
        config.database_url = format!("sqlite://{}", dir.0.join("travel.db").display());
        config.token_ttl = token_ttl;
        let state = AppState::new(&config).await.unwrap();
        let mut travel = TestTravel {
            addrs,
            auth_calls: Arc::new(AtomicUsize::new(0)),
            state,
            running: HashMap::new(),
            _dir: dir,
        };
        for service in services {
            let listener = listeners.remove(service).unwrap();
            travel.serve(*service, listener);
        }
        travel
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs[&service]
    }

    fn serve(&mut self, service: Service, listener: TcpListener) {
        let counter = self.auth_calls.clone();
        let app = service
            .router(self.state.clone())
            .layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let counter = counter.clone();
                    async move {
                        if request.uri().path() == "/auth" {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        let response: Response = next.run(request).await;
                        response
                    }
                },
            ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            let _ = serve.await;
        });
        self.running.insert(service, (stop, task));
    }

    pub fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    /// Stops a service: its listener closes and every connection, idle pooled ones
    /// included, is closed.
    pub async fn kill_service(&mut self, service: Service) {
        if let Some((stop, mut task)) = self.running.remove(&service) {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    pub async fn restart_service(&mut self, service: Service) {
        self.kill_service(service).await;
        let listener = TcpListener::bind(self.addrs[&service]).await.unwrap();
        self.serve(service, listener);
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

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
