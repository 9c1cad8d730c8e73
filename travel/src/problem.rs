//! Problem details (RFC 9457): the one error vocabulary every handler answers with.
//!
//! The body keeps the original API's members (`type`, `title`, `status`, `detail`, `instance`)
//! and its `type` values, `detail` texts (typos included) and per-handler `instance` labels, so
//! existing clients keep matching on them. Differences: `status` is a number, `title` is the
//! status' reason phrase, the media type is `application/problem+json`, and validation failures
//! add an `errors` member listing every reason.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Original `detail` texts (kept byte for byte, typos included) and the ones we added.
pub mod detail {
    /// Users service: a required parameter is missing.
    pub const NEEDED_DATA_USER: &str = "Request doesn't have needed data";
    /// Paths, trips and parties: a required parameter is missing or invalid (typo is original).
    pub const NEEDED_DATA: &str = "Request doesn't have nedeed data...";
    /// Missing credential or wrong scheme, or wrong login/password on `/auth`.
    pub const WRONG_SCHEME: &str = "Wrong auth scheme...";
    /// The bearer token is not valid (signature, algorithm, expiry, claims).
    pub const FAILED_TOKEN: &str = "Failed token check...";
    /// `GET /user?id=` found nothing.
    pub const USER_NOT_FOUND: &str = "User not found";
    /// `GET /path?id=` found nothing.
    pub const PATH_NOT_FOUND: &str = "Path doesn't exists...";
    /// The trip does not exist.
    pub const TRIP_NOT_FOUND: &str = "Trip doesn't exists...";
    /// `GET /trip`: the caller is not a member of the trip's party.
    pub const NOT_IN_PARTY_OF_TRIP: &str = "User not in party of trip...";
    /// `GET /party`: the caller is not a member of the trip's party.
    pub const NOT_IN_PARTY: &str = "User not in party...";
    /// `POST /party/join` a second time.
    pub const PARTY_EXISTS: &str = "Party already exists...";
    /// Registration with a login that is taken (new).
    pub const USER_EXISTS: &str = "User already exists...";
    /// `POST /trip` with an id that is taken (new).
    pub const TRIP_EXISTS: &str = "Trip already exists...";
    /// `PUT /trip` by someone other than the owner (new).
    pub const NOT_OWNER: &str = "Only the owner can change the trip...";
    /// Registration parameters failed validation (new; the original answered plain text).
    pub const INVALID_USER: &str = "User data is not valid";
    /// An internal failure; details are in the service log.
    pub const CHECK_LOGS: &str = "Check logs for info...";
    /// No route for this path, or no branch for this method.
    pub const REQUEST_NOT_FOUND: &str = "Request not found";
    /// The parties service could not be reached, timed out or failed.
    pub const PARTIES_DOWN: &str = "Waiting for parties service up...";
    /// The parties service answered something we did not expect.
    pub const FAILED_PARTY: &str = "Failed to create new party...";
    /// The parties service answered a status that makes no sense for an authenticated caller.
    pub const PARTIES_UNEXPECTED: &str = "Unexpected answer from parties service...";
    /// The database could not be reached.
    pub const DATABASE_DOWN: &str = "Waiting for database up...";
}

/// The fixed per-handler `instance` labels of the original API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instance {
    /// Users service.
    User,
    /// Paths service.
    Path,
    /// Trips service.
    Trip,
    /// Parties service.
    Party,
}

impl Instance {
    /// The label as the original wrote it.
    pub fn as_str(self) -> &'static str {
        match self {
            Instance::User => "/user",
            Instance::Path => "/path",
            Instance::Trip => "/trip",
            Instance::Party => "/party",
        }
    }
}

/// One reason a parameter was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The parameter name.
    pub field: &'static str,
    /// Why it was rejected, in words a client can show.
    pub reason: Cow<'static, str>,
}

/// An error answer: status, problem type, detail, instance, optional field errors and headers.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: Cow<'static, str>,
    instance: Cow<'static, str>,
    errors: Vec<FieldError>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The wire shape; members in alphabetical order like the original's (std::map-backed) objects.
#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
    instance: &'a str,
    status: u16,
    title: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl Problem {
    /// A problem with an explicit status and type.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        detail: impl Into<Cow<'static, str>>,
        instance: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            instance: instance.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// 400 `/errors/bad_request`.
    pub fn bad_request(detail: &'static str, instance: Instance) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/errors/bad_request",
            detail,
            instance.as_str(),
        )
    }

    /// 401 `/errors/not_authorized` with the challenge the client should answer.
    pub fn unauthorized(detail: &'static str, instance: Instance, challenge: &'static str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "/errors/not_authorized",
            detail,
            instance.as_str(),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
    }

    /// 403 `/errors/forbidden`.
    pub fn forbidden(detail: &'static str, instance: Instance) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "/errors/forbidden",
            detail,
            instance.as_str(),
        )
    }

    /// 404 `/errors/not_found`.
    pub fn not_found(detail: &'static str, instance: Instance) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/errors/not_found",
            detail,
            instance.as_str(),
        )
    }

    /// 409 `/errors/already_exists`.
    pub fn conflict(detail: &'static str, instance: Instance) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "/errors/already_exists",
            detail,
            instance.as_str(),
        )
    }

    /// 500 `/errors/internal`: the cause is logged, never sent.
    pub fn internal(instance: Instance) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/errors/internal",
            detail::CHECK_LOGS,
            instance.as_str(),
        )
    }

    /// 503 `/errors/service_timeout` with `Retry-After`, for a dependency that is down.
    pub fn unavailable(detail: &'static str, instance: Instance, retry_after_secs: u32) -> Self {
        let retry = HeaderValue::from(retry_after_secs);
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/errors/service_timeout",
            detail,
            instance.as_str(),
        )
        .with_header(header::RETRY_AFTER, retry)
    }

    /// Attach the list of rejected fields (the `errors` extension member).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Attach a response header (challenge, `Retry-After`, `Allow`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` member.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The field errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    fn body(&self) -> Vec<u8> {
        let body = Body {
            detail: &self.detail,
            errors: &self.errors,
            instance: &self.instance,
            status: self.status.as_u16(),
            title: self.status.canonical_reason().unwrap_or("Error"),
            kind: self.kind,
        };
        // Serialising plain strings and numbers cannot fail; fall back to an empty object anyway.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_sorted_members_and_numeric_status() {
        let p = Problem::bad_request(detail::NEEDED_DATA, Instance::Path).with_errors(vec![
            FieldError {
                field: "id",
                reason: "is required".into(),
            },
        ]);
        let body = String::from_utf8(p.body()).unwrap();
        assert_eq!(
            body,
            r#"{"detail":"Request doesn't have nedeed data...","errors":[{"field":"id","reason":"is required"}],"instance":"/path","status":400,"title":"Bad Request","type":"/errors/bad_request"}"#
        );
    }

    #[test]
    fn unauthorized_carries_challenge_and_media_type() {
        let r =
            Problem::unauthorized(detail::FAILED_TOKEN, Instance::Trip, "Bearer").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
