//! The embedded default: with no WeChat credentials the server runs the mock in process and
//! mounts its control API at `/mock` (mint a code, encrypt a profile, inject a failure, read
//! the call counts), so the whole flow can be played with curl; in `http` mode that API is not
//! there. Each test picks its WeChat mode itself, so the in-process pass does not select this
//! target.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxlogin_e2e::*;
use wxlogin_server::{Settings, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mock_mode_works_through_the_control_api() {
    let db = TestDb::fresh().await;
    let mut settings = Settings::default();
    settings.server.addr = "127.0.0.1:0".into();
    settings.database.url = db.url();
    // Neither mode nor credentials: the embedded default, the mock in process.
    settings.wechat.mode = None;
    settings.wechat.app_secret = None;
    settings.log.filter = "warn".into();
    let server = spawn(settings).await.expect("spawn in mock mode");
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

    // Failure injection works over the control API as well, named by its API.
    let resp = post_json("/mock/failures", json!({"mode": "busy"}))
        .await
        .expect("POST /mock/failures");
    expect_status(resp, StatusCode::BAD_REQUEST).await;
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

    // Every exchange counted (the first login, its replay, the busy attempt and its retry),
    // and no other API called.
    let stats = client
        .get(format!("{url}/mock/stats"))
        .send()
        .await
        .expect("GET /mock/stats");
    let stats = expect_status(stats, StatusCode::OK).await;
    assert_eq!(stats["calls"]["jscode2session"], 4, "{stats}");
    for api in [
        "stable_token",
        "token",
        "getuserphonenumber",
        "checksession",
    ] {
        assert_eq!(stats["calls"][api], 0, "{api}: {stats}");
    }

    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_is_not_exposed_in_http_mode() {
    let app = spawn_app_on(WeChatUnderTest::Http, |_| {}).await;
    for path in ["/mock/codes", "/mock/failures"] {
        let resp = app
            .client
            .post(format!("{}{path}", app.url))
            .json(&json!({"openId": "o-x", "api": "jscode2session", "mode": "busy"}))
            .send()
            .await
            .expect("POST");
        expect_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    }
    // The server does reach WeChat: through the mock's HTTP server, not in process.
    app.login_ok("o-x").await;
    assert_eq!(app.exchanges(), 1);
}
