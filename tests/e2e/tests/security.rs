//! Security invariants, end to end (docs/security.md names them): after every flow a client
//! can run, no secret a client or WeChat handed the server is anywhere in the database; and
//! every decryption failure past the length checks is answered byte for byte alike, so the
//! answer is no padding oracle; and a token in the URL authenticates nothing. Runs with either
//! WeChat adapter and either store.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;
use wxlogin_e2e::*;
use wxlogin_wechat_mock::{CountryCode, Phone};

async fn send(req: reqwest::RequestBuilder) -> Response {
    req.send().await.expect("the request is answered")
}

async fn login_v1(app: &TestApp, code: &str) -> Value {
    let resp = send(
        app.client
            .post(format!("{}/api/v1/login", app.url))
            .json(&json!({ "code": code })),
    )
    .await;
    expect_status(resp, StatusCode::OK).await
}

/// Every cell of every table, each as bytes, labelled `table.column`.
async fn every_cell(db_url: &str) -> Vec<(String, Vec<u8>)> {
    let mut cells = Vec::new();
    match store_under_test() {
        StoreUnderTest::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db_url)
                .await
                .expect("open SQLite");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            )
            .fetch_all(&pool)
            .await
            .expect("list tables");
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(&pool)
                        .await
                        .expect("list columns");
                for column in columns {
                    // CAST AS BLOB gives text's bytes, a blob as is, a number as its text.
                    // The names come from the catalog, quoted as identifiers.
                    let sql = format!(
                        "SELECT CAST({} AS BLOB) FROM {}",
                        ident(&column),
                        ident(&table)
                    );
                    for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&pool)
                        .await
                        .expect("read")
                    {
                        let v: Option<Vec<u8>> = row.try_get(0).expect("a blob");
                        cells.push((format!("{table}.{column}"), v.unwrap_or_default()));
                    }
                }
            }
            pool.close().await;
        }
        StoreUnderTest::Postgres => {
            let pool = sqlx::PgPool::connect(db_url).await.expect("open Postgres");
            let columns: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, \
                        c.data_type::text \
                 FROM information_schema.columns c \
                 JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE t.table_type = 'BASE TABLE' \
                   AND c.table_schema NOT IN ('pg_catalog', 'information_schema') \
                 ORDER BY 1, 2, 3",
            )
            .fetch_all(&pool)
            .await
            .expect("list columns");
            assert!(!columns.is_empty(), "no tables found");
            for (schema, table, column, data_type) in columns {
                let bytea = data_type == "bytea";
                let from = format!("{}.{}", ident(&schema), ident(&table));
                let sql = if bytea {
                    format!("SELECT {} FROM {from}", ident(&column))
                } else {
                    format!("SELECT {}::text FROM {from}", ident(&column))
                };
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .expect("read")
                {
                    let v: Option<Vec<u8>> = if bytea {
                        row.try_get(0).expect("bytea")
                    } else {
                        row.try_get::<Option<String>, _>(0)
                            .expect("text")
                            .map(String::into_bytes)
                    };
                    cells.push((format!("{table}.{column}"), v.unwrap_or_default()));
                }
            }
            pool.close().await;
        }
    }
    cells
}

/// A name from the catalog as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The forms a secret could be stored in: its text, and for a token the random bytes behind
/// it (raw, and as hex text).
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.as_bytes().to_vec()];
    if let Some(body) = secret.strip_prefix("wxl_") {
        forms.push(body.as_bytes().to_vec());
        if let Ok(raw) = URL_SAFE_NO_PAD.decode(body) {
            forms.push(hex(&raw).into_bytes());
            forms.push(raw);
        }
    }
    forms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_or_code_is_stored_anywhere_after_every_flow() {
    let app = spawn_app().await;
    let mut tokens: Vec<String> = Vec::new();
    let mut codes: Vec<String> = Vec::new();

    // Login over /api/v1.
    let code = app.wx_login("o-vault");
    let body = login_v1(&app, &code).await;
    codes.push(code);
    let token = token_of(&body);
    tokens.push(token.clone());

    // Plain profile fields.
    expect_status(
        send(
            app.client
                .patch(format!("{}/api/v1/me/profile", app.url))
                .bearer_auth(&token)
                .json(&json!({"nickName": "Vault", "avatarUrl": "https://example.com/v.png"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // An encrypted profile, then one encrypted after a fresh wx.login, with its code.
    let encrypted = |body: Value| {
        app.client
            .post(format!("{}/api/v1/me/profile/encrypted", app.url))
            .bearer_auth(&token)
            .json(&body)
    };
    let payload = app.encrypt("o-vault", &wechat_user_info("Encrypted"));
    expect_status(
        send(encrypted(
            json!({"encryptedData": payload.encrypted_data, "iv": payload.iv}),
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let fresh = app.wx_login("o-vault");
    let payload = app.encrypt("o-vault", &wechat_user_info("Fresh"));
    expect_status(
        send(encrypted(json!({
            "encryptedData": payload.encrypted_data, "iv": payload.iv, "code": fresh
        })))
        .await,
        StatusCode::OK,
    )
    .await;
    codes.push(fresh);

    // A phone code.
    let phone_code = app.mock.mint_phone_code(
        "o-vault",
        Phone::new("+86 13800138000", CountryCode::Number(86)),
    );
    let body = expect_status(
        send(
            app.client
                .post(format!("{}/api/v1/me/phone", app.url))
                .bearer_auth(&token)
                .json(&json!({ "code": phone_code })),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["phoneNumber"], "+86 13800138000");
    codes.push(phone_code);

    // The classic endpoints: /onLogin and /updateUserInfo with its token field.
    let code = app.wx_login("o-vault");
    let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
    codes.push(code);
    let classic = token_of(&body);
    tokens.push(classic.clone());
    let payload = app.encrypt("o-vault", &wechat_user_info("Classic"));
    expect_status(
        app.send_profile(&payload, &classic, &[]).await,
        StatusCode::OK,
    )
    .await;

    // A refresh, then a logout of the new token.
    let body = expect_status(
        send(
            app.client
                .post(format!("{}/api/v1/session/refresh", app.url))
                .bearer_auth(&token),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let refreshed = token_of(&body);
    tokens.push(refreshed.clone());
    let resp = send(
        app.client
            .delete(format!("{}/api/v1/session", app.url))
            .bearer_auth(&refreshed),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Spent and unknown codes and tokens are refused, not stored either.
    let replay = codes[0].clone();
    let resp = send(
        app.client
            .post(format!("{}/api/v1/login", app.url))
            .json(&json!({ "code": replay })),
    )
    .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());

    let cells = every_cell(&app.db.url()).await;
    let tables: std::collections::BTreeSet<&str> = cells
        .iter()
        .map(|(label, _)| label.split('.').next().unwrap_or_default())
        .collect();
    // The scan does read the data: what must be stored is found.
    let found = |needle: &str| cells.iter().any(|(_, v)| contains(v, needle.as_bytes()));
    assert!(found("o-vault"), "the openid is stored; tables {tables:?}");
    assert!(found("+86 13800138000"), "the phone number is stored");
    assert!(found("Classic"), "the latest profile is stored");
    // The session key is stored (it decrypts later), as text or bytes: so a secret in either
    // form would be seen.
    let key = app.mock.current_session_key("o-vault").expect("logged in");
    let key_raw = STANDARD.decode(&key).expect("base64");
    assert!(
        cells
            .iter()
            .any(|(_, v)| contains(v, key.as_bytes()) || contains(v, &key_raw)),
        "the session key is stored"
    );

    let mut secrets: Vec<(&str, String)> = vec![("the app secret", APP_SECRET.to_owned())];
    secrets.extend(tokens.iter().map(|t| ("a bearer token", t.clone())));
    secrets.extend(codes.iter().map(|c| ("a code", c.clone())));
    for (what, secret) in &secrets {
        for form in forms(secret) {
            for (label, value) in &cells {
                assert!(
                    !contains(value, &form),
                    "{what} ({secret}) is stored in {label}"
                );
            }
        }
    }
}

/// Everything of an answer but its request id and date.
async fn comparable(resp: Response) -> (StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let status = resp.status();
    let mut headers: Vec<(String, Vec<u8>)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let body = resp.bytes().await.expect("read the body").to_vec();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decrypt_failure_past_the_length_checks_is_answered_byte_for_byte_alike() {
    let app = spawn_app_with(|s| {
        s.limits.decrypt_failures_per_minute = Some(1000);
    })
    .await;
    let token = token_of(&app.login_ok("o-oracle").await);
    let key = app.mock.current_session_key("o-oracle").expect("logged in");
    let iv = [7u8; 16];
    let iv_b64 = STANDARD.encode(iv);

    // A plaintext of a whole number of blocks, so its ciphertext ends in a block of padding
    // only; without that block, the correct key finds '}' where the padding should be.
    let mut info = wechat_user_info("Oracle");
    info["openId"] = "o-oracle".into();
    info["watermark"] = json!({"appid": APP_ID, "timestamp": 1_700_000_000});
    let mut text = info.to_string();
    while !text.len().is_multiple_of(16) {
        info["nickName"] = format!("{}x", info["nickName"].as_str().unwrap()).into();
        text = info.to_string();
    }
    let whole = STANDARD
        .decode(wxlogin_crypto::encrypt_user_data(&key, &iv, text.as_bytes()).unwrap())
        .unwrap();
    let bad_padding = STANDARD.encode(&whole[..whole.len() - 16]);

    let wrong_key = wxlogin_crypto::encrypt_user_data(
        &STANDARD.encode([0x42u8; 16]),
        &iv,
        info.to_string().as_bytes(),
    )
    .unwrap();
    let garbage = STANDARD.encode([0xA5u8; 64]);
    let not_json =
        wxlogin_crypto::encrypt_user_data(&key, &iv, b"this is not JSON at all").unwrap();
    let mut foreign = wechat_user_info("Foreign");
    foreign["watermark"] = json!({"appid": "wxforeign0123456789", "timestamp": 1_700_000_000});
    let foreign = app.encrypt("o-oracle", &foreign);

    let cases: Vec<(&str, String, String)> = vec![
        ("wrong key", wrong_key, iv_b64.clone()),
        ("bad padding", bad_padding, iv_b64.clone()),
        ("garbage of valid length", garbage, iv_b64.clone()),
        ("not JSON", not_json, iv_b64.clone()),
        ("foreign watermark", foreign.encrypted_data, foreign.iv),
    ];

    for endpoint in ["/updateUserInfo", "/api/v1/me/profile/encrypted"] {
        let mut first: Option<(&str, _)> = None;
        for (case, data, iv) in &cases {
            let resp = if endpoint == "/updateUserInfo" {
                app.update_user_info(&[("encryptedData", data), ("iv", iv), ("token", &token)])
                    .await
            } else {
                send(
                    app.client
                        .post(format!("{}{endpoint}", app.url))
                        .bearer_auth(&token)
                        .json(&json!({"encryptedData": data, "iv": iv})),
                )
                .await
            };
            let answer = comparable(resp).await;
            assert_eq!(
                answer.0,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{endpoint}, {case}: {}",
                String::from_utf8_lossy(&answer.2)
            );
            let body: Value = serde_json::from_slice(&answer.2).expect("JSON");
            assert_eq!(body["error"], "decrypt_failed", "{endpoint}, {case}");
            match &first {
                None => first = Some((case, answer)),
                Some((first_case, expected)) => assert_eq!(
                    &answer, expected,
                    "{endpoint}: {case} is answered unlike {first_case}"
                ),
            }
        }
    }

    // The session still works: the failures changed nothing.
    let payload = app.encrypt("o-oracle", &wechat_user_info("After"));
    let body = expect_status(
        app.send_profile(&payload, &token, &[]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user"]["nickName"], "After");
}

/// A token is taken from the `Authorization` header (and, for `/updateUserInfo`, its body
/// field), never from the URL: a token in the query string authenticates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_is_never_accepted() {
    let app = spawn_app().await;
    let token = token_of(&app.login_ok("o-url").await);
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/me"),
        (reqwest::Method::POST, "/api/v1/session/refresh"),
        (reqwest::Method::DELETE, "/api/v1/session"),
    ] {
        let resp = send(
            app.client
                .request(method.clone(), format!("{}{path}?token={token}", app.url))
                .query(&[("access_token", &token)]),
        )
        .await;
        expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let payload = app.encrypt("o-url", &wechat_user_info("Url"));
    let resp = send(
        app.client
            .post(format!("{}/updateUserInfo?token={token}", app.url))
            .form(&[
                ("encryptedData", payload.encrypted_data.as_str()),
                ("iv", payload.iv.as_str()),
            ]),
    )
    .await;
    expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // The token itself still works, from the header.
    let resp = send(
        app.client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth(&token),
    )
    .await;
    expect_status(resp, StatusCode::OK).await;
}
