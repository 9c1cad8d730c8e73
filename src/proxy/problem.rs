//! Responses the gateway writes itself: RFC 9457 problem JSON with the headers that go with
//! each kind (`Retry-After`, `Allow`). Every early answer of every hook goes through here.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use pingora::http::ResponseHeader;
use pingora_proxy::Session;

use super::request_id::{self, RequestId};
use crate::ratelimit::{Verdict, exchange::LimitReason};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A problem the gateway answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after: Option<Duration>,
    pub allow: Vec<Method>,
    pub www_authenticate: Option<&'static str>,
    /// More headers for this kind of answer (the `RateLimit` fields of a 429).
    pub headers: Vec<(&'static str, String)>,
}

impl Problem {
    fn new(status: u16, kind: &'static str, title: &'static str, detail: String) -> Self {
        Problem {
            status,
            kind,
            title,
            detail,
            retry_after: None,
            allow: Vec::new(),
            www_authenticate: None,
            headers: Vec::new(),
        }
    }

    /// The challenge offered with every 401: both schemes the gateway accepts.
    pub const CHALLENGE: &'static str = r#"Basic realm="gateway", Bearer"#;

    pub fn unauthorized(detail: &str) -> Self {
        Problem {
            www_authenticate: Some(Self::CHALLENGE),
            ..Problem::new(
                401,
                "/errors/not_authorized",
                "Unauthorized",
                detail.to_owned(),
            )
        }
    }

    /// A 503 the client should retry after `retry_after`.
    fn unavailable(detail: String, retry_after: Duration) -> Self {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(
                503,
                "/errors/service_unavailable",
                "Service Unavailable",
                detail,
            )
        }
    }

    pub fn auth_unavailable(upstream: &str, retry_after: Duration) -> Self {
        Problem::unavailable(
            format!(
                "credentials cannot be checked now: the {upstream} service is unavailable; retry later"
            ),
            retry_after,
        )
    }

    pub fn not_found() -> Self {
        Problem::new(
            404,
            "/errors/not_found",
            "Not Found",
            "no route matches this path".into(),
        )
    }

    pub fn bad_path(reason: &str) -> Self {
        Problem::new(400, "/errors/bad_request", "Bad Request", reason.to_owned())
    }

    pub fn method_not_allowed(allow: Vec<Method>) -> Self {
        let list = allow
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Problem {
            allow,
            ..Problem::new(
                405,
                "/errors/method_not_allowed",
                "Method Not Allowed",
                format!("this path accepts {list}"),
            )
        }
    }

    /// No backend of `upstream` is admitted by its breaker.
    pub fn breaker_open(upstream: &str, retry_after: Duration) -> Self {
        Problem::unavailable(
            format!(
                "the {upstream} service is failing and its circuit breaker is open; retry later"
            ),
            retry_after,
        )
    }

    /// The request body is larger than the route accepts; nothing was sent upstream.
    pub fn payload_too_large(max: u64) -> Self {
        Problem::new(
            413,
            "/errors/payload_too_large",
            "Payload Too Large",
            format!("the request body is larger than this route accepts ({max} bytes)"),
        )
    }

    /// The client did not send its request body in time.
    pub fn request_timeout() -> Self {
        Problem::new(
            408,
            "/errors/request_timeout",
            "Request Timeout",
            "the request body did not arrive in time".to_owned(),
        )
    }

    /// The request body's framing is broken (a bad chunk).
    pub fn bad_body() -> Self {
        Problem::new(
            400,
            "/errors/bad_request",
            "Bad Request",
            "the request body is malformed".to_owned(),
        )
    }

    /// Every backend of `upstream` is at its concurrency limit and the queue is full or the
    /// wait timed out: the service is busy, not broken.
    pub fn overloaded(upstream: &str, retry_after: Duration) -> Self {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(
                503,
                "/errors/overloaded",
                "Service Unavailable",
                format!("the {upstream} service is at its concurrency limit; retry later"),
            )
        }
    }

    /// A rate-limit policy refused the request.
    pub fn rate_limited(verdict: &Verdict) -> Self {
        Problem {
            retry_after: Some(verdict.retry_after),
            headers: rate_limit_headers(verdict),
            ..Problem::new(
                429,
                "/errors/rate_limited",
                "Too Many Requests",
                format!(
                    "rate limit {:?} exceeded; retry after the time in Retry-After",
                    &*verdict.policy
                ),
            )
        }
    }

    /// An exchange limit refused a credential check before any exchange.
    pub fn too_many_attempts(reason: LimitReason, retry_after: Duration) -> Self {
        let detail = match reason {
            LimitReason::InFlight => {
                "too many credential checks in progress from this address; retry later"
            }
            LimitReason::ClientFailures => {
                "too many refused credentials from this address; retry later"
            }
            LimitReason::LoginFailures => {
                "too many refused credentials for this login; retry later"
            }
        };
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(
                429,
                "/errors/too_many_attempts",
                "Too Many Requests",
                detail.to_owned(),
            )
        }
    }

    pub fn bad_gateway(upstream: &str) -> Self {
        Problem::new(
            502,
            "/errors/bad_gateway",
            "Bad Gateway",
            format!("the {upstream} service could not be reached or answered incompletely"),
        )
    }

    /// The backend's TLS certificate was refused. Why (expired, another name, ...) goes to
    /// the log, not to the client.
    pub fn bad_gateway_tls(upstream: &str, verification: bool) -> Self {
        let detail = if verification {
            format!("the {upstream} service's TLS certificate failed verification")
        } else {
            format!("the TLS handshake with the {upstream} service failed")
        };
        Problem::new(502, "/errors/bad_gateway", "Bad Gateway", detail)
    }

    pub fn gateway_timeout(upstream: &str) -> Self {
        Problem::new(
            504,
            "/errors/gateway_timeout",
            "Gateway Timeout",
            format!("the {upstream} service did not answer in time"),
        )
    }

    pub fn from_status(status: u16) -> Self {
        let title = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let kind = match status {
            400 => "/errors/bad_request",
            413 => "/errors/payload_too_large",
            500 => "/errors/internal",
            _ => "/errors/gateway",
        };
        Problem::new(status, kind, title, title.to_ascii_lowercase())
    }

    /// The RFC 9457 body, `instance` being the request's path: the bytes `serde_json`
    /// writes for these fields in this order, written straight into one buffer sized for
    /// them (it grows only if a string needs escapes), so an answer's body is one
    /// allocation.
    pub fn body(&self, instance: &str) -> Bytes {
        let mut digits = [0; 20];
        let status = crate::headers::decimal(u64::from(self.status), &mut digits);
        let strings = [self.kind, self.title, &self.detail, instance];
        // The four strings with their quotes, the status, the names and punctuation (50).
        let size = strings.iter().map(|s| s.len() + 2).sum::<usize>() + status.len() + 50;
        let mut body = Vec::with_capacity(size);
        let field = |body: &mut Vec<u8>, name: &[u8], value: &str| {
            body.extend_from_slice(name);
            if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                // Nothing to escape (every fixed text, nearly every path): copied as is.
                body.push(b'"');
                body.extend_from_slice(value.as_bytes());
                body.push(b'"');
            } else {
                // Writing to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *body, value);
            }
        };
        field(&mut body, b"{\"type\":", self.kind);
        field(&mut body, b",\"title\":", self.title);
        body.extend_from_slice(b",\"status\":");
        body.extend_from_slice(status);
        field(&mut body, b",\"detail\":", &self.detail);
        field(&mut body, b",\"instance\":", instance);
        body.push(b'}');
        Bytes::from(body)
    }

    /// Retry-After in whole seconds, rounded up, never 0 (0 would invite a hot loop).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| {
            u64::try_from(d.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1)
        })
    }

    /// The answer's header. Built without Pingora's header-case map and with typed names
    /// and static values where they are fixed, so each header is one insertion with no
    /// parsing or copying; the bytes on the wire are the same (standard names titled,
    /// ours lower-case).
    pub fn response_header(
        &self,
        body_len: usize,
        request_id: &RequestId,
    ) -> pingora::Result<ResponseHeader> {
        let mut response = uncased_response(self.status, 8)?;
        let headers = &mut response.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if !request_id.is_empty() {
            headers.insert(request_id::header_name(), request_id.header_value());
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        for (name, value) in &self.headers {
            headers.insert(*name, header_value(value)?);
        }
        if !self.allow.is_empty() {
            let list: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
            headers.insert(header::ALLOW, header_value(&list.join(", "))?);
        }
        Ok(ResponseHeader::from(response))
    }

    /// Writes the whole response. The downstream connection stays reusable: Pingora drains
    /// an unread request body before reusing it.
    pub async fn write(
        &self,
        session: &mut Session,
        request_id: &RequestId,
    ) -> pingora::Result<()> {
        let request = session.req_header();
        let body = self.body(request.uri.path());
        let head = request.method == Method::HEAD;
        let header = self.response_header(body.len(), request_id)?;
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session
            .write_response_body((!head).then_some(body), true)
            .await?;
        Ok(())
    }
}

/// The parts of a response with `status` and room for `headers` headers, to be filled
/// through `http`'s own `HeaderMap` and then made a [`ResponseHeader`]: one without
/// Pingora's header-case map, so a header costs one insertion (no name parsing, no case
/// copy). On the wire, standard names come out titled and the gateway's own lower-case,
/// exactly as `ResponseHeader::insert_header` writes them.
pub fn uncased_response(status: u16, headers: usize) -> pingora::Result<http::response::Parts> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(status).map_err(|_| {
        pingora::Error::explain(pingora::ErrorType::InternalError, "invalid status")
    })?;
    parts.headers.reserve(headers);
    Ok(parts)
}

fn header_value(value: &str) -> pingora::Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "invalid header value",
        )
    })
}

/// The `RateLimit-Policy` and `RateLimit` fields describing `verdict`.
pub fn rate_limit_headers(verdict: &Verdict) -> Vec<(&'static str, String)> {
    vec![
        (crate::headers::RATELIMIT_POLICY, verdict.policy_header()),
        (crate::headers::RATELIMIT, verdict.limit_header()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as `serde_json` writes it, which `Problem::body` must match byte for byte.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        title: &'a str,
        status: u16,
        detail: &'a str,
        instance: &'a str,
    }

    #[test]
    fn body_is_what_serde_json_writes() {
        let problems = [
            Problem::breaker_open("paths", Duration::from_secs(3)),
            Problem::not_found(),
            Problem::from_status(504),
            Problem::bad_path("a \"quoted\" \\ path\twith\u{1}controls and ünïcode"),
        ];
        for problem in problems {
            for instance in ["/path/42", "/a\"b\\c\u{7f}\u{0}/é", ""] {
                let expected = serde_json::to_vec(&Body {
                    kind: problem.kind,
                    title: problem.title,
                    status: problem.status,
                    detail: &problem.detail,
                    instance,
                })
                .unwrap();
                let body = problem.body(instance);
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    #[test]
    fn header_has_every_field_with_fixed_values_shared() {
        let problem = Problem::breaker_open("paths", Duration::from_millis(2500));
        let id = request_id::generate();
        let header = problem.response_header(123, &id).unwrap();
        let get = |name: &str| header.headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(header.status.as_u16(), 503);
        assert_eq!(get("content-type"), PROBLEM_CONTENT_TYPE);
        assert_eq!(get("content-length"), "123");
        assert_eq!(get("cache-control"), "no-store");
        assert_eq!(get("retry-after"), "3");
        assert_eq!(get("x-request-id"), id.as_str());
        // On the wire, byte for byte what Pingora's case-keeping `insert_header` writes.
        let mut cased = ResponseHeader::build(503, Some(8)).unwrap();
        cased
            .insert_header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
            .unwrap();
        cased.insert_header(header::CONTENT_LENGTH, "123").unwrap();
        cased
            .insert_header(header::CACHE_CONTROL, "no-store")
            .unwrap();
        cased
            .insert_header(crate::headers::REQUEST_ID, id.as_str())
            .unwrap();
        cased.insert_header(header::RETRY_AFTER, "3").unwrap();
        let wire = |h: &ResponseHeader| {
            let mut wire = Vec::new();
            h.header_to_h1_wire(&mut wire);
            String::from_utf8(wire).unwrap()
        };
        assert_eq!(wire(&header), wire(&cased));
    }

    #[test]
    fn body_is_rfc9457_shaped() {
        let problem = Problem::breaker_open("users", Duration::from_millis(4001));
        let body: serde_json::Value = serde_json::from_slice(&problem.body("/user")).unwrap();
        assert_eq!(body["type"], "/errors/service_unavailable");
        assert_eq!(body["status"], 503);
        assert_eq!(body["instance"], "/user");
        assert!(body["detail"].as_str().unwrap().contains("users"));
        assert_eq!(problem.retry_after_secs(), Some(5));
    }

    #[test]
    fn retry_after_is_rounded_up_and_never_zero() {
        let at = |ms| Problem::breaker_open("u", Duration::from_millis(ms)).retry_after_secs();
        assert_eq!(at(0), Some(1));
        assert_eq!(at(1000), Some(1));
        assert_eq!(at(1001), Some(2));
        assert_eq!(at(4990), Some(5));
    }
}
