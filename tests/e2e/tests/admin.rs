//! The operators' API (`/admin/v1`) over real HTTP, against the store the suite runs with:
//! searching with filters and pages, a user's detail, revoking its sessions (its tokens fail
//! at once), statistics that count logins and not refreshes, and the refusals — a wrong
//! password, an unknown operator, a user's bearer token — with no password in the log.
//!
//! The server's log is captured process-wide (this target's own subscriber).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use wxlogin_e2e::*;
use wxlogin_server::config::OperatorSettings;

const OPERATOR: &str = "ops-alice";
const PASSWORD: &str = "e2e-operator-password-never-logged";

/// The operator's hash, made once for every test of the target.
static HASH: LazyLock<String> =
    LazyLock::new(|| wxlogin_crypto::hash_password(PASSWORD).expect("hashes"));

/// Everything the servers of this target log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: LazyLock<Captured> = LazyLock::new(|| {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    captured
});

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.0.lock().expect("log buffer")).into_owned()
}

/// A server with one operator configured.
async fn spawn_admin_app() -> TestApp {
    LazyLock::force(&LOGS);
    spawn_app_with(|s| {
        s.admin.users = vec![OperatorSettings {
            name: OPERATOR.into(),
            password_hash: SecretString::from(HASH.clone()),
        }];
    })
    .await
}

fn get(app: &TestApp, path: &str) -> RequestBuilder {
    app.client
        .get(format!("{}{path}", app.url))
        .basic_auth(OPERATOR, Some(PASSWORD))
}

fn post(app: &TestApp, path: &str) -> RequestBuilder {
    app.client
        .post(format!("{}{path}", app.url))
        .basic_auth(OPERATOR, Some(PASSWORD))
}

async fn send(req: RequestBuilder) -> Response {
    req.send().await.expect("the request is answered")
}

async fn me(app: &TestApp, token: &str) -> Response {
    send(
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(token),
    )
    .await
}

async fn set_nickname(app: &TestApp, token: &str, nick: &str) {
    let resp = send(
        app.client
            .patch(format!("{}/api/v1/me/profile", app.url))
            .bearer_auth(token)
            .json(&json!({ "nickName": nick })),
    )
    .await;
    expect_status(resp, StatusCode::OK).await;
}

fn ids(users: &Value) -> Vec<String> {
    users
        .as_array()
        .expect("users is an array")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_walks_every_page_and_filters_by_open_id_and_nickname() {
    let app = spawn_admin_app().await;
    let mut logged = Vec::new();
    for n in 0..5 {
        let body = app.login_ok(&format!("o-admin-{n}")).await;
        logged.push(user_id_of(&body));
        if n == 1 {
            set_nickname(&app, &token_of(&body), "Xiao Ming").await;
        }
        if n == 3 {
            set_nickname(&app, &token_of(&body), "MINGYU").await;
        }
    }
    // Ids are UUID v7: their text sorts in creation order, the order of the pages.
    logged.sort();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = get(&app, "/admin/v1/users").query(&[("limit", "2")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let body = expect_status(send(req).await, StatusCode::OK).await;
        pages += 1;
        for user in body["users"].as_array().expect("users") {
            assert_user_shape(user);
        }
        let page = ids(&body["users"]);
        assert!(page.len() <= 2, "{body}");
        seen.extend(page);
        match body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(body["nextCursor"].is_null(), "{body}");
                break;
            }
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, logged, "every user once, in id order");

    let body = expect_status(
        send(get(&app, "/admin/v1/users").query(&[("q", "ming")])).await,
        StatusCode::OK,
    )
    .await;
    let nicks: HashSet<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["nickName"].as_str().expect("a nickname"))
        .collect();
    assert_eq!(nicks, HashSet::from(["Xiao Ming", "MINGYU"]), "{body}");
    assert!(body["nextCursor"].is_null());

    let body = expect_status(
        send(get(&app, "/admin/v1/users").query(&[("openId", "o-admin-3")])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["users"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["users"][0]["openId"], "o-admin-3");
    assert_eq!(body["users"][0]["nickName"], "MINGYU");

    for (key, value) in [("limit", "0"), ("limit", "101"), ("cursor", "garbage!")] {
        expect_error(
            send(get(&app, "/admin/v1/users").query(&[(key, value)])).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_users_sessions_makes_its_tokens_fail_at_once() {
    let app = spawn_admin_app().await;
    let first = app.login_ok("o-revoked").await;
    let second = app.login_ok("o-revoked").await;
    let bystander = token_of(&app.login_ok("o-bystander").await);
    let id = user_id_of(&first);
    assert_eq!(user_id_of(&second), id);

    let detail = expect_status(
        send(get(&app, &format!("/admin/v1/users/{id}"))).await,
        StatusCode::OK,
    )
    .await;
    assert_user_shape(&detail["user"]);
    assert_eq!(detail["user"]["openId"], "o-revoked");
    assert_eq!(detail["activeSessions"], 2);

    let revoked = expect_status(
        send(post(&app, &format!("/admin/v1/users/{id}/revoke-sessions"))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked, json!({"revoked": 2}));
    for token in [token_of(&first), token_of(&second)] {
        expect_error(
            me(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    expect_status(me(&app, &bystander).await, StatusCode::OK).await;

    let detail = expect_status(
        send(get(&app, &format!("/admin/v1/users/{id}"))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(detail["activeSessions"], 0);
    // The user logs in again, as the same user.
    let again = app.login_ok("o-revoked").await;
    assert_eq!(user_id_of(&again), id);
    expect_status(me(&app, &token_of(&again)).await, StatusCode::OK).await;

    let unknown = "0190a000-0000-7000-8000-000000000000";
    expect_error(
        send(get(&app, &format!("/admin/v1/users/{unknown}"))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        send(post(
            &app,
            &format!("/admin/v1/users/{unknown}/revoke-sessions"),
        ))
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let line = logs()
        .lines()
        .find(|l| l.contains("revoke_sessions") && l.contains(&id))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the revocation is logged: {}", logs()));
    assert!(line.contains(&format!("operator={OPERATOR}")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_users_active_sessions_and_logins_but_not_refreshes() {
    let app = spawn_admin_app().await;
    let stats = |app: &TestApp| send(get(app, "/admin/v1/stats"));
    let body = expect_status(stats(&app).await, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({"users": 0, "activeSessions": 0, "loginsLastHour": 0, "loginsLastDay": 0})
    );

    let a = token_of(&app.login_ok("o-stats-a").await);
    let a_again = token_of(&app.login_ok("o-stats-a").await);
    app.login_ok("o-stats-b").await;
    // A refresh: a new session, no login; the old token's session ends.
    let resp = send(
        app.client
            .post(format!("{}/api/v1/session/refresh", app.url))
            .bearer_auth(&a),
    )
    .await;
    expect_status(resp, StatusCode::OK).await;
    // A logout ends a session; its login still counts.
    let resp = send(
        app.client
            .delete(format!("{}/api/v1/session", app.url))
            .bearer_auth(&a_again),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let body = expect_status(stats(&app).await, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({"users": 2, "activeSessions": 2, "loginsLastHour": 3, "loginsLastDay": 3})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_unknown_operators_and_bearer_tokens_are_refused() {
    let app = spawn_admin_app().await;
    let token = token_of(&app.login_ok("o-not-an-operator").await);
    let url = format!("{}/admin/v1/stats", app.url);
    let attempts: Vec<(&str, RequestBuilder)> = vec![
        (
            "a wrong password",
            app.client
                .get(&url)
                .basic_auth(OPERATOR, Some("wrong-guess-password")),
        ),
        (
            "an unknown operator",
            app.client
                .get(&url)
                .basic_auth("ops-mallory", Some(PASSWORD)),
        ),
        (
            "a user's bearer token",
            app.client.get(&url).bearer_auth(&token),
        ),
        (
            "a user's token as the password",
            app.client.get(&url).basic_auth(OPERATOR, Some(&token)),
        ),
        ("no credentials", app.client.get(&url)),
    ];
    for (what, req) in attempts {
        let started = Instant::now();
        let resp = send(req).await;
        let elapsed = started.elapsed();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with("Basic realm="),
            "{what}: {challenge:?}"
        );
        expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
        // A checked password that failed waits before its answer.
        if what != "a user's bearer token" && what != "no credentials" {
            assert!(elapsed >= Duration::from_secs(1), "{what}: {elapsed:?}");
        }
    }
    // The operator gets in.
    expect_status(send(get(&app, "/admin/v1/stats")).await, StatusCode::OK).await;

    let text = logs();
    assert!(text.contains("operator sign-in refused"), "{text}");
    assert!(text.contains("ops-mallory"), "{text}");
    assert!(text.contains(&format!("operator={OPERATOR}")), "{text}");
    for secret in [
        PASSWORD,
        "wrong-guess-password",
        token.as_str(),
        HASH.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} reached the log");
    }
}
