//! What only the Postgres store has to prove (the shared semantics are in `tests/contract.rs`):
//! availability errors, migrations (the upgrade of a database from before `0002` too), native
//! column types, erasure's cascades, several instances on one database, and the throwaway
//! databases of `testing`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use tokio::sync::Barrier;
use wxlogin_domain::{NewLogin, SessionId, StoreError, UserId, UserStore};
use wxlogin_store_contract::fixtures::{KEY_A, KEY_B, app, digest, login_at, other_app};
use wxlogin_store_postgres::testing::{FreshDatabase, fresh_database, require_admin_url};
use wxlogin_store_postgres::{Postgres, PostgresOptions};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_550_400, 0).expect("valid time")
}

fn login_for(open_id: &str, n: u32, key: &str) -> NewLogin {
    login_at(open_id, n, key, t0())
}

async fn fresh() -> FreshDatabase {
    fresh_database(&require_admin_url())
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"))
}

async fn open(db: &FreshDatabase) -> Postgres {
    Postgres::connect(db.url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

/// A connection of the test's own, behind the store's back.
async fn side(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("side connection: {e}"))
}

/// A connection of the test's own holding an exclusive lock on `table`, in a transaction
/// that stays open until the caller ends it.
async fn lock_table(url: &str, table: &str) -> PgConnection {
    let mut blocker = side(url).await;
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut blocker)
    .await
    .expect("lock");
    blocker
}

/// A first login of `open_id` fails as unavailable, and sooner than `limit`.
async fn login_is_unavailable_within(store: &Postgres, open_id: &str, limit: Duration) {
    let started = Instant::now();
    let result = store.login(login_for(open_id, 1, KEY_A)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(elapsed < limit, "took {elapsed:?}");
}

/// Opens the pool's connections (by pinging from many tasks at once), so that the logins
/// that follow really run side by side instead of behind the first one.
async fn warm_up(store: &Postgres) {
    let start = Arc::new(Barrier::new(32));
    let pings: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.ping().await
            })
        })
        .collect();
    for ping in pings {
        ping.await.expect("task").expect("warm-up ping");
    }
}

async fn database_exists(name: &str) -> bool {
    let mut admin = side(&require_admin_url()).await;
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .expect("pg_database query");
    admin.close().await.ok();
    exists
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_within_the_acquire_timeout() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let options = PostgresOptions {
        acquire_timeout: Duration::from_millis(500),
        ..PostgresOptions::default()
    };
    let started = Instant::now();
    let result = Postgres::connect_with(&url, options).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_behind_a_lock_is_unavailable_within_the_lock_timeout() {
    let db = fresh().await;
    let store = open(&db).await;
    let mut blocker = lock_table(db.url(), "sessions").await;

    login_is_unavailable_within(&store, "oWedged", Duration::from_secs(6)).await;

    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");
    // Nothing of the failed login remains, and the store works again.
    let record = store
        .login(login_for("oWedged", 2, KEY_A))
        .await
        .expect("login after the lock is gone");
    assert!(record.is_new_user);

    blocker.close().await.ok();
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_timeout_option_bounds_a_statement_without_a_lock_timeout() {
    let db = fresh().await;
    // The lock timeout off (PostgreSQL's zero): only the statement timeout can end the wait.
    let options = PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        lock_timeout: Duration::ZERO,
        ..PostgresOptions::default()
    };
    let store = Postgres::connect_with(db.url(), options)
        .await
        .expect("connects");
    let blocker = lock_table(db.url(), "users").await;

    // The default lock timeout is 3 s and the default statement timeout 5 s.
    login_is_unavailable_within(&store, "oSlow", Duration::from_secs(2)).await;

    // Closing the connection rolls its transaction back.
    blocker.close().await.ok();
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_unavailable_quickly_and_recovers() {
    let db = fresh().await;
    let options = PostgresOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let store = Postgres::connect_with(db.url(), options)
        .await
        .expect("connects");

    // Hold a lock that makes a login wait while holding the pool's only connection.
    let mut blocker = lock_table(db.url(), "sessions").await;
    let login = tokio::spawn({
        let store = store.clone();
        async move { store.login(login_for("oBlocked", 1, KEY_A)).await }
    });
    let mut watcher = side(db.url()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'wxlogin' \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the login never blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let ping = store.ping().await;
    let elapsed = started.elapsed();
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    sqlx::query("COMMIT")
        .execute(&mut blocker)
        .await
        .expect("commit");
    let record = login
        .await
        .expect("task")
        .expect("the blocked login completes");
    assert!(record.is_new_user);
    store.ping().await.expect("the pool recovered");

    blocker.close().await.ok();
    watcher.close().await.ok();
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_is_unavailable() {
    let db = fresh().await;
    let store = open(&db).await;
    store.ping().await.expect("ping");
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.login(login_for("oLate", 1, KEY_A)).await,
        Err(StoreError::Unavailable(_))
    ));
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_apply_once_however_many_instances_start() {
    let db = fresh().await;
    // Several instances starting at once on an empty database: sqlx's advisory lock lets one
    // migrate while the others wait, then find nothing left to do.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { Postgres::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.expect("task").expect("concurrent connect"));
    }
    // And again, later: applying the migrations a second time is a no-op.
    let again = open(&db).await;
    stores.push(again);

    let mut conn = side(db.url()).await;
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("migrations table");
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .expect("migrations folder")
    .filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
    })
    .count();
    assert_eq!(applied.len(), files);
    assert!(applied.iter().all(|(_, success)| *success));
    assert_eq!(applied.first().map(|(v, _)| *v), Some(1));

    conn.close().await.ok();
    for store in &stores {
        store.close().await;
    }
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_have_native_types_and_indexes_exist() {
    let db = fresh().await;
    let store = open(&db).await;
    let mut conn = side(db.url()).await;

    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name IN ('users', 'wechat_identities', 'sessions')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("information_schema");
    let column = |table: &str, column: &str| {
        columns
            .iter()
            .find(|(t, c, ..)| t == table && c == column)
            .unwrap_or_else(|| panic!("no column {table}.{column}"))
    };
    let type_of = |table: &str, name: &str| column(table, name).2.as_str();
    let tz = "timestamp with time zone";
    for (table, column, expected) in [
        ("users", "id", "uuid"),
        ("users", "gender", "smallint"),
        ("users", "created_at", tz),
        ("users", "updated_at", tz),
        ("wechat_identities", "user_id", "uuid"),
        ("wechat_identities", "created_at", tz),
        ("sessions", "id", "uuid"),
        ("sessions", "user_id", "uuid"),
        ("sessions", "token_digest", "bytea"),
        ("sessions", "created_at", tz),
        ("sessions", "expires_at", tz),
        ("sessions", "revoked_at", tz),
        ("sessions", "last_seen_at", tz),
    ] {
        assert_eq!(type_of(table, column), expected, "{table}.{column}");
    }
    assert_eq!(
        column("sessions", "last_seen_at").3,
        "NO",
        "last_seen_at is NOT NULL"
    );

    let indexes: HashSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("pg_indexes")
    .into_iter()
    .map(|(n,)| n)
    .collect();
    for index in [
        "users_pkey",
        "wechat_identities_app_open_key",
        "wechat_identities_user_app_key",
        "wechat_identities_union_id",
        "sessions_pkey",
        "sessions_token_digest_key",
        "sessions_user_id",
        "sessions_revoked_at",
        "sessions_expires_at",
        "sessions_last_seen_at",
    ] {
        assert!(
            indexes.contains(index),
            "missing index {index}: {indexes:?}"
        );
    }

    // The schema itself rejects what the domain never produces.
    let user = UserId::new();
    sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, now(), now())")
        .bind(user.as_uuid())
        .execute(&mut conn)
        .await
        .expect("insert user");
    let short_digest = sqlx::query(
        "INSERT INTO sessions (id, user_id, app_id, token_digest, session_key, created_at, \
         expires_at, last_seen_at) VALUES ($1, $2, 'wx', $3, 'k', now(), now(), now())",
    )
    .bind(SessionId::new().as_uuid())
    .bind(user.as_uuid())
    .bind(vec![0_u8; 31])
    .execute(&mut conn)
    .await;
    assert!(short_digest.is_err_and(|e| {
        e.as_database_error()
            .is_some_and(|d| d.is_check_violation())
    }));
    let bad_gender = sqlx::query("UPDATE users SET gender = 3 WHERE id = $1")
        .bind(user.as_uuid())
        .execute(&mut conn)
        .await;
    assert!(bad_gender.is_err_and(|e| {
        e.as_database_error()
            .is_some_and(|d| d.is_check_violation())
    }));

    conn.close().await.ok();
    store.close().await;
    db.drop_database().await.expect("drop");
}

/// A database migrated before `0002` (sessions without `last_seen_at`) upgrades in place:
/// its sessions read back last seen at their login, and behave like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stored_before_0002_read_back_last_seen_at_their_login() {
    let db = fresh().await;
    let mut conn = side(db.url()).await;
    wxlogin_store_postgres::migrator()
        .run_to(1, &mut conn)
        .await
        .expect("0001 applies");
    // Rows as the store wrote them before 0002.
    let user_id = UserId::new();
    let session_id = SessionId::new();
    sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2)")
        .bind(user_id.as_uuid())
        .bind(t0())
        .execute(&mut conn)
        .await
        .expect("0001 user");
    sqlx::query(
        "INSERT INTO wechat_identities (user_id, app_id, open_id, created_at) \
         VALUES ($1, $2, 'oBefore', $3)",
    )
    .bind(user_id.as_uuid())
    .bind(app().as_str())
    .bind(t0())
    .execute(&mut conn)
    .await
    .expect("0001 identity");
    sqlx::query(
        "INSERT INTO sessions (id, user_id, app_id, token_digest, session_key, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6 + interval '30 days')",
    )
    .bind(session_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(app().as_str())
    .bind(digest(1).as_bytes().as_slice())
    .bind(KEY_A)
    .bind(t0())
    .execute(&mut conn)
    .await
    .expect("0001 session");
    conn.close().await.ok();

    let store = open(&db).await;
    let found = store
        .find_session(&app(), &digest(1))
        .await
        .expect("find")
        .expect("the session survives the migration");
    assert_eq!(found.session.id, session_id);
    assert_eq!(found.session.created_at, t0());
    assert_eq!(found.session.last_seen_at, t0());
    let seen = t0() + chrono::Duration::minutes(1);
    store.touch_session(session_id, seen).await.expect("touch");
    let touched = store
        .find_session(&app(), &digest(1))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(touched.session.last_seen_at, seen);

    store.close().await;
    db.drop_database().await.expect("drop");
}

/// Erasing a user deletes its rows in every table (the cascades), and nobody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_deletes_the_users_rows_in_every_table() {
    let db = fresh().await;
    let store = open(&db).await;
    let user = store
        .login(login_for("oGone", 1, KEY_A))
        .await
        .expect("login")
        .user;
    store
        .login(login_for("oGone", 2, KEY_B))
        .await
        .expect("login");
    store
        .login(login_for("oKept", 3, KEY_A))
        .await
        .expect("login");

    store.erase_user(user.id).await.expect("erase");
    let mut conn = side(db.url()).await;
    for table in ["users", "wechat_identities", "sessions"] {
        let (rows,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .expect("count");
        assert_eq!(rows, 1, "{table}");
    }
    conn.close().await.ok();
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_sharing_a_database_create_one_user() {
    let db = fresh().await;
    let a = open(&db).await;
    let b = open(&db).await;
    warm_up(&a).await;
    warm_up(&b).await;
    let start = Arc::new(Barrier::new(60));
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store.login(login_for("oShared", n, KEY_A)).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let record = task.await.expect("task").expect("login");
        ids.insert(record.user.id);
        created += usize::from(record.is_new_user);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);

    let mut conn = side(db.url()).await;
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    // The losers' user rows were deleted in their transactions.
    assert_eq!(users, 1);
    conn.close().await.ok();
    a.close().await;
    b.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_serializable_server_default_does_not_fail_racing_logins() {
    // The store asks for READ COMMITTED explicitly. With a plain `BEGIN` this test fails with
    // SQLSTATE 40001 (serialization failure) on racing first logins.
    let db = fresh().await;
    let mut admin = side(&require_admin_url()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'serializable'",
        db.name()
    )))
    .execute(&mut admin)
    .await
    .expect("alter database");
    admin.close().await.ok();

    let mut check = side(db.url()).await;
    let (level,): (String,) = sqlx::query_as("SHOW transaction_isolation")
        .fetch_one(&mut check)
        .await
        .expect("show");
    assert_eq!(level, "serializable", "the server default applies");
    check.close().await.ok();

    let store = open(&db).await;
    warm_up(&store).await;
    let start = Arc::new(Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let start = Arc::clone(&start);
            let open_id = format!("oSerial{}", n % 4);
            tokio::spawn(async move {
                start.wait().await;
                store.login(login_for(&open_id, n, KEY_B)).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let record = task
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("racing login failed: {e}"));
        ids.insert(record.user.id);
    }
    assert_eq!(ids.len(), 4);
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_error_names_the_constraint_not_the_values() {
    let db = fresh().await;
    let store = open(&db).await;
    store
        .login(login_for("oFirst", 1, KEY_A))
        .await
        .expect("login");
    let err = store
        .login(login_for("oSecond", 1, KEY_B))
        .await
        .expect_err("duplicate digest");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unexpected(_)), "{err:?}");
    assert!(text.contains("sessions_token_digest_key"), "{text}");
    for secret in [KEY_B, "oSecond", "5a5a5a"] {
        assert!(!text.contains(secret), "{text}");
    }
    store.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_reconnect() {
    let db = fresh().await;
    let store = open(&db).await;
    let record = store
        .login(login_for("oDurable", 1, KEY_A))
        .await
        .expect("login");
    store.close().await;

    let reopened = open(&db).await;
    let found = reopened
        .find_session(&app(), &digest(1))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.user, record.user);
    reopened.close().await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwaway_databases_are_dropped_explicitly_or_on_drop() {
    let explicit = fresh().await;
    let name = explicit.name().to_owned();
    assert!(name.starts_with("wxlogin_t_"), "{name}");
    assert!(database_exists(&name).await);
    // Still connected: WITH (FORCE) disconnects the pool.
    let store = open(&explicit).await;
    explicit.drop_database().await.expect("drop");
    assert!(!database_exists(&name).await);
    store.close().await;

    let implicit = fresh().await;
    let name = implicit.name().to_owned();
    assert!(database_exists(&name).await);
    drop(implicit);
    assert!(!database_exists(&name).await);
}

/// A store opened lazily against a port where nothing listens is built at once, answers
/// `Unavailable` everywhere (without touching a database whose schema may not exist yet),
/// fails to migrate as `Unavailable`; the same kind of store on the real database migrates and
/// is ready.
#[tokio::test]
async fn a_lazy_store_is_unavailable_until_it_has_migrated() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let options = PostgresOptions {
        acquire_timeout: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let nowhere = wxlogin_store_postgres::PostgresLocation::parse(&format!(
        "postgres://postgres@127.0.0.1:{port}/nothing"
    ))
    .expect("a valid URL");
    let store = Postgres::open_lazy(&nowhere, options.clone())
        .await
        .expect("a lazy store is built without a database");
    assert!(!store.is_ready());
    assert!(matches!(store.available(), Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.login(login_for("o-lazy", 1, KEY_A)).await,
        Err(StoreError::Unavailable(_))
    ));
    let started = Instant::now();
    assert!(matches!(
        store.migrate().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(!store.is_ready());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let db = fresh().await;
    let location = wxlogin_store_postgres::PostgresLocation::parse(db.url()).expect("a valid URL");
    let store = Postgres::open_lazy(&location, options)
        .await
        .expect("lazy store");
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    store.migrate().await.expect("migrate the fresh database");
    assert!(store.is_ready() && store.available().is_ok());
    store.ping().await.expect("ready");
    let record = store
        .login(login_for("o-lazy", 1, KEY_A))
        .await
        .expect("a login once migrated");
    assert!(record.is_new_user);
    // Idempotent: a second call changes nothing.
    store.migrate().await.expect("migrate again");
    store.close().await;
    db.drop_database().await.expect("drop the database");
}

/// Logs `first` in, then races `racing` against an erasure of that user which has deleted the
/// row but not yet committed: the login must wait for the erasure and then, the user gone,
/// create a new user (never fail on a foreign key).
async fn login_racing_an_uncommitted_erasure(first: NewLogin, racing: NewLogin) {
    let db = fresh().await;
    let store = open(&db).await;
    let first = store.login(first).await.expect("first login");

    let mut eraser = side(db.url()).await;
    sqlx::query("BEGIN")
        .execute(&mut eraser)
        .await
        .expect("begin");
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(*first.user.id.as_uuid())
        .execute(&mut eraser)
        .await
        .expect("delete, uncommitted");

    let racing = tokio::spawn({
        let store = store.clone();
        async move { store.login(racing).await }
    });
    // Long enough for the login to reach the rows the erasure holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !racing.is_finished(),
        "the login did not wait for the erasure"
    );
    sqlx::query("COMMIT")
        .execute(&mut eraser)
        .await
        .expect("commit");

    let second = racing
        .await
        .expect("the login task")
        .expect("a login after the erasure succeeds");
    assert!(second.is_new_user);
    assert_ne!(second.user.id, first.user.id);
    store.close().await;
    db.drop_database().await.expect("drop the database");
}

/// A returning login racing an erasure of its user (it failed the session's foreign key, a
/// 500, before the look-up locked the user row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_an_erasure_of_its_user_creates_a_new_user() {
    login_racing_an_uncommitted_erasure(
        login_for("o-erased", 1, KEY_A),
        login_for("o-erased", 2, KEY_B),
    )
    .await;
}

/// The same race for a first login in another app that joins its user through the unionid
/// (it failed the new identity's foreign key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_login_racing_an_erasure_of_its_user_creates_a_new_user() {
    let union_id = wxlogin_domain::UnionId::parse("u-erased").expect("valid unionid");
    let mut first = login_for("o-erased-a", 1, KEY_A);
    first.union_id = Some(union_id.clone());
    let mut linked = login_for("o-erased-b", 2, KEY_B);
    linked.app_id = other_app();
    linked.union_id = Some(union_id);
    login_racing_an_uncommitted_erasure(first, linked).await;
}

/// Polls `check` every 10 ms for at most `within`; whether it came true.
async fn eventually<F: Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The session cache across instances: what one instance writes reaches the other's cache
/// through the notification channel, and a lost channel empties the cache until it listens
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_instance_reach_the_session_cache_of_another() {
    let db = fresh().await;
    let a = Postgres::connect(db.url()).await.expect("a connects");
    let b = Postgres::connect(db.url()).await.expect("b connects");
    let cache = || b.session_cache().expect("the cache is on by default");
    assert!(
        eventually(Duration::from_secs(5), || async { cache().is_live() }).await,
        "b's cache never heard its channel"
    );

    let login = login_for("oCached", 1, KEY_A);
    let record = a.login(login.clone()).await.expect("login on a");
    let found = b.find_session(&app(), &digest(1)).await.expect("find");
    assert!(found.is_some_and(|r| r.session.revoked_at.is_none()));
    assert_eq!(cache().len(), 1, "b keeps what it read");
    let session_id = login.session_id;

    // A revocation on a: b's next lookups see it, without waiting for the entry to age.
    a.revoke_session(session_id, t0())
        .await
        .expect("revoke on a");
    let revoked = eventually(Duration::from_secs(2), || async {
        b.find_session(&app(), &digest(1))
            .await
            .expect("find")
            .is_some_and(|r| r.session.revoked_at.is_some())
    })
    .await;
    assert!(revoked, "b still answers the revoked session as active");

    // An erasure on a: the session is gone for b too.
    b.find_session(&app(), &digest(1)).await.expect("find");
    a.erase_user(record.user.id).await.expect("erase on a");
    let gone = eventually(Duration::from_secs(2), || async {
        b.find_session(&app(), &digest(1))
            .await
            .expect("find")
            .is_none()
    })
    .await;
    assert!(gone, "b still answers the erased user's session");

    // The listener's connection is cut: the cache is dropped, and it listens again.
    a.login(login_for("oCached2", 2, KEY_B))
        .await
        .expect("login");
    b.find_session(&app(), &digest(2)).await.expect("find");
    assert_eq!(cache().len(), 1);
    let mut admin = side(db.url()).await;
    let (killed,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(wxlogin_store_postgres::LISTENER_NAME)
    .fetch_one(&mut admin)
    .await
    .expect("terminate the listeners");
    assert_eq!(killed, 2, "one listener per instance");
    assert!(
        eventually(Duration::from_secs(5), || async { cache().is_empty() }).await,
        "a lost channel leaves the cache as it was"
    );
    assert!(
        eventually(Duration::from_secs(10), || async { cache().is_live() }).await,
        "the cache never came back"
    );

    admin.close().await.ok();
    a.close().await;
    b.close().await;
    db.drop_database().await.expect("drop");
}
