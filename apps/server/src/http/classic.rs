//! The OpenAPI-described HTTP surface. Handlers stay thin: parse, call the service, map the
//! result. The API is generic over the store and the WeChat adapter.

use std::sync::Arc;

use poem_openapi::auth::Bearer;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags};
use wxlogin_crypto::{OsTokens, WeChatCipher};
use wxlogin_domain::{
    EncryptedData, EncryptedProfile, LoginCode, Service, SystemClock, UserStore, WeChat,
};

use crate::dto::{Health, LoginBody, LoginReply, LoginRequest, UpdateUserInfoRequest, UserReply};
use crate::error::{ApiError, NoContentReply, Reply};

/// The service with the adapters that never vary: the cipher, the token minter, the clock.
pub type AppService<S, W> = Service<S, W, WeChatCipher, OsTokens, SystemClock>;

#[derive(Tags)]
enum ApiTags {
    /// The classic mini-program flow: `wx.login` → `/onLogin` → `/updateUserInfo`.
    Classic,
    /// The JSON API for today's mini-programs (`Authorization: Bearer <token>`).
    Session,
    /// Liveness and readiness probes.
    Health,
}

/// The token from `/onLogin` or `/api/v1/login`, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
struct BearerToken(Bearer);

/// The HTTP API.
pub struct Api<S, W> {
    service: Arc<AppService<S, W>>,
}

impl<S, W> Api<S, W> {
    pub fn new(service: Arc<AppService<S, W>>) -> Self {
        Self { service }
    }
}

/// The liveness answer.
#[derive(ApiResponse)]
enum Alive {
    /// The process is up and serving.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

/// Takes the token from the body, or else from `Authorization: Bearer …`.
fn pick_token(body: Option<String>, header: Option<&str>) -> Option<String> {
    body.filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
        .or_else(|| {
            header
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        })
}

#[OpenApi]
impl<S: UserStore, W: WeChat> Api<S, W> {
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
    async fn on_login(&self, body: LoginRequest) -> Reply<LoginReply> {
        let body = body.into_inner();
        let code = match LoginCode::parse(&body.code) {
            Ok(c) => c,
            Err(e) => return ApiError::from(e).into(),
        };
        match self.service.login(&code).await {
            Ok(outcome) => {
                tracing::info!(user_id = %outcome.user.id, new = outcome.is_new_user, "login");
                Reply::Ok(Json(LoginReply::from(outcome)))
            }
            Err(e) => ApiError::from(e).into(),
        }
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
        body: UpdateUserInfoRequest,
        /// `Bearer <token>`, instead of `token` in the body.
        #[oai(name = "Authorization")]
        authorization: Header<Option<String>>,
    ) -> Reply<UserReply> {
        let body = body.into_inner();
        let Some(token) = pick_token(body.token, authorization.0.as_deref()) else {
            return ApiError::new(
                poem::http::StatusCode::UNAUTHORIZED,
                "invalid_token",
                "send the token from /onLogin (field `token` or a bearer header)",
            )
            .into();
        };
        let code = match body.code.as_deref().map(LoginCode::parse).transpose() {
            Ok(c) => c,
            Err(e) => return ApiError::from(e).into(),
        };
        let request = EncryptedProfile {
            data: EncryptedData {
                encrypted_data: body.encrypted_data,
                iv: body.iv,
            },
            raw_data: body.raw_data,
            signature: body.signature,
            code,
        };
        match self.service.update_user_info(&token, request).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "profile updated from encrypted data");
                Reply::Ok(Json(UserReply::from(&user)))
            }
            Err(e) => ApiError::from(e).into(),
        }
    }

    /// Log in with a `wx.login` code (JSON)
    ///
    /// The same as `/onLogin`, for JSON clients: `{"code": "…"}`.
    #[oai(
        path = "/api/v1/login",
        method = "post",
        operation_id = "login",
        tag = "ApiTags::Session"
    )]
    async fn login(&self, body: Json<LoginBody>) -> Reply<LoginReply> {
        self.on_login(LoginRequest::Json(body)).await
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
    async fn me(&self, auth: BearerToken) -> Reply<UserReply> {
        match self.service.authenticate(&auth.0.token).await {
            Ok(a) => Reply::Ok(Json(UserReply::from(&a.user))),
            Err(e) => ApiError::from(e).into(),
        }
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
    async fn logout(&self, auth: BearerToken) -> NoContentReply {
        match self.service.logout(&auth.0.token).await {
            Ok(()) => NoContentReply::NoContent,
            Err(e) => ApiError::from(e).into(),
        }
    }

    /// Liveness
    ///
    /// Answers 200 while the process runs.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Alive {
        Alive::Ok(Json(Health {
            status: "ok".into(),
        }))
    }

    /// Readiness
    ///
    /// 200 when the database answers, else 503 `database_unavailable`. WeChat's state does not
    /// count: it is not ours, and an instance that cannot reach it is no worse than another.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Health")]
    async fn readyz(&self) -> Reply<Health> {
        match self.service.ready().await {
            Ok(()) => Reply::Ok(Json(Health {
                status: "ok".into(),
            })),
            Err(e) => ApiError::from(e).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_token;

    #[test]
    fn token_from_body_wins_then_bearer() {
        assert_eq!(
            pick_token(Some(" wxl_a ".into()), Some("Bearer wxl_b")).as_deref(),
            Some("wxl_a")
        );
        assert_eq!(
            pick_token(Some("".into()), Some("Bearer wxl_b")).as_deref(),
            Some("wxl_b")
        );
        assert_eq!(pick_token(None, Some("Basic abc")), None);
        assert_eq!(pick_token(None, None), None);
    }
}
