//! WeChat failing: every failure the mock can be told to give (busy, rate limit, risky user,
//! HTTP 500, garbage) maps to its documented error, is never retried, and creates nothing.
//! Runs with either WeChat adapter; failures only a network can produce are in
//! `wechat_network.rs`.

use reqwest::StatusCode;
use wxlogin_e2e::*;
use wxlogin_wechat_mock::{Api, Failure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_wechat_failures_map_to_errors_and_create_nothing() {
    let app = spawn_app().await;

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
        let before = app.exchanges();
        expect_error(app.on_login(&code).await, status, error).await;
        assert_eq!(
            app.exchanges(),
            before + 1,
            "{failure:?}: an exchange is never retried"
        );
        // WeChat refused before looking at the code, so it still works, and the failed
        // attempt left no user behind.
        let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
        assert_login_body(&body, &open_id);
        assert_eq!(body["isNewUser"], true, "{failure:?} created a user");
    }
}
