//! The trips service's HTTP client for the parties service, as in the original: the caller's
//! Bearer token is forwarded, `POST /party` on creation, `GET /party` for the membership
//! check, `GET /parties` for listing. Unlike the original every call has a timeout, and an
//! unreachable or failing parties service is reported as such (503), never as 403/500.

use std::time::Duration;

use axum::http::StatusCode;

use crate::db::parties::Party;
use crate::params::Page;

/// Why a call to parties did not give an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum PartiesError {
    /// Connection refused, timeout, or a 5xx: parties is down or overloaded.
    #[error("parties unavailable: {0}")]
    Unavailable(String),
    /// An answer that makes no sense for a caller trips already authenticated.
    #[error("parties answered {0}")]
    Unexpected(StatusCode),
}

impl From<reqwest::Error> for PartiesError {
    fn from(e: reqwest::Error) -> Self {
        // A body that does not decode is the parties service misbehaving: treat like a 5xx.
        PartiesError::Unavailable(e.to_string())
    }
}

/// Client of the parties service; cheap to clone.
#[derive(Clone, Debug)]
pub struct PartiesClient {
    http: reqwest::Client,
    base: String,
}

fn classify(status: StatusCode) -> PartiesError {
    if status.is_server_error() {
        PartiesError::Unavailable(format!("status {status}"))
    } else {
        PartiesError::Unexpected(status)
    }
}

impl PartiesClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8084`) with a per-call `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Service-to-service traffic must not follow HTTP(S)_PROXY from the environment.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        request_id: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        req
    }

    /// Make the caller a member of `trip` (idempotent on the parties side).
    pub async fn create(
        &self,
        token: &str,
        trip: i64,
        request_id: Option<&str>,
    ) -> Result<(), PartiesError> {
        let path = format!("/party?id_trip={trip}");
        let resp = self
            .request(reqwest::Method::POST, &path, token, request_id)
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            s => Err(classify(s)),
        }
    }

    /// Whether the caller is a member of `trip`.
    pub async fn is_member(
        &self,
        token: &str,
        trip: i64,
        request_id: Option<&str>,
    ) -> Result<bool, PartiesError> {
        let path = format!("/party?id_trip={trip}");
        let resp = self
            .request(reqwest::Method::GET, &path, token, request_id)
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(classify(s)),
        }
    }

    /// The caller's memberships.
    pub async fn list(
        &self,
        token: &str,
        page: Page,
        request_id: Option<&str>,
    ) -> Result<Vec<Party>, PartiesError> {
        let path = format!("/parties?limit={}&offset={}", page.limit, page.offset);
        let resp = self
            .request(reqwest::Method::GET, &path, token, request_id)
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(resp.json().await?),
            s => Err(classify(s)),
        }
    }
}
