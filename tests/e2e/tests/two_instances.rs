//! Scale-out: two stateless servers on one Postgres behave as one. A token issued by one is
//! accepted by the other, concurrent first logins of one openid spread over both create one
//! user, and a logout on one is honoured by the other within milliseconds.
//!
//! Needs a PostgreSQL server (feature `postgres`, turned on by `cargo xtask test`).

use std::collections::HashSet;
use std::future::Future;

use futures::future::join_all;
use reqwest::StatusCode;
use wxlogin_domain::AppId;
use wxlogin_e2e::*;
use wxlogin_wechat_mock::MockWeChat;

struct Pair {
    a: wxlogin_server::RunningServer,
    b: wxlogin_server::RunningServer,
    mock: MockWeChat,
    client: reqwest::Client,
    _mock_server: MockServer,
    db: TestDb,
}

async fn two_servers_on_one_postgres() -> Pair {
    let mock = MockWeChat::new(
        AppId::parse(APP_ID).expect("valid app id"),
        Some(APP_SECRET.into()),
    );
    let mock_server = MockServer::start(mock.clone()).await;
    let db = TestDb::fresh_for(StoreUnderTest::Postgres).await;
    let mut settings = http_settings(&db.url(), &mock_server.url);
    // The 200 concurrent phone requests below are about one token fetch, not about the cap on
    // concurrent WeChat calls (64 by default, beyond which calls answer 503 at once): lift it.
    settings.limits.wechat_concurrency = Some(512);
    // Entries that never age out in a test: whatever the other instance changes must reach
    // this one's session cache through its notifications, not by the entry expiring.
    settings.database.session_cache_ms = Some(3_600_000);
    let a = spawn_server(settings.clone(), &mock, wechat_under_test()).await;
    let b = spawn_server(settings, &mock, wechat_under_test()).await;
    assert_ne!(a.addr(), b.addr());
    Pair {
        a,
        b,
        mock,
        client: client(),
        _mock_server: mock_server,
        db,
    }
}

impl Pair {
    async fn login(&self, base: &str, code: &str) -> reqwest::Response {
        self.client
            .post(format!("{base}/onLogin"))
            .form(&[("code", code)])
            .send()
            .await
            .expect("POST /onLogin")
    }

    /// `base` answers `token` from its session cache: a nickname written behind the servers'
    /// backs (no notification) is not seen. Waits (a few seconds at most) for the cache to be
    /// live, which it is once its listener listens.
    async fn assert_cached(&self, base: &str, token: &str) {
        let db = sqlx::PgPool::connect(&self.db.url())
            .await
            .expect("connect to the test database");
        let user = user_id_of(&expect_status(self.me(base, token).await, StatusCode::OK).await);
        for i in 0..200 {
            let probe = format!("probe-{i}");
            sqlx::query("UPDATE users SET nick_name = $1 WHERE id = $2::uuid")
                .bind(&probe)
                .bind(&user)
                .execute(&db)
                .await
                .expect("write behind the servers' backs");
            let me = expect_status(self.me(base, token).await, StatusCode::OK).await;
            if me["user"]["nickName"] != probe.as_str() {
                db.close().await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{base} never answered {token:.8}… from its session cache");
    }

    /// Whether `base` refuses `token` as `invalid_token` (anything else but 200 fails).
    async fn refused(&self, base: &str, token: &str) -> bool {
        let resp = self.me(base, token).await;
        if resp.status() == StatusCode::OK {
            return false;
        }
        expect_error(resp, StatusCode::UNAUTHORIZED, "invalid_token").await;
        true
    }

    /// A change made through one instance is what the other answers as soon as its listener
    /// has read the notification: PostgreSQL delivers it to every listener at the commit,
    /// and the writing instance answers only once its own listener has it back, so the other's
    /// is a matter of its scheduling (well under a millisecond when idle; this allows 1 s on a
    /// loaded test machine, and says how long it took).
    async fn soon<F: Future<Output = bool>>(&self, what: &str, mut check: impl FnMut() -> F) {
        let started = std::time::Instant::now();
        while !check().await {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{what} never reached the other instance's session cache"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        eprintln!(
            "{what} reached the other instance after {:?}",
            started.elapsed()
        );
    }

    async fn me(&self, base: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /api/v1/me")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_from_one_instance_works_on_the_other() {
    let p = two_servers_on_one_postgres().await;
    let code = p.mock.mint_code("o-roam", None);
    let login = expect_status(p.login(&p.a.url(), &code).await, StatusCode::OK).await;
    let token = token_of(&login);

    let me = expect_status(p.me(&p.b.url(), &token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], login["user"]["id"]);

    // The session key stored by A decrypts on B.
    let payload = p
        .mock
        .encrypt_user_info("o-roam", wechat_user_info("Roamer"))
        .expect("encrypt");
    let resp = p
        .client
        .post(format!("{}/updateUserInfo", p.b.url()))
        .form(&[
            ("encryptedData", payload.encrypted_data.as_str()),
            ("iv", payload.iv.as_str()),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .expect("POST /updateUserInfo");
    let updated = expect_status(resp, StatusCode::OK).await;
    assert_eq!(updated["user"]["nickName"], "Roamer");
    let me = expect_status(p.me(&p.a.url(), &token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["nickName"], "Roamer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_over_both_instances_create_one_user() {
    let p = two_servers_on_one_postgres().await;
    let codes: Vec<String> = (0..40).map(|_| p.mock.mint_code("o-race", None)).collect();
    let (url_a, url_b) = (p.a.url(), p.b.url());
    let answers = join_all(codes.iter().enumerate().map(|(i, code)| {
        let base = if i % 2 == 0 { &url_a } else { &url_b };
        p.login(base, code)
    }))
    .await;
    let mut users = HashSet::new();
    let mut new_users = 0;
    for resp in answers {
        let body = expect_status(resp, StatusCode::OK).await;
        users.insert(user_id_of(&body));
        if body["isNewUser"] == true {
            new_users += 1;
        }
    }
    assert_eq!(users.len(), 1, "one openid, one user: {users:?}");
    assert_eq!(new_users, 1, "exactly one login created the user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_one_instance_is_honoured_by_the_other() {
    let p = two_servers_on_one_postgres().await;
    let first = expect_status(
        p.login(&p.a.url(), &p.mock.mint_code("o-leave", None))
            .await,
        StatusCode::OK,
    )
    .await;
    let second = expect_status(
        p.login(&p.b.url(), &p.mock.mint_code("o-leave", None))
            .await,
        StatusCode::OK,
    )
    .await;
    let (token, other) = (token_of(&first), token_of(&second));
    p.assert_cached(&p.b.url(), &token).await;

    let resp = p
        .client
        .delete(format!("{}/api/v1/session", p.a.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("DELETE /api/v1/session");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let b = p.b.url();
    p.soon("the logout", || p.refused(&b, &token)).await;
    expect_error(
        p.me(&p.a.url(), &token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The user's other session is untouched.
    expect_status(p.me(&p.b.url(), &other).await, StatusCode::OK).await;
}

/// Two instances and 200 concurrent phone-number requests over both: one access-token fetch
/// in all (one instance takes the shared row's lease and fetches, the other waits for its
/// token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_200_phone_requests_make_one_access_token_fetch() {
    use wxlogin_wechat_mock::{Api, CountryCode, Phone};

    let pair = two_servers_on_one_postgres().await;
    let (a, b) = (pair.a.url(), pair.b.url());
    let mut tokens = Vec::new();
    for i in 0..20 {
        let code = pair.mock.mint_code(&format!("o-phone-{i}"), None);
        let base = if i % 2 == 0 { &a } else { &b };
        let body = expect_status(pair.login(base, &code).await, StatusCode::OK).await;
        tokens.push(token_of(&body));
    }
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let token = tokens[i % tokens.len()].clone();
            let code = pair.mock.mint_phone_code(
                &format!("o-phone-{}", i % tokens.len()),
                Phone::new(&format!("1380013{i:04}"), CountryCode::default()),
            );
            let base = if i % 2 == 0 { a.clone() } else { b.clone() };
            let client = pair.client.clone();
            async move {
                let resp = client
                    .post(format!("{base}/api/v1/me/phone"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "code": code }))
                    .send()
                    .await
                    .expect("POST /api/v1/me/phone");
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                (status, body)
            }
        })
        .collect();
    let answers = join_all(requests).await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(
        pair.mock.calls(Api::StableToken),
        1,
        "one fetch for both instances"
    );
    assert_eq!(pair.mock.calls(Api::Token), 0);
}

/// Every change made through one instance reaches the other's session cache at once: a
/// profile change, a refresh, and an erasure, each right after the other instance served the
/// token from its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_on_one_instance_reaches_the_others_session_cache_at_once() {
    let p = two_servers_on_one_postgres().await;
    let (a, b) = (p.a.url(), p.b.url());
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let code = p.mock.mint_code("o-cached", None);
        tokens.push(token_of(
            &expect_status(p.login(&a, &code).await, StatusCode::OK).await,
        ));
    }
    let (token, other) = (tokens[0].clone(), tokens[1].clone());

    // A profile change on A is what B answers next.
    p.assert_cached(&b, &token).await;
    let resp = p
        .client
        .post(format!("{a}/api/v1/me/profile"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"nickName": "Changed on A"}))
        .send()
        .await
        .expect("POST /api/v1/me/profile");
    expect_status(resp, StatusCode::OK).await;
    p.soon("the profile change", || async {
        let me = expect_status(p.me(&b, &token).await, StatusCode::OK).await;
        me["user"]["nickName"] == "Changed on A"
    })
    .await;

    // A refresh on A: B refuses the old token at once and takes the new one.
    p.assert_cached(&b, &token).await;
    let resp = p
        .client
        .post(format!("{a}/api/v1/session/refresh"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST /api/v1/session/refresh");
    let fresh = expect_status(resp, StatusCode::OK).await["token"]
        .as_str()
        .expect("a new token")
        .to_owned();
    p.soon("the refresh", || p.refused(&b, &token)).await;
    expect_status(p.me(&b, &fresh).await, StatusCode::OK).await;

    // An erasure on A (with the other token): B refuses both of the user's tokens at once.
    p.assert_cached(&b, &fresh).await;
    let resp = p
        .client
        .delete(format!("{a}/api/v1/me"))
        .bearer_auth(&other)
        .send()
        .await
        .expect("DELETE /api/v1/me");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    p.soon("the erasure", || p.refused(&b, &fresh)).await;
    assert!(p.refused(&b, &other).await);
}
