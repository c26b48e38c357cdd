//! Today's mini-program over `/api/v1`, as the avatar/nickname widgets and a JSON client use it:
//! login, plain profile fields, encrypted profile, token refresh and account erasure. Runs with
//! either WeChat adapter and either store.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use wxlogin_e2e::*;

async fn send(req: reqwest::RequestBuilder) -> Response {
    req.send().await.expect("the request is answered")
}

fn me(app: &TestApp, token: &str) -> reqwest::RequestBuilder {
    app.client
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(token)
}

async fn login_v1(app: &TestApp, open_id: &str) -> Value {
    let code = app.wx_login(open_id);
    let resp = send(
        app.client
            .post(format!("{}/api/v1/login", app.url))
            .json(&json!({ "code": code })),
    )
    .await;
    let body = expect_status(resp, StatusCode::OK).await;
    assert_login_body(&body, open_id);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_profile_fields_complete_the_profile_and_placeholders_never_overwrite() {
    let app = spawn_app().await;
    let token = token_of(&login_v1(&app, "o-modern").await);
    let patch = |body: Value| {
        app.client
            .patch(format!("{}/api/v1/me/profile", app.url))
            .bearer_auth(&token)
            .json(&body)
    };

    let body = expect_status(
        send(patch(json!({"nickName": "  小明 ", "gender": 1}))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "小明");
    assert_eq!(body["profileComplete"], false, "no avatar yet");

    let body = expect_status(
        send(patch(json!({"avatarUrl": "https://example.com/a.png"}))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["profileComplete"], true);
    assert_eq!(body["user"]["nickName"], "小明", "absent fields are kept");

    // WeChat's placeholder never replaces the real nickname.
    let body = expect_status(
        send(patch(json!({"nickName": "微信用户"}))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "小明");

    // Invalid fields are refused by name and change nothing.
    let err = expect_error(
        send(patch(json!({"city": "a\u{7}b", "nickName": "Changed"}))).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("city"), "{err}");
    let body = expect_status(send(me(&app, &token)).await, StatusCode::OK).await;
    assert_eq!(body["user"]["nickName"], "小明");
    assert_eq!(body["user"]["gender"], 1);
    assert_user_shape(&body["user"]);
}

/// `wx.request` has no `PATCH`: `POST` to the same path is the same operation, with the same
/// rules (placeholders ignored, invalid fields refused by name and nothing changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_profile_can_be_posted_as_wx_request_must() {
    let app = spawn_app().await;
    let token = token_of(&login_v1(&app, "o-post").await);
    let post = |body: Value| {
        app.client
            .post(format!("{}/api/v1/me/profile", app.url))
            .bearer_auth(&token)
            .json(&body)
    };
    let body = expect_status(
        send(post(
            json!({"nickName": "小红", "avatarUrl": "https://example.com/b.png"}),
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "小红");
    assert_eq!(body["profileComplete"], true);
    let body = expect_status(
        send(post(json!({"nickName": "微信用户", "city": "杭州"}))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body["user"]["nickName"], "小红",
        "the placeholder is ignored"
    );
    assert_eq!(body["user"]["city"], "杭州");
    let err = expect_error(
        send(post(json!({"gender": 9, "nickName": "Changed"}))).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("gender"), "{err}");
    let body = expect_status(send(me(&app, &token)).await, StatusCode::OK).await;
    assert_eq!(body["user"]["nickName"], "小红");
    assert_user_shape(&body["user"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_profiles_decrypt_with_the_bearer_sessions_key() {
    let app = spawn_app().await;
    let token = token_of(&login_v1(&app, "o-enc").await);
    let info = wechat_user_info("Encrypted");
    let payload = app.encrypt("o-enc", &info);
    let resp = send(
        app.client
            .post(format!("{}/api/v1/me/profile/encrypted", app.url))
            .bearer_auth(&token)
            .json(&json!({"encryptedData": payload.encrypted_data, "iv": payload.iv})),
    )
    .await;
    let body = expect_status(resp, StatusCode::OK).await;
    assert_profile(&body["user"], &info);
    assert_eq!(body["profileComplete"], true);

    // Another wx.login rotates the key: data encrypted after it does not decrypt with the
    // session's key, and does with the fresh code sent along.
    let fresh = app.wx_login("o-enc");
    let newest = app.encrypt("o-enc", &wechat_user_info("Newest"));
    let post = |body: Value| {
        app.client
            .post(format!("{}/api/v1/me/profile/encrypted", app.url))
            .bearer_auth(&token)
            .json(&body)
    };
    let data = json!({"encryptedData": newest.encrypted_data, "iv": newest.iv});
    expect_error(
        send(post(data.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    let mut with_code = data;
    with_code["code"] = fresh.into();
    let resp = send(post(with_code)).await;
    let body = expect_status(resp, StatusCode::OK).await;
    assert_eq!(body["user"]["nickName"], "Newest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_rotates_the_token_and_the_old_one_dies_at_once() {
    let app = spawn_app().await;
    let old = token_of(&login_v1(&app, "o-rotate").await);
    let refresh = |token: &str| {
        app.client
            .post(format!("{}/api/v1/session/refresh", app.url))
            .bearer_auth(token)
    };
    let body = expect_status(send(refresh(&old)).await, StatusCode::OK).await;
    let new = body["token"].as_str().expect("a token").to_owned();
    assert_ne!(new, old);
    assert!(timestamp(&body["expiresAt"]) > chrono::Utc::now());

    expect_error(
        send(me(&app, &old)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    expect_error(
        send(refresh(&old)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let body = expect_status(send(me(&app, &new)).await, StatusCode::OK).await;
    assert_eq!(body["user"]["openId"], "o-rotate");

    // The rotated session keeps its session key: encrypted data still decrypts.
    let payload = app.encrypt("o-rotate", &wechat_user_info("Rotated"));
    expect_status(app.send_profile(&payload, &new, &[]).await, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_the_account_ends_every_token_and_a_new_login_is_a_new_user() {
    let app = spawn_app().await;
    let first = login_v1(&app, "o-erase").await;
    let token = token_of(&first);
    let other = token_of(&login_v1(&app, "o-erase").await);
    let resp = send(
        app.client
            .delete(format!("{}/api/v1/me", app.url))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for t in [&token, &other] {
        expect_error(
            send(me(&app, t)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    let again = login_v1(&app, "o-erase").await;
    assert_eq!(again["isNewUser"], true);
    assert_ne!(user_id_of(&again), user_id_of(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_unused_past_the_idle_timeout_answers_token_expired() {
    let app = spawn_app_with(|s| s.session.idle_timeout_secs = Some(2)).await;
    let idle = token_of(&login_v1(&app, "o-idle").await);
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
    expect_error(
        send(me(&app, &idle)).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
}
