//! `GET /wxa/checksession`: whether a session key is still the user's current one.

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::de::IgnoredAny;
use sha2::Sha256;
use wxlogin_domain::{AccessToken, OpenId, SessionKey};

use crate::WeChatHttp;
use crate::errcode::{CallError, Kind};
use crate::request::Call;

impl WeChatHttp {
    /// `Ok(false)` for 87009: the signature, made with `session_key`, does not match the
    /// user's current key.
    pub(crate) async fn checksession(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, CallError> {
        let signature = signature(session_key.expose_base64(), b"");
        // The signature stands for the session key: scrubbed like the other secrets.
        let call = Call::get("checksession", "wxa/checksession")
            .secret_query("access_token", access_token.expose())
            .secret_query("signature", &signature)
            .query("openid", open_id.as_str())
            .query("sig_method", "hmac_sha256");
        match self.call(call, |_: IgnoredAny| Ok(())).await {
            Ok(()) => Ok(true),
            Err(err) if err.kind == Kind::InvalidSignature => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// Lowercase hex of HMAC-SHA256 keyed with the session key's base64 *text* (decoding it first
/// gives a different, wrong value).
fn signature(key_base64: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; if it did, an empty signature
    // would match nothing and WeChat would answer 87009.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key_base64.as_bytes()) else {
        return String::new();
    };
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_wechats_official_example() {
        // WECHAT.md: key `o0q0otL8aEzpcZL/FT9WsQ==`, message `{"foo":"bar"}`.
        assert_eq!(
            signature("o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
        // What checksession sends: the empty message
        // (`printf '' | openssl dgst -sha256 -hmac 'o0q0otL8aEzpcZL/FT9WsQ=='`).
        assert_eq!(
            signature("o0q0otL8aEzpcZL/FT9WsQ==", b""),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }
}
