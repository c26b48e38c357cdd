//! wxlogin's crypto adapter: everything that touches key material.
//!
//! - [`WeChatCipher`] implements the domain's [`UserDataCipher`](wxlogin_domain::UserDataCipher)
//!   port: decrypting WeChat's `encryptedData`, user info and legacy phone numbers alike
//!   (AES-128-CBC, strict PKCS#7, watermark check), and checking `rawData` signatures
//!   (`sha1(rawData + session_key)`, constant time).
//! - [`OsTokens`] implements [`TokenMinter`](wxlogin_domain::TokenMinter): bearer tokens with
//!   256 bits from the OS random source, and the SHA-256 digests stored in their place.
//! - [`Argon2Verifier`] implements [`PasswordVerifier`](wxlogin_domain::PasswordVerifier):
//!   operator passwords against argon2id PHC hashes, off the async runtime; [`hash_password`]
//!   makes those hashes (`wxlogin hash-password`), [`check_password_hash`] checks configured ones.
//!   (Feature `passwords`, on by default.)
//! - [`encrypt_user_data`] is the inverse of decryption, for the mock WeChat and for tests.
//!
//! Error values never carry key material, ciphertext or plaintext.

mod cipher;
#[cfg(feature = "passwords")]
mod password;
mod tokens;

pub use cipher::{WeChatCipher, encrypt_user_data};
#[cfg(feature = "passwords")]
pub use password::{
    Argon2Verifier, PasswordHashError, check_password_hash, hash_password, verify_password,
};
pub use tokens::OsTokens;
