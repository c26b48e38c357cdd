//! The one request path every WeChat API call takes.
//!
//! A [`Call`] describes a call (API name, path, query or JSON body, its secrets);
//! [`WeChatHttp::call`] sends it: URL from the validated base, query percent-encoded by
//! reqwest, the client's timeouts, a capped body read, JSON parsed whatever the content type,
//! `errcode` classified by [`crate::errcode`], every secret of the call scrubbed from the error
//! text, and one log line per call. Nothing here is shaped around a particular API.

use std::error::Error as _;
use std::fmt;
use std::sync::PoisonError;
use std::time::Instant;

use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::WeChatHttp;
use crate::errcode::{CallError, Kind, classify};

/// Bodies larger than this are no WeChat answer (real ones are under 1 KiB); the cap keeps a
/// misbehaving proxy from making us buffer megabytes.
const MAX_BODY: usize = 64 * 1024;

/// Error texts are cut here: text from outside (`errmsg`, reqwest's chain) has no fixed size.
const MAX_TEXT: usize = 300;

/// One call to one API.
pub(crate) struct Call<'a> {
    /// WeChat's name for the API, first in every error text and a field of every log line.
    api: &'static str,
    /// The path under the base URL, without a leading slash (`sns/jscode2session`).
    path: &'static str,
    /// Query pairs (POST APIs take `access_token` here too).
    query: Vec<(&'static str, &'a str)>,
    /// The JSON body of a POST; `None` makes the call a GET.
    json: Option<Value>,
    /// Every secret value the call carries: none may reach an error text or a log field.
    secrets: Vec<&'a str>,
}

impl<'a> Call<'a> {
    /// A `GET` of `path` (relative to the base URL).
    pub(crate) fn get(api: &'static str, path: &'static str) -> Self {
        Self {
            api,
            // A leading slash would make the join drop the base URL's own path prefix.
            path: path.trim_start_matches('/'),
            query: Vec::new(),
            json: None,
            secrets: Vec::new(),
        }
    }

    /// A `POST` of `body` as JSON; register any secret inside it with [`Self::secret`].
    pub(crate) fn post_json(api: &'static str, path: &'static str, body: Value) -> Self {
        Self {
            json: Some(body),
            ..Self::get(api, path)
        }
    }

    /// A query parameter that is no secret (`appid`, `grant_type`).
    pub(crate) fn query(mut self, name: &'static str, value: &'a str) -> Self {
        self.query.push((name, value));
        self
    }

    /// A query parameter whose value is a secret (`secret`, `js_code`, `access_token`).
    pub(crate) fn secret_query(self, name: &'static str, value: &'a str) -> Self {
        self.query(name, value).secret(value)
    }

    /// A secret sent elsewhere in the call (a JSON body's `secret` or phone `code`).
    pub(crate) fn secret(mut self, value: &'a str) -> Self {
        self.secrets.push(value);
        self
    }

    /// The call's error: `"{api}: {what}"`, with every secret replaced in `what` and its
    /// length bounded.
    fn error(&self, kind: Kind, errcode: Option<i64>, what: impl fmt::Display) -> CallError {
        CallError {
            kind,
            errcode,
            detail: format!("{}: {}", self.api, self.scrub(&what.to_string())),
        }
    }

    /// Replaces each secret, raw and percent-encoded, wherever it appears, and bounds the
    /// length, so that text from outside is safe to log or return.
    fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = self
            .secrets
            .iter()
            .copied()
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a secret that contains another is still replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut text = text.to_owned();
        for secret in secrets {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            for form in [secret, encoded.as_str()] {
                if text.contains(form) {
                    text = text.replace(form, "[REDACTED]");
                }
            }
        }
        if text.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }

    fn transport_error(&self, err: reqwest::Error, started: Instant) -> CallError {
        // The URL holds secrets in its query: drop it before formatting.
        let err = err.without_url();
        let ms = elapsed_ms(started);
        if err.is_timeout() {
            self.error(
                Kind::Unavailable,
                None,
                format!("request timed out after {ms} ms"),
            )
        } else if err.is_connect() {
            let what = format!("cannot connect to WeChat: {}", describe(&err));
            self.error(Kind::Unavailable, None, what)
        } else if err.is_builder() {
            let what = format!("cannot build the request: {}", describe(&err));
            self.error(Kind::Unexpected, None, what)
        } else {
            let what = format!("request failed after {ms} ms: {}", describe(&err));
            self.error(Kind::Unavailable, None, what)
        }
    }
}

impl WeChatHttp {
    /// Sends `call` and hands the answer (a success: no `errcode`, or 0) to `accept`, which
    /// turns it into the caller's value. Its reasons are static texts, so that no value of an
    /// answer (a session key, a token) can reach an error text.
    ///
    /// Logs a `debug` line per successful call and nothing for a failure: the caller logs a
    /// returned error once, where it becomes an answer, and the error's text carries what that
    /// line needs (for rejected credentials, 40013/40125, the advice to check the
    /// configuration). Never retries.
    pub(crate) async fn call<'a, T: DeserializeOwned, R>(
        &'a self,
        call: Call<'a>,
        accept: impl FnOnce(T) -> Result<R, &'static str>,
    ) -> Result<R, CallError> {
        // Scrubbed from every call's texts, whether or not this call sends it.
        let call = call.secret(self.inner.app_secret.expose_secret());
        let started = Instant::now();
        let result = self.send(&call, started).await.and_then(|answer| {
            accept(answer).map_err(|why| call.error(Kind::Unexpected, None, why))
        });
        let (api, app_id, elapsed_ms) = (call.api, &self.inner.app_id, elapsed_ms(started));
        // A failure is the caller's to log, once, where it becomes an answer: its text
        // carries what that line needs. Only successes are traced here, with their timing.
        if result.is_ok() {
            tracing::debug!(api, %app_id, elapsed_ms, "WeChat call succeeded");
        }
        result
    }

    /// The URL of `call`'s API, without its query: joined onto the base URL on its first call,
    /// cloned afterwards.
    fn api_url(&self, call: &Call<'_>) -> Result<url::Url, CallError> {
        let inner = &*self.inner;
        let mut joined = inner.joined.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(url) = joined.get(call.path) {
            return Ok(url.clone());
        }
        let url = inner.base.join(call.path).map_err(|err| {
            call.error(
                Kind::Unexpected,
                None,
                format!("cannot build the URL: {err}"),
            )
        })?;
        joined.insert(call.path, url.clone());
        Ok(url)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        started: Instant,
    ) -> Result<T, CallError> {
        let inner = &*self.inner;
        let mut url = self.api_url(call)?;
        // Percent-encodes every value, so a code or secret holding `&`, `+` or `=` cannot
        // change the request.
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let request = match &call.json {
            None => inner.client.get(url),
            Some(body) => inner.client.post(url).json(body),
        };
        let mut response = request
            .send()
            .await
            .map_err(|err| call.transport_error(err, started))?;
        let status = response.status();
        if !status.is_success() {
            let kind = if status.is_server_error() {
                Kind::Unavailable
            } else {
                Kind::Unexpected
            };
            let what = format!("WeChat answered HTTP {}", status.as_u16());
            return Err(call.error(kind, None, what));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let body = read_capped(&mut response, call, started).await?;
        parse(call, &body, &content_type)
    }
}

async fn read_capped(
    response: &mut reqwest::Response,
    call: &Call<'_>,
    started: Instant,
) -> Result<Vec<u8>, CallError> {
    let too_large = || {
        let what = format!("response body is over {MAX_BODY} bytes");
        call.error(Kind::Unexpected, None, what)
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| call.transport_error(err, started))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error fields every answer may carry.
#[derive(Deserialize)]
struct Status {
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// JSON whatever the content type says (WeChat has answered `text/plain`), a leading BOM
/// tolerated; `errcode` decides, `errmsg` is only reported.
fn parse<T: DeserializeOwned>(
    call: &Call<'_>,
    body: &[u8],
    content_type: &str,
) -> Result<T, CallError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.is_object() => value,
        _ => {
            let what = format!(
                "response is not a JSON object ({} bytes, content type {content_type})",
                body.len()
            );
            return Err(call.error(Kind::Unexpected, None, what));
        }
    };
    // serde's own texts are not reported: they may quote a value of the answer.
    let not_expected = || call.error(Kind::Unexpected, None, "response is not the expected JSON");
    let status = Status::deserialize(&value).map_err(|_| not_expected())?;
    match status.errcode {
        None | Some(0) => T::deserialize(value).map_err(|_| not_expected()),
        Some(errcode) => {
            let (kind, meaning) = classify(errcode);
            let errmsg = status.errmsg.unwrap_or_default();
            let what = format!("errcode {errcode} ({meaning}): {errmsg}");
            Err(call.error(kind, Some(errcode), what))
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An error and its sources on one line (reqwest's own Display stops at the outermost error).
pub(crate) fn describe(err: &reqwest::Error) -> String {
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
    use std::time::Duration;

    use secrecy::SecretString;
    use serde_json::json;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use wxlogin_domain::AppId;

    use super::*;
    use crate::WeChatHttpConfig;

    const APP_SECRET: &str = "the-app-secret";
    const ACCESS_TOKEN: &str = "ACCESS_TOKEN_81_chars_of_base64ish+/=";
    const PHONE_CODE: &str = "phone-code-e31968a7";

    fn client(base: &str) -> WeChatHttp {
        let mut config = WeChatHttpConfig::new(
            AppId::parse("wxapp").unwrap(),
            SecretString::from(APP_SECRET.to_owned()),
        );
        config.base_url = crate::BaseUrl::parse(base).expect("a valid base URL");
        config.timeout = Duration::from_secs(2);
        WeChatHttp::new(config).unwrap()
    }

    /// Serves one canned JSON answer and hands back the whole request it received.
    async fn raw_server(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                let Some(head_end) = text.find("\r\n\r\n") else {
                    assert!(n > 0, "closed before the head ended");
                    continue;
                };
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if n == 0 || request.len() >= head_end + 4 + length {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            let _ = socket.shutdown().await;
            String::from_utf8(request).unwrap()
        });
        (base, handle)
    }

    fn phone_call(body_code: &str) -> Call<'_> {
        Call::post_json(
            "getuserphonenumber",
            "/wxa/business/getuserphonenumber",
            json!({ "code": body_code }),
        )
        .secret_query("access_token", ACCESS_TOKEN)
        .secret(body_code)
    }

    #[derive(Deserialize)]
    struct PhoneAnswer {
        phone_info: Value,
    }

    #[tokio::test]
    async fn a_post_sends_its_query_encoded_and_its_body_as_json() {
        let (base, request) =
            raw_server(r#"{"errcode":0,"errmsg":"ok","phone_info":{"purePhoneNumber":"1"}}"#).await;
        let client = client(&base);
        let info = client
            .call(phone_call(PHONE_CODE), |a: PhoneAnswer| Ok(a.phone_info))
            .await
            .unwrap();
        assert_eq!(info, json!({"purePhoneNumber": "1"}));
        let request = request.await.unwrap();
        assert_eq!(
            request.lines().next().unwrap(),
            "POST /wxa/business/getuserphonenumber\
             ?access_token=ACCESS_TOKEN_81_chars_of_base64ish%2B%2F%3D HTTP/1.1"
        );
        assert!(
            request
                .to_lowercase()
                .contains("content-type: application/json"),
            "{request}"
        );
        assert!(
            request.ends_with(&format!(r#"{{"code":"{PHONE_CODE}"}}"#)),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_access_token_and_a_phone_code_are_scrubbed_from_errors() {
        // WeChat does not echo them, but a proxy or a future errmsg might: the text is
        // scrubbed of every secret of the call, not only of the app secret.
        let (base, _request) = raw_server(
            r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest: ACCESS_TOKEN_81_chars_of_base64ish%2B%2F%3D for phone-code-e31968a7 the-app-secret rid: 1"}"#,
        )
        .await;
        let client = client(&base);
        let err = client
            .call(phone_call(PHONE_CODE), |a: PhoneAnswer| Ok(a.phone_info))
            .await
            .unwrap_err();
        assert_eq!(err.kind, Kind::AccessTokenRejected);
        assert_eq!(err.errcode, Some(40001));
        assert!(
            err.detail
                .starts_with("getuserphonenumber: errcode 40001 (access token"),
            "{err}"
        );
        for secret in [ACCESS_TOKEN, "ACCESS_TOKEN_81", PHONE_CODE, APP_SECRET] {
            assert!(!err.detail.contains(secret), "{secret} leaked: {err}");
        }
        assert_eq!(err.detail.matches("[REDACTED]").count(), 3, "{err}");
    }

    #[test]
    fn scrub_removes_every_secret_raw_and_encoded_and_bounds_length() {
        let call = Call::get("jscode2session", "sns/jscode2session")
            .secret_query("secret", "top&secret")
            .secret_query("js_code", "thecode")
            .secret("")
            .secret("code");
        let err = call.error(
            Kind::Unexpected,
            None,
            "x top&secret y thecode z top%26secret",
        );
        assert_eq!(
            err.detail,
            "jscode2session: x [REDACTED] y [REDACTED] z [REDACTED]"
        );
        let long = call.error(Kind::Unexpected, None, "字".repeat(500));
        assert!(long.detail.len() <= "jscode2session: ".len() + MAX_TEXT + '…'.len_utf8());
        assert!(long.detail.ends_with('…'));
    }

    #[test]
    fn answers_are_parsed_whatever_they_look_like() {
        #[derive(Deserialize)]
        struct Answer {
            openid: String,
        }
        let call = Call::get("jscode2session", "sns/jscode2session");
        let parse = |body: &str| {
            parse::<Answer>(&call, body.as_bytes(), "text/plain").map(|answer| answer.openid)
        };
        assert_eq!(parse("\u{feff}{\"openid\":\"o\"}"), Ok("o".to_owned()));
        assert_eq!(parse(r#"{"openid":"o","errcode":0}"#), Ok("o".to_owned()));
        for (body, kind) in [
            (
                r#"{"errcode":40029,"errmsg":"invalid code"}"#,
                Kind::InvalidCode,
            ),
            (r#"{"errcode":-1}"#, Kind::Unavailable),
            (r#"{"errcode":"40029"}"#, Kind::Unexpected),
            (r#"{"open":"o"}"#, Kind::Unexpected),
            ("[40029]", Kind::Unexpected),
            ("<html>", Kind::Unexpected),
        ] {
            assert_eq!(parse(body).unwrap_err().kind, kind, "{body}");
        }
        let err = parse("<html>").unwrap_err();
        assert_eq!(
            err.detail,
            "jscode2session: response is not a JSON object (6 bytes, content type text/plain)"
        );
    }
}
