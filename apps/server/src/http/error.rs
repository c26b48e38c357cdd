//! The HTTP error contract: every error a client can cause has a documented status and a
//! stable machine-readable code (DESIGN §5). Internal detail is logged here, never returned.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object};
use wxlogin_domain::{
    AuthError, CipherError, InvalidValue, LoginError, StoreError, UpdateUserInfoError, WeChatError,
};

/// The body of every error answer. `status` repeats the HTTP status so classic clients that
/// test `data.status == 200` keep working.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable machine-readable code, e.g. `invalid_code` (see the API description).
    pub error: String,
    /// A human-readable explanation; never contains a secret.
    pub message: String,
}

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    fn body(&self) -> Json<ErrorBody> {
        Json(ErrorBody {
            status: self.status.as_u16(),
            error: self.code.to_owned(),
            message: self.message.clone(),
        })
    }

    /// The same body as a plain poem response, for errors raised outside the OpenAPI layer
    /// (router 404/405, body limit).
    pub fn into_poem_response(self) -> poem::Response {
        let body = serde_json::json!({
            "status": self.status.as_u16(),
            "error": self.code,
            "message": self.message,
        });
        poem::Response::builder()
            .status(self.status)
            .content_type("application/json; charset=utf-8")
            .body(body.to_string())
    }

    /// Maps a request that poem-openapi could not parse.
    pub fn from_parse_error(err: &poem::Error) -> Self {
        match err.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/x-www-form-urlencoded or application/json",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large(),
            StatusCode::UNAUTHORIZED => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "missing or malformed token",
            ),
            _ => Self::invalid_request(format!("malformed request: {}", parse_error_text(err))),
        }
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }
}

/// poem-openapi's parse errors name the field and the problem; they never echo the value.
fn parse_error_text(err: &poem::Error) -> String {
    let text = err.to_string();
    // Keep it short and single-line for clients.
    text.lines()
        .next()
        .unwrap_or("bad request")
        .chars()
        .take(200)
        .collect()
}

/// Every answer of an operation: the success body, or an error with its documented status.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum Reply<T: ToJSON + Type + Send + Sync> {
    /// Success.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// `invalid_request` (a missing, malformed or out-of-range field), `invalid_code` (WeChat
    /// 40029: the code is invalid or expired, or belongs to another user), `code_used` (WeChat
    /// 40163: the code was already exchanged; call `wx.login` again).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `invalid_token` (unknown, malformed or revoked token) or `token_expired` (log in again).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `risky_user`: WeChat blocks this high-risk user (40226).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// `not_found`.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `payload_too_large`: the body exceeds `server.body_limit_bytes`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `unsupported_media_type`: use `application/x-www-form-urlencoded` or `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// `decrypt_failed` (the data does not decrypt with this session's key, or its watermark
    /// names another app; log in again, or send a fresh `code` with the data) or
    /// `signature_mismatch` (`rawData` does not match `signature`).
    #[oai(status = 422)]
    UnprocessableEntity(Json<ErrorBody>),
    /// `wechat_rate_limited`: WeChat's per-user frequency limit (45011); try later.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// `internal`: a bug or an unexpected failure; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `wechat_error`: WeChat answered something unexpected (also a misconfigured app id or
    /// secret).
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// `wechat_unavailable` (WeChat busy, down or too slow) or `database_unavailable`; retry.
    #[oai(status = 503)]
    ServiceUnavailable(Json<ErrorBody>),
}

fn bad_request<T: ToJSON + Type + Send + Sync>(err: poem::Error) -> Reply<T> {
    ApiError::from_parse_error(&err).into()
}

impl<T: ToJSON + Type + Send + Sync> From<ApiError> for Reply<T> {
    fn from(e: ApiError) -> Self {
        let body = e.body();
        match e.status {
            StatusCode::BAD_REQUEST => Self::BadRequest(body),
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body),
            StatusCode::FORBIDDEN => Self::Forbidden(body),
            StatusCode::NOT_FOUND => Self::NotFound(body),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(body),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(body),
            StatusCode::UNPROCESSABLE_ENTITY => Self::UnprocessableEntity(body),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(body),
            StatusCode::BAD_GATEWAY => Self::BadGateway(body),
            StatusCode::SERVICE_UNAVAILABLE => Self::ServiceUnavailable(body),
            _ => Self::Internal(ApiError::internal().body()),
        }
    }
}

/// The answers of an operation that returns no body (logout).
#[derive(ApiResponse)]
#[oai(bad_request_handler = "no_content_bad_request")]
pub enum NoContentReply {
    /// Done.
    #[oai(status = 204)]
    NoContent,
    /// `invalid_token` or `token_expired`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `internal`: details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `database_unavailable`; retry.
    #[oai(status = 503)]
    ServiceUnavailable(Json<ErrorBody>),
}

fn no_content_bad_request(err: poem::Error) -> NoContentReply {
    ApiError::from_parse_error(&err).into()
}

impl From<ApiError> for NoContentReply {
    fn from(e: ApiError) -> Self {
        let body = e.body();
        match e.status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(body),
            StatusCode::SERVICE_UNAVAILABLE => Self::ServiceUnavailable(body),
            _ => Self::Internal(ApiError::internal().body()),
        }
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        Self::invalid_request(e.to_string())
    }
}

impl From<WeChatError> for ApiError {
    fn from(e: WeChatError) -> Self {
        match e {
            WeChatError::InvalidCode => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_code",
                "the code is invalid or expired; call wx.login again",
            ),
            WeChatError::CodeUsed => Self::new(
                StatusCode::BAD_REQUEST,
                "code_used",
                "the code was already used; call wx.login again",
            ),
            WeChatError::RateLimited => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "wechat_rate_limited",
                "WeChat limits this user's logins right now; try again later",
            ),
            WeChatError::RiskyUser => Self::new(
                StatusCode::FORBIDDEN,
                "risky_user",
                "WeChat blocked the login of this user",
            ),
            WeChatError::Unavailable(detail) => {
                tracing::warn!(%detail, "WeChat unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "wechat_unavailable",
                    "WeChat is busy or unreachable; try again",
                )
            }
            WeChatError::Unexpected(detail) => {
                tracing::error!(%detail, "unexpected answer from WeChat");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "wechat_error",
                    "WeChat answered unexpectedly",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again",
                )
            }
            StoreError::NotFound => Self::not_found(),
            StoreError::Unexpected(detail) => {
                tracing::error!(%detail, "store failure");
                Self::internal()
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::WeChat(w) => w.into(),
            LoginError::Store(s) => s.into(),
            LoginError::Unexpected(detail) => {
                tracing::error!(%detail, "login invariant broken");
                Self::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidToken => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is unknown or revoked; log in again",
            ),
            AuthError::TokenExpired => Self::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "the token has expired; log in again",
            ),
            AuthError::Store(s) => s.into(),
        }
    }
}

impl From<CipherError> for ApiError {
    fn from(e: CipherError) -> Self {
        match e {
            CipherError::InvalidInput(what) => Self::invalid_request(what),
            CipherError::DecryptFailed => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "decrypt_failed",
                "the data could not be decrypted with this session's key; call wx.login and \
                 send the fresh code with the data, or log in again",
            ),
            CipherError::SignatureMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "signature_mismatch",
                "rawData does not match its signature",
            ),
        }
    }
}

impl From<UpdateUserInfoError> for ApiError {
    fn from(e: UpdateUserInfoError) -> Self {
        match e {
            UpdateUserInfoError::Auth(a) => a.into(),
            UpdateUserInfoError::InvalidRequest(what) => Self::invalid_request(what),
            UpdateUserInfoError::Cipher(c) => c.into(),
            UpdateUserInfoError::WeChat(w) => w.into(),
            UpdateUserInfoError::CodeForAnotherUser => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_code",
                "the code belongs to another WeChat user",
            ),
            UpdateUserInfoError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_errors_map_to_documented_codes() {
        let cases = [
            (WeChatError::InvalidCode, 400, "invalid_code"),
            (WeChatError::CodeUsed, 400, "code_used"),
            (WeChatError::RateLimited, 429, "wechat_rate_limited"),
            (WeChatError::RiskyUser, 403, "risky_user"),
            (
                WeChatError::Unavailable("x".into()),
                503,
                "wechat_unavailable",
            ),
            (WeChatError::Unexpected("x".into()), 502, "wechat_error"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        }
    }

    #[test]
    fn internal_detail_is_not_returned() {
        let api = ApiError::from(StoreError::Unexpected("secret detail".into()));
        assert_eq!(api.code, "internal");
        assert!(!api.message.contains("secret detail"));
        let api = ApiError::from(StoreError::Unavailable("pool timed out".into()));
        assert_eq!(
            (api.status.as_u16(), api.code),
            (503, "database_unavailable")
        );
    }

    #[test]
    fn auth_and_cipher_errors() {
        assert_eq!(
            ApiError::from(AuthError::TokenExpired).code,
            "token_expired"
        );
        assert_eq!(ApiError::from(AuthError::InvalidToken).status.as_u16(), 401);
        assert_eq!(
            ApiError::from(CipherError::DecryptFailed).status.as_u16(),
            422
        );
        assert_eq!(
            ApiError::from(CipherError::InvalidInput("iv must be 16 bytes")).code,
            "invalid_request"
        );
        assert_eq!(
            ApiError::from(UpdateUserInfoError::CodeForAnotherUser).code,
            "invalid_code"
        );
    }
}
