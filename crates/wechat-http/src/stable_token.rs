//! `POST /cgi-bin/stable_token` in normal mode: the app's current access token and how long it
//! stays valid, without invalidating it for anyone else.

use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::json;
use wxlogin_domain::{AccessToken, IssuedAccessToken};

use crate::WeChatHttp;
use crate::errcode::CallError;
use crate::request::Call;

/// The success fields; an `errcode` answer never gets this far.
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    expires_in: Option<i64>,
}

impl Answer {
    fn into_issued(self) -> Result<IssuedAccessToken, &'static str> {
        let token = self
            .access_token
            .filter(|token| !token.is_empty())
            .ok_or("answer has no access_token")?;
        let expires_in = self
            .expires_in
            .filter(|seconds| *seconds > 0)
            .and_then(chrono::Duration::try_seconds)
            .ok_or("answer has no positive expires_in")?;
        Ok(IssuedAccessToken {
            token: AccessToken::new(token),
            expires_in,
        })
    }
}

impl WeChatHttp {
    /// Never `force_refresh`: that would invalidate the token every other instance is using
    /// (and WeChat allows it 20 times a day).
    pub(crate) async fn stable_token(&self) -> Result<IssuedAccessToken, CallError> {
        let inner = &*self.inner;
        let secret = inner.app_secret.expose_secret();
        let body = json!({
            "grant_type": "client_credential",
            "appid": inner.app_id.as_str(),
            "secret": secret,
            "force_refresh": false,
        });
        let call = Call::post_json("stable_token", "cgi-bin/stable_token", body).secret(secret);
        self.call(call, Answer::into_issued).await
    }
}
