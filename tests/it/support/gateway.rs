//! Starts the real gateway in-process on ephemeral loopback ports and stops it on drop.
//! Pingora's `Server::run` builds its own runtimes, so it runs on a plain OS thread.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    thread::JoinHandle,
    time::Duration,
};

use gateway::{
    Config, GatewayServer,
    server::{ShutdownSender, shutdown_channel},
};
use pingora::server::ShutdownSignal;

use super::{TempDir, eventually};

/// The admin token of gateways started with `token_env: ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<ShutdownSender>,
    thread: Option<JoinHandle<()>>,
}

/// A port nobody listens on right now (a small race remains: Pingora binds later).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports: all are held at once while choosing, so none repeats.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Loopback ports kept for a gateway until it listens on them. Each is bound (SO_REUSEADDR,
/// never listening), so meanwhile no other socket is given it: a bind to port 0 and an
/// outgoing connection skip a bound port, and a plain bind to it fails. The gateway binds
/// with SO_REUSEADDR too, which a bound socket that is not listening allows. Without this,
/// another test's server could take a port between [`free_ports`] and the gateway's bind;
/// Pingora then retries its bind for 30 s while the test, finding the port open, talks to
/// that server (a 404 from the wrong service, say) — more likely the slower the machine.
struct HeldPorts {
    _sockets: Vec<tokio::net::TcpSocket>,
}

fn held_ports<const N: usize>() -> ([u16; N], HeldPorts) {
    let sockets: Vec<tokio::net::TcpSocket> = (0..N)
        .map(|_| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
            socket
        })
        .collect();
    let ports = std::array::from_fn(|i| sockets[i].local_addr().unwrap().port());
    (ports, HeldPorts { _sockets: sockets })
}

impl TestGateway {
    /// `body` is the config without `server` and `admin`, which are filled in here.
    pub async fn start(body: &str) -> Self {
        Self::start_with_server("", body).await
    }

    /// Like [`TestGateway::start`], with more keys of `server` (`tls: {...}`, say), written
    /// as YAML flow-map entries.
    pub async fn start_with_server(server: &str, body: &str) -> Self {
        Self::start_with(server, "", body).await
    }

    /// Like [`TestGateway::start`], with more keys of `admin` (`token_env: ADMIN_TOKEN`
    /// finds [`ADMIN_TOKEN`]).
    pub async fn start_with_admin(admin_keys: &str, body: &str) -> Self {
        Self::start_with("", admin_keys, body).await
    }

    async fn start_with(server: &str, admin_keys: &str, body: &str) -> Self {
        let ([port, admin_port], held) = held_ports();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let extra = if server.is_empty() {
            String::new()
        } else {
            format!(", {server}")
        };
        let text = format!(
            "server: {{ listen: \"{addr}\", threads: 1, grace_period: 0s{extra} }}\nadmin: {{ listen: \"{admin}\" {admin_keys} }}\n{body}"
        );
        super::logs::capture();
        let env = |name: &str| match name {
            "JWT_SECRET" => Some(super::users::JWT_SECRET.to_owned()),
            "ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
            _ => None,
        };
        let config = Config::parse_with_env(&text, &env)
            .unwrap_or_else(|e| panic!("test config: {e:?}\n{text}"));
        let server = GatewayServer::build(config).unwrap();
        Self::run(server, addr, admin, held).await
    }

    /// A gateway run from a config file it watches (every 100 ms). `body` is the config
    /// without `server` and `admin`; rewrite it with [`ConfigFile::write`].
    pub async fn start_watching(body: &str) -> (Self, ConfigFile) {
        let (addr, admin, header, held) = watched_header();
        let file = ConfigFile {
            dir: TempDir::new(),
            header,
        };
        file.write(body);
        (Self::run_file(&file.path(), addr, admin, held).await, file)
    }

    /// A gateway run from a config file mounted the way Kubernetes mounts a ConfigMap;
    /// update it with [`ConfigMapVolume::update`].
    pub async fn start_watching_configmap(body: &str) -> (Self, ConfigMapVolume) {
        let (addr, admin, header, held) = watched_header();
        let volume = ConfigMapVolume {
            dir: TempDir::new(),
            header,
            version: std::sync::atomic::AtomicU32::new(0),
        };
        volume.update(body);
        (
            Self::run_file(&volume.path(), addr, admin, held).await,
            volume,
        )
    }

    /// A gateway run from a whole config file the test wrote (listening on `addr` and
    /// `admin`, as the file says).
    pub async fn start_file(path: &std::path::Path, addr: SocketAddr, admin: SocketAddr) -> Self {
        Self::run_file(
            path,
            addr,
            admin,
            HeldPorts {
                _sockets: Vec::new(),
            },
        )
        .await
    }

    async fn run_file(
        path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
        held: HeldPorts,
    ) -> Self {
        super::logs::capture();
        let env: gateway::reload::Env = std::sync::Arc::new(|name: &str| {
            (name == "JWT_SECRET").then(|| super::users::JWT_SECRET.to_owned())
        });
        let server =
            GatewayServer::from_file(path, env, gateway::server::ReloadOptions::default()).unwrap();
        Self::run(server, addr, admin, held).await
    }

    async fn run(
        server: GatewayServer,
        addr: SocketAddr,
        admin: SocketAddr,
        held: HeldPorts,
    ) -> Self {
        let (tx, watch) = shutdown_channel();
        let thread = std::thread::spawn(move || server.run(watch));
        let gateway = TestGateway {
            addr,
            admin,
            stop: Some(tx),
            thread: Some(thread),
        };
        for port in [addr, admin] {
            eventually(Duration::from_secs(10), || async move {
                TcpStream::connect(port).is_ok()
            })
            .await;
        }
        // The gateway listens on both: no one else can take them now.
        drop(held);
        gateway
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.admin_url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn breakers(&self) -> serde_json::Value {
        reqwest::get(self.admin_url("/admin/breakers"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The breaker report of one backend.
    pub async fn breaker(&self, upstream: &str, backend: SocketAddr) -> serde_json::Value {
        let report = self.breakers().await;
        let upstream = report["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == upstream)
            .unwrap_or_else(|| panic!("no upstream {upstream} in {report}"))
            .clone();
        upstream["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == backend.to_string())
            .unwrap_or_else(|| panic!("no backend {backend} in {upstream}"))
            .clone()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Ports held for a watched gateway, and the config's `server` and `admin` sections.
fn watched_header() -> (SocketAddr, SocketAddr, String, HeldPorts) {
    let ([port, admin_port], held) = held_ports();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let header = format!(
        "server: {{ listen: \"{addr}\", threads: 1, grace_period: 0s, watch_interval: 100ms }}\nadmin: {{ listen: \"{admin}\" }}\n"
    );
    (addr, admin, header, held)
}

/// A config file the gateway watches.
pub struct ConfigFile {
    dir: TempDir,
    header: String,
}

impl ConfigFile {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.0.join("gateway.yaml")
    }

    /// Replaces the file atomically (write, then rename), as editors and deploy tools do.
    /// Returns the SHA-256 of what was written.
    pub fn write(&self, body: &str) -> String {
        let text = format!("{}{body}", self.header);
        let temporary = self.dir.0.join("gateway.yaml.tmp");
        std::fs::write(&temporary, &text).unwrap();
        std::fs::rename(&temporary, self.path()).unwrap();
        sha256(text.as_bytes())
    }

    /// Writes exactly these bytes (no header), in place.
    pub fn write_raw(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }

    pub fn header(&self) -> &str {
        &self.header
    }
}

/// A directory laid out as the kubelet lays out a mounted ConfigMap (its atomic writer):
/// `gateway.yaml -> ..data/gateway.yaml`, `..data -> ..<version>`, the file itself inside
/// `..<version>/`. The path the gateway watches is a symlink that is never written.
pub struct ConfigMapVolume {
    dir: TempDir,
    header: String,
    version: std::sync::atomic::AtomicU32,
}

impl ConfigMapVolume {
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.0.join("gateway.yaml")
    }

    /// Publishes a new version as the kubelet does: the file in a new versioned directory,
    /// a `..data_tmp` link to it renamed over `..data` (the one atomic step), then the
    /// previous version removed. Returns the SHA-256 of the new file.
    pub fn update(&self, body: &str) -> String {
        use std::{os::unix::fs::symlink, sync::atomic::Ordering};
        let text = format!("{}{body}", self.header);
        let version = self.version.fetch_add(1, Ordering::SeqCst);
        let name = format!("..2026_12_05_10_00_00.{version:09}");
        std::fs::create_dir(self.dir.0.join(&name)).unwrap();
        std::fs::write(self.dir.0.join(&name).join("gateway.yaml"), &text).unwrap();
        let data = self.dir.0.join("..data");
        let previous = std::fs::read_link(&data).ok();
        let staged = self.dir.0.join("..data_tmp");
        symlink(&name, &staged).unwrap();
        std::fs::rename(&staged, &data).unwrap();
        if let Some(previous) = previous {
            std::fs::remove_dir_all(self.dir.0.join(previous)).unwrap();
        } else {
            symlink("..data/gateway.yaml", self.path()).unwrap();
        }
        sha256(text.as_bytes())
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.stop(ShutdownSignal::FastShutdown);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
