//! The process's Prometheus metrics (the `prometheus` crate, text exposition only): one
//! registry, the instruments the server records, and [`render`] for `GET /metrics`. The domain
//! never sees this: WeChat and store metrics are recorded by the decorators of [`crate::metered`]
//! around the real adapters, request metrics by the HTTP middleware.
//!
//! Labels have bounded values only (operation ids, status codes, API names, outcomes): never a
//! path with an id in it, a user or a token.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from a cached read to a slow WeChat call.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    wechat_calls: IntCounterVec,
    wechat_seconds: HistogramVec,
    store_seconds: HistogramVec,
    limiter_rejections: IntCounterVec,
    access_token_refreshes: IntCounterVec,
    active_sessions: IntGauge,
}

// The names and labels are constants: building them cannot fail, and a failure here would be
// a bug caught by the first test that scrapes.
#[allow(clippy::expect_used)]
static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
        registry
            .register(Box::new(c.clone()))
            .expect("registered once");
        c
    };
    let histogram = |name: &str, help: &str, labels: &[&str]| {
        let h = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
            labels,
        )
        .expect("valid histogram");
        registry
            .register(Box::new(h.clone()))
            .expect("registered once");
        h
    };
    let requests = counter(
        "wxlogin_http_requests_total",
        "HTTP requests answered, by operation (OpenAPI operation id) and status.",
        &["operation", "status"],
    );
    let request_seconds = histogram(
        "wxlogin_http_request_duration_seconds",
        "Time to answer an HTTP request, by operation.",
        &["operation"],
    );
    let wechat_calls = counter(
        "wxlogin_wechat_calls_total",
        "Calls to WeChat's server API, by API and outcome (ok or the error kind).",
        &["api", "outcome"],
    );
    let wechat_seconds = histogram(
        "wxlogin_wechat_call_duration_seconds",
        "Time of a call to WeChat's server API, by API.",
        &["api"],
    );
    let store_seconds = histogram(
        "wxlogin_store_operation_duration_seconds",
        "Time of a store operation, by operation and outcome.",
        &["operation", "outcome"],
    );
    let limiter_rejections = counter(
        "wxlogin_rate_limit_rejections_total",
        "Requests refused with 429 rate_limited by our own limiter, by reason.",
        &["reason"],
    );
    let access_token_refreshes = counter(
        "wxlogin_access_token_refreshes_total",
        "Access tokens fetched from WeChat (cgi-bin/stable_token), by outcome.",
        &["outcome"],
    );
    let active_sessions = IntGauge::new(
        "wxlogin_active_sessions",
        "Sessions a token would work with now (every app), refreshed periodically.",
    )
    .expect("valid gauge");
    registry
        .register(Box::new(active_sessions.clone()))
        .expect("registered once");
    // A vector shows in a scrape only once it has a child: start these at zero, so the series
    // exist (and alerts on them work) before the first rejection or refresh.
    limiter_rejections.with_label_values(&["failed_attempts"]);
    limiter_rejections.with_label_values(&["decrypt_failures"]);
    access_token_refreshes.with_label_values(&["ok"]);
    Metrics {
        registry,
        requests,
        request_seconds,
        wechat_calls,
        wechat_seconds,
        store_seconds,
        limiter_rejections,
        access_token_refreshes,
        active_sessions,
    }
});

/// Every metric in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    TextEncoder::new()
        .encode_to_string(&METRICS.registry.gather())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode the metrics");
            String::new()
        })
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One HTTP request answered.
pub fn request(operation: &str, status: u16, took: Duration) {
    let m = &*METRICS;
    m.requests
        .with_label_values(&[operation, status.to_string().as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[operation])
        .observe(took.as_secs_f64());
}

/// One call to WeChat's API `api` ended with `outcome` (`ok` or an error kind).
pub fn wechat_call(api: &str, outcome: &str, took: Duration) {
    let m = &*METRICS;
    m.wechat_calls.with_label_values(&[api, outcome]).inc();
    m.wechat_seconds
        .with_label_values(&[api])
        .observe(took.as_secs_f64());
}

/// One store operation ended (`outcome`: `ok` or an error kind).
pub fn store_operation(operation: &str, outcome: &str, took: Duration) {
    METRICS
        .store_seconds
        .with_label_values(&[operation, outcome])
        .observe(took.as_secs_f64());
}

/// Our limiter refused a request with 429 `rate_limited`; `reason` names the budget spent
/// (e.g. `failed_attempts`). For the rate-limit middleware to call.
pub fn limiter_rejected(reason: &str) {
    METRICS
        .limiter_rejections
        .with_label_values(&[reason])
        .inc();
}

/// An access token was fetched from WeChat (`outcome`: `ok` or an error kind).
pub fn access_token_refresh(outcome: &str) {
    METRICS
        .access_token_refreshes
        .with_label_values(&[outcome])
        .inc();
}

/// The number of active sessions, as the store last counted them.
pub fn set_active_sessions(count: u64) {
    METRICS
        .active_sessions
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}
