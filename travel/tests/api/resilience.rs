//! Parties down: trips answers 503 (with Retry-After) for the requests that need parties,
//! keeps serving the others, leaves no half-created trip, and recovers when parties is back.

use std::time::Duration;

use travel::Service::{Parties, Trips};

use crate::both;
use crate::support::{Db, eventually, spawn_app};

both!(parties_down_then_back);

async fn parties_down_then_back(db: Db) {
    let mut app = spawn_app(db).await;
    let (_, t) = app.user("alice").await;
    let trip = "/trip?id=1&id_path=1&name=n&start_time=s&fin_time=f";
    assert_eq!(app.post(Trips, trip, &t).await.status, 200);

    app.stop(Parties).await;
    for r in [
        app.get(Trips, "/trip?id=1", &t).await,
        app.get(Trips, "/trips", &t).await,
        app.post(
            Trips,
            "/trip?id=2&id_path=1&name=n&start_time=s&fin_time=f",
            &t,
        )
        .await,
    ] {
        let v = r.assert_problem(503, "/errors/service_timeout", "/trip");
        assert_eq!(v["detail"], "Waiting for parties service up...");
        let retry: u64 = r.header("retry-after").parse().unwrap();
        assert!((1..=5).contains(&retry));
    }
    // Requests that do not need parties still work.
    assert_eq!(
        app.put(
            Trips,
            "/trip?id=1&id_path=2&name=m&start_time=s&fin_time=f",
            &t
        )
        .await
        .status,
        200
    );
    assert_eq!(app.get(Trips, "/trip?id=404", &t).await.status, 404);

    app.start(Parties).await;
    let r = eventually(Duration::from_secs(10), "trips to recover", || async {
        let r = app.get(Trips, "/trip?id=1", &t).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.json()["name"], "m");
    // The failed creation left nothing behind: the same id can be created now.
    let r = app
        .post(
            Trips,
            "/trip?id=2&id_path=1&name=n&start_time=s&fin_time=f",
            &t,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.text.as_str()), (200, "2"));
    assert_eq!(
        app.get(Trips, "/trips", &t)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
