//! What one client can do to others through the gateway, tried as a hostile client would
//! over raw sockets: stalled and trickled bodies, bodies far too large, stalled headers,
//! responses nobody reads. Against the real users and paths services and real origins;
//! the evidence is the answers, what the services and origins received, the breakers
//! (`/admin/breakers`) and `/metrics`.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};
use travel::Service;

use crate::support::{
    Mode, TestGateway, TestTravel, TestUpstream, client, eventually, metric, raw::connect,
};

/// The travel routes the attacks used. The paths service's read timeout is shorter
/// than the client's body timeout: a stalled body forwarded to it would time it out (and,
/// before buffering, open its breaker after 5). The users service keeps the default, as
/// registering hashes a password (slow in a debug build).
/// Metrics are process-wide and tests run together: each test names its routes (`tag`).
fn travel_config(users: SocketAddr, paths: SocketAddr, tag: &str) -> String {
    format!(
        "upstreams:
  users: {{ backends: [\"{users}\"] }}
  paths: {{ backends: [\"{paths}\"], read_timeout: 500ms }}
auth:
  token_endpoint: {{ upstream: users, path: /auth }}
routes:
  - {{ path: /user, methods: [POST], upstream: users, auth: none, name: register-{tag} }}
  - {{ path: /path, upstream: paths, name: paths-{tag} }}
"
    )
}

async fn travel_stack(server: &str, tag: &str) -> (TestTravel, TestGateway) {
    let travel =
        TestTravel::start_services(&[Service::Users, Service::Paths], Duration::from_secs(900))
            .await;
    let config = travel_config(
        travel.addr(Service::Users),
        travel.addr(Service::Paths),
        tag,
    );
    let gateway = TestGateway::start_with_server(server, &config).await;
    (travel, gateway)
}

fn basic(login: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {encoded}")
}

/// Reads the gateway's answer on a raw connection to its end (these connections close
/// after it): the status and the body as JSON.
async fn answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway neither answered nor closed");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// No breaker of `upstream` ever moved, and none counted a failure.
async fn assert_untouched(gateway: &TestGateway, upstream: &str, backend: SocketAddr) {
    let report = gateway.breaker(upstream, backend).await;
    assert_eq!(report["state"], "closed", "{report}");
    assert!(report["last_transition"].is_null(), "{report}");
    assert_eq!(report["failures"], 0, "{report}");
    let text = gateway.metrics().await;
    let backend = backend.to_string();
    let transitions = metric(
        &text,
        "gateway_breaker_transitions_total",
        &[("upstream", upstream), ("backend", backend.as_str())],
    );
    assert_eq!(transitions.unwrap_or(0.0), 0.0);
}

fn aborts(text: &str, route: &str, reason: &str) -> f64 {
    metric(
        text,
        "gateway_client_aborts_total",
        &[("route", route), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// A registration and a fresh login (a first Basic credential, so an exchange at the users
/// service) through the gateway, both answered 200.
async fn register_and_log_in(gateway: &TestGateway, login: &str) {
    let http = client();
    let password = "a-long-password-9";
    let registered = http
        .post(gateway.url("/user"))
        .form(&[
            ("first_name", "Grace"),
            ("last_name", "Hopper"),
            ("email", &format!("{login}@example.org")),
            ("title", "admiral"),
            ("login", login),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200, "{:?}", registered.text().await);
    let created = http
        .post(gateway.url("/path"))
        .header("authorization", basic(login, password))
        .form(&[
            ("startpoint", "1 Main Street"),
            ("endpoint", "2 Side Street"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "{:?}", created.text().await);
}

/// Eight connections that send a request header and part of the body, then nothing.
async fn stalled_bodies(gateway: &TestGateway, head: &str) -> Vec<(u16, Value)> {
    let mut clients = JoinSet::new();
    for _ in 0..8 {
        let (addr, head) = (gateway.addr, head.to_owned());
        clients.spawn(async move {
            let mut stream = connect(addr, &head).await;
            answer(&mut stream).await
        });
    }
    clients.join_all().await
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_on_registration_get_408_and_the_users_service_never_sees_them() {
    let (travel, gateway) = travel_stack("client_body_timeout: 1s", "stall").await;
    let head = "POST /user HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nfirst_name=Ada";
    for (status, body) in stalled_bodies(&gateway, head).await {
        assert_eq!(status, 408, "{body}");
        assert_eq!(body["type"], "/errors/request_timeout");
    }
    assert_eq!(travel.requests(Service::Users), 0, "nothing was forwarded");
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;
    assert_eq!(
        aborts(&gateway.metrics().await, "register-stall", "body_timeout"),
        8.0
    );

    register_and_log_in(&gateway, "fresh-after-stall").await;
    // The registration and the exchange: whole requests only.
    assert_eq!(travel.requests(Service::Users), 2);
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_on_an_authenticated_route_cost_no_exchange_and_no_breaker() {
    let (travel, gateway) = travel_stack("client_body_timeout: 1s", "path-stall").await;
    travel
        .register("stalling-member", "a-long-password-1")
        .await;
    let credentials = basic("stalling-member", "a-long-password-1");
    let head = format!(
        "POST /path HTTP/1.1\r\nHost: gw\r\nAuthorization: {credentials}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nstartpoint=1"
    );
    for (status, body) in stalled_bodies(&gateway, &head).await {
        assert_eq!(status, 408, "{body}");
    }
    // The body is awaited before credentials are exchanged: no Argon2 work for requests
    // that never arrive, and nothing reaches the paths service.
    assert_eq!(travel.auth_calls(), 0);
    assert_eq!(travel.requests(Service::Paths), 0);
    assert_untouched(&gateway, "paths", travel.addr(Service::Paths)).await;
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;
    assert_eq!(
        aborts(&gateway.metrics().await, "paths-path-stall", "body_timeout"),
        8.0
    );

    register_and_log_in(&gateway, "fresh-after-path-stall").await;
    assert_eq!(travel.requests(Service::Paths), 1);
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_trickled_a_byte_a_second_is_cut_at_the_body_timeout() {
    let (travel, gateway) = travel_stack("client_body_timeout: 2s", "trickle").await;
    let stream = connect(
        gateway.addr,
        "POST /user HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let (mut reader, mut writer) = stream.into_split();
    // The client's own pace, not synchronisation: one byte a second, never a stall long
    // enough for a per-read timeout.
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if writer.write_all(b"1\r\na\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut response)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("/errors/request_timeout"), "{text}");
    assert_eq!(travel.requests(Service::Users), 0);
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;

    register_and_log_in(&gateway, "fresh-after-trickle").await;
    assert_untouched(&gateway, "users", travel.addr(Service::Users)).await;
}

/// One route on one origin, buffered with the default limits, named `name` (metrics are
/// process-wide: each test names its route).
fn origin_config(origin: SocketAddr, name: &str) -> String {
    format!(
        "upstreams:\n  origin: {{ backends: [\"{origin}\"] }}\nroutes:\n  - {{ path: /svc, upstream: origin, auth: none, name: {name} }}\n"
    )
}

/// Sends `head` and then `body` as fast as the gateway takes it, while reading the answer.
async fn send_while_reading(addr: SocketAddr, head: String, body: Vec<u8>) -> (u16, Value) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for piece in body.chunks(64 * 1024) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
        // Dropping the write half would half-close the connection, which Pingora takes
        // for a client that went away: keep it open until the answer is read.
        std::future::pending::<()>().await;
        drop(writer);
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut response)).await;
    sender.abort();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// `body` framed as one chunk per 64 KiB, then the last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(body.len() + 1024);
    for piece in body.chunks(64 * 1024) {
        framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    framed
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_bodies_of_5_mib_get_413_and_nothing_reaches_the_origin() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&origin_config(origin.addr, "huge")).await;
    let big = vec![b'x'; 5 * 1024 * 1024];
    let mut clients = JoinSet::new();
    for i in 0..20 {
        let (addr, big) = (gateway.addr, big.clone());
        clients.spawn(async move {
            if i % 2 == 0 {
                let head = format!(
                    "POST /svc HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
                    big.len()
                );
                send_while_reading(addr, head, big).await
            } else {
                // No length announced: refused once the body grows past the limit.
                let head = "POST /svc HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n";
                send_while_reading(addr, head.to_owned(), chunked(&big)).await
            }
        });
    }
    for (status, body) in clients.join_all().await {
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["type"], "/errors/payload_too_large");
    }
    assert_eq!(origin.connections(), 0, "nothing was forwarded");
    assert_untouched(&gateway, "origin", origin.addr).await;
    assert_eq!(aborts(&gateway.metrics().await, "huge", "too_large"), 20.0);
    // The origin is still served.
    let ok = client()
        .post(gateway.url("/svc"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buffered_body_may_be_64_kib_and_not_one_byte_more() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&origin_config(origin.addr, "exact")).await;
    let limit = 64 * 1024;
    let head = |len: usize| {
        format!(
            "POST /svc HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // Exactly the retry buffer's size: forwarded whole, in one go.
    let (status, echo) = send_while_reading(gateway.addr, head(limit), vec![b'y'; limit]).await;
    assert_eq!(status, 200);
    assert_eq!(echo["body"].as_str().unwrap().len(), limit);
    assert_eq!(origin.hits(), 1);
    // One byte more: refused, whether announced or found out while reading.
    let (status, _) =
        send_while_reading(gateway.addr, head(limit + 1), vec![b'y'; limit + 1]).await;
    assert_eq!(status, 413);
    let chunked_head = "POST /svc HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (status, _) = send_while_reading(
        gateway.addr,
        chunked_head.to_owned(),
        chunked(&vec![b'y'; limit + 1]),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_streaming_route_a_stalled_body_is_the_clients_fault_and_cancels_the_attempt() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let config = format!(
        "upstreams:
  origin: {{ backends: [\"{origin}\"], read_timeout: 300ms, breaker: fast }}
breakers:
  fast: {{ consecutive_failures: 3, failure_rate: off }}
routes:
  - {{ path: /upload, upstream: origin, auth: none, request_buffering: off, max_body: 256KiB, name: upload }}
",
        origin = origin.addr
    );
    let gateway = TestGateway::start_with_server("client_body_timeout: 5s", &config).await;
    // The body streams to the origin, which waits for the rest; its read timeout passes
    // while the client is still (not) sending: five times more than the breaker's three.
    for _ in 0..5 {
        let mut stream = connect(
            gateway.addr,
            "POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\npartial",
        )
        .await;
        let (status, body) = answer(&mut stream).await;
        assert_eq!(status, 408, "{body}");
    }
    assert!(origin.connections() >= 1, "the body was streaming");
    assert_untouched(&gateway, "origin", origin.addr).await;
    let backend = origin.addr.to_string();
    let text = gateway.metrics().await;
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[("backend", backend.as_str()), ("outcome", "cancelled")]
        ),
        Some(5.0)
    );
    assert_eq!(aborts(&text, "upload", "body_timeout"), 5.0);

    // A streamed body is measured as it goes by: past max_body, 413.
    origin.set_mode(Mode::Hang);
    let (status, body) = send_while_reading(
        gateway.addr,
        "POST /upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
        chunked(&vec![b'z'; 1024 * 1024]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_untouched(&gateway, "origin", origin.addr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_that_stalls_or_trickles_past_the_header_timeout_closes_the_connection() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start_with_server(
        "client_header_timeout: 1s",
        &origin_config(origin.addr, "headers"),
    )
    .await;
    let mut stalled = connect(gateway.addr, "GET /svc HTTP/1.1\r\nHost: g").await;
    let (status, _) = answer(&mut stalled).await;
    assert_eq!(status, 0, "closed without an answer");

    let stream = connect(gateway.addr, "GET /svc HTTP/1.1\r\n").await;
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest)).await;
    trickle.abort();
    assert!(closed.is_ok(), "a trickled header kept its connection");
    assert!(rest.is_empty());
    assert_eq!(origin.connections(), 0);
    eventually(Duration::from_secs(30), || async {
        // Process-wide and unmatched: other tests' connections may count here too.
        aborts(&gateway.metrics().await, "unmatched", "header_timeout") >= 2.0
    })
    .await;

    // A kept-alive connection may idle longer than the header timeout between requests.
    let mut kept = connect(gateway.addr, "GET /svc HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    let mut first = [0u8; 4096];
    let n = kept.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kept.write_all(b"GET /svc HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut second = Vec::new();
    kept.read_to_end(&mut second).await.unwrap();
    assert!(second.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_nobody_reads_ends_at_the_client_write_timeout() {
    let size = 16 * 1024 * 1024;
    let origin = TestUpstream::start(Mode::Large(size)).await;
    let gateway = TestGateway::start_with_server(
        "client_write_timeout: 1s",
        &origin_config(origin.addr, "unread"),
    )
    .await;
    let mut silent = connect(gateway.addr, "GET /svc HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    // The attempt is dropped (and counted) when the request ends: the gateway gave up on
    // the client instead of holding the backend connection for it.
    let backend = origin.addr.to_string();
    eventually(Duration::from_secs(10), || async {
        let text = gateway.metrics().await;
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[("backend", backend.as_str()), ("outcome", "success")],
        ) == Some(1.0)
    })
    .await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut received)).await;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(received.len() < size, "the whole response was never sent");
    assert_untouched(&gateway, "origin", origin.addr).await;
    assert_eq!(aborts(&gateway.metrics().await, "unread", "went_away"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_on_a_streaming_route_does_not_make_the_backend_slow() {
    // A call is slow after 2 s: far above what the echo origin takes on a loaded machine once
    // it has the body, and below the client's own 3 s pause, which would make every call slow
    // if the breaker's clock started at admission.
    let origin = TestUpstream::start(Mode::Echo).await;
    let config = format!(
        "upstreams:
  origin: {{ backends: [\"{origin}\"], breaker: slow_trips }}
breakers:
  slow_trips: {{ consecutive_failures: off, failure_rate: off, slow_call_duration: 2s, slow_call_rate: 50%, minimum_calls: 2 }}
routes:
  - {{ path: /upload, upstream: origin, auth: none, request_buffering: off, name: slow-upload }}
",
        origin = origin.addr
    );
    let gateway = TestGateway::start(&config).await;
    // Three uploads at once (independent connections), so the pauses do not add up.
    let mut uploads = JoinSet::new();
    for _ in 0..3 {
        let addr = gateway.addr;
        uploads.spawn(async move {
            let stream = connect(
                addr,
                "POST /upload HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 10\r\n\r\nhello",
            )
            .await;
            let (mut reader, mut writer) = stream.into_split();
            // The client's own pace: the rest of its body 3 s later. The backend answers as
            // soon as it has it.
            tokio::time::sleep(Duration::from_secs(3)).await;
            writer.write_all(b"world").await.unwrap();
            let mut response = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(60),
                reader.read_to_end(&mut response),
            )
            .await;
            assert!(response.starts_with(b"HTTP/1.1 200"));
        });
    }
    while let Some(upload) = uploads.join_next().await {
        upload.unwrap();
    }
    let report = gateway.breaker("origin", origin.addr).await;
    assert_eq!(report["calls"], 3, "{report}");
    assert_eq!(report["slow_calls"], 0, "{report}");
    assert_untouched(&gateway, "origin", origin.addr).await;
}
