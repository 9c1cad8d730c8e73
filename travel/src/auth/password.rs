//! Password hashing: Argon2id PHC strings, computed on the blocking pool, bounded in parallel.
//!
//! Parameters are OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1). Each hash takes tens
//! of milliseconds of one core on purpose, so it never runs on an async worker thread, and a
//! semaphore sized to the CPU count keeps a burst of logins from queueing unbounded work.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Iterations.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;

/// Why hashing or verifying could not run (a wrong password is not an error: it is `false`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The hasher failed (bad parameters).
    #[error("argon2: {0}")]
    Hash(argon2::password_hash::Error),
    /// The parameters were refused.
    #[error("argon2 parameters: {0}")]
    Params(argon2::Error),
    /// The blocking task panicked or was cancelled.
    #[error("hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The semaphore was closed (shutdown).
    #[error("hasher closed")]
    Closed,
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone, Debug)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the login is unknown so that an
    /// unknown login costs the same as a wrong password (no timing oracle).
    dummy: Arc<str>,
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(PasswordError::Params)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

fn verify_blocking(password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(PasswordError::Hash)?;
    // Verification uses the parameters stored in the PHC string, so hashes made with other
    // costs (after a future change of parameters) still verify.
    match Argon2::default().verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(PasswordError::Hash(e)),
    }
}

impl Passwords {
    /// A hasher allowing `parallel` hashes at once; computes the dummy hash (one hash).
    pub async fn new(parallel: usize) -> Result<Self, PasswordError> {
        let random = uuid::Uuid::new_v4().to_string();
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(random.as_bytes())).await??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            dummy: dummy.into(),
        })
    }

    /// Hash `password` into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(move || hash_blocking(password.as_bytes())).await?
    }

    /// Check `password` against `phc`, or against the dummy hash when `phc` is `None`
    /// (always false then, at the same cost).
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_blocking(password.as_bytes(), &phc))
            .await??;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Passwords::new(2).await.unwrap();
        let h = p.hash("s3cret".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("s3cret".into(), Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!p.verify("s3cret".into(), None).await.unwrap());
    }
}
