//! Users service: registration, login, token check, reads and search.

use reqwest::Method;
use travel::Service::Users;

use crate::both;
use crate::support::{Auth, Db, spawn_services};

both!(registration, login_and_auth_check, reads_and_search);

const VALID: &str = "first_name=Domingo&last_name=Marks&email=d%40m.org&title=gold";

async fn registration(db: Db) {
    let app = spawn_services(db, &[Users]).await;
    // Query-string registration: 200, bare id, JSON media type (like the original).
    let r = app
        .call(
            Method::POST,
            Users,
            &format!("/user?{VALID}&login=purple&password=pw1"),
            Auth::None,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.text, "1");
    // Urlencoded body, parsed whatever the Content-Type.
    let resp = app
        .http
        .post(app.url(Users, "/user"))
        .header("content-type", "text/plain")
        .body(format!("{VALID}&login=tan&password=pw2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "2");
    // Taken login: 409.
    let r = app
        .call(
            Method::POST,
            Users,
            &format!("/user?{VALID}&login=purple&password=other"),
            Auth::None,
            None,
        )
        .await;
    let v = r.assert_problem(409, "/errors/already_exists", "/user");
    assert_eq!(v["detail"], "User already exists...");
    // Validation: 400 problem listing every reason, original texts.
    let r = app
        .call(
            Method::POST,
            Users,
            "/user?first_name=Jo&last_name=Mac%20Neil&email=nope&title=t&login=x&password=p",
            Auth::None,
            None,
        )
        .await;
    r.assert_problem(400, "/errors/bad_request", "/user");
    assert_eq!(
        r.reasons(),
        vec![
            ("first_name".into(), "Name must be at leas 3 signs".into()),
            ("last_name".into(), "Name can't contain spaces".into()),
            ("email".into(), "Email must contain @".into()),
        ]
    );
    // Missing parameters: the original detail, each missing field listed.
    let r = app
        .call(
            Method::POST,
            Users,
            "/user?first_name=Domingo",
            Auth::None,
            None,
        )
        .await;
    let v = r.assert_problem(400, "/errors/bad_request", "/user");
    assert_eq!(v["detail"], "Request doesn't have needed data");
    let missing: Vec<String> = r.reasons().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        missing,
        ["last_name", "email", "title", "login", "password"]
    );
    // Nothing was stored by the refused attempts.
    let r = app
        .call(
            Method::POST,
            Users,
            &format!("/user?{VALID}&login=new&password=p"),
            Auth::None,
            None,
        )
        .await;
    assert_eq!(r.text, "3");
}

async fn login_and_auth_check(db: Db) {
    let app = spawn_services(db, &[Users]).await;
    let id = app.register("mint green", "s3cret:with:colons").await;
    let r = app
        .call(
            Method::GET,
            Users,
            "/auth",
            Auth::Basic("mint green", "s3cret:with:colons"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("cache-control"), "no-store");
    let token = r.text.clone();
    assert_eq!(token.split('.').count(), 3, "raw JWT, not quoted: {token}");
    let who = app.state().jwt.verify(&token).unwrap();
    assert_eq!((who.id, who.login.as_str()), (id, "mint green"));

    let r = app
        .call(
            Method::GET,
            Users,
            "/auth_check",
            Auth::Bearer(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"id": id, "login": "mint green"})
    );
    // Scheme is case-insensitive.
    let r = app
        .call(
            Method::GET,
            Users,
            "/auth_check",
            Auth::Raw(&format!("bearer {token}")),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let basic = format!(
        "bAsIc {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "mint green:s3cret:with:colons"
        )
    );
    let r = app
        .call(Method::GET, Users, "/auth", Auth::Raw(&basic), None)
        .await;
    assert_eq!(r.status, 200);

    // Wrong password and unknown login: the same 401 with a Basic challenge.
    let wrong = app
        .call(
            Method::GET,
            Users,
            "/auth",
            Auth::Basic("mint green", "nope"),
            None,
        )
        .await;
    let unknown = app
        .call(
            Method::GET,
            Users,
            "/auth",
            Auth::Basic("nobody", "nope"),
            None,
        )
        .await;
    for r in [&wrong, &unknown] {
        let v = r.assert_problem(401, "/errors/not_authorized", "/user");
        assert_eq!(v["detail"], "Wrong auth scheme...");
        assert_eq!(r.header("www-authenticate"), "Basic realm=\"travel\"");
    }
    assert_eq!(wrong.text, unknown.text);
    // No credential, a Bearer, garbage base64, an oversized password: 401 too.
    for auth in [
        Auth::None,
        Auth::Bearer(&token),
        Auth::Raw("Basic !!!notbase64"),
        Auth::Basic("mint green", &"x".repeat(2000)),
    ] {
        let r = app.call(Method::GET, Users, "/auth", auth, None).await;
        r.assert_problem(401, "/errors/not_authorized", "/user");
    }
    // /auth_check without a valid Bearer: 401 with a Bearer challenge.
    let r = app
        .call(Method::GET, Users, "/auth_check", Auth::None, None)
        .await;
    let v = r.assert_problem(401, "/errors/not_authorized", "/user");
    assert_eq!(v["detail"], "Wrong auth scheme...");
    assert_eq!(r.header("www-authenticate"), "Bearer");
    let r = app
        .call(
            Method::GET,
            Users,
            "/auth_check",
            Auth::Bearer("a.b.c"),
            None,
        )
        .await;
    let v = r.assert_problem(401, "/errors/not_authorized", "/user");
    assert_eq!(v["detail"], "Failed token check...");
}

async fn reads_and_search(db: Db) {
    let app = spawn_services(db, &[Users]).await;
    let (me, token) = app.user("black").await;
    for (first, last, login) in [
        ("Domingo", "Marks", "d1"),
        ("Dominic", "Mayert", "d2"),
        ("domingo", "Marks", "d3"),
        ("Minnie", "Marks", "m1"),
    ] {
        let q = format!(
            "/user?first_name={first}&last_name={last}&email=a%40b&title=t&login={login}&password=p"
        );
        assert_eq!(
            app.call(Method::POST, Users, &q, Auth::None, None)
                .await
                .status,
            200
        );
    }
    // One user, exact shape: sorted keys, masked password.
    let r = app.get(Users, &format!("/user?id={me}"), &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text,
        format!(
            r#"{{"email":"black@example.org","first_name":"Alice","id":{me},"last_name":"Smith","login":"black","password":"*******","title":"dr"}}"#
        )
    );
    let r = app.get(Users, "/user?id=999", &token).await;
    let v = r.assert_problem(404, "/errors/not_found", "/user");
    assert_eq!(v["detail"], "User not found");
    let r = app.get(Users, "/user", &token).await;
    let v = r.assert_problem(400, "/errors/bad_request", "/user");
    assert_eq!(v["detail"], "Request doesn't have needed data");
    // Numbers must parse fully.
    let r = app.get(Users, "/user?id=1abc", &token).await;
    r.assert_problem(400, "/errors/bad_request", "/user");
    assert_eq!(
        r.reasons(),
        vec![("id".into(), "must be an integer".into())]
    );

    // Prefix search: case-sensitive, both prefixes, ordered by id, bounded.
    let logins = |r: &crate::support::Reply| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["login"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = app
        .get(Users, "/user/search?first_name=Domin&last_name=Ma", &token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(logins(&r), ["d1", "d2"]);
    let r = app
        .get(
            Users,
            "/user/search?first_name=Domin&last_name=Mark",
            &token,
        )
        .await;
    assert_eq!(logins(&r), ["d1"]);
    assert_eq!(r.json()[0]["password"], "*******");
    let r = app
        .get(Users, "/user/search?first_name=&last_name=", &token)
        .await;
    assert_eq!(logins(&r).len(), 5);
    let r = app
        .get(
            Users,
            "/user/search?first_name=&last_name=&limit=2&offset=1",
            &token,
        )
        .await;
    assert_eq!(logins(&r), ["d1", "d2"]);
    let r = app
        .get(Users, "/user/search?first_name=Zed&last_name=", &token)
        .await;
    assert_eq!(r.text, "[]");
    let r = app.get(Users, "/user/search?first_name=D", &token).await;
    r.assert_problem(400, "/errors/bad_request", "/user");
    let r = app
        .get(
            Users,
            "/user/search?first_name=&last_name=&limit=5000",
            &token,
        )
        .await;
    r.assert_problem(400, "/errors/bad_request", "/user");
}
