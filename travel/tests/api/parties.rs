//! Parties service: join, membership, list, idempotent create.

use travel::Service::{Parties, Trips};

use crate::both;
use crate::support::{Db, spawn_app};

both!(memberships);

async fn memberships(db: Db) {
    let app = spawn_app(db).await;
    let (alice, a) = app.user("alice").await;
    let (bob, b) = app.user("bob").await;
    assert_eq!(
        app.post(
            Trips,
            "/trip?id=7&id_path=1&name=n&start_time=s&fin_time=f",
            &a
        )
        .await
        .status,
        200
    );
    // The creator is a member.
    let r = app.get(Parties, "/party?id_trip=7", &a).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        format!(r#"{{"id_participant":{alice},"id_trip":7}}"#)
    );
    // Others are not: 404 with the original detail.
    let v = app
        .get(Parties, "/party?id_trip=7", &b)
        .await
        .assert_problem(404, "/errors/not_found", "/party");
    assert_eq!(v["detail"], "User not in party...");
    // Join: 200 with the trip id, then 409.
    let r = app.post(Parties, "/party/join?id_trip=7", &b).await;
    assert_eq!((r.status.as_u16(), r.text.as_str()), (200, "7"));
    let v = app
        .post(Parties, "/party/join?id_trip=7", &b)
        .await
        .assert_problem(409, "/errors/already_exists", "/party");
    assert_eq!(v["detail"], "Party already exists...");
    // Joining a trip that does not exist: 404.
    let v = app
        .post(Parties, "/party/join?id_trip=8", &b)
        .await
        .assert_problem(404, "/errors/not_found", "/party");
    assert_eq!(v["detail"], "Trip doesn't exists...");
    // POST /party is idempotent, and 404 for unknown trips.
    for _ in 0..2 {
        let r = app.post(Parties, "/party?id_trip=7", &a).await;
        assert_eq!((r.status.as_u16(), r.text.as_str()), (200, "7"));
    }
    app.post(Parties, "/party?id_trip=8", &a)
        .await
        .assert_problem(404, "/errors/not_found", "/party");
    // Lists: only the caller's entries.
    assert_eq!(
        app.get(Parties, "/parties", &b).await.text,
        format!(r#"[{{"id_participant":{bob},"id_trip":7}}]"#)
    );
    // Missing or bad id_trip: 400 with the original detail.
    for q in ["/party", "/party?id_trip=seven"] {
        let v = app
            .get(Parties, q, &a)
            .await
            .assert_problem(400, "/errors/bad_request", "/party");
        assert_eq!(v["detail"], "Request doesn't have nedeed data...");
    }
    app.post(Parties, "/party/join", &a)
        .await
        .assert_problem(400, "/errors/bad_request", "/party");
}
