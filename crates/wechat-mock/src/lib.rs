//! A fake WeChat for development and tests.
//!
//! [`MockWeChat`] implements the domain's [`WeChat`](wxlogin_domain::WeChat) port in-process,
//! and [`wechat_routes`] serves the same behaviour over HTTP with WeChat's paths and bodies
//! (`jscode2session`, `cgi-bin/stable_token`, `cgi-bin/token`, `getuserphonenumber`,
//! `checksession`), so the real reqwest client can be tested against it. [`control_routes`]
//! lets tests and local development mint login and phone codes (one at a time, or in batches
//! for load generators), encrypt user info and legacy phone data with a user's current session
//! key, expire or invalidate the access token, inject failures into the next calls of one
//! [`Api`], and count each API's calls (the shapes are in the `http` module's docs; each is a
//! method of [`MockWeChat`] too, a batch being a loop over one).
//!
//! What it is faithful to: single-use codes valid for five minutes, a new random 16-byte session
//! key on every `wx.login` (minting a code rotates the key at once, and exchanging that code
//! returns it; data encrypted with an older key stops decrypting), errors as HTTP 200
//! with `errcode`/`errmsg` and a varying `rid` suffix, AES-128-CBC/PKCS#7 encrypted data with a
//! watermark, an access token that `stable_token` hands out unchanged (with its remaining
//! lifetime) until it expires, 40001 for a token that is not the latest and 42001 for an
//! expired one, single-use phone codes (a login code there is 40029), and `checksession`'s
//! HMAC-SHA256 signature.
//!
//! Where it simplifies: the app has one access token, shared by `stable_token` and
//! `cgi-bin/token` (WeChat keeps the two apart); a new token (from `cgi-bin/token` or
//! `force_refresh`) invalidates the previous one at once (WeChat lets it work about five more
//! minutes); `force_refresh`'s limits (20 a day, 30 s apart) are not enforced.
//!
//! It must never depend on `wxlogin-crypto`: it encrypts and signs with its own code so that it
//! checks the real cipher and client independently.

mod api;
mod cipher;
mod http;
mod mock;

pub use api::Api;
pub use http::{
    MAX_BATCH, control_path, control_routes, routes, routes_for, serve, serve_apps, wechat_routes,
};
pub use mock::{
    CountryCode, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_CODE_TTL, EncryptedPayload, Failure, MockError,
    MockWeChat, Phone,
};
