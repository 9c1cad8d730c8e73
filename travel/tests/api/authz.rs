//! Authorization: every protected endpoint refuses missing, forged, `alg: none`, expired and
//! malformed tokens with 401 and a Bearer challenge; ownership and membership rules hold.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use travel::Service::{self, Parties, Paths, Trips, Users};
use travel::auth::Jwt;
use travel::auth::jwt::now_secs;

use crate::both;
use crate::support::{Auth, Db, SECRET, spawn_app};

both!(bad_tokens_are_refused_everywhere, ownership_and_membership);

const PROTECTED: &[(Method, Service, &str, &str)] = &[
    (Method::GET, Users, "/auth_check", "/user"),
    (Method::GET, Users, "/user?id=1", "/user"),
    (
        Method::GET,
        Users,
        "/user/search?first_name=&last_name=",
        "/user",
    ),
    (Method::GET, Paths, "/path?id=1", "/path"),
    (
        Method::POST,
        Paths,
        "/path?startpoint=a&endpoint=b",
        "/path",
    ),
    (Method::GET, Paths, "/path/search?startpoint=", "/path"),
    (Method::GET, Trips, "/trips", "/trip"),
    (Method::GET, Trips, "/trip?id=1", "/trip"),
    (
        Method::POST,
        Trips,
        "/trip?id=1&id_path=1&name=n&start_time=s&fin_time=f",
        "/trip",
    ),
    (
        Method::PUT,
        Trips,
        "/trip?id=1&id_path=1&name=n&start_time=s&fin_time=f",
        "/trip",
    ),
    (Method::GET, Parties, "/parties", "/party"),
    (Method::GET, Parties, "/party?id_trip=1", "/party"),
    (Method::POST, Parties, "/party?id_trip=1", "/party"),
    (Method::POST, Parties, "/party/join?id_trip=1", "/party"),
];

fn alg_none(id: i64) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let exp = now_secs() + 600;
    let p = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"exp":{exp},"iat":0,"id":{id},"login":"x","sub":"{id}"}}"#
    ));
    format!("{h}.{p}.")
}

/// The original's token: HS256 with its default key, no `exp`.
fn original_style(id: i64) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iat":1.5,"id":{id},"login":"x","sub":"login"}}"#
    ));
    let unsigned = format!("{h}.{p}");
    // Sign with HS256 via jsonwebtoken's own key type to stay honest about the format.
    let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789ABCDEF0123456789ABCDEF");
    let sig = jsonwebtoken::crypto::sign(unsigned.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .unwrap();
    format!("{unsigned}.{sig}")
}

async fn bad_tokens_are_refused_everywhere(db: Db) {
    let app = spawn_app(db).await;
    let (id, good) = app.user("alice").await;
    let ttl = Duration::from_secs(900);
    let other_key = Jwt::new(b"another-secret-another-secret-xx", ttl)
        .unwrap()
        .issue(id, "alice")
        .unwrap();
    let expired = Jwt::new(SECRET.as_bytes(), ttl)
        .unwrap()
        .issue_at(id, "alice", now_secs() - 3600)
        .unwrap();
    let none = alg_none(id);
    let original = original_style(id);
    let tampered = {
        // Same signature, payload changed to another user id.
        let parts: Vec<&str> = good.split('.').collect();
        let p = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"exp":{},"iat":0,"id":999,"login":"alice","sub":"999"}}"#,
            now_secs() + 600
        ));
        format!("{}.{p}.{}", parts[0], parts[2])
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw-of-the-user")
    );
    let other_scheme = format!("Token {good}");
    let cases: Vec<(&str, Auth)> = vec![
        ("missing", Auth::None),
        ("other key", Auth::Bearer(&other_key)),
        ("expired", Auth::Bearer(&expired)),
        ("alg none", Auth::Bearer(&none)),
        ("original default key, no exp", Auth::Bearer(&original)),
        ("tampered", Auth::Bearer(&tampered)),
        ("garbage", Auth::Bearer("not-a-token")),
        ("basic", Auth::Raw(&basic)),
        ("other scheme", Auth::Raw(&other_scheme)),
    ];
    for (method, service, pq, instance) in PROTECTED {
        for (what, auth) in &cases {
            let r = app.call(method.clone(), *service, pq, *auth, None).await;
            assert_eq!(r.status, 401, "{what} on {method} {pq}: {}", r.text);
            r.assert_problem(401, "/errors/not_authorized", instance);
            assert_eq!(r.header("www-authenticate"), "Bearer", "{what} on {pq}");
        }
        // The good token, lower-case scheme, gets past authentication.
        let r = app
            .call(
                method.clone(),
                *service,
                pq,
                Auth::Raw(&format!("bearer {good}")),
                None,
            )
            .await;
        assert_ne!(r.status, 401, "good token on {method} {pq}: {}", r.text);
    }
    // Registration needs no credential at all (the original demanded some header).
    let r = app
        .call(
            Method::POST,
            Users,
            "/user?first_name=Bob&last_name=Bobson&email=b%40b&title=t&login=bob&password=p",
            Auth::None,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

async fn ownership_and_membership(db: Db) {
    let app = spawn_app(db).await;
    let (_, owner) = app.user("owner").await;
    let (_, member) = app.user("member").await;
    let (_, stranger) = app.user("stranger").await;
    let q = "/trip?id=5&id_path=1&name=n&start_time=s&fin_time=f";
    assert_eq!(app.post(Trips, q, &owner).await.status, 200);
    assert_eq!(
        app.post(Parties, "/party/join?id_trip=5", &member)
            .await
            .status,
        200
    );
    // Read: members yes, strangers no.
    assert_eq!(app.get(Trips, "/trip?id=5", &member).await.status, 200);
    app.get(Trips, "/trip?id=5", &stranger)
        .await
        .assert_problem(403, "/errors/forbidden", "/trip");
    // Write: owner only, members and strangers 403.
    for t in [&member, &stranger] {
        app.put(
            Trips,
            "/trip?id=5&id_path=2&name=x&start_time=s&fin_time=f",
            t,
        )
        .await
        .assert_problem(403, "/errors/forbidden", "/trip");
    }
    assert_eq!(
        app.put(
            Trips,
            "/trip?id=5&id_path=2&name=x&start_time=s&fin_time=f",
            &owner
        )
        .await
        .status,
        200
    );
    // Re-creating a taken id does not grant access (the original allowed duplicates).
    app.post(Trips, q, &stranger)
        .await
        .assert_problem(409, "/errors/already_exists", "/trip");
    app.get(Trips, "/trip?id=5", &stranger)
        .await
        .assert_problem(403, "/errors/forbidden", "/trip");
    // Lists are per caller.
    assert_eq!(app.get(Trips, "/trips", &stranger).await.text, "[]");
    assert_eq!(app.get(Parties, "/parties", &stranger).await.text, "[]");
}
