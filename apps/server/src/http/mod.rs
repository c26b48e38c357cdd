//! The inbound HTTP adapter (poem-openapi): operations grouped by area, their DTOs, the error
//! contract and the middleware. Generic over the inbound port [`LoginService`] alone: nothing
//! here names a store, a WeChat client or the crypto crate; the composition root does.
//!
//! - [`classic`]: `/onLogin`, `/updateUserInfo`;
//! - [`session`] and [`profile`]: the `/api/v1` JSON API;
//! - [`health`]: `/healthz`, `/readyz`;
//! - [`admin`]: the operators' `/admin/v1` (HTTP Basic), over the inbound port
//!   [`AdminService`], always mounted (with no operator configured, it refuses everyone);
//! - [`document`]: the served OpenAPI document (poem-openapi's, refined);
//! - [`dto`]: request and response bodies; [`error`]: the error codes and their mapping;
//! - [`middleware`]: the body limit and the one place failures become answers;
//! - [`strict`]: request ids, strict JSON bodies, `Allow` and the security headers;
//! - [`metrics`]: `GET /metrics` (Prometheus text; outside the OpenAPI document).
//! - [`limits`]: the budgets of failed attempts (per client address, per token).

pub mod admin;
pub mod apps;
pub mod auth;
pub mod classic;
pub mod document;
pub mod dto;
pub mod error;
pub mod health;
pub mod lang;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod profile;
pub mod session;
pub mod strict;

use std::sync::Arc;

use poem::http::Method;
use poem::{Endpoint, EndpointExt, Route, get};
use poem_openapi::payload::Json;
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, OpenApiService, Tags};
use wxlogin_domain::{AdminService, LoginService};

pub use apps::{APP_HEADER, Apps};
pub use error::{ApiError, ErrorCode, Failure};

use admin::AdminApi;
use classic::ClassicApi;
use health::HealthApi;
use profile::ProfileApi;
use session::SessionApi;

#[derive(Tags)]
enum ApiTags {
    /// The classic mini-program flow: `wx.login` → `/onLogin` → `/updateUserInfo`.
    Classic,
    /// The JSON API for today's mini-programs: sessions (`Authorization: Bearer <token>`).
    Session,
    /// The JSON API: the signed-in user's own record.
    Profile,
    /// Liveness and readiness probes.
    Health,
    /// The operators' API (HTTP Basic, `[[admin.users]]`; never a user's bearer token).
    Admin,
}

/// What every operation answers: its success `T`, or the errors of its use case `E`.
pub type ApiResult<T, E> = Result<T, ApiError<E>>;

/// [`ApiResult`] of an operation answering a JSON body.
pub type Reply<T, E> = ApiResult<Success<T>, E>;

/// A 200 answer with a JSON body.
#[derive(ApiResponse)]
pub enum Success<T: ToJSON + Type + Send + Sync> {
    /// Success.
    #[oai(status = 200)]
    Ok(Json<T>),
}

impl<T: ToJSON + Type + Send + Sync> Success<T> {
    pub fn json(body: T) -> Self {
        Self::Ok(Json(body))
    }
}

/// A 204 answer.
#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// What the HTTP layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes (also enforced without `Content-Length`).
    pub body_limit: usize,
    /// How long a client has to send its whole body; one that stops sending is answered
    /// 400 `invalid_request` and its connection closed (DESIGN §5 has no 408 code).
    pub body_read_timeout: std::time::Duration,
    /// The budgets of failed attempts and the trusted proxies.
    pub limits: limits::LimitsConfig,
    /// Uploaded avatars: their size limit and the URL they are served under.
    pub avatars: AvatarSettings,
}

/// Uploaded avatars (`POST /api/v1/me/avatar`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarSettings {
    /// Largest image accepted, in bytes (the request may be a little larger: multipart's own
    /// lines).
    pub limit: usize,
    /// The base of avatar URLs (`{public_url}/avatars/{id}`); `None`: `http://{Host}`.
    pub public_url: Option<String>,
}

impl Default for AvatarSettings {
    fn default() -> Self {
        Self {
            limit: 1024 * 1024,
            public_url: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            // A 1 MiB avatar over a slow mobile link fits; a stalled upload does not hold a
            // connection for long.
            body_read_timeout: std::time::Duration::from_secs(30),
            limits: limits::LimitsConfig::default(),
            avatars: AvatarSettings::default(),
        }
    }
}

type Apis<L, A> = (
    ClassicApi<L>,
    SessionApi<L>,
    ProfileApi<L>,
    HealthApi<L>,
    AdminApi<A>,
);

/// The OpenAPI service: operations, schemas and server description.
pub fn openapi<L: LoginService, A: AdminService>(
    apps: Arc<Apps<L>>,
    admin: Arc<A>,
    avatars: AvatarSettings,
) -> OpenApiService<Apis<L, A>, ()> {
    let health = Arc::clone(apps.default_service());
    let api = (
        ClassicApi::new(Arc::clone(&apps)),
        SessionApi::new(Arc::clone(&apps)),
        ProfileApi::new(apps, avatars),
        HealthApi::new(health),
        AdminApi::new(admin),
    );
    OpenApiService::new(api, "wxlogin", env!("CARGO_PKG_VERSION")).description(
        "WeChat mini-program login backend: exchanges `wx.login` codes for users and \
         sessions, and stores profiles from `encryptedData`. Errors answer \
         `{\"status\", \"error\", \"message\"}` with a stable `error` code; each operation \
         lists the codes it can give. `message` follows `Accept-Language`: Simplified Chinese \
         when the header prefers any Chinese (`zh-CN`, `zh_CN`, `zh-TW` …) to English, \
         English otherwise (`Content-Language` says which); `error` never changes. A server may serve several mini-programs: a request \
         names its app with `X-WX-AppId`, or WeChat's own `Referer` \
         (`https://servicewechat.com/{appid}/{version}/page-frame.html`) does; else it is for \
         the default app.",
    )
}

/// The OpenAPI document served at `/openapi.json` (and checked in as `docs/openapi.json`):
/// poem-openapi's, refined by [`document::refine`] for the apps `apps` serves.
pub fn document<L: LoginService, A: AdminService>(apps: Arc<Apps<L>>, admin: Arc<A>) -> String {
    let app_ids: Vec<String> = apps.app_ids().map(|id| id.as_str().to_owned()).collect();
    let ids: Vec<&str> = app_ids.iter().map(String::as_str).collect();
    document::refine(
        &openapi(apps, admin, AvatarSettings::default()).spec(),
        &ids,
    )
}

/// The whole HTTP app: the API, `/openapi.json`, Swagger UI at `/docs`, `extra` routes nested
/// where the composition root says (the mock WeChat's control API in mock mode), the body
/// limit, the budgets of failed attempts ([`limits::limit`]), and the JSON error answers and request log of [`middleware::answer`].
pub fn app<L, A, M>(
    apps: Apps<L>,
    admin: Arc<A>,
    extra: Vec<(String, M)>,
    config: &HttpConfig,
) -> impl Endpoint + use<L, A, M>
where
    L: LoginService,
    A: AdminService,
    M: Endpoint + 'static,
{
    let apps = Arc::new(apps);
    let served = document(Arc::clone(&apps), Arc::clone(&admin));
    let api = openapi(apps, admin, config.avatars.clone());
    let spec = {
        let served = served.clone();
        get(poem::endpoint::make_sync(move |_| {
            poem::Response::builder()
                .content_type("application/json; charset=utf-8")
                .body(served.clone())
        }))
    };
    // Swagger UI shows the document `/openapi.json` serves: poem-openapi's page embeds its
    // own (unrefined) document verbatim, which is swapped for the served one.
    let docs_html = api.swagger_ui_html().replacen(&api.spec(), &served, 1);
    let docs = Route::new().at(
        "/",
        get(poem::endpoint::make_sync(move |_| {
            poem::web::Html(docs_html.clone())
        })),
    );
    let routes = Arc::new(strict::Routes::from_spec(
        &api.spec(),
        &[
            ("/openapi.json", Method::GET, "openapiJson"),
            ("/metrics", Method::GET, "metrics"),
        ],
    ));
    let mut route = Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .at("/metrics", get(metrics::scrape))
        .nest("/docs", docs);
    for (path, endpoint) in extra {
        route = route.nest(path, endpoint);
    }
    let (limit, read_timeout) = (config.body_limit, config.body_read_timeout);
    // An avatar upload may be larger than any other body: the image plus multipart's lines.
    let avatar_limit = config.avatars.limit + profile::MULTIPART_OVERHEAD;
    let json_routes = Arc::clone(&routes);
    let budgets = Arc::new(limits::Limits::new(&config.limits));
    route
        .around(move |ep, req| strict::check_json(ep, req, Arc::clone(&json_routes)))
        .around(move |ep, req| limits::limit(ep, req, Arc::clone(&budgets)))
        .around(move |ep, req| {
            let limit = if req.uri().path() == profile::AVATAR_PATH {
                avatar_limit.max(limit)
            } else {
                limit
            };
            middleware::limit_body(ep, req, limit, read_timeout)
        })
        .around(middleware::answer)
        .around(move |ep, req| strict::around(ep, req, Arc::clone(&routes)))
}
