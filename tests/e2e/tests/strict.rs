//! Strict input and the observability surface over real HTTP: wrong JSON types and duplicate
//! keys refused before any WeChat call, empty optional form fields taken as absent, the bearer
//! scheme in any case, a body token that contradicts the header, `Allow` on 405, the security
//! headers, request ids, and `/metrics` after a flow.

use reqwest::StatusCode;
use serde_json::json;
use wxlogin_e2e::*;
use wxlogin_wechat_mock::Api;

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_duplicate_keys_are_refused_before_wechat() {
    let app = spawn_app().await;
    let post = |path: &str, body: &'static str| {
        app.client
            .post(format!("{}{path}", app.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    for path in ["/onLogin", "/api/v1/login"] {
        let resp = post(path, r#"{"code": 12345}"#).await.expect("POST");
        let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("`code`"), "{path}: {body}");
        assert!(
            !message.contains("12345"),
            "the value is not echoed: {body}"
        );

        let code = app.wx_login("o-dup");
        let resp = app
            .client
            .post(format!("{}{path}", app.url))
            .header("content-type", "application/json")
            .body(format!(r#"{{"code":"{code}","code":"{code}"}}"#))
            .send()
            .await
            .expect("POST");
        let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("duplicate key `code`"),
            "{body}"
        );
    }
    assert_eq!(
        app.mock.calls(Api::Jscode2session),
        0,
        "no code reached WeChat"
    );

    // The JSON types of the other bodies come from the same schemas.
    let login = app.login_ok("o-types").await;
    let resp = app
        .client
        .patch(format!("{}/api/v1/me/profile", app.url))
        .bearer_auth(token_of(&login))
        .json(&json!({"gender": "1"}))
        .send()
        .await
        .expect("PATCH");
    let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`gender`"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_empty_form_fields_and_the_bearer_scheme() {
    let app = spawn_app().await;
    let login = app.login_ok("o-strict").await;
    let token = token_of(&login);

    // Empty optional fields, as form encoders send unset values, count as absent.
    let payload = app.encrypt("o-strict", &wechat_user_info("小明"));
    let resp = app
        .send_profile(
            &payload,
            &token,
            &[("rawData", ""), ("signature", ""), ("code", "")],
        )
        .await;
    let body = expect_status(resp, StatusCode::OK).await;
    assert_eq!(body["user"]["nickName"], "小明", "{body}");

    // A body token and a different bearer token: which one was meant?
    let other = token_of(&app.login_ok("o-other").await);
    let payload = app.encrypt("o-strict", &wechat_user_info("小红"));
    let resp = app
        .client
        .post(format!("{}/updateUserInfo", app.url))
        .header("authorization", format!("Bearer {other}"))
        .form(&[
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    let body = expect_error(resp, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("token"),
        "{body}"
    );

    // The scheme word in any case, on the classic endpoint and on /api/v1.
    let payload = app.encrypt("o-strict", &wechat_user_info("小刚"));
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = app
            .client
            .post(format!("{}/updateUserInfo", app.url))
            .header("authorization", format!("{scheme} {token}"))
            .form(&[
                ("encryptedData", payload.encrypted_data.as_str()),
                ("iv", payload.iv.as_str()),
            ])
            .send()
            .await
            .expect("POST");
        expect_status(resp, StatusCode::OK).await;
        let resp = app
            .client
            .get(format!("{}/api/v1/me", app.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .expect("GET");
        expect_status(resp, StatusCode::OK).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_security_headers_and_request_ids() {
    let app = spawn_app().await;

    let resp = app
        .client
        .get(format!("{}/onLogin", app.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(header(&resp, "allow").as_deref(), Some("POST"));
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let resp = app
        .client
        .put(format!("{}/api/v1/me", app.url))
        .send()
        .await
        .expect("PUT");
    assert_eq!(header(&resp, "allow").as_deref(), Some("DELETE, GET, HEAD"));
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    // Answers with tokens or personal data, errors included, are never cached.
    let login = app.login_ok("o-headers").await;
    let token = token_of(&login);
    let requests = [
        app.client
            .post(format!("{}/onLogin", app.url))
            .form(&[("code", app.wx_login("o-headers"))]),
        app.client
            .post(format!("{}/onLogin", app.url))
            .form(&[("code", "nope")]),
        app.client
            .post(format!("{}/updateUserInfo", app.url))
            .form(&[("iv", "x")]),
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(&token),
        app.client.get(format!("{}/api/v1/me", app.url)),
        app.client.get(format!("{}/admin/v1/stats", app.url)),
    ];
    for request in requests {
        let resp = request.send().await.expect("send");
        let what = format!("{} {}", resp.url().path(), resp.status());
        assert_eq!(
            header(&resp, "cache-control").as_deref(),
            Some("no-store"),
            "{what}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
    }
    let resp = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(header(&resp, "cache-control"), None, "probes may be cached");

    // The request id: echoed when usable, else one of ours.
    let resp = app
        .client
        .get(format!("{}/healthz", app.url))
        .header("x-request-id", "req-42.abc")
        .send()
        .await
        .expect("GET");
    assert_eq!(header(&resp, "x-request-id").as_deref(), Some("req-42.abc"));
    for bad in ["a".repeat(129), "two words".to_owned()] {
        let resp = app
            .client
            .get(format!("{}/no/such/path", app.url))
            .header("x-request-id", bad.as_str())
            .send()
            .await
            .expect("GET");
        let id = header(&resp, "x-request-id").expect("an id is generated");
        assert!(id != bad && !id.is_empty() && id.len() <= 128, "{id}");
    }
    let a = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("GET");
    let b = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("GET");
    assert_ne!(header(&a, "x-request-id"), header(&b, "x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_after_a_flow() {
    let app = spawn_app().await;
    let login = app.login_ok("o-metrics").await;
    expect_error(
        app.on_login("not-a-code").await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    let resp = app
        .client
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(token_of(&login))
        .send()
        .await
        .expect("GET");
    expect_status(resp, StatusCode::OK).await;

    let resp = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = header(&resp, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.expect("body");
    for series in [
        r#"wxlogin_http_requests_total{operation="onLogin",status="200"}"#,
        r#"wxlogin_http_requests_total{operation="onLogin",status="400"}"#,
        r#"wxlogin_http_requests_total{operation="me",status="200"}"#,
        r#"wxlogin_http_request_duration_seconds_bucket{operation="onLogin""#,
        r#"wxlogin_wechat_calls_total{api="jscode2session",outcome="ok"}"#,
        r#"wxlogin_wechat_calls_total{api="jscode2session",outcome="invalid_code"}"#,
        r#"wxlogin_wechat_call_duration_seconds_count{api="jscode2session"}"#,
        r#"wxlogin_store_operation_duration_seconds_count{operation="login",outcome="ok"}"#,
        r#"wxlogin_store_operation_duration_seconds_count{operation="find_session",outcome="ok"}"#,
        r#"wxlogin_rate_limit_rejections_total{reason="failed_attempts"}"#,
        "wxlogin_access_token_refreshes_total",
        "# TYPE wxlogin_active_sessions gauge",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    let resp = app
        .client
        .post(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("POST");
    assert_eq!(header(&resp, "allow").as_deref(), Some("GET, HEAD"));
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}
