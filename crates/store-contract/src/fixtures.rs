//! Test values shared by the contract cases and the adapters' own tests: one app, session
//! keys, distinct token digests, and a login built from them.

use chrono::{DateTime, Duration, Utc};
use wxlogin_domain::{
    AppId, NewLogin, OpenId, SessionId, SessionKey, TokenDigest, UnionId, UserId,
};

pub const KEY_A: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
pub const KEY_B: &str = "tiihtNczf5v6AKRyjwEUhQ==";
pub const KEY_C: &str = "BBBBBBBBBBBBBBBBBBBBBB==";

/// The app the logins belong to.
pub fn app() -> AppId {
    AppId::parse("wx4f4bc4dec97d474b").expect("valid app id")
}

/// A second app (of the same Open Platform account: its users share unionids).
pub fn other_app() -> AppId {
    AppId::parse("wx0000000000000000").expect("valid app id")
}

/// The `n`-th distinct token digest.
pub fn digest(n: u32) -> TokenDigest {
    let mut bytes = [0xA5; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    TokenDigest::from_bytes(bytes)
}

pub fn key(s: &str) -> SessionKey {
    SessionKey::from_base64(s).expect("valid session key")
}

pub fn union(s: &str) -> Option<UnionId> {
    Some(UnionId::parse(s).expect("valid unionid"))
}

/// A first or repeated login of `open_id` at `now`, with the `n`-th digest and a 30-day
/// lifetime.
pub fn login_at(open_id: &str, n: u32, session_key: &str, now: DateTime<Utc>) -> NewLogin {
    NewLogin {
        app_id: app(),
        open_id: OpenId::parse(open_id).expect("valid openid"),
        union_id: None,
        new_user_id: UserId::new(),
        session_id: SessionId::new(),
        token_digest: digest(n),
        session_key: key(session_key),
        now,
        expires_at: now + Duration::days(30),
    }
}
