//! The operators' API through `poem::test::TestClient` over a mocked inbound port
//! (`MockAdminService`): what reaches the use cases from the query and the Basic header, the
//! answers' shapes, the error codes, the Basic challenge, the delay of a refused sign-in, a
//! bearer token that never gets as far as a use case, and the log lines with the operator's
//! name and without the password.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use poem::Route;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use serde_json::Value;
use wxlogin_domain::{
    AdminError, AdminUserError, AppId, MockAdminService, MockLoginService, OpenId, Profile, Stats,
    StoreError, User, UserDetail, UserId, UserPage,
};
use wxlogin_server::http::admin::{CHALLENGE, FAILURE_DELAY, encode_cursor};
use wxlogin_server::http::{Apps, HttpConfig, app};

const BASIC_ALICE: &str = "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="; // alice:correct horse

fn client(admin: MockAdminService) -> TestClient<impl poem::Endpoint> {
    TestClient::new(app(
        Apps::single(
            AppId::parse("wx1111111111111111").unwrap(),
            MockLoginService::new(),
        ),
        Arc::new(admin),
        Vec::<(String, Route)>::new(),
        &HttpConfig::default(),
    ))
}

async fn json_of(resp: TestResponse) -> Value {
    serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap()
}

async fn expect_error(resp: TestResponse, status: StatusCode, code: &str) -> Value {
    resp.assert_status(status);
    let body = json_of(resp).await;
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["error"], code, "{body}");
    body
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).unwrap()
}

fn user(open_id: &str) -> User {
    User {
        id: UserId::new(),
        open_id: OpenId::parse(open_id).unwrap(),
        union_id: None,
        profile: Profile::default(),
        phone_number: None,
        created_at: at(),
        updated_at: at(),
    }
}

fn is_alice(c: &wxlogin_domain::Credentials) -> bool {
    c.name == "alice" && c.password.expose() == "correct horse"
}

/// Log lines written while the guard lives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn a_search_passes_its_filters_and_cursor_and_answers_users_with_the_next_cursor() {
    let (first, second) = (user("o-1"), user("o-2"));
    let after = UserId::new();
    let page = UserPage {
        users: vec![first.clone(), second.clone()],
        next: Some(second.id),
    };
    let mut admin = MockAdminService::new();
    admin
        .expect_search_users()
        .withf(move |c, q| {
            is_alice(c)
                && q.open_id.as_ref().map(OpenId::as_str) == Some("o-1")
                && q.nick_name.as_ref().map(|n| n.as_str()) == Some("ming")
                && q.after == Some(after)
                && q.limit.get() == 2
        })
        .times(1)
        .returning(move |_, _| {
            let page = page.clone();
            Box::pin(async move { Ok(page) })
        });
    let cli = client(admin);
    let resp = cli
        .get("/admin/v1/users")
        .query("openId", &"o-1")
        .query("q", &" ming ")
        .query("limit", &2)
        .query("cursor", &encode_cursor(&after))
        .header("authorization", BASIC_ALICE)
        .send()
        .await;
    resp.assert_status_is_ok();
    let body = json_of(resp).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 2);
    assert_eq!(body["users"][0]["openId"], "o-1");
    assert_eq!(body["users"][1]["id"], second.id.to_string());
    assert!(body["users"][0]["nickName"].is_null(), "{body}");
    assert_eq!(body["nextCursor"], encode_cursor(&second.id));
}

#[tokio::test]
async fn a_search_without_parameters_takes_the_defaults_and_the_last_page_has_a_null_cursor() {
    let mut admin = MockAdminService::new();
    admin
        .expect_search_users()
        .withf(|_, q| {
            q.open_id.is_none() && q.nick_name.is_none() && q.after.is_none() && q.limit.get() == 20
        })
        .times(2)
        .returning(|_, _| {
            Box::pin(async {
                Ok(UserPage {
                    users: vec![],
                    next: None,
                })
            })
        });
    let cli = client(admin);
    for uri in ["/admin/v1/users", "/admin/v1/users?openId=&q=&cursor="] {
        let resp = cli
            .get(uri)
            .header("authorization", BASIC_ALICE)
            .send()
            .await;
        resp.assert_status_is_ok();
        let body = json_of(resp).await;
        assert_eq!(body["users"], Value::Array(vec![]), "{uri}");
        assert!(body.as_object().unwrap().contains_key("nextCursor"));
        assert!(body["nextCursor"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn invalid_search_parameters_are_400_before_the_use_case() {
    let mut admin = MockAdminService::new();
    admin.expect_search_users().never();
    let cli = client(admin);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=AAAA", "cursor"),
        ("openId=o%20x", "openId"),
        ("q=a%00b", "q"),
    ] {
        let resp = cli
            .get(format!("/admin/v1/users?{query}"))
            .header("authorization", BASIC_ALICE)
            .send()
            .await;
        let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn detail_revoke_and_stats_answer_their_bodies() {
    let target = user("o-detail");
    let id = target.id;
    let detail = UserDetail {
        user: target,
        active_sessions: 3,
    };
    let mut admin = MockAdminService::new();
    admin
        .expect_user_detail()
        .withf(move |c, user_id| is_alice(c) && *user_id == id)
        .times(1)
        .returning(move |_, _| {
            let detail = detail.clone();
            Box::pin(async move { Ok(detail) })
        });
    admin
        .expect_revoke_sessions()
        .withf(move |c, user_id| is_alice(c) && *user_id == id)
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(2) }));
    admin.expect_stats().times(1).returning(|_| {
        Box::pin(async {
            Ok(Stats {
                users: 10,
                active_sessions: 4,
                logins_last_hour: 1,
                logins_last_day: 7,
            })
        })
    });
    let cli = client(admin);
    let resp = cli
        .get(format!("/admin/v1/users/{id}"))
        .header("authorization", BASIC_ALICE)
        .send()
        .await;
    resp.assert_status_is_ok();
    let body = json_of(resp).await;
    assert_eq!(body["user"]["id"], id.to_string());
    assert_eq!(body["activeSessions"], 3);

    let resp = cli
        .post(format!("/admin/v1/users/{id}/revoke-sessions"))
        .header("authorization", BASIC_ALICE)
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(json_of(resp).await, serde_json::json!({"revoked": 2}));

    let resp = cli
        .get("/admin/v1/stats")
        .header("authorization", BASIC_ALICE)
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(
        json_of(resp).await,
        serde_json::json!({"users": 10, "activeSessions": 4, "loginsLastHour": 1, "loginsLastDay": 7})
    );
}

#[tokio::test]
async fn unknown_users_are_404_malformed_ids_400_and_store_outages_503() {
    let mut admin = MockAdminService::new();
    admin
        .expect_user_detail()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(AdminUserError::UserNotFound) }));
    admin
        .expect_revoke_sessions()
        .times(1)
        .returning(|_, _| Box::pin(async { Err(AdminUserError::UserNotFound) }));
    admin.expect_stats().times(1).returning(|_| {
        Box::pin(async {
            Err(AdminError::Store(StoreError::Unavailable(
                "pool timed out".into(),
            )))
        })
    });
    let cli = client(admin);
    let id = UserId::new();
    expect_error(
        cli.get(format!("/admin/v1/users/{id}"))
            .header("authorization", BASIC_ALICE)
            .send()
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        cli.post(format!("/admin/v1/users/{id}/revoke-sessions"))
            .header("authorization", BASIC_ALICE)
            .send()
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let body = expect_error(
        cli.get("/admin/v1/users/not-a-uuid")
            .header("authorization", BASIC_ALICE)
            .send()
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("id"), "{body}");
    let body = expect_error(
        cli.get("/admin/v1/stats")
            .header("authorization", BASIC_ALICE)
            .send()
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(!body.to_string().contains("pool timed out"));
}

#[tokio::test]
async fn a_refused_sign_in_is_slow_401_with_the_basic_challenge_and_logged_without_the_password() {
    let mut admin = MockAdminService::new();
    admin
        .expect_stats()
        .times(1)
        .returning(|_| Box::pin(async { Err(AdminError::InvalidCredentials) }));
    let cli = client(admin);
    let (logs, _guard) = Logs::capture();
    let started = Instant::now();
    // mallory:hunter2-guess
    let resp = cli
        .get("/admin/v1/stats")
        .header("authorization", "Basic bWFsbG9yeTpodW50ZXIyLWd1ZXNz")
        .send()
        .await;
    assert!(
        started.elapsed() >= FAILURE_DELAY,
        "answered after {:?}",
        started.elapsed()
    );
    resp.assert_header("www-authenticate", CHALLENGE);
    expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let text = logs.text();
    assert!(text.contains("operator sign-in refused"), "{text}");
    assert!(text.contains("mallory"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("bWFsbG9yeT"), "{text}");
}

#[tokio::test]
async fn a_bearer_token_or_no_credentials_never_reach_a_use_case() {
    let mut admin = MockAdminService::new();
    admin.expect_search_users().never();
    admin.expect_user_detail().never();
    admin.expect_revoke_sessions().never();
    admin.expect_stats().never();
    let cli = client(admin);
    let id = UserId::new();
    for header in [
        Some("Bearer wxl_a-users-token"),
        Some("bearer wxl_a-users-token"),
        Some("Basic not-base64!"),
        None,
    ] {
        for (method, path) in [
            ("GET", "/admin/v1/users".to_owned()),
            ("GET", format!("/admin/v1/users/{id}")),
            ("POST", format!("/admin/v1/users/{id}/revoke-sessions")),
            ("GET", "/admin/v1/stats".to_owned()),
        ] {
            let mut req = if method == "GET" {
                cli.get(&path)
            } else {
                cli.post(&path)
            };
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let resp = req.send().await;
            resp.assert_header("www-authenticate", CHALLENGE);
            expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
    }
}

#[tokio::test]
async fn each_action_is_logged_with_the_operator_and_never_the_password() {
    let id = UserId::new();
    let mut admin = MockAdminService::new();
    admin
        .expect_revoke_sessions()
        .times(1)
        .returning(|_, _| Box::pin(async { Ok(1) }));
    let cli = client(admin);
    let (logs, _guard) = Logs::capture();
    cli.post(format!("/admin/v1/users/{id}/revoke-sessions"))
        .header("authorization", BASIC_ALICE)
        .send()
        .await
        .assert_status_is_ok();
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("operator action"))
        .unwrap_or_else(|| panic!("no action line: {text}"));
    assert!(line.contains("operator=alice"), "{line}");
    assert!(line.contains("revoke_sessions"), "{line}");
    assert!(line.contains(&id.to_string()), "{line}");
    assert!(!text.contains("correct horse"), "{text}");
    assert!(!text.contains("YWxpY2U6"), "{text}");
    // Other answers carry no challenge.
    let resp = cli.get("/healthz").send().await;
    resp.assert_status_is_ok();
    assert!(resp.0.headers().get("www-authenticate").is_none());
}
