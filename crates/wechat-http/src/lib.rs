//! The [`WeChat`] port over HTTP: a reqwest client for `GET /sns/jscode2session`.
//!
//! One client per app, built once, keeping connections alive, with connect and total
//! timeouts. An exchange is never retried (codes are single use: a retry after a timeout that
//! actually succeeded would answer 40163). Answers are classified by `errcode` alone, and the
//! body is parsed as JSON whatever its content type. Neither the app secret, the code, the
//! session key nor the request URL (its query holds the secret) ever reaches an error text or
//! a log line.
//!
//! This crate knows nothing of the server or the store; it only implements the domain port.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;
use wxlogin_domain::{
    AppId, CodeSession, LoginCode, OpenId, SessionKey, UnionId, WeChat, WeChatError,
};

/// Bodies larger than this are not a `jscode2session` answer (real ones are under 200 bytes);
/// the cap keeps a misbehaving proxy from making us buffer megabytes.
const MAX_BODY: usize = 64 * 1024;

/// Idle pooled connections are closed before typical server keep-alive limits (60–75 s), so a
/// request is not sent on a connection the far end is just closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// How to reach WeChat for one mini-program.
#[derive(Debug, Clone)]
pub struct WeChatHttpConfig {
    /// Scheme, host and optional path prefix; [`Self::DEFAULT_BASE_URL`] in production, the
    /// mock's address in development and tests.
    pub base_url: String,
    pub app_id: AppId,
    pub app_secret: SecretString,
    /// Time allowed to open a connection (default 2 s).
    pub connect_timeout: Duration,
    /// Time allowed for a whole exchange, connecting included (default 5 s).
    pub timeout: Duration,
}

impl WeChatHttpConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.weixin.qq.com";
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A config for WeChat itself with the default timeouts.
    pub fn new(app_id: AppId, app_secret: SecretString) -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            app_id,
            app_secret,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Why a client could not be built. Texts never hold the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatHttpError {
    #[error("invalid WeChat base URL: {0}")]
    InvalidBaseUrl(String),
    #[error("the WeChat app secret is empty")]
    MissingSecret,
    #[error("invalid WeChat timeout: {0}")]
    InvalidTimeout(&'static str),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The WeChat client. Clones share one connection pool.
#[derive(Clone)]
pub struct WeChatHttp {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    jscode2session: Url,
    app_id: AppId,
    app_secret: SecretString,
}

impl std::fmt::Debug for WeChatHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatHttp")
            .field("app_id", &self.inner.app_id)
            .field(
                "base",
                &self.inner.jscode2session.origin().ascii_serialization(),
            )
            .finish_non_exhaustive()
    }
}

impl WeChatHttp {
    /// Builds the client once; call it at start-up, never per request.
    pub fn new(config: WeChatHttpConfig) -> Result<Self, WeChatHttpError> {
        let jscode2session = endpoint(&config.base_url, "sns/jscode2session")?;
        if config.app_secret.expose_secret().trim().is_empty() {
            return Err(WeChatHttpError::MissingSecret);
        }
        if config.connect_timeout.is_zero() {
            return Err(WeChatHttpError::InvalidTimeout(
                "connect timeout must be positive",
            ));
        }
        if config.timeout.is_zero() {
            return Err(WeChatHttpError::InvalidTimeout("timeout must be positive"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // reqwest retries protocol NACKs by default; an exchange must never be sent twice.
            .retry(reqwest::retry::never())
            // WeChat never redirects; following one would send the secret to another URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| WeChatHttpError::Client(describe(&err.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                jscode2session,
                app_id: config.app_id,
                app_secret: config.app_secret,
            }),
        })
    }

    /// Replaces the code and the secret wherever they appear, and bounds the length, so
    /// text that came from outside (reqwest errors, `errmsg`) is safe to log or return.
    fn scrub(&self, text: &str, code: &LoginCode) -> String {
        let mut text = text.to_owned();
        for secret in [self.inner.app_secret.expose_secret(), code.as_str()] {
            if !secret.is_empty() {
                text = text.replace(secret, "[REDACTED]");
            }
        }
        if text.len() > 300 {
            let mut end = 300;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }

    fn transport_error(&self, err: reqwest::Error, code: &LoginCode) -> WeChatError {
        // The URL holds the secret and the code in its query: drop it before formatting.
        let err = err.without_url();
        let error = if err.is_timeout() {
            WeChatError::Unavailable("request to WeChat timed out".into())
        } else if err.is_connect() {
            WeChatError::Unavailable(format!(
                "cannot connect to WeChat: {}",
                self.scrub(&describe(&err), code)
            ))
        } else if err.is_builder() {
            WeChatError::Unexpected(format!(
                "cannot build the request: {}",
                self.scrub(&describe(&err), code)
            ))
        } else {
            WeChatError::Unavailable(format!(
                "request to WeChat failed: {}",
                self.scrub(&describe(&err), code)
            ))
        };
        tracing::warn!(app_id = %self.inner.app_id, error = %error, "jscode2session failed");
        error
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        code: &LoginCode,
    ) -> Result<Vec<u8>, WeChatError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(err, code))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                let error = WeChatError::Unexpected("response body too large".into());
                tracing::warn!(app_id = %self.inner.app_id, error = %error, "jscode2session failed");
                return Err(error);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn interpret(&self, body: &[u8], code: &LoginCode) -> Result<CodeSession, WeChatError> {
        let app_id = &self.inner.app_id;
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let Ok(answer) = serde_json::from_slice::<RawAnswer>(body) else {
            let error = WeChatError::Unexpected("response is not the expected JSON".into());
            tracing::warn!(%app_id, error = %error, bytes = body.len(), "jscode2session failed");
            return Err(error);
        };
        match answer.errcode {
            None | Some(0) => self.session(answer),
            Some(errcode) => {
                let errmsg = self.scrub(answer.errmsg.as_deref().unwrap_or(""), code);
                let error = classify(errcode);
                match &error {
                    WeChatError::Unexpected(_) if matches!(errcode, 40013 | 40125) => {
                        tracing::error!(
                            %app_id, errcode, %errmsg,
                            "WeChat rejected our credentials: the configured app id or app secret \
                             is wrong (check wechat.app_id / wechat.app_secret)"
                        );
                    }
                    WeChatError::Unavailable(_) | WeChatError::Unexpected(_) => {
                        tracing::warn!(%app_id, errcode, %errmsg, "jscode2session failed");
                    }
                    // The user's or the client's doing, not ours: worth a trace, not an alert.
                    _ => tracing::info!(%app_id, errcode, %errmsg, "jscode2session refused"),
                }
                Err(error)
            }
        }
    }

    fn session(&self, answer: RawAnswer) -> Result<CodeSession, WeChatError> {
        let unexpected = |what: &str| {
            let error = WeChatError::Unexpected(what.to_owned());
            tracing::warn!(app_id = %self.inner.app_id, error = %error, "jscode2session failed");
            error
        };
        let open_id = answer
            .openid
            .as_deref()
            .ok_or_else(|| unexpected("answer has no openid"))
            .and_then(|o| {
                OpenId::parse(o).map_err(|_| unexpected("answer has an invalid openid"))
            })?;
        let session_key = answer
            .session_key
            .as_deref()
            .ok_or_else(|| unexpected("answer has no session_key"))
            .and_then(|k| {
                SessionKey::from_base64(k)
                    .map_err(|_| unexpected("answer has an invalid session_key"))
            })?;
        let union_id = match answer.unionid.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                Some(UnionId::parse(u).map_err(|_| unexpected("answer has an invalid unionid"))?)
            }
        };
        tracing::debug!(app_id = %self.inner.app_id, %open_id, "jscode2session succeeded");
        Ok(CodeSession {
            open_id,
            union_id,
            session_key,
        })
    }
}

impl WeChat for WeChatHttp {
    fn app_id(&self) -> &AppId {
        &self.inner.app_id
    }

    async fn code_to_session(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        let inner = &*self.inner;
        // `.query()` percent-encodes every value, so a code or secret holding `&`, `+` or `=`
        // cannot change the request.
        let response = inner
            .client
            .get(inner.jscode2session.clone())
            .query(&[
                ("appid", inner.app_id.as_str()),
                ("secret", inner.app_secret.expose_secret()),
                ("js_code", code.as_str()),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|err| self.transport_error(err, code))?;
        let status = response.status();
        if status.is_server_error() {
            let error =
                WeChatError::Unavailable(format!("WeChat answered HTTP {}", status.as_u16()));
            tracing::warn!(app_id = %inner.app_id, error = %error, "jscode2session failed");
            return Err(error);
        }
        if !status.is_success() {
            let error =
                WeChatError::Unexpected(format!("WeChat answered HTTP {}", status.as_u16()));
            tracing::warn!(app_id = %inner.app_id, error = %error, "jscode2session failed");
            return Err(error);
        }
        let body = self.read_body(response, code).await?;
        self.interpret(&body, code)
    }
}

/// `jscode2session`'s answer, success and error fields together; WeChat sends one or the other.
#[derive(Deserialize)]
struct RawAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

/// Maps a non-zero `errcode` to the domain's error. Matching on `errcode` only: `errmsg`
/// changes with every call.
fn classify(errcode: i64) -> WeChatError {
    match errcode {
        40029 => WeChatError::InvalidCode,
        40163 => WeChatError::CodeUsed,
        45011 => WeChatError::RateLimited,
        40226 => WeChatError::RiskyUser,
        -1 => WeChatError::Unavailable("WeChat is busy (errcode -1)".into()),
        40013 => WeChatError::Unexpected("WeChat rejected the app id (errcode 40013)".into()),
        40125 => WeChatError::Unexpected("WeChat rejected the app secret (errcode 40125)".into()),
        other => WeChatError::Unexpected(format!("WeChat answered errcode {other}")),
    }
}

/// `base` joined with `path`, after checking that `base` is an http(s) URL that cannot leak
/// anything into logs (no credentials, no query).
fn endpoint(base: &str, path: &str) -> Result<Url, WeChatHttpError> {
    let invalid = |reason: &str| WeChatHttpError::InvalidBaseUrl(reason.to_owned());
    let mut url = Url::parse(base.trim()).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(invalid("a host is required"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    // Without a trailing slash, `join` would replace the last path segment instead of
    // appending to it (a prefix like `/wechat` would be lost).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join(path).map_err(|err| invalid(&err.to_string()))
}

/// An error and its sources on one line (reqwest's own Display stops at the outermost error).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their inner error's text; skip the echo.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_path_prefixes_and_refuse_leaky_urls() {
        let url = |b: &str| endpoint(b, "sns/jscode2session").map(|u| u.to_string());
        assert_eq!(
            url("https://api.weixin.qq.com"),
            Ok("https://api.weixin.qq.com/sns/jscode2session".into())
        );
        assert_eq!(
            url("http://127.0.0.1:9/wechat"),
            Ok("http://127.0.0.1:9/wechat/sns/jscode2session".into())
        );
        assert_eq!(
            url("http://127.0.0.1:9/wechat/"),
            Ok("http://127.0.0.1:9/wechat/sns/jscode2session".into())
        );
        for bad in [
            "",
            "api.weixin.qq.com",
            "ftp://api.weixin.qq.com",
            "https://u:p@api.weixin.qq.com",
            "https://api.weixin.qq.com/?x=1",
            "https://api.weixin.qq.com/#f",
        ] {
            assert!(
                matches!(url(bad), Err(WeChatHttpError::InvalidBaseUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn errcodes_map_to_domain_errors() {
        assert_eq!(classify(40029), WeChatError::InvalidCode);
        assert_eq!(classify(40163), WeChatError::CodeUsed);
        assert_eq!(classify(45011), WeChatError::RateLimited);
        assert_eq!(classify(40226), WeChatError::RiskyUser);
        assert!(matches!(classify(-1), WeChatError::Unavailable(_)));
        assert!(matches!(classify(40013), WeChatError::Unexpected(_)));
        assert!(matches!(classify(40125), WeChatError::Unexpected(_)));
        assert!(matches!(classify(12345), WeChatError::Unexpected(_)));
    }

    #[test]
    fn config_is_validated() {
        let config = || {
            WeChatHttpConfig::new(
                AppId::parse("wxapp").unwrap(),
                SecretString::from("secret".to_owned()),
            )
        };
        assert!(WeChatHttp::new(config()).is_ok());
        let mut c = config();
        c.app_secret = SecretString::from(" ".to_owned());
        assert_eq!(
            WeChatHttp::new(c).err(),
            Some(WeChatHttpError::MissingSecret)
        );
        let mut c = config();
        c.timeout = Duration::ZERO;
        assert!(matches!(
            WeChatHttp::new(c),
            Err(WeChatHttpError::InvalidTimeout(_))
        ));
        let mut c = config();
        c.base_url = "not a url".into();
        assert!(matches!(
            WeChatHttp::new(c),
            Err(WeChatHttpError::InvalidBaseUrl(_))
        ));
    }

    #[test]
    fn scrub_removes_secret_and_code_and_bounds_length() {
        let client = WeChatHttp::new(WeChatHttpConfig::new(
            AppId::parse("wxapp").unwrap(),
            SecretString::from("topsecret".to_owned()),
        ))
        .unwrap();
        let code = LoginCode::parse("thecode").unwrap();
        let text = client.scrub("x topsecret y thecode z", &code);
        assert_eq!(text, "x [REDACTED] y [REDACTED] z");
        assert!(client.scrub(&"字".repeat(500), &code).len() <= 304);
    }
}
