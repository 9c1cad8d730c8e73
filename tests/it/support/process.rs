//! Real processes a test can hang (SIGSTOP), continue (SIGCONT) and kill: a gateway
//! binary serving as an HTTP backend of its own, or as a gateway with a config of the
//! test's (so that what is per process, its metrics say, is seen apart).

use std::{
    net::SocketAddr,
    process::{Child, Command},
    time::Duration,
};

use super::{TempDir, eventually, free_ports};

/// A real process, stopped with SIGSTOP, then continued (SIGCONT) and killed on drop.
pub struct StoppableProcess {
    child: Child,
    _dir: TempDir,
}

impl StoppableProcess {
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for StoppableProcess {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway process in front of `origin`: an HTTP server in a process of its own.
pub async fn http_process(origin: SocketAddr) -> (StoppableProcess, SocketAddr) {
    let gateway = GatewayProcess::start(&format!(
        "upstreams:\n  echo: {{ backends: [\"{origin}\"] }}\nroutes:\n  - {{ path: /svc, upstream: echo, auth: none }}\n"
    ))
    .await;
    (gateway.process, gateway.addr)
}

/// The `gateway` binary run with `body` (a config without `server` and `admin`), on free
/// loopback ports; killed on drop.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    process: StoppableProcess,
}

impl GatewayProcess {
    /// Returns once both listeners accept connections.
    pub async fn start(body: &str) -> Self {
        let dir = TempDir::new();
        let [port, admin] = free_ports();
        let path = dir.0.join("gateway.yaml");
        std::fs::write(
            &path,
            format!(
                "server: {{ listen: 127.0.0.1:{port}, threads: 1, grace_period: 0s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n{body}"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--config", &path.display().to_string()])
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        let gateway = GatewayProcess {
            addr,
            admin,
            process: StoppableProcess { child, _dir: dir },
        };
        for port in [addr, admin] {
            eventually(Duration::from_secs(30), || async move {
                std::net::TcpStream::connect(port).is_ok()
            })
            .await;
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// This process's metrics, and no other's.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
