//! The classic mini-program flow: `wx.login` → `POST /onLogin` → `POST /updateUserInfo`, with
//! form-urlencoded or JSON bodies, exactly as classic clients send them.

use std::sync::Arc;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::Header;
use wxlogin_domain::{AuthError, LoginCode, LoginError, LoginService, UpdateUserInfoError};

use crate::http::apps::Apps;
use crate::http::auth::pick_token;
use crate::http::dto::{
    LoginReply, LoginRequest, UpdateUserInfoRequest, UserReply, encrypted_profile,
};
use crate::http::{ApiError, ApiTags, Reply, Success};

/// `/onLogin` and `/updateUserInfo`.
pub struct ClassicApi<L> {
    apps: Arc<Apps<L>>,
}

impl<L> ClassicApi<L> {
    pub fn new(apps: Arc<Apps<L>>) -> Self {
        Self { apps }
    }
}

/// The login every entry point shares: parse the code, log in, shape the reply.
pub(crate) async fn login<L: LoginService>(
    service: &L,
    code: &str,
) -> Reply<LoginReply, LoginError> {
    let code = LoginCode::parse(code)?;
    let outcome = service.login(&code).await?;
    tracing::info!(user_id = %outcome.user.id, new = outcome.is_new_user, "login");
    Ok(Success::json(LoginReply::from(outcome)))
}

#[OpenApi]
impl<L: LoginService> ClassicApi<L> {
    /// Log in with a `wx.login` code
    ///
    /// Exchanges the code with WeChat (`jscode2session`), finds the user by openid or creates
    /// it, and opens a session. Send `code` as `application/x-www-form-urlencoded` (the classic
    /// client) or JSON. Codes are single use: on `invalid_code` or `code_used`, call `wx.login`
    /// again. If `profileComplete` is false, send the profile to `/updateUserInfo`.
    #[oai(
        path = "/onLogin",
        method = "post",
        operation_id = "onLogin",
        tag = "ApiTags::Classic"
    )]
    async fn on_login(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        body: LoginRequest,
    ) -> Reply<LoginReply, LoginError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        login(service, &body.into_inner().code).await
    }

    /// Store the profile from `encryptedData`
    ///
    /// Decrypts `encryptedData` with the session's key (AES-128-CBC), checks that the watermark
    /// names this mini-program and, when `rawData` and `signature` are sent, the signature; then
    /// updates the user. The token comes in the body (`token`) or as `Authorization: Bearer`.
    /// If the client called `wx.login` since logging in, WeChat may have rotated the session
    /// key: send the fresh `code` too, and the server decrypts with the new key.
    #[oai(
        path = "/updateUserInfo",
        method = "post",
        operation_id = "updateUserInfo",
        tag = "ApiTags::Classic"
    )]
    async fn update_user_info(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        body: UpdateUserInfoRequest,
        /// `Bearer <token>`, instead of `token` in the body.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> Reply<UserReply, UpdateUserInfoError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let body = body.into_inner();
        // An empty optional field (`rawData=&signature=`, as form encoders send unset values)
        // counts as absent.
        let given = wxlogin_input::present;
        let token = pick_token(body.token, authorization.0.as_deref())?.ok_or_else(|| {
            ApiError::from(UpdateUserInfoError::from(AuthError::InvalidToken)).with_message(
                "send the token from /onLogin (field `token` or a bearer header)",
                "请发送 /onLogin 给出的令牌（`token` 字段或 Bearer 头）",
            )
        })?;
        let request = encrypted_profile(
            body.encrypted_data,
            body.iv,
            given(body.raw_data),
            given(body.signature),
            given(body.code).as_deref(),
        )?;
        let outcome = service.update_user_info(&token, request).await?;
        tracing::info!(user_id = %outcome.user.id, "profile updated from encrypted data");
        Ok(Success::json(UserReply::new(&outcome.user, outcome.status)))
    }
}
