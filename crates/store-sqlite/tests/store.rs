//! The SQLite store against real database files in temporary directories.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use sqlx::sqlite::SqlitePoolOptions;
use tempfile::TempDir;
use wxlogin_domain::{
    AvatarUrl, Gender, NewLogin, NickName, Profile, ProfileChange, ProfileText, ProfileUpdate,
    SessionId, StoreError, UnionId, UserId, UserStore,
};
use wxlogin_store_contract::fixtures::{
    KEY_A, KEY_B, KEY_C, app, digest, key, login_at, other_app,
};
use wxlogin_store_sqlite::Sqlite;

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

#[tokio::test]
async fn relogin_finds_the_same_user() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;

    let first = store.login(login_for("oUser1", 1, KEY_A)).await.unwrap();
    assert!(first.is_new_user);
    assert_eq!(first.user.open_id.as_str(), "oUser1");
    assert_eq!(first.user.profile, Profile::default());

    let second = store.login(login_for("oUser1", 2, KEY_B)).await.unwrap();
    assert!(!second.is_new_user);
    assert_eq!(second.user.id, first.user.id);
    assert_eq!(second.user, first.user);

    let other = store.login(login_for("oUser2", 3, KEY_C)).await.unwrap();
    assert!(other.is_new_user);
    assert_ne!(other.user.id, first.user.id);

    assert_eq!(count(&dir, "users").await, 2);
    assert_eq!(count(&dir, "sessions").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_create_one_user() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;

    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.login(login_for("oRacer", n, KEY_A)).await })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        // Any `database is locked` would surface here as an error.
        records.push(task.await.unwrap().unwrap());
    }

    let ids: HashSet<_> = records.iter().map(|r| r.user.id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(records.iter().filter(|r| r.is_new_user).count(), 1);
    assert_eq!(count(&dir, "users").await, 1);
    assert_eq!(count(&dir, "wechat_identities").await, 1);
    assert_eq!(count(&dir, "sessions").await, 50);
    for n in 0..50 {
        let found = store
            .find_session(&app(), &digest(n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Some(&found.user.id), ids.iter().next());
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

#[tokio::test]
async fn sessions_are_found_by_digest_and_app() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let login_a = login_for("oUser1", 1, KEY_A);
    let session_a = login_a.session_id;
    let user = store.login(login_a).await.unwrap().user;
    let login_b = login_for("oUser1", 2, KEY_B);
    let session_b = login_b.session_id;
    store.login(login_b).await.unwrap();

    let a = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.user, user);
    assert_eq!(a.session.id, session_a);
    assert_eq!(a.session.user_id, user.id);
    assert_eq!(a.session.token_digest, digest(1));
    assert_eq!(a.session.session_key, key(KEY_A));
    assert_eq!(a.session.revoked_at, None);

    // Two logins keep the session key each of them exchanged.
    let b = store
        .find_session(&app(), &digest(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.session.id, session_b);
    assert_eq!(b.session.session_key, key(KEY_B));
    assert_eq!(b.user.id, user.id);

    assert!(
        store
            .find_session(&app(), &digest(99))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_session(&other_app(), &digest(1))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn union_id_is_recorded_once() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;

    let mut with_union = login_for("oUnion", 1, KEY_A);
    with_union.union_id = Some(UnionId::parse("uFirst").unwrap());
    let first = store.login(with_union).await.unwrap();
    assert_eq!(
        first.user.union_id.as_ref().map(UnionId::as_str),
        Some("uFirst")
    );

    // A login without a unionid does not erase it; a different one does not replace it.
    let again = store.login(login_for("oUnion", 2, KEY_A)).await.unwrap();
    assert_eq!(
        again.user.union_id.as_ref().map(UnionId::as_str),
        Some("uFirst")
    );
    let mut other_union = login_for("oUnion", 3, KEY_A);
    other_union.union_id = Some(UnionId::parse("uSecond").unwrap());
    let again = store.login(other_union).await.unwrap();
    assert_eq!(
        again.user.union_id.as_ref().map(UnionId::as_str),
        Some("uFirst")
    );

    // Unknown at first login, learnt at a later one.
    let late = store.login(login_for("oLate", 4, KEY_A)).await.unwrap();
    assert_eq!(late.user.union_id, None);
    let mut learnt = login_for("oLate", 5, KEY_A);
    learnt.union_id = Some(UnionId::parse("uLate").unwrap());
    let late = store.login(learnt).await.unwrap();
    assert_eq!(
        late.user.union_id.as_ref().map(UnionId::as_str),
        Some("uLate")
    );
    let found = store
        .find_session(&app(), &digest(4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.user.union_id.as_ref().map(UnionId::as_str),
        Some("uLate")
    );
}

#[tokio::test]
async fn profile_update_applies_only_given_fields_and_persists() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let login = login_for("oProfile", 1, KEY_A);
    let session_id = login.session_id;
    let user = store.login(login).await.unwrap().user;

    let full = Profile {
        nick_name: NickName::parse("小明").ok(),
        avatar_url: AvatarUrl::parse("https://example.com/a.png").ok(),
        gender: Some(Gender::Male),
        country: ProfileText::place("country", "China").ok(),
        province: ProfileText::place("province", "Guangdong").ok(),
        city: ProfileText::place("city", "Guangzhou").ok(),
        language: ProfileText::language("zh_CN").ok(),
    };
    let updated = store
        .update_profile(profile_change(user.id, session_id, full.clone()))
        .await
        .unwrap();
    assert_eq!(updated.profile, full);
    assert_eq!(updated.created_at, t0());
    assert_eq!(updated.updated_at, t0() + Duration::minutes(5));

    let partial = Profile {
        nick_name: NickName::parse("Band").ok(),
        gender: Some(Gender::Female),
        ..Profile::default()
    };
    let mut change = profile_change(user.id, session_id, partial);
    change.union_id = Some(UnionId::parse("uFromProfile").unwrap());
    let updated = store.update_profile(change).await.unwrap();
    let mut expected = full.clone();
    expected.nick_name = NickName::parse("Band").ok();
    expected.gender = Some(Gender::Female);
    assert_eq!(updated.profile, expected);
    assert_eq!(
        updated.union_id.as_ref().map(UnionId::as_str),
        Some("uFromProfile")
    );
    assert!(updated.profile_complete());

    // Persisted: a fresh store over the same file reads the same user.
    store.close().await;
    let reopened = open(&dir).await;
    let found = reopened
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, updated);
}

#[tokio::test]
async fn rotated_session_key_replaces_only_that_sessions_key() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let first = login_for("oRotate", 1, KEY_A);
    let first_session = first.session_id;
    let user = store.login(first).await.unwrap().user;
    store.login(login_for("oRotate", 2, KEY_A)).await.unwrap();

    let mut change = profile_change(user.id, first_session, Profile::default());
    change.rotated_session_key = Some(key(KEY_C));
    let updated = store.update_profile(change).await.unwrap();
    assert_eq!(updated.profile, Profile::default());

    let rotated = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.session.session_key, key(KEY_C));
    let untouched = store
        .find_session(&app(), &digest(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.session.session_key, key(KEY_A));
}

#[tokio::test]
async fn rotate_session_key_alone_changes_only_that_session() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let first = login_for("oRotate2", 1, KEY_A);
    let first_session = first.session_id;
    let before = store.login(first).await.unwrap().user;
    store.login(login_for("oRotate2", 2, KEY_B)).await.unwrap();

    store
        .rotate_session_key(first_session, key(KEY_C))
        .await
        .unwrap();
    let rotated = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.session.session_key, key(KEY_C));
    // The user row is untouched (no profile write happened).
    assert_eq!(rotated.user, before);
    let other = store
        .find_session(&app(), &digest(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.session.session_key, key(KEY_B));

    assert_eq!(
        store.rotate_session_key(SessionId::new(), key(KEY_A)).await,
        Err(StoreError::NotFound)
    );
}

#[tokio::test]
async fn revoking_a_session_keeps_the_first_time_and_spares_the_others() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let first = login_for("oRevoke", 1, KEY_A);
    let first_session = first.session_id;
    store.login(first).await.unwrap();
    store.login(login_for("oRevoke", 2, KEY_B)).await.unwrap();

    let at = t0() + Duration::minutes(7);
    store.revoke_session(first_session, at).await.unwrap();
    store
        .revoke_session(first_session, at + Duration::minutes(1))
        .await
        .unwrap();
    let revoked = store
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.session.revoked_at, Some(at));
    let other = store
        .find_session(&app(), &digest(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.session.revoked_at, None);
    assert_eq!(
        store.revoke_session(SessionId::new(), at).await,
        Err(StoreError::NotFound)
    );
}

#[tokio::test]
async fn profile_update_of_a_missing_user_is_not_found() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let profile = Profile {
        nick_name: NickName::parse("Ghost").ok(),
        ..Profile::default()
    };
    let result = store
        .update_profile(profile_change(UserId::new(), SessionId::new(), profile))
        .await;
    assert_eq!(result, Err(StoreError::NotFound));
}

#[tokio::test]
async fn a_failed_login_leaves_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.login(login_for("oFirst", 7, KEY_A)).await.unwrap();

    // A new openid whose token digest collides with an existing session's.
    let result = store.login(login_for("oSecond", 7, KEY_B)).await;
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::Unexpected(_)), "{err:?}");
    assert!(!err.to_string().contains(KEY_B));
    assert_eq!(count(&dir, "users").await, 1);
    assert_eq!(count(&dir, "wechat_identities").await, 1);
    assert_eq!(count(&dir, "sessions").await, 1);

    // The earlier session is intact, and the writer connection is usable again.
    let first = store
        .find_session(&app(), &digest(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.user.open_id.as_str(), "oFirst");
    assert_eq!(first.session.session_key, key(KEY_A));
    let retry = store.login(login_for("oSecond", 8, KEY_B)).await.unwrap();
    assert!(retry.is_new_user);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let record = store.login(login_for("oDurable", 1, KEY_A)).await.unwrap();
    store.close().await;
    drop(store);

    let reopened = open(&dir).await;
    let found = reopened
        .find_session(&app(), &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, record.user);
    let again = reopened
        .login(login_for("oDurable", 2, KEY_B))
        .await
        .unwrap();
    assert!(!again.is_new_user);
    assert_eq!(again.user.id, record.user.id);
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
