//! The composition root's running half (with `config.rs`, which types the adapters'
//! options): it opens the store and the WeChat client that the typed [`Config`] picks (a `match` per choice, one generic path, no
//! `dyn`), builds the service, hands it to the HTTP adapter and runs the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use poem::{Endpoint, Route};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxlogin_crypto::{Argon2Verifier, OsTokens, WeChatCipher};
use wxlogin_domain::{
    ActiveAt, Admin, AdminConfig, AdminService, AppId, Directory, LoginService, Service,
    ServiceConfig, StatsQuery, StoreError, SystemClock, Timer, UserStore, WeChat,
};
use wxlogin_store_postgres::Postgres;
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_http::WeChatHttp;
use wxlogin_wechat_mock::MockWeChat;

use crate::config::{Config, ServerConfig, Settings, StoreConfig, WeChatConfig, WeChatMode};
use crate::http::Apps;
use crate::metered::Metered;
use crate::wechat_cap::Capped;

/// The service with the adapters that never vary: the cipher, the token minter, the clock.
pub type AppService<S, W> = Service<S, W, WeChatCipher, OsTokens, SystemClock>;

/// The service over the chosen store and WeChat, with the fixed adapters. Its WeChat calls
/// are bounded on tokio's timer (the domain's default timer wakes a thread of its own for
/// every call).
pub fn new_service<S: UserStore, W: WeChat>(
    store: S,
    wechat: W,
    config: &ServiceConfig,
) -> AppService<S, W> {
    let config = ServiceConfig {
        timer: Timer::new(|d| Box::pin(tokio::time::sleep(d))),
        ..config.clone()
    };
    Service::new(store, wechat, WeChatCipher, OsTokens, SystemClock, config)
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
    start(settings.parse()?, Vec::new()).await
}

/// Like [`spawn`] in `mock` mode, but with the caller's in-process mock WeChat, so a test can
/// mint codes and inject failures on the very instance the server uses.
pub async fn spawn_with_mock(
    settings: Settings,
    mock: MockWeChat,
) -> anyhow::Result<RunningServer> {
    spawn_with_mocks(settings, vec![mock]).await
}

/// [`spawn_with_mock`] for several mini-programs: the server serves one app per mock, the
/// first the default, in place of the configured apps.
pub async fn spawn_with_mocks(
    mut settings: Settings,
    mocks: Vec<MockWeChat>,
) -> anyhow::Result<RunningServer> {
    settings.wechat.mode = Some(WeChatMode::Mock);
    start(settings.parse()?, mocks).await
}

/// Opens the configured adapters and starts serving on `server.addr`. In mock mode, `mocks`
/// (when not empty) stand for the configured apps.
pub async fn start(config: Config, mocks: Vec<MockWeChat>) -> anyhow::Result<RunningServer> {
    match config.store.clone() {
        StoreConfig::Sqlite { location, options } => {
            let store = Sqlite::open(&location, options)
                .await
                .context("cannot open the SQLite database (database.url)")?
                .with_session_cache(config.session_cache);
            with_wechat(config, store, mocks, Background::default()).await
        }
        StoreConfig::Postgres { location, options } => {
            let store = Postgres::open_lazy(&location, options)
                .await
                .context("cannot set up the Postgres connection pool (database.url)")?
                .with_session_cache(config.session_cache);
            let mut background = Background::default();
            if let Some(migrating) = migrate_or_keep_trying(&store).await? {
                background.0.push(migrating);
            }
            with_wechat(config, store, mocks, background).await
        }
    }
}

/// Picks the WeChat adapter for an opened store, and builds one service per app over the one
/// store.
async fn with_wechat<S: UserStore + Directory>(
    config: Config,
    store: S,
    mocks: Vec<MockWeChat>,
    mut background: Background,
) -> anyhow::Result<RunningServer> {
    let admin = new_admin(store.clone(), &config)?;
    background.0.push(tokio::spawn(count_active_sessions(
        store.clone(),
        config.service.idle_timeout,
    )));
    match config.wechat.clone() {
        WeChatConfig::Mock { apps, implicit } => {
            let mocks = if mocks.is_empty() {
                apps.into_iter()
                    .map(|app| MockWeChat::new(app.wechat, None))
                    .collect()
            } else {
                mocks
            };
            let mut controls = vec![(
                "/mock".to_owned(),
                wxlogin_wechat_mock::control_routes(mocks[0].clone()),
            )];
            for mock in &mocks {
                tracing::warn!(
                    app_id = %mock.app_id(),
                    implicit,
                    control = %wxlogin_wechat_mock::control_path(mock.app_id()),
                    "using the built-in mock WeChat; its control API is at /mock (the default app's) and at the path shown"
                );
                controls.push((
                    wxlogin_wechat_mock::control_path(mock.app_id()),
                    wxlogin_wechat_mock::control_routes(mock.clone()),
                ));
            }
            let services = mocks
                .into_iter()
                .map(|mock| (mock.app_id().clone(), mock))
                .collect();
            serve(
                &config.server,
                apps_of(
                    &store,
                    services,
                    &config.service,
                    config.server.wechat_concurrency,
                ),
                admin,
                controls,
                background,
            )
            .await
        }
        WeChatConfig::Http(apps) => {
            let mut clients = Vec::new();
            for app in apps {
                let app_id = app.wechat.app_id.clone();
                let name = app.name;
                let client = WeChatHttp::new(app.wechat)
                    .map_err(|e| anyhow::anyhow!("wechat ({name}): {e}"))?;
                tracing::info!(app = %name, app_id = %app_id, "serving mini-program");
                clients.push((app_id, client));
            }
            let none: Vec<(String, Route)> = Vec::new();
            serve(
                &config.server,
                apps_of(
                    &store,
                    clients,
                    &config.service,
                    config.server.wechat_concurrency,
                ),
                admin,
                none,
                background,
            )
            .await
        }
    }
}

/// One service per app, all over clones of one store (they share its pools), the first the
/// default; every app's WeChat calls count against one cap of `wechat_concurrency`.
fn apps_of<S: UserStore, W: WeChat>(
    store: &S,
    wechats: Vec<(AppId, W)>,
    config: &ServiceConfig,
    wechat_concurrency: usize,
) -> Apps<AppService<Metered<S>, Metered<Capped<W>>>> {
    // One cap on concurrent WeChat calls for every app (crate::wechat_cap), and every adapter
    // call measured for `/metrics` (crate::metered, outside the cap: refusals are counted too),
    // both outside the domain.
    let permits = Arc::new(tokio::sync::Semaphore::new(wechat_concurrency));
    let service = |wechat| new_service(Metered(store.clone()), Metered(wechat), config);
    let mut wechats = wechats
        .into_iter()
        .map(|(app_id, w)| (app_id, Capped::new(w, Arc::clone(&permits))));
    let (first_id, first) = wechats
        .next()
        .expect("the configuration holds at least one app");
    let mut apps = Apps::single(first_id, service(first));
    for (app_id, wechat) in wechats {
        apps = apps.with(app_id, service(wechat));
    }
    apps
}

async fn serve<L, A, M>(
    config: &ServerConfig,
    apps: Apps<L>,
    admin: A,
    extra: Vec<(String, M)>,
    mut background: Background,
) -> anyhow::Result<RunningServer>
where
    L: LoginService,
    A: AdminService,
    M: Endpoint + 'static,
{
    // The store is shared by every app: one purge covers them all.
    background.0.push(tokio::spawn(purge_ended_sessions(
        Arc::clone(apps.default_service()),
        config.purge_interval,
    )));
    let app = crate::http::app(apps, Arc::new(admin), extra, &config.http);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.addr)", config.addr))?;
    let addr = listener
        .local_addr()
        .context("listener has no socket address")?;
    let (tx, rx) = oneshot::channel::<()>();
    let (grace, limits) = (config.shutdown_grace, config.connections);
    let task = tokio::spawn(async move {
        let served = crate::listener::serve(
            listener,
            app,
            limits,
            async move {
                let _ = rx.await;
            },
            grace,
        )
        .await;
        drop(background);
        served
    });
    tracing::info!(%addr, docs = %format!("http://{addr}/docs"), "wxlogin listening");
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// The server's background tasks (the purge, the sessions gauge, the migration retries): they
/// end with the server, and with a start that fails halfway, since dropping a tokio task's
/// handle would only detach it.
#[derive(Default)]
struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// How often a database that stays unreachable is reported at `warn` (each attempt in between
/// is logged at `debug`).
const UNREACHABLE_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest pause between two attempts to reach a database that was down at start.
const MIGRATE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Applies the migrations before serving. A database that cannot be reached does not stop the
/// start: the server serves (`/readyz` and the API answer 503 `database_unavailable`) while the
/// returned task keeps trying, and the store becomes ready the moment it succeeds. Any other
/// failure (a refused password, a migration that fails) is a configuration error and stops
/// the start.
async fn migrate_or_keep_trying(store: &Postgres) -> anyhow::Result<Option<JoinHandle<()>>> {
    match store.migrate().await {
        Ok(()) => Ok(None),
        Err(StoreError::Unavailable(detail)) => {
            tracing::warn!(
                error = %detail,
                "the database cannot be reached: serving 503 database_unavailable until it can, \
                 trying again in the background"
            );
            Ok(Some(tokio::spawn(keep_migrating(store.clone()))))
        }
        Err(e) => Err(e).context("cannot prepare the Postgres database (database.url)"),
    }
}

/// Tries to reach and migrate the database until it succeeds, backing off from 250 ms to
/// [`MIGRATE_RETRY_MAX`] (each attempt also waits up to the pool's acquire timeout).
async fn keep_migrating(store: Postgres) {
    let mut pause = std::time::Duration::from_millis(250);
    let mut reported = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(pause).await;
        match store.migrate().await {
            Ok(()) => {
                tracing::info!("the database is reachable and migrated: serving");
                return;
            }
            Err(StoreError::Unavailable(detail))
                if reported.elapsed() >= UNREACHABLE_REPORT_EVERY =>
            {
                reported = tokio::time::Instant::now();
                tracing::warn!(error = %detail, "the database is still unreachable; serving 503");
            }
            Err(StoreError::Unavailable(detail)) => {
                tracing::debug!(error = %detail, "the database is still unreachable");
            }
            // A database that appeared with a refused password or a failing migration: the
            // server keeps answering 503 and keeps trying, since an operator may fix either
            // without restarting it.
            Err(e) => tracing::error!(error = %e, "preparing the database failed; will retry"),
        }
        pause = (pause * 2).min(MIGRATE_RETRY_MAX);
    }
}

/// Refreshes the `wxlogin_active_sessions` gauge from the store every 15 s, for as long as the
/// runtime lives (the count is one indexed statement; a failure keeps the last value).
async fn count_active_sessions<S: Directory>(store: S, idle_timeout: chrono::Duration) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(15));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = chrono::Utc::now();
        let query = StatsQuery {
            active: ActiveAt {
                now,
                seen_after: now - idle_timeout,
            },
            hour_from: now,
            day_from: now,
        };
        match store.stats(query).await {
            Ok(stats) => crate::metrics::set_active_sessions(stats.active_sessions),
            Err(e) => tracing::warn!(error = %e, "counting active sessions failed; will retry"),
        }
    }
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
/// shown with their identity in the default app (`wechat.app_id`, or the first configured).
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
