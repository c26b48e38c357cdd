//! A fake WeChat for development and tests.
//!
//! [`MockWeChat`] implements the domain's [`WeChat`](wxlogin_domain::WeChat) port in-process,
//! and [`wechat_routes`] serves the same behaviour over HTTP with WeChat's paths and bodies, so
//! the real reqwest client can be tested against it. [`control_routes`] lets tests and local
//! development mint login codes, encrypt user data with a user's current session key, inject
//! failures into the next calls of one [`Api`], and count each API's calls.
//!
//! What it is faithful to: single-use codes valid for five minutes, a new random 16-byte session
//! key on every `wx.login` (minting a code rotates the key at once, and exchanging that code
//! returns it; data encrypted with an older key stops decrypting), errors as HTTP 200
//! with `errcode`/`errmsg` and a varying `rid` suffix, AES-128-CBC/PKCS#7 encrypted data with a
//! watermark. It must never depend on `wxlogin-crypto`: it encrypts with its own aes/cbc code so
//! that it checks the real cipher independently.

mod api;
mod cipher;
mod http;
mod mock;

pub use api::Api;
pub use http::{control_routes, routes, serve, wechat_routes};
pub use mock::{DEFAULT_CODE_TTL, EncryptedPayload, Failure, MockError, MockWeChat};
