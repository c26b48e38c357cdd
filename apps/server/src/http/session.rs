//! The JSON API for today's mini-programs under `/api/v1`: login, the signed-in user, logout.
//! Authenticated with `Authorization: Bearer <token>`.

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::payload::Json;
use wxlogin_domain::{AuthError, LoginError, LoginService};

use crate::http::auth::BearerToken;
use crate::http::classic::login;
use crate::http::dto::{LoginBody, LoginReply, UserReply};
use crate::http::{ApiResult, ApiTags, NoContent, Reply, Success};

/// `/api/v1/login`, `/api/v1/me`, `/api/v1/session`.
pub struct SessionApi<L> {
    service: Arc<L>,
}

impl<L> SessionApi<L> {
    pub fn new(service: Arc<L>) -> Self {
        Self { service }
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
    async fn login(&self, body: Json<LoginBody>) -> Reply<LoginReply, LoginError> {
        login(&*self.service, &body.0.code).await
    }

    /// The signed-in user
    ///
    /// Answers the token's user and whether the profile is complete.
    #[oai(
        path = "/api/v1/me",
        method = "get",
        operation_id = "me",
        tag = "ApiTags::Session"
    )]
    async fn me(&self, auth: BearerToken) -> Reply<UserReply, AuthError> {
        let a = self.service.authenticate(auth.token()).await?;
        Ok(Success::json(UserReply::new(&a.user, a.status)))
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
    async fn logout(&self, auth: BearerToken) -> ApiResult<NoContent, AuthError> {
        self.service.logout(auth.token()).await?;
        Ok(NoContent::Done)
    }
}
