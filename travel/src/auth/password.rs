//! Password hashing: Argon2id PHC strings, computed on the blocking pool, bounded in parallel.
//!
//! Parameters are OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1). Each hash takes tens
//! of milliseconds of one core on purpose, so it never runs on an async worker thread, and a
//! semaphore sized to the CPU count keeps a burst of logins from queueing unbounded work.
//!
//! Argon2's 19 MiB of working memory per hash is allocated once per permit and reused
//! ([`WorkingMemory`]), not allocated and freed by every hash. With the allocator doing it,
//! a burst of registrations left the users service at 688 MiB resident with two hashes at a
//! time (`benches/containers/run.sh`): glibc raises its mmap threshold after the first such
//! block is freed, so later ones come from the per-thread arenas of the blocking pool's
//! threads, and each arena keeps what it got. Now the service holds `parallel × 19 MiB` and
//! no more, whatever the burst.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    /// The hasher failed, or a stored PHC string could not be read.
    #[error("argon2: {0}")]
    Hash(#[from] argon2::password_hash::Error),
    /// The parameters were refused, or the computation failed.
    #[error("argon2 parameters: {0}")]
    Params(#[from] argon2::Error),
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
    memory: WorkingMemory,
    /// A hash of a random password, verified against when the login is unknown so that an
    /// unknown login costs the same as a wrong password (no timing oracle).
    dummy: Arc<str>,
}

/// Argon2's working memory, one buffer per hash that may run at once, kept between hashes.
/// The lock is held only to take or give back a buffer, never while hashing.
#[derive(Clone, Debug, Default)]
struct WorkingMemory {
    free: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl WorkingMemory {
    /// Runs `f` with a buffer of at least `blocks` blocks, taken from the pool (allocated
    /// when the pool is empty: only before every permit has been used once) and given back.
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let taken = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = taken.unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let result = f(&mut buffer[..blocks]);
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
        result
    }
}

fn params() -> Result<Params, PasswordError> {
    Ok(Params::new(M_COST_KIB, T_COST, P_COST, None)?)
}

fn hash_blocking(memory: &WorkingMemory, password: &[u8]) -> Result<String, PasswordError> {
    let params = params()?;
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory.with(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt_raw, &mut out, blocks)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

fn verify_blocking(
    memory: &WorkingMemory,
    password: &[u8],
    phc: &str,
) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc)?;
    // Verification uses the algorithm, version and parameters stored in the PHC string, so
    // hashes made with other costs (after a future change of parameters) still verify.
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(argon2::password_hash::Error::PhcStringField.into());
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    memory.with(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt_raw, out, blocks)
    })?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(out)? == expected)
}

impl Passwords {
    /// A hasher allowing `parallel` hashes at once; computes the dummy hash (one hash).
    pub async fn new(parallel: usize) -> Result<Self, PasswordError> {
        let random = uuid::Uuid::new_v4().to_string();
        // Its own working memory, freed after: a service that never checks a password (every
        // one but users builds a `Passwords`) then holds none.
        let dummy = tokio::task::spawn_blocking(move || {
            hash_blocking(&WorkingMemory::default(), random.as_bytes())
        })
        .await??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            memory: WorkingMemory::default(),
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
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&memory, password.as_bytes())).await?
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
        let memory = self.memory.clone();
        let ok = tokio::task::spawn_blocking(move || {
            verify_blocking(&memory, password.as_bytes(), &phc)
        })
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

    /// Hashes stored before the working memory was pooled (made by the argon2 crate's own
    /// `PasswordHasher`, as the seed data's are) verify, and ours verify with the crate's
    /// own verifier: the PHC strings are the same format.
    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_hasher() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let p = Passwords::new(1).await.unwrap();
        let crate_hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params().unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = crate_hasher
            .hash_password(b"open sesame", &salt)
            .unwrap()
            .to_string();
        assert!(
            p.verify("open sesame".into(), Some(theirs.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("open sesame!".into(), Some(theirs)).await.unwrap());

        let ours = p.hash("open sesame".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"open sesame", &parsed)
                .is_ok()
        );
        assert!(Argon2::default().verify_password(b"open", &parsed).is_err());
    }

    /// Other parameters (a hash made before a change of costs) verify too, in the same
    /// pooled buffer, resized.
    #[tokio::test]
    async fn hashes_with_other_costs_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let p = Passwords::new(1).await.unwrap();
        let cheaper = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let old = cheaper.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(p.verify("pw".into(), Some(old.clone())).await.unwrap());
        assert!(!p.verify("pw2".into(), Some(old)).await.unwrap());
        let new = p.hash("pw".into()).await.unwrap();
        assert!(p.verify("pw".into(), Some(new)).await.unwrap());
    }

    /// Working memory is reused: however many hashes ran, the pool holds at most one buffer
    /// per hash that ran at once.
    #[tokio::test]
    async fn working_memory_is_one_buffer_per_permit() {
        let p = Passwords::new(2).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move { p.hash(format!("pw{i}")).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let buffers = p.memory.free.lock().unwrap().len();
        assert!(
            (1..=2).contains(&buffers),
            "{buffers} buffers for 2 permits"
        );
    }

    /// The dummy hash made at start-up keeps no working memory.
    #[tokio::test]
    async fn a_hasher_that_never_hashed_holds_no_working_memory() {
        let p = Passwords::new(2).await.unwrap();
        assert_eq!(p.memory.free.lock().unwrap().len(), 0);
    }
}
