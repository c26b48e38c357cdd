//! Handler tests through `poem::test::TestClient`: the real app (routes, error mapping) over a
//! mockall store, for failures that real adapters cannot be made to produce on demand.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::sync::Arc;

use poem::Route;
use poem::test::TestClient;
use serde_json::Value;
use wxlogin_domain::{AppId, MockUserStore, StoreError};
use wxlogin_server::Settings;
use wxlogin_server::wiring::{build_app, new_service};
use wxlogin_wechat_mock::MockWeChat;

fn app_id() -> AppId {
    AppId::parse("wxtest").unwrap()
}

async fn json_of(resp: poem::test::TestResponse) -> Value {
    serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_database_outage_answers_503_database_unavailable() {
    let mut store = MockUserStore::new();
    store
        .expect_login()
        .returning(|_| Box::pin(async { Err(StoreError::Unavailable("pool timed out".into())) }));
    store
        .expect_ping()
        .returning(|| Box::pin(async { Err(StoreError::Unavailable("refused".into())) }));
    let mock = MockWeChat::new(app_id(), None);
    let code = mock.mint_code("o-outage", None);
    let settings = Settings::default();
    let app = build_app(
        Arc::new(new_service(store, mock, &settings)),
        None::<Route>,
        &settings,
    );
    let cli = TestClient::new(app);

    let resp = cli
        .post("/onLogin")
        .content_type("application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    let body = json_of(resp).await;
    assert_eq!(body["status"], 503);
    assert_eq!(body["error"], "database_unavailable");
    assert!(!body["message"].as_str().unwrap().contains("pool timed out"));

    let resp = cli.get("/readyz").send().await;
    resp.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(resp).await["error"], "database_unavailable");
    // Liveness does not depend on the database.
    cli.get("/healthz").send().await.assert_status_is_ok();
}
