//! What wxlogin's SQLite and Postgres stores share, written once: the implementation of the
//! domain's `UserStore` and `Directory` ports ([`Store`]), the SQL both run unchanged (sqlx's `$1`
//! placeholders work on SQLite too, [`Queries`]), the rows they read and their mapping into
//! domain values, the classification of the driver errors that are not the database's own
//! ([`classify`]), and the checks of option values ([`options`]).
//!
//! A store crate implements [`Backend`] and [`Dialect`] for a marker type and names
//! `Store<ItsBackend>` as its store. It keeps what differs: connecting and pooling, the
//! statement that begins a write transaction, the find-or-create discipline of a first login,
//! how ids, timestamps and genders are bound, and the classification of its database's errors.
//!
//! Must never depend on a store crate, the server, HTTP or WeChat crates: it knows the domain,
//! sqlx and the value crates both use (uuid, chrono, tracing), and tokio (on which sqlx runs)
//! for the pauses of the access-token lease. The stores depend on it, never
//! the other way round, and never on each other.

mod admin;
pub mod cache;
mod migrations;
mod queries;
mod rows;
mod store;

pub mod options;

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::{Database, Decode, Encode, Type};
use uuid::Uuid;
use wxlogin_domain::{Gender, StoreError};

pub use crate::migrations::embedded_migrator;
pub use crate::queries::Queries;
pub use crate::store::{Backend, Background, Pools, Store};

/// The connection type of a dialect's database (what `&mut *tx` gives inside a transaction).
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// What differs between the databases in how the shared queries bind and read values. Each
/// store implements it for a marker type of its own.
pub trait Dialect: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database;
    /// An id as the id columns hold it (hyphenated text on SQLite, native `uuid` on Postgres).
    type Id: Column<Self::Db> + From<Uuid> + Into<Uuid>;
    /// A timestamp as it is bound. Every store reads timestamps back as `DateTime<Utc>`.
    type Timestamp: Send + for<'q> Encode<'q, Self::Db> + Type<Self::Db>;
    /// The integer of the `gender` column (WeChat's code).
    type Gender: Column<Self::Db> + Into<i64>;

    /// How the store keeps a timestamp (its precision and format are the store's convention).
    fn timestamp(t: DateTime<Utc>) -> Self::Timestamp;
    /// The stored code of a gender.
    fn gender(gender: Gender) -> Self::Gender;
    /// How many rows a statement changed (sqlx has no driver-independent accessor).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
    /// Maps the driver's errors to the port's, usually through [`classify`].
    fn map_err(e: sqlx::Error) -> StoreError;

    /// Taken (binding the unionid as `$1`) before a first login looks for another app's
    /// identity with its unionid, and held to the end of the transaction: a lock by unionid on
    /// Postgres (`pg_advisory_xact_lock`), where transactions run concurrently; `None` on
    /// SQLite, whose write transactions already run one at a time.
    const LOCK_UNION_ID: Option<&'static str>;

    /// The identity of a returning login (`user_id, union_id` of `app_id = $1, open_id = $2`).
    /// On Postgres it also locks the user row against deletion until the login commits
    /// (`FOR KEY SHARE`), so an erasure racing the login either waits for it or, having
    /// committed first, makes the identity vanish (the login then creates a new user) instead
    /// of failing the session's foreign key. SQLite's writers run one at a time.
    const RETURNING_IDENTITY: &'static str;

    /// The oldest identity with the unionid `$1` (`user_id, union_id`), which a first login in
    /// another app joins. On Postgres it locks that user row as
    /// [`Dialect::RETURNING_IDENTITY`] does, for the same race with an erasure.
    const LINKED_IDENTITY: &'static str;

    /// The end of every login in one round trip: inserts the session and the login event and
    /// reads the user back, binding `$1` session id, `$2` user id, `$3` app id, `$4` token
    /// digest, `$5` session key, `$6` now, `$7` expiry. [`FINISH_LOGIN_STATEMENTS`] on SQLite
    /// (several statements in one query, run by its worker in one go),
    /// [`FINISH_LOGIN_CTE`] on Postgres (data-modifying `WITH`, one statement).
    const FINISH_LOGIN: &'static str;
}

/// The session insert of [`Dialect::FINISH_LOGIN`]: a session is last seen when its login
/// creates it.
macro_rules! insert_session {
    () => {
        "INSERT INTO sessions \
         (id, user_id, app_id, token_digest, session_key, created_at, expires_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $6)"
    };
}

/// The user read of [`Dialect::FINISH_LOGIN`], through its identity in app `$3`.
macro_rules! login_user {
    () => {
        concat!(
            "SELECT ",
            queries::user_columns!(),
            " FROM users u JOIN wechat_identities i ON i.user_id = u.id AND i.app_id = $3 \
              WHERE u.id = $2"
        )
    };
}

/// [`Dialect::FINISH_LOGIN`] as three statements in one query (SQLite, whose logins run
/// [`LOGIN_STATEMENTS`] instead: the step-by-step login it belongs to is not reached there).
pub const FINISH_LOGIN_STATEMENTS: &str = concat!(
    insert_session!(),
    "; INSERT INTO login_events (at, app_id) VALUES ($6, $3); ",
    login_user!()
);

/// [`Dialect::FINISH_LOGIN`] as one statement with data-modifying `WITH` (Postgres). The
/// inserts run to completion whether or not the `SELECT` reads them; it reads only rows that
/// earlier statements of the transaction wrote.
pub const FINISH_LOGIN_CTE: &str = concat!(
    "WITH s AS (",
    insert_session!(),
    "), e AS (INSERT INTO login_events (at, app_id) VALUES ($6, $3)) ",
    login_user!()
);

/// In [`LOGIN_STATEMENTS`], the user a first login joins: the user of the oldest identity
/// with unionid `$3`, if that user has no identity in app `$1` yet; else NULL. A scalar
/// subquery, not a `WITH`: SQLite would build an ephemeral table for that on every run.
macro_rules! joinable {
    () => {
        "(SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM wechat_identities x \
         WHERE x.user_id = w.user_id AND x.app_id = $1) THEN w.user_id END \
         FROM wechat_identities w WHERE w.union_id = $3 ORDER BY w.created_at, w.app_id LIMIT 1)"
    };
}

/// A whole login in one query of seven statements, for a database whose write transactions run
/// one at a time (SQLite): what [`Queries::returning_user_learning`], [`Queries::linked_user`],
/// a first login's user and identity and [`Dialect::FINISH_LOGIN`] do one after the other,
/// decided in SQL instead of between trips. Binds `$1` app id, `$2` openid, `$3` unionid (or
/// NULL), `$4` the id a new user gets, `$5` now, `$6` session id, `$7` token digest, `$8`
/// session key, `$9` expiry. Its rows: one `learnt` row (the user id) if the login taught an
/// existing identity its unionid, then the user row.
///
/// - the identity of `($1, $2)`, if it exists and has no unionid, learns `$3`;
/// - otherwise, if there is none: the user of the oldest identity with unionid `$3` (another
///   app's) is joined, unless that user already has an identity in app `$1`; failing that a
///   new user `$4` is inserted; either way the identity `($1, $2)` is inserted for it;
/// - then the session and the login event are inserted and the user is read through the
///   identity. A new user is one whose id is `$4`.
pub const LOGIN_STATEMENTS: &str = concat!(
    // A `SELECT` first rather than `UPDATE … RETURNING`, for which SQLite builds an
    // ephemeral table.
    "SELECT user_id AS learnt FROM wechat_identities \
     WHERE app_id = $1 AND open_id = $2 AND union_id IS NULL AND $3 IS NOT NULL; ",
    "UPDATE wechat_identities SET union_id = $3 \
     WHERE app_id = $1 AND open_id = $2 AND union_id IS NULL AND $3 IS NOT NULL; ",
    "INSERT INTO users (id, created_at, updated_at) SELECT $4, $5, $5 \
     WHERE NOT EXISTS (SELECT 1 FROM wechat_identities WHERE app_id = $1 AND open_id = $2) \
     AND ",
    joinable!(),
    " IS NULL; ",
    // `VALUES`, not `INSERT … SELECT` reading the table it writes, which SQLite would run
    // through an ephemeral table. The identity exists already for a returning login.
    "INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
     VALUES (COALESCE(",
    joinable!(),
    ", $4), $1, $2, $3, $5) ON CONFLICT (app_id, open_id) DO NOTHING; ",
    "INSERT INTO sessions \
     (id, user_id, app_id, token_digest, session_key, created_at, expires_at, last_seen_at) \
     SELECT $6, user_id, $1, $7, $8, $5, $9, $5 FROM wechat_identities \
     WHERE app_id = $1 AND open_id = $2; ",
    "INSERT INTO login_events (at, app_id) VALUES ($5, $1); ",
    "SELECT ",
    queries::user_columns!(),
    " FROM wechat_identities i JOIN users u ON u.id = i.user_id \
      WHERE i.app_id = $1 AND i.open_id = $2"
);

/// The most logins [`login_statements`] puts in one query: 8 × 7 statements. Every count up
/// to it is a query of its own in each connection's statement cache.
pub const LOGINS_PER_QUERY: usize = 8;

/// [`LOGIN_STATEMENTS`] for `count` logins (1 to [`LOGINS_PER_QUERY`]) one after the other
/// in one query, the `n`-th login's placeholders `$1`…`$9` renumbered `$(9n + 1)`…`$(9n + 9)`.
pub fn login_statements(count: usize) -> &'static str {
    static QUERIES: [OnceLock<String>; LOGINS_PER_QUERY] =
        [const { OnceLock::new() }; LOGINS_PER_QUERY];
    assert!(
        (1..=LOGINS_PER_QUERY).contains(&count),
        "login_statements: {count} logins"
    );
    QUERIES[count - 1].get_or_init(|| {
        (0..count)
            .map(|n| renumber(LOGIN_STATEMENTS, 9 * n))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `sql` with every placeholder `$k` turned into `$(k + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let k: usize = rest[..digits].parse().expect("a placeholder's number");
        out.push_str(&(k + offset).to_string());
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// [`Dialect::LINKED_IDENTITY`] without a lock.
pub const LINKED_IDENTITY: &str = "SELECT user_id, union_id FROM wechat_identities \
     WHERE union_id = $1 ORDER BY created_at, app_id LIMIT 1";

/// [`Dialect::RETURNING_IDENTITY`] without a lock.
pub const RETURNING_IDENTITY: &str =
    "SELECT user_id, union_id FROM wechat_identities WHERE app_id = $1 AND open_id = $2";

/// A small value that the shared queries bind and read back as it is.
pub trait Column<DB: Database>:
    Copy + Send + Sync + Unpin + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}

impl<DB: Database, T> Column<DB> for T where
    T: Copy + Send + Sync + Unpin + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}

/// Classifies the errors every sqlx driver reports alike, and hands the database's own errors
/// to `database`, since their codes differ by database.
///
/// Texts never carry bound values (session keys, digests, openids): decode errors, which may
/// quote a value, are reported by column only.
pub fn classify(
    e: sqlx::Error,
    database: impl FnOnce(Box<dyn DatabaseError>) -> StoreError,
) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        E::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        E::WorkerCrashed => StoreError::Unavailable("a database worker crashed".into()),
        E::Io(io) => StoreError::Unavailable(format!("I/O error: {io}")),
        E::Database(db) => database(db),
        E::ColumnDecode { index, .. } => {
            StoreError::Unexpected(format!("could not decode column {index}"))
        }
        E::Decode(_) => StoreError::Unexpected("could not decode a value".into()),
        E::Encode(_) => StoreError::Unexpected("could not encode a value".into()),
        other => StoreError::Unexpected(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_only(e: sqlx::Error) -> StoreError {
        classify(e, |db| StoreError::Unexpected(db.message().to_owned()))
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let text = e.to_string();
            assert!(
                matches!(classify_only(e), StoreError::Unavailable(_)),
                "{text}"
            );
        }
        assert!(matches!(
            classify_only(sqlx::Error::RowNotFound),
            StoreError::Unexpected(_)
        ));
    }

    #[test]
    fn decode_errors_do_not_quote_values() {
        let e = sqlx::Error::Decode("invalid value: SECRETVALUE".into());
        assert!(!classify_only(e).to_string().contains("SECRETVALUE"));
        let e = sqlx::Error::ColumnDecode {
            index: "\"session_key\"".into(),
            source: "bad: SECRETVALUE".into(),
        };
        let text = classify_only(e).to_string();
        assert!(!text.contains("SECRETVALUE"), "{text}");
        assert!(text.contains("session_key"), "{text}");
    }
}

#[cfg(test)]
mod login_statements_tests {
    use super::*;

    #[test]
    fn each_login_of_a_query_binds_nine_placeholders_of_its_own() {
        assert_eq!(
            renumber("a = $1 AND b = $9, $10", 9),
            "a = $10 AND b = $18, $19"
        );
        assert_eq!(login_statements(1), LOGIN_STATEMENTS);
        let three = login_statements(3);
        assert_eq!(three.matches("INSERT INTO sessions").count(), 3);
        for k in 1..=27 {
            assert!(
                three.contains(&format!("${k} ")) || three.contains(&format!("${k},")),
                "${k}"
            );
        }
        assert!(!three.contains("$28"));
        // Built once per count.
        assert!(std::ptr::eq(login_statements(3), three));
    }

    #[test]
    #[should_panic(expected = "login_statements")]
    fn a_query_holds_at_most_logins_per_query() {
        let _ = login_statements(LOGINS_PER_QUERY + 1);
    }
}
