//! The API contract, `docs/openapi.yaml`, against the real services. Every operation is called
//! with valid requests and its main error cases, and every answer is checked against what the
//! contract documents for that operation and status: the status itself, the required headers
//! and their values, the media type, and the body against the response schema (`$ref`s
//! resolved here, validated with `jsonschema`). The routes the handlers declare must be exactly
//! the contract's paths and methods, and any other method on those paths must get 405 with an
//! `Allow` that lists the documented ones. Rename a field, a parameter or a route on either
//! side and this test fails.
//!
//! The four services run in-process on ephemeral ports, SQLite in a temp directory (like
//! `travel serve all`). What only the gateway adds (its 401 challenge, 503 for an open
//! breaker, `X-Cache`/`Age`, marked `x-set-by: gateway` in the contract) is checked by the
//! schemathesis run through `travel up` (tests/contract/run.sh).

// Test support code is not inside #[test] functions, so clippy's allow-unwrap-in-tests does
// not reach it; a panic is exactly what a failing test set-up should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use travel::{AppState, Config, Service};

const SECRET: &str = "contract-test-secret-0123456789abcdef-0123";

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

// ---------------------------------------------------------------------------------------------
// The contract

/// `docs/openapi.yaml`, read at test time, every `$ref` replaced by what it points to.
struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Self {
        let path = repo_file("docs/openapi.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let raw: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert_eq!(raw["openapi"], "3.1.0", "the contract is OpenAPI 3.1");
        Contract {
            doc: inline_refs(&raw, &raw, 0),
        }
    }

    /// Every operation: (path, method, tag).
    fn operations(&self) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        let paths = self.doc["paths"].as_object().expect("`paths` is a map");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item is a map") {
                if ![
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    continue;
                }
                let tags = op["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
                assert_eq!(
                    tags.len(),
                    1,
                    "{method} {path}: exactly one tag (its service)"
                );
                let tag = tags[0].as_str().unwrap().to_owned();
                out.insert((path.clone(), method.to_uppercase(), tag));
            }
        }
        out
    }

    fn operation(&self, method: &Method, path: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(path)?
            .get(method.as_str().to_ascii_lowercase())
    }

    /// The service an operation's tag names.
    fn service(&self, path: &str) -> Service {
        let tag = self
            .operations()
            .into_iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, tag)| tag)
            .unwrap_or_else(|| panic!("{path} is not in the contract"));
        tag.parse()
            .unwrap_or_else(|e| panic!("tag {tag:?} of {path} names no service: {e}"))
    }

    /// Whether an operation needs credentials (its own `security`, else the document's).
    fn is_protected(&self, op: &Value) -> bool {
        let security = op.get("security").unwrap_or(&self.doc["security"]);
        let alternatives = security.as_array().map(Vec::as_slice).unwrap_or_default();
        !alternatives.is_empty()
            && alternatives
                .iter()
                .all(|req| req.as_object().is_some_and(|r| !r.is_empty()))
    }

    /// Check a reply against the response the contract documents for `method path` and its
    /// status; panics naming every difference.
    fn check(&self, method: &Method, path: &str, reply: &Reply) {
        let what = format!("{method} {path} -> {}", reply.status.as_u16());
        let op = self
            .operation(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the contract"));
        let status = reply.status.as_u16().to_string();
        let response = op["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{what}: status not documented (documented: {:?}); body {}",
                op["responses"]
                    .as_object()
                    .map(|r| r.keys().collect::<Vec<_>>()),
                reply.body
            )
        });
        self.check_response(&what, response, reply);
    }

    /// Check a reply against a response object of the contract.
    fn check_response(&self, what: &str, response: &Value, reply: &Reply) {
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in headers {
                let from_gateway = header["x-set-by"] == "gateway";
                match reply.headers.get(name.as_str()) {
                    None => assert!(
                        from_gateway || header["required"] != true,
                        "{what}: required header {name} missing; headers {:?}",
                        reply.headers
                    ),
                    Some(value) => {
                        let value = value.to_str().unwrap_or_default();
                        let schema = &header["schema"];
                        let value = match schema["type"].as_str() {
                            Some("integer") => value
                                .parse::<i64>()
                                .map_or_else(|_| json!(value), |n| json!(n)),
                            _ => json!(value),
                        };
                        validate(schema, &value, &format!("{what}: header {name}"));
                    }
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(
                reply.body.is_empty(),
                "{what}: a body where none is documented"
            );
            return;
        };
        let media_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{what}: no Content-Type"));
        let media = content.get(&media_type).unwrap_or_else(|| {
            panic!(
                "{what}: Content-Type {media_type} not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            )
        });
        if let Some(schema) = media.get("schema") {
            let body: Value = serde_json::from_str(&reply.body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {:?}", reply.body));
            validate(schema, &body, &format!("{what}: body"));
        } else if let Some(schema) = media.get("x-raw-body") {
            validate(schema, &json!(reply.body), &format!("{what}: raw body"));
        }
    }
}

/// `value` with every local `$ref` replaced by its target (siblings of `$ref` win, as OpenAPI
/// 3.1 allows for `summary`/`description`). The contract has no recursive schemas.
fn inline_refs(value: &Value, root: &Value, depth: usize) -> Value {
    assert!(depth < 32, "$ref cycle in the contract");
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local $refs are supported: {reference}"));
                let target = root
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("$ref {reference} points to nothing"));
                let mut resolved = inline_refs(target, root, depth + 1);
                if let Value::Object(out) = &mut resolved {
                    for (k, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                        out.insert(k.clone(), inline_refs(v, root, depth));
                    }
                }
                resolved
            } else {
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), inline_refs(v, root, depth)))
                        .collect(),
                )
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline_refs(v, root, depth)).collect())
        }
        other => other.clone(),
    }
}

/// Validate `instance` against a JSON Schema 2020-12 `schema`, listing every violation.
fn validate(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::draft202012::new(schema)
        .unwrap_or_else(|e| panic!("{what}: the contract's schema is invalid: {e}\n{schema:#}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} violates the contract:\n  {}\nvalue: {instance}",
        errors.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// The services

/// The four services in one process on one SQLite pool, like `travel serve all`.
struct App {
    http: reqwest::Client,
    addrs: HashMap<Service, SocketAddr>,
    running: HashMap<Service, (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    dir: PathBuf,
    contract: Contract,
    /// (path, method, status) of every checked reply.
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl App {
    async fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("travel_contract_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut listeners = HashMap::new();
        let mut addrs = HashMap::new();
        for service in Service::ALL {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.insert(service, listener.local_addr().unwrap());
            listeners.insert(service, listener);
        }
        let mut config = Config::new(Some(SECRET))
            .unwrap()
            .with_parties_url(&format!("http://{}", addrs[&Service::Parties]))
            .unwrap();
        config.database_url = format!("sqlite://{}/travel.db", dir.display());
        config.parties_timeout = Duration::from_millis(1500);
        let state = AppState::new(&config).await.unwrap();
        let mut running = HashMap::new();
        for (service, listener) in listeners {
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(travel::serve(service, listener, state.clone(), async {
                let _ = stopped.await;
            }));
            running.insert(service, (stop, task));
        }
        App {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            addrs,
            running,
            dir,
            contract: Contract::load(),
            seen: Mutex::default(),
        }
    }

    /// Stop one service and wait until it has.
    async fn stop(&mut self, service: Service) {
        let (stop, task) = self.running.remove(&service).unwrap();
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("service did not stop")
            .unwrap()
            .unwrap();
    }

    /// Send a request to `service` without checking the answer.
    async fn send(&self, service: Service, method: Method, target: &str, req: Req<'_>) -> Reply {
        let url = format!("http://{}{target}", self.addrs[&service]);
        let mut builder = self.http.request(method, &url);
        builder = match req.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic(login, password) => builder.basic_auth(login, Some(password)),
        };
        if let Some(body) = req.body {
            builder = builder
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned());
        }
        let response = builder.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// Call an operation of the contract, assert the status, and check the whole reply
    /// against the contract.
    async fn expect(&self, method: Method, path: &str, req: Req<'_>, status: u16) -> Reply {
        let target = if req.query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", form(req.query))
        };
        let reply = self
            .send(self.contract.service(path), method.clone(), &target, req)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {target}: body {}",
            reply.body
        );
        self.contract.check(&method, path, &reply);
        self.seen
            .lock()
            .unwrap()
            .insert((path.to_owned(), method.to_string(), status));
        reply
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Credentials to send.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// A request: query parameters, an optional urlencoded body, credentials.
#[derive(Clone, Copy)]
struct Req<'a> {
    query: &'a [(&'a str, &'a str)],
    body: Option<&'a str>,
    auth: Auth<'a>,
}

fn query<'a>(query: &'a [(&'a str, &'a str)], auth: Auth<'a>) -> Req<'a> {
    Req {
        query,
        body: None,
        auth,
    }
}

fn body<'a>(body: &'a str, auth: Auth<'a>) -> Req<'a> {
    Req {
        query: &[],
        body: Some(body),
        auth,
    }
}

/// `application/x-www-form-urlencoded` of the pairs.
fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Every operation, valid and invalid, each answer checked against the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_contract_says() {
    let mut app = App::start().await;
    let (get, post, put) = (Method::GET, Method::POST, Method::PUT);
    let none = Auth::None;

    // users: registration, tokens, reads.
    let ada = form(&[
        ("first_name", "Domingo"),
        ("last_name", "Marks"),
        ("email", "Domingo_Marks57@gmail.com"),
        ("title", "gold"),
        ("login", "purple"),
        ("password", "NXRHcmpmOWRTQ1d5dlhL"),
    ]);
    let ada_id = app
        .expect(post.clone(), "/user", body(&ada, none), 200)
        .await
        .json();
    let grace = form(&[
        ("first_name", "Minnie"),
        ("last_name", "Mayert"),
        ("email", "Minnie.Mayert42@yahoo.com"),
        ("title", "salmon"),
        ("login", "tan"),
        ("password", "eWQyUmFKWGE2N1JlQU1B"),
    ]);
    app.expect(post.clone(), "/user", body(&grace, none), 200)
        .await;
    app.expect(post.clone(), "/user", body(&ada, none), 409)
        .await;
    let invalid = form(&[
        ("first_name", "Jo"),
        ("last_name", "Mac Neil"),
        ("email", "nowhere"),
        ("title", "t"),
        ("login", "l"),
        ("password", "p"),
    ]);
    let r = app
        .expect(post.clone(), "/user", body(&invalid, none), 400)
        .await;
    assert_eq!(
        r.json()["errors"].as_array().unwrap().len(),
        3,
        "{}",
        r.body
    );
    app.expect(post.clone(), "/user", body("", none), 400).await;
    let huge = format!("first_name={}", "a".repeat(17 * 1024));
    app.expect(post.clone(), "/user", body(&huge, none), 413)
        .await;

    let basic_ada = Auth::Basic("purple", "NXRHcmpmOWRTQ1d5dlhL");
    let a = app
        .expect(get.clone(), "/auth", query(&[], basic_ada), 200)
        .await
        .body;
    let b = app
        .expect(
            get.clone(),
            "/auth",
            query(&[], Auth::Basic("tan", "eWQyUmFKWGE2N1JlQU1B")),
            200,
        )
        .await
        .body;
    app.expect(
        get.clone(),
        "/auth",
        query(&[], Auth::Basic("purple", "wrong")),
        401,
    )
    .await;
    app.expect(get.clone(), "/auth", query(&[], none), 401)
        .await;
    let (ada_auth, grace_auth) = (Auth::Bearer(&a), Auth::Bearer(&b));

    let owner = app
        .expect(get.clone(), "/auth_check", query(&[], ada_auth), 200)
        .await
        .json();
    assert_eq!(owner, json!({"id": ada_id, "login": "purple"}));
    app.expect(
        get.clone(),
        "/auth_check",
        query(&[], Auth::Bearer("a.b.c")),
        401,
    )
    .await;

    let id = ada_id.to_string();
    let user = app
        .expect(get.clone(), "/user", query(&[("id", &id)], grace_auth), 200)
        .await
        .json();
    assert_eq!(user["login"], "purple");
    app.expect(
        get.clone(),
        "/user",
        query(&[("id", "999999")], ada_auth),
        404,
    )
    .await;
    app.expect(
        get.clone(),
        "/user",
        query(&[("id", "12abc")], ada_auth),
        400,
    )
    .await;
    let q = [("first_name", "Dom"), ("last_name", "Ma"), ("limit", "10")];
    let found = app
        .expect(get.clone(), "/user/search", query(&q, ada_auth), 200)
        .await;
    assert_eq!(found.json().as_array().unwrap().len(), 1, "{}", found.body);
    app.expect(
        get.clone(),
        "/user/search",
        query(&[("first_name", "D")], ada_auth),
        400,
    )
    .await;
    let q = [("first_name", ""), ("last_name", ""), ("limit", "0")];
    app.expect(get.clone(), "/user/search", query(&q, ada_auth), 400)
        .await;

    // paths
    let path_form = form(&[
        ("startpoint", "42 John Wall Street"),
        ("endpoint", "981 Morningstar Terrace"),
    ]);
    let path_id = app
        .expect(post.clone(), "/path", body(&path_form, ada_auth), 200)
        .await
        .json()
        .to_string();
    app.expect(post.clone(), "/path", body("startpoint=x", ada_auth), 400)
        .await;
    let huge = format!("startpoint={}", "a".repeat(17 * 1024));
    app.expect(post.clone(), "/path", body(&huge, ada_auth), 413)
        .await;
    let p = app
        .expect(
            get.clone(),
            "/path",
            query(&[("id", &path_id)], grace_auth),
            200,
        )
        .await
        .json();
    assert_eq!(p["startpoint"], "42 John Wall Street");
    app.expect(
        get.clone(),
        "/path",
        query(&[("id", "999999")], ada_auth),
        404,
    )
    .await;
    app.expect(get.clone(), "/path", query(&[], ada_auth), 400)
        .await;
    let q = [("startpoint", "42 John"), ("offset", "0")];
    let found = app
        .expect(get.clone(), "/path/search", query(&q, ada_auth), 200)
        .await;
    assert_eq!(found.json().as_array().unwrap().len(), 1, "{}", found.body);
    app.expect(
        get.clone(),
        "/path/search",
        query(&[("offset", "-1")], ada_auth),
        400,
    )
    .await;

    // trips (the creator becomes a member through parties)
    let trip = [
        ("id", "1"),
        ("id_path", "76"),
        ("name", "nullam"),
        ("start_time", "8:46 AM"),
        ("fin_time", "3:02 PM"),
    ];
    let created = app
        .expect(post.clone(), "/trip", body(&form(&trip), ada_auth), 200)
        .await
        .json();
    assert_eq!(created, 1);
    let assigned = app
        .expect(
            post.clone(),
            "/trip",
            body(&form(&trip[1..]), ada_auth),
            200,
        )
        .await
        .json();
    assert_eq!(assigned, 2);
    app.expect(post.clone(), "/trip", body(&form(&trip), grace_auth), 409)
        .await;
    let mut bad = trip;
    bad[0] = ("id", "0");
    app.expect(post.clone(), "/trip", body(&form(&bad), ada_auth), 400)
        .await;
    let mut renamed = trip;
    renamed[2] = ("name", "magna ac");
    app.expect(put.clone(), "/trip", body(&form(&renamed), ada_auth), 200)
        .await;
    app.expect(put.clone(), "/trip", body(&form(&renamed), grace_auth), 403)
        .await;
    let mut missing = renamed;
    missing[0] = ("id", "999999");
    app.expect(put.clone(), "/trip", body(&form(&missing), ada_auth), 404)
        .await;
    app.expect(
        put.clone(),
        "/trip",
        body(&form(&renamed[1..]), ada_auth),
        400,
    )
    .await;
    let t = app
        .expect(get.clone(), "/trip", query(&[("id", "1")], ada_auth), 200)
        .await
        .json();
    assert_eq!(t["name"], "magna ac");
    app.expect(get.clone(), "/trip", query(&[("id", "1")], grace_auth), 403)
        .await;
    app.expect(
        get.clone(),
        "/trip",
        query(&[("id", "999999")], ada_auth),
        404,
    )
    .await;
    app.expect(get.clone(), "/trip", query(&[("id", "")], ada_auth), 400)
        .await;
    let mine = app
        .expect(get.clone(), "/trips", query(&[], ada_auth), 200)
        .await;
    assert_eq!(mine.json().as_array().unwrap().len(), 2, "{}", mine.body);
    app.expect(
        get.clone(),
        "/trips",
        query(&[("limit", "1001")], ada_auth),
        400,
    )
    .await;

    // parties
    let trip1 = [("id_trip", "1")];
    let nowhere = [("id_trip", "999999")];
    app.expect(post.clone(), "/party/join", query(&trip1, grace_auth), 200)
        .await;
    app.expect(post.clone(), "/party/join", query(&trip1, grace_auth), 409)
        .await;
    app.expect(
        post.clone(),
        "/party/join",
        query(&nowhere, grace_auth),
        404,
    )
    .await;
    app.expect(post.clone(), "/party/join", query(&[], grace_auth), 400)
        .await;
    let party = app
        .expect(get.clone(), "/party", query(&trip1, grace_auth), 200)
        .await
        .json();
    assert_eq!(party["id_trip"], 1);
    app.expect(
        get.clone(),
        "/party",
        query(&[("id_trip", "2")], grace_auth),
        404,
    )
    .await;
    app.expect(
        get.clone(),
        "/party",
        query(&[("id_trip", "x")], grace_auth),
        400,
    )
    .await;
    app.expect(post.clone(), "/party", query(&trip1, ada_auth), 200)
        .await;
    app.expect(post.clone(), "/party", query(&nowhere, ada_auth), 404)
        .await;
    app.expect(
        post.clone(),
        "/party",
        query(&[("id_trip", "1.0")], ada_auth),
        400,
    )
    .await;
    let parties = app
        .expect(get.clone(), "/parties", query(&[], grace_auth), 200)
        .await;
    assert_eq!(parties.json(), json!([{"id_participant": 2, "id_trip": 1}]));
    app.expect(
        get.clone(),
        "/parties",
        query(&[("limit", "x")], grace_auth),
        400,
    )
    .await;
    // Now a member, grace may read the trip.
    app.expect(get.clone(), "/trip", query(&[("id", "1")], grace_auth), 200)
        .await;

    // No credentials (and a forged token): 401 with the challenge, on every protected operation.
    let forged = Auth::Bearer("eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2ln");
    for (path, method, _) in app.contract.operations() {
        let method: Method = method.parse().unwrap();
        let op = app.contract.operation(&method, &path).unwrap().clone();
        if !app.contract.is_protected(&op) {
            continue;
        }
        let body = (method != Method::GET).then_some("");
        for auth in [none, forged] {
            let req = Req {
                query: &[],
                body,
                auth,
            };
            app.expect(method.clone(), &path, req, 401).await;
        }
    }

    // Parties down: what depends on it answers 503 with Retry-After.
    app.stop(Service::Parties).await;
    let mut third = trip;
    third[0] = ("id", "3");
    app.expect(post.clone(), "/trip", body(&form(&third), ada_auth), 503)
        .await;
    app.expect(get.clone(), "/trip", query(&[("id", "1")], ada_auth), 503)
        .await;
    app.expect(get.clone(), "/trips", query(&[], ada_auth), 503)
        .await;

    // Every operation was seen answering 200.
    let seen = app.seen.lock().unwrap().clone();
    let mut statuses: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for (path, method, status) in seen {
        statuses.entry((path, method)).or_default().push(status);
    }
    for (path, method, _) in app.contract.operations() {
        let got = statuses.get(&(path.clone(), method.clone()));
        assert!(
            got.is_some_and(|s| s.contains(&200)),
            "{method} {path} was never exercised successfully: {got:?}"
        );
    }
}

/// The routes the handlers declare (`.route("/path", get(..).post(..))` in
/// `travel/src/services/<service>.rs`) are exactly the contract's operations, each under the
/// tag of its service. `/healthz` (added to every service in `lib.rs`) is not routed by the
/// gateway and is not part of the contract.
#[test]
fn handler_routes_are_exactly_the_contract() {
    let contract = Contract::load();
    let mut from_code = BTreeSet::new();
    for service in Service::ALL {
        let file = repo_file(&format!("travel/src/services/{}.rs", service.name()));
        let source = std::fs::read_to_string(&file).unwrap();
        let routes = declared_routes(&source);
        assert!(!routes.is_empty(), "no routes found in {}", file.display());
        for (path, methods) in routes {
            assert!(!methods.is_empty(), "route {path} without a method");
            for method in methods {
                from_code.insert((path.clone(), method, service.name().to_owned()));
            }
        }
    }
    let from_contract = contract.operations();
    let only_code: Vec<_> = from_code.difference(&from_contract).collect();
    let only_contract: Vec<_> = from_contract.difference(&from_code).collect();
    assert!(
        only_code.is_empty() && only_contract.is_empty(),
        "routes and contract differ:\n  in the handlers only: {only_code:?}\n  in the contract only: {only_contract:?}"
    );
}

/// (path, methods) of every `.route(` call in a source file.
fn declared_routes(source: &str) -> Vec<(String, Vec<String>)> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let args = &rest[at + ".route(".len()..];
        let mut depth = 1;
        let end = args
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("unbalanced .route(");
        let call = &args[..end];
        let path = call.split('"').nth(1).expect("a route path literal");
        let methods = ["get", "post", "put", "delete", "patch"]
            .into_iter()
            .filter(|m| {
                call.match_indices(&format!("{m}(")).any(|(i, _)| {
                    call[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                })
            })
            .map(str::to_uppercase)
            .collect();
        routes.push((path.to_owned(), methods));
        rest = &args[end..];
    }
    routes
}

/// Methods the contract does not list get 405 with `Allow` naming exactly the documented
/// ones (plus HEAD where GET is); paths it does not list get 404. Both as problem JSON of the
/// shape the contract documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_and_other_paths_404() {
    let app = App::start().await;
    let token = app.token_for_new_user().await;
    let auth = Auth::Bearer(&token);
    let responses = &app.contract.doc["components"]["responses"];
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in app.contract.operations() {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, documented) in &by_path {
        let service = app.contract.service(path);
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if documented.contains(method) {
                continue;
            }
            let req = Req {
                query: &[],
                body: None,
                auth,
            };
            let reply = app.send(service, method.parse().unwrap(), path, req).await;
            let what = format!("{method} {path} -> {}", reply.status.as_u16());
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{what}: {}",
                reply.body
            );
            app.contract
                .check_response(&what, &responses["MethodNotAllowed"], &reply);
            let allow: BTreeSet<String> = reply.headers["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD")
                .collect();
            assert_eq!(&allow, documented, "{what}: Allow");
        }
    }
    for service in Service::ALL {
        for target in ["/", "/users", "/trip/1", "/party/join/x"] {
            let req = Req {
                query: &[],
                body: None,
                auth,
            };
            let reply = app.send(service, Method::GET, target, req).await;
            let what = format!("GET {target} on {} -> {}", service.name(), reply.status);
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{what}: {}",
                reply.body
            );
            app.contract
                .check_response(&what, &responses["NotFound"], &reply);
        }
    }
}

impl App {
    /// Register a user and return a token for it.
    async fn token_for_new_user(&self) -> String {
        let user = form(&[
            ("first_name", "Jimmie"),
            ("last_name", "Sipes"),
            ("email", "jimmie@example.org"),
            ("title", "gold"),
            ("login", "salmon"),
            ("password", "cGhMNkpJTGdVWnhONnpL"),
        ]);
        self.expect(Method::POST, "/user", body(&user, Auth::None), 200)
            .await;
        let auth = Auth::Basic("salmon", "cGhMNkpJTGdVWnhONnpL");
        self.expect(Method::GET, "/auth", query(&[], auth), 200)
            .await
            .body
    }
}
