//! The classic mini-program flow end to end: `wx.login` → `POST /onLogin` → `wx.getUserProfile`
//! → `POST /updateUserInfo`, against the real server, a real SQLite file and the mock WeChat
//! over real HTTP.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};
use wxlogin_wechat_mock::{Api, EncryptedPayload, Failure};

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
    let attempts = app.mock.calls(Api::Jscode2session);
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
    assert_eq!(
        app.mock.calls(Api::Jscode2session),
        attempts,
        "no exchange for a missing code"
    );

    // None of the refusals created the victim's user.
    let victim = app.login_ok("o-victim").await;
    assert_eq!(victim["isNewUser"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_failures_map_to_errors_and_create_nothing() {
    let app = spawn_app_with(|s| s.wechat.timeout_ms = 500).await;

    let cases = [
        (
            Failure::Busy,
            StatusCode::SERVICE_UNAVAILABLE,
            "wechat_unavailable",
        ),
        (
            Failure::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            "wechat_rate_limited",
        ),
        (Failure::Risky, StatusCode::FORBIDDEN, "risky_user"),
        (
            Failure::Http500,
            StatusCode::SERVICE_UNAVAILABLE,
            "wechat_unavailable",
        ),
        (Failure::Garbage, StatusCode::BAD_GATEWAY, "wechat_error"),
    ];
    for (i, (failure, status, error)) in cases.into_iter().enumerate() {
        let open_id = format!("o-fail-{i}");
        let code = app.wx_login(&open_id);
        app.mock.fail_next(Api::Jscode2session, failure, 1);
        let before = app.mock.calls(Api::Jscode2session);
        expect_error(app.on_login(&code).await, status, error).await;
        assert_eq!(
            app.mock.calls(Api::Jscode2session),
            before + 1,
            "{failure:?}: an exchange is never retried"
        );
        // WeChat refused before looking at the code, so it still works, and the failed
        // attempt left no user behind.
        let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
        assert_login_body(&body, &open_id);
        assert_eq!(body["isNewUser"], true, "{failure:?} created a user");
    }

    // The rest needs a network between the server and WeChat.
    if !wechat_over_http() {
        return;
    }

    // WeChat stalling beyond the server's timeout (500 ms).
    let code = app.wx_login("o-slow");
    app.mock.fail_next(
        Api::Jscode2session,
        Failure::Slow(Duration::from_millis(2_500)),
        1,
    );
    let started = Instant::now();
    let resp = app.on_login(&code).await;
    let waited = started.elapsed();
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, "wechat_unavailable").await;
    assert!(
        waited < Duration::from_millis(2_000),
        "the server should give up at its timeout, not wait for WeChat ({waited:?})"
    );
    let body = app.login_ok("o-slow").await;
    assert_eq!(body["isNewUser"], true, "a timed-out login created a user");

    // WeChat down: a sibling server on the same database pointed at a closed port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let down = app
        .spawn_http_sibling(|s| s.wechat.base_url = format!("http://{closed}"))
        .await;
    let code = app.wx_login("o-down");
    let attempts = app.mock.calls(Api::Jscode2session);
    expect_error(
        app.on_login_at(&down.url(), &code).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    // Readiness stays green: WeChat is not ours.
    let ready = app
        .client
        .get(format!("{}/readyz", down.url()))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    down.shutdown().await.expect("shutdown");
    assert_eq!(
        app.mock.calls(Api::Jscode2session),
        attempts,
        "the mock was never reached"
    );
    // The code never reached WeChat, so it still works, and no user was created.
    let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    assert_login_body(&body, "o-down");
    assert_eq!(body["isNewUser"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_user_info_stores_the_profile() {
    let app = spawn_app().await;
    let login = app.login_ok("o-carol").await;
    let token = token_of(&login);

    let info = wechat_user_info("Carol");
    let payload = app.encrypt("o-carol", &info);
    let body = expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
    let obj = body.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["profileComplete", "status", "user"], "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["profileComplete"], true);
    assert_user_shape(&body["user"]);
    assert_eq!(body["user"]["id"], login["user"]["id"]);
    assert_eq!(body["user"]["openId"], "o-carol");
    assert_profile(&body["user"], &info);
    assert!(timestamp(&body["user"]["updatedAt"]) >= timestamp(&login["user"]["updatedAt"]));

    // The next login returns the stored profile.
    let again = app.login_ok("o-carol").await;
    assert_eq!(again["isNewUser"], false);
    assert_eq!(again["profileComplete"], true);
    assert_profile(&again["user"], &info);

    // A bearer header works instead of the `token` field.
    let info2 = wechat_user_info("Carol Two");
    let payload = app.encrypt("o-carol", &info2);
    let resp = app
        .client
        .post(format!("{}/updateUserInfo", app.url))
        .bearer_auth(token_of(&again))
        .form(&[
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
        ])
        .send()
        .await
        .expect("POST /updateUserInfo");
    let body = expect_status(resp, StatusCode::OK).await;
    assert_eq!(body["user"]["nickName"], "Carol Two");
    assert_eq!(body["profileComplete"], true);

    // WeChat's anonymous placeholder never overwrites a real nickname.
    let placeholder = json!({"nickName": "微信用户", "avatarUrl": info["avatarUrl"], "gender": 0});
    let payload = app.encrypt("o-carol", &placeholder);
    let body = expect_status(
        app.send_profile(&payload, &token_of(&again), &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "Carol Two", "{body}");
    assert_eq!(body["profileComplete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_decrypts_only_with_the_latest_logins_token() {
    let app = spawn_app().await;
    let a = app.login_ok("o-dave").await;
    let b = app.login_ok("o-dave").await;
    assert_eq!(user_id_of(&a), user_id_of(&b));

    // WeChat's current key is the one B's exchange returned.
    let payload = app.encrypt("o-dave", &wechat_user_info("Dave"));
    expect_error(
        app.send_profile(&payload, &token_of(&a), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    let body = expect_status(
        app.send_profile(&payload, &token_of(&b), &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "Dave");
    // A's session is still valid, only its key is stale.
    let other = app.encrypt("o-dave", &wechat_user_info("Dave"));
    expect_error(
        app.send_profile(&other, &token_of(&a), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
}

/// WeChat's most common support question: the client called `wx.login` again after logging
/// in, which rotated the session key, so its new `encryptedData` no longer decrypts with the
/// key the server holds. The mock rotates the key when the code is minted (`wx.login`), as
/// WeChat does, so the client's data uses the key that belongs to the fresh code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_code_decrypts_data_after_a_key_rotation() {
    let app = spawn_app().await;
    let login = app.login_ok("o-erin").await;
    let token = token_of(&login);

    // The mini-program calls wx.login again, then getUserProfile.
    let fresh = app.wx_login("o-erin");
    let info = wechat_user_info("Erin");
    let payload = app.encrypt("o-erin", &info);

    // Without the code, the session's (now stale) key cannot decrypt it.
    expect_error(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    // With the fresh code, the server exchanges it first and decrypts with its key.
    let attempts = app.mock.calls(Api::Jscode2session);
    let body = expect_status(
        app.send_profile(&payload, &token, &[("code", fresh.as_str())])
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.mock.calls(Api::Jscode2session), attempts + 1);
    assert_eq!(body["user"]["id"], login["user"]["id"]);
    assert_profile(&body["user"], &info);
    assert_eq!(body["profileComplete"], true);
    // The fresh code is spent...
    expect_error(
        app.on_login(&fresh).await,
        StatusCode::BAD_REQUEST,
        "code_used",
    )
    .await;
    // ...and the session now holds the fresh key, so later data decrypts without a code.
    let info2 = wechat_user_info("Erin Two");
    let payload2 = app.encrypt("o-erin", &info2);
    let body = expect_status(
        app.send_profile(&payload2, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_profile(&body["user"], &info2);

    // Data encrypted before a wx.login does not decrypt with that login's fresh code.
    let stale = app.encrypt("o-erin", &info);
    let fresh = app.wx_login("o-erin");
    expect_error(
        app.send_profile(&stale, &token, &[("code", fresh.as_str())])
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;

    // A fresh code of another WeChat user is refused, and so is one WeChat never issued.
    let payload = app.encrypt("o-erin", &info);
    let _ = app.login_ok("o-mallory").await;
    let foreign = app.wx_login("o-mallory");
    expect_error(
        app.send_profile(&payload, &token, &[("code", foreign.as_str())])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    expect_error(
        app.send_profile(
            &payload,
            &token,
            &[("code", "neverIssuedByWeChat000000000000")],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    // None of the refused requests changed the stored profile.
    let again = app.login_ok("o-erin").await;
    assert_profile(&again["user"], &info2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_user_info_refuses_bad_tokens_data_and_signatures() {
    let app = spawn_app().await;
    let login = app.login_ok("o-frank").await;
    let token = token_of(&login);
    let info = wechat_user_info("Frank");
    let payload = app.encrypt("o-frank", &info);

    // Wrong, foreign-looking and missing tokens.
    let forged = format!("wxl_{}", "A".repeat(43));
    for bad in [forged.as_str(), "not-a-token", "wxl_"] {
        expect_error(
            app.send_profile(&payload, bad, &[]).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    let resp = app
        .update_user_info(&[
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
        ])
        .await;
    expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let resp = app
        .client
        .post(format!("{}/updateUserInfo", app.url))
        .header("authorization", format!("Basic {token}"))
        .form(&[
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
        ])
        .send()
        .await
        .expect("POST /updateUserInfo");
    expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Tampered ciphertext: flip one bit in the first block.
    let mut bytes = STANDARD.decode(&payload.encrypted_data).expect("base64");
    bytes[3] ^= 0x01;
    let tampered = EncryptedPayload {
        encrypted_data: STANDARD.encode(&bytes),
        iv: payload.iv.clone(),
    };
    expect_error(
        app.send_profile(&tampered, &token, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    // Ciphertext cut short of a whole block.
    let truncated = EncryptedPayload {
        encrypted_data: STANDARD.encode(&bytes[..bytes.len() - 5]),
        iv: payload.iv.clone(),
    };
    expect_error(
        app.send_profile(&truncated, &token, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;

    // An IV that is not 16 bytes, and one that is not base64.
    for iv in [STANDARD.encode([7u8; 8]), "@@not base64@@".to_owned()] {
        let bad_iv = EncryptedPayload {
            encrypted_data: payload.encrypted_data.clone(),
            iv,
        };
        expect_error(
            app.send_profile(&bad_iv, &token, &[]).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    // Missing encryptedData.
    let resp = app
        .update_user_info(&[("iv", payload.iv.as_str()), ("token", token.as_str())])
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;

    // rawData + signature: sha1(rawData + session_key), hex, with the key's base64 text.
    let raw_data = info.to_string();
    let key = app
        .mock
        .current_session_key("o-frank")
        .expect("session key");
    let signature = sha1_hex(&format!("{raw_data}{key}"));
    let wrong = sha1_hex(&format!("{raw_data}x{key}"));
    expect_error(
        app.send_profile(
            &payload,
            &token,
            &[
                ("rawData", raw_data.as_str()),
                ("signature", wrong.as_str()),
            ],
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature_mismatch",
    )
    .await;
    // A signature without rawData is malformed.
    expect_error(
        app.send_profile(&payload, &token, &[("signature", signature.as_str())])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // None of the refusals stored anything.
    let relogin = app.login_ok("o-frank").await;
    assert!(relogin["user"]["nickName"].is_null(), "{relogin}");
    // That login rotated the key: sign and encrypt again for the new session.
    let token = token_of(&relogin);
    let payload = app.encrypt("o-frank", &info);
    let key = app
        .mock
        .current_session_key("o-frank")
        .expect("session key");
    let signature = sha1_hex(&format!("{raw_data}{key}"));
    let body = expect_status(
        app.send_profile(
            &payload,
            &token,
            &[
                ("rawData", raw_data.as_str()),
                ("signature", signature.as_str()),
            ],
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_profile(&body["user"], &info);
    assert_eq!(body["profileComplete"], true);
}

fn sha1_hex(s: &str) -> String {
    Sha1::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_surface() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.url)).send();

    let health = expect_status(get("/healthz").await.expect("GET"), StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = expect_status(get("/readyz").await.expect("GET"), StatusCode::OK).await;
    assert_eq!(ready["status"], "ok");

    let spec = expect_status(get("/openapi.json").await.expect("GET"), StatusCode::OK).await;
    assert!(
        spec["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{spec}"
    );
    let on_login = &spec["paths"]["/onLogin"]["post"];
    for status in ["200", "400", "403", "413", "415", "429", "502", "503"] {
        assert!(
            on_login["responses"][status].is_object(),
            "/onLogin lacks response {status}: {on_login}"
        );
    }
    let content = on_login["requestBody"]["content"]
        .as_object()
        .expect("request body content");
    assert!(
        content.contains_key("application/x-www-form-urlencoded"),
        "{content:?}"
    );
    assert!(
        content.keys().any(|k| k.starts_with("application/json")),
        "{content:?}"
    );
    let update = &spec["paths"]["/updateUserInfo"]["post"];
    for status in ["200", "400", "401", "422", "503"] {
        assert!(
            update["responses"][status].is_object(),
            "/updateUserInfo lacks response {status}: {update}"
        );
    }

    let docs = get("/docs").await.expect("GET /docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let content_type = docs
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = docs.text().await.expect("body");
    assert!(
        html.to_lowercase().contains("swagger"),
        "not Swagger UI: {html:.200}"
    );

    expect_error(
        get("/no/such/path").await.expect("GET"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "text/plain")
        .body("code=abc")
        .send()
        .await
        .expect("POST");
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // A body above the limit (64 KiB by default), with Content-Length...
    let big = "a".repeat(80 * 1024);
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .form(&[("code", big.as_str())])
        .send()
        .await
        .expect("POST");
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // ...and chunked, without one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = std::iter::once(b"code=".to_vec())
        .chain((0..10).map(|_| vec![b'a'; 8 * 1024]))
        .map(Ok)
        .collect();
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST (chunked)");
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // A chunked body under the limit is read normally (and the code is just unknown).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"code=".to_vec()), Ok(b"unknownCode123".to_vec())];
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST (chunked)");
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_code").await;

    // The mock's control API is not exposed in http mode.
    if !wechat_over_http() {
        return;
    }
    let resp = app
        .client
        .post(format!("{}/mock/codes", app.url))
        .json(&json!({"openId": "o-x"}))
        .send()
        .await
        .expect("POST");
    expect_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mock_mode_works_through_the_control_api() {
    let db = TestDb::fresh().await;
    let mut settings = wxlogin_server::Settings::default();
    settings.server.addr = "127.0.0.1:0".into();
    settings.database.url = db.url();
    settings.wechat.mode = None;
    settings.wechat.app_secret = None;
    settings.log.filter = "warn".into();
    let server = wxlogin_server::spawn(settings)
        .await
        .expect("spawn in mock mode");
    let url = server.url();
    let client = client();
    let post_json =
        |path: &str, body: Value| client.post(format!("{url}{path}")).json(&body).send();

    // wx.login, played by the control API.
    let resp = post_json(
        "/mock/codes",
        json!({"openId": "o-henry", "unionId": "u-henry"}),
    )
    .await
    .expect("POST /mock/codes");
    assert_eq!(resp.status(), StatusCode::OK);
    let minted: Value = resp.json().await.expect("JSON");
    let code = minted["code"].as_str().expect("code").to_owned();

    let resp = client
        .post(format!("{url}/onLogin"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .expect("POST /onLogin");
    let login = expect_status(resp, StatusCode::OK).await;
    assert_login_body(&login, "o-henry");
    assert_eq!(login["isNewUser"], true);
    assert_eq!(login["user"]["unionId"], "u-henry");
    let token = token_of(&login);

    // The code is single use in mock mode too.
    let resp = client
        .post(format!("{url}/onLogin"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .expect("POST /onLogin");
    expect_error(resp, StatusCode::BAD_REQUEST, "code_used").await;

    // getUserProfile, played by the control API; the watermark carries the mock's app id.
    let info = wechat_user_info("Henry");
    let resp = post_json(
        "/mock/encrypt",
        json!({"openId": "o-henry", "userInfo": info}),
    )
    .await
    .expect("POST /mock/encrypt");
    assert_eq!(resp.status(), StatusCode::OK);
    let payload: Value = resp.json().await.expect("JSON");
    let resp = client
        .post(format!("{url}/updateUserInfo"))
        .form(&[
            (
                "encryptedData",
                payload["encryptedData"].as_str().expect("data"),
            ),
            ("iv", payload["iv"].as_str().expect("iv")),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .expect("POST /updateUserInfo");
    let body = expect_status(resp, StatusCode::OK).await;
    assert_eq!(body["profileComplete"], true);
    assert_profile(&body["user"], &info);
    assert_eq!(body["user"]["id"], login["user"]["id"]);

    // Failure injection works over the control API as well.
    let resp = post_json(
        "/mock/failures",
        json!({"api": "jscode2session", "mode": "busy"}),
    )
    .await
    .expect("POST /mock/failures");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let minted: Value = post_json("/mock/codes", json!({"openId": "o-henry"}))
        .await
        .expect("POST /mock/codes")
        .json()
        .await
        .expect("JSON");
    let code = minted["code"].as_str().expect("code").to_owned();
    let resp = client
        .post(format!("{url}/onLogin"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .expect("POST /onLogin");
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, "wechat_unavailable").await;
    let resp = client
        .post(format!("{url}/onLogin"))
        .form(&[("code", code.as_str())])
        .send()
        .await
        .expect("POST /onLogin");
    let again = expect_status(resp, StatusCode::OK).await;
    assert_eq!(again["isNewUser"], false);
    assert_eq!(again["profileComplete"], true);
    assert_profile(&again["user"], &info);

    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_of_another_app_is_a_decrypt_failure() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-mark").await);
    let mut info = wechat_user_info("Marked");
    info["watermark"] = json!({"appid": "wxsomeotherapp0000", "timestamp": 1_700_000_000});
    let payload = app.encrypt("o-mark", &info);
    expect_error(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
    // The same data with our app's watermark goes through.
    let payload = app.encrypt("o-mark", &wechat_user_info("Marked"));
    let body = expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "Marked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_answers_token_expired() {
    let app = spawn_app_with(|s| s.session.ttl_secs = 1).await;
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
async fn update_user_info_takes_json_too() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-json").await);
    let info = wechat_user_info("Jason");
    let payload = app.encrypt("o-json", &info);
    let resp = app
        .client
        .post(format!("{}/updateUserInfo", app.url))
        .json(&json!({
            "encryptedData": payload.encrypted_data,
            "iv": payload.iv,
            "token": token,
        }))
        .send()
        .await
        .expect("POST /updateUserInfo (JSON)");
    let body = expect_status(resp, StatusCode::OK).await;
    assert_eq!(body["status"], 200);
    assert_profile(&body["user"], &info);
}
