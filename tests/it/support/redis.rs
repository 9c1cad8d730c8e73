//! Real Redis for the cache tests: the machine's server on 127.0.0.1:6379 (each test under
//! a key prefix of its own, deleted afterwards), or a private `redis-server` process on an
//! ephemeral port that a test can kill and start again.

use std::{
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use super::{eventually, free_port};

pub const SHARED_URL: &str = "redis://127.0.0.1:6379/0";

/// Fails the test with how to start Redis when the shared server is not there.
pub async fn require_shared() {
    let reachable = tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .is_ok();
    assert!(
        reachable,
        "Redis is not reachable on 127.0.0.1:6379; start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
    );
}

pub async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key under `prefix`.
pub async fn keys(url: &str, prefix: &str) -> Vec<String> {
    let mut connection = connection(url).await;
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        found.extend(batch);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// A key prefix of one test's own, `gwtest-{what}-{process}-{n}:`: no other test of this
/// run or of a concurrent one shares it.
pub fn unique_prefix(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "gwtest-{what}-{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Deletes every key under `prefix` when dropped.
pub struct PrefixGuard {
    pub prefix: String,
}

impl PrefixGuard {
    /// A guard over a [`unique_prefix`].
    pub fn new(what: &str) -> Self {
        PrefixGuard {
            prefix: unique_prefix(what),
        }
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop cannot await: clean up on a short-lived thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let doomed = keys(SHARED_URL, &prefix).await;
                if !doomed.is_empty() {
                    let mut connection = connection(SHARED_URL).await;
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(doomed)
                        .query_async(&mut connection)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A private redis-server.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    pub async fn start() -> Self {
        let mut redis = RedisProcess {
            port: free_port(),
            child: None,
        };
        redis.launch().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    /// Sends a signal (`STOP`, `CONT`) to the server: a hung Redis keeps its connections
    /// and accepts new ones into the backlog, but answers nothing.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is not running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Starts the server again on the same port after [`RedisProcess::kill`]; returns once
    /// it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.launch().await;
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
