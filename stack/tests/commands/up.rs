//! `travel up`: the gateway answers through all four routes, SIGTERM stops every part and
//! leaves no listener, a second run finds its data again (Ctrl-C stops that one), and a taken
//! port or a missing config is a clear, immediate error.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    GATEWAY_YAML, Ports, SECRET, Stack, TempDir, assert_all_closed, enc, refused, up_command,
};

const ADA: (&str, &str) = ("ada", "correct-horse");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_all_four_routes_stops_on_sigterm_and_finds_its_data_again() {
    let tmp = TempDir::new();
    let mut stack = Stack::start(&tmp.0, Some(SECRET), "first").await;
    assert!(
        tmp.0.join("data/travel.db").exists(),
        "SQLite file under ./data/"
    );
    let banner = stack.stdout();
    for expected in [
        format!("gateway   http://{}", stack.ports.gateway),
        format!("metrics   http://{}/metrics", stack.ports.admin),
        format!("breakers  http://{}/admin/breakers", stack.ports.admin),
        "JWT_SECRET from the environment".to_owned(),
        "curl -s -u ada:correct-horse".to_owned(),
        "`--fresh` starts again from an empty database".to_owned(),
    ] {
        assert!(banner.contains(&expected), "{expected:?} not in:\n{banner}");
    }
    assert!(!banner.contains(SECRET), "the secret is never printed");

    // users (open route), then paths, trips and parties with Basic credentials.
    let (status, id) = stack
        .post(
            "/user",
            &[
                ("first_name", "Ada"),
                ("last_name", "Lovelace"),
                ("email", "ada@example.org"),
                ("title", "countess"),
                ("login", ADA.0),
                ("password", ADA.1),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{id}");
    let (status, path) = stack
        .post(
            "/path",
            &[("startpoint", "Home"), ("endpoint", "Work")],
            Some(ADA),
        )
        .await;
    assert_eq!(status, 200, "{path}");
    let (status, trip) = stack
        .post(
            "/trip",
            &[
                ("id_path", path.as_str()),
                ("name", "commute"),
                ("start_time", "8:00 AM"),
                ("fin_time", "9:00 AM"),
            ],
            Some(ADA),
        )
        .await;
    assert_eq!(status, 200, "{trip}");
    let (status, parties) = stack.get("/parties", Some(ADA)).await;
    assert_eq!(status, 200, "{parties}");
    let parties: Value = serde_json::from_str(&parties).unwrap();
    assert_eq!(parties[0]["id_trip"].to_string(), trip, "{parties}");
    assert_eq!(parties[0]["id_participant"].to_string(), id, "{parties}");

    let breakers: Value = reqwest::get(stack.admin_url("/admin/breakers"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = breakers["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "users")
        .unwrap();
    assert_eq!(
        users["backends"][0]["backend"],
        stack.ports.services[0].to_string(),
        "the users upstream points at --users-port: {breakers}"
    );
    assert_eq!(users["backends"][0]["state"], "closed");
    let metrics = reqwest::get(stack.admin_url("/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);

    // SIGTERM: the gateway's grace period (5 s in gateway.yaml), then the services.
    let stopped = Instant::now();
    let status = stack.stop("TERM", Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", stack.stderr());
    assert!(stack.stdout().contains("travel up: stopped"));
    assert_all_closed(&stack.ports.all());
    eprintln!("stopped on SIGTERM in {:?}", stopped.elapsed());

    // A second run on the same directory, with a generated key this time: the data is there,
    // old tokens aside (none are kept here; the gateway exchanges Basic credentials again).
    let mut again = Stack::start(&tmp.0, None, "second").await;
    assert!(
        again.stdout().contains("JWT_SECRET generated for this run"),
        "{}",
        again.stdout()
    );
    let (status, found) = again
        .get(
            &format!("/path/search?startpoint={}", enc("Home")),
            Some(ADA),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found[0]["id"].to_string(), path, "{found}");
    let (status, body) = again.get(&format!("/trip?id={trip}"), Some(ADA)).await;
    assert_eq!(status, 200, "{body}");

    // Ctrl-C: the gateway stops at once, then the services.
    let status = again.stop("INT", Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", again.stderr());
    assert_all_closed(&again.ports.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_clear_error_before_anything_starts() {
    let tmp = TempDir::new();
    let mut ports = Ports::fresh();
    // Two of the six are taken: both are named, nothing is created, nothing hangs.
    let users = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    ports.services[0] = users.local_addr().unwrap();
    ports.admin = admin.local_addr().unwrap();
    let mut args = vec!["--config".to_owned(), GATEWAY_YAML.to_owned()];
    args.extend(ports.args());
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        up_command(&tmp.0, Some(SECRET), &args, "taken").status(),
    )
    .await
    .expect("travel up hung on a taken port")
    .unwrap();
    assert_eq!(out.code(), Some(1));
    let stderr = std::fs::read_to_string(tmp.0.join("taken.err")).unwrap();
    for expected in [
        format!("users {} (in use)", ports.services[0]),
        format!("admin {} (in use)", ports.admin),
        "--users-port".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    }
    assert!(
        !stderr.contains(&format!("paths {}", ports.services[1])),
        "{stderr}"
    );
    assert!(!tmp.0.join("data").exists(), "nothing created");
    for free in [ports.services[1], ports.gateway] {
        assert!(refused(free), "{free} left listening");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_or_short_secret_is_a_clear_error() {
    let tmp = TempDir::new();
    let ports = Ports::fresh();
    let out = up_command(&tmp.0, Some(SECRET), &ports.args(), "noconfig")
        .status()
        .await
        .unwrap();
    assert_eq!(out.code(), Some(1));
    let stderr = std::fs::read_to_string(tmp.0.join("noconfig.err")).unwrap();
    assert!(
        stderr.contains("gateway config gateway.yaml not found")
            && stderr.contains("--config PATH"),
        "{stderr}"
    );

    let mut args = vec!["--config".to_owned(), GATEWAY_YAML.to_owned()];
    args.extend(ports.args());
    let out = up_command(&tmp.0, Some("short"), &args, "short")
        .status()
        .await
        .unwrap();
    assert_eq!(out.code(), Some(1));
    let stderr = std::fs::read_to_string(tmp.0.join("short.err")).unwrap();
    assert!(
        stderr.contains("JWT_SECRET is set but is 5 bytes"),
        "{stderr}"
    );
}
