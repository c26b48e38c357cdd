//! The SQLite adapter of wxlogin's [`UserStore`](wxlogin_domain::UserStore) port: users,
//! WeChat identities and sessions in one SQLite file, through sqlx.
//!
//! The port's methods, their SQL and the row mapping are shared with the Postgres store in
//! `wxlogin-store-sql`; [`Sqlite`] is that crate's `Store` over [`SqliteBackend`]. This crate
//! keeps what is SQLite's own: the two pools and their [`SqliteOptions`], `BEGIN IMMEDIATE`,
//! the find-then-insert of a first login, busy/locked classification and text timestamps.
//!
//! Must never depend on HTTP (poem, reqwest), WeChat crates or another store crate; it knows
//! the domain, the shared SQL crate and nothing above them.
//!
//! How it stays correct under concurrency: one writer pool with a single connection (writes
//! queue in the pool instead of failing with `database is locked`), a separate reader pool for
//! the hot read (`find_session`), WAL so readers never wait for the writer, and every port
//! method that writes is one transaction.
//!
//! Storage conventions: ids are hyphenated UUID text; timestamps are UTC RFC 3339 text with
//! nine fractional digits (`2024-05-01T08:00:00.123456789Z`), so they round-trip exactly (to the
//! nanosecond) and sort as text; token digests are 32-byte BLOBs.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use uuid::fmt::Hyphenated;
use wxlogin_domain::{Gender, LoginRecord, NewLogin, StoreError};
use wxlogin_store_sql::{
    Backend, Background, Dialect, Pools, Queries, Store, classify, embedded_migrator, options,
};

/// The session cache's settings (`Store::with_session_cache`).
pub use wxlogin_store_sql::cache::CacheSettings;

/// The schema, embedded at compile time (`wxlogin_store_sql::embedded_migrator`).
static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| embedded_migrator("sqlite"));

/// The migrator of this store's schema (`migrations/sqlite`), as the store runs it on open.
/// Tests use it to build databases at a given version.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// How the store opens its connections. [`Default`] holds the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Read-only connections beside the single writer (default 4). Readers run in parallel
    /// under WAL, and a few suffice for single-row indexed reads. At least 1; unused for an
    /// in-memory database, whose reads share the writer's connection.
    pub reader_connections: u32,
    /// How long a request waits for a pooled connection, the writer's included, before the
    /// store reports itself [`StoreError::Unavailable`] (default 3 s). sqlx's default of 30 s
    /// would hold requests far past any client's patience. Longer than zero.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a lock held by another connection, such as a second process on
    /// the same file, before the statement fails as unavailable (default 5 s). Whole
    /// milliseconds (a fraction is rounded up), at most `i32::MAX` ms; zero means never wait.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            reader_connections: 4,
            acquire_timeout: Duration::from_secs(3),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteOptions {
    /// Checks every value; the error names the option. [`Sqlite::connect_with`] calls it, and
    /// the server may call it first to refuse a bad configuration at start.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.busy_timeout_millis().map(drop)
    }

    /// The busy timeout in whole milliseconds, after checking every other value.
    fn busy_timeout_millis(&self) -> Result<u64, StoreError> {
        options::at_least_one("SqliteOptions::reader_connections", self.reader_connections)?;
        options::positive("SqliteOptions::acquire_timeout", self.acquire_timeout)?;
        options::millis("SqliteOptions::busy_timeout", self.busy_timeout)
    }
}

/// The SQLite store: [`Sqlite::connect`] or [`Sqlite::connect_with`] a URL such as
/// `sqlite://wxlogin.db?mode=rwc` or `sqlite::memory:`. Cheap to clone: clones share the pools.
pub type Sqlite = Store<SqliteBackend>;

/// What the SQLite store supplies to the shared code: its two pools, `BEGIN IMMEDIATE`, the
/// find-then-insert of a first login, and how values are bound (see the crate docs).
pub enum SqliteBackend {}

impl Dialect for SqliteBackend {
    type Db = sqlx::Sqlite;
    /// sqlx would bind a bare `Uuid` as a 16-byte BLOB; the schema keeps hyphenated text.
    type Id = Hyphenated;
    type Timestamp = String;
    type Gender = i64;

    /// `BEGIN IMMEDIATE` already runs one login at a time.
    const LOCK_UNION_ID: Option<&'static str> = None;
    const RETURNING_IDENTITY: &'static str = wxlogin_store_sql::RETURNING_IDENTITY;
    const LINKED_IDENTITY: &'static str = wxlogin_store_sql::LINKED_IDENTITY;
    const FINISH_LOGIN: &'static str = wxlogin_store_sql::FINISH_LOGIN_STATEMENTS;

    /// Fixed-width RFC 3339 in UTC with nanoseconds (see the crate docs).
    fn timestamp(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    fn gender(gender: Gender) -> i64 {
        gender.code()
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Maps sqlx errors to the port's: SQLite's own errors are unavailable when the file stayed
    /// locked past the busy timeout, unexpected otherwise. Texts never carry bound values:
    /// SQLite's messages name constraints and columns, not values.
    fn map_err(e: sqlx::Error) -> StoreError {
        classify(e, |db| {
            if is_busy(db.code().as_deref()) {
                StoreError::Unavailable(format!(
                    "the database stayed locked past the busy timeout: {}",
                    db.message()
                ))
            } else {
                StoreError::Unexpected(format!("database error: {}", db.message()))
            }
        })
    }
}

/// Where a SQLite database is: a file (created when missing) or memory, parsed once from a
/// URL such as `sqlite://wxlogin.db?mode=rwc` or `sqlite::memory:`.
#[derive(Debug, Clone)]
pub struct SqliteLocation {
    options: SqliteConnectOptions,
    in_memory: bool,
}

impl SqliteLocation {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unexpected(format!("invalid SQLite URL: {e}")))?;
        Ok(Self {
            options,
            in_memory: is_in_memory(url),
        })
    }

    /// Whether the database lives in memory (`sqlite::memory:` or `?mode=memory`).
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }
}

impl Backend for SqliteBackend {
    type Options = SqliteOptions;
    type Location = SqliteLocation;

    fn locate(url: &str) -> Result<SqliteLocation, StoreError> {
        SqliteLocation::parse(url)
    }

    /// Write transactions run on the single writer connection. sqlx's plain `begin()` issues a
    /// deferred `BEGIN`; with one writer connection per process that would already serialise
    /// our writes. `BEGIN IMMEDIATE` also takes SQLite's write lock up front, so a transaction
    /// that reads before it writes (find-or-create) cannot be overtaken by another process
    /// sharing the file and then fail to upgrade its lock.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    /// One writer at a time, and a commit writes every page the transaction touched to the
    /// WAL: logins arriving together share one transaction and one write of their pages, one
    /// batch at a time.
    const LOGIN_WRITERS: usize = 1;

    /// One server per database file: every write goes through the one process whose cache
    /// it forgets.
    const NOTIFY: Option<&'static str> = None;

    /// Opens (creating if missing) the database, at once: a file that cannot be opened is a
    /// configuration error the server reports at start. The writer pool
    /// has exactly one connection: SQLite allows one writer at a time, so writers wait there,
    /// in order, for at most [`SqliteOptions::acquire_timeout`], instead of racing for the
    /// file lock. Readers are `query_only` connections (the writer pool itself for in-memory
    /// databases).
    async fn pools(
        location: &SqliteLocation,
        options: SqliteOptions,
    ) -> Result<Pools<sqlx::Sqlite>, StoreError> {
        let busy_timeout = Duration::from_millis(options.busy_timeout_millis()?);
        let base = location
            .options
            .clone()
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let in_memory = location.in_memory;

        let writer_options = if in_memory {
            // An in-memory database has no WAL; it lives as long as its connection does.
            base.clone()
        } else {
            base.clone()
                .journal_mode(SqliteJournalMode::Wal)
                // Safe under WAL (no corruption on power loss, at most the last commits lost)
                // and it spares an fsync per commit.
                .synchronous(SqliteSynchronous::Normal)
                // Checkpoints run in the background (`checkpoint_in_background`); the writer
                // checkpoints itself only if the WAL grows past this many pages anyway.
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
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
            .acquire_timeout(options.acquire_timeout)
            .connect_with(writer_options)
            .await
            .map_err(Self::map_err)?;

        let reader = if in_memory {
            // Separate connections to a shared-cache memory database lock each other at the
            // table level (no WAL), so reads share the writer's connection instead.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.reader_connections)
                .test_before_acquire(false)
                .acquire_timeout(options.acquire_timeout)
                // The writer has already switched the file to WAL (a persistent setting).
                .connect_with(base.clone().pragma("query_only", "ON"))
                .await
                .map_err(Self::map_err)?
        };

        let background = if in_memory {
            None
        } else {
            let checkpointer = SqliteConnection::connect_with(&base)
                .await
                .map_err(Self::map_err)?;
            let task = tokio::spawn(checkpoint_in_background(checkpointer, writer.clone()));
            Some(Arc::new(Background::new(task.abort_handle())))
        };

        tracing::debug!(in_memory, "SQLite store open");
        Ok(Pools {
            reader,
            writer,
            background,
        })
    }

    /// Applies the migrations through the writer, the one connection that may write.
    async fn migrate(pools: &Pools<sqlx::Sqlite>) -> Result<(), StoreError> {
        MIGRATOR
            .run(&pools.writer)
            .await
            .map_err(|e| StoreError::Unexpected(format!("SQLite migration failed: {e}")))
    }

    /// Race-free find-then-insert: the write lock is held from `BEGIN IMMEDIATE` on, so no
    /// other login can insert this identity between the caller's read and this insert.
    /// Always, in one trip to the connection's worker thread per
    /// [`wxlogin_store_sql::LOGINS_PER_QUERY`] logins ([`wxlogin_store_sql::LOGIN_STATEMENTS`]
    /// for each, run by the worker in one go): writers run one at a time, so nothing can come
    /// between the statements.
    async fn login_at_once(
        conn: &mut SqliteConnection,
        logins: &[&NewLogin],
    ) -> Result<Option<Vec<(LoginRecord, bool)>>, StoreError> {
        let mut done = Vec::with_capacity(logins.len());
        for chunk in logins.chunks(wxlogin_store_sql::LOGINS_PER_QUERY) {
            let statements = wxlogin_store_sql::login_statements(chunk.len());
            done.extend(Queries::<Self>::login_in_one(&mut *conn, statements, chunk).await?);
        }
        Ok(Some(done))
    }

    /// The step-by-step login's user creation. Not reached while [`Self::login_at_once`]
    /// answers every login; the trait requires it, and it stays correct should that change.
    async fn create_user(
        conn: &mut SqliteConnection,
        login: &NewLogin,
    ) -> Result<(Hyphenated, bool), StoreError> {
        // Both inserts in one query (one trip to the connection's worker thread); the row is
        // the identity's `RETURNING`, absent if the identity existed.
        let user_id = Self::Id::from(*login.new_user_id.as_uuid());
        let inserted = sqlx::query(
            "INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2); \
             INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
             VALUES ($1, $3, $4, $5, $2) \
             ON CONFLICT (app_id, open_id) DO NOTHING \
             RETURNING user_id",
        )
        .bind(user_id)
        .bind(Self::timestamp(login.now))
        .bind(login.app_id.as_str())
        .bind(login.open_id.as_str())
        .bind(login.union_id.as_ref().map(|u| u.as_str()))
        .fetch_optional(&mut *conn)
        .await
        .map_err(Self::map_err)?;
        if inserted.is_none() {
            return Err(StoreError::Unexpected(
                "an identity appeared while the write lock was held".into(),
            ));
        }
        Ok((user_id, true))
    }
}

/// The WAL size, in pages, past which the writer checkpoints at commit: a safety net, about
/// 80 MB, reached only if the background checkpoints fall behind.
const WAL_AUTOCHECKPOINT_PAGES: &str = "20000";

/// How often the background task checkpoints the WAL.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Copies the WAL back into the database file every [`CHECKPOINT_INTERVAL`] from a
/// connection of its own, until the writer's pool is closed or the store is dropped (the task
/// is aborted then, see `Pools::background`). SQLite's own checkpoint runs on
/// the committing writer once the WAL passes 1,000 pages, and with its two fsyncs it stalled
/// every write behind it for tens of milliseconds under load (`docs/benchmarks.md`,
/// "Optimisations"). A `PASSIVE` checkpoint never waits for the writer or readers: it copies
/// what no reader still needs and leaves the rest for the next round.
async fn checkpoint_in_background(mut conn: SqliteConnection, writer: sqlx::SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if writer.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::debug!(error = %e, "background WAL checkpoint failed; retried next round");
        }
    }
    let _ = conn.close().await;
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
    fn options_are_checked_and_named() {
        assert_eq!(SqliteOptions::default().validate(), Ok(()));
        for (options, name) in [
            (
                SqliteOptions {
                    reader_connections: 0,
                    ..SqliteOptions::default()
                },
                "reader_connections",
            ),
            (
                SqliteOptions {
                    acquire_timeout: Duration::ZERO,
                    ..SqliteOptions::default()
                },
                "acquire_timeout",
            ),
            (
                SqliteOptions {
                    busy_timeout: Duration::from_secs(30 * 24 * 3600),
                    ..SqliteOptions::default()
                },
                "busy_timeout",
            ),
        ] {
            let e = options.validate().expect_err(name);
            assert!(matches!(e, StoreError::Unexpected(_)), "{e:?}");
            assert!(e.to_string().contains(name), "{e}");
        }
        let never_wait = SqliteOptions {
            busy_timeout: Duration::ZERO,
            ..SqliteOptions::default()
        };
        assert_eq!(never_wait.validate(), Ok(()));
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
        let ts = SqliteBackend::timestamp;
        assert_eq!(ts(a), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(ts(a).len(), ts(b).len());
        assert!(ts(a) < ts(b));
    }
}
