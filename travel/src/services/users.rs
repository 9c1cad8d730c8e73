//! Users service: registration (`POST /user`), login (`GET /auth`, Basic -> JWT), token check
//! (`GET /auth_check`), reads (`GET /user`, `GET /user/search`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::AppState;
use crate::auth::{self, BASIC_CHALLENGE};
use crate::db::{StoreError, users};
use crate::http;
use crate::params::{self, Check, Params, limits};
use crate::problem::{Instance, Problem, detail};

use super::{Routes, store_problem};

/// The original's `instance` label on this service's problems.
const INSTANCE: Instance = Instance::User;

/// Routes of the users service: each path with its handlers.
pub fn routes() -> Routes {
    vec![
        ("/auth", get(login)),
        ("/auth_check", get(auth_check)),
        ("/user/search", get(search)),
        ("/user", get(read).post(register)),
    ]
}

/// The original's name rule: at least 3 bytes, no space or TAB; one reason at most.
pub fn check_name(c: &mut Check, field: &'static str, value: &str) {
    if value.len() < 3 {
        c.reject(field, "Name must be at leas 3 signs");
    } else if value.contains([' ', '\t']) {
        c.reject(field, "Name can't contain spaces");
    }
}

/// The original's email rules: must contain `@`, no space or TAB; each reported.
pub fn check_email(c: &mut Check, value: &str) {
    if !value.contains('@') {
        c.reject("email", "Email must contain @");
    }
    if value.contains([' ', '\t']) {
        c.reject("email", "EMail can't contain spaces");
    }
}

/// Validated registration fields (password still clear).
struct Registration<'a> {
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    title: &'a str,
    login: &'a str,
    password: &'a str,
}

/// Check every registration field, reporting all reasons in one 400.
fn validate(p: &Params) -> Result<Registration<'_>, Problem> {
    let mut c = Check::new();
    // Names and email get the original's rules; the length range only caps them (an empty
    // value is reported by the original's "at least 3" / "must contain @" reasons).
    let first_name = c.text(p, "first_name", 0..=*limits::TEXT.end());
    let last_name = c.text(p, "last_name", 0..=*limits::TEXT.end());
    let email = c.text(p, "email", 0..=*limits::TEXT.end());
    let title = c.text(p, "title", limits::TEXT);
    let login = c.text(p, "login", limits::TEXT);
    let password = c.text(p, "password", limits::PASSWORD);
    if let Some(v) = first_name {
        check_name(&mut c, "first_name", v);
    }
    if let Some(v) = last_name {
        check_name(&mut c, "last_name", v);
    }
    if let Some(v) = email {
        check_email(&mut c, v);
    }
    match (first_name, last_name, email, title, login, password) {
        (
            Some(first_name),
            Some(last_name),
            Some(email),
            Some(title),
            Some(login),
            Some(password),
        ) if c.is_ok() => Ok(Registration {
            first_name,
            last_name,
            email,
            title,
            login,
            password,
        }),
        _ => {
            let detail = if c.any_missing() {
                detail::NEEDED_DATA_USER
            } else {
                detail::INVALID_USER
            };
            Err(Problem::bad_request(detail, INSTANCE).with_errors(c.into_errors()))
        }
    }
}

/// `POST /user`: register; 200 with the new id, 400 listing every reason, 409 if the login is taken.
async fn register(State(state): State<AppState>, p: Params) -> Result<Response, Problem> {
    let r = validate(&p)?;
    let db = store_problem(INSTANCE, state.retry_after_secs);
    // Cheap check first, so a taken login does not cost a hash; the unique index decides races.
    if users::login_exists(&state.store, r.login)
        .await
        .map_err(&db)?
    {
        return Err(Problem::conflict(detail::USER_EXISTS, INSTANCE));
    }
    let hash = state
        .passwords
        .hash(r.password.to_owned())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            Problem::internal(INSTANCE)
        })?;
    let new = users::NewUser {
        first_name: r.first_name,
        last_name: r.last_name,
        email: r.email,
        title: r.title,
        login: r.login,
        password_hash: &hash,
    };
    match users::insert(&state.store, &new).await {
        Ok(id) => {
            tracing::info!(user_id = id, "user registered");
            Ok(http::id(id))
        }
        Err(StoreError::Conflict) => Err(Problem::conflict(detail::USER_EXISTS, INSTANCE)),
        Err(e) => Err(db(e)),
    }
}

fn wrong_credentials() -> Problem {
    Problem::unauthorized(detail::WRONG_SCHEME, INSTANCE, BASIC_CHALLENGE)
}

/// `GET /auth`: exchange Basic credentials for a token (the raw token is the body).
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let Some((login, password)) = auth::basic(&headers) else {
        return Err(wrong_credentials());
    };
    // Oversized credentials (or a NUL, which no stored login has) cannot belong to anyone:
    // refuse before hashing them.
    if login.len() > *limits::TEXT.end()
        || password.len() > *limits::PASSWORD.end()
        || login.contains('\0')
    {
        return Err(wrong_credentials());
    }
    let db = store_problem(INSTANCE, state.retry_after_secs);
    let found = users::credentials(&state.store, &login)
        .await
        .map_err(&db)?;
    let (id, hash) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    // An unknown login is verified against a dummy hash: same answer, same cost.
    let ok = state.passwords.verify(password, hash).await.map_err(|e| {
        tracing::error!(error = %e, "password verification failed");
        Problem::internal(INSTANCE)
    })?;
    let Some(id) = id.filter(|_| ok) else {
        tracing::info!("login refused");
        return Err(wrong_credentials());
    };
    let token = state.jwt.issue(id, &login).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        Problem::internal(INSTANCE)
    })?;
    let mut response = http::raw_json(token.into());
    // A credential must not be stored by caches on the way.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Serialize)]
struct Checked {
    id: i64,
    login: String,
}

/// `GET /auth_check`: 200 `{"id","login"}` for a valid Bearer token.
async fn auth_check(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let who = auth::bearer(&headers, &state.jwt, INSTANCE)?;
    Ok(http::json(&Checked {
        id: who.id,
        login: who.login,
    }))
}

/// `GET /user?id=`: one user (password masked).
async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let id = params::one_int(&p, "id", detail::NEEDED_DATA_USER, INSTANCE)?;
    match users::by_id(&state.store, id)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?
    {
        Some(u) => Ok(http::json(&u)),
        None => Err(Problem::not_found(detail::USER_NOT_FOUND, INSTANCE)),
    }
}

/// `GET /user/search?first_name=&last_name=`: case-sensitive prefix search, bounded.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let mut c = Check::new();
    let first = c.text(&p, "first_name", limits::PREFIX);
    let last = c.text(&p, "last_name", limits::PREFIX);
    let page = c.page(&p);
    c.finish(detail::NEEDED_DATA_USER, INSTANCE)?;
    let (Some(first), Some(last)) = (first, last) else {
        return Err(Problem::bad_request(detail::NEEDED_DATA_USER, INSTANCE));
    };
    let found = users::search(&state.store, first, last, page)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    Ok(http::json(&found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(query: &str) -> Vec<(String, String)> {
        match validate(&Params::parse(Some(query), b"")) {
            Ok(_) => vec![],
            Err(p) => p
                .errors()
                .iter()
                .map(|e| (e.field.to_owned(), e.reason.to_string()))
                .collect(),
        }
    }

    const OK: &str =
        "first_name=Domingo&last_name=Marks&email=a@b&title=gold&login=purple&password=x";

    #[test]
    fn valid_registration_passes() {
        assert!(validate(&Params::parse(Some(OK), b"")).is_ok());
    }

    #[test]
    fn original_reasons_kept_and_all_listed() {
        let r =
            reasons("first_name=Jo&last_name=Mac%20Neil&email=a%20b&title=t&login=l&password=p");
        assert_eq!(
            r,
            vec![
                ("first_name".into(), "Name must be at leas 3 signs".into()),
                ("last_name".into(), "Name can't contain spaces".into()),
                ("email".into(), "Email must contain @".into()),
                ("email".into(), "EMail can't contain spaces".into()),
            ]
        );
    }

    #[test]
    fn tab_counts_as_space_and_one_name_reason_at_most() {
        let r = reasons("first_name=A%09&last_name=Abc%09d&email=a@b&title=t&login=l&password=p");
        assert_eq!(
            r,
            vec![
                ("first_name".into(), "Name must be at leas 3 signs".into()),
                ("last_name".into(), "Name can't contain spaces".into()),
            ]
        );
    }

    #[test]
    fn missing_and_oversized_reported_together() {
        let long = "a".repeat(257);
        let r = reasons(&format!("first_name={long}&email=a@b&title=t&login=l"));
        assert_eq!(
            r,
            vec![
                ("first_name".into(), "must be at most 256 bytes".into()),
                ("last_name".into(), "is required".into()),
                ("password".into(), "is required".into()),
            ]
        );
        let p = validate(&Params::parse(Some("first_name=abc"), b""))
            .err()
            .unwrap();
        assert_eq!(p.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn password_limit_is_1024_bytes() {
        let q = OK.replace("password=x", &format!("password={}", "p".repeat(1025)));
        assert_eq!(
            reasons(&q),
            vec![("password".into(), "must be at most 1024 bytes".into())]
        );
    }
}
