//! The PostgreSQL adapter of wxlogin's [`UserStore`] port: users, WeChat identities and
//! sessions in PostgreSQL, through sqlx. Several instances may share one database.
//!
//! Must never depend on HTTP (poem, reqwest) or on another adapter; it knows the domain's ports
//! and model and nothing above them.
//!
//! How it stays correct under concurrency: every port method that writes is one transaction at
//! READ COMMITTED (requested explicitly, whatever the server's default), and the find-or-create
//! of a login is an upsert arbitrated by the `UNIQUE (app_id, open_id)` constraint (see
//! [`Postgres::login`](UserStore::login)), so racing first logins of one openid neither create
//! two users nor fail; no retry loop, and no serialization failure can arise.
//!
//! Storage conventions: native `uuid` ids, `timestamptz` timestamps, 32-byte `bytea` token
//! digests. PostgreSQL keeps timestamps to the microsecond, while the service's values come
//! from `Utc::now()` with nanoseconds: this adapter truncates every timestamp to whole
//! microseconds before binding it (never rounding, so an expiry never moves later), and a
//! timestamp read back equals the one written, truncated to the microsecond. The store
//! contract (`wxlogin-store-contract`) allows exactly that.

mod rows;
pub mod testing;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;
use wxlogin_domain::{
    AppId, AvatarUrl, Gender, LoginRecord, NewLogin, NickName, ProfileChange, ProfileText,
    SessionId, SessionKey, SessionRecord, StoreError, TokenDigest, User, UserStore,
};

use crate::rows::{IdentityRow, SessionRow, UserRow};

/// The schema, embedded at compile time (`build.rs` rebuilds when a migration changes).
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Prepared statements each connection keeps (sqlx's LRU cache). The adapter issues about a
/// dozen distinct statements, so every one stays prepared for the connection's lifetime.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The user columns, read through the identity of one app (aliases `u` and `i`).
macro_rules! user_columns {
    () => {
        "u.id, i.open_id, i.union_id, u.nick_name, u.avatar_url, u.gender, u.country, \
         u.province, u.city, u.language, u.phone_number, u.created_at, u.updated_at"
    };
}

/// How the pool is sized and how long a request may wait for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The most connections this instance opens (PostgreSQL's own limit, 100 by default, is
    /// shared by every instance).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection (or for a refused connection to be
    /// retried) before the store reports itself [`StoreError::Unavailable`]. sqlx's default of
    /// 30 s would hold requests far past any client's patience.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// The PostgreSQL store. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// the default [`PostgresOptions`], and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with explicit pool settings, and applies the migrations.
    ///
    /// sqlx holds a PostgreSQL advisory lock while it migrates, so several instances starting
    /// at once apply each migration exactly once.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let connect_options = PgConnectOptions::from_str(url)
            // sqlx's URL errors name the problem, not the URL (which may carry a password).
            .map_err(|e| StoreError::Unexpected(format!("invalid Postgres URL: {e}")))?
            .application_name("wxlogin")
            // On by default in sqlx; set explicitly because the hot paths rely on it: each
            // connection parses a statement once, later executions only bind and run.
            .statement_cache_capacity(STATEMENT_CACHE_CAPACITY)
            // Bounded waits inside the server too: a statement stuck behind a lock (an upsert
            // waiting on a wedged transaction) answers 503 in seconds instead of hanging the
            // request. The pool's acquire timeout bounds only the wait for a connection.
            .options([
                ("statement_timeout", STATEMENT_TIMEOUT),
                ("lock_timeout", LOCK_TIMEOUT),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .map_err(map_err)?;

        MIGRATOR.run(&pool).await.map_err(map_migrate_err)?;

        tracing::debug!(
            max_connections = options.max_connections,
            "Postgres store ready"
        );
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction at READ COMMITTED.
    ///
    /// Named explicitly so a server configured with `default_transaction_isolation =
    /// serializable` cannot turn racing logins into serialization failures: the login upsert
    /// is correct at READ COMMITTED (each statement sees what committed before it started,
    /// and `ON CONFLICT` waits for a concurrent insert of the same key to finish).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(map_err)
    }
}

impl UserStore for Postgres {
    /// Find-or-create, race-free without retries:
    ///
    /// 1. look the identity up (the common case, a returning user, ends here);
    /// 2. if absent, insert the user, then the identity with
    ///    `ON CONFLICT (app_id, open_id) DO NOTHING RETURNING user_id`. If another login
    ///    inserted the same identity meanwhile, PostgreSQL waits for that transaction: should
    ///    it commit, nothing is inserted and we delete our user row (which nobody else can
    ///    see yet) and read the winner's identity, which the next statement's snapshot shows;
    ///    should it roll back, our insert goes through.
    ///
    /// Everything, the session included, is one transaction: a failure at any step leaves
    /// nothing behind.
    async fn login(&self, login: NewLogin) -> Result<LoginRecord, StoreError> {
        let now = micros(login.now);
        let mut tx = self.begin().await?;

        let (user_id, is_new_user) = match find_identity(&mut tx, &login).await? {
            Some(identity) => {
                record_union_id(&mut tx, &identity, &login).await?;
                (identity.user_id, false)
            }
            None => create_or_find_identity(&mut tx, &login, now).await?,
        };

        sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, app_id, token_digest, session_key, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(login.session_id.as_uuid())
        .bind(user_id)
        .bind(login.app_id.as_str())
        .bind(login.token_digest.as_bytes().as_slice())
        .bind(login.session_key.expose_base64())
        .bind(now)
        .bind(micros(login.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;

        let user = fetch_user(&mut tx, user_id, &login.app_id)
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
              WHERE s.token_digest = $1 AND s.app_id = $2"
        ))
        .bind(digest.as_bytes().as_slice())
        .bind(app_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(SessionRow::into_record).transpose()
    }

    async fn update_profile(&self, change: ProfileChange) -> Result<User, StoreError> {
        let user_id = *change.user_id.as_uuid();
        let p = &change.profile.0;
        let mut tx = self.begin().await?;

        // COALESCE keeps the stored value wherever the update has none.
        let updated = sqlx::query(
            "UPDATE users SET \
             nick_name = COALESCE($1, nick_name), \
             avatar_url = COALESCE($2, avatar_url), \
             gender = COALESCE($3, gender), \
             country = COALESCE($4, country), \
             province = COALESCE($5, province), \
             city = COALESCE($6, city), \
             language = COALESCE($7, language), \
             updated_at = $8 \
             WHERE id = $9",
        )
        .bind(p.nick_name.as_ref().map(NickName::as_str))
        .bind(p.avatar_url.as_ref().map(AvatarUrl::as_str))
        .bind(p.gender.map(gender_code))
        .bind(p.country.as_ref().map(ProfileText::as_str))
        .bind(p.province.as_ref().map(ProfileText::as_str))
        .bind(p.city.as_ref().map(ProfileText::as_str))
        .bind(p.language.as_ref().map(ProfileText::as_str))
        .bind(micros(change.now))
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if updated.rows_affected() == 0 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::NotFound);
        }

        if let Some(union_id) = &change.union_id {
            set_union_id(&mut tx, user_id, &change.app_id, union_id.as_str()).await?;
        }

        if let Some(key) = &change.rotated_session_key {
            let rotated =
                sqlx::query("UPDATE sessions SET session_key = $1 WHERE id = $2 AND user_id = $3")
                    .bind(key.expose_base64())
                    .bind(change.session_id.as_uuid())
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            if rotated.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }

        let user = fetch_user(&mut tx, user_id, &change.app_id)
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
        let rotated = sqlx::query("UPDATE sessions SET session_key = $1 WHERE id = $2")
            .bind(key.expose_base64())
            .bind(session_id.as_uuid())
            .execute(&self.pool)
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
            sqlx::query("UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(micros(now))
                .bind(session_id.as_uuid())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_err)
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The identity of `(app_id, open_id)`, if it exists.
async fn find_identity(tx: &mut Tx, login: &NewLogin) -> Result<Option<IdentityRow>, StoreError> {
    sqlx::query_as(
        "SELECT user_id, union_id FROM wechat_identities WHERE app_id = $1 AND open_id = $2",
    )
    .bind(login.app_id.as_str())
    .bind(login.open_id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)
}

/// The insert half of the login upsert (see [`UserStore::login`]): returns the user id and
/// whether this login created it.
async fn create_or_find_identity(
    tx: &mut Tx,
    login: &NewLogin,
    now: DateTime<Utc>,
) -> Result<(Uuid, bool), StoreError> {
    let new_user_id = *login.new_user_id.as_uuid();
    sqlx::query("INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $2)")
        .bind(new_user_id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;

    // Two rounds cover every interleaving but one: the winner of the race erased its account
    // between our insert and our read. The second round then creates the user after all.
    for _ in 0..2 {
        let inserted: Option<(Uuid,)> = sqlx::query_as(
            "INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (app_id, open_id) DO NOTHING \
             RETURNING user_id",
        )
        .bind(new_user_id)
        .bind(login.app_id.as_str())
        .bind(login.open_id.as_str())
        .bind(login.union_id.as_ref().map(|u| u.as_str()))
        .bind(now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
        if let Some((user_id,)) = inserted {
            return Ok((user_id, true));
        }

        // Another login won the race and has committed (ON CONFLICT waited for it); this
        // statement's fresh snapshot sees its identity.
        if let Some(identity) = find_identity(tx, login).await? {
            // Our user row was never referenced nor visible to anyone else.
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(new_user_id)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
            record_union_id(tx, &identity, login).await?;
            return Ok((identity.user_id, false));
        }
    }
    Err(StoreError::Unexpected(
        "the identity kept appearing and vanishing during login".into(),
    ))
}

/// Records the login's unionid on an existing identity that has none yet.
async fn record_union_id(
    tx: &mut Tx,
    identity: &IdentityRow,
    login: &NewLogin,
) -> Result<(), StoreError> {
    match &login.union_id {
        Some(union_id) if identity.union_id.is_none() => {
            set_union_id(tx, identity.user_id, &login.app_id, union_id.as_str()).await
        }
        _ => Ok(()),
    }
}

/// Records the unionid of a user's identity in `app_id`, unless one is already known (a
/// unionid never changes, so the first one stands).
async fn set_union_id(
    tx: &mut Tx,
    user_id: Uuid,
    app_id: &AppId,
    union_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE wechat_identities SET union_id = $1 \
         WHERE user_id = $2 AND app_id = $3 AND union_id IS NULL",
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
    tx: &mut Tx,
    user_id: Uuid,
    app_id: &AppId,
) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u JOIN wechat_identities i ON i.user_id = u.id AND i.app_id = $1 \
          WHERE u.id = $2"
    ))
    .bind(app_id.as_str())
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    row.map(UserRow::into_user).transpose()
}

/// A timestamp as PostgreSQL stores it: truncated to whole microseconds (see the crate docs).
/// Truncating here rather than leaving it to the driver keeps the rule in one visible place.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The `smallint` the schema stores for a gender (WeChat's code).
fn gender_code(gender: Gender) -> i16 {
    match gender {
        Gender::Unknown => 0,
        Gender::Male => 1,
        Gender::Female => 2,
    }
}

/// SQLSTATEs that mean the server cannot serve us right now, rather than that our statement
/// is wrong: connection exceptions (class 08), insufficient resources (class 53: too many
/// connections, disk full, out of memory) and the server shutting down or starting up
/// (57P01–57P03). sqlx has no `ErrorKind` for these, so the codes are matched here; conflicts
/// are recognised with `is_unique_violation()` instead.
/// Longest a statement may run (`statement_timeout`): logins and lookups take milliseconds.
const STATEMENT_TIMEOUT: &str = "5s";
/// Longest a statement may wait for a row lock (`lock_timeout`).
const LOCK_TIMEOUT: &str = "3s";

/// Connection failures (08), insufficient resources (53), shutdowns (57P0x), and the statement
/// or lock timeouts set above (57014 query_canceled, 55P03 lock_not_available): all transient.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "55P03")
}

/// Maps sqlx errors to the port's. Texts never carry bound values (session keys, digests,
/// openids): PostgreSQL's primary messages name constraints, columns and types, and the
/// detail field (which quotes the offending row or key) is never used; messages of data
/// exceptions (class 22), which may quote an input value, are left out entirely.
fn map_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        E::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        E::WorkerCrashed => StoreError::Unavailable("a database worker crashed".into()),
        E::Io(io) => StoreError::Unavailable(format!("I/O error: {io}")),
        E::Database(db) => {
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
        }
        E::ColumnDecode { index, .. } => {
            StoreError::Unexpected(format!("could not decode column {index}"))
        }
        E::Decode(_) => StoreError::Unexpected("could not decode a value".into()),
        E::Encode(_) => StoreError::Unexpected("could not encode a value".into()),
        other => StoreError::Unexpected(other.to_string()),
    }
}

/// Maps a migration failure; a database that cannot be reached stays `Unavailable`.
fn map_migrate_err(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => match map_err(e) {
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
            map_err(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Unexpected(_)
        ));
    }

    #[test]
    fn decode_errors_do_not_quote_values() {
        let e = sqlx::Error::Decode("invalid value: SECRETVALUE".into());
        assert!(!map_err(e).to_string().contains("SECRETVALUE"));
        let e = sqlx::Error::ColumnDecode {
            index: "\"session_key\"".into(),
            source: "bad: SECRETVALUE".into(),
        };
        let text = map_err(e).to_string();
        assert!(!text.contains("SECRETVALUE"), "{text}");
        assert!(text.contains("session_key"), "{text}");
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
            assert_eq!(i64::from(gender_code(g)), g.code());
        }
    }
}
