//! The mock over real HTTP on 127.0.0.1:0: WeChat's endpoint and the control API.

// Test helpers outside #[test] functions may unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use serde_json::{Value, json};
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
        client: reqwest::Client::new(),
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
    assert_eq!(stats, json!({"calls": {"jscode2session": 7}}));
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
