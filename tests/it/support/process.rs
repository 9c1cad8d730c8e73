//! Real processes a test can hang (SIGSTOP), continue (SIGCONT) and kill: here a gateway
//! binary serving as an HTTP backend of its own.

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
    let dir = TempDir::new();
    let [port, admin] = free_ports();
    let path = dir.0.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "server: {{ listen: 127.0.0.1:{port}, threads: 1, grace_period: 0s }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstreams:\n  echo: {{ backends: [\"{origin}\"] }}\nroutes:\n  - {{ path: /svc, upstream: echo, auth: none }}\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", &path.display().to_string()])
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(10), || async move {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    (StoppableProcess { child, _dir: dir }, addr)
}
