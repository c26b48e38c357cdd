//! The composition root: reads settings, picks adapters with a `match`, builds the service and
//! the HTTP app, and runs it. One generic `start` per adapter combination, no `dyn`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::headers::HeaderMapExt as _;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wxlogin_crypto::{OsTokens, WeChatCipher};
use wxlogin_domain::{AppId, Service, ServiceConfig, SystemClock, UserStore, WeChat};
use wxlogin_store_postgres::Postgres;
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_http::{WeChatHttp, WeChatHttpConfig};
use wxlogin_wechat_mock::MockWeChat;

use crate::api::Api;
use crate::config::{Settings, StoreKind, WeChatMode};
use crate::error::ApiError;

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

/// Builds the adapters named by `settings` and starts serving on `server.addr`.
pub async fn spawn(settings: Settings) -> anyhow::Result<RunningServer> {
    spawn_inner(settings, None).await
}

/// Like [`spawn`] in `mock` mode, but with the caller's in-process mock WeChat, so a test can
/// mint codes and inject failures on the very instance the server uses.
pub async fn spawn_with_mock(
    mut settings: Settings,
    mock: MockWeChat,
) -> anyhow::Result<RunningServer> {
    settings.wechat.mode = Some(WeChatMode::Mock);
    spawn_inner(settings, Some(mock)).await
}

async fn spawn_inner(
    settings: Settings,
    mock: Option<MockWeChat>,
) -> anyhow::Result<RunningServer> {
    settings.validate()?;
    match settings.store_kind()? {
        StoreKind::Sqlite => {
            let store = Sqlite::connect(&settings.database.url)
                .await
                .context("cannot open the SQLite database (database.url)")?;
            with_wechat(settings, store, mock).await
        }
        StoreKind::Postgres => {
            let store = Postgres::connect(&settings.database.url)
                .await
                .context("cannot connect to Postgres (database.url)")?;
            with_wechat(settings, store, mock).await
        }
    }
}

/// Picks the WeChat adapter for an opened store.
async fn with_wechat<S: UserStore>(
    settings: Settings,
    store: S,
    mock: Option<MockWeChat>,
) -> anyhow::Result<RunningServer> {
    let app_id = AppId::parse(settings.wechat.resolved_app_id())
        .map_err(|e| anyhow::anyhow!("wechat.app_id: {e}"))?;
    match settings.wechat.resolved_mode() {
        WeChatMode::Mock => {
            tracing::warn!(
                app_id = %app_id,
                "using the built-in mock WeChat (no wechat.app_secret configured); \
                 its control API is at /mock"
            );
            let mock = mock.unwrap_or_else(|| MockWeChat::new(app_id, None));
            let control = wxlogin_wechat_mock::control_routes(mock.clone());
            start(settings, store, mock, Some(control)).await
        }
        WeChatMode::Http => {
            let secret = settings
                .wechat
                .app_secret
                .clone()
                .context("wechat.app_secret is required in http mode")?;
            let client = WeChatHttp::new(WeChatHttpConfig {
                base_url: settings.wechat.base_url.clone(),
                app_id,
                app_secret: secret,
                connect_timeout: Duration::from_millis(settings.wechat.connect_timeout_ms),
                timeout: Duration::from_millis(settings.wechat.timeout_ms),
            })
            .map_err(|e| anyhow::anyhow!("wechat: {e}"))?;
            start(settings, store, client, None::<Route>).await
        }
    }
}

async fn start<S, W, M>(
    settings: Settings,
    store: S,
    wechat: W,
    mock_control: Option<M>,
) -> anyhow::Result<RunningServer>
where
    S: UserStore,
    W: WeChat,
    M: Endpoint + 'static,
{
    let service = new_service(store, wechat, &settings);
    let app = build_app(Arc::new(service), mock_control, &settings);

    let listener = tokio::net::TcpListener::bind(&settings.server.addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.addr)", settings.server.addr))?;
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("listener has no socket address")?;
    let (tx, rx) = oneshot::channel::<()>();
    let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
    let task = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = rx.await;
                },
                Some(grace),
            )
            .await
    });
    tracing::info!(%addr, docs = %format!("http://{addr}/docs"), "wxlogin listening");
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// The service over the chosen store and WeChat, with the fixed adapters.
pub fn new_service<S: UserStore, W: WeChat>(
    store: S,
    wechat: W,
    settings: &Settings,
) -> crate::api::AppService<S, W> {
    Service::new(
        store,
        wechat,
        WeChatCipher,
        OsTokens,
        SystemClock,
        ServiceConfig {
            session_ttl: chrono::Duration::seconds(settings.session.ttl_secs),
        },
    )
}

/// The OpenAPI service: operations, schemas and server description.
pub fn openapi<S: UserStore, W: WeChat>(
    service: Arc<crate::api::AppService<S, W>>,
) -> OpenApiService<Api<S, W>, ()> {
    OpenApiService::new(Api::new(service), "wxlogin", env!("CARGO_PKG_VERSION")).description(
        "WeChat mini-program login backend: exchanges `wx.login` codes for users and \
             sessions, and stores profiles from `encryptedData`. Errors answer \
             `{\"status\", \"error\", \"message\"}` with a stable `error` code.",
    )
}

/// The whole HTTP app: the API, `/openapi.json`, Swagger UI at `/docs`, the mock's control
/// API (in mock mode), body limit, request log and JSON errors for router failures.
pub fn build_app<S, W, M>(
    service: Arc<crate::api::AppService<S, W>>,
    mock_control: Option<M>,
    settings: &Settings,
) -> impl Endpoint + 'static
where
    S: UserStore,
    W: WeChat,
    M: Endpoint + 'static,
{
    let api = openapi(service);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let mut route = Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs);
    if let Some(control) = mock_control {
        route = route.nest("/mock", control);
    }
    let limit = settings.server.body_limit_bytes;
    route
        .around(move |ep, req| limit_body(ep, req, limit))
        .catch_all_error(|err: poem::Error| async move { router_error(&err) })
        .around(log_request)
}

/// Caps the body whether or not `Content-Length` is sent (poem's `SizeLimit` answers 411
/// to chunked bodies, which some clients send).
async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    limit: usize,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .typed_get::<poem::web::headers::ContentLength>()
        .map(|l| l.0);
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(ApiError::payload_too_large().into_poem_response());
    }
    let mut stream = req.take_body().into_bytes_stream();
    let mut body = Vec::new();
    let mut total = 0usize;
    // Past the limit, keep reading (and discarding) up to a bound before answering 413: a
    // client still sending its body would otherwise see the connection reset instead of the
    // answer. Beyond the bound, stop reading: the connection is dropped.
    let drain_bound = limit.saturating_mul(16);
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Ok(
                ApiError::invalid_request("could not read the request body").into_poem_response()
            );
        };
        total = total.saturating_add(chunk.len());
        if total <= limit {
            body.extend_from_slice(&chunk);
        } else if total > drain_bound {
            break;
        }
    }
    if total > limit {
        return Ok(ApiError::payload_too_large().into_poem_response());
    }
    req.set_body(body);
    ep.call(req).await.map(IntoResponse::into_response)
}

fn router_error(err: &poem::Error) -> Response {
    let status = err.status();
    let api = match status.as_u16() {
        404 => ApiError::not_found(),
        405 => ApiError::new(status, "method_not_allowed", "method not allowed here"),
        s if s < 500 => ApiError::from_parse_error(err),
        _ => {
            tracing::error!(error = %err, "unhandled error");
            ApiError::internal()
        }
    };
    api.into_poem_response()
}

/// One line per request: method, path (never the query), status, latency. Bodies and headers
/// are not logged: they carry codes, tokens and encrypted data.
async fn log_request<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status().as_u16(),
    };
    tracing::info!(
        %method,
        path = %path,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    result
}
