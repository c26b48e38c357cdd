//! Configuration in two steps. [`Settings`] is what the layers say — built-in defaults →
//! `wxlogin.toml` in the working directory (or the file named by `--config` /
//! `WXLOGIN_CONFIG`) → environment `WXLOGIN__SECTION__KEY` — and [`Settings::parse`] turns it,
//! once, at start, into the typed [`Config`] the composition root runs on: socket addresses,
//! durations, the store and WeChat choices carrying their own options. Nothing downstream
//! parses a string again.
//!
//! A key left unset stays `None` here and takes the default of the part that owns it (the
//! store's options, the WeChat client's config, the service's config), so no default is
//! written twice. Every key is documented in `wxlogin.example.toml`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wxlogin_domain::StoreError;
use wxlogin_domain::{AppId, ServiceConfig};
use wxlogin_store_postgres::{PostgresLocation, PostgresOptions};
use wxlogin_store_sqlite::{SqliteLocation, SqliteOptions};
use wxlogin_wechat_http::{BaseUrl, WeChatHttpConfig, WeChatHttpError};

use crate::http::HttpConfig;
use crate::listener::ConnectionLimits;

mod admin;
pub use admin::{AdminSettings, OperatorSettings};
mod limits;
pub use limits::{LimitsSettings, TrustedProxies};

/// The app id the in-process mock WeChat uses when none is configured.
pub const MOCK_APP_ID: &str = "wx0000000000000000";

/// Everything the file and the environment say, before it is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub wechat: WeChatSettings,
    pub session: SessionSettings,
    pub log: LogSettings,
    /// `[[admin.users]]`: the operators of `/admin/v1`.
    pub admin: AdminSettings,
    /// `[limits]`: budgets of failed attempts, the cap on concurrent WeChat calls.
    pub limits: LimitsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub addr: String,
    /// Largest request body accepted, in bytes (also enforced without `Content-Length`);
    /// unset: [`HttpConfig::default`].
    pub body_limit_bytes: Option<usize>,
    /// How long SIGTERM/SIGINT waits for in-flight requests before exiting.
    pub shutdown_grace_secs: u64,
    /// How long a client has to send a whole request head, from the moment the server waits
    /// for it; unset: [`ConnectionLimits::default`].
    pub header_read_timeout_ms: Option<u64>,
    /// How long a client has to send a whole request body; unset: [`HttpConfig::default`].
    pub body_read_timeout_ms: Option<u64>,
    /// An idle keep-alive connection is closed after this long; unset:
    /// [`ConnectionLimits::default`].
    pub keep_alive_timeout_secs: Option<u64>,
    /// Peers (CIDRs) whose `X-Forwarded-For` names the client; none by default.
    pub trusted_proxies: TrustedProxies,
    /// Where clients reach this server (`https://api.example.com`, or with a path prefix), for
    /// the absolute URLs of uploaded avatars; unset: `http://` and the request's `Host`.
    pub public_url: Option<String>,
    /// Largest avatar accepted by `POST /api/v1/me/avatar`, in bytes; unset: 1 MiB.
    pub avatar_limit_bytes: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            body_limit_bytes: None,
            shutdown_grace_secs: 10,
            header_read_timeout_ms: None,
            body_read_timeout_ms: None,
            keep_alive_timeout_secs: None,
            trusted_proxies: TrustedProxies::default(),
            public_url: None,
            avatar_limit_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` (the embedded default) or `postgres://user@host/db`.
    pub url: String,
    /// How long an authenticated lookup is answered from the session cache, in ms (default
    /// 10,000; 0 turns the cache off). See docs/storage.md, "Session cache".
    pub session_cache_ms: Option<u64>,
    /// Options of the SQLite store (used when `url` is `sqlite:…`).
    pub sqlite: SqliteSettings,
    /// Options of the Postgres store (used when `url` is `postgres://…`).
    pub postgres: PostgresSettings,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://wxlogin.db?mode=rwc".into(),
            session_cache_ms: None,
            sqlite: SqliteSettings::default(),
            postgres: PostgresSettings::default(),
        }
    }
}

/// `[database.sqlite]`; unset keys take [`SqliteOptions::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteSettings {
    pub reader_connections: Option<u32>,
    pub acquire_timeout_ms: Option<u64>,
    pub busy_timeout_ms: Option<u64>,
}

/// `[database.postgres]`; unset keys take [`PostgresOptions::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    pub max_connections: Option<u32>,
    pub acquire_timeout_ms: Option<u64>,
    pub statement_timeout_ms: Option<u64>,
    pub lock_timeout_ms: Option<u64>,
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

/// `[wechat]`; unset timeouts and base URL take [`WeChatHttpConfig`]'s defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeChatSettings {
    /// `mock` or `http`; when unset, `mock` only if no app credential at all is configured.
    pub mode: Option<WeChatMode>,
    pub base_url: Option<String>,
    pub app_id: Option<String>,
    pub app_secret: Option<SecretString>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// The service's own bound on every WeChat call, whatever the adapter (the in-process
    /// mock too); unset: [`ServiceConfig::default`].
    pub service_timeout_ms: Option<u64>,
    /// Further mini-programs served by this backend (`[[wechat.apps]]`); they share
    /// `mode`, `base_url` and the timeouts.
    pub apps: Vec<WeChatAppSettings>,
}

/// One `[[wechat.apps]]` entry: a mini-program, by name, with its credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeChatAppSettings {
    /// How logs and the operators call it (1–64 printable characters).
    pub name: Option<String>,
    pub app_id: Option<String>,
    pub app_secret: Option<SecretString>,
}

/// `[session]`; unset keys take [`ServiceConfig::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Absolute lifetime of a session token, in seconds.
    pub ttl_secs: Option<i64>,
    /// A session unused for this long, in seconds, has expired.
    pub idle_timeout_secs: Option<i64>,
    /// How often ended sessions (and their session keys) are purged, in seconds.
    pub purge_interval_secs: Option<u64>,
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

/// The configuration the server runs on, checked and typed.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// The store's session cache (`None`: off).
    pub session_cache: Option<wxlogin_store_sqlite::CacheSettings>,
    pub wechat: WeChatConfig,
    pub service: ServiceConfig,
    pub log: LogSettings,
    /// Who may use `/admin/v1` (none: nobody).
    pub operators: Vec<wxlogin_domain::OperatorAccount>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub http: HttpConfig,
    /// Bounds on reading request heads and on idle keep-alive connections.
    pub connections: ConnectionLimits,
    pub shutdown_grace: Duration,
    /// How often the background task purges ended sessions.
    pub purge_interval: Duration,
    /// WeChat calls in flight at once, over every app (`limits.wechat_concurrency`).
    pub wechat_concurrency: usize,
}

/// The server's own default for `session.purge_interval_secs`: hourly.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The store the database URL picks, where it is (parsed) and its options. `Debug` shows no
/// password: the locations redact it.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite {
        location: SqliteLocation,
        options: SqliteOptions,
    },
    Postgres {
        location: PostgresLocation,
        options: PostgresOptions,
    },
}

/// The WeChat the server talks to, for each mini-program it serves. Each list holds at least
/// one app, and its first is the default app (see [`WeChatSettings::parse`]).
#[derive(Debug, Clone)]
pub enum WeChatConfig {
    /// The in-process mock, one per app. `implicit`: chosen because no credential is
    /// configured, not by `wechat.mode`.
    Mock {
        apps: Vec<WeChatApp<AppId>>,
        implicit: bool,
    },
    /// WeChat's server API over HTTP, one client per app.
    Http(Vec<WeChatApp<WeChatHttpConfig>>),
}

/// A mini-program: its name, and what the server talks to WeChat with for it (the mock's
/// app id, or the HTTP client's configuration).
#[derive(Debug, Clone)]
pub struct WeChatApp<T> {
    pub name: String,
    pub wechat: T,
}

impl WeChatConfig {
    /// The default app's id.
    pub fn app_id(&self) -> &AppId {
        match self {
            Self::Mock { apps, .. } => &apps[0].wechat,
            Self::Http(apps) => &apps[0].wechat.app_id,
        }
    }

    /// Every app's id, the default first.
    pub fn app_ids(&self) -> Vec<&AppId> {
        match self {
            Self::Mock { apps, .. } => apps.iter().map(|a| &a.wechat).collect(),
            Self::Http(apps) => apps.iter().map(|a| &a.wechat.app_id).collect(),
        }
    }
}

/// The name of the app that `wechat.app_id` configures.
const DEFAULT_APP_NAME: &str = "default";

fn bad<T>(key: &str, why: &str) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{key}: {why}")))
}

/// Milliseconds as a duration; whether the value is allowed is the owning part's rule.
fn millis(value: Option<u64>) -> Option<Duration> {
    value.map(Duration::from_millis)
}

/// A store's refusal of an option, named by its configuration key: `fields` pairs each
/// option's name in the store's message with its key in `section`.
fn store_option_error(section: &str, fields: &[(&str, &str)], e: &StoreError) -> ConfigError {
    let text = e.to_string();
    let key = fields
        .iter()
        .find(|(field, _)| text.contains(&format!("::{field}:")))
        .map_or_else(|| section.to_owned(), |(_, key)| format!("{section}.{key}"));
    ConfigError(format!("{key}: {text}"))
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
        builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks everything and types it: the one validation step.
    pub fn parse(self) -> Result<Config, ConfigError> {
        let addr: SocketAddr = self
            .server
            .addr
            .parse()
            .or_else(|_| bad("server.addr", "must be host:port, e.g. 127.0.0.1:8080"))?;
        let mut http = HttpConfig::default();
        if let Some(limit) = self.server.body_limit_bytes {
            if limit < 1024 {
                return bad("server.body_limit_bytes", "must be at least 1024");
            }
            http.body_limit = limit;
        }
        if let Some(limit) = self.server.avatar_limit_bytes {
            if !(1024..=64 * 1024 * 1024).contains(&limit) {
                return bad(
                    "server.avatar_limit_bytes",
                    "must be between 1024 and 67108864",
                );
            }
            http.avatars.limit = limit;
        }
        if let Some(url) = &self.server.public_url {
            let url = url.trim_end_matches('/');
            // An avatar's URL must pass the profile's own check.
            if wxlogin_domain::AvatarUrl::parse(&format!("{url}/avatars/x")).is_err()
                || url.contains(['?', '#'])
            {
                return bad(
                    "server.public_url",
                    "must be an http(s) URL without query, e.g. https://api.example.com",
                );
            }
            http.avatars.public_url = Some(url.to_owned());
        }
        if let Some(ms) = self.server.body_read_timeout_ms {
            if ms == 0 || ms > 3_600_000 {
                return bad(
                    "server.body_read_timeout_ms",
                    "must be between 1 and 3600000",
                );
            }
            http.body_read_timeout = Duration::from_millis(ms);
        }
        let mut connections = ConnectionLimits::default();
        if let Some(ms) = self.server.header_read_timeout_ms {
            if ms == 0 || ms > 3_600_000 {
                return bad(
                    "server.header_read_timeout_ms",
                    "must be between 1 and 3600000",
                );
            }
            connections.header_read_timeout = Duration::from_millis(ms);
        }
        if let Some(secs) = self.server.keep_alive_timeout_secs {
            if secs == 0 || secs > 86_400 {
                return bad(
                    "server.keep_alive_timeout_secs",
                    "must be between 1 and 86400",
                );
            }
            connections.keep_alive_timeout = Duration::from_secs(secs);
        }
        let (limits, wechat_concurrency) = self.limits.parse(&self.server.trusted_proxies)?;
        http.limits = limits;
        // Checked here, once: the subscriber would silently drop a directive it cannot read.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return bad("log.filter", &e.to_string());
        }
        let server = ServerConfig {
            addr,
            http,
            connections,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            purge_interval: PURGE_INTERVAL,
            wechat_concurrency,
        };
        let session_cache = match self.database.session_cache_ms {
            Some(0) => None,
            Some(ms) if ms > 3_600_000 => {
                return bad(
                    "database.session_cache_ms",
                    "must be at most 3600000 (an hour)",
                );
            }
            ms => Some(wxlogin_store_sqlite::CacheSettings {
                lifetime: millis(ms)
                    .unwrap_or_else(|| wxlogin_store_sqlite::CacheSettings::default().lifetime),
                ..wxlogin_store_sqlite::CacheSettings::default()
            }),
        };
        let store = self.database.parse()?;
        let service_timeout_ms = self.wechat.service_timeout_ms;
        let wechat = self.wechat.parse(addr)?;
        let mut server = server;
        if let Some(secs) = self.session.purge_interval_secs {
            if secs == 0 {
                return bad("session.purge_interval_secs", "must be at least 1");
            }
            server.purge_interval = Duration::from_secs(secs);
        }
        let mut service = self.session.parse()?;
        if let Some(ms) = service_timeout_ms {
            // The instance fetching the access token holds the store's lease on it for the
            // call: a bound beyond the lease would let a second instance fetch meanwhile.
            let lease = service.access_token_lease.to_std().unwrap_or(Duration::MAX);
            let timeout = Duration::from_millis(ms);
            if ms == 0 || timeout >= lease {
                return bad(
                    "wechat.service_timeout_ms",
                    &format!(
                        "must be at least 1 and below the access-token lease ({} ms)",
                        lease.as_millis()
                    ),
                );
            }
            service.wechat_timeout = timeout;
        }
        let operators = self.admin.parse()?;
        Ok(Config {
            server,
            store,
            session_cache,
            wechat,
            service,
            log: self.log,
            operators,
        })
    }
}

impl DatabaseSettings {
    fn parse(self) -> Result<StoreConfig, ConfigError> {
        let url = self.url.trim();
        let bad_url = |e: StoreError| ConfigError(format!("database.url: {e}"));
        if url.starts_with("sqlite:") {
            let s = self.sqlite;
            let defaults = SqliteOptions::default();
            let options = SqliteOptions {
                reader_connections: s.reader_connections.unwrap_or(defaults.reader_connections),
                acquire_timeout: millis(s.acquire_timeout_ms).unwrap_or(defaults.acquire_timeout),
                busy_timeout: millis(s.busy_timeout_ms).unwrap_or(defaults.busy_timeout),
            };
            options.validate().map_err(|e| {
                store_option_error(
                    "database.sqlite",
                    &[
                        ("reader_connections", "reader_connections"),
                        ("acquire_timeout", "acquire_timeout_ms"),
                        ("busy_timeout", "busy_timeout_ms"),
                    ],
                    &e,
                )
            })?;
            let location = SqliteLocation::parse(url).map_err(bad_url)?;
            Ok(StoreConfig::Sqlite { location, options })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let p = self.postgres;
            let defaults = PostgresOptions::default();
            let options = PostgresOptions {
                max_connections: p.max_connections.unwrap_or(defaults.max_connections),
                acquire_timeout: millis(p.acquire_timeout_ms).unwrap_or(defaults.acquire_timeout),
                statement_timeout: millis(p.statement_timeout_ms)
                    .unwrap_or(defaults.statement_timeout),
                lock_timeout: millis(p.lock_timeout_ms).unwrap_or(defaults.lock_timeout),
            };
            options.validate().map_err(|e| {
                store_option_error(
                    "database.postgres",
                    &[
                        ("max_connections", "max_connections"),
                        ("acquire_timeout", "acquire_timeout_ms"),
                        ("statement_timeout", "statement_timeout_ms"),
                        ("lock_timeout", "lock_timeout_ms"),
                    ],
                    &e,
                )
            })?;
            let location = PostgresLocation::parse(url).map_err(bad_url)?;
            Ok(StoreConfig::Postgres { location, options })
        } else {
            bad(
                "database.url",
                "must start with sqlite: or postgres:// (e.g. sqlite://wxlogin.db?mode=rwc)",
            )
        }
    }
}

impl WeChatSettings {
    /// The apps, each with the key prefix its errors name: `wechat.app_id` (named
    /// "default") when set, then the `[[wechat.apps]]` entries in their order. The first is the
    /// default app, which serves requests that name none; app ids and names are unique.
    fn parse(self, addr: SocketAddr) -> Result<WeChatConfig, ConfigError> {
        let configured = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
        let has_credential = |id: Option<&String>, secret: Option<&SecretString>| {
            configured(id.map(String::as_str))
                || configured(secret.map(ExposeSecret::expose_secret))
        };
        let mut entries = Vec::new();
        if has_credential(self.app_id.as_ref(), self.app_secret.as_ref()) {
            entries.push((
                "wechat".to_owned(),
                WeChatAppSettings {
                    name: Some(DEFAULT_APP_NAME.into()),
                    app_id: self.app_id.clone(),
                    app_secret: self.app_secret.clone(),
                },
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            entries.push((format!("wechat.apps[{i}]"), app.clone()));
        }
        // Mock only when no app credential at all is configured: an app id with a missing
        // secret (a deploy whose secret was not injected) must fail at start, never fall back
        // to the mock and its open control API.
        let any_credential = entries
            .iter()
            .any(|(_, a)| has_credential(a.app_id.as_ref(), a.app_secret.as_ref()));
        let mode = self.mode.unwrap_or(if any_credential {
            WeChatMode::Http
        } else {
            WeChatMode::Mock
        });
        if entries.is_empty() {
            if mode == WeChatMode::Http {
                return bad("wechat.app_id", "is required when wechat.mode is http");
            }
            entries.push((
                "wechat".to_owned(),
                WeChatAppSettings {
                    name: Some(DEFAULT_APP_NAME.into()),
                    app_id: Some(MOCK_APP_ID.into()),
                    app_secret: None,
                },
            ));
        }

        let mut apps: Vec<(String, String, AppId, Option<SecretString>)> = Vec::new();
        for (key, entry) in entries {
            let name = match entry.name.as_deref().map(str::trim) {
                Some(n)
                    if !n.is_empty()
                        && n.chars().count() <= 64
                        && !n.contains(char::is_control) =>
                {
                    n.to_owned()
                }
                _ => return bad(&format!("{key}.name"), "must be 1-64 printable characters"),
            };
            let Some(id) = entry.app_id.as_deref() else {
                return bad(&format!("{key}.app_id"), "is required");
            };
            let app_id = AppId::parse(id).or_else(|_| {
                bad(
                    &format!("{key}.app_id"),
                    "must be a non-empty printable app id",
                )
            })?;
            if apps.iter().any(|(_, _, known, _)| *known == app_id) {
                return bad(&format!("{key}.app_id"), "is configured twice");
            }
            if apps.iter().any(|(_, known, _, _)| *known == name) {
                return bad(&format!("{key}.name"), "is configured twice");
            }
            apps.push((key, name, app_id, entry.app_secret));
        }

        match mode {
            WeChatMode::Mock => {
                let implicit = self.mode.is_none();
                // The implicit mock is for a developer's machine: its control API mints login
                // codes for any openid, so it never listens beyond loopback unless asked for
                // by name.
                if implicit && !addr.ip().is_loopback() {
                    return bad(
                        "wechat.app_secret",
                        "no WeChat credentials are configured, so the built-in mock WeChat \
                         would serve its control API on a non-loopback address; set \
                         wechat.app_id and wechat.app_secret, or wechat.mode = \"mock\" to \
                         really want the mock",
                    );
                }
                let apps = apps
                    .into_iter()
                    .map(|(_, name, app_id, _)| WeChatApp {
                        name,
                        wechat: app_id,
                    })
                    .collect();
                Ok(WeChatConfig::Mock { apps, implicit })
            }
            WeChatMode::Http => {
                let base_url = self
                    .base_url
                    .as_deref()
                    .map(|url| {
                        BaseUrl::parse(url).or_else(|e| bad("wechat.base_url", &e.to_string()))
                    })
                    .transpose()?;
                let mut clients = Vec::new();
                for (key, name, app_id, secret) in apps {
                    let Some(secret) = secret.filter(|s| !s.expose_secret().trim().is_empty())
                    else {
                        return bad(
                            &format!("{key}.app_secret"),
                            "is required when wechat.mode is http",
                        );
                    };
                    let config = self.http_client(app_id, secret, base_url.clone(), &key)?;
                    clients.push(WeChatApp {
                        name,
                        wechat: config,
                    });
                }
                Ok(WeChatConfig::Http(clients))
            }
        }
    }

    /// The HTTP client configuration of one app, with the shared base URL and timeouts,
    /// checked by the client's own rules so that nothing fails later, when it is built.
    fn http_client(
        &self,
        app_id: AppId,
        secret: SecretString,
        base_url: Option<BaseUrl>,
        key: &str,
    ) -> Result<WeChatHttpConfig, ConfigError> {
        let mut config = WeChatHttpConfig::new(app_id, secret);
        if let Some(url) = base_url {
            config.base_url = url;
        }
        if let Some(d) = millis(self.connect_timeout_ms) {
            config.connect_timeout = d;
        }
        if let Some(d) = millis(self.timeout_ms) {
            config.timeout = d;
        }
        config.validate().or_else(|e| {
            let key = match e {
                WeChatHttpError::InvalidConnectTimeout => "wechat.connect_timeout_ms".to_owned(),
                WeChatHttpError::InvalidTimeout => "wechat.timeout_ms".to_owned(),
                WeChatHttpError::MissingSecret => format!("{key}.app_secret"),
                WeChatHttpError::InvalidBaseUrl(_) => "wechat.base_url".to_owned(),
                WeChatHttpError::Client(_) => "wechat".to_owned(),
            };
            bad(&key, &e.to_string())
        })?;
        Ok(config)
    }
}

impl SessionSettings {
    fn parse(self) -> Result<ServiceConfig, ConfigError> {
        let mut config = ServiceConfig::default();
        if let Some(secs) = self.ttl_secs {
            // Ten years at most: beyond that, date arithmetic overflows and no session needs it.
            if secs <= 0 || secs > 10 * 366 * 24 * 3600 {
                return bad(
                    "session.ttl_secs",
                    "must be between 1 and 316224000 (ten years)",
                );
            }
            config.session_ttl = chrono::Duration::seconds(secs);
        }
        if let Some(secs) = self.idle_timeout_secs {
            if secs <= 0 || secs > 10 * 366 * 24 * 3600 {
                return bad(
                    "session.idle_timeout_secs",
                    "must be between 1 and 316224000 (ten years)",
                );
            }
            config.idle_timeout = chrono::Duration::seconds(secs);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(s: Settings) -> String {
        s.parse().expect_err("invalid").to_string()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Settings::default().parse().expect("defaults are valid");
        assert_eq!(
            c.server.addr,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert!(matches!(
            &c.store,
            StoreConfig::Sqlite { location, options }
                if !location.is_in_memory() && *options == SqliteOptions::default()
        ));
        assert!(matches!(
            &c.wechat,
            WeChatConfig::Mock { apps, implicit: true }
                if apps.len() == 1 && apps[0].wechat.as_str() == MOCK_APP_ID
        ));
        assert_eq!(c.service.session_ttl, ServiceConfig::default().session_ttl);
    }

    #[test]
    fn a_secret_selects_http_and_needs_an_app_id() {
        let mut s = Settings::default();
        s.wechat.app_secret = Some(SecretString::from("topsecret"));
        let err = err_of(s.clone());
        assert!(err.contains("wechat.app_id"), "{err}");
        assert!(!err.contains("topsecret"));
        s.wechat.app_id = Some("wx1234567890abcdef".into());
        let WeChatConfig::Http(apps) = s.parse().expect("valid").wechat else {
            panic!("http mode")
        };
        let c = &apps[0].wechat;
        // Unset keys take the client's own defaults.
        let defaults = WeChatHttpConfig::new(c.app_id.clone(), SecretString::from("x"));
        assert_eq!(c.base_url, defaults.base_url);
        assert_eq!(c.timeout, defaults.timeout);
        assert_eq!(c.connect_timeout, defaults.connect_timeout);
    }

    #[test]
    fn an_app_id_without_a_secret_never_falls_back_to_the_mock() {
        let mut s = Settings::default();
        s.wechat.app_id = Some("wx1234567890abcdef".into());
        let err = err_of(s.clone());
        assert!(err.contains("wechat.app_secret"), "{err}");
        // An explicit mock is the operator's choice.
        s.wechat.mode = Some(WeChatMode::Mock);
        assert!(matches!(
            s.parse().expect("valid").wechat,
            WeChatConfig::Mock {
                implicit: false,
                ..
            }
        ));
    }

    fn app(name: &str, id: &str, secret: Option<&str>) -> WeChatAppSettings {
        WeChatAppSettings {
            name: Some(name.into()),
            app_id: Some(id.into()),
            app_secret: secret.map(SecretString::from),
        }
    }

    #[test]
    fn several_apps_the_single_one_first_as_the_default() {
        let mut s = Settings::default();
        s.wechat.app_id = Some("wx1111111111111111".into());
        s.wechat.app_secret = Some(SecretString::from("s1"));
        s.wechat.timeout_ms = Some(1500);
        s.wechat.apps = vec![app("shop", "wx2222222222222222", Some("s2"))];
        let WeChatConfig::Http(apps) = s.clone().parse().expect("valid").wechat else {
            panic!("http mode")
        };
        let names: Vec<_> = apps
            .iter()
            .map(|a| (a.name.as_str(), a.wechat.app_id.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("default", "wx1111111111111111"),
                ("shop", "wx2222222222222222")
            ]
        );
        // The shared settings apply to every app.
        assert!(
            apps.iter()
                .all(|a| a.wechat.timeout == Duration::from_millis(1500))
        );

        // Only [[wechat.apps]]: the first entry is the default.
        s.wechat.app_id = None;
        s.wechat.app_secret = None;
        s.wechat
            .apps
            .push(app("blog", "wx3333333333333333", Some("s3")));
        let c = s.clone().parse().expect("valid");
        assert_eq!(c.wechat.app_id().as_str(), "wx2222222222222222");
        assert_eq!(c.wechat.app_ids().len(), 2);
    }

    #[test]
    fn every_app_needs_its_own_secret_name_and_id() {
        let mut s = Settings::default();
        s.wechat.apps = vec![
            app("shop", "wx2222222222222222", Some("topsecret")),
            app("blog", "wx3333333333333333", None),
        ];
        let err = err_of(s.clone());
        assert!(err.contains("wechat.apps[1].app_secret"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
        s.wechat.apps[1] = app("blog", "wx2222222222222222", Some("s"));
        assert!(err_of(s.clone()).contains("wechat.apps[1].app_id: is configured twice"));
        s.wechat.apps[1] = app("shop", "wx3333333333333333", Some("s"));
        assert!(err_of(s.clone()).contains("wechat.apps[1].name: is configured twice"));
        s.wechat.apps[1] = app(" ", "wx3333333333333333", Some("s"));
        assert!(err_of(s.clone()).contains("wechat.apps[1].name"));
        s.wechat.apps[1].name = None;
        assert!(err_of(s.clone()).contains("wechat.apps[1].name"));
        s.wechat.apps[1] = WeChatAppSettings {
            name: Some("blog".into()),
            ..WeChatAppSettings::default()
        };
        assert!(err_of(s.clone()).contains("wechat.apps[1].app_id: is required"));
    }

    #[test]
    fn the_mock_serves_several_apps_when_asked() {
        let mut s = Settings::default();
        s.wechat.mode = Some(WeChatMode::Mock);
        s.wechat.apps = vec![
            app("shop", "wx2222222222222222", None),
            app("blog", "wx3333333333333333", None),
        ];
        let WeChatConfig::Mock { apps, implicit } = s.parse().expect("valid").wechat else {
            panic!("mock mode")
        };
        assert!(!implicit);
        let ids: Vec<_> = apps.iter().map(|a| a.wechat.as_str()).collect();
        assert_eq!(ids, ["wx2222222222222222", "wx3333333333333333"]);
    }

    #[test]
    fn the_implicit_mock_stays_on_loopback() {
        let mut s = Settings::default();
        s.server.addr = "0.0.0.0:8080".into();
        assert!(err_of(s.clone()).contains("wechat.app_secret"));
        s.server.addr = "[::1]:8080".into();
        assert!(s.clone().parse().is_ok());
        s.server.addr = "0.0.0.0:8080".into();
        s.wechat.mode = Some(WeChatMode::Mock);
        assert!(s.parse().is_ok());
    }

    #[test]
    fn session_lifetime_is_bounded() {
        let mut s = Settings::default();
        s.session.ttl_secs = Some(i64::MAX);
        assert!(err_of(s.clone()).contains("session.ttl_secs"));
        s.session.ttl_secs = Some(0);
        assert!(err_of(s.clone()).contains("session.ttl_secs"));
        let mut idle = Settings::default();
        idle.session.idle_timeout_secs = Some(0);
        assert!(err_of(idle.clone()).contains("session.idle_timeout_secs"));
        idle.session.idle_timeout_secs = Some(600);
        assert_eq!(
            idle.parse().expect("valid").service.idle_timeout,
            chrono::Duration::minutes(10)
        );
        s.session.ttl_secs = Some(10 * 365 * 24 * 3600);
        assert_eq!(
            s.parse().expect("valid").service.session_ttl,
            chrono::Duration::days(3650)
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut s = Settings::default();
        s.server.addr = "nonsense".into();
        assert!(err_of(s).contains("server.addr"));
        let mut s = Settings::default();
        s.database.url = "mysql://x".into();
        assert!(err_of(s).contains("database.url"));
        let mut s = Settings::default();
        s.log.filter = "wxlogin=loud".into();
        assert!(err_of(s).contains("log.filter"));
        let mut s = Settings::default();
        s.server.body_limit_bytes = Some(10);
        assert!(err_of(s).contains("server.body_limit_bytes"));
        let mut s = Settings::default();
        s.wechat.app_id = Some("wx1234567890abcdef".into());
        s.wechat.app_secret = Some(SecretString::from("s"));
        s.wechat.timeout_ms = Some(0);
        assert!(err_of(s.clone()).contains("wechat.timeout_ms"));
        s.wechat.timeout_ms = None;
        // What the client would refuse when it is built is refused here, naming the key.
        s.wechat.base_url = Some("https://user:pw@api.weixin.qq.com".into());
        let err = err_of(s);
        assert!(err.contains("wechat.base_url"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        let mut s = Settings::default();
        s.database.url = "postgres://u@db.example.com:notaport/wx".into();
        assert!(err_of(s).contains("database.url"));
        let mut s = Settings::default();
        s.database.sqlite.reader_connections = Some(0);
        assert!(err_of(s).contains("database.sqlite.reader_connections"));
        let mut s = Settings::default();
        s.database.url = "postgresql://u@db.example.com/wx".into();
        s.database.postgres.acquire_timeout_ms = Some(0);
        assert!(err_of(s.clone()).contains("database.postgres.acquire_timeout_ms"));
        // The store's own rules: 0 turns a statement timeout off, beyond 2^31 ms is refused.
        s.database.postgres.acquire_timeout_ms = None;
        s.database.postgres.statement_timeout_ms = Some(0);
        assert!(s.clone().parse().is_ok());
        s.database.postgres.statement_timeout_ms = Some(u64::MAX / 2);
        assert!(err_of(s).contains("database.postgres.statement_timeout_ms"));
        let mut s = Settings::default();
        s.database.sqlite.busy_timeout_ms = Some(u64::MAX / 2);
        assert!(err_of(s).contains("database.sqlite.busy_timeout_ms"));
    }

    #[test]
    fn timeouts_are_typed_bounded_and_name_their_key() {
        let mut s = Settings::default();
        s.server.header_read_timeout_ms = Some(1500);
        s.server.body_read_timeout_ms = Some(2500);
        s.server.keep_alive_timeout_secs = Some(30);
        s.wechat.service_timeout_ms = Some(700);
        let c = s.clone().parse().expect("valid");
        assert_eq!(
            c.server.connections.header_read_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(
            c.server.connections.keep_alive_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(c.server.http.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(c.service.wechat_timeout, Duration::from_millis(700));

        for (key, adjust) in [
            (
                "server.header_read_timeout_ms",
                (|s: &mut Settings| s.server.header_read_timeout_ms = Some(0)) as fn(&mut Settings),
            ),
            ("server.body_read_timeout_ms", |s| {
                s.server.body_read_timeout_ms = Some(0);
            }),
            ("server.keep_alive_timeout_secs", |s| {
                s.server.keep_alive_timeout_secs = Some(0);
            }),
            ("wechat.service_timeout_ms", |s| {
                s.wechat.service_timeout_ms = Some(0);
            }),
            // Beyond the access-token lease.
            ("wechat.service_timeout_ms", |s| {
                s.wechat.service_timeout_ms = Some(60_000);
            }),
        ] {
            let mut bad = Settings::default();
            adjust(&mut bad);
            assert!(err_of(bad).contains(key), "{key}");
        }
    }

    #[test]
    fn limits_are_typed_and_name_their_keys() {
        let c = Settings::default().parse().expect("defaults are valid");
        assert_eq!(c.server.http.limits.failed_burst.get(), 50);
        assert_eq!(c.server.http.limits.failed_per_second.get(), 10);
        assert_eq!(
            c.server.wechat_concurrency,
            crate::wechat_cap::DEFAULT_CONCURRENCY
        );
        for key in [
            "failed_burst",
            "failed_per_second",
            "decrypt_failures_per_minute",
            "wechat_concurrency",
        ] {
            let mut s = Settings::default();
            let zero = Some(0);
            match key {
                "failed_burst" => s.limits.failed_burst = zero,
                "failed_per_second" => s.limits.failed_per_second = zero,
                "decrypt_failures_per_minute" => s.limits.decrypt_failures_per_minute = zero,
                _ => s.limits.wechat_concurrency = zero,
            }
            assert!(err_of(s).contains(&format!("limits.{key}")), "{key}");
        }
        let mut s = Settings::default();
        s.server.trusted_proxies =
            TrustedProxies::List(vec!["10.0.0.0/8".into(), "not-a-net".into()]);
        assert!(err_of(s).contains("server.trusted_proxies[1]"));
        let mut s = Settings::default();
        s.server.trusted_proxies = TrustedProxies::Text("10.0.0.0/8, 192.0.2.1".into());
        let trusted = s.parse().expect("valid").server.http.limits.trusted_proxies;
        assert_eq!(trusted.len(), 2);
        assert!(trusted[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn store_options_are_typed_and_default_to_the_adapters() {
        let mut s = Settings::default();
        s.database.url = "postgresql://u@db.example.com/wx".into();
        let StoreConfig::Postgres { options, .. } = s.clone().parse().expect("valid").store else {
            panic!("postgres")
        };
        assert_eq!(options, PostgresOptions::default());
        s.database.postgres.max_connections = Some(4);
        s.database.postgres.statement_timeout_ms = Some(1500);
        let StoreConfig::Postgres { options, .. } = s.parse().expect("valid").store else {
            panic!("postgres")
        };
        assert_eq!(options.max_connections, 4);
        assert_eq!(options.statement_timeout, Duration::from_millis(1500));
        assert_eq!(
            options.acquire_timeout,
            PostgresOptions::default().acquire_timeout
        );

        let mut s = Settings::default();
        s.database.sqlite.reader_connections = Some(2);
        let StoreConfig::Sqlite { options, .. } = s.parse().expect("valid").store else {
            panic!("sqlite")
        };
        assert_eq!(options.reader_connections, 2);
    }

    /// `wxlogin.example.toml` documents every key with its default: it must parse, and the
    /// values it shows must be the defaults of the parts that own them.
    #[test]
    fn the_example_config_shows_the_real_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wxlogin.example.toml");
        let example = Settings::load(Some(&path)).expect("the example parses");
        let c = example.clone().parse().expect("the example is valid");
        let defaults = Settings::default().parse().expect("defaults are valid");
        assert_eq!(c.server.addr, defaults.server.addr);
        assert_eq!(c.server.http.body_limit, defaults.server.http.body_limit);
        assert_eq!(c.server.http.avatars, defaults.server.http.avatars);
        assert_eq!(c.session_cache, defaults.session_cache);
        assert_eq!(c.server.shutdown_grace, defaults.server.shutdown_grace);
        assert_eq!(c.service.session_ttl, defaults.service.session_ttl);
        assert_eq!(c.service.idle_timeout, defaults.service.idle_timeout);
        assert_eq!(c.server.purge_interval, defaults.server.purge_interval);
        assert_eq!(
            c.server.http.body_read_timeout,
            defaults.server.http.body_read_timeout
        );
        assert_eq!(c.server.connections, defaults.server.connections);
        assert_eq!(c.service.wechat_timeout, defaults.service.wechat_timeout);
        assert_eq!(c.server.http.limits, defaults.server.http.limits);
        assert_eq!(
            c.server.http.limits,
            crate::http::limits::LimitsConfig::default()
        );
        assert_eq!(
            c.server.wechat_concurrency,
            defaults.server.wechat_concurrency
        );
        assert!(c.operators.is_empty() && defaults.operators.is_empty());
        assert!(matches!(
            c.store,
            StoreConfig::Sqlite { options, .. } if options == SqliteOptions::default()
        ));

        let mut pg = example.clone();
        pg.database.url = "postgres://u@db.example.com/wx".into();
        assert!(matches!(
            pg.parse().expect("valid").store,
            StoreConfig::Postgres { options, .. } if options == PostgresOptions::default()
        ));

        let mut http = example;
        http.wechat.app_id = Some("wx1234567890abcdef".into());
        http.wechat.app_secret = Some(SecretString::from("s"));
        let WeChatConfig::Http(apps) = http.parse().expect("valid").wechat else {
            panic!("http mode")
        };
        let shown = &apps[0].wechat;
        let owned = WeChatHttpConfig::new(shown.app_id.clone(), SecretString::from("s"));
        assert_eq!(shown.base_url, owned.base_url);
        assert_eq!(shown.connect_timeout, owned.connect_timeout);
        assert_eq!(shown.timeout, owned.timeout);
    }

    #[test]
    fn file_layer_is_read_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxlogin.toml");
        std::fs::write(
            &path,
            "[server]\naddr = \"127.0.0.1:9999\"\n[wechat]\nmode = \"mock\"\napp_id = \"wxabc\"\n\
             [database.sqlite]\nreader_connections = 3\n",
        )
        .unwrap();
        let c = Settings::load(Some(&path)).unwrap().parse().unwrap();
        assert_eq!(c.server.addr.port(), 9999);
        assert_eq!(c.wechat.app_id().as_str(), "wxabc");
        assert!(matches!(
            c.store,
            StoreConfig::Sqlite { options, .. } if options.reader_connections == 3
        ));

        std::fs::write(&path, "[server]\nadress = \"x\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
    }
}
