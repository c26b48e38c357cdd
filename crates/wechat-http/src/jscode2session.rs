//! `GET /sns/jscode2session`: a `wx.login` code exchanged for the user's openid, unionid and
//! session key.

use secrecy::ExposeSecret as _;
use serde::Deserialize;
use wxlogin_domain::{CodeSession, LoginCode, OpenId, SessionKey, UnionId};

use crate::WeChatHttp;
use crate::errcode::CallError;
use crate::request::Call;

/// The success fields; an `errcode` answer never gets this far.
#[derive(Deserialize)]
struct Answer {
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl Answer {
    fn into_session(self) -> Result<CodeSession, &'static str> {
        let open_id = self.openid.as_deref().ok_or("answer has no openid")?;
        let open_id = OpenId::parse(open_id).map_err(|_| "answer has an invalid openid")?;
        let session_key = self
            .session_key
            .as_deref()
            .ok_or("answer has no session_key")?;
        let session_key = SessionKey::from_base64(session_key)
            .map_err(|_| "answer has an invalid session_key")?;
        let union_id = match self.unionid.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(UnionId::parse(u).map_err(|_| "answer has an invalid unionid")?),
        };
        Ok(CodeSession {
            open_id,
            union_id,
            session_key,
        })
    }
}

impl WeChatHttp {
    /// Never retried: codes are single use, and a retry after a timeout that actually
    /// succeeded would answer 40163.
    pub(crate) async fn jscode2session(&self, code: &LoginCode) -> Result<CodeSession, CallError> {
        let inner = &*self.inner;
        let call = Call::get("jscode2session", "sns/jscode2session")
            .query("appid", inner.app_id.as_str())
            .secret_query("secret", inner.app_secret.expose_secret())
            .secret_query("js_code", code.as_str())
            .query("grant_type", "authorization_code");
        self.call(call, Answer::into_session).await
    }
}
