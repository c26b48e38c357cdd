//! The mock over real HTTP on 127.0.0.1:0: WeChat's endpoints and the control API.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;
use wxlogin_domain::AppId;
use wxlogin_wechat_mock::{Api, MockWeChat, serve};

struct Running {
    base: String,
    mock: MockWeChat,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn start(secret: Option<&str>) -> Running {
    let mock = MockWeChat::new(AppId::parse("wxapp").unwrap(), secret.map(str::to_owned));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, mock.clone(), async {
        let _ = stopped.await;
    }));
    Running {
        base: format!("http://{addr}"),
        mock,
        client: {
            // reqwest's rustls has no crypto provider of its own (the workspace's Cargo.toml).
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::new()
        },
        _stop: stop,
    }
}

impl Running {
    async fn exchange(&self, appid: &str, secret: &str, code: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}/sns/jscode2session", self.base))
            .query(&[
                ("appid", appid),
                ("secret", secret),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/mock{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        json_of(&response.text().await.unwrap())
    }

    async fn post(&self, path: &str, query: &[(&str, &str)], body: &str) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .query(query)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        json_of(&response.text().await.unwrap())
    }

    async fn stable_token(&self, secret: &str, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": "wxapp",
            "secret": secret,
            "force_refresh": force_refresh,
        });
        self.post("/cgi-bin/stable_token", &[], &body.to_string())
            .await
    }

    /// A valid access token from `stable_token`.
    async fn access_token(&self) -> String {
        let answer = self.stable_token("s", false).await;
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn phone_number(&self, access_token: &str, code: &str) -> Value {
        let body = json!({ "code": code }).to_string();
        self.post(
            "/wxa/business/getuserphonenumber",
            &[("access_token", access_token)],
            &body,
        )
        .await
    }

    async fn check_session(&self, access_token: &str, open_id: &str, signature: &str) -> Value {
        self.get(
            "/wxa/checksession",
            &[
                ("access_token", access_token),
                ("signature", signature),
                ("openid", open_id),
                ("sig_method", "hmac_sha256"),
            ],
        )
        .await
    }

    async fn mint_phone(&self, body: Value) -> String {
        let (status, reply) = self
            .control(reqwest::Method::POST, "/phone-codes", Some(body))
            .await;
        assert_eq!(status, 200, "{reply}");
        reply["code"].as_str().unwrap().to_owned()
    }

    async fn mint(&self, body: Value) -> String {
        let (status, reply) = self
            .control(reqwest::Method::POST, "/codes", Some(body))
            .await;
        assert_eq!(status, 200, "{reply}");
        reply["code"].as_str().unwrap().to_owned()
    }
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn exchange_over_http_follows_wechat() {
    let app = start(None).await;
    let code = app.mint(json!({"openId": "o1", "unionId": "u1"})).await;
    let (status, body) = app.exchange("wxapp", "anything", &code).await;
    assert_eq!(status, 200);
    let body = json_of(&body);
    assert_eq!(body["openid"], "o1");
    assert_eq!(body["unionid"], "u1");
    assert_eq!(
        body["session_key"].as_str(),
        app.mock.current_session_key("o1").as_deref()
    );

    let (status, first) = app.exchange("wxapp", "anything", &code).await;
    assert_eq!(status, 200);
    let first = json_of(&first);
    assert_eq!(first["errcode"], 40163);
    let (_, second) = app.exchange("wxapp", "anything", &code).await;
    // errmsg carries a request id that changes on every call.
    assert_ne!(first["errmsg"], json_of(&second)["errmsg"]);
    assert!(first["errmsg"].as_str().unwrap().contains("rid: "));

    let (_, unknown) = app.exchange("wxapp", "anything", "nope").await;
    assert_eq!(json_of(&unknown)["errcode"], 40029);

    // No unionid key at all when the user has none.
    let code = app.mint(json!({"openId": "o2"})).await;
    let (_, body) = app.exchange("wxapp", "anything", &code).await;
    assert!(json_of(&body).get("unionid").is_none());
    assert_eq!(app.mock.calls(Api::Jscode2session), 5);
}

#[tokio::test]
async fn credentials_and_parameters_are_checked() {
    let app = start(Some("s3cr&t =+/")).await;
    let code = app.mint(json!({"openId": "o1"})).await;
    let (_, body) = app.exchange("wxother", "s3cr&t =+/", &code).await;
    assert_eq!(json_of(&body)["errcode"], 40013);
    let (_, body) = app.exchange("wxapp", "wrong", &code).await;
    assert_eq!(json_of(&body)["errcode"], 40125);
    // A secret full of reserved characters survives a properly encoded query.
    let (_, body) = app.exchange("wxapp", "s3cr&t =+/", &code).await;
    assert_eq!(json_of(&body)["openid"], "o1");

    let url = format!("{}/sns/jscode2session?appid=wxapp&secret=x", app.base);
    let body = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(json_of(&body)["errcode"], 41008);
    let url = format!(
        "{}/sns/jscode2session?appid=wxapp&secret=x&js_code=c&grant_type=password",
        app.base
    );
    let body = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(json_of(&body)["errcode"], 40002);
}

#[tokio::test]
async fn injected_failures_over_http() {
    let app = start(None).await;
    let code = app.mint(json!({"openId": "o1"})).await;
    let post = reqwest::Method::POST;
    for (mode, errcode) in [("busy", -1), ("rate_limited", 45011), ("risky", 40226)] {
        let (status, _) = app
            .control(
                post.clone(),
                "/failures",
                Some(json!({"api": "jscode2session", "mode": mode})),
            )
            .await;
        assert_eq!(status, 204);
        let (_, body) = app.exchange("wxapp", "s", &code).await;
        assert_eq!(json_of(&body)["errcode"], errcode, "{mode}");
    }

    app.control(
        post.clone(),
        "/failures",
        Some(json!({"api": "jscode2session", "mode": "http500", "times": 2})),
    )
    .await;
    for _ in 0..2 {
        let (status, body) = app.exchange("wxapp", "s", &code).await;
        assert_eq!(status, 500);
        assert!(body.contains("<html>"));
    }

    app.control(
        post.clone(),
        "/failures",
        Some(json!({"api": "jscode2session", "mode": "garbage"})),
    )
    .await;
    let (status, body) = app.exchange("wxapp", "s", &code).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    app.control(
        post.clone(),
        "/failures",
        Some(json!({"api": "jscode2session", "mode": "busy", "times": 9})),
    )
    .await;
    let (status, _) = app
        .control(reqwest::Method::DELETE, "/failures", None)
        .await;
    assert_eq!(status, 204);

    // None of the failures consumed the code.
    let (_, body) = app.exchange("wxapp", "s", &code).await;
    assert_eq!(json_of(&body)["openid"], "o1");
    let (_, stats) = app.control(reqwest::Method::GET, "/stats", None).await;
    assert_eq!(
        stats,
        json!({"calls": {
            "jscode2session": 7,
            "stable_token": 0,
            "token": 0,
            "getuserphonenumber": 0,
            "checksession": 0,
        }})
    );
    assert_eq!(app.mock.calls(Api::Jscode2session), 7);
}

#[tokio::test]
async fn encrypt_through_the_control_api() {
    let app = start(None).await;
    let post = reqwest::Method::POST;
    let (status, err) = app
        .control(
            post.clone(),
            "/encrypt",
            Some(json!({"openId": "o1", "userInfo": {"nickName": "A"}})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "unknown_user");

    let code = app.mint(json!({"openId": "o1"})).await;
    app.exchange("wxapp", "s", &code).await;
    let (status, payload) = app
        .control(
            post.clone(),
            "/encrypt",
            Some(json!({"openId": "o1", "userInfo": {"nickName": "A"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(payload["encryptedData"].is_string());
    assert!(payload["iv"].is_string());
}

#[tokio::test]
async fn control_api_refusals_are_json() {
    let app = start(None).await;
    let post = reqwest::Method::POST;
    for (path, body) in [
        ("/codes", json!({})),
        ("/codes", json!({"openId": ""})),
        ("/codes", json!({"openId": "o1", "unionId": "has space"})),
        ("/encrypt", json!({"openId": "o1", "userInfo": [1]})),
        (
            "/failures",
            json!({"api": "jscode2session", "mode": "slow"}),
        ),
        (
            "/failures",
            json!({"api": "jscode2session", "mode": "busy", "times": 0}),
        ),
        (
            "/failures",
            json!({"api": "jscode2session", "mode": "sideways"}),
        ),
        ("/failures", json!({"api": "jscode2session"})),
        ("/failures", json!({"api": "nosuchapi", "mode": "busy"})),
        (
            "/failures",
            json!({"api": "Jscode2session", "mode": "busy"}),
        ),
    ] {
        let (status, err) = app.control(post.clone(), path, Some(body.clone())).await;
        assert!(status == 400 || status == 404, "{path} {body}: {status}");
        assert!(
            err["error"].is_string() && err["message"].is_string(),
            "{err}"
        );
    }
    let response = app
        .client
        .post(format!("{}/mock/codes", app.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "bad_request"
    );

    // `api` is required: a failure must say which API it applies to.
    let (status, err) = app
        .control(post.clone(), "/failures", Some(json!({"mode": "busy"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "bad_request");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("api is required") && m.contains("jscode2session")),
        "{err}"
    );
    let (_, err) = app
        .control(
            post.clone(),
            "/failures",
            Some(json!({"api": "nosuchapi", "mode": "busy"})),
        )
        .await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown api \"nosuchapi\"")),
        "{err}"
    );
    // None of the refusals queued a failure.
    let code = app.mint(json!({"openId": "o1"})).await;
    let (_, body) = app.exchange("wxapp", "s", &code).await;
    assert_eq!(json_of(&body)["openid"], "o1");

    let (status, err) = app.control(reqwest::Method::GET, "/nowhere", None).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "not_found");
}

/// WECHAT.md's checksession signature, written out here independently of the mock: keyed
/// with the session key's base64 text.
fn signature(session_key: &str) -> String {
    hmac_hex(session_key.as_bytes())
}

fn hmac_hex(key: &[u8]) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn stable_token_keeps_its_token_until_force_refresh() {
    let app = start(Some("s")).await;
    let first = app.stable_token("s", false).await;
    let token = first["access_token"].as_str().unwrap();
    assert!(token.len() >= 32, "{first}");
    assert_eq!(first["expires_in"], 7200);
    assert!(first.get("errcode").is_none());
    assert_eq!(app.mock.current_access_token().as_deref(), Some(token));
    let again = app.stable_token("s", false).await;
    assert_eq!(again["access_token"], token);
    assert!(again["expires_in"].as_u64().unwrap() <= 7200);

    // force_refresh mints a new token and the old one stops working.
    let forced = app.stable_token("s", true).await;
    let fresh = forced["access_token"].as_str().unwrap();
    assert_ne!(fresh, token);
    assert_eq!(forced["expires_in"], 7200);
    let code = app
        .mint_phone(json!({"openId": "o1", "phoneNumber": "13800138000"}))
        .await;
    assert_eq!(app.phone_number(token, &code).await["errcode"], 40001);
    assert_eq!(
        app.phone_number(fresh, &code).await["phone_info"]["phoneNumber"],
        "13800138000"
    );

    // Credentials and parameters are checked like jscode2session's; a body that is not JSON
    // is WeChat's 47001.
    let post = |body: Value| {
        let app = &app;
        async move {
            app.post("/cgi-bin/stable_token", &[], &body.to_string())
                .await["errcode"]
                .clone()
        }
    };
    let cases = [
        (
            json!({"grant_type": "client_credential", "appid": "wxother", "secret": "s"}),
            40013,
        ),
        (
            json!({"grant_type": "client_credential", "appid": "wxapp", "secret": "x"}),
            40125,
        ),
        (
            json!({"grant_type": "client_credential", "secret": "s"}),
            41002,
        ),
        (
            json!({"grant_type": "client_credential", "appid": "wxapp"}),
            41004,
        ),
        (
            json!({"grant_type": "password", "appid": "wxapp", "secret": "s"}),
            40002,
        ),
        (
            json!({"appid": "wxapp", "secret": "s", "force_refresh": "yes"}),
            47001,
        ),
    ];
    for (body, errcode) in cases {
        assert_eq!(post(body.clone()).await, errcode, "{body}");
    }
    let broken = app.post("/cgi-bin/stable_token", &[], "{not json").await;
    assert_eq!(broken["errcode"], 47001);
    // None of the refusals touched the token.
    assert_eq!(app.mock.current_access_token().as_deref(), Some(fresh));
    assert_eq!(app.mock.calls(Api::StableToken), 10);
}

#[tokio::test]
async fn cgi_bin_token_always_mints_and_knocks_out_the_previous_token() {
    let app = start(Some("s")).await;
    let token = |secret: &'static str| {
        let app = &app;
        async move {
            app.get(
                "/cgi-bin/token",
                &[
                    ("grant_type", "client_credential"),
                    ("appid", "wxapp"),
                    ("secret", secret),
                ],
            )
            .await
        }
    };
    let first = token("s").await;
    let second = token("s").await;
    assert_eq!(first["expires_in"], 7200);
    assert_ne!(first["access_token"], second["access_token"]);
    let code = app
        .mint_phone(json!({"openId": "o1", "phoneNumber": "13800138000"}))
        .await;
    let stale = first["access_token"].as_str().unwrap();
    assert_eq!(app.phone_number(stale, &code).await["errcode"], 40001);
    // One token per app in the mock: stable_token now hands out cgi-bin/token's.
    assert_eq!(
        app.stable_token("s", false).await["access_token"],
        second["access_token"]
    );
    assert_eq!(token("wrong").await["errcode"], 40125);
    let no_grant = app
        .get("/cgi-bin/token", &[("appid", "wxapp"), ("secret", "s")])
        .await;
    assert_eq!(no_grant["errcode"], 40002);
    assert_eq!(app.mock.calls(Api::Token), 4);
}

#[tokio::test]
async fn phone_codes_over_http() {
    let app = start(None).await;
    let token = app.access_token().await;
    let code = app
        .mint_phone(json!({"openId": "o1", "phoneNumber": "13800138000"}))
        .await;
    let answer = app.phone_number(&token, &code).await;
    assert_eq!(answer["errcode"], 0);
    assert_eq!(answer["errmsg"], "ok");
    let info = &answer["phone_info"];
    assert_eq!(info["phoneNumber"], "13800138000");
    assert_eq!(info["purePhoneNumber"], "13800138000");
    assert_eq!(info["countryCode"], "86");
    assert_eq!(info["watermark"]["appid"], "wxapp");
    assert!(info["watermark"]["timestamp"].as_u64().unwrap() > 1_600_000_000);
    // Single use.
    assert_eq!(app.phone_number(&token, &code).await["errcode"], 40029);

    // countryCode comes back in the form it was minted in; the pure number is derived.
    let code = app
        .mint_phone(json!({"openId": "o2", "phoneNumber": "+12025550123", "countryCode": 1}))
        .await;
    let info = app.phone_number(&token, &code).await["phone_info"].clone();
    assert_eq!(info["countryCode"], 1);
    assert_eq!(info["purePhoneNumber"], "2025550123");
    let code = app
        .mint_phone(json!({
            "openId": "o3", "phoneNumber": "+85261234567", "purePhoneNumber": "61234567",
            "countryCode": "852",
        }))
        .await;
    let info = app.phone_number(&token, &code).await["phone_info"].clone();
    assert_eq!(info["countryCode"], "852");
    assert_eq!(info["purePhoneNumber"], "61234567");

    // A wx.login code is no phone code.
    let login = app.mint(json!({"openId": "o1"})).await;
    assert_eq!(app.phone_number(&token, &login).await["errcode"], 40029);
    let code = app
        .mint_phone(json!({"openId": "o1", "phoneNumber": "13800138000"}))
        .await;
    let path = "/wxa/business/getuserphonenumber";
    assert_eq!(
        app.post(path, &[], r#"{"code":"x"}"#).await["errcode"],
        41001
    );
    assert_eq!(
        app.post(path, &[("access_token", &token)], "{}").await["errcode"],
        41008
    );
    assert_eq!(
        app.post(path, &[("access_token", &token)], "code=x").await["errcode"],
        47001
    );

    // The control API expires or invalidates the token.
    let post = reqwest::Method::POST;
    let (status, _) = app
        .control(post.clone(), "/access-token/expire", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.phone_number(&token, &code).await["errcode"], 42001);
    let renewed = app.access_token().await;
    assert_ne!(renewed, token);
    let (status, _) = app.control(post, "/access-token/invalidate", None).await;
    assert_eq!(status, 204);
    assert_eq!(app.phone_number(&renewed, &code).await["errcode"], 40001);
    assert_eq!(app.mock.current_access_token(), None);
    // The code survived every refusal.
    let token = app.access_token().await;
    assert_eq!(
        app.phone_number(&token, &code).await["phone_info"]["phoneNumber"],
        "13800138000"
    );
}

#[tokio::test]
async fn checksession_over_http() {
    let app = start(None).await;
    let token = app.access_token().await;
    let code = app.mint(json!({"openId": "o1"})).await;
    let (_, session) = app.exchange("wxapp", "s", &code).await;
    let key = json_of(&session)["session_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = app.check_session(&token, "o1", &signature(&key)).await;
    assert_eq!(ok, json!({"errcode": 0, "errmsg": "ok"}));
    // Signing with the decoded key instead of its text is the classic mistake.
    let decoded = STANDARD.decode(&key).unwrap();
    assert_eq!(
        app.check_session(&token, "o1", &hmac_hex(&decoded)).await["errcode"],
        87009
    );
    assert_eq!(app.check_session(&token, "o1", "").await["errcode"], 87009);
    // A new wx.login rotates the key: the old signature no longer matches.
    app.mint(json!({"openId": "o1"})).await;
    assert_eq!(
        app.check_session(&token, "o1", &signature(&key)).await["errcode"],
        87009
    );
    let current = app.mock.current_session_key("o1").unwrap();
    assert_eq!(
        app.check_session(&token, "o1", &signature(&current)).await["errcode"],
        0
    );
    assert_eq!(
        app.check_session("stale", "o1", &signature(&current)).await["errcode"],
        40001
    );
    assert_eq!(
        app.check_session(&token, "o-never", &signature(&current))
            .await["errcode"],
        40003
    );
    let md5 = app
        .get(
            "/wxa/checksession",
            &[
                ("access_token", token.as_str()),
                ("signature", &signature(&current)),
                ("openid", "o1"),
                ("sig_method", "md5"),
            ],
        )
        .await;
    assert_eq!(md5["errcode"], 40097);
    assert_eq!(app.mock.calls(Api::CheckSession), 8);
}

#[tokio::test]
async fn failures_and_stats_per_api() {
    let app = start(None).await;
    let token = app.access_token().await;
    let post = reqwest::Method::POST;
    for api in [
        "stable_token",
        "token",
        "getuserphonenumber",
        "checksession",
    ] {
        let (status, _) = app
            .control(
                post.clone(),
                "/failures",
                Some(json!({"api": api, "mode": "busy"})),
            )
            .await;
        assert_eq!(status, 204, "{api}");
    }
    assert_eq!(app.stable_token("s", false).await["errcode"], -1);
    let busy = app
        .get(
            "/cgi-bin/token",
            &[
                ("grant_type", "client_credential"),
                ("appid", "a"),
                ("secret", "s"),
            ],
        )
        .await;
    assert_eq!(busy["errcode"], -1);
    let code = app
        .mint_phone(json!({"openId": "o1", "phoneNumber": "13800138000"}))
        .await;
    assert_eq!(app.phone_number(&token, &code).await["errcode"], -1);
    assert_eq!(app.check_session(&token, "o1", "00").await["errcode"], -1);
    // jscode2session is not affected, and the failures were used up.
    let login = app.mint(json!({"openId": "o1"})).await;
    assert_eq!(
        json_of(&app.exchange("wxapp", "s", &login).await.1)["openid"],
        "o1"
    );
    assert_eq!(app.stable_token("s", false).await["access_token"], token);
    assert_eq!(app.phone_number(&token, &code).await["errcode"], 0);

    let (_, stats) = app.control(reqwest::Method::GET, "/stats", None).await;
    assert_eq!(
        stats,
        json!({"calls": {
            "jscode2session": 1,
            "stable_token": 3,
            "token": 1,
            "getuserphonenumber": 2,
            "checksession": 1,
        }})
    );
}

#[tokio::test]
async fn phone_control_api() {
    let app = start(None).await;
    let post = reqwest::Method::POST;
    for body in [
        json!({"openId": "o1"}),
        json!({"openId": "", "phoneNumber": "13800138000"}),
        json!({"openId": "o1", "phoneNumber": "call me"}),
        json!({"openId": "o1", "phoneNumber": "13800138000", "purePhoneNumber": ""}),
        json!({"openId": "o1", "phoneNumber": "13800138000", "countryCode": "+86"}),
        json!({"openId": "o1", "phoneNumber": "13800138000", "countryCode": 12345}),
        json!({"openId": "o1", "phoneNumber": "13800138000", "countryCode": true}),
        json!({"openId": "o1", "phoneNumber": "13800138000", "extra": 1}),
    ] {
        let (status, err) = app
            .control(post.clone(), "/phone-codes", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], "bad_request", "{body}");
    }

    // Legacy phone data through /encrypt.
    let phone = json!({"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"});
    let (status, err) = app
        .control(
            post.clone(),
            "/encrypt",
            Some(json!({"openId": "o1", "phoneInfo": phone})),
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (404, Some("unknown_user")));
    app.mint(json!({"openId": "o1"})).await;
    let (status, payload) = app
        .control(
            post.clone(),
            "/encrypt",
            Some(json!({"openId": "o1", "phoneInfo": phone})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(payload["encryptedData"].is_string() && payload["iv"].is_string());
    for body in [
        json!({"openId": "o1"}),
        json!({"openId": "o1", "phoneInfo": phone, "userInfo": {}}),
        json!({"openId": "o1", "phoneInfo": "13800138000"}),
    ] {
        let (status, err) = app
            .control(post.clone(), "/encrypt", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
    }
    // Expiring or invalidating before any token exists is harmless.
    let (status, _) = app
        .control(post.clone(), "/access-token/expire", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .control(reqwest::Method::GET, "/access-token/expire", None)
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn codes_in_batches() {
    let app = start(None).await;
    let post = reqwest::Method::POST;
    // One new openid per code.
    let (status, reply) = app
        .control(
            post.clone(),
            "/codes/batch",
            Some(json!({"openIdPrefix": "o-new-", "count": 3})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let codes: Vec<String> = serde_json::from_value(reply["codes"].clone()).unwrap();
    assert_eq!(codes.len(), 3);
    for (i, code) in codes.iter().enumerate() {
        let (status, body) = app.exchange("wxapp", "s", code).await;
        assert_eq!(status, 200);
        assert_eq!(json_of(&body)["openid"], format!("o-new-{i}"), "code {i}");
        // Single use, as any code.
        let (_, again) = app.exchange("wxapp", "s", code).await;
        assert_eq!(json_of(&again)["errcode"], 40163);
    }

    // Codes cycling over a fixed set of users; each one hands out the key its mint made
    // current, so the last code's key is the user's current one.
    let (status, reply) = app
        .control(
            post.clone(),
            "/codes/batch",
            Some(json!({"openIdPrefix": "o-ret-", "count": 5, "users": 2})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let codes: Vec<String> = serde_json::from_value(reply["codes"].clone()).unwrap();
    let mut keys = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let (_, body) = app.exchange("wxapp", "s", code).await;
        let body = json_of(&body);
        assert_eq!(body["openid"], format!("o-ret-{}", i % 2), "code {i}");
        keys.push(body["session_key"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        app.mock.current_session_key("o-ret-0").as_deref(),
        Some(keys[4].as_str())
    );
    assert_eq!(
        app.mock.current_session_key("o-ret-1").as_deref(),
        Some(keys[3].as_str())
    );

    // Refusals name the problem, and mint nothing.
    let long = "o".repeat(127);
    for body in [
        json!({"openIdPrefix": "o-", "count": 0}),
        json!({"openIdPrefix": "o-", "count": wxlogin_wechat_mock::MAX_BATCH + 1}),
        json!({"openIdPrefix": "o-", "count": 2, "users": 0}),
        json!({"openIdPrefix": "o-", "count": 2, "users": 3}),
        json!({"openIdPrefix": long, "count": 11}),
        json!({"openIdPrefix": "o-", "count": -1}),
        json!({"count": 1}),
        json!({"openIdPrefix": "o-", "count": 1, "extra": 1}),
    ] {
        let (status, err) = app
            .control(post.clone(), "/codes/batch", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], "bad_request", "{body}");
    }
    assert_eq!(app.mock.current_session_key(&format!("{long}0")), None);
}

#[tokio::test]
async fn phone_codes_in_batches() {
    let app = start(None).await;
    let post = reqwest::Method::POST;
    let token = app.access_token().await;
    let (status, reply) = app
        .control(
            post.clone(),
            "/phone-codes/batch",
            Some(json!({
                "openIdPrefix": "o-", "count": 4, "users": 2,
                "phoneNumber": "+85261234567", "purePhoneNumber": "61234567", "countryCode": 852,
            })),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let codes: Vec<String> = serde_json::from_value(reply["codes"].clone()).unwrap();
    assert_eq!(codes.len(), 4);
    for code in &codes {
        let info = app.phone_number(&token, code).await["phone_info"].clone();
        assert_eq!(info["phoneNumber"], "+85261234567");
        assert_eq!(info["purePhoneNumber"], "61234567");
        assert_eq!(info["countryCode"], 852);
        // Single use.
        assert_eq!(app.phone_number(&token, code).await["errcode"], 40029);
    }
    for body in [
        json!({"openIdPrefix": "o-", "count": 1}),
        json!({"openIdPrefix": "o-", "count": 1, "phoneNumber": "call me"}),
        json!({"openIdPrefix": "o-", "count": 0, "phoneNumber": "13800138000"}),
        json!({"openIdPrefix": "", "count": 1, "users": 2, "phoneNumber": "13800138000"}),
        json!({"openIdPrefix": "o-", "count": 1, "phoneNumber": "13800138000", "countryCode": "+86"}),
    ] {
        let (status, err) = app
            .control(post.clone(), "/phone-codes/batch", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], "bad_request", "{body}");
    }
}
