//! The limits of DESIGN §8 over real HTTP: only failures spend an address's budget, an empty
//! budget refuses unauthenticated attempts with 429 `rate_limited` and `Retry-After` before
//! WeChat is called, valid tokens are never refused, `X-Forwarded-For` counts only from a
//! trusted proxy, a token's failed decryptions are capped, and the cap on concurrent WeChat
//! calls answers 503 at once. Runs with either WeChat adapter and either store.
//!
//! No timing assertions: budgets refill at 1 per second here, so the bounds below allow for
//! the refills that the measured elapsed time permits.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Response, StatusCode};
use wxlogin_e2e::*;
use wxlogin_wechat_mock::{Api, Failure};

/// `Retry-After` of a 429, in seconds (asserted present and positive).
fn retry_after(resp: &Response) -> u64 {
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a 429 carries Retry-After in seconds");
    assert!(secs >= 1, "Retry-After: {secs}");
    secs
}

async fn expect_rate_limited(resp: Response) {
    retry_after(&resp);
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// Refills that `since` allows at one per second, plus one for rounding.
fn refills(since: Instant) -> u64 {
    since.elapsed().as_secs() + 1
}

async fn bad_code(app: &TestApp, forwarded_for: Option<&str>) -> Response {
    let mut req = app
        .client
        .post(format!("{}/onLogin", app.url))
        .form(&[("code", "never-minted-code")]);
    if let Some(xff) = forwarded_for {
        req = req.header("X-Forwarded-For", xff);
    }
    req.send().await.expect("POST /onLogin")
}

/// Sends bad codes until the budget refuses one; returns how many were answered 400 first.
async fn exhaust(app: &TestApp, forwarded_for: Option<&str>, at_most: usize) -> usize {
    for sent in 0..at_most {
        let resp = bad_code(app, forwarded_for).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            expect_rate_limited(resp).await;
            return sent;
        }
        expect_error(resp, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    panic!("{at_most} bad codes and never a 429");
}

async fn me(app: &TestApp, token: &str) -> Response {
    app.client
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/me")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_failures_spend_and_an_empty_budget_stops_code_exchanges() {
    let burst = 5;
    let app = spawn_app_with(|s| {
        s.limits.failed_burst = Some(burst);
        s.limits.failed_per_second = Some(1);
    })
    .await;
    let started = Instant::now();
    let signed_in = app.login_ok("o-nat-first").await;
    let token = token_of(&signed_in);

    // A few failures, then far more successful logins than the burst from the same address
    // (a carrier NAT): none is refused, none spends.
    for _ in 0..burst - 2 {
        expect_error(
            bad_code(&app, None).await,
            StatusCode::BAD_REQUEST,
            "invalid_code",
        )
        .await;
    }
    for i in 0..40 {
        app.login_ok(&format!("o-nat-{i}")).await;
    }
    // So the failures still left are the burst's rest (plus refills).
    let answered = exhaust(&app, None, 200).await;
    let allowed = usize::try_from(refills(started)).unwrap_or(usize::MAX);
    assert!(
        (2..=2 + allowed).contains(&answered),
        "{answered} failures after the successes"
    );

    // Once empty: the attempts are refused before WeChat is called.
    let before = app.exchanges();
    let refusing = Instant::now();
    let mut refused = 0u64;
    for _ in 0..200 {
        let resp = bad_code(&app, None).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            expect_rate_limited(resp).await;
            refused += 1;
        } else {
            expect_error(resp, StatusCode::BAD_REQUEST, "invalid_code").await;
        }
    }
    let reached = app.exchanges() - before;
    assert_eq!(reached + refused, 200);
    assert!(
        reached <= refills(refusing),
        "{reached} of 200 refused attempts reached WeChat"
    );

    // A token sent along with a code exchange does not make it authenticated.
    let resp = app
        .client
        .post(format!("{}/api/v1/login", app.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"code": "never-minted-code"}))
        .send()
        .await
        .expect("POST /api/v1/login");
    expect_rate_limited(resp).await;
    // A valid token is never refused, however empty the address's budget.
    for _ in 0..20 {
        expect_status(me(&app, &token).await, StatusCode::OK).await;
    }
    // An unknown token is: its failure spends, and nothing is left.
    let forged = format!("wxl_{}", "A".repeat(43));
    let mut unknown_refused = false;
    for _ in 0..10 {
        let resp = me(&app, &forged).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            expect_rate_limited(resp).await;
            unknown_refused = true;
        } else {
            expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
    }
    assert!(
        unknown_refused,
        "unknown tokens are refused once the budget is empty"
    );
    // Operator logins too (wrong credentials are failures; none configured here).
    let resp = app
        .client
        .get(format!("{}/admin/v1/stats", app.url))
        .basic_auth("ops", Some("guess"))
        .send()
        .await
        .expect("GET /admin/v1/stats");
    expect_rate_limited(resp).await;
    // Requests that are no attempt at all are not refused.
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK);
    // The refusals are counted on /metrics.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    let refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("wxlogin_rate_limit_rejections_total{reason=\"failed_attempts\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the rejection counter is exported");
    assert!(refused >= 3.0, "{refused} rejections counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let adjust = |trusted: bool| {
        move |s: &mut wxlogin_server::Settings| {
            s.limits.failed_burst = Some(3);
            s.limits.failed_per_second = Some(1);
            if trusted {
                s.server.trusted_proxies =
                    wxlogin_server::config::TrustedProxies::List(vec!["127.0.0.0/8".into()]);
            }
        }
    };
    // Behind a trusted proxy (loopback here): each forwarded client has its own budget.
    let app = spawn_app_with(adjust(true)).await;
    exhaust(&app, Some("198.51.100.1"), 50).await;
    // What the client itself prepends does not count: the proxy's own hop does.
    expect_rate_limited(bad_code(&app, Some("203.0.113.50, 198.51.100.1")).await).await;
    expect_error(
        bad_code(&app, Some("198.51.100.2")).await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;

    // From a peer that is not trusted, the header is ignored: one budget for every value.
    let app = spawn_app_with(adjust(false)).await;
    exhaust(&app, Some("198.51.100.1"), 50).await;
    expect_rate_limited(bad_code(&app, Some("198.51.100.2")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_has_a_budget_of_failed_decryptions() {
    let app = spawn_app_with(|s| s.limits.decrypt_failures_per_minute = Some(3)).await;
    let token = token_of(&app.login_ok("o-decrypt").await);
    let other = token_of(&app.login_ok("o-decrypt-other").await);
    let send = |token: String| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/api/v1/me/profile/encrypted", app.url))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "encryptedData": STANDARD.encode([7u8; 32]),
                    "iv": STANDARD.encode([1u8; 16]),
                }))
                .send()
                .await
                .expect("POST /api/v1/me/profile/encrypted")
        }
    };
    for _ in 0..3 {
        expect_error(
            send(token.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "decrypt_failed",
        )
        .await;
    }
    let resp = send(token.clone()).await;
    // A refill takes 20 s at 3 per minute.
    assert!(retry_after(&resp) <= 20);
    expect_rate_limited(resp).await;
    // The token itself still works, and another token has its own budget.
    expect_status(me(&app, &token).await, StatusCode::OK).await;
    expect_error(
        send(other).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decrypt_failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_wechat_cap_a_login_is_503_at_once() {
    let app = spawn_app_with(|s| s.limits.wechat_concurrency = Some(1)).await;
    app.mock.fail_next(
        Api::Jscode2session,
        Failure::Slow(Duration::from_secs(2)),
        1,
    );
    let slow_code = app.wx_login("o-slow");
    let slow = {
        let client = app.client.clone();
        let url = format!("{}/onLogin", app.url);
        tokio::spawn(async move {
            client
                .post(url)
                .form(&[("code", slow_code.as_str())])
                .send()
                .await
                .expect("POST /onLogin")
        })
    };
    // Wait until the slow exchange holds the only permit.
    while app.exchanges() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let code = app.wx_login("o-capped");
    let resp = app.on_login(&code).await;
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, "wechat_unavailable").await;
    // The refused login never reached WeChat, and its code still works afterwards.
    assert_eq!(app.exchanges(), 1);
    expect_status(slow.await.expect("the slow login"), StatusCode::OK).await;
    expect_status(app.on_login(&code).await, StatusCode::OK).await;
}
