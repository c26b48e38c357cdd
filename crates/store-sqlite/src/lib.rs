//! The SQLite adapter of wxlogin's [`UserStore`] port: users, WeChat identities and sessions in
//! one SQLite file, through sqlx.
//!
//! Must never depend on HTTP (poem, reqwest) or on another adapter; it knows the domain's ports
//! and model and nothing above them.
//!
//! How it stays correct under concurrency: one writer pool with a single connection (writes
//! queue in the pool instead of failing with `database is locked`), a separate reader pool for
//! the hot read (`find_session`), WAL so readers never wait for the writer, and every port
//! method that writes is one transaction.
//!
//! Storage conventions: ids are hyphenated UUID text; timestamps are UTC RFC 3339 text with
//! nine fractional digits (`2024-05-01T08:00:00.123456789Z`), so they round-trip exactly (to the
//! nanosecond) and sort as text; token digests are 32-byte BLOBs.

mod rows;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use wxlogin_domain::{
    AppId, AvatarUrl, Gender, LoginRecord, NewLogin, NickName, ProfileChange, ProfileText,
    SessionId, SessionKey, SessionRecord, StoreError, TokenDigest, User, UserStore,
};

use crate::rows::{IdentityRow, SessionRow, UserRow};

/// The schema, embedded at compile time (`build.rs` rebuilds when a migration changes).
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a request waits for a pooled connection before the store reports itself
/// unavailable (sqlx's default of 30 s would hold requests far past any client's patience).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long SQLite waits on a lock held by another connection (or process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers run in parallel under WAL; a few suffice for single-row indexed reads.
const READER_CONNECTIONS: u32 = 4;

/// The user columns, read through the identity of one app (aliases `u` and `i`).
macro_rules! user_columns {
    () => {
        "u.id, i.open_id, i.union_id, u.nick_name, u.avatar_url, u.gender, u.country, \
         u.province, u.city, u.language, u.phone_number, u.created_at, u.updated_at"
    };
}

/// The SQLite store. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct Sqlite {
    /// Exactly one connection: SQLite allows one writer at a time, so writers wait here, in
    /// order, for at most [`ACQUIRE_TIMEOUT`], instead of racing for the file lock.
    writer: SqlitePool,
    /// `query_only` connections for reads (the writer pool itself for in-memory databases).
    reader: SqlitePool,
}

impl Sqlite {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://wxlogin.db?mode=rwc`
    /// or `sqlite::memory:`, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unexpected(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = is_in_memory(url);

        let writer_options = if in_memory {
            // An in-memory database has no WAL; it lives as long as its connection does.
            base.clone()
        } else {
            base.clone()
                .journal_mode(SqliteJournalMode::Wal)
                // Safe under WAL (no corruption on power loss, at most the last commits lost)
                // and it spares an fsync per commit.
                .synchronous(SqliteSynchronous::Normal)
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the single connection open for good: the first login after a quiet spell
            // should not pay for opening the file, and an in-memory database would vanish.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // A local file connection does not go stale; a ping per acquire is pure overhead.
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(writer_options)
            .await
            .map_err(map_err)?;

        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unexpected(format!("SQLite migration failed: {e}")))?;

        let reader = if in_memory {
            // Separate connections to a shared-cache memory database lock each other at the
            // table level (no WAL), so reads share the writer's connection instead.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READER_CONNECTIONS)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // The writer has already switched the file to WAL (a persistent setting).
                .connect_with(base.pragma("query_only", "ON"))
                .await
                .map_err(map_err)?
        };

        tracing::debug!(in_memory, "SQLite store ready");
        Ok(Self { writer, reader })
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Begins a write transaction on the single writer connection.
    ///
    /// sqlx's plain `begin()` issues a deferred `BEGIN`; with one writer connection per process
    /// that would already serialise our writes. `BEGIN IMMEDIATE` also takes SQLite's write
    /// lock up front, so a transaction that reads before it writes (find-or-create) cannot be
    /// overtaken by another process sharing the file and then fail to upgrade its lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)
    }
}

impl UserStore for Sqlite {
    async fn login(&self, login: NewLogin) -> Result<LoginRecord, StoreError> {
        let now = ts(&login.now);
        let mut tx = self.begin_write().await?;

        // Race-free find-or-create: the write lock is held from BEGIN IMMEDIATE on, so no
        // other login can insert this identity between our read and our insert.
        let existing: Option<IdentityRow> = sqlx::query_as(
            "SELECT user_id, union_id FROM wechat_identities WHERE app_id = ? AND open_id = ?",
        )
        .bind(login.app_id.as_str())
        .bind(login.open_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;

        let (user_id, is_new_user) = match existing {
            None => {
                let user_id = uuid_text(login.new_user_id.as_uuid());
                sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES (?, ?, ?)")
                    .bind(&user_id)
                    .bind(&now)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&user_id)
                .bind(login.app_id.as_str())
                .bind(login.open_id.as_str())
                .bind(login.union_id.as_ref().map(|u| u.as_str()))
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                (user_id, true)
            }
            Some(identity) => {
                if identity.union_id.is_none()
                    && let Some(union_id) = &login.union_id
                {
                    set_union_id(&mut tx, &identity.user_id, &login.app_id, union_id.as_str())
                        .await?;
                }
                (identity.user_id, false)
            }
        };

        sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, app_id, token_digest, session_key, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(uuid_text(login.session_id.as_uuid()))
        .bind(&user_id)
        .bind(login.app_id.as_str())
        .bind(login.token_digest.as_bytes().as_slice())
        .bind(login.session_key.expose_base64())
        .bind(&now)
        .bind(ts(&login.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;

        let user = fetch_user(&mut tx, &user_id, &login.app_id)
            .await?
            .ok_or_else(|| StoreError::Unexpected("the user vanished during login".into()))?;
        tx.commit().await.map_err(map_err)?;
        Ok(LoginRecord { user, is_new_user })
    }

    async fn find_session(
        &self,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // One read through the token_digest unique index; the identity join uses the
        // (user_id, app_id) unique index.
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            "SELECT s.id AS session_id, s.token_digest, s.session_key, \
             s.created_at AS session_created_at, s.expires_at, s.revoked_at, ",
            user_columns!(),
            " FROM sessions s \
              JOIN users u ON u.id = s.user_id \
              JOIN wechat_identities i ON i.user_id = s.user_id AND i.app_id = s.app_id \
              WHERE s.token_digest = ? AND s.app_id = ?"
        ))
        .bind(digest.as_bytes().as_slice())
        .bind(app_id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.map(SessionRow::into_record).transpose()
    }

    async fn update_profile(&self, change: ProfileChange) -> Result<User, StoreError> {
        let user_id = uuid_text(change.user_id.as_uuid());
        let p = &change.profile.0;
        let mut tx = self.begin_write().await?;

        // COALESCE keeps the stored value wherever the update has none.
        let updated = sqlx::query(
            "UPDATE users SET \
             nick_name = COALESCE(?, nick_name), \
             avatar_url = COALESCE(?, avatar_url), \
             gender = COALESCE(?, gender), \
             country = COALESCE(?, country), \
             province = COALESCE(?, province), \
             city = COALESCE(?, city), \
             language = COALESCE(?, language), \
             updated_at = ? \
             WHERE id = ?",
        )
        .bind(p.nick_name.as_ref().map(NickName::as_str))
        .bind(p.avatar_url.as_ref().map(AvatarUrl::as_str))
        .bind(p.gender.map(Gender::code))
        .bind(p.country.as_ref().map(ProfileText::as_str))
        .bind(p.province.as_ref().map(ProfileText::as_str))
        .bind(p.city.as_ref().map(ProfileText::as_str))
        .bind(p.language.as_ref().map(ProfileText::as_str))
        .bind(ts(&change.now))
        .bind(&user_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if updated.rows_affected() == 0 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::NotFound);
        }

        if let Some(union_id) = &change.union_id {
            set_union_id(&mut tx, &user_id, &change.app_id, union_id.as_str()).await?;
        }

        if let Some(key) = &change.rotated_session_key {
            let rotated =
                sqlx::query("UPDATE sessions SET session_key = ? WHERE id = ? AND user_id = ?")
                    .bind(key.expose_base64())
                    .bind(uuid_text(change.session_id.as_uuid()))
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            if rotated.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }

        let user = fetch_user(&mut tx, &user_id, &change.app_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(map_err)?;
        Ok(user)
    }

    async fn rotate_session_key(
        &self,
        session_id: SessionId,
        key: SessionKey,
    ) -> Result<(), StoreError> {
        let rotated = sqlx::query("UPDATE sessions SET session_key = ? WHERE id = ?")
            .bind(key.expose_base64())
            .bind(uuid_text(session_id.as_uuid()))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        if rotated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn revoke_session(
        &self,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // COALESCE keeps the first revocation time when a session is revoked twice.
        let revoked =
            sqlx::query("UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(ts(&now))
                .bind(uuid_text(session_id.as_uuid()))
                .execute(&self.writer)
                .await
                .map_err(map_err)?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
            .map_err(map_err)
    }
}

/// Records the unionid of a user's identity in `app_id`, unless one is already known (a
/// unionid never changes, so the first one stands).
async fn set_union_id(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    user_id: &str,
    app_id: &AppId,
    union_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE wechat_identities SET union_id = ? \
         WHERE user_id = ? AND app_id = ? AND union_id IS NULL",
    )
    .bind(union_id)
    .bind(user_id)
    .bind(app_id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// The user with its identity in `app_id`, read inside the caller's transaction.
async fn fetch_user(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    user_id: &str,
    app_id: &AppId,
) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u JOIN wechat_identities i ON i.user_id = u.id AND i.app_id = ? \
          WHERE u.id = ?"
    ))
    .bind(app_id.as_str())
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    row.map(UserRow::into_user).transpose()
}

/// How ids are stored: hyphenated text (sqlx would bind a bare `Uuid` as a 16-byte BLOB).
fn uuid_text(id: &uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

/// How timestamps are stored: fixed-width RFC 3339 in UTC with nanoseconds (see the crate docs).
fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Whether `url` names an in-memory database (`sqlite::memory:` or `?mode=memory`).
fn is_in_memory(url: &str) -> bool {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// Maps sqlx errors to the port's. Texts never carry bound values (session keys, digests):
/// SQLite's own messages name constraints and columns, not values, and decode errors, which
/// may quote a value, are reported by column only.
fn map_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        E::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        E::WorkerCrashed => StoreError::Unavailable("the SQLite worker thread crashed".into()),
        E::Io(io) => StoreError::Unavailable(format!("I/O error: {io}")),
        E::Database(db) if is_busy(db.code().as_deref()) => StoreError::Unavailable(format!(
            "the database stayed locked past the busy timeout: {}",
            db.message()
        )),
        E::Database(db) => StoreError::Unexpected(format!("database error: {}", db.message())),
        E::ColumnDecode { index, .. } => {
            StoreError::Unexpected(format!("could not decode column {index}"))
        }
        E::Decode(_) => StoreError::Unexpected("could not decode a value".into()),
        E::Encode(_) => StoreError::Unexpected("could not encode a value".into()),
        other => StoreError::Unexpected(other.to_string()),
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), in any of their extended forms (the primary code is
/// the low byte): another process held the file past the busy timeout. sqlx has no helper
/// for these as it has for unique violations, so the code is read here.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_codes_are_recognised() {
        for code in ["5", "6", "261", "517", "773", "262"] {
            assert!(is_busy(Some(code)), "{code}");
        }
        for code in ["2067", "19", "1", "x"] {
            assert!(!is_busy(Some(code)), "{code}");
        }
        assert!(!is_busy(None));
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        assert!(matches!(
            map_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::Io(std::io::Error::other("disk gone"))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Unexpected(_)
        ));
    }

    #[test]
    fn decode_errors_do_not_quote_values() {
        let e = sqlx::Error::Decode("invalid datetime: SECRETVALUE".into());
        assert!(!map_err(e).to_string().contains("SECRETVALUE"));
    }

    #[test]
    fn in_memory_urls_are_recognised() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite://shared?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://wxlogin.db?mode=rwc"));
        assert!(!is_in_memory("sqlite:data/memory.db"));
    }

    #[test]
    fn timestamps_are_fixed_width_and_sortable() {
        let a = DateTime::<Utc>::from_timestamp(1_700_000_000, 5).expect("valid");
        let b = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_789).expect("valid");
        assert_eq!(ts(&a), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(ts(&a).len(), ts(&b).len());
        assert!(ts(&a) < ts(&b));
    }
}
