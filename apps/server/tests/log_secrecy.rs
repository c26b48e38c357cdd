//! The whole flow, and every error path, through the real app (real SQLite, the mock WeChat in
//! process or behind the real HTTP client) with every log event captured: no token, session
//! key, code, phone code, access token, app secret or encrypted payload may reach the log. Its own
//! test binary, so the capturing subscriber can be the process-wide default.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Write;
use std::sync::{Arc, Mutex};

use poem::test::TestClient;
use serde_json::{Value, json};
use wxlogin_domain::ServiceConfig;
use wxlogin_domain::{AppId, MockAdminService};
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
        Arc::new(MockAdminService::new()),
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
        Arc::new(MockAdminService::new()),
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

/// Every error path a client or WeChat can cause, through the real HTTP client (so the app
/// secret and the access token are really sent), with everything logged at TRACE: replayed,
/// unknown and misplaced codes, a phone code replayed, every kind of decrypt failure, a forged
/// signature, unknown, revoked and malformed tokens, an oversized field, and each WeChat
/// failure on both the code exchange and the phone API (with the access token rejected and
/// renewed). No session key, token, code, phone code, access token, secret or payload may
/// reach the log. (Operators' passwords: `tests/e2e/tests/admin.rs`.)
#[tokio::test]
async fn every_error_path_logs_no_secret() {
    use wxlogin_wechat_http::{BaseUrl, WeChatHttp, WeChatHttpConfig};
    use wxlogin_wechat_mock::{Api, CountryCode, Failure, Phone};

    const SECRET: &str = "the-error-paths-app-secret";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This thread only; the current-thread runtime runs the app, the client and the mock here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockWeChat::new(app_id(), Some(SECRET.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wxlogin_wechat_mock::serve(listener, mock.clone(), async {
        let _ = stopped.await;
    }));
    let mut config = WeChatHttpConfig::new(app_id(), SECRET.to_owned().into());
    config.base_url = BaseUrl::parse(&base).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wx.db").display());
    let service = new_service(
        Sqlite::connect(&url).await.unwrap(),
        WeChatHttp::new(config).unwrap(),
        &ServiceConfig::default(),
    );
    // Budgets large enough that every failure below is answered by its own error, not 429.
    let mut http_config = HttpConfig::default();
    http_config.limits.failed_burst = std::num::NonZeroU32::new(10_000).unwrap();
    http_config.limits.decrypt_failures_per_minute = std::num::NonZeroU32::new(10_000).unwrap();
    let cli = TestClient::new(app(
        Apps::single(app_id(), service),
        Arc::new(MockAdminService::new()),
        Vec::<(String, poem::Route)>::new(),
        &http_config,
    ));
    let mut secrets: Vec<String> = vec![SECRET.to_owned()];
    let login = |code: String| {
        let cli = &cli;
        async move {
            cli.post("/api/v1/login")
                .body_json(&json!({ "code": code }))
                .send()
                .await
        }
    };

    // Codes: one that works, then replayed; one WeChat never issued; WeChat failing each way.
    let code = mock.mint_code("o-errors", Some("u-errors"));
    secrets.push(code.clone());
    let resp = login(code.clone()).await;
    resp.assert_status_is_ok();
    let token = json_of(resp).await["token"].as_str().unwrap().to_owned();
    secrets.push(token.clone());
    secrets.push(token[4..].to_owned());
    secrets.push(mock.current_session_key("o-errors").unwrap());
    login(code)
        .await
        .assert_status(poem::http::StatusCode::BAD_REQUEST);
    let unknown = "0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P".to_owned();
    secrets.push(unknown.clone());
    login(unknown)
        .await
        .assert_status(poem::http::StatusCode::BAD_REQUEST);
    for failure in [
        Failure::Busy,
        Failure::RateLimited,
        Failure::Risky,
        Failure::Http500,
        Failure::Garbage,
    ] {
        mock.fail_next(Api::Jscode2session, failure, 1);
        let code = mock.mint_code("o-errors", Some("u-errors"));
        secrets.push(code.clone());
        let status = login(code).await.0.status();
        assert!(!status.is_success(), "{failure:?}: {status}");
    }
    // The key rotated with those codes' exchanges (none succeeded, so the session's is the
    // first one; the mock's newest is a secret as well).
    secrets.push(mock.current_session_key("o-errors").unwrap());
    // A code far too long: refused by its length, its value not echoed.
    let long = "L".repeat(300);
    secrets.push(long.clone());
    login(long)
        .await
        .assert_status(poem::http::StatusCode::BAD_REQUEST);

    let bearer = format!("Bearer {token}");
    let phone = |body: Value| {
        let (cli, bearer) = (&cli, bearer.clone());
        async move {
            cli.post("/api/v1/me/phone")
                .header("Authorization", bearer)
                .body_json(&body)
                .send()
                .await
        }
    };

    // Phone codes: one that works (fetching the access token), replayed; a login code in
    // its place; the access token rejected and renewed; the phone API failing each way.
    let phone_code = mock.mint_phone_code(
        "o-errors",
        Phone::new("13800138000", CountryCode::default()),
    );
    secrets.push(phone_code.clone());
    phone(json!({ "code": phone_code }))
        .await
        .assert_status_is_ok();
    secrets.push(mock.current_access_token().unwrap());
    phone(json!({ "code": phone_code }))
        .await
        .assert_status(poem::http::StatusCode::BAD_REQUEST);
    let misplaced = mock.mint_code("o-errors", None);
    secrets.push(misplaced.clone());
    phone(json!({ "code": misplaced }))
        .await
        .assert_status(poem::http::StatusCode::BAD_REQUEST);
    mock.invalidate_access_token();
    let phone_code = mock.mint_phone_code(
        "o-errors",
        Phone::new("13800138001", CountryCode::default()),
    );
    secrets.push(phone_code.clone());
    phone(json!({ "code": phone_code }))
        .await
        .assert_status_is_ok();
    secrets.push(mock.current_access_token().unwrap());
    for failure in [
        Failure::Busy,
        Failure::RateLimited,
        Failure::Risky,
        Failure::Http500,
        Failure::Garbage,
    ] {
        mock.fail_next(Api::GetUserPhoneNumber, failure, 1);
        let phone_code = mock.mint_phone_code(
            "o-errors",
            Phone::new("13800138002", CountryCode::default()),
        );
        secrets.push(phone_code.clone());
        let status = phone(json!({ "code": phone_code })).await.0.status();
        assert!(!status.is_success(), "{failure:?}: {status}");
    }

    // Decrypt failures: garbage, a wrong length, a foreign watermark, a forged signature, on
    // both profile endpoints and the legacy phone data.
    let mock_key = mock.current_session_key("o-errors").unwrap();
    secrets.push(mock_key);
    let valid = mock
        .encrypt_user_info("o-errors", json!({"nickName": "Err"}))
        .unwrap();
    let foreign = mock
        .encrypt_user_info(
            "o-errors",
            json!({"nickName": "F", "watermark": {"appid": "wxforeign", "timestamp": 1}}),
        )
        .unwrap();
    secrets.push(valid.encrypted_data.clone());
    secrets.push(foreign.encrypted_data.clone());
    let bodies = [
        json!({"encryptedData": "AAAA", "iv": valid.iv}),
        json!({"encryptedData": "A".repeat(64), "iv": valid.iv}),
        json!({"encryptedData": foreign.encrypted_data, "iv": foreign.iv}),
        json!({"encryptedData": valid.encrypted_data, "iv": valid.iv,
               "rawData": "{\"nickName\":\"Err\"}", "signature": "0".repeat(40)}),
    ];
    for body in &bodies {
        let resp = cli
            .post("/api/v1/me/profile/encrypted")
            .header("Authorization", bearer.clone())
            .body_json(body)
            .send()
            .await;
        assert!(!resp.0.status().is_success(), "{body}");
        let mut legacy = body.clone();
        legacy["token"] = token.clone().into();
        let resp = cli.post("/updateUserInfo").body_json(&legacy).send().await;
        assert!(!resp.0.status().is_success(), "{legacy}");
        let resp = phone(body.clone()).await;
        assert!(!resp.0.status().is_success(), "{body}");
    }

    // Tokens: unknown, malformed, sent as Basic credentials, then revoked by a logout.
    let forged = "wxl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    secrets.push(forged.clone());
    for header in [
        format!("Bearer {forged}"),
        format!("Bearer {token}x"),
        format!("Basic {token}"),
    ] {
        cli.get("/api/v1/me")
            .header("Authorization", header)
            .send()
            .await
            .assert_status(poem::http::StatusCode::UNAUTHORIZED);
    }
    cli.delete("/api/v1/session")
        .header("Authorization", bearer.clone())
        .send()
        .await
        .assert_status(poem::http::StatusCode::NO_CONTENT);
    for path in ["/api/v1/me", "/api/v1/session/refresh"] {
        let req = if path.ends_with("refresh") {
            cli.post(path)
        } else {
            cli.get(path)
        };
        req.header("Authorization", bearer.clone())
            .send()
            .await
            .assert_status(poem::http::StatusCode::UNAUTHORIZED);
    }
    cli.post("/updateUserInfo")
        .body_json(&json!({"encryptedData": valid.encrypted_data, "iv": valid.iv, "token": token}))
        .send()
        .await
        .assert_status(poem::http::StatusCode::UNAUTHORIZED);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/api/v1/me/phone"),
        "the request log is captured: {logs}"
    );
    assert!(
        logs.contains("WARN"),
        "the WeChat failures are logged: {logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the log: {secret}\n{logs}"
        );
    }
}
