//! The domain's [`Directory`] port for [`Store`]: what operators ask about users and sessions
//! (`/admin/v1`), in SQL both databases run unchanged, and the login events behind its
//! statistics.
//!
//! "Active" is decided as the domain's `SessionState::of` decides it, in SQL: not revoked,
//! expiring after `now`, last seen after `now` minus the idle timeout.

use chrono::{DateTime, Utc};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Row,
    Type,
};
use wxlogin_domain::{
    ActiveAt, AppId, Directory, Stats, StatsQuery, StoreError, User, UserDetail, UserId, UserSearch,
};

use crate::cache::Forget;
use crate::queries::user_columns;
use crate::rows::UserRow;
use crate::store::{Backend, Store};
use crate::{Conn, Dialect};

/// Where a user and the identity it is shown with come from: its identity in the app bound as
/// `$1`, or else its earliest (then by app id, so the choice is stable). The
/// `(user_id, app_id)` unique index serves the inner look-up.
macro_rules! shown_user_from {
    () => {
        " FROM users u JOIN wechat_identities i ON i.user_id = u.id AND i.app_id = (\
           SELECT j.app_id FROM wechat_identities j WHERE j.user_id = u.id \
           ORDER BY CASE WHEN j.app_id = $1 THEN 0 ELSE 1 END, j.created_at, j.app_id \
           LIMIT 1)"
    };
}

/// The sessions of the enclosing statement's scope that are active: `$now` and `$seen_after`
/// are the placeholders of [`ActiveAt`].
macro_rules! active {
    ($now:literal, $seen_after:literal) => {
        concat!(
            "revoked_at IS NULL AND expires_at > ",
            $now,
            " AND last_seen_at > ",
            $seen_after
        )
    };
}

// `FromRow` by hand, as in `rows.rs` (why: its module documentation).

/// A user and how many active sessions it has.
struct DetailRow<D: Dialect> {
    user: UserRow<D>,
    active_sessions: i64,
}

impl<'r, D, R> FromRow<'r, R> for DetailRow<D>
where
    D: Dialect,
    R: Row<Database = D::Db>,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, D::Db> + Type<D::Db>,
    DateTime<Utc>: Decode<'r, D::Db> + Type<D::Db>,
    i64: Decode<'r, D::Db> + Type<D::Db>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            user: UserRow::from_row(row)?,
            active_sessions: row.try_get("active_sessions")?,
        })
    }
}

/// `COUNT(*) AS n`.
struct CountRow {
    n: i64,
}

impl<'r, R> FromRow<'r, R> for CountRow
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            n: row.try_get("n")?,
        })
    }
}

/// The counts behind `Stats`.
struct StatsRow {
    users: i64,
    active_sessions: i64,
    logins_last_hour: i64,
    logins_last_day: i64,
}

impl<'r, R> FromRow<'r, R> for StatsRow
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            users: row.try_get("users")?,
            active_sessions: row.try_get("active_sessions")?,
            logins_last_hour: row.try_get("logins_last_hour")?,
            logins_last_day: row.try_get("logins_last_day")?,
        })
    }
}

/// A count as the port reports it (a database never returns a negative one).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `%` and `_` in an operator's search text are plain characters (escaped with `\`).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Deletes the login events from before `before` (the purge of ended sessions runs it).
pub(crate) async fn purge_login_events<'c, D: Dialect, E>(
    executor: E,
    before: DateTime<Utc>,
) -> Result<(), StoreError>
where
    E: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    sqlx::query("DELETE FROM login_events WHERE at < $1")
        .bind(D::timestamp(before))
        .execute(executor)
        .await
        .map_err(D::map_err)
        .map(drop)
}

impl<B: Backend> Directory for Store<B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> String: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'r> i64: Decode<'r, B::Db>,
    for<'r> String: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> DateTime<Utc>: Decode<'r, B::Db> + Type<B::Db>,
{
    async fn search_users(&self, search: UserSearch) -> Result<Vec<User>, StoreError> {
        // The filters present, each with its placeholder; every piece is a constant of this
        // function and every value is bound.
        let mut sql = String::from(concat!("SELECT ", user_columns!(), shown_user_from!()));
        let mut n = 1;
        let mut clause = |sql: &mut String, condition: &str| {
            n += 1;
            sql.push_str(if n == 2 { " WHERE " } else { " AND " });
            sql.push_str(&condition.replace('?', &format!("${n}")));
        };
        if search.after.is_some() {
            clause(&mut sql, "u.id > ?");
        }
        if search.open_id.is_some() {
            // Any app's identity; the open_id index (0005) serves it.
            clause(
                &mut sql,
                "u.id IN (SELECT k.user_id FROM wechat_identities k WHERE k.open_id = ?)",
            );
        }
        if search.nick_name.is_some() {
            // LOWER on both sides: ASCII case-insensitive on both databases (Postgres folds
            // more, SQLite's LOWER only ASCII), and the same fold for text and pattern.
            clause(&mut sql, "LOWER(u.nick_name) LIKE LOWER(?) ESCAPE '\\'");
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY u.id LIMIT ${n}"));

        let mut query = sqlx::query_as::<_, UserRow<B>>(AssertSqlSafe(sql))
            .bind(search.app_id.as_str().to_owned());
        if let Some(after) = search.after {
            query = query.bind(B::Id::from(*after.as_uuid()));
        }
        if let Some(open_id) = &search.open_id {
            query = query.bind(open_id.as_str().to_owned());
        }
        if let Some(nick_name) = &search.nick_name {
            query = query.bind(like_pattern(nick_name.as_str()));
        }
        let rows = query
            .bind(i64::from(search.limit))
            .fetch_all(self.reader()?)
            .await
            .map_err(B::map_err)?;
        rows.into_iter().map(UserRow::into_user).collect()
    }

    async fn user_detail(
        &self,
        app_id: &AppId,
        user_id: UserId,
        active: ActiveAt,
    ) -> Result<Option<UserDetail>, StoreError> {
        // One statement: the user and its active sessions (the sessions_user_id index).
        let row: Option<DetailRow<B>> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            ", (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND ",
            active!("$3", "$4"),
            ") AS active_sessions",
            shown_user_from!(),
            " WHERE u.id = $2"
        ))
        .bind(app_id.as_str())
        .bind(B::Id::from(*user_id.as_uuid()))
        .bind(B::timestamp(active.now))
        .bind(B::timestamp(active.seen_after))
        .fetch_optional(self.reader()?)
        .await
        .map_err(B::map_err)?;
        row.map(|r| {
            Ok(UserDetail {
                user: r.user.into_user()?,
                active_sessions: count(r.active_sessions),
            })
        })
        .transpose()
    }

    async fn revoke_user_sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let id = B::Id::from(*user_id.as_uuid());
        let mut tx = self.begin_write().await?;
        // COUNT(*): an integer of the same type on both databases.
        let users: CountRow = sqlx::query_as("SELECT COUNT(*) AS n FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(B::map_err)?;
        if users.n == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(B::timestamp(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(B::map_err)?;
        self.commit_and_forget(tx, &[Forget::User(user_id)]).await?;
        Ok(B::rows_affected(&revoked))
    }

    async fn stats(&self, query: StatsQuery) -> Result<Stats, StoreError> {
        let row: StatsRow = sqlx::query_as(concat!(
            "SELECT (SELECT COUNT(*) FROM users) AS users, \
             (SELECT COUNT(*) FROM sessions WHERE ",
            active!("$1", "$2"),
            ") AS active_sessions, \
             (SELECT COUNT(*) FROM login_events WHERE at >= $3) AS logins_last_hour, \
             (SELECT COUNT(*) FROM login_events WHERE at >= $4) AS logins_last_day"
        ))
        .bind(B::timestamp(query.active.now))
        .bind(B::timestamp(query.active.seen_after))
        .bind(B::timestamp(query.hour_from))
        .bind(B::timestamp(query.day_from))
        .fetch_one(self.reader()?)
        .await
        .map_err(B::map_err)?;
        Ok(Stats {
            users: count(row.users),
            active_sessions: count(row.active_sessions),
            logins_last_hour: count(row.logins_last_hour),
            logins_last_day: count(row.logins_last_day),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(like_pattern("ming"), "%ming%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
