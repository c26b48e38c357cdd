//! Operator passwords: argon2id hashes as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`),
//! made by `wxlogin hash-password` and checked when an operator signs in to `/admin/v1`.
//!
//! argon2 is slow and memory-hard on purpose (about 19 MiB and tens of milliseconds per check
//! with the default parameters, OWASP's recommendation), so [`Argon2Verifier`] runs each check
//! on tokio's blocking pool, a few at a time, never on the async runtime's threads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params};
use rand::TryRng as _;
use rand::rngs::SysRng;
use tokio::sync::Semaphore;
use wxlogin_domain::{Password, PasswordHash, PasswordVerifier};

/// Why a password could not be hashed or a hash is not one we can check. The texts never
/// quote the password or the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("not a PHC string (expected $argon2id$v=19$m=…,t=…,p=…$salt$hash)")]
    NotPhc,
    #[error("not an argon2id hash (argon2i, argon2d and other algorithms are refused)")]
    NotArgon2id,
    #[error("the argon2 parameters of the hash are invalid")]
    InvalidParams,
    #[error("the hash has no salt or no output")]
    Incomplete,
    #[error("hashing failed")]
    Hashing,
}

/// Hashes `password` with argon2id, the default parameters and a random salt from the OS,
/// into a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    if password.is_empty() {
        return Err(PasswordHashError::EmptyPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordHashError::Hashing)
}

/// Checks that `phc` is an argon2id PHC string with parameters argon2 accepts, a salt and an
/// output: what the configuration requires of `admin.users[].password_hash` at start.
pub fn check_password_hash(phc: &str) -> Result<(), PasswordHashError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(|_| PasswordHashError::NotPhc)?;
    if Algorithm::try_from(parsed.algorithm.as_str()) != Ok(Algorithm::Argon2id) {
        return Err(PasswordHashError::NotArgon2id);
    }
    Params::try_from(&parsed).map_err(|_| PasswordHashError::InvalidParams)?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordHashError::Incomplete);
    }
    Ok(())
}

/// Whether `password` matches the argon2id hash `phc` (checked in constant time by argon2).
/// Anything but an argon2id hash is no match. Slow: call it off the async runtime.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if check_password_hash(phc).is_err() {
        return false;
    }
    argon2::PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// The domain's [`PasswordVerifier`] over argon2id: each check runs on tokio's blocking pool,
/// and at most `max_concurrent` at once (each takes a core and ~19 MiB for its duration), so a
/// flood of sign-in attempts queues here instead of starving the server. Needs a tokio
/// runtime. Cheap to clone: clones share the limit and the dummy hash.
#[derive(Debug, Clone)]
pub struct Argon2Verifier {
    permits: Arc<Semaphore>,
    dummy: PasswordHash,
}

impl Argon2Verifier {
    /// At most two checks at once: enough for a few operators, and a flood cannot take more
    /// than two cores.
    pub const DEFAULT_CONCURRENCY: usize = 2;

    /// A verifier running at most `max_concurrent` checks at once (at least one). Hashes a
    /// random password once, for the dummy hash (with the default parameters, those of
    /// `wxlogin hash-password`).
    pub fn new(max_concurrent: usize) -> Result<Self, PasswordHashError> {
        let mut secret = [0u8; 32];
        SysRng
            .try_fill_bytes(&mut secret)
            .map_err(|_| PasswordHashError::Hashing)?;
        // Nobody ever knows this password: it is dropped right here.
        let unknown: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let dummy = PasswordHash::new(hash_password(&unknown)?);
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy,
        })
    }
}

impl PasswordVerifier for Argon2Verifier {
    async fn verify(&self, hash: &PasswordHash, password: &Password) -> bool {
        // The semaphore is never closed; if it were, refusing is the safe answer.
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hash, password) = (hash.as_str().to_owned(), password.expose().to_owned());
        // A panicking check (it should not) refuses too.
        tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false)
    }

    fn dummy_hash(&self) -> PasswordHash {
        self.dummy.clone()
    }
}
