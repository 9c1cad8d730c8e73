//! Trips service: `POST /trip` (id optional, creator becomes member via parties), `PUT /trip`
//! (owner only), `GET /trip?id=` (members only, asked of parties), `GET /trips` (the caller's
//! trips, from the parties list). Calls to parties forward the caller's token; when parties is
//! unreachable those requests answer 503 with `Retry-After`.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::AppState;
use crate::auth;
use crate::db::StoreError;
use crate::db::trips::{self, TripData};
use crate::http::{self, RequestId};
use crate::params::{self, Check, Params, limits};
use crate::parties_client::PartiesError;
use crate::problem::{Instance, Problem, detail};

use super::{Routes, store_problem};

/// The original's `instance` label on this service's problems.
const INSTANCE: Instance = Instance::Trip;

/// Routes of the trips service: each path with its handlers.
pub fn routes() -> Routes {
    vec![
        ("/trips", get(list)),
        ("/trip", get(read).post(create).put(replace)),
    ]
}

fn bad() -> Problem {
    Problem::bad_request(detail::NEEDED_DATA, INSTANCE)
}

/// The answer when a call to parties failed: 503 (retry later) when parties is down, 502 when
/// it answered something that makes no sense. Never 403/500, so a gateway can tell.
fn parties_problem(state: &AppState, unexpected: &'static str) -> impl Fn(PartiesError) -> Problem {
    let retry = state.retry_after_secs;
    move |e| {
        tracing::warn!(error = %e, "call to parties failed");
        match e {
            PartiesError::Unavailable(_) => {
                Problem::unavailable(detail::PARTIES_DOWN, INSTANCE, retry)
            }
            PartiesError::Unexpected(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "/errors/bad_gateway",
                unexpected,
                INSTANCE.as_str(),
            ),
        }
    }
}

/// Authenticated caller and their raw token (forwarded to parties).
fn caller(state: &AppState, headers: &HeaderMap) -> Result<(i64, String), Problem> {
    let who = auth::bearer(headers, &state.jwt, INSTANCE)?;
    let token = auth::bearer_token(headers).unwrap_or_default().to_owned();
    Ok((who.id, token))
}

/// The five trip fields of POST and PUT, every reason collected.
fn trip_fields(p: &Params, id_required: bool) -> Result<(Option<i64>, TripData<'_>), Problem> {
    let mut c = Check::new();
    let id = match p.get("id") {
        None if !id_required => None,
        _ => c.int(p, "id"),
    };
    if let Some(id) = id {
        if !(1..=limits::MAX_TRIP_ID).contains(&id) {
            c.reject(
                "id",
                format!("must be between 1 and {}", limits::MAX_TRIP_ID),
            );
        }
    }
    let id_path = c.int(p, "id_path");
    let name = c.text(p, "name", limits::TEXT);
    let start_time = c.text(p, "start_time", limits::TIME);
    let fin_time = c.text(p, "fin_time", limits::TIME);
    c.finish(detail::NEEDED_DATA, INSTANCE)?;
    match (id_path, name, start_time, fin_time) {
        (Some(id_path), Some(name), Some(start_time), Some(fin_time)) => Ok((
            id,
            TripData {
                id_path,
                name,
                start_time,
                fin_time,
            },
        )),
        _ => Err(bad()),
    }
}

/// `POST /trip`: create (id chosen by the client or assigned), make the creator a member;
/// 200 with the id, 409 if the id is taken.
async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let (owner, token) = caller(&state, &headers)?;
    let (id, data) = trip_fields(&p, false)?;
    let db = store_problem(INSTANCE, state.retry_after_secs);
    let id = match trips::insert(&state.store, id, owner, data).await {
        Ok(id) => id,
        Err(StoreError::Conflict) => return Err(Problem::conflict(detail::TRIP_EXISTS, INSTANCE)),
        Err(e) => return Err(db(e)),
    };
    if let Err(e) = state.parties.create(&token, id, Some(&rid.0)).await {
        // Without the owner's membership the trip would be unreadable even by its owner;
        // undo it so the client can simply retry (the original left it behind).
        if let Err(undo) = trips::delete(&state.store, id).await {
            tracing::error!(error = %undo, trip = id, "cannot undo trip creation");
        }
        return Err(parties_problem(&state, detail::FAILED_PARTY)(e));
    }
    tracing::info!(trip = id, "trip created");
    Ok(http::id(id))
}

/// `PUT /trip`: replace the fields of a trip; owner only (403), 404 if it does not exist.
async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let (who, _) = caller(&state, &headers)?;
    let (id, data) = trip_fields(&p, true)?;
    let id = id.ok_or_else(bad)?;
    let db = store_problem(INSTANCE, state.retry_after_secs);
    let trip = trips::by_id(&state.store, id)
        .await
        .map_err(&db)?
        .ok_or_else(|| Problem::not_found(detail::TRIP_NOT_FOUND, INSTANCE))?;
    if trip.id_owner != who {
        return Err(Problem::forbidden(detail::NOT_OWNER, INSTANCE));
    }
    trips::update(&state.store, id, data).await.map_err(&db)?;
    Ok(http::id(id))
}

/// `GET /trip?id=`: one trip, for members of its party only (403 otherwise).
async fn read(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let (_, token) = caller(&state, &headers)?;
    let id = params::one_int(&p, "id", detail::NEEDED_DATA, INSTANCE)?;
    let trip = trips::by_id(&state.store, id)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?
        .ok_or_else(|| Problem::not_found(detail::TRIP_NOT_FOUND, INSTANCE))?;
    let member = state
        .parties
        .is_member(&token, id, Some(&rid.0))
        .await
        .map_err(parties_problem(&state, detail::PARTIES_UNEXPECTED))?;
    if !member {
        return Err(Problem::forbidden(detail::NOT_IN_PARTY_OF_TRIP, INSTANCE));
    }
    Ok(http::json(&trip))
}

/// `GET /trips`: the caller's trips in the order parties lists the memberships; memberships
/// whose trip is gone are skipped (the original crashed on them).
async fn list(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, Problem> {
    let (_, token) = caller(&state, &headers)?;
    let mut c = Check::new();
    let page = c.page(&p);
    c.finish(detail::NEEDED_DATA, INSTANCE)?;
    let memberships = state
        .parties
        .list(&token, page, Some(&rid.0))
        .await
        .map_err(parties_problem(&state, detail::PARTIES_UNEXPECTED))?;
    let ids: Vec<i64> = memberships.iter().map(|m| m.id_trip).collect();
    let found = trips::by_ids(&state.store, &ids)
        .await
        .map_err(store_problem(INSTANCE, state.retry_after_secs))?;
    if found.len() < ids.len() {
        tracing::debug!(
            dangling = ids.len() - found.len(),
            "memberships without a trip skipped"
        );
    }
    Ok(http::json(&found))
}
