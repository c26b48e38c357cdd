//! The mock over HTTP: WeChat's endpoints and the control API.
//!
//! WeChat's endpoints, at the root as on `api.weixin.qq.com`: `GET /sns/jscode2session`,
//! `POST /cgi-bin/stable_token`, `GET /cgi-bin/token`, `POST
//! /wxa/business/getuserphonenumber?access_token=…`, `GET /wxa/checksession`.
//!
//! One server can answer for several apps ([`routes_for`]), as WeChat does: each call goes to
//! the app its `appid` or its access token names.
//!
//! Control API (JSON in and out; errors are `{"error", "message"}` with 400 or 404), at `/mock`
//! for the first app and at `/mock/apps/{appid}` for each:
//! - `POST /codes` `{"openId", "unionId"?}` → 200 `{"code"}`: a `wx.login` code (rotates the
//!   user's session key)
//! - `POST /phone-codes` `{"openId", "phoneNumber", "purePhoneNumber"?, "countryCode"?}` → 200
//!   `{"code"}`: a `getPhoneNumber` code. `countryCode` is `"86"` or `86` (default `"86"`) and
//!   `getuserphonenumber` answers it in the same form; `purePhoneNumber` defaults to
//!   `phoneNumber` without a leading `+{countryCode}`
//! - `POST /codes/batch` `{"openIdPrefix", "count", "users"?}` → 200 `{"codes": [...]}`: `count`
//!   login codes at once (at most [`MAX_BATCH`]), code `i` for the openid `{openIdPrefix}{i %
//!   users}`; `users` defaults to `count` (a new openid per code). For load generators, which
//!   cannot ask for a code per request
//! - `POST /phone-codes/batch` `{"openIdPrefix", "count", "users"?, "phoneNumber",
//!   "purePhoneNumber"?, "countryCode"?}` → 200 `{"codes": [...]}`: the same for phone codes
//! - `POST /encrypt` `{"openId", "userInfo": {…}}` or `{"openId", "phoneInfo": {…}}` → 200
//!   `{"encryptedData", "iv"}`: user info or legacy phone data encrypted with the user's
//!   current session key (404 `unknown_user` before their first login code)
//! - `POST /access-token/expire` → 204: the current access token expires now (42001)
//! - `POST /access-token/invalidate` → 204: the current access token stops working (40001)
//! - `POST /failures` `{"api": "jscode2session", "mode", "times"?: 1, "delayMs"?}` → 204:
//!   the next `times` calls of that API fail (`api` is required; see [`Api`])
//! - `DELETE /failures` → 204 (every API's)
//! - `GET /stats` → 200 `{"calls": {"jscode2session": n, "stable_token": n, "token": n,
//!   "getuserphonenumber": n, "checksession": n}}`, every API listed

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Query};
use poem::{Endpoint, EndpointExt, Response, Route, Server, get, handler, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wxlogin_domain::{OpenId, PhoneNumber, UnionId};

use crate::api::Api;
use crate::mock::{
    Answer, Caller, CountryCode, Failure, FailureMode, IssuedToken, MockError, MockWeChat, Phone,
    PhoneAnswer, Refusal, Session,
};

/// The most codes one batch call of the control API mints.
pub const MAX_BATCH: u32 = 1_000_000;

/// How long `serve` lets in-flight requests (a `slow` stall, say) finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// WeChat's endpoints (see the module docs), at the root as on `api.weixin.qq.com`.
pub fn wechat_routes(mock: MockWeChat) -> impl Endpoint<Output = Response> {
    wechat_route().data(MockApps(vec![mock]))
}

/// The mocks of the apps one server answers for, as WeChat answers for every app: a call goes
/// to the app its `appid` names, or whose current access token it carries; anything else to
/// the first, which refuses it as WeChat would (an unknown app id, a stale token).
#[derive(Clone)]
struct MockApps(Vec<MockWeChat>);

impl MockApps {
    fn by_app_id(&self, app_id: Option<&str>) -> &MockWeChat {
        self.0
            .iter()
            .find(|m| Some(m.app_id().as_str()) == app_id)
            .unwrap_or(&self.0[0])
    }

    fn by_access_token(&self, access_token: Option<&str>) -> &MockWeChat {
        self.0
            .iter()
            .find(|m| access_token.is_some() && m.current_access_token().as_deref() == access_token)
            .unwrap_or(&self.0[0])
    }
}

/// The control API, meant to be nested (at `/mock` by [`routes`] and by the server's
/// in-process mock mode).
pub fn control_routes(mock: MockWeChat) -> impl Endpoint<Output = Response> {
    Route::new()
        .at("/codes", post(mint_code))
        .at("/phone-codes", post(mint_phone_code))
        .at("/codes/batch", post(mint_code_batch))
        .at("/phone-codes/batch", post(mint_phone_code_batch))
        .at("/encrypt", post(encrypt))
        .at("/access-token/expire", post(expire_access_token))
        .at("/access-token/invalidate", post(invalidate_access_token))
        .at("/failures", post(add_failure).delete(clear_failures))
        .at("/stats", get(stats))
        .data(mock)
        // Route misses and wrong methods get the same JSON error shape as everything else.
        .catch_all_error(|err: poem::Error| async move {
            let status = err.status();
            let code = match status {
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                s if s.is_client_error() => "bad_request",
                _ => "internal",
            };
            error_response(status, code, err)
        })
}

/// Everything a standalone mock serves: WeChat's paths at `/`, the control API at `/mock`.
pub fn routes(mock: MockWeChat) -> impl Endpoint<Output = Response> {
    routes_for(vec![mock])
}

/// [`routes`] for several apps (at least one): WeChat's paths at `/` for all of them, the
/// first app's control API at `/mock`, each app's at `/mock/apps/{appid}` (see
/// [`control_path`]).
///
/// # Panics
/// If `mocks` is empty.
pub fn routes_for(mocks: Vec<MockWeChat>) -> impl Endpoint<Output = Response> {
    assert!(!mocks.is_empty(), "a mock WeChat serves at least one app");
    let mut route = wechat_route().nest("/mock", control_routes(mocks[0].clone()));
    for mock in &mocks {
        route = route.nest(control_path(mock.app_id()), control_routes(mock.clone()));
    }
    route.data(MockApps(mocks))
}

/// Where the control API of the app `app_id` is nested, besides `/mock` for the first app.
pub fn control_path(app_id: &wxlogin_domain::AppId) -> String {
    format!("/mock/apps/{app_id}")
}

/// Serves [`routes`] on `listener` until `shutdown` completes, then lets in-flight requests
/// finish for a few seconds. Taking a bound listener lets callers bind port 0 and learn the
/// real address first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mock: MockWeChat,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_apps(listener, vec![mock], shutdown).await
}

/// [`serve`] for several apps (see [`routes_for`]).
pub async fn serve_apps(
    listener: tokio::net::TcpListener,
    mocks: Vec<MockWeChat>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    for mock in &mocks {
        tracing::info!(app_id = %mock.app_id(), "mock WeChat serving");
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes_for(mocks), shutdown, Some(SHUTDOWN_GRACE))
        .await
}

fn wechat_route() -> Route {
    Route::new()
        .at("/sns/jscode2session", get(jscode2session))
        .at("/cgi-bin/stable_token", post(stable_token))
        .at("/cgi-bin/token", get(token))
        .at(
            "/wxa/business/getuserphonenumber",
            post(get_user_phone_number),
        )
        .at("/wxa/checksession", get(checksession))
}

/// The app's credentials, as the APIs that take them send them (query or JSON body).
#[derive(Deserialize)]
struct Credentials {
    appid: Option<String>,
    secret: Option<String>,
    grant_type: Option<String>,
}

impl Credentials {
    fn caller(&self) -> Caller<'_> {
        Caller::Http {
            appid: self.appid.as_deref(),
            secret: self.secret.as_deref(),
            grant_type: self.grant_type.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct JsCodeParams {
    #[serde(flatten)]
    credentials: Credentials,
    js_code: Option<String>,
}

#[handler]
async fn jscode2session(apps: Data<&MockApps>, Query(params): Query<JsCodeParams>) -> Response {
    let mock = apps.by_app_id(params.credentials.appid.as_deref());
    let caller = params.credentials.caller();
    let answer = mock.jscode2session(caller, params.js_code.as_deref()).await;
    render(answer, |session: Session| {
        let mut body = json!({"openid": session.open_id, "session_key": session.session_key});
        if let Some(union_id) = session.union_id {
            body["unionid"] = union_id.into();
        }
        body
    })
}

#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(flatten)]
    credentials: Credentials,
    #[serde(default)]
    force_refresh: bool,
}

#[handler]
async fn stable_token(apps: Data<&MockApps>, body: Vec<u8>) -> Response {
    let answer = match serde_json::from_slice::<StableTokenBody>(&body) {
        Ok(body) => {
            let caller = body.credentials.caller();
            let mock = apps.by_app_id(body.credentials.appid.as_deref());
            mock.stable_token(caller, body.force_refresh).await
        }
        Err(_) => apps.by_app_id(None).malformed_body(Api::StableToken).await,
    };
    render(answer, issued_token)
}

#[handler]
async fn token(apps: Data<&MockApps>, Query(credentials): Query<Credentials>) -> Response {
    let mock = apps.by_app_id(credentials.appid.as_deref());
    render(mock.token(credentials.caller()).await, issued_token)
}

fn issued_token(issued: IssuedToken) -> Value {
    json!({"access_token": issued.access_token, "expires_in": issued.expires_in})
}

#[derive(Deserialize)]
struct AccessTokenParam {
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct PhoneCodeBody {
    code: Option<String>,
}

#[handler]
async fn get_user_phone_number(
    apps: Data<&MockApps>,
    Query(params): Query<AccessTokenParam>,
    body: Vec<u8>,
) -> Response {
    let mock = apps.by_access_token(params.access_token.as_deref());
    let answer = match serde_json::from_slice::<PhoneCodeBody>(&body) {
        Ok(body) => {
            mock.get_user_phone_number(params.access_token.as_deref(), body.code.as_deref())
                .await
        }
        Err(_) => mock.malformed_body(Api::GetUserPhoneNumber).await,
    };
    render(answer, |PhoneAnswer { phone, watermark }| {
        json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": phone.phone_number,
                "purePhoneNumber": phone.pure_phone_number,
                "countryCode": phone.country_code,
                "watermark": watermark,
            },
        })
    })
}

#[derive(Deserialize)]
struct CheckSessionParams {
    access_token: Option<String>,
    openid: Option<String>,
    signature: Option<String>,
    sig_method: Option<String>,
}

#[handler]
async fn checksession(apps: Data<&MockApps>, Query(params): Query<CheckSessionParams>) -> Response {
    let answer = apps
        .by_access_token(params.access_token.as_deref())
        .checksession(
            params.access_token.as_deref(),
            params.openid.as_deref(),
            params.signature.as_deref(),
            params.sig_method.as_deref(),
        )
        .await;
    render(answer, |()| json!({"errcode": 0, "errmsg": "ok"}))
}

/// Renders an answer as WeChat does; `ok` gives the API's success body.
fn render<T>(answer: Answer<T>, ok: impl FnOnce(T) -> Value) -> Response {
    match answer {
        Answer::Ok(value) => json_response(StatusCode::OK, &ok(value)),
        Answer::Refused(Refusal { errcode, errmsg }) => {
            // WeChat appends a request id that differs on every call: clients must match on
            // errcode, never on errmsg.
            let rid = format!(
                "{:08x}-{:08x}-{:08x}",
                rand::random::<u32>(),
                rand::random::<u32>(),
                rand::random::<u32>()
            );
            json_response(
                StatusCode::OK,
                &json!({"errcode": errcode, "errmsg": format!("{errmsg}, rid: {rid}")}),
            )
        }
        Answer::Http500 => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .content_type("text/html; charset=utf-8")
            .body(
                "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
                 <body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n\
                 </body>\r\n</html>\r\n",
            ),
        Answer::Garbage => Response::builder()
            .status(StatusCode::OK)
            .content_type("text/html; charset=utf-8")
            .body("<html><body>upstream connect error or disconnect/reset before headers"),
        Answer::Truncated => Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json; charset=utf-8")
            .body(r#"{"session_key":"tiihtNczf5v6AKRyjwEUhQ==","openid":"oTrunc"#),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintCodeBody {
    open_id: String,
    union_id: Option<String>,
}

#[handler]
async fn mint_code(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: MintCodeBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let Ok(open_id) = OpenId::parse(&body.open_id) else {
        return bad_request("openId must be 1-128 printable ASCII characters");
    };
    let union_id = match body.union_id.as_deref().map(UnionId::parse).transpose() {
        Ok(union_id) => union_id,
        Err(_) => return bad_request("unionId must be 1-128 printable ASCII characters"),
    };
    let code = mock.mint_code(open_id.as_str(), union_id.as_ref().map(UnionId::as_str));
    json_response(StatusCode::OK, &json!({ "code": code }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintPhoneCodeBody {
    open_id: String,
    phone_number: String,
    pure_phone_number: Option<String>,
    country_code: Option<CountryCode>,
}

#[handler]
async fn mint_phone_code(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: MintPhoneCodeBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let Ok(open_id) = OpenId::parse(&body.open_id) else {
        return bad_request("openId must be 1-128 printable ASCII characters");
    };
    let phone = match phone_of(
        &body.phone_number,
        body.pure_phone_number,
        body.country_code,
    ) {
        Ok(phone) => phone,
        Err(message) => return bad_request(message),
    };
    let code = mock.mint_phone_code(open_id.as_str(), phone);
    json_response(StatusCode::OK, &json!({ "code": code }))
}

/// The phone number a phone code is minted for, checked. The Rust API takes anything (a test
/// may want a malformed number); the control API is for people, who want to hear about a typo.
fn phone_of(
    phone_number: &str,
    pure_phone_number: Option<String>,
    country_code: Option<CountryCode>,
) -> Result<Phone, &'static str> {
    let mut phone = Phone::new(phone_number.trim(), country_code.unwrap_or_default());
    if let Some(pure) = pure_phone_number {
        phone.pure_phone_number = pure;
    }
    if PhoneNumber::parse(&phone.phone_number).is_err()
        || PhoneNumber::parse(&phone.pure_phone_number).is_err()
    {
        return Err(
            "phoneNumber and purePhoneNumber must be 3-20 digits with an optional leading +",
        );
    }
    let country_code = phone.country_code.to_string();
    if country_code.is_empty()
        || country_code.len() > 4
        || !country_code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("countryCode must be 1-4 digits, as a string or a number");
    }
    Ok(phone)
}

/// Every openid of a batch of `count` codes, `{prefix}{i % users}` for code `i`, all checked
/// before anything is minted.
fn batch_open_ids(prefix: &str, count: u32, users: Option<u32>) -> Result<Vec<OpenId>, String> {
    if count == 0 || count > MAX_BATCH {
        return Err(format!("count must be 1-{MAX_BATCH}"));
    }
    let users = users.unwrap_or(count);
    if users == 0 || users > count {
        return Err("users must be 1-count (the openids the codes cycle over)".to_owned());
    }
    let names: Result<Vec<OpenId>, _> = (0..users)
        .map(|i| OpenId::parse(&format!("{prefix}{i}")))
        .collect();
    let names = names.map_err(|_| {
        "openIdPrefix followed by a number must be 1-128 printable ASCII characters".to_owned()
    })?;
    Ok((0..count as usize)
        .map(|i| names[i % names.len()].clone())
        .collect())
}

// Serde cannot deny unknown fields through `flatten`, so the two batch bodies repeat the
// batch's three fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintCodeBatchBody {
    open_id_prefix: String,
    count: u32,
    users: Option<u32>,
}

#[handler]
async fn mint_code_batch(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: MintCodeBatchBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let open_ids = match batch_open_ids(&body.open_id_prefix, body.count, body.users) {
        Ok(open_ids) => open_ids,
        Err(message) => return bad_request(message),
    };
    let codes: Vec<String> = open_ids
        .iter()
        .map(|open_id| mock.mint_code(open_id.as_str(), None))
        .collect();
    json_response(StatusCode::OK, &json!({ "codes": codes }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintPhoneCodeBatchBody {
    open_id_prefix: String,
    count: u32,
    users: Option<u32>,
    phone_number: String,
    pure_phone_number: Option<String>,
    country_code: Option<CountryCode>,
}

#[handler]
async fn mint_phone_code_batch(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: MintPhoneCodeBatchBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let open_ids = match batch_open_ids(&body.open_id_prefix, body.count, body.users) {
        Ok(open_ids) => open_ids,
        Err(message) => return bad_request(message),
    };
    let phone = match phone_of(
        &body.phone_number,
        body.pure_phone_number,
        body.country_code,
    ) {
        Ok(phone) => phone,
        Err(message) => return bad_request(message),
    };
    let codes: Vec<String> = open_ids
        .iter()
        .map(|open_id| mock.mint_phone_code(open_id.as_str(), phone.clone()))
        .collect();
    json_response(StatusCode::OK, &json!({ "codes": codes }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncryptBody {
    open_id: String,
    user_info: Option<Value>,
    phone_info: Option<Value>,
}

#[handler]
async fn encrypt(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: EncryptBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let encrypted = match (body.user_info, body.phone_info) {
        (Some(user_info), None) => mock.encrypt_user_info(&body.open_id, user_info),
        (None, Some(phone_info)) => mock.encrypt_phone_number(&body.open_id, phone_info),
        _ => return bad_request("give either userInfo or phoneInfo"),
    };
    match encrypted {
        Ok(payload) => json_response(StatusCode::OK, &json!(payload)),
        Err(err @ MockError::UnknownUser(_)) => {
            error_response(StatusCode::NOT_FOUND, "unknown_user", err)
        }
        Err(err @ MockError::NotAnObject) => bad_request(err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailureBody {
    api: Option<Api>,
    mode: FailureMode,
    times: Option<u32>,
    delay_ms: Option<u64>,
}

#[handler]
async fn add_failure(mock: Data<&MockWeChat>, body: Vec<u8>) -> Response {
    let body: FailureBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return bad_request(message),
    };
    let Some(api) = body.api else {
        return bad_request(format!(
            "api is required: the API whose next calls fail, one of {}",
            Api::names()
        ));
    };
    let failure = match Failure::from_parts(body.mode, body.delay_ms) {
        Ok(failure) => failure,
        Err(message) => return bad_request(message),
    };
    let times = body.times.unwrap_or(1);
    if times == 0 {
        return bad_request("times must be at least 1");
    }
    mock.fail_next(api, failure, times);
    StatusCode::NO_CONTENT.into()
}

#[handler]
async fn expire_access_token(mock: Data<&MockWeChat>) -> Response {
    mock.expire_access_token();
    StatusCode::NO_CONTENT.into()
}

#[handler]
async fn invalidate_access_token(mock: Data<&MockWeChat>) -> Response {
    mock.invalidate_access_token();
    StatusCode::NO_CONTENT.into()
}

#[handler]
async fn clear_failures(mock: Data<&MockWeChat>) -> Response {
    mock.clear_failures();
    StatusCode::NO_CONTENT.into()
}

#[handler]
async fn stats(mock: Data<&MockWeChat>) -> Response {
    let calls: serde_json::Map<String, Value> = Api::ALL
        .into_iter()
        .map(|api| (api.name().to_owned(), mock.calls(api).into()))
        .collect();
    json_response(StatusCode::OK, &json!({ "calls": calls }))
}

// Bodies are parsed by hand rather than with poem's `Json` so that every refusal, including
// broken JSON and a missing content type, has the `{"error", "message"}` shape.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|err| format!("invalid JSON body: {err}"))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn error_response(status: StatusCode, error: &str, message: impl Display) -> Response {
    json_response(
        status,
        &json!({ "error": error, "message": message.to_string() }),
    )
}

fn bad_request(message: impl Display) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", message)
}
