//! The real client against the mock WeChat over real HTTP on 127.0.0.1:0, plus a raw TCP
//! server for answers the mock never gives (text/plain JSON, redirects, odd statuses).

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxlogin_domain::{AppId, LoginCode, UnionId, WeChat, WeChatError};
use wxlogin_wechat_http::{BaseUrl, WeChatHttp, WeChatHttpConfig};
use wxlogin_wechat_mock::{Api, Failure, MockWeChat, serve};

// Reserved characters in the secret prove the query is encoded: the mock compares it exactly.
const SECRET: &str = "s3cr3t&x=y+z /%";

struct Harness {
    mock: MockWeChat,
    base: String,
    _stop: oneshot::Sender<()>,
}

async fn start_mock() -> Harness {
    let mock = MockWeChat::new(AppId::parse("wxapp").unwrap(), Some(SECRET.to_owned()));
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

/// Serves one canned HTTP response and hands back the request head it received.
async fn raw_server(response: String) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        socket.write_all(response.as_bytes()).await.unwrap();
        let _ = socket.shutdown().await;
        String::from_utf8(head).unwrap()
    });
    (base, handle)
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

#[tokio::test]
async fn failures_are_left_to_the_caller_to_log_and_carry_their_advice() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("wxlogin_wechat_http=trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
