//! A real HTTP/1.1 origin on an ephemeral loopback port whose behaviour a test switches at
//! will: echo, fixed status, slow, hung, truncated, or dropping the connection mid-request.
//! It counts every request it receives, so tests can prove what reached it; `GET /healthz`
//! answers the status set with [`TestUpstream::set_health`] and is counted apart.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinSet,
};

#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 with a JSON description of the request.
    Echo,
    /// This status with a small JSON body.
    Status(u16),
    /// The status named by the request's `status=` query parameter.
    QueryStatus,
    /// Echo after this delay.
    Delay(Duration),
    /// Read the request, never answer.
    Hang,
    /// Announce 100 bytes, send 7, close.
    Truncate,
    /// Read the request, close without answering.
    Drop,
    /// 200 with a body of this many bytes, written as fast as the reader takes them.
    Large(usize),
    /// Hold each request until the test lets it go ([`TestUpstream::release`]), then
    /// answer this status (200: echo). Counts the requests held at once.
    Hold(u16),
}

struct Shared {
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    connections: AtomicUsize,
    /// Permits to answer held requests.
    gate: tokio::sync::Semaphore,
    /// Requests being worked on now, and the most ever at once.
    active: AtomicUsize,
    peak: AtomicUsize,
    health: std::sync::atomic::AtomicU16,
    health_hits: AtomicUsize,
    /// When each `/healthz` request arrived, in order.
    health_times: Mutex<Vec<std::time::Instant>>,
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Option<JoinSet<()>>,
    /// Serves HTTPS with this configuration (see [`TestUpstream::start_tls`]).
    tls: Option<pingora::tls::TlsAcceptor>,
}

impl TestUpstream {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, None).await
    }

    /// An HTTPS origin: every connection is a TLS handshake with `config` first (one that
    /// fails is dropped, having reached no request).
    pub async fn start_tls(mode: Mode, config: rustls::ServerConfig) -> Self {
        Self::start_with(
            mode,
            Some(pingora::tls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(mode: Mode, tls: Option<pingora::tls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            health: std::sync::atomic::AtomicU16::new(200),
            health_hits: AtomicUsize::new(0),
            health_times: Mutex::new(Vec::new()),
        });
        let mut upstream = TestUpstream {
            addr,
            shared,
            tasks: None,
            tls,
        };
        upstream.serve(listener);
        upstream
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let port = self.addr.port();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                match tls.clone() {
                    None => connections.spawn(handle(stream, port, shared)),
                    Some(acceptor) => connections.spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            handle(stream, port, shared).await;
                        }
                    }),
                };
            }
        });
        self.tasks = Some(tasks);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Connections accepted so far (a request that reached the origin at all opened one,
    /// or reused one that did).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests received, `/healthz` aside.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Lets `n` held requests (present or future) be answered.
    pub fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    /// Requests held right now.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The most requests ever held at once.
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// The status `GET /healthz` answers from now on (200 at start).
    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// `GET /healthz` requests received.
    pub fn health_hits(&self) -> usize {
        self.shared.health_hits.load(Ordering::SeqCst)
    }

    /// When each `GET /healthz` arrived (taken before it is answered), oldest first.
    pub fn health_times(&self) -> Vec<std::time::Instant> {
        self.shared.health_times.lock().unwrap().clone()
    }

    /// Kills the server: the listener closes (connections are refused) and every open
    /// connection is dropped.
    pub async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    /// Brings the server back on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<Request> {
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, port: u16, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        if request.method == "GET" && request.target == "/healthz" {
            shared
                .health_times
                .lock()
                .unwrap()
                .push(std::time::Instant::now());
            shared.health_hits.fetch_add(1, Ordering::SeqCst);
            let status = shared.health.load(Ordering::SeqCst);
            let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        shared.hits.fetch_add(1, Ordering::SeqCst);
        let mode = shared.mode.lock().unwrap().clone();
        let (status, body) = match mode {
            Mode::Echo => (200, echo(&request)),
            Mode::Status(status) => (status, json!({ "status": status }).to_string()),
            Mode::QueryStatus => {
                let status = request
                    .target
                    .split_once("status=")
                    .and_then(|(_, s)| s.get(..3)?.parse().ok())
                    .unwrap_or(200);
                (status, json!({ "status": status }).to_string())
            }
            Mode::Hold(status) => {
                let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
                shared.peak.fetch_max(now, Ordering::SeqCst);
                let permit = shared.gate.acquire().await;
                shared.active.fetch_sub(1, Ordering::SeqCst);
                if let Ok(permit) = permit {
                    permit.forget();
                }
                match status {
                    200 => (200, echo(&request)),
                    status => (status, json!({ "status": status }).to_string()),
                }
            }
            Mode::Delay(delay) => {
                tokio::time::sleep(delay).await;
                (200, echo(&request))
            }
            Mode::Hang => {
                std::future::pending::<()>().await;
                return;
            }
            Mode::Truncate => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\npartial")
                    .await;
                return;
            }
            Mode::Drop => return,
            Mode::Large(size) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(&vec![b'x'; size]).await.is_err()
                {
                    return;
                }
                continue;
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Upstream: {}\r\n\r\n{body}",
            body.len(),
            port
        );
        if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

fn echo(request: &Request) -> String {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "method": request.method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
    })
    .to_string()
}
