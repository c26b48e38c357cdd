//! The database failing under the real server: a server started before its database serves
//! 503 and recovers by itself; a database that goes away mid-load answers 503 within the
//! acquire timeout and comes back without a restart; a database restarted during a login load
//! costs only the requests in flight and loses no acknowledged login; a SQLite file locked by
//! another process answers 503 within the busy timeout and loses nothing.
//!
//! The Postgres cases put a TCP proxy ([`TcpProxy`]) between the server and the real
//! PostgreSQL: cutting it closes every connection at once and closes the port, which is what
//! a crash or a restart of PostgreSQL looks like from its clients (the server side rolls back
//! whatever was not committed). They need a PostgreSQL server (feature `postgres`, turned on
//! by `cargo xtask test`); the SQLite case always runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use wxlogin_e2e::*;

/// What one login attempt of a load got.
#[derive(Debug, Clone)]
struct Attempt {
    started: Instant,
    elapsed: Duration,
    code: String,
    status: StatusCode,
    body: Value,
}

impl Attempt {
    fn ok(&self) -> bool {
        self.status == StatusCode::OK
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

/// `clients` concurrent mini-programs, each logging a new user in with a fresh code, one
/// request at a time, until `stop` is set.
async fn login_load(app: Arc<TestApp>, clients: usize, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let code = app.wx_login(&format!("o-load-{client}-{n}"));
                let started = Instant::now();
                let resp = app.on_login(&code).await;
                let status = resp.status();
                let body: Value = resp.json().await.expect("every answer is JSON");
                attempts.push(Attempt {
                    started,
                    elapsed: started.elapsed(),
                    code,
                    status,
                    body,
                });
            }
            attempts
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a load client panicked"));
    }
    all
}

/// Asserts that every failed attempt is a 503 `database_unavailable` telling the client to
/// call `wx.login` again (its code was exchanged, so it is spent), and that the code is indeed
/// spent: sent again, it is refused as used.
async fn assert_failures_are_spent_codes(app: &TestApp, attempts: &[Attempt]) {
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok()).collect();
    for a in &failed {
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
        assert_eq!(a.error(), "database_unavailable", "{:?}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(message.contains("wx.login"), "{message}");
    }
    if let Some(a) = failed.first() {
        expect_error(
            app.on_login(&a.code).await,
            StatusCode::BAD_REQUEST,
            "code_used",
        )
        .await;
    }
}

/// Asserts that the server answers `GET /readyz` with `status` within `within`.
async fn await_readyz(app: &TestApp, status: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = app
            .client
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .expect("GET /readyz")
            .status();
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {got} after {within:?}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::collections::HashSet;
    use std::net::SocketAddr;

    use sqlx::PgPool;
    use wxlogin_e2e::proxy::TcpProxy;
    use wxlogin_server::Settings;
    use wxlogin_wechat_mock::Api;

    use super::*;

    /// The pool's acquire timeout in these tests: how long a request waits for a connection
    /// to a database that is not there before it answers 503.
    const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1000);
    /// Scheduling slack on a loaded 2-core machine, on top of the acquire timeout.
    const SLACK: Duration = Duration::from_secs(2);

    /// A fresh Postgres database, a proxy in front of it (up or closed), and a server whose
    /// `database.url` goes through the proxy.
    struct Rig {
        app: Arc<TestApp>,
        proxy: TcpProxy,
        direct: PgPool,
    }

    impl Rig {
        async fn new(proxy_up: bool, adjust: impl FnOnce(&mut Settings)) -> Self {
            let db = TestDb::fresh_for(StoreUnderTest::Postgres).await;
            let url = reqwest::Url::parse(&db.url()).expect("a Postgres URL");
            let upstream = upstream_of(&url).await;
            let proxy = if proxy_up {
                TcpProxy::start(upstream).await
            } else {
                TcpProxy::closed(upstream).await
            };
            let mut via_proxy = url.clone();
            via_proxy.set_port(Some(proxy.addr().port())).expect("port");
            via_proxy.set_host(Some("127.0.0.1")).expect("host");

            let app = spawn_app_on_db(db, wechat_under_test(), |s| {
                s.database.url = via_proxy.to_string();
                s.database.postgres.acquire_timeout_ms = Some(ACQUIRE_TIMEOUT.as_millis() as u64);
                // The load below comes from one address, and is not what the limits are about.
                s.limits.wechat_concurrency = Some(512);
                adjust(s);
            })
            .await;
            let direct = PgPool::connect(&app.db.url())
                .await
                .expect("connect to the test database directly");
            Self {
                app: Arc::new(app),
                proxy,
                direct,
            }
        }

        async fn count(&self, sql: &'static str) -> i64 {
            sqlx::query_scalar(sql)
                .fetch_one(&self.direct)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }

        /// No acknowledged login is missing, and nothing was half written: every user has
        /// its identity and a session (nobody logged out here), and the only extra rows are
        /// those of failed requests whose commit went through while the answer was lost.
        async fn assert_no_login_lost(&self, attempts: &[Attempt]) {
            let acknowledged: HashSet<String> = attempts
                .iter()
                .filter(|a| a.ok())
                .map(|a| user_id_of(&a.body))
                .collect();
            let failed = attempts.iter().filter(|a| !a.ok()).count();
            eprintln!(
                "{} logins: {} acknowledged, {failed} failed",
                attempts.len(),
                acknowledged.len()
            );
            let stored: HashSet<String> =
                sqlx::query_scalar::<_, String>("SELECT id::text FROM users")
                    .fetch_all(&self.direct)
                    .await
                    .expect("read the users")
                    .into_iter()
                    .collect();
            let lost: Vec<&String> = acknowledged.difference(&stored).collect();
            assert!(
                lost.is_empty(),
                "acknowledged logins without a row: {lost:?}"
            );
            assert!(
                stored.len() <= acknowledged.len() + failed,
                "{} users for {} acknowledged logins and {failed} failures",
                stored.len(),
                acknowledged.len()
            );
            let half_written = self
                .count(
                    "SELECT COUNT(*) FROM users u WHERE \
                     NOT EXISTS (SELECT 1 FROM wechat_identities i WHERE i.user_id = u.id) OR \
                     NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id)",
                )
                .await;
            assert_eq!(half_written, 0, "users without an identity or a session");
        }
    }

    async fn upstream_of(url: &reqwest::Url) -> SocketAddr {
        let host = url.host_str().expect("the Postgres URL names a host");
        let port = url.port().unwrap_or(5432);
        tokio::net::lookup_host((host, port))
            .await
            .expect("resolve the Postgres host")
            .next()
            .expect("the Postgres host has an address")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_server_started_before_its_database_serves_503_and_recovers_by_itself() {
        let rig = Rig::new(false, |_| {}).await;
        let app = &rig.app;

        await_readyz(app, StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        // The code is not spent on a login the store cannot save: WeChat is not asked.
        let code = app.wx_login("o-early");
        let refused = expect_error(
            app.on_login(&code).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
        )
        .await;
        assert!(
            !refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains("wx.login"),
            "{refused}"
        );
        assert_eq!(app.mock.calls(Api::Jscode2session), 0);
        // Token checks need the database too: 503, not 401.
        let me = app
            .client
            .get(format!("{}/api/v1/me", app.url))
            .bearer_auth("wxl_not-a-real-token-but-it-cannot-be-checked-either")
            .send()
            .await
            .expect("GET /api/v1/me");
        expect_error(me, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;

        // The database appears: the server connects and migrates the empty database itself.
        rig.proxy.up().await;
        await_readyz(app, StatusCode::OK, Duration::from_secs(20)).await;
        let body = expect_status(app.on_login(&code).await, StatusCode::OK).await;
        assert_login_body(&body, "o-early");
        assert_eq!(body["isNewUser"], true);
        assert_eq!(rig.count("SELECT COUNT(*) FROM users").await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_database_going_away_mid_load_answers_503_within_the_acquire_timeout_then_recovers() {
        let rig = Rig::new(true, |_| {}).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(login_load(Arc::clone(&rig.app), 8, Arc::clone(&stop)));

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let cut = Instant::now();
        rig.proxy.cut();
        await_readyz(
            &rig.app,
            StatusCode::SERVICE_UNAVAILABLE,
            ACQUIRE_TIMEOUT + SLACK,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let restored = Instant::now();
        rig.proxy.up().await;
        await_readyz(&rig.app, StatusCode::OK, ACQUIRE_TIMEOUT + SLACK).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.store(true, Ordering::Relaxed);
        let attempts = load.await.expect("the load finished");

        // While the database was away (requests that started well after the cut and ended
        // before it came back), every login answered 503 within the acquire timeout.
        let during: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| {
                a.started > cut + Duration::from_millis(200) && a.started + a.elapsed < restored
            })
            .collect();
        assert!(
            !during.is_empty(),
            "no login was tried while the database was away"
        );
        for a in &during {
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
            assert!(
                a.elapsed <= ACQUIRE_TIMEOUT + SLACK,
                "a 503 took {:?}, past the acquire timeout",
                a.elapsed
            );
        }
        // Back without a restart: every login that started a second after the database
        // returned succeeded.
        let after: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.started > restored + Duration::from_secs(1))
            .collect();
        assert!(
            after.len() >= 8,
            "only {} logins after recovery",
            after.len()
        );
        assert!(
            after.iter().all(|a| a.ok()),
            "{:?}",
            after.iter().find(|a| !a.ok())
        );
        // Before the cut, nothing failed.
        assert!(
            attempts
                .iter()
                .filter(|a| a.started + a.elapsed < cut)
                .all(Attempt::ok)
        );

        assert_failures_are_spent_codes(&rig.app, &attempts).await;
        rig.assert_no_login_lost(&attempts).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_database_restart_during_a_login_load_fails_only_requests_in_flight_and_loses_nothing()
     {
        const CLIENTS: usize = 16;
        // The default acquire timeout (3 s): a restart shorter than it costs no waiting request.
        let rig = Rig::new(true, |s| s.database.postgres.acquire_timeout_ms = None).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(login_load(Arc::clone(&rig.app), CLIENTS, Arc::clone(&stop)));

        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The restart: every connection dropped at once, the port closed for 700 ms.
        rig.proxy.cut();
        let restart = Instant::now();
        // The cut's aborts take effect as the runtime gets to them: a request sent in that
        // moment may still get a connection that is being closed.
        let settled = restart + Duration::from_millis(100);
        tokio::time::sleep(Duration::from_millis(700)).await;
        rig.proxy.up().await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.store(true, Ordering::Relaxed);
        let attempts = load.await.expect("the load finished");

        let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok()).collect();
        // Only requests in flight at the restart failed: each client had at most one, and
        // none of the requests sent after it failed.
        assert!(
            failed.len() <= CLIENTS,
            "{} failures for {CLIENTS} requests in flight",
            failed.len()
        );
        for a in &failed {
            assert!(
                a.started <= settled,
                "a request sent after the restart failed: {:?}",
                a.body
            );
        }
        assert!(
            attempts.iter().filter(|a| a.started > settled).count() >= CLIENTS,
            "the load did not go on after the restart"
        );
        assert_failures_are_spent_codes(&rig.app, &attempts).await;
        rig.assert_no_login_lost(&attempts).await;
    }

    /// The session cache is not an answer while the database is away: its notifications
    /// cannot arrive then, so the cache goes dark with its channel. A token the server was
    /// answering from memory is refused with 503 (not served), and once the database is back
    /// the server reads it again (what was cached before is gone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_cached_session_is_not_answered_while_the_database_is_away() {
        let rig = Rig::new(true, |s| s.database.session_cache_ms = Some(3_600_000)).await;
        let app = &rig.app;
        let token = token_of(&app.login_ok("o-cached").await);
        let me = || async {
            app.client
                .get(format!("{}/api/v1/me", app.url))
                .bearer_auth(&token)
                .send()
                .await
                .expect("GET /api/v1/me")
        };
        let user = user_id_of(&expect_status(me().await, StatusCode::OK).await);
        // Served from memory: a nickname written behind the server's back is not seen.
        let mut probe = String::new();
        let mut cached = false;
        for i in 0..200 {
            probe = format!("probe-{i}");
            sqlx::query("UPDATE users SET nick_name = $1 WHERE id = $2::uuid")
                .bind(&probe)
                .bind(&user)
                .execute(&rig.direct)
                .await
                .expect("write behind the server's back");
            if expect_status(me().await, StatusCode::OK).await["user"]["nickName"] != probe.as_str()
            {
                cached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(cached, "the server never answered from its session cache");

        rig.proxy.cut();
        let cut = Instant::now();
        let mut refused = false;
        while cut.elapsed() < ACQUIRE_TIMEOUT + SLACK * 2 {
            let resp = me().await;
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                expect_error(
                    resp,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                )
                .await;
                refused = true;
                break;
            }
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "only the cache can answer now"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            refused,
            "a cached session was still served with the database away"
        );

        rig.proxy.up().await;
        await_readyz(app, StatusCode::OK, ACQUIRE_TIMEOUT + SLACK).await;
        let body = expect_status(me().await, StatusCode::OK).await;
        assert_eq!(
            body["user"]["nickName"],
            probe.as_str(),
            "read again after the outage"
        );
    }
}

/// Another process holds SQLite's write lock past the busy timeout: logins answer 503 (their
/// codes spent, and said so), nothing is half written, and once the lock is gone logins work
/// again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_answers_503_and_loses_nothing() {
    let db = TestDb::fresh_for(StoreUnderTest::Sqlite).await;
    let app = spawn_app_on_db(db, wechat_under_test(), |s| {
        s.database.sqlite.busy_timeout_ms = Some(200);
    })
    .await;
    app.login_ok("o-before").await;

    let mut other = sqlx::SqliteConnection::connect(&app.db.url())
        .await
        .expect("a second connection to the file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");

    let started = Instant::now();
    let code = app.wx_login("o-locked");
    let body = expect_error(
        app.on_login(&code).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let attempt = Attempt {
        started,
        elapsed: started.elapsed(),
        code,
        status: StatusCode::SERVICE_UNAVAILABLE,
        body,
    };

    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the lock");
    assert_failures_are_spent_codes(&app, std::slice::from_ref(&attempt)).await;
    app.login_ok("o-after").await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut other)
        .await
        .expect("count users");
    assert_eq!(users, 2, "the refused login left a user behind");
}

use sqlx::Connection as _;
