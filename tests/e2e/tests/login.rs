//! Logging in: `wx.login` → `POST /onLogin` (form or JSON). A first login creates the user and
//! later ones find it, concurrent first logins of one openid create one user, refused codes
//! (replayed, stolen, never issued, missing) create nothing, and tokens and profiles survive a
//! restart. Runs with either WeChat adapter.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use wxlogin_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_creates_a_user_and_relogin_finds_it() {
    let app = spawn_app().await;

    let first = app.login_ok("o-alice").await;
    assert_eq!(first["isNewUser"], true);
    assert_eq!(first["profileComplete"], false);
    let user = &first["user"];
    for absent in [
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
        assert!(user[absent].is_null(), "{absent} should be null: {user}");
    }

    let second = app.login_ok("o-alice").await;
    assert_eq!(second["isNewUser"], false);
    assert_eq!(second["profileComplete"], false);
    assert_eq!(user_id_of(&second), user_id_of(&first));
    assert_eq!(second["user"]["createdAt"], first["user"]["createdAt"]);
    assert_ne!(token_of(&second), token_of(&first));

    // JSON bodies are accepted too.
    let code = app.wx_login("o-alice");
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("POST /onLogin (JSON)");
    let third = expect_status(resp, StatusCode::OK).await;
    assert_login_body(&third, "o-alice");
    assert_eq!(third["isNewUser"], false);
    assert_eq!(user_id_of(&third), user_id_of(&first));
    let tokens: HashSet<String> = [&first, &second, &third]
        .into_iter()
        .map(token_of)
        .collect();
    assert_eq!(tokens.len(), 3, "every login gets its own token");

    // Another openid is another user; a unionid from WeChat is reported.
    let code = app.mock.mint_code("o-bob", Some("u-bob"));
    let bob = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    assert_login_body(&bob, "o-bob");
    assert_eq!(bob["isNewUser"], true);
    assert_eq!(bob["user"]["unionId"], "u-bob");
    assert_ne!(user_id_of(&bob), user_id_of(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_logins_create_one_user() {
    let app = spawn_app().await;
    let codes: Vec<String> = (0..20).map(|_| app.wx_login("o-racer")).collect();

    let responses = futures::future::join_all(codes.iter().map(|code| app.on_login(code))).await;
    let mut bodies = Vec::new();
    for resp in responses {
        let body = expect_status(resp, StatusCode::OK).await;
        assert_login_body(&body, "o-racer");
        bodies.push(body);
    }

    let ids: HashSet<String> = bodies.iter().map(user_id_of).collect();
    assert_eq!(ids.len(), 1, "one openid, one user: {ids:?}");
    let new_users = bodies.iter().filter(|b| b["isNewUser"] == true).count();
    assert_eq!(new_users, 1, "exactly one login created the user");
    let tokens: HashSet<String> = bodies.iter().map(token_of).collect();
    assert_eq!(tokens.len(), 20, "every login has its own token");

    // Each racing session kept the key its own exchange returned (DESIGN §3): WeChat's
    // current key is that of the last wx.login, so only that login's token decrypts new data.
    // `join_all` keeps the order of `codes`.
    let payload = app.encrypt("o-racer", &wechat_user_info("Racer"));
    expect_error(
        app.send_profile(&payload, &token_of(&bodies[0]), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    let body = expect_status(
        app.send_profile(&payload, &token_of(&bodies[19]), &[])
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "Racer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_codes_are_refused_and_create_nothing() {
    let app = spawn_app().await;

    // A code replayed after a successful login.
    let code = app.wx_login("o-replay");
    let first = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    expect_error(
        app.on_login(&code).await,
        StatusCode::BAD_REQUEST,
        "code_used",
    )
    .await;
    let again = app.login_ok("o-replay").await;
    assert_eq!(again["isNewUser"], false);
    assert_eq!(user_id_of(&again), user_id_of(&first));

    // A code someone else already exchanged (e.g. a leaked code): refused, and no user.
    let stolen = app.wx_login("o-victim");
    {
        use wxlogin_domain::{LoginCode, WeChat as _};
        app.mock
            .code_to_session(&LoginCode::parse(&stolen).expect("code"))
            .await
            .expect("the first exchange succeeds");
    }
    expect_error(
        app.on_login(&stolen).await,
        StatusCode::BAD_REQUEST,
        "code_used",
    )
    .await;

    // A code WeChat never issued.
    expect_error(
        app.on_login("0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P").await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;

    // Empty, blank and missing codes never reach WeChat.
    let attempts = app.exchanges();
    expect_error(
        app.on_login("").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        app.on_login("   ").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .form(&[("notcode", "x")])
        .send()
        .await
        .expect("POST /onLogin");
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .json(&json!({}))
        .send()
        .await
        .expect("POST /onLogin");
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "application/json")
        .body("{\"code\":")
        .send()
        .await
        .expect("POST /onLogin");
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(app.exchanges(), attempts, "no exchange for a missing code");

    // None of the refusals created the victim's user.
    let victim = app.login_ok("o-victim").await;
    assert_eq!(victim["isNewUser"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_profiles_survive_a_restart() {
    let mut app = spawn_app().await;
    let login = app.login_ok("o-grace").await;
    let token = token_of(&login);
    let info = wechat_user_info("Grace");
    let payload = app.encrypt("o-grace", &info);
    expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;

    let old_url = app.url.clone();
    app.restart().await;
    // The old server is gone (a refused connection, not an answer).
    assert!(
        app.client
            .get(format!("{old_url}/healthz"))
            .send()
            .await
            .is_err(),
        "the old server still answers"
    );

    // The old token still works, with the session key it was issued with.
    let info2 = wechat_user_info("Grace Again");
    let payload = app.encrypt("o-grace", &info2);
    let body = expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["id"], login["user"]["id"]);
    assert_profile(&body["user"], &info2);

    let again = app.login_ok("o-grace").await;
    assert_eq!(again["isNewUser"], false);
    assert_eq!(user_id_of(&again), user_id_of(&login));
    assert_eq!(again["profileComplete"], true);
    assert_profile(&again["user"], &info2);
    assert_eq!(again["user"]["createdAt"], login["user"]["createdAt"]);
}

/// A double tap: the same code twice at once is one exchange with WeChat, and both requests
/// sign in as the same user, each with its own token (docs/api.md says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_twice_at_once_signs_in_both_with_one_exchange() {
    let app = spawn_app().await;
    let code = app.wx_login("o-double-tap");
    // WeChat takes its time, so the second request arrives while the first is exchanging.
    app.mock.fail_next(
        wxlogin_wechat_mock::Api::Jscode2session,
        // A wide window, so a loaded machine still sends the second request within it.
        wxlogin_wechat_mock::Failure::Slow(std::time::Duration::from_millis(1_500)),
        1,
    );
    let (first, second) = tokio::join!(app.on_login(&code), app.on_login(&code));
    let first = expect_status(first, StatusCode::OK).await;
    let second = expect_status(second, StatusCode::OK).await;
    assert_eq!(user_id_of(&first), user_id_of(&second));
    assert_ne!(token_of(&first), token_of(&second));
    assert_eq!(app.exchanges(), 1, "one jscode2session call");
    // Once the exchange is over, the code is spent as WeChat says.
    expect_error(
        app.on_login(&code).await,
        StatusCode::BAD_REQUEST,
        "code_used",
    )
    .await;
}
