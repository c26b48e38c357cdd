//! The real client against the mock WeChat over real HTTP on 127.0.0.1:0, plus a raw TCP
//! server for answers the mock never gives (text/plain JSON, redirects, odd statuses).

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxlogin_domain::{
    AccessToken, AppId, IssuedAccessToken, LoginCode, OpenId, PhoneCode, PhoneInfo, SessionKey,
    UnionId, WeChat, WeChatError,
};
use wxlogin_wechat_http::{BaseUrl, WeChatHttp, WeChatHttpConfig};
use wxlogin_wechat_mock::{Api, CountryCode, Failure, MockWeChat, Phone, serve};

// Reserved characters in the secret prove the query is encoded: the mock compares it exactly.
const SECRET: &str = "s3cr3t&x=y+z /%";

struct Harness {
    mock: MockWeChat,
    base: String,
    _stop: oneshot::Sender<()>,
}

async fn start_mock() -> Harness {
    serve_mock(MockWeChat::new(
        AppId::parse("wxapp").unwrap(),
        Some(SECRET.to_owned()),
    ))
    .await
}

async fn serve_mock(mock: MockWeChat) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, mock.clone(), async {
        let _ = stopped.await;
    }));
    Harness {
        mock,
        base,
        _stop: stop,
    }
}

fn config(base: &str, secret: &str) -> WeChatHttpConfig {
    WeChatHttpConfig {
        base_url: BaseUrl::parse(base).unwrap(),
        app_id: AppId::parse("wxapp").unwrap(),
        app_secret: SecretString::from(secret.to_owned()),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(300),
    }
}

fn client(base: &str) -> WeChatHttp {
    WeChatHttp::new(config(base, SECRET)).unwrap()
}

fn code(s: &str) -> LoginCode {
    LoginCode::parse(s).unwrap()
}

/// Exchanges `c` and checks that whatever comes back does not leak the secret or the code.
async fn exchange(
    client: &WeChatHttp,
    c: &str,
) -> Result<wxlogin_domain::CodeSession, WeChatError> {
    let result = client.code_to_session(&code(c)).await;
    if let Err(err) = &result {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(SECRET), "secret leaked: {text}");
            assert!(!text.contains("s3cr3t"), "secret leaked: {text}");
            assert!(!text.contains(c), "code leaked: {text}");
            assert!(!text.contains("jscode2session?"), "URL leaked: {text}");
        }
    }
    result
}

#[tokio::test]
async fn a_code_becomes_a_session() {
    let h = start_mock().await;
    let client = client(&h.base);
    let c = h.mock.mint_code("o1", Some("u1"));
    let session = exchange(&client, &c).await.unwrap();
    assert_eq!(session.open_id.as_str(), "o1");
    assert_eq!(session.union_id.as_ref().map(UnionId::as_str), Some("u1"));
    let key = STANDARD
        .decode(session.session_key.expose_base64())
        .unwrap();
    assert_eq!(key.len(), 16);
    assert_eq!(
        h.mock.current_session_key("o1").as_deref(),
        Some(session.session_key.expose_base64())
    );
    assert_eq!(client.app_id().as_str(), "wxapp");

    // Clones share the pool and keep working (keep-alive connection reused).
    let c = h.mock.mint_code("o2", None);
    let session = exchange(&client.clone(), &c).await.unwrap();
    assert_eq!(session.union_id, None);
}

#[tokio::test]
async fn used_and_unknown_codes() {
    let h = start_mock().await;
    let client = client(&h.base);
    let c = h.mock.mint_code("o1", None);
    exchange(&client, &c).await.unwrap();
    assert_eq!(exchange(&client, &c).await, Err(WeChatError::CodeUsed));
    assert_eq!(
        exchange(&client, "never-minted-code").await,
        Err(WeChatError::InvalidCode)
    );
}

#[tokio::test]
async fn injected_failures_map_to_domain_errors() {
    let h = start_mock().await;
    let client = client(&h.base);
    let c = h.mock.mint_code("o1", None);

    h.mock.fail_next(Api::Jscode2session, Failure::Busy, 1);
    assert!(matches!(
        exchange(&client, &c).await,
        Err(WeChatError::Unavailable(_))
    ));
    h.mock
        .fail_next(Api::Jscode2session, Failure::RateLimited, 1);
    assert_eq!(exchange(&client, &c).await, Err(WeChatError::RateLimited));
    h.mock.fail_next(Api::Jscode2session, Failure::Risky, 1);
    assert_eq!(exchange(&client, &c).await, Err(WeChatError::RiskyUser));
    h.mock.fail_next(Api::Jscode2session, Failure::Http500, 1);
    assert_eq!(
        exchange(&client, &c).await,
        Err(WeChatError::Unavailable(
            "jscode2session: WeChat answered HTTP 500".into()
        ))
    );
    h.mock.fail_next(Api::Jscode2session, Failure::Garbage, 1);
    let result = exchange(&client, &c).await;
    // The text says what came back, for the one log line the caller writes.
    assert!(
        matches!(&result, Err(WeChatError::Unexpected(m))
            if m.starts_with("jscode2session: response is not a JSON object (")
                && m.contains("content type text/html")),
        "{result:?}"
    );
    // Each failure was one request: the client never retried, and the code is still good.
    assert_eq!(h.mock.calls(Api::Jscode2session), 5);
    assert!(exchange(&client, &c).await.is_ok());
}

#[tokio::test]
async fn a_stall_beyond_the_timeout_is_unavailable_and_not_retried() {
    let h = start_mock().await;
    let client = client(&h.base);
    let c = h.mock.mint_code("o1", None);
    h.mock.fail_next(
        Api::Jscode2session,
        Failure::Slow(Duration::from_secs(1)),
        1,
    );
    let started = std::time::Instant::now();
    let result = exchange(&client, &c).await;
    assert!(
        matches!(&result, Err(WeChatError::Unavailable(m)) if m.contains("timed out")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    // Wait past the stall: a retry would show up as a second attempt.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.mock.calls(Api::Jscode2session), 1);
}

#[tokio::test]
async fn wrong_credentials_are_unexpected() {
    let h = start_mock().await;
    let c = h.mock.mint_code("o1", None);
    let wrong_secret = WeChatHttp::new(config(&h.base, "not-the-secret")).unwrap();
    let result = exchange(&wrong_secret, &c).await;
    assert!(
        matches!(&result, Err(WeChatError::Unexpected(m))
            if m.starts_with("jscode2session: errcode 40125 (WeChat rejected the app secret: \
                              the configured app id or app secret is wrong (check \
                              wechat.app_id / wechat.app_secret)): invalid appsecret, rid: ")),
        "{result:?}"
    );
    let mut other_app = config(&h.base, SECRET);
    other_app.app_id = AppId::parse("wxother").unwrap();
    let result = exchange(&WeChatHttp::new(other_app).unwrap(), &c).await;
    assert!(
        matches!(&result, Err(WeChatError::Unexpected(m))
            if m.starts_with("jscode2session: errcode 40013 (WeChat rejected the app id: ")),
        "{result:?}"
    );
    // The refusals did not consume the code.
    assert!(exchange(&client(&h.base), &c).await.is_ok());
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}"));
    let result = exchange(&client, "some-code").await;
    assert!(
        matches!(&result, Err(WeChatError::Unavailable(m)) if m.contains("connect")),
        "{result:?}"
    );
}

/// Reads one whole request: the head, then as much body as its `Content-Length` says.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&request).to_lowercase();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if request.len() >= head_end + 4 + length {
                break;
            }
        }
        let n = socket.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(request).unwrap()
}

/// Serves one canned HTTP response and hands back the whole request it received.
async fn raw_server(response: String) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await;
        socket.write_all(response.as_bytes()).await.unwrap();
        let _ = socket.shutdown().await;
        request
    });
    (base, handle)
}

/// Serves the same canned response to every request, for as long as the test runs.
async fn canned_server(response: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await;
            socket.write_all(response.as_bytes()).await.unwrap();
            let _ = socket.shutdown().await;
        }
    });
    base
}

fn http_response(status: &str, content_type: &str, body: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn json_is_parsed_whatever_the_content_type_and_the_query_is_encoded() {
    let body = r#"{"session_key":"HyVFkGl5F5OQWJZZaNzBBg==","openid":"oX","errcode":0}"#;
    let (base, request) = raw_server(http_response("200 OK", "text/plain", body, "")).await;
    let session = exchange(&client(&base), "a+b&c=d").await.unwrap();
    assert_eq!(session.open_id.as_str(), "oX");
    let head = request.await.unwrap();
    let line = head.lines().next().unwrap();
    assert_eq!(
        line,
        "GET /sns/jscode2session?appid=wxapp&secret=s3cr3t%26x%3Dy%2Bz+%2F%25\
         &js_code=a%2Bb%26c%3Dd&grant_type=authorization_code HTTP/1.1"
    );
}

#[tokio::test]
async fn odd_answers_are_classified() {
    let cases = [
        // A success without a session key is not a success.
        (
            http_response("200 OK", "application/json", r#"{"openid":"oX"}"#, ""),
            "unexpected",
        ),
        (
            http_response(
                "200 OK",
                "application/json",
                r#"{"session_key":"a2V5"}"#,
                "",
            ),
            "unexpected",
        ),
        (
            http_response("200 OK", "application/json", r#"{"errcode":"x"}"#, ""),
            "unexpected",
        ),
        (
            http_response(
                "200 OK",
                "application/json",
                r#"{"errcode":99999,"errmsg":"hm"}"#,
                "",
            ),
            "unexpected",
        ),
        (
            http_response("404 Not Found", "text/html", "<html>nope</html>", ""),
            "unexpected",
        ),
        // Redirects are not followed: the secret must not travel to another URL.
        (
            http_response(
                "302 Found",
                "text/html",
                "",
                "Location: http://127.0.0.1:9/steal\r\n",
            ),
            "unexpected",
        ),
        (
            http_response("503 Service Unavailable", "text/html", "busy", ""),
            "unavailable",
        ),
        (
            http_response(
                "502 Bad Gateway",
                "application/json",
                r#"{"errcode":0}"#,
                "",
            ),
            "unavailable",
        ),
    ];
    for (response, expected) in cases {
        let (base, _request) = raw_server(response.clone()).await;
        let result = exchange(&client(&base), "some-code").await;
        let ok = match expected {
            "unexpected" => matches!(result, Err(WeChatError::Unexpected(_))),
            _ => matches!(result, Err(WeChatError::Unavailable(_))),
        };
        assert!(ok, "{response}: {result:?}");
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_answer_is_unavailable() {
    // The server closes after promising more body than it sends.
    let response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"openid\"".to_owned();
    let (base, _request) = raw_server(response).await;
    let result = exchange(&client(&base), "some-code").await;
    assert!(
        matches!(result, Err(WeChatError::Unavailable(_))),
        "{result:?}"
    );
}

/// Captures what the client logs on the current thread (a current-thread test runtime runs
/// the client's futures there), filtered to this crate.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this crate's log lines on the current thread until the guard is dropped.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("wxlogin_wechat_http=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn failures_are_left_to_the_caller_to_log_and_carry_their_advice() {
    let (captured, _guard) = capture_logs();

    let h = start_mock().await;
    let c = h.mock.mint_code("o1", None);
    h.mock.fail_next(Api::Jscode2session, Failure::Busy, 1);
    exchange(&client(&h.base), &c).await.unwrap_err();
    let wrong_secret = WeChatHttp::new(config(&h.base, "not-the-secret")).unwrap();
    let refused = exchange(&wrong_secret, &c).await.unwrap_err();
    // The server logs a failure once, where it becomes an answer: the advice travels in the
    // error's text to that line.
    assert!(
        refused
            .to_string()
            .contains("check wechat.app_id / wechat.app_secret"),
        "{refused}"
    );
    exchange(&client(&h.base), &c).await.unwrap();

    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().collect();
    // Only the success is traced; the two failures are the caller's to log, once.
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].contains(" DEBUG ")
            && lines[0].contains("WeChat call succeeded")
            && lines[0].contains("api=\"jscode2session\""),
        "{logs}"
    );
    for secret in [SECRET, "s3cr3t", "not-the-secret", c.as_str()] {
        assert!(!logs.contains(secret), "{secret} reached the log: {logs}");
    }
    let key = h.mock.current_session_key("o1").unwrap();
    assert!(!logs.contains(&key), "the session key reached the log");
}

// An access token with characters a query must encode, a phone code, and WECHAT.md's example
// session key with the checksession signature it gives (HMAC-SHA256 of "" keyed with the
// key's base64 text: `printf '' | openssl dgst -sha256 -hmac 'o0q0otL8aEzpcZL/FT9WsQ=='`).
const ACCESS_TOKEN: &str = "AT_82_chars+/=&x-NOT-REAL-but-long-enough-to-be-unmistakable-in-a-log";
const PHONE_CODE: &str = "phone-code-e31968a7f0";
const EXAMPLE_KEY: &str = "o0q0otL8aEzpcZL/FT9WsQ==";
const EXAMPLE_SIGNATURE: &str = "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128";

fn access_token(s: &str) -> AccessToken {
    AccessToken::new(s.to_owned())
}

fn phone_code(s: &str) -> PhoneCode {
    PhoneCode::parse(s).unwrap()
}

fn open_id(s: &str) -> OpenId {
    OpenId::parse(s).unwrap()
}

fn session_key(s: &str) -> SessionKey {
    SessionKey::from_base64(s).unwrap()
}

/// Panics if an error of `result` quotes any of `secrets` (or the app secret).
fn no_leak<T>(result: Result<T, WeChatError>, secrets: &[&str]) -> Result<T, WeChatError> {
    if let Err(err) = &result {
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in secrets.iter().chain(&[SECRET, "s3cr3t"]) {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
        }
    }
    result
}

async fn stable(client: &WeChatHttp) -> Result<IssuedAccessToken, WeChatError> {
    no_leak(client.stable_access_token().await, &[])
}

async fn phone(client: &WeChatHttp, token: &str, code: &str) -> Result<PhoneInfo, WeChatError> {
    let result = client
        .phone_number(&access_token(token), &phone_code(code))
        .await;
    no_leak(result, &[token, code])
}

async fn check(
    client: &WeChatHttp,
    token: &str,
    open: &str,
    key: &str,
) -> Result<bool, WeChatError> {
    let result = client
        .check_session(&access_token(token), &open_id(open), &session_key(key))
        .await;
    no_leak(result, &[token, key])
}

fn json_response(body: &str) -> String {
    http_response("200 OK", "application/json", body, "")
}

/// The request's body, parsed.
fn body_of(request: &str) -> Value {
    let (_, body) = request.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn stable_token_posts_the_credentials_as_json() {
    let (base, request) = raw_server(json_response(
        r#"{"access_token":"AT-from-wechat","expires_in":7200}"#,
    ))
    .await;
    let issued = stable(&client(&base)).await.unwrap();
    assert_eq!(issued.token.expose(), "AT-from-wechat");
    assert_eq!(issued.expires_in, chrono::Duration::seconds(7200));
    let request = request.await.unwrap();
    assert_eq!(
        request.lines().next().unwrap(),
        "POST /cgi-bin/stable_token HTTP/1.1"
    );
    assert!(
        request
            .to_lowercase()
            .contains("content-type: application/json"),
        "{request}"
    );
    assert_eq!(
        body_of(&request),
        json!({
            "grant_type": "client_credential",
            "appid": "wxapp",
            "secret": SECRET,
            "force_refresh": false,
        })
    );
}

#[tokio::test]
async fn stable_token_hands_out_the_current_token() {
    let h = start_mock().await;
    let client = client(&h.base);
    let first = stable(&client).await.unwrap();
    assert_eq!(
        h.mock.current_access_token().as_deref(),
        Some(first.token.expose())
    );
    assert_eq!(first.expires_in, chrono::Duration::seconds(7200));
    // Normal mode: the same token again, never a refresh.
    let again = stable(&client).await.unwrap();
    assert_eq!(again.token, first.token);
    assert!(again.expires_in <= first.expires_in);
    h.mock.expire_access_token();
    let renewed = stable(&client).await.unwrap();
    assert_ne!(renewed.token, first.token);
    assert_eq!(h.mock.calls(Api::StableToken), 3);

    let wrong_secret = WeChatHttp::new(config(&h.base, "not-the-secret")).unwrap();
    let result = no_leak(
        wrong_secret.stable_access_token().await,
        &["not-the-secret"],
    );
    assert!(
        matches!(&result, Err(WeChatError::Unexpected(m))
            if m.starts_with("stable_token: errcode 40125 (WeChat rejected the app secret: ")
                && m.contains("check wechat.app_id / wechat.app_secret")),
        "{result:?}"
    );
    h.mock.fail_next(Api::StableToken, Failure::Busy, 1);
    assert!(matches!(
        stable(&client).await,
        Err(WeChatError::Unavailable(_))
    ));
    h.mock.fail_next(Api::StableToken, Failure::Garbage, 1);
    assert!(matches!(
        stable(&client).await,
        Err(WeChatError::Unexpected(m)) if m.starts_with("stable_token: response is not a JSON")
    ));
    // Refusals and failures did not change the token.
    assert_eq!(stable(&client).await.unwrap().token, renewed.token);
}

#[tokio::test]
async fn odd_token_answers_are_unexpected_and_never_quote_the_token() {
    for body in [
        r#"{"expires_in":7200}"#,
        r#"{"access_token":"","expires_in":7200}"#,
        r#"{"access_token":"AT-quoted-nowhere"}"#,
        r#"{"access_token":"AT-quoted-nowhere","expires_in":0}"#,
        r#"{"access_token":"AT-quoted-nowhere","expires_in":-5}"#,
        r#"{"access_token":"AT-quoted-nowhere","expires_in":"7200"}"#,
        r#"{"access_token":["AT-quoted-nowhere"],"expires_in":7200}"#,
    ] {
        let base = canned_server(json_response(body)).await;
        let result = no_leak(stable(&client(&base)).await, &["AT-quoted-nowhere"]);
        assert!(
            matches!(&result, Err(WeChatError::Unexpected(m)) if m.starts_with("stable_token: ")),
            "{body}: {result:?}"
        );
    }
}

#[tokio::test]
async fn phone_number_posts_the_code_and_the_token_in_the_query() {
    let (base, request) = raw_server(json_response(
        r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+12025550123","purePhoneNumber":"2025550123","countryCode":1,"watermark":{"timestamp":1700000000,"appid":"wxapp"}}}"#,
    ))
    .await;
    let info = phone(&client(&base), ACCESS_TOKEN, PHONE_CODE)
        .await
        .unwrap();
    assert_eq!(info.phone_number.as_str(), "+12025550123");
    assert_eq!(info.pure_phone_number, "2025550123");
    assert_eq!(info.country_code, "1");
    let request = request.await.unwrap();
    let encoded: String = url::form_urlencoded::byte_serialize(ACCESS_TOKEN.as_bytes()).collect();
    assert_eq!(
        request.lines().next().unwrap(),
        format!("POST /wxa/business/getuserphonenumber?access_token={encoded} HTTP/1.1")
    );
    assert_eq!(body_of(&request), json!({ "code": PHONE_CODE }));
}

#[tokio::test]
async fn phone_numbers_from_the_mock() {
    let h = start_mock().await;
    let client = client(&h.base);
    let token = stable(&client).await.unwrap().token;
    let token = token.expose();
    let mainland = h
        .mock
        .mint_phone_code("o1", Phone::new("13800138000", CountryCode::default()));
    let info = phone(&client, token, &mainland).await.unwrap();
    assert_eq!(
        (
            info.phone_number.as_str(),
            info.pure_phone_number.as_str(),
            info.country_code.as_str()
        ),
        ("13800138000", "13800138000", "86")
    );
    let abroad = h
        .mock
        .mint_phone_code("o2", Phone::new("+12025550123", CountryCode::Number(1)));
    let info = phone(&client, token, &abroad).await.unwrap();
    assert_eq!(
        (info.pure_phone_number.as_str(), info.country_code.as_str()),
        ("2025550123", "1")
    );

    // Single use; and a wx.login code is no phone code.
    assert_eq!(
        phone(&client, token, &mainland).await,
        Err(WeChatError::InvalidCode)
    );
    let login = h.mock.mint_code("o1", None);
    assert_eq!(
        phone(&client, token, &login).await,
        Err(WeChatError::InvalidCode)
    );

    let code = h
        .mock
        .mint_phone_code("o3", Phone::new("13900139000", CountryCode::default()));
    h.mock
        .fail_next(Api::GetUserPhoneNumber, Failure::RateLimited, 1);
    assert_eq!(
        phone(&client, token, &code).await,
        Err(WeChatError::RateLimited)
    );
    h.mock
        .fail_next(Api::GetUserPhoneNumber, Failure::Http500, 1);
    assert_eq!(
        phone(&client, token, &code).await,
        Err(WeChatError::Unavailable(
            "getuserphonenumber: WeChat answered HTTP 500".into()
        ))
    );
    h.mock.expire_access_token();
    let expired = phone(&client, token, &code).await;
    assert!(
        matches!(&expired, Err(WeChatError::AccessTokenRejected(m))
            if m.starts_with("getuserphonenumber: errcode 42001 (access token expired)")),
        "{expired:?}"
    );
    let fresh = stable(&client).await.unwrap().token;
    let stale = phone(&client, token, &code).await;
    assert!(
        matches!(&stale, Err(WeChatError::AccessTokenRejected(m))
            if m.starts_with("getuserphonenumber: errcode 40001 (")),
        "{stale:?}"
    );
    // Every refusal spared the code.
    assert!(phone(&client, fresh.expose(), &code).await.is_ok());
    assert_eq!(h.mock.calls(Api::GetUserPhoneNumber), 9);
}

#[tokio::test]
async fn a_phone_number_watermarked_for_another_app_is_unexpected() {
    // The mock speaks for wxother; the client is wxapp's.
    let h = serve_mock(MockWeChat::new(AppId::parse("wxother").unwrap(), None)).await;
    let client = client(&h.base);
    let token = stable(&client).await.unwrap().token;
    let code = h
        .mock
        .mint_phone_code("o1", Phone::new("13800138000", CountryCode::default()));
    let result = phone(&client, token.expose(), &code).await;
    assert_eq!(
        result,
        Err(WeChatError::Unexpected(
            "getuserphonenumber: the phone number's watermark does not name this app".into()
        ))
    );
}

#[tokio::test]
async fn odd_phone_answers_are_unexpected_and_never_quote_the_number() {
    let info = |fields: &str| {
        format!(
            r#"{{"errcode":0,"errmsg":"ok","phone_info":{{{fields},"watermark":{{"timestamp":1,"appid":"wxapp"}}}}}}"#
        )
    };
    let cases = [
        r#"{"errcode":0,"errmsg":"ok"}"#.to_owned(),
        r#"{"phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86"}}"#.to_owned(),
        r#"{"phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"appid":"wxother"}}}"#.to_owned(),
        info(r#""purePhoneNumber":"13800138000","countryCode":"86""#),
        info(r#""phoneNumber":"13800138000","countryCode":"86""#),
        info(r#""phoneNumber":"13800138000","purePhoneNumber":"13800138000""#),
        info(r#""phoneNumber":"13800138000x","purePhoneNumber":"13800138000","countryCode":"86""#),
        info(r#""phoneNumber":13800138000,"purePhoneNumber":"13800138000","countryCode":"86""#),
        info(r#""phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"+86""#),
        info(r#""phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":-86"#),
        info(r#""phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"""#),
    ];
    for body in cases {
        let base = canned_server(json_response(&body)).await;
        let result = no_leak(
            phone(&client(&base), ACCESS_TOKEN, PHONE_CODE).await,
            &["13800138000"],
        );
        assert!(
            matches!(&result, Err(WeChatError::Unexpected(m)) if m.starts_with("getuserphonenumber: ")),
            "{body}: {result:?}"
        );
    }
    // Both forms of countryCode, and spaces around it, are fine.
    for country_code in [r#""86""#, "86", r#"" 86 ""#] {
        let body = info(&format!(
            r#""phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":{country_code}"#
        ));
        let base = canned_server(json_response(&body)).await;
        let info = phone(&client(&base), ACCESS_TOKEN, PHONE_CODE)
            .await
            .unwrap();
        assert_eq!(info.country_code, "86", "{country_code}");
    }
}

#[tokio::test]
async fn check_session_signs_the_key_text_with_hmac_sha256() {
    let (base, request) = raw_server(json_response(r#"{"errcode":0,"errmsg":"ok"}"#)).await;
    assert_eq!(
        check(&client(&base), ACCESS_TOKEN, "o1", EXAMPLE_KEY).await,
        Ok(true)
    );
    let request = request.await.unwrap();
    let encoded: String = url::form_urlencoded::byte_serialize(ACCESS_TOKEN.as_bytes()).collect();
    assert_eq!(
        request.lines().next().unwrap(),
        format!(
            "GET /wxa/checksession?access_token={encoded}&signature={EXAMPLE_SIGNATURE}\
             &openid=o1&sig_method=hmac_sha256 HTTP/1.1"
        )
    );
    let base = canned_server(json_response(
        r#"{"errcode":87009,"errmsg":"invalid signature rid: 1"}"#,
    ))
    .await;
    assert_eq!(
        check(&client(&base), ACCESS_TOKEN, "o1", EXAMPLE_KEY).await,
        Ok(false)
    );
}

#[tokio::test]
async fn check_session_against_the_mock() {
    let h = start_mock().await;
    let client = client(&h.base);
    let token = stable(&client).await.unwrap().token;
    let token = token.expose();
    let session = exchange(&client, &h.mock.mint_code("o1", None))
        .await
        .unwrap();
    let key = session.session_key.expose_base64();
    assert_eq!(check(&client, token, "o1", key).await, Ok(true));
    // A later wx.login rotates the key: ours is stale now.
    h.mock.mint_code("o1", None);
    assert_eq!(check(&client, token, "o1", key).await, Ok(false));
    let current = h.mock.current_session_key("o1").unwrap();
    assert_eq!(check(&client, token, "o1", &current).await, Ok(true));
    h.mock.invalidate_access_token();
    let stale = check(&client, token, "o1", &current).await;
    assert!(
        matches!(&stale, Err(WeChatError::AccessTokenRejected(m))
            if m.starts_with("checksession: errcode 40001 (")),
        "{stale:?}"
    );
    assert_eq!(h.mock.calls(Api::CheckSession), 4);
}

/// What a result is, for comparing outcomes across APIs.
fn outcome<T: std::fmt::Debug>(result: &Result<T, WeChatError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(WeChatError::InvalidCode) => "invalid_code".into(),
        Err(WeChatError::CodeUsed) => "code_used".into(),
        Err(WeChatError::RateLimited) => "rate_limited".into(),
        Err(WeChatError::RiskyUser) => "risky_user".into(),
        Err(WeChatError::Unavailable(_)) => "unavailable".into(),
        Err(WeChatError::AccessTokenRejected(_)) => "access_token_rejected".into(),
        Err(WeChatError::Unexpected(m)) => format!("unexpected: {m}"),
    }
}

#[tokio::test]
async fn every_errcode_maps_alike_for_every_api() {
    let configuration = "check wechat.app_id / wechat.app_secret";
    let whitelist = "add it to the IP whitelist";
    for (errcode, expected) in [
        (40029, "invalid_code"),
        (40163, "code_used"),
        (45011, "rate_limited"),
        (45009, "rate_limited"),
        (40226, "risky_user"),
        (-1, "unavailable"),
        (40001, "access_token_rejected"),
        (42001, "access_token_rejected"),
        (40014, "access_token_rejected"),
        (40013, configuration),
        (40125, configuration),
        (40164, whitelist),
        (87009, "invalid signature"),
        (99999, "unknown errcode"),
    ] {
        let body = format!(r#"{{"errcode":{errcode},"errmsg":"some text, rid: 1"}}"#);
        let base = canned_server(json_response(&body)).await;
        let client = client(&base);
        let outcomes = [
            (
                "jscode2session",
                outcome(&exchange(&client, "some-code").await),
            ),
            ("stable_token", outcome(&stable(&client).await)),
            (
                "getuserphonenumber",
                outcome(&phone(&client, ACCESS_TOKEN, PHONE_CODE).await),
            ),
            (
                "checksession",
                outcome(&check(&client, ACCESS_TOKEN, "o1", EXAMPLE_KEY).await),
            ),
        ];
        for (api, outcome) in outcomes {
            if errcode == 87009 && api == "checksession" {
                // The one API that expects it: the key is not the current one.
                assert_eq!(outcome, "ok false");
            } else if expected.contains(' ') {
                // Unexpected, with the errcode and what it means in the text.
                let prefix = format!("unexpected: {api}: errcode {errcode} (");
                assert!(
                    outcome.starts_with(&prefix) && outcome.contains(expected),
                    "{errcode} {api}: {outcome}"
                );
            } else {
                assert_eq!(outcome, expected, "{errcode} {api}");
            }
        }
    }
}

#[tokio::test]
async fn secrets_reach_neither_error_texts_nor_logs() {
    let (captured, _guard) = capture_logs();

    // Successes: the token, the phone number and the session key are only ever answers.
    let h = start_mock().await;
    let mock_client = client(&h.base);
    let token = stable(&mock_client).await.unwrap().token;
    let code = h
        .mock
        .mint_phone_code("o1", Phone::new("13800138000", CountryCode::default()));
    phone(&mock_client, token.expose(), &code).await.unwrap();
    let session = exchange(&mock_client, &h.mock.mint_code("o1", None))
        .await
        .unwrap();
    let key = session.session_key.expose_base64().to_owned();
    assert_eq!(
        check(&mock_client, token.expose(), "o1", &key).await,
        Ok(true)
    );

    // Failures whose errmsg echoes every secret of the call, raw and percent-encoded (WeChat
    // does not, but a proxy or a future errmsg might).
    let echo = |secrets: &[&str]| {
        let text: Vec<String> = secrets
            .iter()
            .flat_map(|s| {
                let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
                [s.to_string(), encoded]
            })
            .collect();
        let body = json!({"errcode": 40001, "errmsg": text.join(" ")}).to_string();
        canned_server(json_response(&body))
    };
    let stable_echo = client(&echo(&[SECRET]).await);
    let phone_echo = client(&echo(&[SECRET, ACCESS_TOKEN, PHONE_CODE]).await);
    let check_echo = client(&echo(&[SECRET, ACCESS_TOKEN, EXAMPLE_SIGNATURE]).await);
    for result in [
        outcome(&stable(&stable_echo).await),
        outcome(&phone(&phone_echo, ACCESS_TOKEN, PHONE_CODE).await),
        outcome(&check(&check_echo, ACCESS_TOKEN, "o1", EXAMPLE_KEY).await),
    ] {
        assert!(result.starts_with("access_token_rejected"), "{result}");
    }
    let err = check_echo
        .check_session(
            &access_token(ACCESS_TOKEN),
            &open_id("o1"),
            &session_key(EXAMPLE_KEY),
        )
        .await
        .unwrap_err();
    assert!(
        !err.to_string().contains(EXAMPLE_SIGNATURE) && err.to_string().contains("[REDACTED]"),
        "{err}"
    );

    let logs = captured.text();
    // One debug line per successful call (the four against the mock); the failures are the
    // caller's to log.
    assert_eq!(logs.lines().count(), 4, "{logs}");
    assert!(logs.lines().all(|l| l.contains(" DEBUG ")), "{logs}");
    for secret in [
        SECRET,
        "s3cr3t",
        token.expose(),
        &code,
        "13800138000",
        &key,
        ACCESS_TOKEN,
        "AT_82",
        PHONE_CODE,
        EXAMPLE_SIGNATURE,
    ] {
        assert!(!logs.contains(secret), "{secret} reached the log: {logs}");
    }
}
