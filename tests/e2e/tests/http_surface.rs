//! The HTTP surface around the flows: health and readiness, the OpenAPI document and Swagger
//! UI, JSON errors for unknown paths and content types, and the body limit with and without
//! `Content-Length`. Nothing here depends on the WeChat adapter, so the in-process pass does
//! not select this target.

use reqwest::StatusCode;
use wxlogin_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_openapi_and_docs_are_served() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.url)).send();

    let health = expect_status(get("/healthz").await.expect("GET"), StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = expect_status(get("/readyz").await.expect("GET"), StatusCode::OK).await;
    assert_eq!(ready["status"], "ok");

    let spec = expect_status(get("/openapi.json").await.expect("GET"), StatusCode::OK).await;
    assert!(
        spec["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{spec}"
    );
    let on_login = &spec["paths"]["/onLogin"]["post"];
    for status in ["200", "400", "403", "413", "415", "429", "502", "503"] {
        assert!(
            on_login["responses"][status].is_object(),
            "/onLogin lacks response {status}: {on_login}"
        );
    }
    let content = on_login["requestBody"]["content"]
        .as_object()
        .expect("request body content");
    assert!(
        content.contains_key("application/x-www-form-urlencoded"),
        "{content:?}"
    );
    assert!(
        content.keys().any(|k| k.starts_with("application/json")),
        "{content:?}"
    );
    let update = &spec["paths"]["/updateUserInfo"]["post"];
    for status in ["200", "400", "401", "422", "503"] {
        assert!(
            update["responses"][status].is_object(),
            "/updateUserInfo lacks response {status}: {update}"
        );
    }

    let docs = get("/docs").await.expect("GET /docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let content_type = docs
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = docs.text().await.expect("body");
    assert!(
        html.to_lowercase().contains("swagger"),
        "not Swagger UI: {html:.200}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_content_types_are_json_errors() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.url)).send();

    expect_error(
        get("/no/such/path").await.expect("GET"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "text/plain")
        .body("code=abc")
        .send()
        .await
        .expect("POST");
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_with_or_without_content_length() {
    let app = spawn_app().await;

    // A body above the limit (64 KiB by default), with Content-Length...
    let big = "a".repeat(80 * 1024);
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .form(&[("code", big.as_str())])
        .send()
        .await
        .expect("POST");
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // ...and chunked, without one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = std::iter::once(b"code=".to_vec())
        .chain((0..10).map(|_| vec![b'a'; 8 * 1024]))
        .map(Ok)
        .collect();
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST (chunked)");
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // A chunked body under the limit is read normally (and the code is just unknown).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"code=".to_vec()), Ok(b"unknownCode123".to_vec())];
    let resp = app
        .client
        .post(format!("{}/onLogin", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST (chunked)");
    expect_error(resp, StatusCode::BAD_REQUEST, "invalid_code").await;
}
