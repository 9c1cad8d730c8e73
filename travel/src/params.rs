//! Request parameters: where they come from (query string, urlencoded body) and how they are
//! checked (presence, byte length, integer syntax), collecting every reason before answering.
//!
//! Like the original (Poco `HTMLForm`), parameters are read from the query string and, for POST
//! and PUT, also from the body parsed as `application/x-www-form-urlencoded` whatever its
//! `Content-Type`; the first occurrence of a name wins (query before body). Unlike the
//! original, numbers must parse fully (`12abc` is rejected, not read as 12).

use std::borrow::Cow;
use std::ops::RangeInclusive;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};

use crate::problem::{FieldError, Instance, Problem};

/// Largest accepted request body; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Byte-length limits of each kind of text parameter.
pub mod limits {
    use std::ops::RangeInclusive;

    /// Names, login, email, title (the original's column size).
    pub const TEXT: RangeInclusive<usize> = 1..=256;
    /// Passwords (hashed only after this check).
    pub const PASSWORD: RangeInclusive<usize> = 1..=1024;
    /// Trip start and finish times (free strings, as in the original).
    pub const TIME: RangeInclusive<usize> = 1..=64;
    /// Search prefixes: empty matches everything (bounded by `limit`).
    pub const PREFIX: RangeInclusive<usize> = 0..=256;
    /// Default number of rows a list answers.
    pub const DEFAULT_LIMIT: i64 = 100;
    /// Largest `limit` a client may ask for.
    pub const MAX_LIMIT: i64 = 1000;
    /// Largest client-chosen trip id: 2^53 - 1, exact in every JSON client.
    pub const MAX_TRIP_ID: i64 = (1 << 53) - 1;
}

/// The parameters of one request, in arrival order (query first, then body).
#[derive(Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Params {
    // Names only: values include passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    /// Parse a query string and an optional urlencoded body.
    pub fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let query_pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
        for (k, v) in query_pairs.chain(form_urlencoded::parse(body)) {
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Self { pairs }
    }

    /// The first value given for `name`, if any ("present" even when empty, like the original).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Problem;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let path = req.uri().path().to_owned();
        let read_body = matches!(*req.method(), Method::POST | Method::PUT);
        let body = if read_body {
            axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
                .await
                .map_err(|_| too_large(path))?
        } else {
            Default::default()
        };
        Ok(Params::parse(query.as_deref(), &body))
    }
}

/// 413 for a body over [`MAX_BODY_BYTES`] (or one that could not be read).
pub fn too_large(instance: String) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "/errors/too_large",
        format!("Request body is larger than {MAX_BODY_BYTES} bytes"),
        instance,
    )
}

/// Collects the reasons parameters are rejected, so a 400 lists all of them at once.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<FieldError>,
    missing: bool,
}

impl Check {
    /// An empty check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a reason for `field`.
    pub fn reject(&mut self, field: &'static str, reason: impl Into<Cow<'static, str>>) {
        self.errors.push(FieldError {
            field,
            reason: reason.into(),
        });
    }

    /// A required text parameter whose byte length must lie in `len`.
    pub fn text<'p>(
        &mut self,
        params: &'p Params,
        field: &'static str,
        len: RangeInclusive<usize>,
    ) -> Option<&'p str> {
        match params.get(field) {
            None => {
                self.missing = true;
                self.reject(field, "is required");
                None
            }
            Some(v) => self.length(field, v, len).then_some(v),
        }
    }

    /// Check the byte length of a value (and that it has no NUL byte, which PostgreSQL text
    /// cannot hold); false, with a reason recorded, when it fails.
    pub fn length(&mut self, field: &'static str, value: &str, len: RangeInclusive<usize>) -> bool {
        let n = value.len();
        if value.contains('\0') {
            self.reject(field, "must not contain NUL characters");
            false
        } else if n < *len.start() {
            self.reject(field, "must not be empty");
            false
        } else if n > *len.end() {
            self.reject(field, format!("must be at most {} bytes", len.end()));
            false
        } else {
            true
        }
    }

    /// A required integer parameter.
    pub fn int(&mut self, params: &Params, field: &'static str) -> Option<i64> {
        match params.get(field) {
            None => {
                self.missing = true;
                self.reject(field, "is required");
                None
            }
            Some(v) => self.parse_int(field, v),
        }
    }

    /// An optional integer parameter within `range`, `default` when absent.
    pub fn int_or(
        &mut self,
        params: &Params,
        field: &'static str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        let Some(v) = params.get(field) else {
            return default;
        };
        match self.parse_int(field, v) {
            Some(n) if range.contains(&n) => n,
            Some(_) => {
                self.reject(
                    field,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
                default
            }
            None => default,
        }
    }

    fn parse_int(&mut self, field: &'static str, value: &str) -> Option<i64> {
        match parse_int(value) {
            Some(n) => Some(n),
            None => {
                self.reject(field, "must be an integer");
                None
            }
        }
    }

    /// `limit` and `offset` of a list endpoint.
    pub fn page(&mut self, params: &Params) -> Page {
        Page {
            limit: self.int_or(
                params,
                "limit",
                limits::DEFAULT_LIMIT,
                1..=limits::MAX_LIMIT,
            ),
            offset: self.int_or(params, "offset", 0, 0..=i64::MAX),
        }
    }

    /// True when a required parameter was absent.
    pub fn any_missing(&self) -> bool {
        self.missing
    }

    /// True when nothing was rejected.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The reasons so far.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The reasons, consumed.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// `Ok` when nothing was rejected, else a 400 with `detail` and every reason.
    pub fn finish(self, detail: &'static str, instance: Instance) -> Result<(), Problem> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Problem::bad_request(detail, instance).with_errors(self.errors))
        }
    }
}

/// The one required integer parameter of a request (`?id=`): its value, or a 400 with
/// `detail` and the reason.
pub fn one_int(
    params: &Params,
    field: &'static str,
    detail: &'static str,
    instance: Instance,
) -> Result<i64, Problem> {
    let mut check = Check::new();
    let value = check.int(params, field);
    check.finish(detail, instance)?;
    value.ok_or_else(|| Problem::bad_request(detail, instance))
}

/// A page of a list: at most `limit` rows after skipping `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Rows at most.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: limits::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// A decimal integer, the whole string (optional sign, no spaces); `None` otherwise.
pub fn parse_int(value: &str) -> Option<i64> {
    // `i64::from_str` already rejects trailing garbage ("12abc") and empty strings; it accepts a
    // leading '+', which is harmless.
    value.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_then_body_first_occurrence_wins() {
        let p = Params::parse(Some("a=1&b=x+y%21&a=2"), b"a=3&c=%2Fz&c=4");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y!"));
        assert_eq!(p.get("c"), Some("/z"));
        assert_eq!(p.get("d"), None);
    }

    #[test]
    fn empty_value_is_present() {
        let p = Params::parse(Some("first_name=&x"), b"");
        assert_eq!(p.get("first_name"), Some(""));
        assert_eq!(p.get("x"), Some(""));
    }

    #[test]
    fn integers_must_parse_fully() {
        assert_eq!(parse_int("12"), Some(12));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("12abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int(" 1"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
    }

    #[test]
    fn check_collects_every_reason() {
        let p = Params::parse(Some("name=&id=x&title=ok"), b"");
        let mut c = Check::new();
        assert_eq!(c.text(&p, "name", limits::TEXT), None);
        assert_eq!(c.int(&p, "id"), None);
        assert_eq!(c.text(&p, "title", limits::TEXT), Some("ok"));
        assert_eq!(c.text(&p, "missing", limits::TEXT), None);
        assert!(c.any_missing());
        let reasons: Vec<_> = c
            .errors()
            .iter()
            .map(|e| (e.field, e.reason.to_string()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("name", "must not be empty".to_owned()),
                ("id", "must be an integer".to_owned()),
                ("missing", "is required".to_owned()),
            ]
        );
    }

    #[test]
    fn nul_is_refused() {
        let p = Params::parse(Some("t=a%00b"), b"");
        let mut c = Check::new();
        assert_eq!(c.text(&p, "t", limits::TEXT), None);
        assert_eq!(c.errors()[0].reason, "must not contain NUL characters");
    }

    #[test]
    fn length_is_in_bytes() {
        let long = "é".repeat(129); // 258 bytes, 129 chars
        let p = Params::parse(None, format!("t={long}").as_bytes());
        let mut c = Check::new();
        assert_eq!(c.text(&p, "t", limits::TEXT), None);
        assert_eq!(c.errors()[0].reason, "must be at most 256 bytes");
    }

    #[test]
    fn page_defaults_and_bounds() {
        let mut c = Check::new();
        assert_eq!(c.page(&Params::default()), Page::default());
        let p = Params::parse(Some("limit=0&offset=-1"), b"");
        let mut c = Check::new();
        c.page(&p);
        assert_eq!(c.errors().len(), 2);
        let p = Params::parse(Some("limit=5&offset=10"), b"");
        let mut c = Check::new();
        assert_eq!(
            c.page(&p),
            Page {
                limit: 5,
                offset: 10
            }
        );
        assert!(c.is_ok());
    }
}
