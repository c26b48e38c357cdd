//! The PostgreSQL adapter of wxlogin's [`UserStore`](wxlogin_domain::UserStore) port: users,
//! WeChat identities and sessions in PostgreSQL, through sqlx. Several instances may share one
//! database.
//!
//! The port's methods, their SQL and the row mapping are shared with the SQLite store in
//! `wxlogin-store-sql`; [`Postgres`] is that crate's `Store` over [`PostgresBackend`]. This
//! crate keeps what is PostgreSQL's own: the pool and its [`PostgresOptions`], READ COMMITTED
//! transactions, the login upsert, SQLSTATE classification and microsecond timestamps.
//!
//! Must never depend on HTTP (poem, reqwest), WeChat crates or another store crate; it knows
//! the domain, the shared SQL crate and nothing above them.
//!
//! How it stays correct under concurrency: every port method that writes is one transaction at
//! READ COMMITTED (requested explicitly, whatever the server's default), and the find-or-create
//! of a login is an upsert arbitrated by the `UNIQUE (app_id, open_id)` constraint (see
//! [`PostgresBackend::create_user`](Backend::create_user)), so racing first logins of one
//! openid neither create two users nor fail; no retry loop, and no serialization failure can
//! arise.
//!
//! Storage conventions: native `uuid` ids, `timestamptz` timestamps, 32-byte `bytea` token
//! digests. PostgreSQL keeps timestamps to the microsecond, while the service's values come
//! from `Utc::now()` with nanoseconds: this adapter truncates every timestamp to whole
//! microseconds before binding it (never rounding, so an expiry never moves later), and a
//! timestamp read back equals the one written, truncated to the microsecond. The store
//! contract (`wxlogin-store-contract`) allows exactly that.

pub mod testing;

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions, PgQueryResult};
use uuid::Uuid;
use wxlogin_domain::{Gender, NewLogin, StoreError};
use wxlogin_store_sql::cache::{CHANNEL, SessionCache};
use wxlogin_store_sql::{
    Backend, Background, Dialect, Pools, Queries, Store, classify, embedded_migrator, options,
};

/// The session cache's settings (`Store::with_session_cache`).
pub use wxlogin_store_sql::cache::CacheSettings;

/// How often the listener proves its connection works: it sends a probe through the main pool
/// and must hear a notification (its own or another instance's) within twice this.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Turns the session cache dark when the listener task ends, however it ends.
struct DarkOnDrop(Arc<SessionCache>);

impl Drop for DarkOnDrop {
    fn drop(&mut self) {
        self.0.set_live(false);
    }
}

/// Sends a probe notification through `probes` (the main pool: it proves the database takes
/// writes too) and waits up to `within` for the listener to hear anything.
async fn hears(
    probes: &sqlx::PgPool,
    cache: &SessionCache,
    listener: &mut PgListener,
    within: Duration,
) -> bool {
    if probe(probes).await.is_err() {
        return false;
    }
    match tokio::time::timeout(within, listener.try_recv()).await {
        Ok(Ok(Some(notification))) => {
            cache.apply(notification.payload());
            true
        }
        _ => false,
    }
}

async fn probe(probes: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, 'n:probe')")
        .bind(CHANNEL)
        .execute(probes)
        .await
        .map(drop)
}

/// Feeds the notifications to the cache until the channel is lost: the connection fails,
/// nothing was heard for two probe periods (a task sends a probe every period; one that
/// cannot be sent is not heard either), or a write's echo did not come back. A receive is
/// only ever cut short when the listener is given up anyway.
async fn listen_while_alive(
    probes: &sqlx::PgPool,
    cache: &SessionCache,
    listener: &mut PgListener,
) {
    let prober = tokio::spawn({
        let probes = probes.clone();
        async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if let Err(e) = probe(&probes).await {
                    tracing::debug!(error = %e, "session cache: a probe could not be sent");
                }
            }
        }
    });
    while let Ok(Ok(Some(notification))) =
        tokio::time::timeout(PROBE_EVERY * 2, listener.try_recv()).await
    {
        cache.apply(notification.payload());
        if cache.take_suspicion() {
            break;
        }
    }
    prober.abort();
}

/// The `application_name` of the session cache's listener connection.
pub const LISTENER_NAME: &str = "wxlogin-listener";

/// A listener on the session cache's channel, on a connection of its own.
async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection must be reported at once (the cache goes dark then), not after a
    // reconnection attempt that waits for a database that is away.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The schema, embedded at compile time (`wxlogin_store_sql::embedded_migrator`).
static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| embedded_migrator("postgres"));

/// The migrator of this store's schema (`migrations/postgres`), as the store runs it on open.
/// Tests use it to build databases at a given version.
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// Prepared statements each connection keeps (sqlx's LRU cache). The adapter issues about
/// twenty distinct statements, so every one stays prepared for the connection's lifetime.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// How the pool is sized and how long a request may wait. [`Default`] holds the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The most connections this instance opens (default 16). PostgreSQL's own limit, 100 by
    /// default, is shared by every instance. At least 1.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection (or for a refused connection to be
    /// retried) before the store reports itself [`StoreError::Unavailable`] (default 3 s).
    /// sqlx's default of 30 s would hold requests far past any client's patience. Longer than
    /// zero.
    pub acquire_timeout: Duration,
    /// The longest a statement may run, PostgreSQL's `statement_timeout` (default 5 s; logins
    /// and lookups take milliseconds). Past it the statement fails as unavailable. Whole
    /// milliseconds (a fraction is rounded up), at most `i32::MAX` ms; zero turns the limit
    /// off (PostgreSQL's meaning).
    pub statement_timeout: Duration,
    /// The longest a statement may wait for a lock, PostgreSQL's `lock_timeout` (default 3 s),
    /// so an upsert stuck behind a wedged transaction answers in seconds. Same range as
    /// `statement_timeout`; zero turns the limit off.
    pub lock_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(3),
        }
    }
}

impl PostgresOptions {
    /// Checks every value; the error names the option. [`Postgres::connect_with`] calls it,
    /// and the server may call it first to refuse a bad configuration at start.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.session_settings().map(drop)
    }

    /// The session settings every connection starts with, after checking every value.
    fn session_settings(&self) -> Result<[(&'static str, String); 2], StoreError> {
        options::at_least_one("PostgresOptions::max_connections", self.max_connections)?;
        options::positive("PostgresOptions::acquire_timeout", self.acquire_timeout)?;
        let ms = |option, d| options::millis(option, d).map(|ms| format!("{ms}ms"));
        Ok([
            (
                "statement_timeout",
                ms("PostgresOptions::statement_timeout", self.statement_timeout)?,
            ),
            (
                "lock_timeout",
                ms("PostgresOptions::lock_timeout", self.lock_timeout)?,
            ),
        ])
    }
}

/// The PostgreSQL store: [`Postgres::connect`] or [`Postgres::connect_with`] a URL such as
/// `postgres://user:password@host:port/database`. Cheap to clone: clones share the pool.
pub type Postgres = Store<PostgresBackend>;

/// What the Postgres store supplies to the shared code: its pool, READ COMMITTED
/// transactions, the upsert of a first login, and how values are bound (see the crate docs).
pub enum PostgresBackend {}

impl Dialect for PostgresBackend {
    type Db = sqlx::Postgres;
    /// A transaction-scoped advisory lock keyed by the unionid's 64-bit hash (a collision
    /// only makes two unrelated first logins wait for each other).
    const LOCK_UNION_ID: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");
    const RETURNING_IDENTITY: &'static str = "SELECT i.user_id, i.union_id \
         FROM wechat_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.app_id = $1 AND i.open_id = $2 FOR KEY SHARE OF u";
    const LINKED_IDENTITY: &'static str = "SELECT i.user_id, i.union_id \
         FROM wechat_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.union_id = $1 ORDER BY i.created_at, i.app_id LIMIT 1 FOR KEY SHARE OF u";
    const FINISH_LOGIN: &'static str = wxlogin_store_sql::FINISH_LOGIN_CTE;
    type Id = Uuid;
    type Timestamp = DateTime<Utc>;
    /// The schema's `smallint`.
    type Gender = i16;

    fn timestamp(t: DateTime<Utc>) -> DateTime<Utc> {
        micros(t)
    }

    fn gender(gender: Gender) -> i16 {
        match gender {
            Gender::Unknown => 0,
            Gender::Male => 1,
            Gender::Female => 2,
        }
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Maps sqlx errors to the port's, PostgreSQL's own errors by SQLSTATE. Texts never carry
    /// bound values (session keys, digests, openids): PostgreSQL's primary messages name
    /// constraints, columns and types, and the detail field (which quotes the offending row or
    /// key) is never used; messages of data exceptions (class 22), which may quote an input
    /// value, are left out entirely.
    fn map_err(e: sqlx::Error) -> StoreError {
        classify(e, |db| {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.is_unique_violation() {
                StoreError::Unexpected(format!(
                    "conflict on unique constraint {}",
                    db.constraint().unwrap_or("(unnamed)")
                ))
            } else if is_unavailable_code(&code) {
                StoreError::Unavailable(format!("database error {code}: {}", db.message()))
            } else if code.starts_with("22") {
                StoreError::Unexpected(format!("database error {code} (data exception)"))
            } else {
                StoreError::Unexpected(format!("database error {code}: {}", db.message()))
            }
        })
    }
}

/// Where the Postgres database is, parsed once from a URL such as
/// `postgres://user:password@host:5432/db?sslmode=require`. `Debug` shows the host and the
/// database, never the password.
#[derive(Clone)]
pub struct PostgresLocation(PgConnectOptions);

impl PostgresLocation {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        PgConnectOptions::from_str(url)
            // sqlx's URL errors name the problem, not the URL (which may carry a password).
            .map(Self)
            .map_err(|e| StoreError::Unexpected(format!("invalid Postgres URL: {e}")))
    }
}

impl std::fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLocation")
            .field("host", &self.0.get_host())
            .field("port", &self.0.get_port())
            .field("database", &self.0.get_database())
            .finish_non_exhaustive()
    }
}

impl Backend for PostgresBackend {
    /// READ COMMITTED, named explicitly so a server configured with
    /// `default_transaction_isolation = serializable` cannot turn racing logins into
    /// serialization failures: the login upsert is correct at READ COMMITTED (each statement
    /// sees what committed before it started, and `ON CONFLICT` waits for a concurrent insert
    /// of the same key to finish).
    const BEGIN_WRITE: &'static str = "BEGIN ISOLATION LEVEL READ COMMITTED";

    /// A commit waits for its WAL flush, and a transaction costs two round trips of its own:
    /// logins arriving together share them, a few batches at a time on connections of their
    /// own (the rest of the pool serves everything else).
    const LOGIN_WRITERS: usize = 4;

    /// Delivered at the write's commit to every instance's listener (see [`watch`](Self::watch)).
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('wxlogin_sessions', $1)");

    /// A task that listens on the session cache's channel with a connection of its own (one
    /// beyond `max_connections`, named [`LISTENER_NAME`]): the
    /// cache is live while it listens; when the connection is lost the cache goes dark (every
    /// lookup reads the database, what was cached is dropped) until the task listens again,
    /// retrying from 250 ms doubling to 5 s.
    fn watch(pools: &Pools<sqlx::Postgres>, cache: Arc<SessionCache>) -> Option<Background> {
        // A pool of its own, of one connection: the listener must never take one of the
        // connections requests wait for.
        let options = (*pools.writer.connect_options())
            .clone()
            .application_name(LISTENER_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let probes = pools.writer.clone();
        let task = tokio::spawn(async move {
            // Dark whenever this task is not listening: also if it panics or is aborted.
            let _dark = DarkOnDrop(Arc::clone(&cache));
            let mut pause = Duration::from_millis(250);
            loop {
                match listen(&pool).await {
                    Ok(mut listener) => {
                        // Live only once a probe came back: a LISTEN that hears nothing (a
                        // pooler in transaction mode) must not make the cache live.
                        if hears(&probes, &cache, &mut listener, PROBE_EVERY).await {
                            cache.set_live(true);
                            pause = Duration::from_millis(250);
                            listen_while_alive(&probes, &cache, &mut listener).await;
                            tracing::warn!("session cache off: its notification channel was lost");
                        }
                        cache.set_live(false);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "session cache: cannot listen yet");
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
        Some(Background::new(task.abort_handle()))
    }

    type Options = PostgresOptions;
    type Location = PostgresLocation;

    fn locate(url: &str) -> Result<PostgresLocation, StoreError> {
        PostgresLocation::parse(url)
    }

    /// Builds the pool without connecting: connections are opened on first use, and again
    /// after the database went away, so the pool outlives outages and a server may start
    /// before its database.
    async fn pools(
        location: &PostgresLocation,
        options: PostgresOptions,
    ) -> Result<Pools<sqlx::Postgres>, StoreError> {
        let settings = options.session_settings()?;
        let connect_options = location
            .0
            .clone()
            .application_name("wxlogin")
            // On by default in sqlx; set explicitly because the hot paths rely on it: each
            // connection parses a statement once, later executions only bind and run.
            .statement_cache_capacity(STATEMENT_CACHE_CAPACITY)
            // Bounded waits inside the server too: a statement stuck behind a lock (an upsert
            // waiting on a wedged transaction) answers 503 in seconds instead of hanging the
            // request. The pool's acquire timeout bounds only the wait for a connection.
            .options(settings);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect_options);
        // One pool serves reads and writes alike: PostgreSQL has no single-writer rule.
        Ok(Pools {
            reader: pool.clone(),
            writer: pool,
            background: None,
        })
    }

    /// Connects and applies the migrations. sqlx holds a PostgreSQL advisory lock while it
    /// migrates, so several instances starting at once apply each migration exactly once.
    async fn migrate(pools: &Pools<sqlx::Postgres>) -> Result<(), StoreError> {
        MIGRATOR.run(&pools.writer).await.map_err(map_migrate_err)?;
        tracing::debug!(
            max_connections = pools.writer.options().get_max_connections(),
            "Postgres store ready"
        );
        Ok(())
    }

    /// The insert half of the login upsert, race-free without retries: insert the user and
    /// the identity (one statement) with `ON CONFLICT (app_id, open_id) DO NOTHING RETURNING`. If another login
    /// inserted the same identity meanwhile, PostgreSQL waits for that transaction: should it
    /// commit, nothing is inserted and we delete our user row (which nobody else can see yet)
    /// and read the winner's identity, which the next statement's snapshot shows; should it
    /// roll back, our insert goes through. All of it inside the login's one transaction.
    async fn create_user(
        conn: &mut PgConnection,
        login: &NewLogin,
    ) -> Result<(Uuid, bool), StoreError> {
        let new_user_id = *login.new_user_id.as_uuid();

        // Two rounds cover every interleaving but one: the winner of the race erased its
        // account between our insert and our read. The second round then creates the user.
        for round in 0..2 {
            let inserted = if round == 0 {
                // The user and its identity in one statement (one round trip); the identity's
                // foreign key is checked at the end of the statement, when the user exists.
                sqlx::query(
                    "WITH u AS (INSERT INTO users (id, created_at, updated_at) \
                     VALUES ($1, $2, $2) RETURNING id) \
                     INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
                     SELECT u.id, $3, $4, $5, $2 FROM u \
                     ON CONFLICT (app_id, open_id) DO NOTHING \
                     RETURNING user_id",
                )
                .bind(new_user_id)
                .bind(micros(login.now))
                .bind(login.app_id.as_str())
                .bind(login.open_id.as_str())
                .bind(login.union_id.as_ref().map(|u| u.as_str()))
                .fetch_optional(&mut *conn)
                .await
                .map_err(Self::map_err)?
                .is_some()
            } else {
                Sql::insert_identity(conn, new_user_id, login).await?
            };
            if inserted {
                return Ok((new_user_id, true));
            }

            // Another login won the race and has committed (ON CONFLICT waited for it); this
            // statement's fresh snapshot sees its identity.
            if let Some(user_id) = Sql::returning_user(conn, login).await? {
                // Our user row was never referenced nor visible to anyone else.
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(new_user_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::map_err)?;
                return Ok((user_id, false));
            }
        }
        Err(StoreError::Unexpected(
            "the identity kept appearing and vanishing during login".into(),
        ))
    }
}

type Sql = Queries<PostgresBackend>;

/// A timestamp as PostgreSQL stores it: truncated to whole microseconds (see the crate docs).
/// Truncating here rather than leaving it to the driver keeps the rule in one visible place.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// SQLSTATEs that mean the server cannot serve us right now, rather than that our statement
/// is wrong: connection exceptions (class 08), insufficient resources (class 53: too many
/// connections, disk full, out of memory), the server shutting down or starting up
/// (57P01–57P03), and the statement or lock timeouts of [`PostgresOptions`] (57014
/// query_canceled, 55P03 lock_not_available). sqlx has no `ErrorKind` for these, so the codes
/// are matched here; conflicts are recognised with `is_unique_violation()` instead.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "55P03")
}

/// Maps a migration failure; a database that cannot be reached stays `Unavailable`.
fn map_migrate_err(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => match PostgresBackend::map_err(e) {
            StoreError::Unexpected(m) => {
                StoreError::Unexpected(format!("Postgres migration failed: {m}"))
            }
            other => other,
        },
        other => StoreError::Unexpected(format!("Postgres migration failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default options with one change.
    fn changed(change: impl FnOnce(&mut PostgresOptions)) -> PostgresOptions {
        let mut options = PostgresOptions::default();
        change(&mut options);
        options
    }

    #[test]
    fn timeouts_become_session_settings_in_milliseconds() {
        let defaults = PostgresOptions::default()
            .session_settings()
            .expect("the defaults are valid");
        assert_eq!(
            defaults,
            [
                ("statement_timeout", "5000ms".to_owned()),
                ("lock_timeout", "3000ms".to_owned())
            ]
        );
        let short = changed(|o| {
            o.statement_timeout = Duration::ZERO;
            o.lock_timeout = Duration::from_micros(1);
        });
        let [(_, statement), (_, lock)] = short.session_settings().expect("valid");
        // Zero is PostgreSQL's "no limit"; a fraction of a millisecond must not become it.
        assert_eq!((statement.as_str(), lock.as_str()), ("0ms", "1ms"));
    }

    #[test]
    fn an_invalid_option_is_named() {
        let too_long = Duration::from_secs(25 * 24 * 3600);
        for (options, name) in [
            (changed(|o| o.max_connections = 0), "max_connections"),
            (
                changed(|o| o.acquire_timeout = Duration::ZERO),
                "acquire_timeout",
            ),
            (
                changed(|o| o.statement_timeout = too_long),
                "statement_timeout",
            ),
            (changed(|o| o.lock_timeout = too_long), "lock_timeout"),
        ] {
            match options.validate() {
                Err(StoreError::Unexpected(text)) => {
                    assert!(text.contains(&format!("PostgresOptions::{name}")), "{text}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn unavailable_codes() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "57014", "55P03",
        ] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "40001", "22P02", "42P01", ""] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds() {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_999).expect("valid");
        assert_eq!(
            micros(t),
            DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_000).expect("valid")
        );
        let exact = DateTime::<Utc>::from_timestamp(1_700_000_000, 5_000).expect("valid");
        assert_eq!(micros(exact), exact);
    }

    #[test]
    fn gender_codes_match_the_domain() {
        for g in [Gender::Unknown, Gender::Male, Gender::Female] {
            assert_eq!(i64::from(PostgresBackend::gender(g)), g.code());
        }
    }
}
