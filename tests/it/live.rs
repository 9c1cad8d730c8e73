//! The admin listener's live side through real sockets: the page served from the binary,
//! `/admin/events` streaming a snapshot, a breaker transition as it happens (a real origin
//! failing and recovering), a rejected reload, and the cap on concurrent streams.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Mode, TestGateway, TestUpstream, eventually, gateway::ADMIN_TOKEN};

const TRIPPING: &str = "
breakers:
  fast:
    consecutive_failures: 3
    failure_rate: off
    window: 10s
    open_for: 300ms
    max_open_for: 1s
    half_open_probes: 1
";

fn config(origin: std::net::SocketAddr) -> String {
    format!(
        "upstreams:\n  svc: {{ backends: [\"{origin}\"], breaker: fast }}\n{TRIPPING}routes:\n  - {{ path: /svc, upstream: svc, auth: none }}\n"
    )
}

/// An `/admin/events` subscription read frame by frame.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(url: &str) -> EventStream {
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (`event:` name, `data:` parsed), or `None` if the stream ended.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = None;
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(d).unwrap());
                    }
                }
                match data {
                    Some(data) => return Some((name, data)),
                    None => continue, // `retry:` alone
                }
            }
            let chunk = self.response.chunk().await.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads events until one named `name` satisfies `check`; fails after `deadline`.
    pub async fn until(
        &mut self,
        deadline: Duration,
        name: &str,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        let found = tokio::time::timeout(deadline, async {
            while let Some((event, data)) = self.next().await {
                if event == name && check(&data) {
                    return Some(data);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(data)) => data,
            Ok(None) => panic!("the stream ended before a matching {name} event"),
            Err(_) => panic!("no matching {name} event within {deadline:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_one_self_contained_file() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(origin.addr)).await;
    let response = reqwest::get(gateway.admin_url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("new EventSource(\"/admin/events\")"));
    // Nothing fetched from elsewhere: no external script, style, font or image.
    for needle in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<script src",
    ] {
        assert!(!page.contains(needle), "the page loads {needle}…");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_starts_with_a_snapshot_and_a_transition_arrives_as_it_happens() {
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let gateway = TestGateway::start(&config(origin.addr)).await;
    let mut events = EventStream::open(&gateway.admin_url("/admin/events")).await;

    let first = events
        .until(Duration::from_secs(5), "snapshot", |_| true)
        .await;
    let backend = &first["upstreams"][0]["backends"][0];
    assert_eq!(first["upstreams"][0]["name"], "svc");
    assert_eq!(backend["state"], "closed");
    assert_eq!(
        first["upstreams"][0]["thresholds"]["consecutive_failures"],
        3
    );
    assert_eq!(backend["in_flight"], 0);
    assert!(
        first["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "/svc")
    );

    let http = reqwest::Client::new();
    for _ in 0..3 {
        let status = http.get(gateway.url("/svc")).send().await.unwrap().status();
        assert_eq!(status, 500);
    }
    let opened = events
        .until(Duration::from_secs(5), "transition", |t| t["to"] == "open")
        .await;
    assert_eq!(opened["upstream"], "svc");
    assert_eq!(opened["backend"], origin.addr.to_string());
    assert_eq!(opened["from"], "closed");
    assert_eq!(opened["reason"], "3 consecutive failures");

    // The next snapshots carry it too: in the backend's row and the recent transitions.
    let snapshot = events
        .until(Duration::from_secs(5), "snapshot", |s| {
            s["upstreams"][0]["backends"][0]["state"] == "open"
        })
        .await;
    assert_eq!(snapshot["transitions"][0]["to"], "open");
    let route = snapshot["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/svc")
        .unwrap()
        .clone();
    assert!(route["error_share"].as_f64().unwrap() > 0.0, "{route}");

    // Recovery: the probe succeeds and the stream says so.
    origin.set_mode(Mode::Echo);
    let url = gateway.url("/svc");
    let drive = tokio::spawn(async move {
        loop {
            let _ = http.get(&url).send().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = events
        .until(Duration::from_secs(10), "transition", |t| {
            t["to"] == "closed"
        })
        .await;
    drive.abort();
    assert_eq!(closed["from"], "half_open");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_reload_is_pushed_with_its_errors() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let (gateway, file) = TestGateway::start_watching(&config(origin.addr)).await;
    let mut events = EventStream::open(&gateway.admin_url("/admin/events")).await;
    let first = events
        .until(Duration::from_secs(5), "snapshot", |_| true)
        .await;
    assert!(first["config"]["hash"].is_string());

    file.write(&format!("{}\nbogus_key: 1\n", config(origin.addr)));
    let config = events
        .until(Duration::from_secs(10), "config", |c| {
            c["last_reload"]["applied"] == false
        })
        .await;
    let errors = config["last_reload"]["errors"].to_string();
    assert!(errors.contains("bogus_key"), "{errors}");
    // And /admin/snapshot, what the page draws first, says the same from the next tick on.
    let gateway = &gateway;
    eventually(Duration::from_secs(5), || async move {
        let snapshot = gateway.admin_json("/admin/snapshot").await;
        snapshot["config"]["last_reload"]["applied"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_are_capped_and_a_closed_one_frees_its_place() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(origin.addr)).await;
    let url = gateway.admin_url("/admin/events");
    let mut open = Vec::new();
    for _ in 0..gateway::events::MAX_SUBSCRIBERS {
        open.push(EventStream::open(&url).await);
    }
    let refused = reqwest::get(&url).await.unwrap();
    assert_eq!(refused.status(), 503);
    drop(open.pop());
    eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.unwrap().status() == 200 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_the_data_needs_it_and_the_page_trades_it_for_a_cookie() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start_with_admin(
        ", token_env: ADMIN_TOKEN, open_paths: [/healthz]",
        &config(origin.addr),
    )
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(gateway.admin_url(path));

    // The page (no data in it) and the open path answer; everything else asks for the token.
    assert_eq!(get("/").send().await.unwrap().status(), 200);
    assert_eq!(get("/healthz").send().await.unwrap().status(), 200);
    for path in [
        "/metrics",
        "/admin/breakers",
        "/admin/snapshot",
        "/admin/events",
    ] {
        let refused = get(path).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Bearer realm=\"gateway admin\""
        );
        let body = refused.text().await.unwrap();
        assert!(!body.contains(ADMIN_TOKEN));
    }
    let wrong = get("/admin/breakers")
        .bearer_auth("not-the-token-at-all")
        .send()
        .await;
    assert_eq!(wrong.unwrap().status(), 401);
    let right = get("/admin/breakers").bearer_auth(ADMIN_TOKEN).send().await;
    assert_eq!(right.unwrap().status(), 200);

    // The page's exchange: the token once, then a cookie that is not the token.
    let session = http.post(gateway.admin_url("/admin/session"));
    assert_eq!(session.send().await.unwrap().status(), 401);
    let session = http
        .post(gateway.admin_url("/admin/session"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 204);
    let set_cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(!set_cookie.contains(ADMIN_TOKEN), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let stream = get("/admin/events")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let forged = get("/admin/events")
        .header("cookie", format!("gateway_admin={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // The token never reaches the logs.
    assert!(!crate::support::logs::captured().contains(ADMIN_TOKEN));
}
