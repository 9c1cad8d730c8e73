//! The seed's 1000 users through `POST /user`: the 6 two-letter first names get 400 with the
//! reason, taken logins get 409, every other record is created and can log in.

use std::collections::HashSet;

use reqwest::Method;
use serde::Deserialize;
use travel::Service::Users;

use crate::both;
use crate::support::{Auth, Db, enc, spawn_services};

both!(register_all_seed_users);

#[derive(Deserialize)]
struct SeedUser {
    login: String,
    password: String,
    first_name: String,
    last_name: String,
    email: String,
    title: String,
}

fn seed_users() -> Vec<SeedUser> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/seed/users_init.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

async fn register_all_seed_users(db: Db) {
    let users = seed_users();
    assert_eq!(users.len(), 1000);
    let app = spawn_services(db, &[Users]).await;
    let mut taken = HashSet::new();
    let mut created = Vec::new();
    let mut invalid = Vec::new();
    let mut conflicts = 0;
    for (i, u) in users.iter().enumerate() {
        let q = format!(
            "/user?first_name={}&last_name={}&email={}&title={}&login={}&password={}",
            enc(&u.first_name),
            enc(&u.last_name),
            enc(&u.email),
            enc(&u.title),
            enc(&u.login),
            enc(&u.password)
        );
        // Send the original's Basic header too, as init_db.py did; it is ignored.
        let r = app
            .call(
                Method::POST,
                Users,
                &q,
                Auth::Basic(&u.login, &u.password),
                None,
            )
            .await;
        if u.first_name.len() < 3 {
            let v = r.assert_problem(400, "/errors/bad_request", "/user");
            assert_eq!(
                r.reasons(),
                vec![(
                    "first_name".to_owned(),
                    "Name must be at leas 3 signs".to_owned()
                )],
                "{v}"
            );
            invalid.push(i);
        } else if !taken.insert(u.login.clone()) {
            r.assert_problem(409, "/errors/already_exists", "/user");
            conflicts += 1;
        } else {
            assert_eq!(r.status, 200, "record {i}: {}", r.text);
            created.push((r.text.parse::<i64>().unwrap(), i));
        }
    }
    assert_eq!(invalid, [132, 145, 344, 574, 720, 921]);
    assert_eq!((created.len(), conflicts), (31, 963));

    for (id, i) in &created {
        let u = &users[*i];
        let r = app
            .call(
                Method::GET,
                Users,
                "/auth",
                Auth::Basic(&u.login, &u.password),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}: {}", u.login, r.text);
        let who = app.state().jwt.verify(&r.text).unwrap();
        assert_eq!((who.id, who.login.as_str()), (*id, u.login.as_str()));
        // A wrong password (another seed user's) is 401.
        let other = &users[(i + 1) % users.len()].password;
        let r = app
            .call(
                Method::GET,
                Users,
                "/auth",
                Auth::Basic(&u.login, other),
                None,
            )
            .await;
        r.assert_problem(401, "/errors/not_authorized", "/user");
    }
}
