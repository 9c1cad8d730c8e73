//! HTTP plumbing shared by the four services: request ids and request logs, the problem
//! answer for paths and methods no handler takes, `/healthz`, and success bodies.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;

use crate::AppState;
use crate::problem::{Instance, Problem, detail};

/// Header carrying the request id, honoured when the client (or the gateway) sends one.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id of the current request, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Accept an incoming id only if it is short and printable, so logs cannot be forged with it.
fn usable_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

/// Middleware: give the request an id, log it (method and path only: the query string can
/// hold a password, and headers hold credentials), and echo the id in the response.
pub async fn trace(service: &'static str, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(usable_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        service,
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    async move {
        let started = Instant::now();
        let mut response = next.run(req).await;
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::info!(status, elapsed_ms, "request done");
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, v);
        }
        response
    }
    .instrument(span)
    .await
}

/// Middleware: turn the router's own bare answers (405 with `Allow`, 413 from a body limit)
/// into problem JSON, keeping their headers.
pub async fn problems(instance: Instance, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(
            status,
            "/errors/method_not_allowed",
            detail::REQUEST_NOT_FOUND,
            instance.as_str(),
        ),
        StatusCode::NOT_FOUND => Problem::not_found(detail::REQUEST_NOT_FOUND, instance),
        s if s.is_client_error() => Problem::new(s, "/errors/bad_request", "", instance.as_str()),
        _ => Problem::internal(instance),
    };
    let fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, body)
}

/// Fallback for paths no route matches: 404 problem.
pub fn not_found(instance: Instance) -> Response {
    Problem::not_found(detail::REQUEST_NOT_FOUND, instance).into_response()
}

/// `GET /healthz`: 200 when the database answers within a second, else 503.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => json(&serde_json::json!({"status": "ok"})),
        failed => {
            if let Ok(Err(e)) = failed {
                tracing::warn!(error = %e, "health check: database error");
            }
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "/errors/service_timeout",
                detail::DATABASE_DOWN,
                "/healthz",
            )
            .with_header(
                header::RETRY_AFTER,
                HeaderValue::from(state.retry_after_secs),
            )
            .into_response()
        }
    }
}

/// 200 with a JSON body.
pub fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => raw_json(body.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// 200 with a bare id as the body, like the original's create endpoints.
pub fn id(id: i64) -> Response {
    raw_json(id.to_string().into())
}

/// 200 with `body` labelled `application/json` (also used for the raw token of `/auth`).
pub fn raw_json(body: Body) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
