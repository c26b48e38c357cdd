//! The HTTP error contract (DESIGN §5), written once: every error code with its status, its
//! stable code string and its default message ([`ErrorCode`]); how each use case's errors map
//! onto them ([`ErrorSet`]); and the one error type every operation answers with
//! ([`ApiError`]), which documents, per operation, exactly the codes that operation can give.
//!
//! Internal detail travels with a [`Failure`] to the one place where it becomes an HTTP answer
//! (`middleware::answer`), is logged there once, and is never returned.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::http::lang::{Lang, Text};
use poem::http::StatusCode;
use poem_openapi::payload::{Json, Payload as _};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type as _;
use poem_openapi::{ApiResponse, Object};
use wxlogin_domain::{
    AdminError, AdminUserError, AuthError, AvatarError, CipherError, InvalidValue, LoginError,
    PhoneError, StoreError, UpdateProfileError, UpdateUserInfoError, UploadAvatarError,
    WeChatError,
};

/// Writes [`ErrorCode`] and its tables (status, code string, default message in English and in
/// Simplified Chinese) from one list, so a code cannot exist without all of them.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($status:ident, $code:literal, $message:literal, $zh:literal), )*) => {
        /// Every error code of the HTTP contract. Exhaustive: a new failure needs a code here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the contract.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The HTTP status it answers with.
            pub const fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }

            /// The stable machine-readable code (`error` in the body). Never changes.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// The human text sent when the failure brings no better one, in English (also
            /// what the OpenAPI document says).
            pub const fn default_message(self) -> &'static str {
                match self { $(Self::$variant => $message,)* }
            }

            /// The same text in Simplified Chinese.
            pub const fn default_message_zh(self) -> &'static str {
                match self { $(Self::$variant => $zh,)* }
            }
        }
    };
}

error_codes! {
    /// A missing, malformed or out-of-range field.
    InvalidRequest = (BAD_REQUEST, "invalid_request", "the request is malformed", "请求格式错误"),
    /// WeChat 40029: the code is invalid or expired, or belongs to another app.
    InvalidCode = (BAD_REQUEST, "invalid_code", "the code is invalid or expired; call wx.login again", "code 无效或已过期，请重新调用 wx.login"),
    /// WeChat 40163: the code was already exchanged.
    CodeUsed = (BAD_REQUEST, "code_used", "the code was already used; call wx.login again", "code 已被使用过，请重新调用 wx.login"),
    /// Unknown, malformed or revoked token.
    InvalidToken = (UNAUTHORIZED, "invalid_token", "the token is unknown or revoked; log in again", "令牌无效或已被撤销，请重新登录"),
    /// The session's lifetime is over.
    TokenExpired = (UNAUTHORIZED, "token_expired", "the token has expired; log in again", "令牌已过期，请重新登录"),
    /// WeChat 40226: a high-risk user.
    RiskyUser = (FORBIDDEN, "risky_user", "WeChat blocked the login of this user", "微信拦截了该用户的登录（高风险用户）"),
    /// No such route or resource.
    NotFound = (NOT_FOUND, "not_found", "no such resource", "资源不存在"),
    /// The route exists, the method does not.
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here", "此处不支持该请求方法"),
    /// The body exceeds `server.body_limit_bytes`.
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large", "请求体过大"),
    /// A body in a content type the operation does not take.
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "this operation does not take a body of this content type", "此接口不接受这种 Content-Type 的请求体"),
    /// The data does not decrypt with the session's key, or its watermark names another app.
    DecryptFailed = (UNPROCESSABLE_ENTITY, "decrypt_failed", "the data could not be decrypted with this session's key; call wx.login and send the fresh code with the data, or log in again", "无法用本会话的密钥解密数据：请调用 wx.login，把新的 code 与数据一起发送，或重新登录"),
    /// `rawData` does not match `signature`.
    SignatureMismatch = (UNPROCESSABLE_ENTITY, "signature_mismatch", "rawData does not match its signature", "rawData 与 signature 不符"),
    /// wxlogin's own limit on failed attempts from one address (answered with `Retry-After`).
    RateLimited = (TOO_MANY_REQUESTS, "rate_limited", "too many failed attempts; try again later", "失败次数过多，请稍后再试"),
    /// WeChat 45011: WeChat's per-user frequency limit.
    WechatRateLimited = (TOO_MANY_REQUESTS, "wechat_rate_limited", "WeChat limits this user's logins right now; try again later", "微信当前限制了该用户的登录频率，请稍后再试"),
    /// A bug or an unexpected failure; the detail is in the server log.
    Internal = (INTERNAL_SERVER_ERROR, "internal", "internal error; it has been logged", "服务器内部错误，已记录日志"),
    /// WeChat answered something unexpected (also a misconfigured app id or secret).
    WechatError = (BAD_GATEWAY, "wechat_error", "WeChat answered unexpectedly", "微信返回了意外的结果"),
    /// WeChat busy, down or too slow.
    WechatUnavailable = (SERVICE_UNAVAILABLE, "wechat_unavailable", "WeChat is busy or unreachable; try again", "微信繁忙或无法访问，请重试"),
    /// The database cannot be reached or is too busy.
    DatabaseUnavailable = (SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable; try again", "数据库暂不可用，请重试"),
}

/// The body of every error answer. `status` repeats the HTTP status so classic clients that
/// test `data.status == 200` keep working.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable machine-readable code, e.g. `invalid_code` (see the API description).
    pub error: String,
    /// A human-readable explanation, in Simplified Chinese or English by `Accept-Language`;
    /// never contains a secret.
    pub message: String,
}

/// A failure on its way to the client: its code, the message the client sees, and the
/// internal detail that only the log sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", code.as_str(), message.en)]
pub struct Failure {
    pub code: ErrorCode,
    message: Text,
    detail: Option<String>,
    /// Seconds for `Retry-After` (`rate_limited`).
    retry_after: Option<u64>,
}

impl Failure {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: Text::new(code.default_message(), code.default_message_zh()),
            detail: None,
            retry_after: None,
        }
    }

    /// Answers with `Retry-After: <secs>` (at least 1).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Replaces the default message with one that says more about this case, in English and
    /// in Simplified Chinese.
    #[must_use]
    pub fn with_message(
        mut self,
        en: impl Into<Cow<'static, str>>,
        zh: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.message = Text::new(en, zh);
        self
    }

    /// Replaces the default message with the reason a value was refused.
    #[must_use]
    pub fn with_reason(mut self, invalid: InvalidValue) -> Self {
        self.message = invalid.into();
        self
    }

    /// Internal detail for the log line; never sent to the client.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The message in English.
    pub fn message(&self) -> &str {
        &self.message.en
    }

    /// The message in `lang`.
    pub fn message_in(&self, lang: Lang) -> &str {
        self.message.get(lang)
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub fn body(&self, lang: Lang) -> ErrorBody {
        ErrorBody {
            status: self.code.status().as_u16(),
            error: self.code.as_str().to_owned(),
            message: self.message_in(lang).to_owned(),
        }
    }

    /// The error answer, its message in `lang` (`Content-Language` says which; `Vary:
    /// Accept-Language` that it depends on the request's).
    pub fn to_response(&self, lang: Lang) -> poem::Response {
        let body = serde_json::json!({
            "status": self.code.status().as_u16(),
            "error": self.code.as_str(),
            "message": self.message_in(lang),
        });
        let mut response = poem::Response::builder()
            .status(self.code.status())
            .content_type("application/json; charset=utf-8")
            .header(poem::http::header::CONTENT_LANGUAGE, lang.tag())
            .header(poem::http::header::VARY, "Accept-Language");
        if let Some(secs) = self.retry_after {
            response = response.header(poem::http::header::RETRY_AFTER, secs);
        }
        response.body(body.to_string())
    }

    /// Maps an error that poem or poem-openapi raised before an operation ran: a body or
    /// parameter that could not be parsed, a route miss.
    pub fn from_poem(err: &poem::Error) -> Self {
        let status = err.status();
        let code = match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            // A missing or malformed `Authorization` header (the bearer security scheme).
            StatusCode::UNAUTHORIZED => {
                return Self::new(ErrorCode::InvalidToken)
                    .with_message("missing or malformed token", "缺少令牌或令牌格式错误");
            }
            s if s.is_client_error() => {
                let text = parse_error_text(err);
                return Self::new(ErrorCode::InvalidRequest).with_message(
                    format!("malformed request: {text}"),
                    format!("请求格式错误：{text}"),
                );
            }
            _ => ErrorCode::Internal,
        };
        Self::new(code).with_detail(err.to_string())
    }
}

impl poem::error::ResponseError for Failure {
    fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The last resort (an error that bypassed `middleware::answer`): English.
    fn as_response(&self) -> poem::Response {
        self.to_response(Lang::En)
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

/// How the errors of one use case become HTTP answers.
pub trait ErrorSet: Sized + Send + Sync + 'static {
    /// Every code an operation answering with these errors can give, request errors included:
    /// what its OpenAPI entry lists. A test checks that [`ErrorSet::failure`] stays inside it.
    const CODES: &'static [ErrorCode];

    /// The failure this error becomes (an exhaustive match, no fallback).
    fn failure(self) -> Failure;
}

/// The error of an operation whose use case fails with `E`. Converting from `E` (or from an
/// invalid request value) is the only way to make one, so an operation cannot answer a code
/// its OpenAPI entry does not list.
#[derive(Debug)]
pub struct ApiError<E> {
    failure: Failure,
    use_case: PhantomData<fn() -> E>,
}

impl<E> ApiError<E> {
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// A more specific message than the code's default, in English and Simplified Chinese.
    #[must_use]
    pub fn with_message(
        mut self,
        en: impl Into<Cow<'static, str>>,
        zh: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.failure = self.failure.with_message(en, zh);
        self
    }
}

impl<E: ErrorSet> From<E> for ApiError<E> {
    fn from(e: E) -> Self {
        let failure = e.failure();
        debug_assert!(E::CODES.contains(&failure.code), "{failure:?} is listed");
        Self {
            failure,
            use_case: PhantomData,
        }
    }
}

/// A request value the domain refused (a code, a nickname …): `invalid_request`, which every
/// operation with a body lists.
impl<E: ErrorSet> From<InvalidValue> for ApiError<E> {
    fn from(e: InvalidValue) -> Self {
        debug_assert!(E::CODES.contains(&ErrorCode::InvalidRequest));
        Self {
            failure: Failure::new(ErrorCode::InvalidRequest).with_reason(e),
            use_case: PhantomData,
        }
    }
}

impl<E> From<ApiError<E>> for poem::Error {
    fn from(e: ApiError<E>) -> Self {
        Self::from(e.failure)
    }
}

impl<E: ErrorSet> ApiResponse for ApiError<E> {
    fn meta() -> MetaResponses {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        // An operation whose failures spend the budgets can be refused by them.
        let limited = crate::http::limits::refusable(E::CODES).then_some(&C::RateLimited);
        for code in E::CODES.iter().chain(limited) {
            by_status
                .entry(code.status().as_u16())
                .or_default()
                .push(*code);
        }
        let responses = by_status
            .into_iter()
            .map(|(status, codes)| MetaResponse {
                description: describe(&codes),
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/json; charset=utf-8",
                    schema: Json::<ErrorBody>::schema_ref(),
                }],
                headers: vec![],
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

/// "`invalid_code`: the code is invalid …; `code_used`: …", interned: poem-openapi wants
/// `&'static str` descriptions, and each distinct text is leaked once.
fn describe(codes: &[ErrorCode]) -> &'static str {
    static TEXTS: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    let text = codes
        .iter()
        .map(|c| format!("`{}`: {}", c.as_str(), c.default_message()))
        .collect::<Vec<_>>()
        .join(". ")
        + ".";
    let mut texts = TEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = texts.get(text.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    texts.insert(leaked);
    leaked
}

// ---------------------------------------------------------------------------------------------
// The use cases' errors

use ErrorCode as C;

/// Codes every operation with a request body can give before it runs.
macro_rules! with_body {
    ($($code:ident),* $(,)?) => {
        &[C::InvalidRequest, C::PayloadTooLarge, C::UnsupportedMediaType, $(C::$code,)* C::Internal]
    };
}

impl From<WeChatError> for Failure {
    fn from(e: WeChatError) -> Self {
        match e {
            WeChatError::InvalidCode => Self::new(C::InvalidCode),
            WeChatError::CodeUsed => Self::new(C::CodeUsed),
            WeChatError::RateLimited => Self::new(C::WechatRateLimited),
            WeChatError::RiskyUser => Self::new(C::RiskyUser),
            WeChatError::Unavailable(detail) => Self::new(C::WechatUnavailable).with_detail(detail),
            // What is left of a rejected access token after the one refetch: ours to look at.
            WeChatError::AccessTokenRejected(detail) => {
                Self::new(C::WechatError).with_detail(detail)
            }
            WeChatError::Unexpected(detail) => Self::new(C::WechatError).with_detail(detail),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                Self::new(C::DatabaseUnavailable).with_detail(detail)
            }
            // Every use case maps the absence it expects itself; one reaching here is a bug.
            StoreError::NotFound => Self::new(C::Internal).with_detail("store: not found"),
            StoreError::Unexpected(detail) => Self::new(C::Internal).with_detail(detail),
        }
    }
}

impl From<CipherError> for Failure {
    fn from(e: CipherError) -> Self {
        match e {
            CipherError::InvalidInput(what) => Self::new(C::InvalidRequest).with_reason(what),
            CipherError::DecryptFailed => Self::new(C::DecryptFailed),
            CipherError::SignatureMismatch => Self::new(C::SignatureMismatch),
        }
    }
}

/// `/onLogin` and `/api/v1/login`.
impl ErrorSet for LoginError {
    const CODES: &'static [ErrorCode] = with_body![
        InvalidCode,
        CodeUsed,
        RiskyUser,
        WechatRateLimited,
        WechatError,
        WechatUnavailable,
        DatabaseUnavailable,
    ];

    fn failure(self) -> Failure {
        match self {
            Self::WeChat(w) => w.into(),
            // The store is only reached once WeChat has exchanged the code, which is then
            // spent: retrying with it would answer code_used (DESIGN §5).
            Self::Store(s) => Failure::from(s).with_message(CODE_SPENT, CODE_SPENT_ZH),
            // Refused before the exchange: the same code may be sent again.
            Self::Unavailable(s) => Failure::from(s),
            Self::Unexpected(detail) => Failure::new(C::Internal).with_detail(detail),
        }
    }
}

/// What a failure after a code exchange tells the client.
const CODE_SPENT: &str = "the login could not be saved and its code is used up: call wx.login \
                          again and send the new code";
const CODE_SPENT_ZH: &str = "登录未能保存，且其 code 已用掉：请重新调用 wx.login 并发送新的 code";

/// Operations that only authenticate (`GET /api/v1/me`, `DELETE /api/v1/session`).
impl ErrorSet for AuthError {
    // invalid_request: a request that names an app this server does not serve.
    const CODES: &'static [ErrorCode] = &[
        C::InvalidRequest,
        C::InvalidToken,
        C::TokenExpired,
        C::DatabaseUnavailable,
        C::Internal,
    ];

    fn failure(self) -> Failure {
        match self {
            Self::InvalidToken => Failure::new(C::InvalidToken),
            Self::TokenExpired => Failure::new(C::TokenExpired),
            Self::Store(s) => s.into(),
        }
    }
}

/// `PATCH /api/v1/me/profile`.
impl ErrorSet for UpdateProfileError {
    const CODES: &'static [ErrorCode] = with_body![InvalidToken, TokenExpired, DatabaseUnavailable];

    fn failure(self) -> Failure {
        match self {
            Self::Auth(a) => a.failure(),
            Self::Unexpected(detail) => Failure::new(C::Internal).with_detail(detail),
        }
    }
}

/// `POST /api/v1/me/avatar`.
impl ErrorSet for UploadAvatarError {
    const CODES: &'static [ErrorCode] = with_body![InvalidToken, TokenExpired, DatabaseUnavailable];

    fn failure(self) -> Failure {
        match self {
            Self::Auth(a) => a.failure(),
            Self::InvalidUrl(detail) => Failure::new(C::InvalidRequest)
                .with_message(
                    "the Host header does not make a URL for the avatar",
                    "无法用 Host 头拼出头像的网址",
                )
                .with_detail(detail),
            Self::TooLarge { limit } => Failure::new(C::PayloadTooLarge).with_message(
                format!("the image is larger than {limit} bytes"),
                format!("图片超过 {limit} 字节"),
            ),
            Self::Unexpected(detail) => Failure::new(C::Internal).with_detail(detail),
        }
    }
}

/// `GET /avatars/{id}`.
impl ErrorSet for AvatarError {
    const CODES: &'static [ErrorCode] = &[C::NotFound, C::DatabaseUnavailable, C::Internal];

    fn failure(self) -> Failure {
        match self {
            Self::NotFound => {
                Failure::new(C::NotFound).with_message("no such avatar", "头像不存在")
            }
            Self::Store(s) => s.into(),
        }
    }
}

/// `/updateUserInfo` and `POST /api/v1/me/profile/encrypted`.
impl ErrorSet for UpdateUserInfoError {
    const CODES: &'static [ErrorCode] = with_body![
        InvalidCode,
        CodeUsed,
        InvalidToken,
        TokenExpired,
        RiskyUser,
        DecryptFailed,
        SignatureMismatch,
        WechatRateLimited,
        WechatError,
        WechatUnavailable,
        DatabaseUnavailable,
    ];

    fn failure(self) -> Failure {
        match self {
            Self::Auth(a) => a.failure(),
            Self::InvalidRequest(what) => Failure::new(C::InvalidRequest).with_reason(what),
            Self::Cipher(c) => c.into(),
            Self::WeChat(w) => w.into(),
            Self::CodeForAnotherUser => {
                Failure::new(C::InvalidCode).with_message(ANOTHER_USER, ANOTHER_USER_ZH)
            }
            Self::Store(s) => s.into(),
            Self::Unexpected(detail) => Failure::new(C::Internal).with_detail(detail),
        }
    }
}

/// `POST /api/v1/me/phone`.
impl ErrorSet for PhoneError {
    const CODES: &'static [ErrorCode] = with_body![
        InvalidCode,
        CodeUsed,
        InvalidToken,
        TokenExpired,
        RiskyUser,
        DecryptFailed,
        WechatRateLimited,
        WechatError,
        WechatUnavailable,
        DatabaseUnavailable,
    ];

    fn failure(self) -> Failure {
        match self {
            Self::Auth(a) => a.failure(),
            Self::InvalidPhoneCode => Failure::new(C::InvalidCode).with_message(
                "WeChat does not know this getPhoneNumber code (expired, used, or a wx.login \
                 code sent here by mistake: send the code the phone-number button gave)",
                "微信不认识这个 getPhoneNumber 的 code（已过期、已使用，或误把 wx.login 的 code \
                 发到了这里：请发送手机号按钮给出的 code）",
            ),
            Self::Cipher(c) => c.into(),
            Self::WeChat(w) => w.into(),
            Self::CodeForAnotherUser => {
                Failure::new(C::InvalidCode).with_message(ANOTHER_USER, ANOTHER_USER_ZH)
            }
            Self::Store(s) => s.into(),
            Self::NotRecorded(s) => Failure::from(s).with_message(
                "the number could not be saved and its code is used up: tap the phone-number \
                 button again (or call wx.login again) and send the new code",
                "手机号未能保存，且其 code 已用掉：请再点一次手机号按钮（或重新调用 wx.login）\
                 并发送新的 code",
            ),
            Self::Unexpected(detail) => Failure::new(C::Internal).with_detail(detail),
        }
    }
}

/// A code exchanged for another WeChat user than the session's.
const ANOTHER_USER: &str = "the code belongs to another WeChat user";
const ANOTHER_USER_ZH: &str = "这个 code 属于另一个微信用户";

/// A refused operator sign-in: the same answer for an unknown name and a wrong password.
fn refused_operator() -> Failure {
    Failure::new(C::InvalidToken).with_message(
        "unknown operator or wrong password",
        "操作员不存在或密码错误",
    )
}

/// `GET /admin/v1/stats`.
impl ErrorSet for AdminError {
    const CODES: &'static [ErrorCode] = &[C::InvalidToken, C::DatabaseUnavailable, C::Internal];

    fn failure(self) -> Failure {
        match self {
            Self::InvalidCredentials => refused_operator(),
            Self::Store(s) => s.into(),
        }
    }
}

/// `GET /admin/v1/users`: the search's errors, and its query values refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchUsersError(pub AdminError);

impl ErrorSet for SearchUsersError {
    const CODES: &'static [ErrorCode] = &[
        C::InvalidRequest,
        C::InvalidToken,
        C::DatabaseUnavailable,
        C::Internal,
    ];

    fn failure(self) -> Failure {
        self.0.failure()
    }
}

/// `GET /admin/v1/users/{id}`, `POST /admin/v1/users/{id}/revoke-sessions`.
impl ErrorSet for AdminUserError {
    const CODES: &'static [ErrorCode] = &[
        C::InvalidRequest,
        C::InvalidToken,
        C::NotFound,
        C::DatabaseUnavailable,
        C::Internal,
    ];

    fn failure(self) -> Failure {
        match self {
            Self::InvalidCredentials => refused_operator(),
            Self::UserNotFound => {
                Failure::new(C::NotFound).with_message("no user has this id", "没有此 ID 的用户")
            }
            Self::Store(s) => s.into(),
        }
    }
}

/// `/readyz`.
impl ErrorSet for StoreError {
    const CODES: &'static [ErrorCode] = &[C::DatabaseUnavailable, C::Internal];

    fn failure(self) -> Failure {
        self.into()
    }
}

/// Operations that cannot fail (`/healthz`).
impl ErrorSet for Infallible {
    const CODES: &'static [ErrorCode] = &[];

    fn failure(self) -> Failure {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxlogin_domain::Reason;

    fn wechat_errors() -> Vec<WeChatError> {
        vec![
            WeChatError::InvalidCode,
            WeChatError::CodeUsed,
            WeChatError::RateLimited,
            WeChatError::RiskyUser,
            WeChatError::Unavailable("x".into()),
            WeChatError::AccessTokenRejected("x".into()),
            WeChatError::Unexpected("x".into()),
        ]
    }

    fn store_errors() -> Vec<StoreError> {
        vec![
            StoreError::Unavailable("pool timed out".into()),
            StoreError::NotFound,
            StoreError::Unexpected("secret detail".into()),
        ]
    }

    fn auth_errors() -> Vec<AuthError> {
        let mut all = vec![AuthError::InvalidToken, AuthError::TokenExpired];
        all.extend(store_errors().into_iter().map(AuthError::Store));
        all
    }

    /// Every variant of `E` lands on a code its operations document.
    fn assert_within<E: ErrorSet + std::fmt::Debug + Clone>(errors: Vec<E>) {
        for e in errors {
            let failure = e.clone().failure();
            assert!(
                E::CODES.contains(&failure.code),
                "{e:?} became {:?}, which is not listed",
                failure.code
            );
        }
    }

    #[test]
    fn every_use_case_error_maps_inside_its_documented_codes() {
        let mut login: Vec<LoginError> = wechat_errors().into_iter().map(Into::into).collect();
        login.extend(store_errors().into_iter().map(LoginError::Store));
        login.extend(store_errors().into_iter().map(LoginError::Unavailable));
        login.push(LoginError::Unexpected("x".into()));
        assert_within(login);
        assert_within(auth_errors());
        let mut update: Vec<UpdateUserInfoError> =
            auth_errors().into_iter().map(Into::into).collect();
        update.extend(wechat_errors().into_iter().map(UpdateUserInfoError::WeChat));
        update.extend(store_errors().into_iter().map(UpdateUserInfoError::Store));
        update.extend([
            UpdateUserInfoError::InvalidRequest(InvalidValue::new(
                "rawData",
                Reason::ComesWithSignature,
            )),
            UpdateUserInfoError::Cipher(CipherError::InvalidInput(InvalidValue::new(
                "iv",
                Reason::NotBase64,
            ))),
            UpdateUserInfoError::Cipher(CipherError::DecryptFailed),
            UpdateUserInfoError::Cipher(CipherError::SignatureMismatch),
            UpdateUserInfoError::CodeForAnotherUser,
            UpdateUserInfoError::Unexpected("x".into()),
        ]);
        assert_within(update);
        assert_within(store_errors());
        let mut phone: Vec<PhoneError> = auth_errors().into_iter().map(Into::into).collect();
        phone.extend(wechat_errors().into_iter().map(PhoneError::WeChat));
        phone.extend(store_errors().into_iter().map(PhoneError::Store));
        phone.extend(store_errors().into_iter().map(PhoneError::NotRecorded));
        phone.extend([
            PhoneError::InvalidPhoneCode,
            PhoneError::Cipher(CipherError::DecryptFailed),
            PhoneError::Cipher(CipherError::InvalidInput(InvalidValue::new(
                "iv",
                Reason::NotBase64,
            ))),
            PhoneError::CodeForAnotherUser,
            PhoneError::Unexpected("x".into()),
        ]);
        assert_within(phone);
        let admin: Vec<AdminError> = std::iter::once(AdminError::InvalidCredentials)
            .chain(store_errors().into_iter().map(AdminError::Store))
            .collect();
        assert_within(admin.clone());
        assert_within(admin.into_iter().map(SearchUsersError).collect());
        let mut user: Vec<AdminUserError> = vec![
            AdminUserError::InvalidCredentials,
            AdminUserError::UserNotFound,
        ];
        user.extend(store_errors().into_iter().map(AdminUserError::Store));
        assert_within(user);
        assert_eq!(
            AdminUserError::UserNotFound.failure().code.as_str(),
            "not_found"
        );
        assert_eq!(
            AdminError::InvalidCredentials
                .failure()
                .code
                .status()
                .as_u16(),
            401
        );
        // A request value the domain refuses is invalid_request, listed wherever a body is.
        for codes in [LoginError::CODES, UpdateUserInfoError::CODES] {
            assert!(codes.contains(&ErrorCode::InvalidRequest));
        }
    }

    #[test]
    fn codes_are_unique_and_statuses_match_the_contract() {
        let strings: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(strings.len(), ErrorCode::ALL.len());
        let expected = [
            ("invalid_request", 400),
            ("invalid_code", 400),
            ("code_used", 400),
            ("decrypt_failed", 422),
            ("signature_mismatch", 422),
            ("invalid_token", 401),
            ("token_expired", 401),
            ("risky_user", 403),
            ("rate_limited", 429),
            ("wechat_rate_limited", 429),
            ("wechat_unavailable", 503),
            ("wechat_error", 502),
            ("database_unavailable", 503),
            ("payload_too_large", 413),
            ("unsupported_media_type", 415),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("internal", 500),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (code, status) in expected {
            let c = ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == code)
                .unwrap_or_else(|| panic!("{code} exists"));
            assert_eq!(c.status().as_u16(), status, "{code}");
        }
    }

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
            let f = Failure::from(err);
            assert_eq!((f.code.status().as_u16(), f.code.as_str()), (status, code));
        }
    }

    #[test]
    fn a_spent_code_is_named_in_the_answer() {
        let unavailable = || StoreError::Unavailable("pool timed out".into());
        let spent = PhoneError::NotRecorded(unavailable()).failure();
        assert_eq!(spent.code, C::DatabaseUnavailable);
        assert!(spent.message().contains("used up"), "{}", spent.message());
        let plain = PhoneError::Store(unavailable()).failure();
        assert!(!plain.message().contains("used up"), "{}", plain.message());
        let login = LoginError::Store(unavailable()).failure();
        assert!(login.message().contains("wx.login"), "{}", login.message());
        let before = LoginError::Unavailable(unavailable()).failure();
        assert_eq!(before.code, C::DatabaseUnavailable);
        assert!(
            !before.message().contains("wx.login"),
            "{}",
            before.message()
        );
    }

    #[test]
    fn internal_detail_is_logged_not_returned() {
        let f = Failure::from(StoreError::Unexpected("secret detail".into()));
        assert_eq!(f.code, ErrorCode::Internal);
        assert_eq!(f.detail(), Some("secret detail"));
        assert!(!f.message().contains("secret detail"));
        assert!(!f.body(Lang::En).message.contains("secret detail"));
        let f = Failure::from(StoreError::Unavailable("pool timed out".into()));
        assert_eq!(f.code, ErrorCode::DatabaseUnavailable);
        assert!(!f.message().contains("pool timed out"));
    }

    #[test]
    fn auth_and_cipher_errors() {
        assert_eq!(AuthError::TokenExpired.failure().code, C::TokenExpired);
        assert_eq!(
            AuthError::InvalidToken.failure().code.status().as_u16(),
            401
        );
        assert_eq!(
            Failure::from(CipherError::DecryptFailed)
                .code
                .status()
                .as_u16(),
            422
        );
        assert_eq!(
            Failure::from(CipherError::InvalidInput(InvalidValue::new(
                "iv",
                Reason::NotOneBlock
            )))
            .code,
            C::InvalidRequest
        );
        assert_eq!(
            UpdateUserInfoError::CodeForAnotherUser.failure().code,
            C::InvalidCode
        );
    }

    #[test]
    fn each_operation_documents_its_own_codes_by_status() {
        let meta = <ApiError<AuthError> as ApiResponse>::meta();
        let statuses: Vec<_> = meta.responses.iter().filter_map(|r| r.status).collect();
        // 429: an unknown token spends the address's budget, which can then refuse it.
        assert_eq!(statuses, [400, 401, 429, 500, 503]);
        let unauthorized = &meta.responses[1];
        assert!(unauthorized.description.contains("`invalid_token`"));
        assert!(unauthorized.description.contains("`token_expired`"));
        assert!(meta.responses[2].description.contains("`rate_limited`"));
        assert!(
            <ApiError<Infallible> as ApiResponse>::meta()
                .responses
                .is_empty()
        );
    }

    fn has_chinese(text: &str) -> bool {
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    async fn answer_of(failure: &Failure, lang: Lang) -> (poem::Response, serde_json::Value) {
        let mut response = failure.to_response(lang);
        let body = response.take_body().into_bytes().await.expect("body");
        (response, serde_json::from_slice(&body).expect("JSON"))
    }

    /// No code without its message in both languages: the answer in Simplified Chinese says
    /// it in Chinese, the English one in English, and the code and status never change.
    #[tokio::test]
    async fn every_code_answers_in_both_languages() {
        for &code in ErrorCode::ALL {
            let failure = Failure::new(code);
            let (zh, zh_body) = answer_of(&failure, Lang::ZhCn).await;
            let (en, en_body) = answer_of(&failure, Lang::En).await;
            for (response, body) in [(&zh, &zh_body), (&en, &en_body)] {
                assert_eq!(response.status(), code.status());
                assert_eq!(body["error"], code.as_str());
                assert_eq!(body["status"], code.status().as_u16());
                assert_eq!(response.headers()["vary"], "Accept-Language");
            }
            let zh_message = zh_body["message"].as_str().expect("message");
            let en_message = en_body["message"].as_str().expect("message");
            assert_eq!(zh_message, code.default_message_zh());
            assert_eq!(en_message, code.default_message());
            assert!(has_chinese(zh_message), "{code:?}: {zh_message}");
            assert!(en_message.is_ascii(), "{code:?}: {en_message}");
            assert_eq!(zh.headers()["content-language"], "zh-CN");
            assert_eq!(en.headers()["content-language"], "en");
        }
    }

    /// The messages a failure brings of its own (a refused value, a spent code …) come in
    /// both languages too.
    #[test]
    fn specific_messages_come_in_both_languages() {
        let mut failures = vec![
            Failure::from(CipherError::InvalidInput(InvalidValue::new(
                "iv",
                Reason::NotBase64,
            ))),
            LoginError::Store(StoreError::Unavailable("x".into())).failure(),
            UpdateUserInfoError::CodeForAnotherUser.failure(),
            PhoneError::InvalidPhoneCode.failure(),
            PhoneError::NotRecorded(StoreError::Unavailable("x".into())).failure(),
            UploadAvatarError::TooLarge { limit: 1024 }.failure(),
            UploadAvatarError::InvalidUrl("x".into()).failure(),
            AvatarError::NotFound.failure(),
            AdminError::InvalidCredentials.failure(),
            AdminUserError::UserNotFound.failure(),
        ];
        failures.extend(
            Reason::ALL
                .iter()
                .map(|&r| UpdateUserInfoError::InvalidRequest(InvalidValue::new("f", r)).failure()),
        );
        for failure in failures {
            let (en, zh) = (failure.message_in(Lang::En), failure.message_in(Lang::ZhCn));
            assert_ne!(en, failure.code.default_message(), "{failure:?}");
            assert!(has_chinese(zh), "{failure:?}");
            assert!(en.is_ascii(), "{failure:?}");
        }
        let too_large = UploadAvatarError::TooLarge { limit: 1024 }.failure();
        assert!(too_large.message_in(Lang::ZhCn).contains("1024"));
    }
}
