//! WeChat slow or gone, as only a network between the server and WeChat can show it: a stall
//! past the HTTP client's timeout and a closed port answer 503 `wechat_unavailable`, create
//! nothing, and leave readiness green. The server reaches the mock over HTTP here whatever
//! `WXLOGIN_TEST_WECHAT` says (the in-process mock has no network to fail, and nothing bounds an
//! in-process call but the HTTP client's timeout yet), so the in-process pass does not select
//! this target.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wxlogin_e2e::*;
use wxlogin_wechat_mock::{Api, Failure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_past_the_timeout_answers_503_and_creates_nothing() {
    let app = spawn_app_on(WeChatUnderTest::Http, |s| s.wechat.timeout_ms = Some(500)).await;

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_wechat_answers_503_and_readiness_stays_green() {
    let app = spawn_app_on(WeChatUnderTest::Http, |_| {}).await;

    // WeChat down: a sibling server on the same database pointed at a closed port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let down = app
        .spawn_sibling(|s| s.wechat.base_url = Some(format!("http://{closed}")))
        .await;
    let code = app.wx_login("o-down");
    let attempts = app.exchanges();
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
    assert_eq!(app.exchanges(), attempts, "the mock was never reached");
    // The code never reached WeChat, so it still works, and no user was created.
    let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    assert_login_body(&body, "o-down");
    assert_eq!(body["isNewUser"], true);
}
