//! WeChat failing: every failure the mock can be told to give (busy, rate limit, risky user,
//! HTTP 500, garbage, JSON cut off) maps to its documented error, is never retried, and creates nothing.
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
        (Failure::Truncated, StatusCode::BAD_GATEWAY, "wechat_error"),
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

/// The service bounds every WeChat call whatever the adapter: a stalled WeChat (here the
/// in-process mock, which has no timeout of its own, or the mock's HTTP server behind a client
/// whose own timeout is longer) answers 503 once the service's bound has passed, writes
/// nothing, and leaves no exchange stuck: the same code tried again reaches WeChat again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_wechat_is_cut_off_by_the_service_bound() {
    let app = spawn_app_with(|s| s.wechat.service_timeout_ms = Some(300)).await;
    let code = app.wx_login("o-stalled");
    // Far beyond the test client's own 20 s timeout: only the service's bound can answer.
    app.mock.fail_next(
        Api::Jscode2session,
        Failure::Slow(std::time::Duration::from_secs(120)),
        1,
    );
    let before = app.exchanges();
    expect_error(
        app.on_login(&code).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "wechat_unavailable",
    )
    .await;
    assert_eq!(app.exchanges(), before + 1, "one call, never retried");

    // Nothing was written, and the stalled call left the single flight: trying again is a
    // new exchange, which signs a new user in.
    let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    assert_login_body(&body, "o-stalled");
    assert_eq!(
        body["isNewUser"], true,
        "the stalled attempt created a user"
    );
    assert_eq!(app.exchanges(), before + 2);
}
