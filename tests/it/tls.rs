//! TLS, with certificates made by the test (rcgen) and real sockets: the gateway's TLS
//! listener (HTTP/1.1 and HTTP/2 by ALPN) beside its plaintext one, and the config errors
//! a bad certificate or key gives.

use std::{net::SocketAddr, time::Duration};

use gateway::Config;

use crate::support::{
    Mode, TempDir, TestGateway, TestUpstream, eventually, free_port,
    tls::{Leaf, TestCa},
};

/// The name the gateway's certificate is for; clients resolve it to the listener.
const GATEWAY_NAME: &str = "gateway.test";

/// A gateway with a TLS listener serving `leaf`, in front of `upstream` (plain HTTP).
struct TlsGateway {
    gateway: TestGateway,
    tls_addr: SocketAddr,
    _dir: TempDir,
}

/// A gateway with a TLS listener serving `leaf` (with `extra` keys of `server.tls`, as
/// YAML flow-map entries after a comma) and the config `body` (no `server`).
async fn tls_gateway(leaf: &Leaf, extra: &str, body: &str) -> TlsGateway {
    let dir = TempDir::new();
    let (cert, key) = leaf.write(&dir.0);
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = format!(
        "tls: {{ listen: \"{tls_addr}\", certificate: \"{}\", key: \"{}\"{extra} }}",
        cert.display(),
        key.display()
    );
    let gateway = TestGateway::start_with_server(&server, body).await;
    until_listening(tls_addr).await;
    TlsGateway {
        gateway,
        tls_addr,
        _dir: dir,
    }
}

/// Waits for the TLS listener (bound after the plaintext one and the admin listener).
async fn until_listening(tls_addr: SocketAddr) {
    eventually(Duration::from_secs(10), || async move {
        std::net::TcpStream::connect(tls_addr).is_ok()
    })
    .await;
}

/// The usual set-up: a test CA, an echo upstream, and a TLS gateway serving a certificate
/// for [`GATEWAY_NAME`] from that CA, with the route `/echo` to the upstream.
struct EchoOverTls {
    ca: TestCa,
    upstream: TestUpstream,
    gw: TlsGateway,
}

impl EchoOverTls {
    async fn start() -> Self {
        Self::start_with("").await
    }

    /// With `extra` keys of `server.tls` (`", http2: false"`).
    async fn start_with(extra: &str) -> Self {
        let ca = TestCa::new("test CA");
        let upstream = TestUpstream::start(Mode::Echo).await;
        let body = format!(
            "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /echo, upstream: echo, auth: none }}\n",
            upstream.addr
        );
        let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), extra, &body).await;
        EchoOverTls { ca, upstream, gw }
    }

    /// `path` on the TLS listener, by the certificate's name.
    fn url(&self, path: &str) -> String {
        format!("https://{GATEWAY_NAME}:{}{path}", self.gw.tls_addr.port())
    }

    /// A client that trusts the test CA and resolves [`GATEWAY_NAME`] to the listener.
    fn client(&self) -> reqwest::Client {
        self.ca.client(GATEWAY_NAME, self.gw.tls_addr)
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        self.ca.client_builder(GATEWAY_NAME, self.gw.tls_addr)
    }
}

#[tokio::test]
async fn an_https_client_reaches_the_backend_through_the_tls_listener() {
    let s = EchoOverTls::start().await;

    let response = s.client().get(s.url("/echo/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/echo/hello");
    assert_eq!(s.upstream.hits(), 1);

    // The plaintext listener keeps serving beside it.
    let plain = reqwest::get(s.gw.gateway.url("/echo/plain")).await.unwrap();
    assert_eq!(plain.status(), 200);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused_at_the_handshake() {
    let s = EchoOverTls::start().await;

    let stranger = TestCa::new("another CA").client(GATEWAY_NAME, s.gw.tls_addr);
    assert!(stranger.get(s.url("/echo")).send().await.is_err());
    // A name the certificate is not for.
    let other_name = s.ca.client("other.test", s.gw.tls_addr);
    let url = format!("https://other.test:{}/echo", s.gw.tls_addr.port());
    assert!(other_name.get(&url).send().await.is_err());
    assert_eq!(s.upstream.hits(), 0);
}

#[tokio::test]
async fn http2_is_offered_by_alpn_and_http1_still_works() {
    let s = EchoOverTls::start().await;
    let url = s.url("/echo/h2");

    // Offers h2 and http/1.1 by ALPN; the gateway picks h2.
    let response = s.client().get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/echo/h2");

    // Several requests multiplexed on one h2 connection.
    let h2 = s.client_builder().http2_prior_knowledge().build().unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..5 {
        requests.spawn(h2.get(format!("{url}/{i}")).send());
    }
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap().unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
    }

    // A gateway-written answer (404 problem JSON) over h2 too.
    let response = h2.get(s.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    let http1 = s.client_builder().http1_only().build().unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn http2_false_offers_http1_only() {
    let s = EchoOverTls::start_with(", http2: false").await;
    let response = s.client().get(s.url("/echo")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

/// The config errors a bad `server.tls` gives: the YAML path and line of the key at fault,
/// the file named, and nothing of the key's contents.
mod config_errors {
    use super::*;

    fn config_with(tls: &str) -> String {
        format!(
            "server:\n  listen: \"127.0.0.1:18888\"\n  tls:\n{tls}upstreams:\n  a: {{ backends: [\"127.0.0.1:1\"] }}\nroutes:\n  - {{ path: /a, upstream: a, auth: none }}\n"
        )
    }

    /// The `certificate` and `key` lines of `server.tls`, naming these files.
    fn pair(cert: &std::path::Path, key: &std::path::Path) -> String {
        format!(
            "    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        )
    }

    fn errors(text: &str) -> Vec<gateway::config::ConfigError> {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn a_missing_certificate_file_is_reported_at_its_key() {
        let dir = TempDir::new();
        let leaf = TestCa::new("ca").leaf(&["a.test"]);
        let (_, key) = leaf.write(&dir.0);
        let missing = dir.0.join("absent.crt");
        let text = config_with(&pair(&missing, &key));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "server.tls.certificate");
        assert_eq!(errors[0].line, Some(4));
        assert!(errors[0].message.contains("absent.crt"), "{}", errors[0]);
    }

    #[test]
    fn an_unparseable_key_is_reported_without_its_contents() {
        let dir = TempDir::new();
        let leaf = TestCa::new("ca").leaf(&["a.test"]);
        let (cert, key) = leaf.write(&dir.0);
        let garbled = leaf
            .key_pem
            .replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\n%%%");
        std::fs::write(&key, &garbled).unwrap();
        let text = config_with(&pair(&cert, &key));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "server.tls.key");
        assert_eq!(errors[0].line, Some(5));
        let shown = errors[0].to_string();
        assert!(shown.contains("tls.key"), "{shown}");
        for line in leaf.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(&line[..12.min(line.len())]), "{shown}");
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = TempDir::new();
        let ca = TestCa::new("ca");
        let (cert, key) = ca.leaf(&["a.test"]).write(&dir.0);
        std::fs::write(&key, ca.leaf(&["a.test"]).key_pem).unwrap();
        let text = config_with(&pair(&cert, &key));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "server.tls.key");
        assert!(
            errors[0].message.contains("does not match"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn the_tls_listener_may_not_share_a_port_with_another() {
        let dir = TempDir::new();
        let (cert, key) = TestCa::new("ca").leaf(&["a.test"]).write(&dir.0);
        let text = config_with(&format!(
            "    listen: \"0.0.0.0:18888\"\n{}",
            pair(&cert, &key)
        ));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "server.tls.listen");
        assert!(errors[0].message.contains("server.listen"), "{}", errors[0]);
    }

    #[test]
    fn defaults_are_port_8443_and_http2() {
        let dir = TempDir::new();
        let (cert, key) = TestCa::new("ca").leaf(&["a.test"]).write(&dir.0);
        let text = config_with(&pair(&cert, &key));
        let config = Config::parse(&text).unwrap();
        let tls = config.server.tls.unwrap();
        assert_eq!(tls.listen.to_string(), "0.0.0.0:8443");
        assert!(tls.http2);
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_are_buffered_and_limited_over_http2_as_over_http1() {
    let s = EchoOverTls::start().await;
    let url = s.url("/echo/body");
    let h2 = s.client_builder().http2_prior_knowledge().build().unwrap();
    let http1 = s.client_builder().http1_only().build().unwrap();
    for (client, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&http1, reqwest::Version::HTTP_11),
    ] {
        // Read whole at the gateway, then sent on in one go.
        let whole = client
            .post(&url)
            .body(vec![b'b'; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(whole.version(), version);
        assert_eq!(whole.status(), 200);
        let echo: serde_json::Value = whole.json().await.unwrap();
        assert_eq!(echo["body"].as_str().unwrap().len(), 64 * 1024);
        let hits = s.upstream.hits();
        let too_large = client
            .post(&url)
            .body(vec![b'b'; 64 * 1024 + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(too_large.status(), 413, "{version:?}");
        assert_eq!(s.upstream.hits(), hits);
    }
}

/// `https://` backends: SNI, verification against a CA file or the system's roots, and
/// what a refused certificate does (502 naming TLS, a connect failure for the breaker).
mod upstream {
    use super::*;
    use crate::support::metric;

    const BACKEND_NAME: &str = "backend.test";

    /// A TLS backend whose certificate `leaf` is signed by `ca`, and a gateway (TLS
    /// listener too) whose `echo` upstream reaches it with `tls` as its `tls:` block.
    struct Setup {
        gw: TlsGateway,
        backend: TestUpstream,
        client: reqwest::Client,
        _dir: TempDir,
    }

    async fn setup(backend_leaf: &Leaf, backend_ca: &TestCa, tls: &str) -> Setup {
        let backend = TestUpstream::start_tls(Mode::Echo, backend_leaf.server_config()).await;
        let dir = TempDir::new();
        let ca_file = backend_ca.write(&dir.0, "backend-ca.pem");
        let tls = tls.replace("CA_FILE", &ca_file.display().to_string());
        let front = TestCa::new("front CA");
        let gw = tls_gateway(
            &front.leaf(&[GATEWAY_NAME]),
            "",
            &format!(
                "upstreams:\n  echo: {{ backends: [\"https://{}\"], breaker: tight{tls} }}\nbreakers:\n  tight: {{ consecutive_failures: 3, failure_rate: off, open_for: 1m }}\nroutes:\n  - {{ path: /echo, upstream: echo, auth: none }}\n",
                backend.addr
            ),
        )
        .await;
        let client = front.client(GATEWAY_NAME, gw.tls_addr);
        Setup {
            gw,
            backend,
            client,
            _dir: dir,
        }
    }

    /// The `tls:` block that verifies against the backend's CA and asks for [`BACKEND_NAME`].
    fn ca_file_and_sni() -> String {
        format!(", tls: {{ ca_file: \"CA_FILE\", sni: {BACKEND_NAME} }}")
    }

    impl Setup {
        async fn get(&self) -> reqwest::Response {
            let url = format!("https://{GATEWAY_NAME}:{}/echo/x", self.gw.tls_addr.port());
            self.client.get(&url).send().await.unwrap()
        }

        fn backend_label(&self) -> String {
            format!("https://{}", self.backend.addr)
        }

        async fn breaker(&self) -> serde_json::Value {
            let report = self.gw.gateway.breakers().await;
            report["upstreams"][0]["backends"][0].clone()
        }
    }

    #[tokio::test]
    async fn an_https_client_reaches_an_https_backend_verified_against_a_ca_file() {
        let ca = TestCa::new("backend CA");
        let s = setup(&ca.leaf(&[BACKEND_NAME]), &ca, &ca_file_and_sni()).await;
        let response = s.get().await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["path"], "/echo/x");
        assert_eq!(s.backend.hits(), 1);
        assert_eq!(s.breaker().await["backend"], s.backend_label());
        assert_eq!(s.breaker().await["failures"], 0);
    }

    #[tokio::test]
    async fn without_sni_the_backend_address_is_verified_against_the_certificates_ip_names() {
        let ca = TestCa::new("backend CA");
        let s = setup(
            &ca.leaf(&["127.0.0.1"]),
            &ca,
            ", tls: { ca_file: \"CA_FILE\" }",
        )
        .await;
        assert_eq!(s.get().await.status(), 200);
        assert_eq!(s.backend.hits(), 1);
    }

    /// Asserts a 502 whose problem names TLS verification, no request reaching the backend,
    /// and the refusal counted against the backend as a `tls_verification` failure.
    async fn assert_refused(s: &Setup, refusals: u32) {
        let response = s.get().await;
        assert_eq!(response.status(), 502);
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/errors/bad_gateway");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("TLS certificate failed verification"),
            "{detail}"
        );
        assert!(!detail.contains("127.0.0.1"), "{detail}");
        assert_eq!(s.backend.hits(), 0);
        let breaker = s.breaker().await;
        assert_eq!(breaker["consecutive_failures"], refusals, "{breaker}");
        let metrics = s.gw.gateway.metrics().await;
        let label = s.backend_label();
        let counted = metric(
            &metrics,
            "gateway_upstream_attempts_total",
            &[("backend", label.as_str()), ("outcome", "tls_verification")],
        );
        assert_eq!(counted, Some(f64::from(refusals)));
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_a_502_and_a_breaker_failure() {
        let ca = TestCa::new("backend CA");
        let s = setup(&ca.leaf(&["other.test"]), &ca, &ca_file_and_sni()).await;
        assert_refused(&s, 1).await;
        assert_refused(&s, 2).await;
        assert_refused(&s, 3).await;
        // Three refusals in a row opened the breaker: the next call is not even tried.
        let response = s.get().await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(s.breaker().await["state"], "open");
    }

    #[tokio::test]
    async fn an_expired_certificate_is_a_502_and_a_breaker_failure() {
        let ca = TestCa::new("backend CA");
        let s = setup(&ca.expired_leaf(&[BACKEND_NAME]), &ca, &ca_file_and_sni()).await;
        assert_refused(&s, 1).await;
    }

    #[tokio::test]
    async fn by_default_the_system_roots_are_trusted_and_a_private_ca_is_not() {
        let ca = TestCa::new("backend CA");
        let s = setup(
            &ca.leaf(&[BACKEND_NAME]),
            &ca,
            &format!(", tls: {{ sni: {BACKEND_NAME} }}"),
        )
        .await;
        assert_refused(&s, 1).await;
    }

    #[tokio::test]
    async fn verify_false_accepts_any_certificate() {
        let ca = TestCa::new("backend CA");
        let s = setup(
            &ca.expired_leaf(&["other.test"]),
            &ca,
            ", tls: { verify: false }",
        )
        .await;
        assert_eq!(s.get().await.status(), 200);
        assert_eq!(s.backend.hits(), 1);
    }

    #[tokio::test]
    async fn the_token_exchange_goes_over_tls_and_a_refused_certificate_counts_against_users() {
        let ca = TestCa::new("users CA");
        let dir = TempDir::new();
        let ca_file = ca.write(&dir.0, "users-ca.pem");
        // A users service that refuses every credential: a 401 read back over TLS.
        let users =
            TestUpstream::start_tls(Mode::Status(401), ca.leaf(&["users.test"]).server_config())
                .await;
        let wrong = TestUpstream::start_tls(
            Mode::Status(401),
            ca.leaf(&["elsewhere.test"]).server_config(),
        )
        .await;
        let body = |users: SocketAddr| {
            format!(
                "upstreams:\n  users: {{ backends: [\"https://{users}\"], connect_retries: 0, tls: {{ ca_file: \"{}\", sni: users.test }} }}\nauth:\n  token_endpoint: {{ upstream: users, path: /auth }}\nroutes:\n  - {{ path: /me, upstream: users }}\n",
                ca_file.display()
            )
        };
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ada:pw")
        );

        // A gateway in front of `users`, and one credential sent through it.
        let log_in = async |users: SocketAddr| {
            let gateway = TestGateway::start(&body(users)).await;
            let response = reqwest::Client::new()
                .get(gateway.url("/me"))
                .header("authorization", &basic)
                .send()
                .await
                .unwrap();
            (gateway, response.status())
        };

        let (_gateway, status) = log_in(users.addr).await;
        assert_eq!(status, 401);
        assert_eq!(users.hits(), 1);

        let (gateway, status) = log_in(wrong.addr).await;
        assert_eq!(status, 503);
        assert_eq!(wrong.hits(), 0);
        let breaker = gateway.breakers().await["upstreams"][0]["backends"][0].clone();
        assert_eq!(breaker["failures"], 1, "{breaker}");
        assert!(crate::support::logs::captured().contains("TLS certificate failed verification"));
    }

    #[test]
    fn tls_settings_are_checked_when_the_file_is_loaded() {
        let dir = TempDir::new();
        let not_pem = dir.0.join("not-a-ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let text = format!(
            "upstreams:\n  a:\n    backends: [\"https://127.0.0.1:1\"]\n    tls: {{ ca_file: \"{}\", sni: \"bad name!\" }}\n  b:\n    backends: [\"127.0.0.1:2\"]\n    tls: {{ verify: false }}\n  c:\n    backends: [\"ftp://127.0.0.1:3\"]\nroutes:\n  - {{ path: /a, upstream: a, auth: none }}\n",
            not_pem.display()
        );
        let errors = Config::parse(&text).unwrap_err();
        let found = |path: &str, words: &str| {
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(words) && e.line.is_some())
        };
        assert!(
            found("upstreams.a.tls.ca_file", "no PEM certificate"),
            "{errors:?}"
        );
        assert!(
            found("upstreams.a.tls.sni", "not a valid server name"),
            "{errors:?}"
        );
        assert!(
            found("upstreams.b.tls", "no backend is https://"),
            "{errors:?}"
        );
        assert!(
            found("upstreams.c.backends[0]", "unsupported scheme"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}

/// Certificate renewal: the files swapped the way the kubelet updates a mounted Secret, the
/// next handshake served the new certificate, a connection made before kept working.
mod reload {
    use std::{path::Path, sync::Arc};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;
    use crate::support::metric;

    type TlsStream = pingora::tls::ClientTlsStream<TcpStream>;

    /// A TLS connection that trusts `ca`, asks for `GATEWAY_NAME`, offers HTTP/1.1 only.
    async fn connect(ca: &TestCa, addr: SocketAddr) -> TlsStream {
        pingora::tls::install_default_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(ca.der()))
            .unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = pingora::tls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(GATEWAY_NAME).unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    fn served_certificate(stream: &TlsStream) -> Vec<u8> {
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// One keep-alive request on `stream`; returns the status.
    async fn get(stream: &mut TlsStream, path: &str) -> u16 {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {GATEWAY_NAME}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response header");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            buffer.extend_from_slice(&chunk[..n]);
        }
        head[9..12].parse().unwrap()
    }

    /// A Secret volume as the kubelet lays it out: `tls.crt -> ..data/tls.crt`,
    /// `..data -> ..<version>`; an update is a new version directory and one rename of a
    /// symlink over `..data`.
    struct SecretVolume {
        dir: TempDir,
        version: u32,
    }

    impl SecretVolume {
        fn new(leaf: &Leaf) -> Self {
            let mut volume = SecretVolume {
                dir: TempDir::new(),
                version: 0,
            };
            volume.update(leaf);
            for name in ["tls.crt", "tls.key"] {
                std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.0.join(name))
                    .unwrap();
            }
            volume
        }

        fn update(&mut self, leaf: &Leaf) {
            self.version += 1;
            let name = format!("..2026_12_05_19_00_00.{:09}", self.version);
            let version_dir = self.dir.0.join(&name);
            std::fs::create_dir(&version_dir).unwrap();
            leaf.write(&version_dir);
            let staged = self.dir.0.join("..data_tmp");
            std::os::unix::fs::symlink(&name, &staged).unwrap();
            std::fs::rename(&staged, self.dir.0.join("..data")).unwrap();
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.0.join(name)
        }
    }

    fn reloads(metrics: &str, result: &str) -> f64 {
        metric(
            metrics,
            "gateway_tls_certificate_reloads_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
    }

    async fn start(
        volume: &SecretVolume,
        upstream: SocketAddr,
        dir: &Path,
    ) -> (TestGateway, SocketAddr) {
        let [port, admin_port, tls_port] = crate::support::free_ports();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
        let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
        let config = format!(
            "server:\n  listen: \"{addr}\"\n  threads: 1\n  grace_period: 0s\n  watch_interval: 100ms\n  tls: {{ listen: \"{tls_addr}\", certificate: \"{}\", key: \"{}\" }}\nadmin: {{ listen: \"{admin}\" }}\nupstreams:\n  echo: {{ backends: [\"{upstream}\"] }}\nroutes:\n  - {{ path: /echo, upstream: echo, auth: none }}\n",
            volume.path("tls.crt").display(),
            volume.path("tls.key").display()
        );
        let file = dir.join("gateway.yaml");
        std::fs::write(&file, config).unwrap();
        let gateway = TestGateway::start_file(&file, addr, admin).await;
        until_listening(tls_addr).await;
        (gateway, tls_addr)
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_to_the_next_connection_and_open_ones_keep_working() {
        let ca = TestCa::new("test CA");
        let first = ca.leaf(&[GATEWAY_NAME]);
        let renewed = ca.leaf(&[GATEWAY_NAME]);
        let upstream = TestUpstream::start(Mode::Echo).await;
        let mut volume = SecretVolume::new(&first);
        let dir = TempDir::new();
        let (gateway, tls_addr) = start(&volume, upstream.addr, &dir.0).await;
        let before = reloads(&gateway.metrics().await, "success");

        let mut open = connect(&ca, tls_addr).await;
        assert_eq!(served_certificate(&open), first.der());
        assert_eq!(get(&mut open, "/echo/1").await, 200);

        volume.update(&renewed);
        eventually(Duration::from_secs(10), || async {
            served_certificate(&connect(&ca, tls_addr).await) == renewed.der()
        })
        .await;
        assert_eq!(reloads(&gateway.metrics().await, "success"), before + 1.0);

        // The connection made before the renewal still works, on its own certificate.
        assert_eq!(get(&mut open, "/echo/2").await, 200);
        assert_eq!(served_certificate(&open), first.der());
        let mut fresh = connect(&ca, tls_addr).await;
        assert_eq!(get(&mut fresh, "/echo/3").await, 200);
        assert_eq!(upstream.hits(), 3);
    }

    #[tokio::test]
    async fn a_broken_pair_never_replaces_the_served_one() {
        let ca = TestCa::new("test CA");
        let first = ca.leaf(&[GATEWAY_NAME]);
        let upstream = TestUpstream::start(Mode::Echo).await;
        let mut volume = SecretVolume::new(&first);
        let dir = TempDir::new();
        let (gateway, tls_addr) = start(&volume, upstream.addr, &dir.0).await;
        let before = reloads(&gateway.metrics().await, "failure");

        // A new certificate with the old key: refused, logged once, the old pair serves on.
        let mismatched = Leaf {
            cert_pem: ca.leaf(&[GATEWAY_NAME]).cert_pem,
            key_pem: first.key_pem.clone(),
        };
        volume.update(&mismatched);
        eventually(Duration::from_secs(10), || async {
            reloads(&gateway.metrics().await, "failure") > before
        })
        .await;
        let mut stream = connect(&ca, tls_addr).await;
        assert_eq!(served_certificate(&stream), first.der());
        assert_eq!(get(&mut stream, "/echo").await, 200);
        assert!(
            crate::support::logs::captured().contains("TLS certificate reload rejected"),
            "no warning logged"
        );
    }
}
