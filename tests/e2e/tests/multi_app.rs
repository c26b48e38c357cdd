//! Several mini-programs on one backend, over real HTTP: `[[wechat.apps]]`, the app named by
//! `X-WX-AppId` or by the `Referer` WeChat sets, one user for one person's identities in two
//! apps (one unionid), tokens bound to their app, an access token per app. Runs with either
//! WeChat adapter (one mock WeChat server answering for both apps, or the server's in-process
//! mocks) and either store.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use reqwest::{RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use wxlogin_domain::AppId;
use wxlogin_e2e::*;
use wxlogin_server::{RunningServer, WeChatAppSettings, spawn, spawn_with_mocks};
use wxlogin_wechat_mock::{Api, CountryCode, MockWeChat, Phone};

/// The second mini-program of the same company (its users share unionids with the first's).
const SHOP_ID: &str = "wxe2e5h0p000000000";
const SHOP_SECRET: &str = "e2e-shop-secret-never-echoed";

struct TwoApps {
    client: reqwest::Client,
    url: String,
    main: MockWeChat,
    shop: MockWeChat,
    _server: RunningServer,
    _mock_server: MockServer,
    _db: TestDb,
}

async fn spawn_two_apps() -> TwoApps {
    let main = MockWeChat::new(AppId::parse(APP_ID).unwrap(), Some(APP_SECRET.into()));
    let shop = MockWeChat::new(AppId::parse(SHOP_ID).unwrap(), Some(SHOP_SECRET.into()));
    let mock_server = MockServer::start_apps(vec![main.clone(), shop.clone()]).await;
    let db = TestDb::fresh().await;
    let mut settings = http_settings(&db.url(), &mock_server.url);
    settings.wechat.apps = vec![WeChatAppSettings {
        name: Some("shop".into()),
        app_id: Some(SHOP_ID.into()),
        app_secret: Some(SecretString::from(SHOP_SECRET)),
    }];
    let server = match wechat_under_test() {
        WeChatUnderTest::Http => spawn(settings).await,
        WeChatUnderTest::InProcess => {
            spawn_with_mocks(settings, vec![main.clone(), shop.clone()]).await
        }
    }
    .expect("spawn the server");
    TwoApps {
        client: client(),
        url: server.url(),
        main,
        shop,
        _server: server,
        _mock_server: mock_server,
        _db: db,
    }
}

/// What `wx.request` in the mini-program `app_id` sends: WeChat's own Referer.
fn from_mini_program(req: RequestBuilder, app_id: &str) -> RequestBuilder {
    req.header(
        "Referer",
        format!("https://servicewechat.com/{app_id}/0/page-frame.html"),
    )
}

impl TwoApps {
    async fn login(&self, req: RequestBuilder, code: &str) -> reqwest::Response {
        req.form(&[("code", code)])
            .send()
            .await
            .expect("POST /onLogin")
    }

    fn on_login(&self) -> RequestBuilder {
        self.client.post(format!("{}/onLogin", self.url))
    }

    fn me(&self, token: &str) -> RequestBuilder {
        self.client
            .get(format!("{}/api/v1/me", self.url))
            .bearer_auth(token)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_in_two_apps_is_one_user_with_an_openid_per_app() {
    let apps = spawn_two_apps().await;

    // The default app: the classic client, no header, no WeChat referer.
    let code = apps.main.mint_code("o-main-alice", Some("u-alice"));
    let main = expect_status(apps.login(apps.on_login(), &code).await, StatusCode::OK).await;
    assert_eq!(main["isNewUser"], true);
    assert_eq!(main["user"]["openId"], "o-main-alice");
    let main_token = token_of(&main);
    let patched = apps
        .client
        .patch(format!("{}/api/v1/me/profile", apps.url))
        .bearer_auth(&main_token)
        .json(&json!({"nickName": "阿丽", "avatarUrl": "https://example.com/a.png"}))
        .send()
        .await
        .expect("PATCH");
    expect_status(patched, StatusCode::OK).await;

    // The shop, as its wx.request sends it: WeChat's Referer names the app.
    let code = apps.shop.mint_code("o-shop-alice", Some("u-alice"));
    let shop = expect_status(
        apps.login(from_mini_program(apps.on_login(), SHOP_ID), &code)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        shop["user"]["id"], main["user"]["id"],
        "one person, one user"
    );
    assert_eq!(shop["isNewUser"], false);
    assert_eq!(
        shop["user"]["openId"], "o-shop-alice",
        "the shop's own openid"
    );
    assert_eq!(
        shop["user"]["nickName"], "阿丽",
        "the profile is the user's"
    );
    assert_eq!(shop["profileComplete"], true);
    assert_eq!(apps.main.calls(Api::Jscode2session), 1);
    assert_eq!(apps.shop.calls(Api::Jscode2session), 1);

    // Someone else in the shop is a user of their own.
    let code = apps.shop.mint_code("o-shop-bob", Some("u-bob"));
    let bob = expect_status(
        apps.login(from_mini_program(apps.on_login(), SHOP_ID), &code)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(bob["isNewUser"], true);
    assert_ne!(bob["user"]["id"], main["user"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_works_only_for_its_own_app() {
    let apps = spawn_two_apps().await;
    let code = apps.shop.mint_code("o-shop-only", None);
    // The JSON API, naming its app by header.
    let body = expect_status(
        apps.client
            .post(format!("{}/api/v1/login", apps.url))
            .header("X-WX-AppId", SHOP_ID)
            .json(&json!({ "code": code }))
            .send()
            .await
            .expect("POST /api/v1/login"),
        StatusCode::OK,
    )
    .await;
    let token = token_of(&body);

    let me = expect_status(
        apps.me(&token)
            .header("X-WX-AppId", SHOP_ID)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["user"]["openId"], "o-shop-only");
    expect_status(
        from_mini_program(apps.me(&token), SHOP_ID)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    // Sent for the default app (nothing named) or the other app by name: unknown there.
    expect_error(
        apps.me(&token).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    expect_error(
        apps.me(&token)
            .header("X-WX-AppId", APP_ID)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // A code of one app sent as the other's is refused by WeChat (it belongs to another app).
    let code = apps.shop.mint_code("o-shop-only", None);
    expect_error(
        apps.login(apps.on_login(), &code).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_this_server_does_not_serve_is_a_400_and_costs_no_wechat_call() {
    let apps = spawn_two_apps().await;
    let code = apps.main.mint_code("o-nowhere", None);
    let err = expect_error(
        apps.login(
            apps.on_login().header("X-WX-AppId", "wxnotserved0000000"),
            &code,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("X-WX-AppId"),
        "{err}"
    );
    expect_error(
        apps.login(
            from_mini_program(apps.on_login(), "wxnotserved0000000"),
            &code,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(apps.main.calls(Api::Jscode2session), 0);
    // Swagger UI's referer names no app: the default app serves it, and the code still works.
    let ok = apps
        .login(
            apps.on_login()
                .header("Referer", format!("{}/docs/", apps.url)),
            &code,
        )
        .await;
    let body = expect_status(ok, StatusCode::OK).await;
    assert_eq!(body["user"]["openId"], "o-nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_keeps_its_own_access_token() {
    let apps = spawn_two_apps().await;
    let bind = |token: String, app_id: &'static str, code: String| {
        apps.client
            .post(format!("{}/api/v1/me/phone", apps.url))
            .bearer_auth(token)
            .header("X-WX-AppId", app_id)
            .json(&json!({ "code": code }))
            .send()
    };
    let mut tokens = Vec::new();
    for (mock, app_id, open_id, number) in [
        (&apps.main, APP_ID, "o-main-phone", "13800138000"),
        (&apps.shop, SHOP_ID, "o-shop-phone", "13900139000"),
    ] {
        let code = mock.mint_code(open_id, None);
        let login = expect_status(
            apps.login(apps.on_login().header("X-WX-AppId", app_id), &code)
                .await,
            StatusCode::OK,
        )
        .await;
        let token = token_of(&login);
        for _ in 0..2 {
            let code = mock.mint_phone_code(open_id, Phone::new(number, CountryCode::default()));
            let body: Value = expect_status(
                bind(token.clone(), app_id, code).await.unwrap(),
                StatusCode::OK,
            )
            .await;
            assert_eq!(body["user"]["phoneNumber"], number);
        }
        tokens.push(mock.current_access_token().expect("a token was issued"));
    }
    // One fetch per app, each with its own credentials, and two different tokens.
    assert_eq!(apps.main.calls(Api::StableToken), 1);
    assert_eq!(apps.shop.calls(Api::StableToken), 1);
    assert_ne!(tokens[0], tokens[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_apps_mock_control_api_mints_its_own_codes() {
    // Only the in-process mock lives on the server; the HTTP mock has the same paths.
    let apps = spawn_two_apps().await;
    let control = match wechat_under_test() {
        WeChatUnderTest::InProcess => apps.url.clone(),
        WeChatUnderTest::Http => apps._mock_server.url.clone(),
    };
    let minted: Value = apps
        .client
        .post(format!("{control}/mock/apps/{SHOP_ID}/codes"))
        .json(&json!({"openId": "o-minted-shop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = minted["code"].as_str().expect("a code");
    let body = expect_status(
        apps.login(from_mini_program(apps.on_login(), SHOP_ID), code)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["openId"], "o-minted-shop");
    assert_eq!(apps.shop.calls(Api::Jscode2session), 1);
    assert_eq!(apps.main.calls(Api::Jscode2session), 0);
}
