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

#[tokio::test]
async fn the_openapi_document_describes_every_operation_field_and_error() {
    let settings = Settings::default();
    let app = build_app(
        Arc::new(new_service(
            MockUserStore::new(),
            MockWeChat::new(app_id(), None),
            &settings,
        )),
        None::<Route>,
        &settings,
    );
    let cli = TestClient::new(app);
    let resp = cli.get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    let doc = json_of(resp).await;

    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/onLogin",
        "/updateUserInfo",
        "/healthz",
        "/readyz",
        "/api/v1/me",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has a summary"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} is described"
                );
            }
        }
    }
    let login = &doc["paths"]["/onLogin"]["post"];
    for status in ["200", "400", "403", "429", "502", "503"] {
        assert!(
            login["responses"].get(status).is_some(),
            "/onLogin documents {status}"
        );
    }
    let content = login["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/x-www-form-urlencoded"));
    assert!(content.keys().any(|k| k.starts_with("application/json")));

    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, prop) in schema["properties"].as_object().unwrap() {
            let described = prop["description"].as_str().is_some_and(|d| !d.is_empty())
                || prop["allOf"].is_array()
                || prop["$ref"].is_string();
            assert!(described, "{name}.{field} is described");
        }
    }
    assert!(cli.get("/docs").send().await.0.status().is_success());
}

/// `docs/openapi.json` is the API as it is: this test fails when the code changed the document
/// and the file was not regenerated (`cargo xtask openapi` rewrites it).
#[tokio::test]
async fn the_checked_in_openapi_document_is_current() {
    let settings = Settings::default();
    let spec = wxlogin_server::wiring::openapi(Arc::new(new_service(
        MockUserStore::new(),
        MockWeChat::new(
            AppId::parse(wxlogin_server::config::MOCK_APP_ID).unwrap(),
            None,
        ),
        &settings,
    )))
    .spec();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("WXLOGIN_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{spec}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == spec.trim_end(),
        "docs/openapi.json is out of date: run `cargo xtask openapi`"
    );
}
