//! The avatar upload: `chooseAvatar`'s temporary file sent by `wx.uploadFile` (multipart, part
//! `file`) to `POST /api/v1/me/avatar`, stored in the database and served at `/avatars/{id}`
//! with `ETag` and a year of caching; a new upload replaces the old, erasure deletes it, and
//! what is not a PNG, JPEG or WebP, too large, or unauthenticated is refused and stores
//! nothing. Runs on both stores.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use wxlogin_e2e::*;

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// The start of a WebP file (RIFF container, type WEBP).
fn webp() -> Vec<u8> {
    let mut bytes = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00".to_vec();
    bytes.extend_from_slice(&[0x10, 0x07, 0x10, 0x11, 0x11, 0x88, 0x88, 0xFE, 0x07, 0x00]);
    bytes
}

const BOUNDARY: &str = "----wxuploadfileboundary7MA4YWxkTrZu0gW";

/// A body as `wx.uploadFile` sends it: one `formData` field and the file part named `name`,
/// with the file's own name and a declared type (which the server ignores).
fn multipart(name: &str, file_name: &str, declared: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nchooseAvatar\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
         Content-Type: {declared}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: &TestApp, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/api/v1/me/avatar", app.url))
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("POST /api/v1/me/avatar")
}

async fn me(app: &TestApp, token: &str) -> serde_json::Value {
    let resp = app
        .client
        .get(format!("{}/api/v1/me", app.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/me");
    expect_status(resp, StatusCode::OK).await
}

async fn get(app: &TestApp, url: &str) -> reqwest::Response {
    app.client.get(url).send().await.expect("GET avatar")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_avatar_is_served_and_replaced() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-avatar").await);

    // The file's name and declared type say JPEG; the bytes are a PNG, and count.
    let body = expect_status(
        upload(
            &app,
            Some(&token),
            multipart("file", "tmp_1.jpg", "image/jpeg", PNG),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["status"], 200);
    assert_user_shape(&body["user"]);
    let url = body["user"]["avatarUrl"]
        .as_str()
        .expect("avatarUrl")
        .to_owned();
    let id = url
        .strip_prefix(&format!("{}/avatars/", app.url))
        .unwrap_or_else(|| panic!("{url} is not served by this server"));
    assert_eq!(id.len(), 36, "{url}");
    assert_eq!(me(&app, &token).await["user"]["avatarUrl"], url.as_str());

    let resp = get(&app, &url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(
        resp.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = resp.headers()[ETAG].to_str().expect("etag").to_owned();
    assert_eq!(etag, format!("\"{id}\""));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), PNG);

    // A client holding that copy is told it is current.
    let resp = app
        .client
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()[ETAG], etag.as_str());

    // The next upload replaces it: a new URL, and the old one is gone.
    let body = expect_status(
        upload(
            &app,
            Some(&token),
            multipart("file", "tmp_2.webp", "application/octet-stream", &webp()),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let second = body["user"]["avatarUrl"].as_str().expect("avatarUrl");
    assert_ne!(second, url);
    let resp = get(&app, second).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "image/webp");
    assert_eq!(
        resp.bytes().await.expect("body").as_ref(),
        webp().as_slice()
    );
    expect_error(get(&app, &url).await, StatusCode::NOT_FOUND, "not_found").await;

    // Erasing the account deletes the image.
    let resp = app
        .client
        .delete(format!("{}/api/v1/me", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("DELETE /api/v1/me");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_error(get(&app, second).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_store_nothing() {
    let app = spawn_app_with(|s| s.server.avatar_limit_bytes = Some(4096)).await;
    let token = token_of(&app.login_ok("o-bad-avatar").await);
    let before = me(&app, &token).await;

    // Not an image, whatever its name says.
    let err = expect_error(
        upload(
            &app,
            Some(&token),
            multipart("file", "a.png", "image/png", b"GIF89a not a png"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap_or_default().contains("PNG"),
        "{err}"
    );
    // Above the configured limit (but within what the body limit drains).
    let mut big = PNG.to_vec();
    big.resize(4097, 0);
    expect_error(
        upload(
            &app,
            Some(&token),
            multipart("file", "a.png", "image/png", &big),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // The part must be named `file`.
    expect_error(
        upload(
            &app,
            Some(&token),
            multipart("avatar", "a.png", "image/png", PNG),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // No token, or a wrong one.
    expect_error(
        upload(&app, None, multipart("file", "a.png", "image/png", PNG)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    expect_error(
        upload(
            &app,
            Some("wxl_not-a-token"),
            multipart("file", "a.png", "image/png", PNG),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // JSON is no upload.
    let resp = app
        .client
        .post(format!("{}/api/v1/me/avatar", app.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .expect("POST json");
    let err = expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("multipart/form-data"),
        "{err}"
    );

    assert_eq!(me(&app, &token).await["user"], before["user"]);
    // An id that was never uploaded, and one that is no id.
    let unknown = format!("{}/avatars/01a23abb-8ef7-706a-95a8-3e26a26db8eb", app.url);
    expect_error(
        get(&app, &unknown).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let junk = format!("{}/avatars/..%2Fetc", app.url);
    expect_error(get(&app, &junk).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatar_urls_use_the_configured_public_url() {
    let app = spawn_app_with(|s| {
        s.server.public_url = Some("https://api.example.com/wx/".into());
    })
    .await;
    let token = token_of(&app.login_ok("o-public").await);
    let body = expect_status(
        upload(
            &app,
            Some(&token),
            multipart("file", "a.png", "image/png", PNG),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let url = body["user"]["avatarUrl"].as_str().expect("avatarUrl");
    let id = url
        .strip_prefix("https://api.example.com/wx/avatars/")
        .unwrap_or_else(|| panic!("{url}"));
    // Served here under its id (the proxy in front strips `/wx`).
    let resp = get(&app, &format!("{}/avatars/{id}", app.url)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), PNG);
}
