//! Harness: `travel up` as a child process in a temp directory on six ephemeral loopback ports
//! (four services, gateway, admin), its output in files there; readiness by bounded polling;
//! SIGTERM/SIGINT through `kill`. The child is killed and the directory removed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The real binary under test.
pub const TRAVEL: &str = env!("CARGO_BIN_EXE_travel");
/// The repository's gateway config.
pub const GATEWAY_YAML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway.yaml");
/// The repository's seed data.
pub const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/seed");
/// Token key given to the stacks that do not generate their own.
pub const SECRET: &str = "stack-test-secret-0123456789abcdef-0123";

/// A temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("travel_stack_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` distinct ports nobody listens on right now (a small race remains: the child binds later).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `timeout`.
pub async fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Addresses of one stack.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// users, paths, trips, parties.
    pub services: [SocketAddr; 4],
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
}

impl Ports {
    pub fn fresh() -> Self {
        let p = free_ports(6);
        let a = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            services: [a(p[0]), a(p[1]), a(p[2]), a(p[3])],
            gateway: a(p[4]),
            admin: a(p[5]),
        }
    }

    pub fn all(&self) -> Vec<SocketAddr> {
        let mut v = self.services.to_vec();
        v.extend([self.gateway, self.admin]);
        v
    }

    /// The `travel up` flags for these ports.
    pub fn args(&self) -> Vec<String> {
        let [users, paths, trips, parties] = self.services.map(|a| a.port().to_string());
        vec![
            "--gateway-listen".into(),
            self.gateway.to_string(),
            "--admin-listen".into(),
            self.admin.to_string(),
            "--users-port".into(),
            users,
            "--paths-port".into(),
            paths,
            "--trips-port".into(),
            trips,
            "--parties-port".into(),
            parties,
        ]
    }
}

/// `travel up` in a directory, with stdout and stderr in files there.
pub fn up_command(dir: &Path, secret: Option<&str>, args: &[String], name: &str) -> Command {
    let mut cmd = Command::new(TRAVEL);
    cmd.arg("up")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .kill_on_drop(true);
    match secret {
        Some(s) => cmd.env("JWT_SECRET", s),
        None => cmd.env_remove("JWT_SECRET"),
    };
    cmd
}

/// A running `travel up`.
pub struct Stack {
    pub ports: Ports,
    pub dir: PathBuf,
    name: String,
    child: Child,
    pub http: reqwest::Client,
}

impl Stack {
    /// Start `travel up` in `dir` (its data in `dir/data`) and wait until the gateway and the
    /// admin listener accept connections.
    pub async fn start(dir: &Path, secret: Option<&str>, name: &str) -> Self {
        let ports = Ports::fresh();
        let mut args = vec!["--config".to_owned(), GATEWAY_YAML.to_owned()];
        args.extend(ports.args());
        let child = up_command(dir, secret, &args, name).spawn().unwrap();
        let mut stack = Stack {
            ports,
            dir: dir.to_owned(),
            name: name.to_owned(),
            child,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        // A debug build migrating a fresh database on a busy machine: generous, but bounded.
        let deadline = Instant::now() + Duration::from_secs(120);
        for addr in [ports.gateway, ports.admin] {
            loop {
                if let Some(status) = stack.child.try_wait().unwrap() {
                    panic!("travel up exited with {status}:\n{}", stack.stderr());
                }
                if TcpStream::connect(addr).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "travel up did not listen on {addr}:\n{}",
                    stack.stderr()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The banner follows the listeners by a moment.
        let what = format!("the banner of travel up:\n{}", stack.stderr());
        eventually(Duration::from_secs(10), &what, || {
            stack.stdout().contains("travel up: ready").then_some(())
        })
        .await;
        stack
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.out", self.name))).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.err", self.name))).unwrap_or_default()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.ports.gateway)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ports.admin)
    }

    /// Send `signal` (TERM or INT) and wait for the exit, bounded.
    pub async fn stop(&mut self, signal: &str, within: Duration) -> ExitStatus {
        let pid = self.child.id().expect("travel up already reaped");
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid} failed");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "travel up did not stop within {within:?} of SIG{signal}:\n{}",
                self.stderr()
            ),
        }
    }

    /// POST a urlencoded form through the gateway, with Basic credentials if given.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((l, p)) = basic {
            req = req.basic_auth(l, Some(p));
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// GET through the gateway, with Basic credentials if given.
    pub async fn get(&self, path_and_query: &str, basic: Option<(&str, &str)>) -> (u16, String) {
        let mut req = self.http.get(self.url(path_and_query));
        if let Some((l, p)) = basic {
            req = req.basic_auth(l, Some(p));
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// Percent-encode a query value.
pub fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// True when nothing accepts connections on `addr`.
pub fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(_) => true,
        // TCP "self-connect": with no listener, a connect to a loopback port in the ephemeral
        // range succeeds when the kernel picks that same port as the source. Nobody listens.
        Ok(stream) => stream.local_addr().is_ok_and(|local| local == addr),
    }
}

/// Panic unless every address refuses connections, saying who still listens.
pub fn assert_all_closed(addrs: &[SocketAddr]) {
    for addr in addrs {
        if !refused(*addr) {
            let ss = std::process::Command::new("ss")
                .args(["-tanp"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let port = format!(":{}", addr.port());
            let lines: Vec<&str> = ss.lines().filter(|l| l.contains(&port)).collect();
            panic!("{addr} still accepts connections:\n{}", lines.join("\n"));
        }
    }
}
