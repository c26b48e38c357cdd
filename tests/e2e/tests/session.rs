//! A session's end: a token past its lifetime answers `token_expired`, and a logout
//! (`DELETE /api/v1/session`) ends that token at once and no other. Runs with either WeChat
//! adapter.

use std::time::Duration;

use reqwest::StatusCode;
use wxlogin_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_answers_token_expired() {
    let app = spawn_app_with(|s| s.session.ttl_secs = Some(1)).await;
    let login = app.login_ok_any_expiry("o-brief").await;
    let token = token_of(&login);
    let expires = timestamp(&login["expiresAt"]);
    // Wait until the stored expiry has passed (the lifetime is one second).
    while chrono::Utc::now() <= expires + chrono::Duration::milliseconds(50) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let payload = app.encrypt("o-brief", &wechat_user_info("Brief"));
    expect_error(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
    // Logging in again gives a working token.
    let token = token_of(&app.login_ok_any_expiry("o-brief").await);
    let payload = app.encrypt("o-brief", &wechat_user_info("Brief"));
    expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_ends_that_token_and_no_other() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-leave").await);
    let other = token_of(&app.login_ok("o-leave").await);
    let me = |token: &str| {
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(token)
            .send()
    };
    let body = expect_status(me(&token).await.expect("GET /api/v1/me"), StatusCode::OK).await;
    assert_eq!(body["user"]["openId"], "o-leave");

    let resp = app
        .client
        .delete(format!("{}/api/v1/session", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("DELETE /api/v1/session");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    expect_error(
        me(&token).await.expect("GET /api/v1/me"),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The user's other session is untouched.
    expect_status(me(&other).await.expect("GET /api/v1/me"), StatusCode::OK).await;
}
