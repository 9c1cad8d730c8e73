//! Parties service: memberships of users in trips. `GET /parties` (mine), `POST /party/join`
//! (join once; 404 if the trip does not exist, 409 the second time), `GET /party?id_trip=`
//! (my membership, 404 if none), `POST /party?id_trip=` (idempotent create, used by trips).
//!
//! Trip existence is read from the `trips` table directly: both services share one database,
//! which saves a second HTTP hop (and a dependency cycle trips <-> parties).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;
use crate::auth;
use crate::db::parties::{self, Party};
use crate::db::{StoreError, trips};
use crate::http;
use crate::params::{self, Check, Params};
use crate::problem::{Instance, Problem, detail};

use super::{Routes, store_problem};

/// The original's `instance` label on this service's problems.
const INSTANCE: Instance = Instance::Party;

/// Routes of the parties service: each path with its handlers.
pub fn routes() -> Routes {
    vec![
        ("/parties", get(list)),
        ("/party/join", post(join)),
        ("/party", get(read).post(create)),
    ]
}

fn id_trip(p: &Params) -> Result<i64, Problem> {
    params::one_int(p, "id_trip", detail::NEEDED_DATA, INSTANCE)
}

async fn require_trip(state: &AppState, trip: i64) -> Result<(), Problem> {
    let exists = trips::exists(&state.store, trip)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    if exists {
        Ok(())
    } else {
        Err(Problem::not_found(detail::TRIP_NOT_FOUND, INSTANCE))
    }
}

/// `GET /parties`: the caller's memberships, bounded by `limit`/`offset`.
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let who = auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let mut c = Check::new();
    let page = c.page(&p);
    c.finish(detail::NEEDED_DATA, INSTANCE)?;
    let mine = parties::of_user(&state.store, who.id, page)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    Ok(http::json(&mine))
}

/// `POST /party/join?id_trip=`: join an existing trip; 200 with the trip id.
async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let who = auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let trip = id_trip(&p)?;
    require_trip(&state, trip).await?;
    match parties::join(&state.store, who.id, trip).await {
        Ok(()) => Ok(http::id(trip)),
        Err(StoreError::Conflict) => Err(Problem::conflict(detail::PARTY_EXISTS, INSTANCE)),
        Err(e) => Err(store_problem(INSTANCE, state.retry_after_secs)(e)),
    }
}

/// `GET /party?id_trip=`: the caller's membership of the trip, 404 if none.
async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let who = auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let trip = id_trip(&p)?;
    let member = parties::is_member(&state.store, who.id, trip)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    if member {
        Ok(http::json(&Party {
            id_participant: who.id,
            id_trip: trip,
        }))
    } else {
        Err(Problem::not_found(detail::NOT_IN_PARTY, INSTANCE))
    }
}

/// `POST /party?id_trip=`: make the caller a member (200 whether new or not); 404 if the trip
/// does not exist.
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let who = auth::bearer(&headers, &state.jwt, INSTANCE)?;
    let trip = id_trip(&p)?;
    require_trip(&state, trip).await?;
    parties::ensure(&state.store, who.id, trip)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    Ok(http::id(trip))
}
