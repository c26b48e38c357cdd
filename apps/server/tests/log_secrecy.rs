//! The whole flow through the real app (real SQLite, in-process mock WeChat) with every log
//! event captured: no token, session key, code or encrypted payload may reach the log. Its own
//! test binary, so the capturing subscriber can be the process-wide default.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Write;
use std::sync::{Arc, Mutex};

use poem::test::TestClient;
use serde_json::{Value, json};
use wxlogin_domain::AppId;
use wxlogin_domain::ServiceConfig;
use wxlogin_server::http::{Apps, HttpConfig, app};
use wxlogin_server::wiring::new_service;
use wxlogin_store_sqlite::Sqlite;
use wxlogin_wechat_mock::MockWeChat;

fn app_id() -> AppId {
    AppId::parse("wxtest").unwrap()
}

async fn json_of(resp: poem::test::TestResponse) -> Value {
    serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap()
}

/// A writer that keeps everything logged, for the secrecy test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_logs_no_secret_and_logout_ends_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wx.db").display());
    let store = Sqlite::connect(&url).await.unwrap();
    let mock = MockWeChat::new(app_id(), None);
    let app = app(
        Apps::single(
            app_id(),
            new_service(store, mock.clone(), &ServiceConfig::default()),
        ),
        vec![(
            "/mock".to_owned(),
            wxlogin_wechat_mock::control_routes(mock.clone()),
        )],
        &HttpConfig::default(),
    );
    let cli = TestClient::new(app);

    let code = mock.mint_code("o-secret", Some("u-secret"));
    let resp = cli
        .post("/onLogin")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let login = json_of(resp).await;
    let token = login["token"].as_str().unwrap().to_owned();
    let session_key = mock.current_session_key("o-secret").unwrap();

    let payload = mock
        .encrypt_user_info(
            "o-secret",
            json!({"nickName": "Secretive", "avatarUrl": "https://example.com/s.png"}),
        )
        .unwrap();
    let resp = cli
        .post("/updateUserInfo")
        .body_json(&json!({
            "encryptedData": payload.encrypted_data,
            "iv": payload.iv,
            "token": token,
        }))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(json_of(resp).await["profileComplete"], true);

    // A failing attempt logs too: a wrong token and an undecryptable payload.
    cli.post("/updateUserInfo")
        .body_json(&json!({"encryptedData": "AAAA", "iv": payload.iv, "token": token}))
        .send()
        .await
        .assert_status(poem::http::StatusCode::UNPROCESSABLE_ENTITY);

    let me = cli
        .get("/api/v1/me")
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await;
    me.assert_status_is_ok();
    assert_eq!(json_of(me).await["user"]["nickName"], "Secretive");

    let out = cli
        .delete("/api/v1/session")
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await;
    out.assert_status(poem::http::StatusCode::NO_CONTENT);
    let me = cli
        .get("/api/v1/me")
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await;
    me.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(me).await["error"], "invalid_token");
    let anonymous = cli.get("/api/v1/me").send().await;
    anonymous.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(anonymous).await["error"], "invalid_token");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/onLogin"),
        "the request log is captured: {logs}"
    );
    for secret in [
        token.as_str(),
        &token[4..],
        session_key.as_str(),
        code.as_str(),
        payload.encrypted_data.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}

/// A WeChat failure through the real HTTP client reaches the log once: on the request's line,
/// where it becomes the answer, with the client's detail.
#[tokio::test]
async fn a_wechat_failure_is_logged_once_through_the_real_client() {
    use wxlogin_wechat_http::{BaseUrl, WeChatHttp, WeChatHttpConfig};
    use wxlogin_wechat_mock::{Api, Failure};

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This thread only; the current-thread runtime runs the app, the client and the mock here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockWeChat::new(app_id(), Some("the-app-secret".into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wxlogin_wechat_mock::serve(listener, mock.clone(), async {
        let _ = stopped.await;
    }));
    let mut config = WeChatHttpConfig::new(app_id(), "the-app-secret".to_owned().into());
    config.base_url = BaseUrl::parse(&base).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wx.db").display());
    let service = new_service(
        Sqlite::connect(&url).await.unwrap(),
        WeChatHttp::new(config).unwrap(),
        &ServiceConfig::default(),
    );
    let cli = TestClient::new(app(
        Apps::single(app_id(), service),
        Vec::<(String, poem::Route)>::new(),
        &HttpConfig::default(),
    ));

    mock.fail_next(Api::Jscode2session, Failure::Busy, 1);
    let code = mock.mint_code("o-once", None);
    let resp = cli
        .post("/onLogin")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failures: Vec<&str> = logs.lines().filter(|l| l.contains("errcode -1")).collect();
    assert_eq!(failures.len(), 1, "{logs}");
    assert!(failures[0].contains("WARN"), "{}", failures[0]);
    assert!(
        failures[0].contains("wechat_unavailable"),
        "{}",
        failures[0]
    );
    assert!(
        !logs.contains("the-app-secret"),
        "the secret reached the log"
    );
    assert!(!logs.contains(code.as_str()), "the code reached the log");
}
