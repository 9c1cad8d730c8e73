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

async fn tls_gateway(leaf: &Leaf, extra: &str, upstream: SocketAddr) -> TlsGateway {
    let dir = TempDir::new();
    let (cert, key) = leaf.write(&dir.0);
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = format!(
        "tls: {{ listen: \"{tls_addr}\", certificate: \"{}\", key: \"{}\"{extra} }}",
        cert.display(),
        key.display()
    );
    let body = format!(
        "upstreams:\n  echo: {{ backends: [\"{upstream}\"] }}\nroutes:\n  - {{ path: /echo, upstream: echo, auth: none }}\n"
    );
    let gateway = TestGateway::start_with_server(&server, &body).await;
    eventually(Duration::from_secs(10), || async move {
        std::net::TcpStream::connect(tls_addr).is_ok()
    })
    .await;
    TlsGateway {
        gateway,
        tls_addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn an_https_client_reaches_the_backend_through_the_tls_listener() {
    let ca = TestCa::new("test CA");
    let upstream = TestUpstream::start(Mode::Echo).await;
    let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), "", upstream.addr).await;

    let client = ca.client(GATEWAY_NAME, gw.tls_addr);
    let url = format!("https://{GATEWAY_NAME}:{}/echo/hello", gw.tls_addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/echo/hello");
    assert_eq!(upstream.hits(), 1);

    // The plaintext listener keeps serving beside it.
    let plain = reqwest::get(gw.gateway.url("/echo/plain")).await.unwrap();
    assert_eq!(plain.status(), 200);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused_at_the_handshake() {
    let ca = TestCa::new("test CA");
    let upstream = TestUpstream::start(Mode::Echo).await;
    let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), "", upstream.addr).await;

    let stranger = TestCa::new("another CA").client(GATEWAY_NAME, gw.tls_addr);
    let url = format!("https://{GATEWAY_NAME}:{}/echo", gw.tls_addr.port());
    assert!(stranger.get(&url).send().await.is_err());
    // A name the certificate is not for.
    let other_name = ca.client("other.test", gw.tls_addr);
    let url = format!("https://other.test:{}/echo", gw.tls_addr.port());
    assert!(other_name.get(&url).send().await.is_err());
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn http2_is_offered_by_alpn_and_http1_still_works() {
    let ca = TestCa::new("test CA");
    let upstream = TestUpstream::start(Mode::Echo).await;
    let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), "", upstream.addr).await;
    let url = format!("https://{GATEWAY_NAME}:{}/echo/h2", gw.tls_addr.port());

    // Offers h2 and http/1.1 by ALPN; the gateway picks h2.
    let negotiating = ca.client(GATEWAY_NAME, gw.tls_addr);
    let response = negotiating.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/echo/h2");

    // Several requests multiplexed on one h2 connection.
    let h2 = ca
        .client_builder(GATEWAY_NAME, gw.tls_addr)
        .http2_prior_knowledge()
        .build()
        .unwrap();
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
    let missing = format!("https://{GATEWAY_NAME}:{}/nowhere", gw.tls_addr.port());
    let response = h2.get(&missing).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    let http1 = ca
        .client_builder(GATEWAY_NAME, gw.tls_addr)
        .http1_only()
        .build()
        .unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn http2_false_offers_http1_only() {
    let ca = TestCa::new("test CA");
    let upstream = TestUpstream::start(Mode::Echo).await;
    let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), ", http2: false", upstream.addr).await;
    let url = format!("https://{GATEWAY_NAME}:{}/echo", gw.tls_addr.port());
    let response = ca
        .client(GATEWAY_NAME, gw.tls_addr)
        .get(&url)
        .send()
        .await
        .unwrap();
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

    fn errors(text: &str) -> Vec<gateway::config::ConfigError> {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn a_missing_certificate_file_is_reported_at_its_key() {
        let dir = TempDir::new();
        let leaf = TestCa::new("ca").leaf(&["a.test"]);
        let (_, key) = leaf.write(&dir.0);
        let missing = dir.0.join("absent.crt");
        let text = config_with(&format!(
            "    certificate: \"{}\"\n    key: \"{}\"\n",
            missing.display(),
            key.display()
        ));
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
        let text = config_with(&format!(
            "    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ));
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
        let text = config_with(&format!(
            "    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ));
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
            "    listen: \"0.0.0.0:18888\"\n    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
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
        let text = config_with(&format!(
            "    certificate: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ));
        let config = Config::parse(&text).unwrap();
        let tls = config.server.tls.unwrap();
        assert_eq!(tls.listen.to_string(), "0.0.0.0:8443");
        assert!(tls.http2);
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_are_buffered_and_limited_over_http2_as_over_http1() {
    let ca = TestCa::new("test CA");
    let upstream = TestUpstream::start(Mode::Echo).await;
    let gw = tls_gateway(&ca.leaf(&[GATEWAY_NAME]), "", upstream.addr).await;
    let url = format!("https://{GATEWAY_NAME}:{}/echo/body", gw.tls_addr.port());
    let h2 = ca
        .client_builder(GATEWAY_NAME, gw.tls_addr)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let http1 = ca
        .client_builder(GATEWAY_NAME, gw.tls_addr)
        .http1_only()
        .build()
        .unwrap();
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
        let hits = upstream.hits();
        let too_large = client
            .post(&url)
            .body(vec![b'b'; 64 * 1024 + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(too_large.status(), 413, "{version:?}");
        assert_eq!(upstream.hits(), hits);
    }
}
