//! The JSON API's session operations under `/api/v1`: login, token refresh, logout.
//! Authenticated with `Authorization: Bearer <token>`.

use std::sync::Arc;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use wxlogin_domain::{AuthError, LoginError, LoginService};

use crate::http::apps::Apps;
use crate::http::auth::BearerToken;
use crate::http::classic::login;
use crate::http::dto::{LoginBody, LoginReply, TokenReply};
use crate::http::{ApiResult, ApiTags, NoContent, Reply, Success};

/// `/api/v1/login`, `/api/v1/session/refresh`, `/api/v1/session`.
pub struct SessionApi<L> {
    apps: Arc<Apps<L>>,
}

impl<L> SessionApi<L> {
    pub fn new(apps: Arc<Apps<L>>) -> Self {
        Self { apps }
    }
}

#[OpenApi]
impl<L: LoginService> SessionApi<L> {
    /// Log in with a `wx.login` code (JSON)
    ///
    /// The same as `/onLogin`, for JSON clients: `{"code": "…"}`.
    #[oai(
        path = "/api/v1/login",
        method = "post",
        operation_id = "login",
        tag = "ApiTags::Session"
    )]
    async fn login(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        body: Json<LoginBody>,
    ) -> Reply<LoginReply, LoginError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        login(service, &body.0.code).await
    }

    /// Rotate the token
    ///
    /// Answers a new token; the old one stops working at once, on every instance. The new
    /// token's lifetime starts now.
    #[oai(
        path = "/api/v1/session/refresh",
        method = "post",
        operation_id = "refreshSession",
        tag = "ApiTags::Session"
    )]
    async fn refresh(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
    ) -> Reply<TokenReply, AuthError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        let refreshed = service.refresh(auth.token()).await?;
        Ok(Success::json(TokenReply::from(refreshed)))
    }

    /// Log out
    ///
    /// Revokes the token's session at once, on every instance. The token stops working; other
    /// sessions of the user are untouched.
    #[oai(
        path = "/api/v1/session",
        method = "delete",
        operation_id = "logout",
        tag = "ApiTags::Session"
    )]
    async fn logout(
        &self,
        /// The mini-program (app id); else WeChat's `Referer` names it, else the default app.
        #[oai(name = "X-WX-AppId")]
        app: Header<Option<String>>,
        req: &Request,
        auth: BearerToken,
    ) -> ApiResult<NoContent, AuthError> {
        let service = self.apps.pick(app.0.as_deref(), req)?;
        service.logout(auth.token()).await?;
        Ok(NoContent::Done)
    }
}
