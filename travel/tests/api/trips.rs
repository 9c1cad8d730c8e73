//! Trips service: creation (with and without id), ownership on PUT, membership on GET, lists.

use reqwest::Method;
use travel::Service::{Parties, Trips};

use crate::both;
use crate::support::{Auth, Db, spawn_app};

both!(create_read_replace, list_skips_dangling_memberships);

const FIELDS: &str = "id_path=5&name=sem%20praesent&start_time=4%3A56%20AM&fin_time=5%3A37%20PM";

async fn create_read_replace(db: Db) {
    let app = spawn_app(db).await;
    let (alice, a) = app.user("alice").await;
    let (_, b) = app.user("bob").await;

    // Client-chosen id, like the original; the creator becomes a member via parties.
    let r = app.post(Trips, &format!("/trip?id=10&{FIELDS}"), &a).await;
    assert_eq!((r.status.as_u16(), r.text.as_str()), (200, "10"));
    assert_eq!(r.header("content-type"), "application/json");
    // Taken id: 409.
    let r = app.post(Trips, &format!("/trip?id=10&{FIELDS}"), &b).await;
    let v = r.assert_problem(409, "/errors/already_exists", "/trip");
    assert_eq!(v["detail"], "Trip already exists...");
    // No id: server-assigned (max + 1); body form works too.
    let r = app
        .call(Method::POST, Trips, "/trip", Auth::Bearer(&a), Some(FIELDS))
        .await;
    assert_eq!(r.text, "11");
    let r = app.post(Trips, &format!("/trip?id=0&{FIELDS}"), &a).await;
    r.assert_problem(400, "/errors/bad_request", "/trip");
    let r = app.post(Trips, "/trip?id=3&name=x", &a).await;
    let v = r.assert_problem(400, "/errors/bad_request", "/trip");
    assert_eq!(v["detail"], "Request doesn't have nedeed data...");
    let fields: Vec<String> = r.reasons().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["id_path", "start_time", "fin_time"]);

    // Owner reads it: exact shape.
    let r = app.get(Trips, "/trip?id=10", &a).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        format!(
            r#"{{"fin_time":"5:37 PM","id":10,"id_owner":{alice},"id_path":5,"name":"sem praesent","start_time":"4:56 AM"}}"#
        )
    );
    // Not a member: 403. Unknown trip: 404. Missing id: 400.
    let v =
        app.get(Trips, "/trip?id=10", &b)
            .await
            .assert_problem(403, "/errors/forbidden", "/trip");
    assert_eq!(v["detail"], "User not in party of trip...");
    let v =
        app.get(Trips, "/trip?id=99", &a)
            .await
            .assert_problem(404, "/errors/not_found", "/trip");
    assert_eq!(v["detail"], "Trip doesn't exists...");
    app.get(Trips, "/trip", &a)
        .await
        .assert_problem(400, "/errors/bad_request", "/trip");
    // After joining, bob reads it.
    assert_eq!(
        app.post(Parties, "/party/join?id_trip=10", &b).await.status,
        200
    );
    assert_eq!(app.get(Trips, "/trip?id=10", &b).await.status, 200);

    // PUT: members who are not the owner get 403 and nothing changes.
    let r = app
        .put(
            Trips,
            "/trip?id=10&id_path=6&name=hijack&start_time=1&fin_time=2",
            &b,
        )
        .await;
    let v = r.assert_problem(403, "/errors/forbidden", "/trip");
    assert_eq!(v["detail"], "Only the owner can change the trip...");
    assert_eq!(
        app.get(Trips, "/trip?id=10", &a).await.json()["name"],
        "sem praesent"
    );
    // The owner replaces it; the owner stays.
    let r = app
        .call(
            Method::PUT,
            Trips,
            "/trip",
            Auth::Bearer(&a),
            Some("id=10&id_path=6&name=renamed&start_time=1&fin_time=2"),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.text.as_str()), (200, "10"));
    let t = app.get(Trips, "/trip?id=10", &b).await.json();
    assert_eq!(
        (
            t["name"].as_str(),
            t["id_path"].as_i64(),
            t["id_owner"].as_i64()
        ),
        (Some("renamed"), Some(6), Some(alice))
    );
    // PUT of an unknown trip: 404; without id: 400.
    app.put(Trips, &format!("/trip?id=12345&{FIELDS}"), &a)
        .await
        .assert_problem(404, "/errors/not_found", "/trip");
    app.put(Trips, &format!("/trip?{FIELDS}"), &a)
        .await
        .assert_problem(400, "/errors/bad_request", "/trip");
}

async fn list_skips_dangling_memberships(db: Db) {
    let app = spawn_app(db).await;
    let (_, a) = app.user("alice").await;
    let (_, b) = app.user("bob").await;
    for id in [3, 1, 2] {
        assert_eq!(
            app.post(Trips, &format!("/trip?id={id}&{FIELDS}"), &a)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        app.post(Trips, &format!("/trip?id=4&{FIELDS}"), &b)
            .await
            .status,
        200
    );
    let ids = |r: &crate::support::Reply| -> Vec<i64> {
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&app.get(Trips, "/trips", &a).await), [1, 2, 3]);
    assert_eq!(ids(&app.get(Trips, "/trips", &b).await), [4]);
    assert_eq!(
        ids(&app.get(Trips, "/trips?limit=1&offset=1", &a).await),
        [2]
    );
    // A membership whose trip is gone (the original crashed here) is skipped.
    sqlx::query("DELETE FROM trips WHERE id = 2")
        .execute(app.state().store.pool())
        .await
        .unwrap();
    assert_eq!(ids(&app.get(Trips, "/trips", &a).await), [1, 3]);
    let (_, c) = app.user("carol").await;
    assert_eq!(app.get(Trips, "/trips", &c).await.text, "[]");
}
