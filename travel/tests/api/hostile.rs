//! Hostile input: SQL metacharacters and LIKE wildcards are data, oversized values are refused
//! with a clear 400 (or 413 for a body), and nothing is damaged.

use reqwest::Method;
use travel::Service::{Parties, Paths, Trips, Users};

use crate::both;
use crate::support::{Auth, Db, enc, spawn_app};

both!(sql_metacharacters_are_data, oversized_inputs_are_refused);

const NASTY: &[&str] = &[
    "'",
    "';DROP_TABLE_users;--",
    "\"",
    "\\",
    "%",
    "_",
    "%_%",
    "1'OR'1'='1",
    "$1",
    "?",
    ";",
    "é€😀",
];

async fn sql_metacharacters_are_data(db: Db) {
    let app = spawn_app(db).await;
    let (_, t) = app.user("alice").await;
    for (i, n) in NASTY.iter().enumerate() {
        // Registration: names need 3 bytes without spaces, so pad them.
        let name = format!("Abc{n}");
        let login = format!("login{i}{n}");
        let q = format!(
            "/user?first_name={}&last_name={}&email={}&title={}&login={}&password={}",
            enc(&name),
            enc(&name),
            enc(&format!("a@{n}")),
            enc(n),
            enc(&login),
            enc(n)
        );
        let r = app.call(Method::POST, Users, &q, Auth::None, None).await;
        assert_eq!(r.status, 200, "{n:?}: {}", r.text);
        let id: i64 = r.text.parse().unwrap();
        // Round trip: stored verbatim; the password works.
        let u = app.get(Users, &format!("/user?id={id}"), &t).await.json();
        assert_eq!(u["first_name"], name.as_str());
        assert_eq!(u["title"], *n);
        assert_eq!(app.token(&login, n).await.split('.').count(), 3);
        // Paths stored verbatim.
        let r = app
            .post(
                Paths,
                &format!(
                    "/path?startpoint={}&endpoint={}",
                    enc(&format!("S{n}")),
                    enc(n)
                ),
                &t,
            )
            .await;
        assert_eq!(r.status, 200, "{n:?}: {}", r.text);
        let p = app
            .get(Paths, &format!("/path?id={}", r.text), &t)
            .await
            .json();
        assert_eq!(p["startpoint"], format!("S{n}"));
        // Trips: free-text fields verbatim.
        let q = format!(
            "/trip?id={}&id_path=1&name={}&start_time={}&fin_time={}",
            100 + i,
            enc(n),
            enc(n),
            enc(n)
        );
        assert_eq!(app.post(Trips, &q, &t).await.status, 200, "{n:?}");
        assert_eq!(
            app.get(Trips, &format!("/trip?id={}", 100 + i), &t)
                .await
                .json()["name"],
            *n
        );
        // Integer parameters refuse them.
        for pq in [format!("/user?id={}", enc(n))] {
            app.get(Users, &pq, &t)
                .await
                .assert_problem(400, "/errors/bad_request", "/user");
        }
        app.get(Paths, &format!("/path?id={}", enc(n)), &t)
            .await
            .assert_problem(400, "/errors/bad_request", "/path");
        app.get(Trips, &format!("/trip?id={}", enc(n)), &t)
            .await
            .assert_problem(400, "/errors/bad_request", "/trip");
        app.post(Parties, &format!("/party/join?id_trip={}", enc(n)), &t)
            .await
            .assert_problem(400, "/errors/bad_request", "/party");
    }
    // NUL cannot be stored by PostgreSQL: refused the same way on both backends.
    let r = app
        .post(Paths, "/path?startpoint=a%00b&endpoint=c", &t)
        .await;
    r.assert_problem(400, "/errors/bad_request", "/path");
    assert_eq!(
        r.reasons(),
        vec![(
            "startpoint".into(),
            "must not contain NUL characters".into()
        )]
    );
    assert_eq!(
        app.call(Method::GET, Users, "/auth", Auth::Basic("a\0b", "p"), None)
            .await
            .status,
        401
    );
    // Wildcards in a search match only themselves.
    let count = |pq: String| {
        let app = &app;
        let t = &t;
        async move {
            app.get(Paths, &pq, t)
                .await
                .json()
                .as_array()
                .unwrap()
                .len()
        }
    };
    // "S%" and "S%_%" start with "S%"; only "S%_%" with "S%_".
    assert_eq!(
        count(format!("/path/search?startpoint={}", enc("S%"))).await,
        2
    );
    assert_eq!(
        count(format!("/path/search?startpoint={}", enc("S%_"))).await,
        1
    );
    assert_eq!(
        count(format!("/path/search?startpoint={}", enc("S_"))).await,
        1
    );
    assert_eq!(
        count(format!("/path/search?startpoint={}", enc("S\\"))).await,
        1
    );
    assert_eq!(
        count(format!("/path/search?startpoint={}", enc("S"))).await,
        NASTY.len()
    );
    let users = |pq: String| {
        let app = &app;
        let t = &t;
        async move {
            app.get(Users, &pq, t)
                .await
                .json()
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        users(format!(
            "/user/search?first_name={}&last_name=",
            enc("Abc%")
        ))
        .await,
        2
    );
    assert_eq!(
        users(format!(
            "/user/search?first_name={}&last_name={}",
            enc("Abc_"),
            enc("Abc_")
        ))
        .await,
        1
    );
    assert_eq!(
        users("/user/search?first_name=Abc&last_name=".to_owned()).await,
        NASTY.len()
    );
    // Everything is still there.
    assert_eq!(
        users("/user/search?first_name=&last_name=".to_owned()).await,
        NASTY.len() + 1
    );
}

async fn oversized_inputs_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let (_, t) = app.user("alice").await;
    let big = "x".repeat(5000);
    let huge = "y".repeat(100_000);
    // Registration: every field over its limit is named.
    let q = format!(
        "/user?first_name={big}&last_name={big}&email=a%40{big}&title={big}&login={big}&password={big}"
    );
    let r = app.call(Method::POST, Users, &q, Auth::None, None).await;
    r.assert_problem(400, "/errors/bad_request", "/user");
    let fields: Vec<String> = r.reasons().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "first_name",
            "last_name",
            "email",
            "title",
            "login",
            "password"
        ]
    );
    assert!(
        r.reasons()
            .iter()
            .all(|(_, why)| why.starts_with("must be at most"))
    );
    // Every text parameter of the other services.
    let cases = [
        (
            Method::GET,
            Users,
            format!("/user/search?first_name={big}&last_name=a"),
            "/user",
        ),
        (
            Method::GET,
            Paths,
            format!("/path/search?startpoint={big}"),
            "/path",
        ),
        (
            Method::POST,
            Paths,
            format!("/path?startpoint={big}&endpoint=b"),
            "/path",
        ),
        (
            Method::POST,
            Paths,
            format!("/path?startpoint=a&endpoint={big}"),
            "/path",
        ),
        (
            Method::POST,
            Trips,
            format!("/trip?id_path=1&name={big}&start_time=s&fin_time=f"),
            "/trip",
        ),
        (
            Method::POST,
            Trips,
            format!("/trip?id_path=1&name=n&start_time={big}&fin_time=f"),
            "/trip",
        ),
        (
            Method::POST,
            Trips,
            format!("/trip?id_path=1&name=n&start_time=s&fin_time={big}"),
            "/trip",
        ),
        (Method::GET, Trips, format!("/trip?id={big}"), "/trip"),
        (
            Method::GET,
            Trips,
            "/trip?id=99999999999999999999999".to_owned(),
            "/trip",
        ),
        (
            Method::POST,
            Trips,
            "/trip?id=9007199254740992&id_path=1&name=n&start_time=s&fin_time=f".to_owned(),
            "/trip",
        ),
        (
            Method::GET,
            Parties,
            format!("/party?id_trip={big}"),
            "/party",
        ),
        (
            Method::GET,
            Parties,
            format!("/parties?limit={big}"),
            "/party",
        ),
    ];
    for (m, s, pq, inst) in cases {
        let r = app.call(m.clone(), s, &pq, Auth::Bearer(&t), None).await;
        r.assert_problem(400, "/errors/bad_request", inst);
        assert!(
            !r.reasons().is_empty(),
            "{m} {}: {}",
            &pq[..40.min(pq.len())],
            r.text
        );
    }
    // A 60 KB value in the query (close to the largest URI a client library can send).
    let r = app
        .post(
            Paths,
            &format!("/path?startpoint={}&endpoint=b", &huge[..60_000]),
            &t,
        )
        .await;
    r.assert_problem(400, "/errors/bad_request", "/path");
    // A body over 16 KiB: 413 problem.
    let r = app
        .call(
            Method::POST,
            Paths,
            "/path",
            Auth::Bearer(&t),
            Some(&format!("startpoint=a&endpoint={huge}")),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.header("content-type"), "application/problem+json");
    // Basic credentials too long: 401, not a hash of 100 KB.
    let r = app
        .call(
            Method::GET,
            Users,
            "/auth",
            Auth::Basic("alice", &huge),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // Nothing was stored.
    assert_eq!(
        app.get(Paths, "/path/search?startpoint=", &t).await.text,
        "[]"
    );
}
