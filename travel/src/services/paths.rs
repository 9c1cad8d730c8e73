//! Paths service: `POST /path`, `GET /path?id=`, `GET /path/search?startpoint=`. Paths are
//! global: any authenticated user may create and read them.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use crate::AppState;
use crate::auth;
use crate::db::paths;
use crate::http;
use crate::params::{self, Check, Params, limits};
use crate::problem::{Instance, Problem, detail};

use super::{Routes, store_problem};

/// The original's `instance` label on this service's problems.
const INSTANCE: Instance = Instance::Path;

/// Routes of the paths service: each path with its handlers.
pub fn routes() -> Routes {
    vec![
        ("/path/search", get(search)),
        ("/path", get(read).post(create)),
    ]
}

fn bad() -> Problem {
    Problem::bad_request(detail::NEEDED_DATA, INSTANCE)
}

/// `GET /path/search?startpoint=`: case-sensitive prefix search, bounded.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let mut c = Check::new();
    let prefix = c.text(&p, "startpoint", limits::PREFIX);
    let page = c.page(&p);
    c.finish(detail::NEEDED_DATA, INSTANCE)?;
    let prefix = prefix.ok_or_else(bad)?;
    let found = paths::search(&state.store, prefix, page)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    Ok(http::json(&found))
}

/// `GET /path?id=`: one path.
async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let id = params::one_int(&p, "id", detail::NEEDED_DATA, INSTANCE)?;
    match paths::by_id(&state.store, id)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?
    {
        Some(path) => Ok(http::json(&path)),
        None => Err(Problem::not_found(detail::PATH_NOT_FOUND, INSTANCE)),
    }
}

/// `POST /path?startpoint=&endpoint=`: 200 with the new id.
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let mut c = Check::new();
    let start = c.text(&p, "startpoint", limits::TEXT);
    let end = c.text(&p, "endpoint", limits::TEXT);
    c.finish(detail::NEEDED_DATA, INSTANCE)?;
    let (Some(start), Some(end)) = (start, end) else {
        return Err(bad());
    };
    let id = paths::insert(&state.store, start, end)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    Ok(http::id(id))
}
