//! Paths service: create, read, prefix search.

use reqwest::Method;
use travel::Service::{Paths, Users};

use crate::both;
use crate::support::{Auth, Db, spawn_services};

both!(paths_crud_and_search);

async fn paths_crud_and_search(db: Db) {
    let app = spawn_services(db, &[Users, Paths]).await;
    let (_, token) = app.user("black").await;
    let r = app
        .post(
            Paths,
            "/path?startpoint=42%20John%20Wall%20Street&endpoint=981%20Morningstar",
            &token,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.text, "1");
    // Body form on POST.
    let r = app
        .call(
            Method::POST,
            Paths,
            "/path",
            Auth::Bearer(&token),
            Some("startpoint=42%20Oak&endpoint=B"),
        )
        .await;
    assert_eq!(r.text, "2");
    assert_eq!(
        app.post(Paths, "/path?startpoint=7%20Elm&endpoint=C", &token)
            .await
            .text,
        "3"
    );

    let r = app.get(Paths, "/path?id=1", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        r#"{"endpoint":"981 Morningstar","id":1,"startpoint":"42 John Wall Street"}"#
    );
    let r = app.get(Paths, "/path?id=77", &token).await;
    let v = r.assert_problem(404, "/errors/not_found", "/path");
    assert_eq!(v["detail"], "Path doesn't exists...");
    for q in ["/path", "/path?id=", "/path?id=x"] {
        let r = app.get(Paths, q, &token).await;
        let v = r.assert_problem(400, "/errors/bad_request", "/path");
        assert_eq!(v["detail"], "Request doesn't have nedeed data...");
    }
    let r = app.post(Paths, "/path?startpoint=A", &token).await;
    r.assert_problem(400, "/errors/bad_request", "/path");
    assert_eq!(r.reasons(), vec![("endpoint".into(), "is required".into())]);
    let r = app
        .post(Paths, "/path?startpoint=&endpoint=B", &token)
        .await;
    assert_eq!(
        r.reasons(),
        vec![("startpoint".into(), "must not be empty".into())]
    );

    let ids = |r: &crate::support::Reply| -> Vec<i64> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&app.get(Paths, "/path/search?startpoint=42", &token).await),
        [1, 2]
    );
    assert_eq!(
        ids(&app
            .get(Paths, "/path/search?startpoint=42%20O", &token)
            .await),
        [2]
    );
    assert_eq!(
        ids(&app
            .get(Paths, "/path/search?startpoint=42%20o", &token)
            .await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&app.get(Paths, "/path/search?startpoint=", &token).await),
        [1, 2, 3]
    );
    assert_eq!(
        ids(&app
            .get(Paths, "/path/search?startpoint=&limit=1&offset=2", &token)
            .await),
        [3]
    );
    let r = app.get(Paths, "/path/search", &token).await;
    r.assert_problem(400, "/errors/bad_request", "/path");
}
