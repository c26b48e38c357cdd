//! What only the SQLite store has to prove (the shared semantics are in `tests/contract.rs`):
//! two stores on one file, the busy timeout, the file surviving a restart, nanosecond
//! timestamps, WAL mode, a closed store, in-memory databases, the upgrade of a database from
//! before `0002`, and erasure's cascades. Each test uses a real database file in a temporary
//! directory.

use std::collections::HashSet;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnection, SqlitePoolOptions};
use tempfile::TempDir;
use wxlogin_domain::{
    AvatarUrl, Gender, NewLogin, NickName, Profile, ProfileChange, ProfileText, ProfileUpdate,
    SessionId, StoreError, UnionId, UserId, UserStore,
};
use wxlogin_store_contract::fixtures::{KEY_A, KEY_B, app, digest, login_at};
use wxlogin_store_sqlite::{Sqlite, SqliteOptions};

/// A time with nanoseconds, to prove the round trip is exact.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_550_400, 123_456_789).expect("valid time")
}

fn login_for(open_id: &str, n: u32, session_key: &str) -> NewLogin {
    login_at(open_id, n, session_key, t0())
}

fn db_url(dir: &TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("wxlogin.db").display()
    )
}

async fn open(dir: &TempDir) -> Sqlite {
    Sqlite::connect(&db_url(dir)).await.expect("store opens")
}

/// Counts rows behind the store's back, through a connection of its own.
async fn count(dir: &TempDir, table: &str) -> i64 {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url(dir))
        .await
        .expect("side connection opens");
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .expect("count query runs");
    pool.close().await;
    n
}

fn profile_change(user_id: UserId, session_id: SessionId, profile: Profile) -> ProfileChange {
    ProfileChange {
        app_id: app(),
        user_id,
        session_id,
        profile: ProfileUpdate(profile),
        union_id: None,
        rotated_session_key: None,
        now: t0() + Duration::minutes(5),
    }
}

// Two stores on one file (two server processes on one host): each has its own writer
// connection, so only SQLite's own locking keeps them apart. BEGIN IMMEDIATE plus the busy
// timeout must make them queue: no `database is locked`, no second user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_race_one_openid_into_one_user() {
    let dir = TempDir::new().unwrap();
    let first = open(&dir).await;
    let second = open(&dir).await;

    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = if n % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move { store.login(login_for("oShared", n, KEY_A)).await })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.unwrap().unwrap());
    }
    let ids: HashSet<_> = records.iter().map(|r| r.user.id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(records.iter().filter(|r| r.is_new_user).count(), 1);
    assert_eq!(count(&dir, "users").await, 1);
    assert_eq!(count(&dir, "sessions").await, 40);
}

/// What a store committed is in the file: a fresh store over it reads the same user, profile
/// and unionid included, and a later login finds that user.
#[tokio::test]
async fn data_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let first = login_for("oDurable", 1, KEY_A);
    let session_id = first.session_id;
    let record = store.login(first).await.unwrap();
    let profile = Profile {
        nick_name: NickName::parse("小明").ok(),
        avatar_url: AvatarUrl::parse("https://example.com/a.png").ok(),
        gender: Some(Gender::Male),
        city: ProfileText::place("city", "Guangzhou").ok(),
        ..Profile::default()
    };
    let mut change = profile_change(record.user.id, session_id, profile);
    change.union_id = Some(UnionId::parse("uDurable").unwrap());
    let updated = store.update_profile(change).await.unwrap();
    assert!(updated.profile_complete());
    store.close().await;
    drop(store);

    let reopened = open(&dir).await;
    let found = reopened
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, updated);
    let again = reopened
        .login(login_for("oDurable", 2, KEY_B))
        .await
        .unwrap();
    assert!(!again.is_new_user);
    assert_eq!(again.user.id, record.user.id);
    assert_eq!(again.user, updated);
}

/// Another process holding the write lock past the busy timeout makes a write unavailable
/// (a 503, not a hang and not an unexpected error), and the store recovers once the lock is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
    let dir = TempDir::new().unwrap();
    let options = SqliteOptions {
        busy_timeout: StdDuration::from_millis(200),
        ..SqliteOptions::default()
    };
    let store = Sqlite::connect_with(&db_url(&dir), options)
        .await
        .expect("store opens");
    // A second process on the file, in the middle of a write.
    let mut other = SqliteConnection::connect(&db_url(&dir)).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();

    let started = Instant::now();
    let result = store.login(login_for("oLocked", 1, KEY_A)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    // The default busy timeout is 5 s: finishing well before shows the option took effect.
    assert!(elapsed < StdDuration::from_secs(3), "took {elapsed:?}");

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let record = store
        .login(login_for("oLocked", 2, KEY_A))
        .await
        .expect("login after the lock is gone");
    assert!(record.is_new_user);
}

#[tokio::test]
async fn timestamps_round_trip_exactly() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut login = login_for("oClock", 1, KEY_A);
    let now = DateTime::from_timestamp(1_714_550_400, 987_654_321).unwrap();
    let expires_at = DateTime::from_timestamp(1_717_142_400, 1_000).unwrap();
    login.now = now;
    login.expires_at = expires_at;
    let record = store.login(login).await.unwrap();
    assert_eq!(record.user.created_at, now);
    assert_eq!(record.user.updated_at, now);

    let found = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session.created_at, now);
    assert_eq!(found.session.expires_at, expires_at);
    assert_eq!(found.user.created_at, now);
    assert_eq!(found.user.updated_at, now);
}

#[tokio::test]
async fn the_file_runs_in_wal_mode() {
    let dir = TempDir::new().unwrap();
    let _store = open(&dir).await;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url(&dir))
        .await
        .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn ping_answers_and_a_closed_store_is_unavailable() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.ping().await.unwrap();
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.login(login_for("oLate", 1, KEY_A)).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn in_memory_databases_work() {
    let store = Sqlite::connect("sqlite::memory:").await.unwrap();
    store.ping().await.unwrap();
    let record = store.login(login_for("oMemory", 1, KEY_A)).await.unwrap();
    assert!(record.is_new_user);
    let found = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, record.user);

    // Another in-memory store is another database.
    let other = Sqlite::connect("sqlite::memory:").await.unwrap();
    assert!(
        other
            .find_session(&app(), &digest(1))
            .await
            .unwrap()
            .is_none()
    );
}

/// A database migrated before `0002` (sessions without `last_seen_at`) upgrades in place: its
/// sessions read back last seen at their login, and the rebuilt table keeps its constraints
/// (NOT NULL, the cascade from users) and gains the purge's indexes.
#[tokio::test]
async fn sessions_stored_before_0002_read_back_last_seen_at_their_login() {
    let dir = TempDir::new().unwrap();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url(&dir))
        .await
        .unwrap();
    wxlogin_store_sqlite::migrator()
        .run_to(1, &pool)
        .await
        .expect("0001 applies");
    // Rows as the store wrote them before 0002.
    let user_id = UserId::new().as_uuid().hyphenated().to_string();
    let session_id = SessionId::new();
    let created_at = "2024-05-01T08:00:00.123456789Z";
    sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2)")
        .bind(&user_id)
        .bind(created_at)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO wechat_identities (user_id, app_id, open_id, created_at) \
         VALUES ($1, $2, 'oBefore', $3)",
    )
    .bind(&user_id)
    .bind(app().as_str())
    .bind(created_at)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, app_id, token_digest, session_key, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, '2024-05-31T08:00:00.000000000Z')",
    )
    .bind(session_id.as_uuid().hyphenated().to_string())
    .bind(&user_id)
    .bind(app().as_str())
    .bind(digest(1).as_bytes().as_slice())
    .bind(KEY_A)
    .bind(created_at)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = open(&dir).await;
    let found = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .expect("the session survives the migration");
    assert_eq!(found.session.id, session_id);
    assert_eq!(found.session.last_seen_at, found.session.created_at);
    assert_eq!(found.session.created_at, t0());
    // And it is an ordinary session now.
    let seen = t0() + Duration::minutes(1);
    store.touch_session(session_id, seen).await.unwrap();
    let touched = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.session.last_seen_at, seen);

    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url(&dir))
        .await
        .unwrap();
    let columns: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, \"notnull\" FROM pragma_table_info('sessions')")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        columns.contains(&("last_seen_at".to_owned(), 1)),
        "{columns:?}"
    );
    let indexes: HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT name FROM pragma_index_list('sessions')")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(n,)| n)
            .collect();
    for index in [
        "sessions_user_id",
        "sessions_revoked_at",
        "sessions_expires_at",
        "sessions_last_seen_at",
    ] {
        assert!(indexes.contains(index), "missing {index}: {indexes:?}");
    }
    let cascades: Vec<(String, String)> =
        sqlx::query_as("SELECT \"table\", on_delete FROM pragma_foreign_key_list('sessions')")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(cascades, [("users".to_owned(), "CASCADE".to_owned())]);
    pool.close().await;
    store.close().await;
}

/// Erasing a user deletes its rows in every table (the cascades, with foreign keys on), and
/// nobody else's.
#[tokio::test]
async fn erasure_deletes_the_users_rows_in_every_table() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let user = store
        .login(login_for("oGone", 1, KEY_A))
        .await
        .unwrap()
        .user;
    store.login(login_for("oGone", 2, KEY_B)).await.unwrap();
    store.login(login_for("oKept", 3, KEY_A)).await.unwrap();

    store.erase_user(user.id).await.unwrap();
    for table in ["users", "wechat_identities", "sessions"] {
        assert_eq!(count(&dir, table).await, 1, "{table}");
    }
}

/// The WAL is copied back into the database file in the background, while the writer only
/// appends: the file grows with the logins although the writer's own checkpoint threshold
/// (20,000 pages) is far from reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let file = dir.path().join("wxlogin.db");
    let size = || std::fs::metadata(&file).unwrap().len();
    let before = size();
    for n in 0..300 {
        store
            .login(login_for(&format!("o-ckpt-{n}"), n, KEY_A))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while size() <= before {
        assert!(
            Instant::now() < deadline,
            "the database file never grew past {before} bytes: nothing was checkpointed"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(count(&dir, "sessions").await, 300);
}
