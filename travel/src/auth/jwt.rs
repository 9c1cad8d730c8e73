//! JWT issue and verification: HS256 only, with `exp`, keyed by `JWT_SECRET`.
//!
//! The users service issues tokens on `GET /auth`; every service verifies them locally with the
//! same secret (the original called `/auth_check` on each request and had a hard-coded key and
//! no expiry).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest accepted secret: 256 bits, the HS256 output size (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp`; the services and the gateway share a host or a NTP-synced LAN.
const LEEWAY_SECS: u64 = 5;

/// Why a secret or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The configured secret is too short.
    #[error("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (got {0})")]
    WeakSecret(usize),
    /// Signing failed (should not happen with HMAC).
    #[error("cannot sign token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// The token is malformed, forged, of another algorithm, expired, or lacks claims.
    #[error("invalid token: {0}")]
    Invalid(jsonwebtoken::errors::Error),
}

/// The claims we issue; fields sorted like the original's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// User id.
    pub id: i64,
    /// User login.
    pub login: String,
    /// User id as a string (the original wrote the literal "login" here).
    pub sub: String,
}

/// The authenticated caller, as read from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub id: i64,
    /// User login.
    pub login: String,
}

/// Keys and rules for issuing and verifying tokens.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    // Never print the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Keys from `secret`, tokens valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, JwtError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtError::WeakSecret(secret.len()));
        }
        // `Validation::new` pins the algorithm list to HS256 only, so `alg: none` or RS/ES
        // tokens are refused before any signature work, and requires `exp`.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        })
    }

    /// Token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for user `id`/`login`, issued now.
    pub fn issue(&self, id: i64, login: &str) -> Result<String, JwtError> {
        self.issue_at(id, login, now_secs())
    }

    /// A token issued at `iat` (seconds since the epoch).
    pub fn issue_at(&self, id: i64, login: &str, iat: u64) -> Result<String, JwtError> {
        let claims = Claims {
            exp: iat.saturating_add(self.ttl.as_secs()),
            iat,
            id,
            login: login.to_owned(),
            sub: id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(JwtError::Sign)
    }

    /// Verify signature, algorithm and expiry; return the caller.
    pub fn verify(&self, token: &str) -> Result<Identity, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(JwtError::Invalid)?;
        Ok(Identity {
            id: data.claims.id,
            login: data.claims.login,
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn jwt() -> Jwt {
        Jwt::new(SECRET, Duration::from_secs(900)).unwrap()
    }

    #[test]
    fn round_trip_with_claims() {
        let j = jwt();
        let t = j.issue(7, "black").unwrap();
        assert_eq!(
            j.verify(&t).unwrap(),
            Identity {
                id: 7,
                login: "black".into()
            }
        );
        let payload = t.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["sub"], "7");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            900
        );
    }

    #[test]
    fn weak_secret_refused() {
        assert!(matches!(
            Jwt::new(b"short", Duration::from_secs(1)),
            Err(JwtError::WeakSecret(5))
        ));
    }

    #[test]
    fn other_key_refused() {
        let other = Jwt::new(
            b"ffffffffffffffffffffffffffffffff",
            Duration::from_secs(900),
        )
        .unwrap();
        let t = other.issue(1, "x").unwrap();
        assert!(jwt().verify(&t).is_err());
    }

    #[test]
    fn expired_refused() {
        let j = jwt();
        let t = j.issue_at(1, "x", now_secs() - 3600).unwrap();
        assert!(j.verify(&t).is_err());
    }

    #[test]
    fn alg_none_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = now_secs() + 600;
        let body = URL_SAFE_NO_PAD
            .encode(format!(r#"{{"exp":{exp},"iat":0,"id":1,"login":"x","sub":"1"}}"#).as_bytes());
        assert!(jwt().verify(&format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn missing_exp_refused() {
        // A token like the original's: no exp.
        #[derive(Serialize)]
        struct Old {
            iat: u64,
            id: i64,
            login: String,
            sub: String,
        }
        let old = Old {
            iat: 1,
            id: 1,
            login: "x".into(),
            sub: "login".into(),
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &old,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(jwt().verify(&t).is_err());
    }
}
