//! Handler tests through `poem::test::TestClient`: the real HTTP app (routes, parsing, error
//! mapping, middleware) over a mocked inbound port (`MockLoginService`), so every outcome of a
//! use case can be produced on demand and its HTTP answer checked.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use poem::Route;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use serde_json::{Value, json};
use wxlogin_domain::{
    AppId, AuthError, Authenticated, CipherError, InvalidValue, LoginError, LoginOutcome,
    MockAdminService, MockLoginService, OpenId, Profile, ProfileOutcome, ProfileStatus, Reason,
    Session, SessionId, SessionKey, StoreError, Token, TokenDigest, UpdateUserInfoError, User,
    UserId, WeChatError,
};
use wxlogin_server::http::{Apps, HttpConfig, app};

const TOKEN: &str = "wxl_handler-test-token";

const APP: &str = "wx1111111111111111";
const OTHER_APP: &str = "wx2222222222222222";

fn app_id(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

fn client(service: MockLoginService) -> TestClient<impl poem::Endpoint> {
    clients(Apps::single(app_id(APP), service))
}

fn clients(apps: Apps<MockLoginService>) -> TestClient<impl poem::Endpoint> {
    TestClient::new(app(
        apps,
        Arc::new(MockAdminService::new()),
        Vec::<(String, Route)>::new(),
        &HttpConfig::default(),
    ))
}

fn spec_of_one_app() -> String {
    wxlogin_server::http::document(
        Arc::new(Apps::single(app_id(APP), MockLoginService::new())),
        Arc::new(MockAdminService::new()),
    )
}

async fn json_of(resp: TestResponse) -> Value {
    serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap()
}

/// Asserts the status and the error body of a failure, and returns the body.
async fn expect_error(resp: TestResponse, status: StatusCode, code: &str) -> Value {
    resp.assert_status(status);
    let body = json_of(resp).await;
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).unwrap()
}

fn user() -> User {
    User {
        id: UserId::new(),
        open_id: OpenId::parse("o-handler").unwrap(),
        union_id: None,
        profile: Profile::default(),
        phone_number: None,
        created_at: at(),
        updated_at: at(),
    }
}

fn authenticated(status: ProfileStatus) -> Authenticated {
    let user = user();
    Authenticated {
        session: Session {
            id: SessionId::new(),
            user_id: user.id,
            token_digest: TokenDigest::from_bytes([7; 32]),
            session_key: SessionKey::from_base64("c2Vzc2lvbi1rZXktMDAwMQ==").unwrap(),
            created_at: at(),
            expires_at: at() + Duration::days(1),
            revoked_at: None,
            last_seen_at: at(),
        },
        user,
        status,
    }
}

fn login_answers(answer: Result<LoginOutcome, LoginError>) -> MockLoginService {
    let mut service = MockLoginService::new();
    service.expect_login().times(1).returning(move |_| {
        let answer = answer.clone();
        Box::pin(async move { answer })
    });
    service
}

async fn post_login(cli: &TestClient<impl poem::Endpoint>, code: &str) -> TestResponse {
    cli.post("/onLogin")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await
}

#[tokio::test]
async fn a_login_answers_the_token_and_the_user_with_status_200() {
    let mut service = MockLoginService::new();
    service
        .expect_login()
        .withf(|code| code.as_str() == "the-code")
        .times(1)
        .returning(|_| {
            Box::pin(async {
                Ok(LoginOutcome {
                    token: Token::new(TOKEN.into()),
                    expires_at: at(),
                    is_new_user: true,
                    user: user(),
                    status: ProfileStatus::NeedsProfile,
                })
            })
        });
    let cli = client(service);
    let resp = post_login(&cli, "the-code").await;
    resp.assert_status_is_ok();
    let body = json_of(resp).await;
    assert_eq!(body["status"], 200);
    assert_eq!(body["token"], TOKEN);
    assert_eq!(body["isNewUser"], true);
    assert_eq!(body["profileComplete"], false);
    assert_eq!(body["user"]["openId"], "o-handler");
}

#[tokio::test]
async fn every_login_failure_answers_its_documented_status_and_code() {
    let cases = [
        (WeChatError::InvalidCode.into(), 400, "invalid_code"),
        (WeChatError::CodeUsed.into(), 400, "code_used"),
        (WeChatError::RiskyUser.into(), 403, "risky_user"),
        (WeChatError::RateLimited.into(), 429, "wechat_rate_limited"),
        (
            WeChatError::Unavailable("timed out".into()).into(),
            503,
            "wechat_unavailable",
        ),
        (
            WeChatError::Unexpected("errcode 40013".into()).into(),
            502,
            "wechat_error",
        ),
        (
            StoreError::Unavailable("pool timed out".into()).into(),
            503,
            "database_unavailable",
        ),
        (
            StoreError::Unexpected("disk I/O error".into()).into(),
            500,
            "internal",
        ),
        (
            LoginError::Unexpected("bound another openid".into()),
            500,
            "internal",
        ),
    ];
    for (error, status, code) in cases {
        let detail = error.to_string();
        let cli = client(login_answers(Err(error)));
        let body = expect_error(
            post_login(&cli, "a-code").await,
            StatusCode::from_u16(status).unwrap(),
            code,
        )
        .await;
        // Internal detail is for the log only.
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains("timed out")
                && !message.contains("disk")
                && !message.contains("40013"),
            "{detail}: {message}"
        );
        // A store failure comes after the exchange: the code is spent, and the answer says so.
        assert_eq!(
            message.contains("used up"),
            detail.starts_with("database") || detail.starts_with("unexpected store"),
            "{detail}: {message}"
        );
    }
}

#[tokio::test]
async fn a_malformed_code_is_refused_before_the_use_case() {
    let mut service = MockLoginService::new();
    service.expect_login().never();
    let cli = client(service);
    expect_error(
        post_login(&cli, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let resp = cli
        .post("/api/v1/login")
        .content_type("application/json")
        .body(r#"{"code": "bad code with spaces"}"#)
        .send()
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp = cli
        .post("/onLogin")
        .content_type("text/plain")
        .body("code=x")
        .send()
        .await;
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn update_user_info_takes_the_token_from_the_body_or_the_bearer_header() {
    for (body_token, header) in [(Some(TOKEN), None), (None, Some(format!("Bearer {TOKEN}")))] {
        let mut service = MockLoginService::new();
        service
            .expect_update_user_info()
            .withf(|token, request| {
                token == TOKEN
                    && request.data.encrypted_data == "ZW5j"
                    && request.code.as_ref().map(|c| c.as_str()) == Some("fresh")
            })
            .times(1)
            .returning(|_, _| {
                Box::pin(async {
                    Ok(ProfileOutcome {
                        user: user(),
                        status: ProfileStatus::Complete,
                    })
                })
            });
        let cli = client(service);
        let mut fields = vec![("encryptedData", "ZW5j"), ("iv", "aXY="), ("code", "fresh")];
        if let Some(t) = body_token {
            fields.push(("token", t));
        }
        let form = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = cli
            .post("/updateUserInfo")
            .content_type("application/x-www-form-urlencoded")
            .body(form);
        if let Some(h) = &header {
            req = req.header("Authorization", h);
        }
        let resp = req.send().await;
        resp.assert_status_is_ok();
        let body = json_of(resp).await;
        assert_eq!(body["status"], 200);
        // The profile status comes from the use case, not from the DTO's own reading.
        assert_eq!(body["profileComplete"], true);
    }
}

#[tokio::test]
async fn update_user_info_without_a_token_is_401_and_never_reaches_the_use_case() {
    let mut service = MockLoginService::new();
    service.expect_update_user_info().never();
    let cli = client(service);
    let resp = cli
        .post("/updateUserInfo")
        .body_json(&json!({"encryptedData": "ZW5j", "iv": "aXY="}))
        .send()
        .await;
    let body = expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(body["message"].as_str().unwrap().contains("token"));
}

#[tokio::test]
async fn update_user_info_failures_answer_their_codes() {
    let cases = [
        (AuthError::TokenExpired.into(), 401, "token_expired"),
        (CipherError::DecryptFailed.into(), 422, "decrypt_failed"),
        (
            CipherError::SignatureMismatch.into(),
            422,
            "signature_mismatch",
        ),
        (
            CipherError::InvalidInput(InvalidValue::new("iv", Reason::NotOneBlock)).into(),
            400,
            "invalid_request",
        ),
        (UpdateUserInfoError::CodeForAnotherUser, 400, "invalid_code"),
        (
            UpdateUserInfoError::InvalidRequest(InvalidValue::new(
                "rawData",
                Reason::ComesWithSignature,
            )),
            400,
            "invalid_request",
        ),
    ];
    for (error, status, code) in cases {
        let mut service = MockLoginService::new();
        service
            .expect_update_user_info()
            .times(1)
            .returning(move |_, _| {
                let error = error.clone();
                Box::pin(async move { Err(error) })
            });
        let cli = client(service);
        let resp = cli
            .post("/updateUserInfo")
            .body_json(&json!({"encryptedData": "ZW5j", "iv": "aXY=", "token": TOKEN}))
            .send()
            .await;
        expect_error(resp, StatusCode::from_u16(status).unwrap(), code).await;
    }
}

#[tokio::test]
async fn me_and_logout_authenticate_with_the_bearer_token() {
    let mut service = MockLoginService::new();
    service
        .expect_authenticate()
        .withf(|token| token == TOKEN)
        .times(1)
        .returning(|_| Box::pin(async { Ok(authenticated(ProfileStatus::Complete)) }));
    service
        .expect_logout()
        .withf(|token| token == TOKEN)
        .times(1)
        .returning(|_| Box::pin(async { Ok(()) }));
    let cli = client(service);
    let resp = cli
        .get("/api/v1/me")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let body = json_of(resp).await;
    assert_eq!(body["profileComplete"], true);
    assert_eq!(body["user"]["openId"], "o-handler");
    cli.delete("/api/v1/session")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn me_and_logout_answer_401_and_503() {
    for (error, status, code) in [
        (AuthError::InvalidToken, 401, "invalid_token"),
        (AuthError::TokenExpired, 401, "token_expired"),
        (
            AuthError::Store(StoreError::Unavailable("down".into())),
            503,
            "database_unavailable",
        ),
    ] {
        let mut service = MockLoginService::new();
        let for_me = error.clone();
        service.expect_authenticate().times(1).returning(move |_| {
            let e = for_me.clone();
            Box::pin(async move { Err(e) })
        });
        service.expect_logout().times(1).returning(move |_| {
            let e = error.clone();
            Box::pin(async move { Err(e) })
        });
        let cli = client(service);
        let status = StatusCode::from_u16(status).unwrap();
        let me = cli
            .get("/api/v1/me")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .await;
        expect_error(me, status, code).await;
        let out = cli
            .delete("/api/v1/session")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .await;
        expect_error(out, status, code).await;
    }
    // Without a header the security scheme refuses before the use case.
    let mut service = MockLoginService::new();
    service.expect_authenticate().never();
    let cli = client(service);
    expect_error(
        cli.get("/api/v1/me").send().await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn readiness_follows_the_use_case_and_liveness_does_not() {
    let mut service = MockLoginService::new();
    service
        .expect_ready()
        .times(1)
        .returning(|| Box::pin(async { Err(StoreError::Unavailable("refused".into())) }));
    let cli = client(service);
    let body = expect_error(
        cli.get("/readyz").send().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(!body["message"].as_str().unwrap().contains("refused"));
    cli.get("/healthz").send().await.assert_status_is_ok();

    let mut service = MockLoginService::new();
    service
        .expect_ready()
        .times(1)
        .returning(|| Box::pin(async { Ok(()) }));
    client(service)
        .get("/readyz")
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn router_misses_and_oversized_bodies_answer_json_errors() {
    let cli = client(MockLoginService::new());
    expect_error(
        cli.get("/nowhere").send().await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        cli.get("/onLogin").send().await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let resp = cli
        .post("/onLogin")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={}", "x".repeat(70 * 1024)))
        .send()
        .await;
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

/// A captured log, for the once-per-failure rule.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

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
async fn a_failure_is_logged_once_with_its_detail_where_it_becomes_an_answer() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This test's thread only (a current-thread runtime runs the app on it).
    let _guard = tracing::subscriber::set_default(subscriber);

    let cli = client(login_answers(Err(WeChatError::Unavailable(
        "upstream stalled past 5 s".into(),
    )
    .into())));
    expect_error(
        post_login(&cli, "a-code").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("upstream stalled past 5 s"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("wechat_unavailable"), "{}", lines[0]);
    assert!(lines[0].contains("/onLogin"), "{}", lines[0]);
}

fn spec() -> Value {
    serde_json::from_str(&spec_of_one_app()).unwrap()
}

/// What schemathesis found (`cargo xtask fuzz-api`): the answers hold `null` for unknown
/// values, and the document must say so; a header naming an unknown app is a 400, so the
/// document lists the apps served; an admin user id is a UUID.
#[tokio::test]
async fn the_served_document_says_what_is_nullable_and_which_apps_and_ids_are_accepted() {
    let cli = client(MockLoginService::new());
    let resp = cli.get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/json; charset=utf-8");
    let doc = json_of(resp).await;
    let user = &doc["components"]["schemas"]["UserDto"]["properties"];
    for field in [
        "unionId",
        "nickName",
        "avatarUrl",
        "gender",
        "country",
        "province",
        "city",
        "language",
        "phoneNumber",
    ] {
        assert_eq!(user[field]["nullable"], json!(true), "{field}");
    }
    assert_eq!(user["id"].get("nullable"), None);
    let page = &doc["components"]["schemas"]["UserPageReply"]["properties"];
    assert_eq!(page["nextCursor"]["nullable"], json!(true));
    let header = doc["paths"]["/api/v1/me"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "X-WX-AppId")
        .unwrap();
    assert_eq!(header["schema"]["enum"], json!(["", APP]));
    let id = &doc["paths"]["/admin/v1/users/{id}"]["get"]["parameters"][0];
    assert_eq!(
        (&id["name"], &id["schema"]["format"]),
        (&json!("id"), &json!("uuid"))
    );
    // The served document is the checked-in one.
    assert_eq!(doc, spec());
}

fn statuses(doc: &Value, path: &str, method: &str) -> Vec<String> {
    doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is documented"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_openapi_document_describes_every_operation_field_and_error() {
    let cli = client(MockLoginService::new());
    let resp = cli.get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    let doc = json_of(resp).await;

    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/onLogin",
        "/updateUserInfo",
        "/healthz",
        "/readyz",
        "/api/v1/me",
        "/api/v1/login",
        "/api/v1/session",
        "/api/v1/session/refresh",
        "/api/v1/me/profile",
        "/api/v1/me/profile/encrypted",
        "/api/v1/me/phone",
        "/admin/v1/users",
        "/admin/v1/users/{id}",
        "/admin/v1/users/{id}/revoke-sessions",
        "/admin/v1/stats",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has a summary"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} is described"
                );
            }
        }
    }
    let login = &doc["paths"]["/onLogin"]["post"];
    let content = login["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/x-www-form-urlencoded"));
    assert!(content.keys().any(|k| k.starts_with("application/json")));

    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, prop) in schema["properties"].as_object().unwrap() {
            let described = prop["description"].as_str().is_some_and(|d| !d.is_empty())
                || prop["allOf"].is_array()
                || prop["$ref"].is_string();
            assert!(described, "{name}.{field} is described");
        }
    }
    let page = cli.get("/docs").send().await.0;
    assert!(page.status().is_success());
    let html = page.into_body().into_string().await.unwrap();
    let served = cli
        .get("/openapi.json")
        .send()
        .await
        .0
        .into_body()
        .into_string()
        .await
        .unwrap();
    // Swagger UI shows the served (refined) document, not poem-openapi's own.
    assert!(
        served.contains("pattern"),
        "the served document is the refined one"
    );
    assert!(
        html.contains(&served),
        "Swagger UI embeds the served document"
    );
}

#[test]
fn each_operation_lists_the_errors_it_can_give_and_no_others() {
    let doc = spec();
    let expect = |path: &str, method: &str, want: &[&str]| {
        assert_eq!(statuses(&doc, path, method), want, "{method} {path}");
    };
    let login = [
        "200", "400", "403", "413", "415", "429", "500", "502", "503",
    ];
    expect("/onLogin", "post", &login);
    expect("/api/v1/login", "post", &login);
    expect(
        "/updateUserInfo",
        "post",
        &[
            "200", "400", "401", "403", "413", "415", "422", "429", "500", "502", "503",
        ],
    );
    // 400 everywhere: a request may name an app this server does not serve. 429 wherever a
    // failure spends the budget of failed attempts (which can then refuse).
    expect(
        "/api/v1/me",
        "get",
        &["200", "400", "401", "429", "500", "503"],
    );
    expect(
        "/api/v1/me",
        "delete",
        &["204", "400", "401", "429", "500", "503"],
    );
    expect(
        "/api/v1/session/refresh",
        "post",
        &["200", "400", "401", "429", "500", "503"],
    );
    expect(
        "/api/v1/me/profile",
        "patch",
        &["200", "400", "401", "413", "415", "429", "500", "503"],
    );
    expect(
        "/api/v1/me/profile/encrypted",
        "post",
        &[
            "200", "400", "401", "403", "413", "415", "422", "429", "500", "502", "503",
        ],
    );
    expect(
        "/api/v1/session",
        "delete",
        &["204", "400", "401", "429", "500", "503"],
    );
    expect("/readyz", "get", &["200", "500", "503"]);
    expect("/healthz", "get", &["200"]);
    expect(
        "/admin/v1/users",
        "get",
        &["200", "400", "401", "429", "500", "503"],
    );
    let one_user = ["200", "400", "401", "404", "429", "500", "503"];
    expect("/admin/v1/users/{id}", "get", &one_user);
    expect("/admin/v1/users/{id}/revoke-sessions", "post", &one_user);
    expect(
        "/admin/v1/stats",
        "get",
        &["200", "401", "429", "500", "503"],
    );
    // Each status names its codes.
    let described = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let bad = described("/onLogin", "post", "400");
    for code in ["`invalid_request`", "`invalid_code`", "`code_used`"] {
        assert!(bad.contains(code), "{bad}");
    }
    assert!(described("/updateUserInfo", "post", "422").contains("`decrypt_failed`"));
}

/// `docs/openapi.json` is the API as it is: this test fails when the code changed the document
/// and the file was not regenerated (`cargo xtask openapi` rewrites it).
#[test]
fn the_checked_in_openapi_document_is_current() {
    let spec = spec_of_one_app();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("WXLOGIN_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{spec}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == spec.trim_end(),
        "docs/openapi.json is out of date: run `cargo xtask openapi`"
    );
}

#[tokio::test]
async fn a_profile_patch_is_validated_field_by_field_before_the_use_case() {
    let mut service = MockLoginService::new();
    service.expect_update_profile().never();
    let cli = client(service);
    for (body, field) in [
        (json!({"nickName": ""}), "nickName"),
        (json!({"nickName": "a\u{0}b"}), "nickName"),
        (json!({"nickName": "字".repeat(65)}), "nickName"),
        (json!({"avatarUrl": "javascript:alert(1)"}), "avatarUrl"),
        (json!({"gender": 3}), "gender"),
        (json!({"city": "x".repeat(65)}), "city"),
        (json!({"language": "x".repeat(17)}), "language"),
    ] {
        let resp = cli
            .patch("/api/v1/me/profile")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body_json(&body)
            .send()
            .await;
        let err = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
}

#[tokio::test]
async fn a_profile_patch_hands_the_trimmed_fields_to_the_use_case() {
    let mut service = MockLoginService::new();
    service
        .expect_update_profile()
        .withf(|token, update| {
            token == TOKEN
                && update.0.nick_name.as_ref().map(|n| n.as_str()) == Some("小明")
                && update.0.avatar_url.as_ref().map(|a| a.as_str())
                    == Some("https://example.com/a.png")
                && update.0.gender.map(|g| g.code()) == Some(1)
                && update.0.city.is_none()
        })
        .times(1)
        .returning(|_, _| {
            Box::pin(async {
                Ok(ProfileOutcome {
                    user: user(),
                    status: ProfileStatus::Complete,
                })
            })
        });
    let cli = client(service);
    let resp = cli
        .patch("/api/v1/me/profile")
        .header("Authorization", format!("bearer {TOKEN}"))
        .body_json(&json!({
            "nickName": "  小明 ",
            "avatarUrl": "https://example.com/a.png",
            "gender": 1
        }))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(json_of(resp).await["profileComplete"], true);
}

#[tokio::test]
async fn refresh_answers_the_new_token_and_erase_answers_204() {
    let mut service = MockLoginService::new();
    service
        .expect_refresh()
        .withf(|token| token == TOKEN)
        .times(1)
        .returning(|_| {
            Box::pin(async {
                Ok(wxlogin_domain::Refreshed {
                    token: Token::new("wxl_rotated".into()),
                    expires_at: at(),
                })
            })
        });
    service
        .expect_erase()
        .withf(|token| token == TOKEN)
        .times(1)
        .returning(|_| Box::pin(async { Ok(()) }));
    let cli = client(service);
    let resp = cli
        .post("/api/v1/session/refresh")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let body = json_of(resp).await;
    assert_eq!(body["token"], "wxl_rotated");
    assert!(body["expiresAt"].is_string());
    cli.delete("/api/v1/me")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_encrypted_profile_endpoint_takes_the_bearer_token_and_json() {
    let mut service = MockLoginService::new();
    service
        .expect_update_user_info()
        .withf(|token, request| {
            token == TOKEN && request.data.iv == "aXY=" && request.code.is_none()
        })
        .times(1)
        .returning(|_, _| Box::pin(async { Err(CipherError::DecryptFailed.into()) }));
    let cli = client(service);
    let resp = cli
        .post("/api/v1/me/profile/encrypted")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body_json(&json!({"encryptedData": "ZW5j", "iv": "aXY="}))
        .send()
        .await;
    expect_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "decrypt_failed").await;
}

#[tokio::test]
async fn the_phone_endpoint_takes_a_phone_code_or_legacy_data_and_names_a_login_code() {
    let mut service = MockLoginService::new();
    service
        .expect_bind_phone()
        .withf(|token, request| {
            token == TOKEN
                && matches!(request, wxlogin_domain::PhoneRequest::Code(c) if c.as_str() == "pc")
        })
        .times(1)
        .returning(|_, _| Box::pin(async { Err(wxlogin_domain::PhoneError::InvalidPhoneCode) }));
    service
        .expect_bind_phone()
        .withf(|_, request| {
            matches!(request, wxlogin_domain::PhoneRequest::Encrypted { data, code: None }
                if data.iv == "aXY=")
        })
        .times(1)
        .returning(|_, _| {
            Box::pin(async {
                Ok(ProfileOutcome {
                    user: User {
                        phone_number: Some("+86 13800138000".into()),
                        ..user()
                    },
                    status: ProfileStatus::NeedsProfile,
                })
            })
        });
    let cli = client(service);
    let post = |body: Value| {
        cli.post("/api/v1/me/phone")
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body_json(&body)
            .send()
    };
    let err = expect_error(
        post(json!({"code": "pc"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("wx.login"),
        "{err}"
    );
    let resp = post(json!({"encryptedData": "ZW5j", "iv": "aXY="})).await;
    resp.assert_status_is_ok();
    assert_eq!(
        json_of(resp).await["user"]["phoneNumber"],
        "+86 13800138000"
    );
    for (body, field) in [
        (json!({}), "code"),
        (json!({"encryptedData": "ZW5j"}), "iv"),
        (json!({"iv": "aXY="}), "encryptedData"),
    ] {
        let err = expect_error(post(body).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
    }
}

/// A mock of the inbound port whose one login answers a user with `open_id`.
fn logs_in_as(open_id: &str) -> MockLoginService {
    let mut user = user();
    user.open_id = OpenId::parse(open_id).unwrap();
    login_answers(Ok(LoginOutcome {
        token: Token::new(TOKEN.into()),
        expires_at: at() + Duration::days(30),
        is_new_user: true,
        user,
        status: ProfileStatus::NeedsProfile,
    }))
}

#[tokio::test]
async fn a_request_is_for_the_app_its_header_or_wechats_referer_names() {
    let wechat_referer = |app: &str| format!("https://servicewechat.com/{app}/0/page-frame.html");
    let cases: [(Option<&str>, Option<String>, &str); 5] = [
        // Nothing named, or a referer that is not WeChat's: the default app.
        (None, None, "o-default"),
        (
            None,
            Some("http://127.0.0.1:8080/docs/".into()),
            "o-default",
        ),
        // WeChat's referer, which the mini-program cannot change.
        (None, Some(wechat_referer(OTHER_APP)), "o-other"),
        // The header wins over the referer.
        (Some(OTHER_APP), Some(wechat_referer(APP)), "o-other"),
        (Some(APP), None, "o-default"),
    ];
    for (header, referer, open_id) in cases {
        // Each app's use cases answer only their own login: a request routed to the wrong app
        // fails its mock's expectation.
        let (default, other) = if open_id == "o-default" {
            (logs_in_as("o-default"), MockLoginService::new())
        } else {
            (MockLoginService::new(), logs_in_as("o-other"))
        };
        let cli = clients(Apps::single(app_id(APP), default).with(app_id(OTHER_APP), other));
        let mut req = cli
            .post("/onLogin")
            .content_type("application/x-www-form-urlencoded")
            .body("code=0123456789abcdef");
        if let Some(h) = header {
            req = req.header("X-WX-AppId", h);
        }
        if let Some(r) = &referer {
            req = req.header("Referer", r.as_str());
        }
        let resp = req.send().await;
        resp.assert_status_is_ok();
        let body = json_of(resp).await;
        assert_eq!(body["user"]["openId"], open_id, "{header:?} {referer:?}");
    }
}

#[tokio::test]
async fn an_app_this_server_does_not_serve_is_400_before_any_use_case() {
    // Mocks without expectations: any call of a use case fails the test.
    let cli = clients(Apps::single(app_id(APP), MockLoginService::new()));
    let resp = cli
        .post("/onLogin")
        .header("X-WX-AppId", OTHER_APP)
        .content_type("application/x-www-form-urlencoded")
        .body("code=0123456789abcdef")
        .send()
        .await;
    let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["message"].as_str().unwrap().contains("X-WX-AppId"),
        "{body}"
    );

    let resp = cli
        .get("/api/v1/me")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header(
            "Referer",
            format!("https://servicewechat.com/{OTHER_APP}/devtools/page-frame.html"),
        )
        .send()
        .await;
    let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["message"].as_str().unwrap().contains("Referer"),
        "{body}"
    );
}
