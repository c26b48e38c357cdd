//! Sending the profile: `wx.getUserProfile` → `POST /updateUserInfo` (form, JSON or a bearer
//! header). Data decrypts only with the session key of the latest login, a fresh `code` fixes a
//! rotated key, a foreign watermark is a decrypt failure, and bad tokens, ciphertexts, IVs and
//! signatures are refused without storing anything. Runs with either WeChat adapter.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::json;
use sha1::{Digest as _, Sha1};
use wxlogin_e2e::*;
use wxlogin_wechat_mock::EncryptedPayload;

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
    let attempts = app.exchanges();
    let body = expect_status(
        app.send_profile(&payload, &token, &[("code", fresh.as_str())])
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.exchanges(), attempts + 1);
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
