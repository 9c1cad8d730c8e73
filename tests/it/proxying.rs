//! What goes through the gateway comes out unchanged, and what it refuses it refuses with
//! problem JSON.

use serde_json::Value;

use crate::support::{Mode, TestGateway, TestUpstream, client, raw_request};

fn config(users: &TestUpstream) -> String {
    format!(
        "upstreams:\n  users: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /user, methods: [POST], upstream: users, auth: none }}\n  - {{ path: /user, upstream: users, auth: none }}\n  - {{ path: /only-get, methods: [GET, HEAD], upstream: users, auth: none }}\n",
        users.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_method_path_query_headers_and_body() {
    let users = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(&users)).await;
    let response = client()
        .put(gateway.url("/user/search?last_name=Sm%20ith&first_name=Jo"))
        .header("x-custom", "kept")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body("login=mint+green&password=x%26y")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/user/search");
    assert_eq!(echo["query"], "last_name=Sm%20ith&first_name=Jo");
    assert_eq!(echo["headers"]["x-custom"], "kept");
    assert_eq!(echo["headers"]["authorization"], "Basic dXNlcjpwYXNz");
    assert_eq!(echo["headers"]["x-request-id"], request_id.as_str());
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(echo["body"], "login=mint+green&password=x%26y");
    assert_eq!(users.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_kept_and_identity_headers_stripped() {
    let users = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(&users)).await;
    let response = client()
        .get(gateway.url("/user?id=1"))
        .header("x-request-id", "client-chosen-42")
        .header("x-user-id", "1")
        .header("X-User-Login", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], "client-chosen-42");
    assert!(echo["headers"].get("x-user-id").is_none(), "{echo}");
    assert!(echo["headers"].get("x-user-login").is_none(), "{echo}");
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "{key} missing in {body}");
    }
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_unsafe_paths_and_wrong_methods_are_refused() {
    let users = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(&users)).await;
    let http = client();

    let body = problem(http.get(gateway.url("/users")).send().await.unwrap(), 404).await;
    assert_eq!(body["type"], "/errors/not_found");
    assert_eq!(body["instance"], "/users");
    // Query strings never route: the original sent `/trip?x=/user` to the users service.
    problem(
        http.get(gateway.url("/trip?name=/user"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;

    for path in [
        "/user/../admin",
        "/user/%2e%2E/admin",
        "/user%2Fx",
        "/user/..%2f",
        "/user\\x",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(gateway.addr, &request).await;
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "/errors/bad_request", "{path}");
    }

    let response = http.post(gateway.url("/only-get/x")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    problem(response, 405).await;

    assert_eq!(users.hits(), 0, "nothing refused may reach the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_statuses_and_bodies_pass_through() {
    let users = TestUpstream::start(Mode::Status(409)).await;
    let gateway = TestGateway::start(&config(&users)).await;
    let response = client()
        .post(gateway.url("/user"))
        .body("login=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.text().await.unwrap(), r#"{"status":409}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_serves_health_and_the_contract() {
    let users = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(&users)).await;
    let health = reqwest::get(gateway.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let contract = reqwest::get(gateway.admin_url("/openapi.yaml"))
        .await
        .unwrap();
    assert_eq!(contract.status(), 200);
    assert_eq!(contract.headers()["content-type"], "application/yaml");
    let served = contract.text().await.unwrap();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
    assert_eq!(served, file);
    assert!(served.starts_with("openapi: 3.1") || served.contains("\nopenapi: 3.1"));
    let unknown = reqwest::get(gateway.admin_url("/nope")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let config = reqwest::get(gateway.admin_url("/admin/config"))
        .await
        .unwrap();
    assert_eq!(
        config.status(),
        404,
        "an in-memory config has no file to report"
    );
}
