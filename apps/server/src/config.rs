//! Configuration, in layers: built-in defaults → `wxlogin.toml` in the working directory (or
//! the file named by `--config` / `WXLOGIN_CONFIG`) → environment `WXLOGIN__SECTION__KEY`.
//! Every key is documented in `wxlogin.example.toml`.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub wechat: WeChatSettings,
    pub session: SessionSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub addr: String,
    /// Largest request body accepted, in bytes (also enforced without `Content-Length`).
    pub body_limit_bytes: usize,
    /// How long SIGTERM/SIGINT waits for in-flight requests before exiting.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            body_limit_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` (the embedded default) or `postgres://user@host/db`.
    pub url: String,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://wxlogin.db?mode=rwc".into(),
        }
    }
}

/// Which WeChat the server talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeChatMode {
    /// The built-in mock WeChat, in process, with its control API under `/mock`.
    Mock,
    /// The real WeChat server API over HTTP (`base_url`).
    Http,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeChatSettings {
    /// `mock` or `http`; when unset, `http` if an app secret is configured, else `mock`.
    pub mode: Option<WeChatMode>,
    pub base_url: String,
    pub app_id: Option<String>,
    pub app_secret: Option<SecretString>,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
}

/// The app id the in-process mock WeChat uses when none is configured.
pub const MOCK_APP_ID: &str = "wx0000000000000000";

impl Default for WeChatSettings {
    fn default() -> Self {
        Self {
            mode: None,
            base_url: "https://api.weixin.qq.com".into(),
            app_id: None,
            app_secret: None,
            connect_timeout_ms: 2_000,
            timeout_ms: 5_000,
        }
    }
}

impl WeChatSettings {
    /// The mode in effect: explicit, else `mock` only when no app credential at all is
    /// configured. A configured app id with a missing secret (a deploy whose secret was not
    /// injected) must fail at start, never fall back to the mock and its open control API.
    pub fn resolved_mode(&self) -> WeChatMode {
        let configured = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
        self.mode.unwrap_or(
            if configured(self.app_id.as_deref())
                || configured(self.app_secret.as_ref().map(ExposeSecret::expose_secret))
            {
                WeChatMode::Http
            } else {
                WeChatMode::Mock
            },
        )
    }

    /// The app id in effect (the mock has a default one).
    pub fn resolved_app_id(&self) -> &str {
        self.app_id.as_deref().unwrap_or(MOCK_APP_ID)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Absolute lifetime of a session token, in seconds (default 30 days).
    pub ttl_secs: i64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            ttl_secs: 30 * 24 * 3600,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `wxlogin_server=debug,info`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Which store a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl Settings {
    /// Loads the layers. `file`: an explicit config file (must exist); otherwise
    /// `wxlogin.toml` in the working directory is read when present.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        builder = match file {
            Some(path) => builder.add_source(config::File::from(path).required(true)),
            None => builder.add_source(config::File::with_name("wxlogin.toml").required(false)),
        };
        builder = builder.add_source(
            config::Environment::with_prefix("WXLOGIN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false),
        );
        let settings: Self = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: addresses, URLs, required pairs, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.server.addr.parse::<SocketAddr>().is_err() {
            return bad("server.addr", "must be host:port, e.g. 127.0.0.1:8080");
        }
        if self.server.body_limit_bytes < 1024 {
            return bad("server.body_limit_bytes", "must be at least 1024");
        }
        self.store_kind()?;
        // Ten years at most: beyond that, date arithmetic overflows and no session needs it.
        if self.session.ttl_secs <= 0 || self.session.ttl_secs > 10 * 366 * 24 * 3600 {
            return bad(
                "session.ttl_secs",
                "must be between 1 and 316224000 (ten years)",
            );
        }
        if self.wechat.timeout_ms == 0 || self.wechat.connect_timeout_ms == 0 {
            return bad("wechat.timeout_ms", "timeouts must be positive");
        }
        if let Some(id) = &self.wechat.app_id
            && wxlogin_domain::AppId::parse(id).is_err()
        {
            return bad("wechat.app_id", "must be a non-empty printable app id");
        }
        // The implicit mock (no credentials at all) is for a developer's machine: its control
        // API mints login codes for any openid, so it never listens beyond loopback unless
        // asked for by name.
        if self.wechat.mode.is_none()
            && self.wechat.resolved_mode() == WeChatMode::Mock
            && self
                .server
                .addr
                .parse::<SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback())
        {
            return bad(
                "wechat.app_secret",
                "no WeChat credentials are configured, so the built-in mock WeChat would serve \
                 its control API on a non-loopback address; set wechat.app_id and \
                 wechat.app_secret, or wechat.mode = \"mock\" to really want the mock",
            );
        }
        if self.wechat.resolved_mode() == WeChatMode::Http {
            if self.wechat.app_id.is_none() {
                return bad("wechat.app_id", "is required when wechat.mode is http");
            }
            if self
                .wechat
                .app_secret
                .as_ref()
                .is_none_or(|s| s.expose_secret().is_empty())
            {
                return bad("wechat.app_secret", "is required when wechat.mode is http");
            }
            if !(self.wechat.base_url.starts_with("https://")
                || self.wechat.base_url.starts_with("http://"))
            {
                return bad("wechat.base_url", "must be an http(s) URL");
            }
        }
        Ok(())
    }

    /// The store the database URL selects.
    pub fn store_kind(&self) -> Result<StoreKind, ConfigError> {
        let url = self.database.url.as_str();
        if url.starts_with("sqlite:") {
            Ok(StoreKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreKind::Postgres)
        } else {
            Err(ConfigError(
                "database.url: must start with sqlite: or postgres:// \
                 (e.g. sqlite://wxlogin.db?mode=rwc)"
                    .into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::default();
        assert_eq!(s.server.addr, "127.0.0.1:8080");
        assert_eq!(s.database.url, "sqlite://wxlogin.db?mode=rwc");
        assert_eq!(s.wechat.resolved_mode(), WeChatMode::Mock);
        assert_eq!(s.wechat.base_url, "https://api.weixin.qq.com");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_secret_selects_http_and_needs_an_app_id() {
        let mut s = Settings::default();
        s.wechat.app_secret = Some(SecretString::from("topsecret"));
        assert_eq!(s.wechat.resolved_mode(), WeChatMode::Http);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("wechat.app_id"), "{err}");
        assert!(!err.contains("topsecret"));
        s.wechat.app_id = Some("wx1234567890abcdef".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn an_app_id_without_a_secret_never_falls_back_to_the_mock() {
        let mut s = Settings::default();
        s.wechat.app_id = Some("wx1234567890abcdef".into());
        assert_eq!(s.wechat.resolved_mode(), WeChatMode::Http);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("wechat.app_secret"), "{err}");
        // An explicit mock is the operator's choice.
        s.wechat.mode = Some(WeChatMode::Mock);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_implicit_mock_stays_on_loopback() {
        let mut s = Settings::default();
        s.server.addr = "0.0.0.0:8080".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("wechat.app_secret"), "{err}");
        s.server.addr = "[::1]:8080".into();
        assert!(s.validate().is_ok());
        s.server.addr = "0.0.0.0:8080".into();
        s.wechat.mode = Some(WeChatMode::Mock);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn session_lifetime_is_bounded() {
        let mut s = Settings::default();
        s.session.ttl_secs = i64::MAX;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("session.ttl_secs")
        );
        s.session.ttl_secs = 10 * 365 * 24 * 3600;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut s = Settings::default();
        s.server.addr = "nonsense".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("server.addr")
        );
        let mut s = Settings::default();
        s.database.url = "mysql://x".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("database.url")
        );
        s.database.url = "postgresql://u@db.example.com/wx".into();
        assert_eq!(s.store_kind().unwrap(), StoreKind::Postgres);
        let mut s = Settings::default();
        s.session.ttl_secs = 0;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("session.ttl_secs")
        );
    }

    #[test]
    fn file_layer_is_read_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxlogin.toml");
        std::fs::write(
            &path,
            "[server]\naddr = \"127.0.0.1:9999\"\n[wechat]\nmode = \"mock\"\napp_id = \"wxabc\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.server.addr, "127.0.0.1:9999");
        assert_eq!(s.wechat.resolved_app_id(), "wxabc");

        std::fs::write(&path, "[server]\nadress = \"x\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
    }
}
