//! Concurrent load on one server: 64 mini-program clients log in at once, then all send their
//! profiles at once. Every answer must be 200 (no `database is locked`, no 503), and the rows in
//! the database must match the 200 answers exactly: no lost write, no duplicate.

use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::Connection as _;
use wxlogin_e2e::*;

const CLIENTS: usize = 64;

/// Counts rows straight from the database the server writes to.
async fn count(db_url: &str, sql: &str) -> i64 {
    match store_under_test() {
        StoreUnderTest::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(db_url)
                .await
                .expect("open the SQLite file");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
        StoreUnderTest::Postgres => {
            let mut conn = sqlx::PgConnection::connect(db_url)
                .await
                .expect("connect to Postgres");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_at_once_lose_no_write() {
    let app = spawn_app().await;
    let open_ids: Vec<String> = (0..CLIENTS).map(|i| format!("o-load-{i}")).collect();
    let codes: Vec<String> = open_ids.iter().map(|o| app.wx_login(o)).collect();

    let logins = join_all(codes.iter().map(|code| app.on_login(code))).await;
    let mut tokens = Vec::new();
    for (resp, open_id) in logins.into_iter().zip(&open_ids) {
        let body = expect_status(resp, StatusCode::OK).await;
        assert_login_body(&body, open_id);
        assert_eq!(body["isNewUser"], true);
        tokens.push(token_of(&body));
    }

    let payloads: Vec<_> = open_ids
        .iter()
        .map(|o| app.encrypt(o, &wechat_user_info(&format!("nick {o}"))))
        .collect();
    let updates = join_all(
        payloads
            .iter()
            .zip(&tokens)
            .map(|(payload, token)| app.send_profile(payload, token, &[])),
    )
    .await;
    let mut ok = 0i64;
    for (resp, open_id) in updates.into_iter().zip(&open_ids) {
        let body = expect_status(resp, StatusCode::OK).await;
        assert_eq!(body["user"]["nickName"], format!("nick {open_id}"));
        ok += 1;
    }

    let url = app.db.url();
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM users").await,
        CLIENTS as i64
    );
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM wechat_identities").await,
        CLIENTS as i64
    );
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM sessions").await,
        CLIENTS as i64
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM users WHERE nick_name IS NOT NULL"
        )
        .await,
        ok
    );
}
