//! Routing by exact path (the original matched substrings of path and query), fallbacks as
//! problem JSON, `/healthz`, request ids.

use reqwest::Method;
use travel::Service::{self, Parties, Paths, Trips, Users};

use crate::both;
use crate::support::{Auth, Db, spawn_app};

both!(exact_paths_and_fallbacks);

async fn exact_paths_and_fallbacks(db: Db) {
    let app = spawn_app(db).await;
    let (_, t) = app.user("alice").await;
    for s in Service::ALL {
        let r = app.call(Method::GET, s, "/healthz", Auth::None, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        assert!(!r.header("x-request-id").is_empty());
    }
    // Incoming request ids are echoed; unusable ones replaced.
    let r = app
        .http
        .get(app.url(Users, "/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .http
        .get(app.url(Users, "/healthz"))
        .header("x-request-id", "bad id")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id");

    // Near misses that the original's substring routing accepted are 404 here.
    let near: &[(Service, &str, &str)] = &[
        (Users, "/users", "/user"),
        (Users, "/author", "/user"),
        (Users, "/user/", "/user"),
        (Users, "/path", "/user"),
        (Paths, "/paths", "/path"),
        (Trips, "/tripsXYZ", "/trip"),
        (Parties, "/partyx", "/party"),
        (Parties, "/", "/party"),
    ];
    for (s, p, inst) in near {
        let r = app.call(Method::GET, *s, p, Auth::Bearer(&t), None).await;
        let v = r.assert_problem(404, "/errors/not_found", inst);
        assert_eq!(v["detail"], "Request not found", "{p}");
    }
    // A route-like string in a query value does not hijack routing.
    let r = app
        .post(Paths, "/path?startpoint=/auth&endpoint=/user", &t)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get(Paths, &format!("/path?id={}", r.text), &t).await;
    assert_eq!(r.json()["startpoint"], "/auth");
    // Known path, wrong method: 405 with Allow.
    let cases: &[(Method, Service, &str, &str)] = &[
        (Method::DELETE, Trips, "/trip", "/trip"),
        (Method::PUT, Paths, "/path", "/path"),
        (Method::POST, Parties, "/parties", "/party"),
        (Method::GET, Parties, "/party/join", "/party"),
        (Method::POST, Users, "/auth", "/user"),
    ];
    for (m, s, p, inst) in cases {
        let r = app.call(m.clone(), *s, p, Auth::Bearer(&t), None).await;
        r.assert_problem(405, "/errors/method_not_allowed", inst);
        assert!(!r.header("allow").is_empty());
    }
}
