//! Phone numbers: the `getPhoneNumber` button's code through `getuserphonenumber` under the
//! app's shared access token (fetched once, renewed when WeChat rejects it), legacy encrypted
//! phone data, and a `wx.login` code sent to the wrong endpoint. Runs with either WeChat
//! adapter and either store.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxlogin_e2e::*;
use wxlogin_wechat_mock::{Api, CountryCode, Phone};

async fn bind(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/me/phone", app.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST /api/v1/me/phone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_code_records_the_number_under_one_access_token() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-phone").await);
    let code = app.mock.mint_phone_code(
        "o-phone",
        Phone::new("+86 13800138000", CountryCode::Number(86)),
    );
    let body = expect_status(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "+86 13800138000");
    assert_user_shape(&body["user"]);
    let me = app
        .client
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /api/v1/me");
    let me = expect_status(me, StatusCode::OK).await;
    assert_eq!(me["user"]["phoneNumber"], "+86 13800138000");

    // A second number, later: the same access token serves it.
    let code = app
        .mock
        .mint_phone_code("o-phone", Phone::new("13900139000", CountryCode::default()));
    let body = expect_status(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "13900139000");
    assert_eq!(
        app.mock.calls(Api::StableToken),
        1,
        "one access token fetch"
    );
    assert_eq!(app.mock.calls(Api::Token), 0, "never cgi-bin/token");

    // A phone code is single use.
    expect_error(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_code_sent_as_a_phone_code_says_so_and_stores_nothing() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-mixup").await);
    let login_code = app.wx_login("o-mixup");
    let err = expect_error(
        bind(&app, &token, json!({ "code": login_code })).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("wx.login"),
        "{err}"
    );
    let body = expect_status(
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_access_token_is_renewed_once_and_the_number_still_recorded() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-renew").await);
    let code = app
        .mock
        .mint_phone_code("o-renew", Phone::new("13700137000", CountryCode::default()));
    expect_status(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.mock.calls(Api::StableToken), 1);

    // WeChat no longer takes the token we hold (40001): dropped, fetched anew, used once more.
    app.mock.invalidate_access_token();
    let code = app
        .mock
        .mint_phone_code("o-renew", Phone::new("13700137001", CountryCode::default()));
    let body = expect_status(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "13700137001");
    assert_eq!(app.mock.calls(Api::StableToken), 2);
    assert_eq!(
        app.mock.calls(Api::GetUserPhoneNumber),
        3,
        "one rejected call, one retry"
    );

    // Expired (42001) likewise.
    app.mock.expire_access_token();
    let code = app
        .mock
        .mint_phone_code("o-renew", Phone::new("13700137002", CountryCode::default()));
    expect_status(
        bind(&app, &token, json!({ "code": code })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.mock.calls(Api::StableToken), 3);
}

/// `stable_token` hands out its current token with what is left of its life: a token with
/// three minutes left, inside the five-minute renewal margin from the start, serves request
/// after request instead of being fetched again for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_inside_the_renewal_margin_serves_many_requests_with_one_fetch() {
    let app = spawn_app().await;
    let _ = app
        .mock
        .clone()
        .with_access_token_ttl(std::time::Duration::from_secs(180));
    let token = token_of(&app.login_ok("o-margin").await);
    for i in 0..10 {
        let code = app.mock.mint_phone_code(
            "o-margin",
            Phone::new(&format!("1370013{i:04}"), CountryCode::default()),
        );
        let body = expect_status(
            bind(&app, &token, json!({ "code": code })).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body["user"]["phoneNumber"], format!("1370013{i:04}"));
    }
    assert_eq!(
        app.mock.calls(Api::StableToken),
        1,
        "one fetch, not one per request"
    );
    assert_eq!(app.mock.calls(Api::GetUserPhoneNumber), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_encrypted_phone_data_is_decrypted_with_the_sessions_key() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-legacy").await);
    let payload = app
        .mock
        .encrypt_phone_number(
            "o-legacy",
            json!({"phoneNumber": "13600136000", "purePhoneNumber": "13600136000", "countryCode": "86"}),
        )
        .expect("the user logged in");
    let body = expect_status(
        bind(
            &app,
            &token,
            json!({"encryptedData": payload.encrypted_data, "iv": payload.iv}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "13600136000");
    assert_eq!(
        app.mock.calls(Api::StableToken),
        0,
        "no access token needed"
    );

    // Garbage is one decrypt failure, and changes nothing.
    expect_error(
        bind(
            &app,
            &token,
            json!({"encryptedData": "AAAA", "iv": payload.iv}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_button_detail_or_legacy_data_with_a_fresh_login_code_both_bind() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-detail").await);

    // `e.detail` of today's button, forwarded whole: code, encryptedData and iv.
    let phone_code = app.mock.mint_phone_code(
        "o-detail",
        Phone::new("13500135000", CountryCode::default()),
    );
    let payload = app
        .mock
        .encrypt_phone_number("o-detail", json!({"phoneNumber": "13500135000", "purePhoneNumber": "13500135000", "countryCode": "86"}))
        .expect("the user logged in");
    let body = expect_status(
        bind(
            &app,
            &token,
            json!({"code": phone_code, "encryptedData": payload.encrypted_data, "iv": payload.iv}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "13500135000");
    let exchanges = app.exchanges();

    // The legacy flow: the client called wx.login again, which rotated the key the data is
    // encrypted with, and sends that fresh code with the data. The phone API refuses it as a
    // phone code, leaving it unspent; it is exchanged and its key decrypts the data (the
    // session's own key no longer would).
    let fresh = app.wx_login("o-detail");
    let payload = app
        .mock
        .encrypt_phone_number("o-detail", json!({"phoneNumber": "13700137000", "purePhoneNumber": "13700137000", "countryCode": "86"}))
        .expect("the user logged in");
    let body = expect_status(
        bind(
            &app,
            &token,
            json!({"code": fresh, "encryptedData": payload.encrypted_data, "iv": payload.iv}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "13700137000");
    assert_eq!(
        app.exchanges(),
        exchanges + 1,
        "the fresh code was exchanged once"
    );
}
