//! The real users service of the travel backend, in-process on an ephemeral port with an
//! SQLite file of its own, wrapped in a layer that counts the `/auth` calls it receives.
//! It can be killed (listener closed, connections dropped) and restarted on the same port
//! with the same data.

use std::{
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

pub struct TestUsers {
    pub addr: SocketAddr,
    auth_calls: Arc<AtomicUsize>,
    state: AppState,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    _dir: TempDir,
}

impl TestUsers {
    pub async fn start(token_ttl: Duration) -> Self {
        let dir = TempDir::new();
        let mut config = travel::Config::new(Some(JWT_SECRET)).unwrap();
        config.database_url = format!("sqlite://{}", dir.0.join("users.db").display());
        config.token_ttl = token_ttl;
        let state = AppState::new(&config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut users = TestUsers {
            addr: listener.local_addr().unwrap(),
            auth_calls: Arc::new(AtomicUsize::new(0)),
            state,
            running: None,
            _dir: dir,
        };
        users.serve(listener);
        users
    }

    fn serve(&mut self, listener: TcpListener) {
        let counter = self.auth_calls.clone();
        let app = Service::Users
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
        self.running = Some((stop, task));
    }

    pub fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    /// Stops the service: the listener closes and every connection, idle pooled ones
    /// included, is closed.
    pub async fn kill(&mut self) {
        if let Some((stop, mut task)) = self.running.take() {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Registers a user directly at the service; returns its id.
    pub async fn register(&self, login: &str, password: &str) -> i64 {
        let response = reqwest::Client::new()
            .post(format!("http://{}/user", self.addr))
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
