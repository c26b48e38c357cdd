//! The [`WeChat`] port over HTTP: a reqwest client for WeChat's server API.
//!
//! One client per app, built once, keeping connections alive, with connect and total
//! timeouts. Every API call goes through one request path (`request.rs`): a `Call` names the
//! API, its path, its query or JSON body and its secrets, and `WeChatHttp::call` sends it,
//! reads a capped body, parses JSON whatever the content type, classifies `errcode` from one
//! table (`errcode.rs`) and scrubs every secret of the call (app secret, code, access token,
//! phone code, `checksession` signature) from error texts and log fields. Each API is a thin
//! module on top (`jscode2session.rs`, `stable_token.rs`, `phone_number.rs`,
//! `check_session.rs`). Calls are never retried: codes are single use.
//!
//! This crate knows nothing of the server or the store; it only implements the domain port.

mod check_session;
mod errcode;
mod jscode2session;
mod phone_number;
mod request;
mod stable_token;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use url::Url;
use wxlogin_domain::{
    AccessToken, AppId, CodeSession, IssuedAccessToken, LoginCode, OpenId, PhoneCode, PhoneInfo,
    SessionKey, WeChat, WeChatError,
};

use crate::request::describe;

/// Idle pooled connections are closed before typical server keep-alive limits (60–75 s), so a
/// request is not sent on a connection the far end is just closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Where WeChat's server API is: an http(s) URL that cannot leak anything into logs (no
/// credentials, no query), checked once by [`BaseUrl::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    /// Scheme, host and optional path prefix, e.g. `https://api.weixin.qq.com` or a mock's
    /// `http://127.0.0.1:9000/wechat`.
    pub fn parse(base: &str) -> Result<Self, WeChatHttpError> {
        base_url(base).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// How to reach WeChat for one mini-program.
#[derive(Debug, Clone)]
pub struct WeChatHttpConfig {
    /// [`Self::DEFAULT_BASE_URL`] in production, the mock's address in development and tests.
    pub base_url: BaseUrl,
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
            base_url: BaseUrl(
                base_url(Self::DEFAULT_BASE_URL).expect("the default base URL is valid"),
            ),
            app_id,
            app_secret,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The rules a config must meet (the server checks them when it parses its settings).
    pub fn validate(&self) -> Result<(), WeChatHttpError> {
        if self.app_secret.expose_secret().trim().is_empty() {
            return Err(WeChatHttpError::MissingSecret);
        }
        if self.connect_timeout.is_zero() {
            return Err(WeChatHttpError::InvalidConnectTimeout);
        }
        if self.timeout.is_zero() {
            return Err(WeChatHttpError::InvalidTimeout);
        }
        Ok(())
    }
}

/// Why a client could not be built. Texts never hold the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatHttpError {
    #[error("invalid WeChat base URL: {0}")]
    InvalidBaseUrl(String),
    #[error("the WeChat app secret is empty")]
    MissingSecret,
    #[error("the connect timeout must be positive")]
    InvalidConnectTimeout,
    #[error("the timeout must be positive")]
    InvalidTimeout,
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
    /// Validated, ending in `/`: API paths are joined onto it.
    base: Url,
    /// Each API's URL, joined onto `base` once (a join parses the whole URL again).
    joined: std::sync::Mutex<std::collections::HashMap<&'static str, Url>>,
    app_id: AppId,
    app_secret: SecretString,
}

impl std::fmt::Debug for WeChatHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatHttp")
            .field("app_id", &self.inner.app_id)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Installs *ring* as the process's rustls crypto provider, if none is installed yet.
///
/// reqwest is built without a provider of its own (the workspace's `rustls-no-provider`, so
/// that aws-lc-rs is not compiled) and panics when a client is built before one is installed.
/// [`WeChatHttp::new`] calls this; anything else in the process that builds a
/// `reqwest::Client` (tests, xtask) calls it first. Idempotent: a provider installed earlier,
/// by this or anyone else, is kept.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all this asks for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl WeChatHttp {
    /// Builds the client once; call it at start-up, never per request.
    pub fn new(config: WeChatHttpConfig) -> Result<Self, WeChatHttpError> {
        config.validate()?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // reqwest retries protocol NACKs by default; a call must never be sent twice.
            .retry(reqwest::retry::never())
            // WeChat never redirects; following one would send the secret to another URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| WeChatHttpError::Client(describe(&err.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                base: config.base_url.0,
                joined: std::sync::Mutex::default(),
                app_id: config.app_id,
                app_secret: config.app_secret,
            }),
        })
    }
}

impl WeChat for WeChatHttp {
    fn app_id(&self) -> &AppId {
        &self.inner.app_id
    }

    async fn code_to_session(&self, code: &LoginCode) -> Result<CodeSession, WeChatError> {
        Ok(self.jscode2session(code).await?)
    }

    async fn stable_access_token(&self) -> Result<IssuedAccessToken, WeChatError> {
        Ok(self.stable_token().await?)
    }

    async fn phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, WeChatError> {
        Ok(self.get_user_phone_number(access_token, code).await?)
    }

    async fn check_session(
        &self,
        access_token: &AccessToken,
        open_id: &OpenId,
        session_key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        Ok(self
            .checksession(access_token, open_id, session_key)
            .await?)
    }
}

/// `base` checked to be an http(s) URL that cannot leak anything into logs (no credentials, no
/// query), ending in `/` so that API paths join onto it.
fn base_url(base: &str) -> Result<Url, WeChatHttpError> {
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
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_path_prefixes_and_refuse_leaky_urls() {
        let url = |b: &str| base_url(b).map(|u| u.join("sns/jscode2session").unwrap().to_string());
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
        assert_eq!(c.validate(), Err(WeChatHttpError::InvalidTimeout));
        assert!(matches!(
            WeChatHttp::new(c),
            Err(WeChatHttpError::InvalidTimeout)
        ));
        let mut c = config();
        c.connect_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Err(WeChatHttpError::InvalidConnectTimeout));
        assert!(matches!(
            BaseUrl::parse("not a url"),
            Err(WeChatHttpError::InvalidBaseUrl(_))
        ));
        assert_eq!(
            config().base_url.as_str(),
            "https://api.weixin.qq.com/",
            "the default is WeChat's, ready to join paths onto"
        );
    }
}
