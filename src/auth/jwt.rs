//! Local JWT verification: signature with the shared secret, the algorithm pinned to the
//! configured list (so `alg: none` or an algorithm swap never verifies), and `exp` and
//! `nbf` checked against an injected clock with the configured leeway.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token itself, forwarded upstream as `Authorization: Bearer`.
    pub token: Arc<str>,
    pub user_id: i64,
    pub login: Arc<str>,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct Claims {
    id: i64,
    login: String,
    exp: u64,
    /// Not before (RFC 7519 §4.1.5); optional, as in the spec.
    nbf: Option<u64>,
}

/// Why a token was refused. Kept coarse on purpose: the client learns only "invalid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway: Duration,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(secret: &[u8], algorithms: &[Algorithm], leeway: Duration) -> Self {
        let mut validation =
            Validation::new(algorithms.first().copied().unwrap_or(Algorithm::HS256));
        validation.algorithms = algorithms.to_vec();
        validation.set_required_spec_claims(&["exp"]);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        JwtVerifier {
            key: DecodingKey::from_secret(secret),
            validation,
            leeway,
        }
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.kind_name()))?;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let leeway = self.leeway.as_secs();
        if data.claims.exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        // The same leeway both ways: clocks that differ by less than it never refuse.
        if data
            .claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(Identity {
            token: Arc::from(token),
            user_id: data.claims.id,
            login: Arc::from(data.claims.login),
            expires_at: data.claims.exp,
        })
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        // The Debug of the kind names the check that failed, never the token's content.
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn token(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(SECRET, &[Algorithm::HS256], Duration::from_secs(5))
    }

    #[test]
    fn accepts_a_valid_token() {
        let t = token(
            Algorithm::HS256,
            SECRET,
            json!({"sub":"7","id":7,"login":"mint green","iat":NOW,"exp":NOW+60}),
        );
        let identity = verifier().verify(&t, at(NOW)).unwrap();
        assert_eq!(identity.user_id, 7);
        assert_eq!(&*identity.login, "mint green");
        assert_eq!(identity.expires_at, NOW + 60);
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let t = token(
            Algorithm::HS256,
            SECRET,
            json!({"id":7,"login":"x","exp":NOW}),
        );
        assert!(verifier().verify(&t, at(NOW + 4)).is_ok());
        assert_eq!(verifier().verify(&t, at(NOW + 5)), Err(TokenError::Expired));
    }

    #[test]
    fn not_before_honours_the_leeway() {
        let t = token(
            Algorithm::HS256,
            SECRET,
            json!({"id":7,"login":"x","nbf":NOW + 10,"exp":NOW + 60}),
        );
        assert_eq!(verifier().verify(&t, at(NOW)), Err(TokenError::NotYetValid));
        assert_eq!(
            verifier().verify(&t, at(NOW + 4)),
            Err(TokenError::NotYetValid)
        );
        // From nbf − leeway (5 s) on, it verifies.
        assert!(verifier().verify(&t, at(NOW + 5)).is_ok());
        assert!(verifier().verify(&t, at(NOW + 10)).is_ok());
        // A past nbf, or none, is no obstacle.
        let past = token(
            Algorithm::HS256,
            SECRET,
            json!({"id":7,"login":"x","nbf":NOW - 100,"exp":NOW + 60}),
        );
        assert!(verifier().verify(&past, at(NOW)).is_ok());
        // An nbf that is no number does not verify.
        let bad = token(
            Algorithm::HS256,
            SECRET,
            json!({"id":7,"login":"x","nbf":"soon","exp":NOW + 60}),
        );
        assert!(matches!(
            verifier().verify(&bad, at(NOW)),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_forgeries() {
        let claims = json!({"id":7,"login":"x","exp":NOW+60});
        let other_key = token(
            Algorithm::HS256,
            b"another-key-another-key-another-k",
            claims.clone(),
        );
        assert!(matches!(
            verifier().verify(&other_key, at(NOW)),
            Err(TokenError::Invalid(_))
        ));

        let other_alg = token(Algorithm::HS512, SECRET, claims.clone());
        assert!(matches!(
            verifier().verify(&other_alg, at(NOW)),
            Err(TokenError::Invalid(_))
        ));

        // alg: none, unsigned.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        assert!(matches!(
            verifier().verify(&none, at(NOW)),
            Err(TokenError::Invalid(_))
        ));

        // An altered payload under the original signature.
        let good = token(Algorithm::HS256, SECRET, claims);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = b64.encode(json!({"id":1,"login":"admin","exp":NOW+60}).to_string());
        parts[1] = &forged_payload;
        assert!(matches!(
            verifier().verify(&parts.join("."), at(NOW)),
            Err(TokenError::Invalid(_))
        ));

        let no_exp = token(Algorithm::HS256, SECRET, json!({"id":7,"login":"x"}));
        assert!(matches!(
            verifier().verify(&no_exp, at(NOW)),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verifier().verify("not a token", at(NOW)),
            Err(TokenError::Invalid(_))
        ));
    }
}
