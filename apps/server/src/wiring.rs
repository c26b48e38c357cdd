//! The composition root's running half (with `config.rs`, which types the adapters'
//! options): it opens the store and the WeChat client that the typed [`Config`] picks (a `match` per choice, one generic path, no
//! `dyn`), builds the service, hands it to the HTTP adapter and runs the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Endpoint, Route};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxlogin_crypto::{Argon2Verifier, OsTokens, WeChatCipher};
use wxlogin_domain::{
    Admin, AdminConfig, AdminService, Directory, LoginService, Service, ServiceConfig, SystemClock,
    UserStore, WeChat,
};
use wxlogin_store_postgres::Postgres;
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_http::WeChatHttp;
use wxlogin_wechat_mock::MockWeChat;

use crate::config::{Config, ServerConfig, Settings, StoreConfig, WeChatConfig, WeChatMode};

/// The service with the adapters that never vary: the cipher, the token minter, the clock.
pub type AppService<S, W> = Service<S, W, WeChatCipher, OsTokens, SystemClock>;

/// The service over the chosen store and WeChat, with the fixed adapters.
pub fn new_service<S: UserStore, W: WeChat>(
    store: S,
    wechat: W,
    config: &ServiceConfig,
) -> AppService<S, W> {
    Service::new(
        store,
        wechat,
        WeChatCipher,
        OsTokens,
        SystemClock,
        config.clone(),
    )
}

/// A server running in the background (tests, and `main`).
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains in-flight requests (up to the grace period), and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("server task panicked")??;
        Ok(())
    }
}

/// Parses `settings` and starts serving (tests; `main` parses first, then calls [`start`]).
pub async fn spawn(settings: Settings) -> anyhow::Result<RunningServer> {
    start(settings.parse()?, None).await
}

/// Like [`spawn`] in `mock` mode, but with the caller's in-process mock WeChat, so a test can
/// mint codes and inject failures on the very instance the server uses.
pub async fn spawn_with_mock(
    mut settings: Settings,
    mock: MockWeChat,
) -> anyhow::Result<RunningServer> {
    settings.wechat.mode = Some(WeChatMode::Mock);
    start(settings.parse()?, Some(mock)).await
}

/// Opens the configured adapters and starts serving on `server.addr`.
pub async fn start(config: Config, mock: Option<MockWeChat>) -> anyhow::Result<RunningServer> {
    match config.store.clone() {
        StoreConfig::Sqlite { location, options } => {
            let store = Sqlite::open(&location, options)
                .await
                .context("cannot open the SQLite database (database.url)")?;
            with_wechat(config, store, mock).await
        }
        StoreConfig::Postgres { location, options } => {
            let store = Postgres::open(&location, options)
                .await
                .context("cannot connect to Postgres (database.url)")?;
            with_wechat(config, store, mock).await
        }
    }
}

/// Picks the WeChat adapter for an opened store.
async fn with_wechat<S: UserStore + Directory>(
    config: Config,
    store: S,
    mock: Option<MockWeChat>,
) -> anyhow::Result<RunningServer> {
    let admin = new_admin(store.clone(), &config)?;
    match config.wechat.clone() {
        WeChatConfig::Mock { app_id, implicit } => {
            tracing::warn!(
                app_id = %app_id,
                implicit,
                "using the built-in mock WeChat; its control API is at /mock"
            );
            let mock = mock.unwrap_or_else(|| MockWeChat::new(app_id, None));
            let control = wxlogin_wechat_mock::control_routes(mock.clone());
            let service = new_service(store, mock, &config.service);
            serve(&config.server, service, admin, Some(("/mock", control))).await
        }
        WeChatConfig::Http(http) => {
            let client = WeChatHttp::new(http).map_err(|e| anyhow::anyhow!("wechat: {e}"))?;
            let service = new_service(store, client, &config.service);
            serve(&config.server, service, admin, None::<(&str, Route)>).await
        }
    }
}

async fn serve<L, A, M>(
    config: &ServerConfig,
    service: L,
    admin: A,
    extra: Option<(&str, M)>,
) -> anyhow::Result<RunningServer>
where
    L: LoginService,
    A: AdminService,
    M: Endpoint + 'static,
{
    let service = Arc::new(service);
    let purge = tokio::spawn(purge_ended_sessions(
        Arc::clone(&service),
        config.purge_interval,
    ));
    let app = crate::http::app(service, Arc::new(admin), extra, &config.http);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.addr)", config.addr))?;
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("listener has no socket address")?;
    let (tx, rx) = oneshot::channel::<()>();
    let grace = config.shutdown_grace;
    let task = tokio::spawn(async move {
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = rx.await;
                },
                Some(grace),
            )
            .await;
        purge.abort();
        served
    });
    tracing::info!(%addr, docs = %format!("http://{addr}/docs"), "wxlogin listening");
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Deletes ended sessions, with their session keys, every `interval` (the first run right at
/// start: a server that was down for a while catches up at once).
async fn purge_ended_sessions<L: LoginService>(service: Arc<L>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match service.purge_ended_sessions().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged ended sessions"),
            Err(e) => tracing::warn!(error = %e, "purging ended sessions failed; will retry"),
        }
    }
}

/// The operators' use cases over the store, argon2id passwords and the wall clock. Users are
/// shown with their identity in the configured app.
fn new_admin<S: Directory>(
    store: S,
    config: &Config,
) -> anyhow::Result<Admin<S, Argon2Verifier, SystemClock>> {
    if config.operators.is_empty() {
        tracing::info!("no [[admin.users]] configured: /admin/v1 refuses every request");
    }
    let verifier = Argon2Verifier::new(Argon2Verifier::DEFAULT_CONCURRENCY)
        .map_err(|e| anyhow::anyhow!("cannot prepare the operator password check: {e}"))?;
    Ok(Admin::new(
        store,
        verifier,
        SystemClock,
        AdminConfig {
            operators: config.operators.clone(),
            app_id: config.wechat.app_id().clone(),
            idle_timeout: config.service.idle_timeout,
        },
    ))
}
