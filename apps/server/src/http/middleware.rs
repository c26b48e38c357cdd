//! What wraps every request: the body limit, and [`answer`], the one place where a failure
//! (an operation's, a parse error, a route miss) becomes an HTTP answer and a log line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use poem::web::headers::HeaderMapExt as _;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::http::error::{ErrorCode, Failure};
use crate::http::lang::Lang;
use crate::http::profile::AVATAR_PATH;

/// Caps the body whether or not `Content-Length` is sent (poem's `SizeLimit` answers 411
/// to chunked bodies, which some clients send), and bounds the time its reading may take: a
/// client that stops sending is answered and its connection closed (the body is left unread,
/// so the connection cannot be reused). Only methods whose operations take a body are read: a
/// body sent with `GET` or `DELETE` is never looked at, so it costs nothing.
pub async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    limit: usize,
    read_timeout: Duration,
) -> poem::Result<Response> {
    use poem::http::Method;
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    // Past the limit, keep reading (and discarding) up to a bound before answering 413: a
    // client still sending its body would otherwise see the connection reset instead of the
    // answer. Beyond the bound, stop reading: the connection is dropped.
    let drain_bound = limit.saturating_mul(16);
    let declared = req
        .headers()
        .typed_get::<poem::web::headers::ContentLength>()
        .map(|l| l.0);
    // A declared length beyond the bound is refused unread; one within it is drained like a
    // chunked body, so that the client reads the answer.
    if declared.is_some_and(|len| len > drain_bound as u64) {
        return Err(Failure::new(ErrorCode::PayloadTooLarge).into());
    }
    let stream = req.take_body().into_bytes_stream();
    let body =
        match tokio::time::timeout(read_timeout, read_capped(stream, limit, drain_bound)).await {
            Ok(Ok(body)) => body,
            Ok(Err(failure)) => return Err(failure.into()),
            Err(_) => {
                return Err(Failure::new(ErrorCode::InvalidRequest)
                    .with_message(
                        "the request body did not arrive in time",
                        "请求体未能及时到达",
                    )
                    .into());
            }
        };
    req.set_body(body);
    ep.call(req).await.map(IntoResponse::into_response)
}

/// The body, up to `limit` bytes; beyond it, read and discarded up to `drain_bound`.
async fn read_capped<B: AsRef<[u8]>, X>(
    stream: impl futures_util::Stream<Item = Result<B, X>>,
    limit: usize,
    drain_bound: usize,
) -> Result<Vec<u8>, Failure> {
    let mut stream = std::pin::pin!(stream);
    let mut body = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(Failure::new(ErrorCode::InvalidRequest)
                .with_message("could not read the request body", "无法读取请求体"));
        };
        let chunk = chunk.as_ref();
        total = total.saturating_add(chunk.len());
        if total <= limit {
            body.extend_from_slice(chunk);
        } else if total > drain_bound {
            break;
        }
    }
    if total > limit {
        return Err(Failure::new(ErrorCode::PayloadTooLarge));
    }
    Ok(body)
}

/// Turns every error into the JSON error answer and writes one log line per request: method,
/// path (never the query), status, latency, and for a failure its code and internal detail, at
/// the level the failure deserves. Bodies and headers are never logged: they carry codes,
/// tokens and encrypted data.
pub async fn answer<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let lang = Lang::of(&req);
    let started = Instant::now();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let response = match result {
        Ok(response) => {
            tracing::info!(%method, path = %path, status = response.status().as_u16(), ms, "request");
            response
        }
        Err(err) => {
            let mut failure = match err.downcast_ref::<Failure>() {
                Some(failure) => failure.clone(),
                None => Failure::from_poem(&err),
            };
            if failure.code == ErrorCode::UnsupportedMediaType {
                let (en, zh) = content_types(&path);
                failure = failure.with_message(en, zh);
            }
            log_failure(&method, &path, ms, &failure);
            let mut response = failure.to_response(lang);
            crate::http::admin::challenge(&path, &mut response);
            response
        }
    };
    Ok(response)
}

/// What a 415 on `path` says to send instead.
fn content_types(path: &str) -> (&'static str, &'static str) {
    match path {
        AVATAR_PATH => (
            "send multipart/form-data with the image in the field `file` (as wx.uploadFile does)",
            "请以 multipart/form-data 发送，图片放在 `file` 字段（wx.uploadFile 就是这样发送的）",
        ),
        "/onLogin" | "/updateUserInfo" => (
            "send application/x-www-form-urlencoded or application/json",
            "请以 application/x-www-form-urlencoded 或 application/json 发送请求体",
        ),
        _ => ("send application/json", "请以 application/json 发送请求体"),
    }
}

fn log_failure(method: &poem::http::Method, path: &str, ms: f64, failure: &Failure) {
    let status = failure.code.status().as_u16();
    let error = failure.code.as_str();
    let detail = failure.detail().unwrap_or("");
    match failure.code {
        // Ours to fix: a bug, or WeChat rejecting our own configuration.
        ErrorCode::Internal | ErrorCode::WechatError => {
            tracing::error!(%method, path = %path, status, ms, error, detail, "request failed");
        }
        // Outages of what we depend on: worth watching, not a bug.
        ErrorCode::WechatUnavailable | ErrorCode::DatabaseUnavailable => {
            tracing::warn!(%method, path = %path, status, ms, error, detail, "request failed");
        }
        // The client's doing (a bad code, an expired token): part of normal traffic.
        _ => tracing::info!(%method, path = %path, status, ms, error, "request refused"),
    }
}
