//! The statements both stores run, and the steps of the port's methods built from them.
//!
//! Steps that write take the caller's connection (`&mut *tx`): the store owns the transaction,
//! begins it its own way and commits it. Single statements take any executor (a pool).

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Row, Type};
use wxlogin_domain::{
    AccessToken, AccessTokenNeed, AppId, AvatarChange, AvatarId, AvatarUrl, ImageKind, LoginRecord,
    NewLogin, NickName, PhoneChange, ProfileChange, ProfileText, PurgeBefore, SessionId,
    SessionKey, SessionRecord, SessionRefresh, StoreError, StoredAccessToken, StoredAvatar,
    TokenDigest, User, UserId,
};

use crate::rows::{AccessTokenRow, IdentityRow, SessionRow, UserRow};
use crate::{Conn, Dialect};

/// The user columns, read through the identity of one app (aliases `u` and `i`).
macro_rules! user_columns {
    () => {
        "u.id, i.open_id, i.union_id, u.nick_name, u.avatar_url, u.gender, u.country, \
         u.province, u.city, u.language, u.phone_number, u.created_at, u.updated_at"
    };
}
pub(crate) use user_columns;

/// The shared queries of dialect `D`, as associated functions: `Queries::<MyDialect>::ping(&pool)`.
/// The bounds below say what the SQL needs from the driver; sqlx's SQLite and Postgres
/// drivers meet them all.
pub struct Queries<D>(PhantomData<D>);

impl<D: Dialect> Queries<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'r> &'r str: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<D::Gender>: Encode<'q, D::Db>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> Vec<u8>: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> DateTime<Utc>: Decode<'r, D::Db> + Type<D::Db>,
{
    /// The user of a returning login: finds the identity of `(app_id, open_id)` and records the
    /// login's unionid on it if none is known yet. `None` if the identity does not exist.
    pub async fn returning_user(
        conn: &mut Conn<D>,
        login: &NewLogin,
    ) -> Result<Option<D::Id>, StoreError> {
        Ok(Self::returning_user_learning(conn, login)
            .await?
            .map(|(id, _)| id))
    }

    /// [`Queries::returning_user`], and whether the login taught the user its unionid (the
    /// user changed: sessions cached elsewhere must hear of it).
    pub async fn returning_user_learning(
        conn: &mut Conn<D>,
        login: &NewLogin,
    ) -> Result<Option<(D::Id, bool)>, StoreError> {
        let identity: Option<IdentityRow<D>> = sqlx::query_as(D::RETURNING_IDENTITY)
            .bind(login.app_id.as_str())
            .bind(login.open_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(D::map_err)?;
        let Some(identity) = identity else {
            return Ok(None);
        };
        if identity.union_id.is_none()
            && let Some(union_id) = &login.union_id
        {
            Self::set_union_id(conn, identity.user_id, &login.app_id, union_id.as_str()).await?;
            return Ok(Some((identity.user_id, true)));
        }
        Ok(Some((identity.user_id, false)))
    }

    /// The user that a first login in this app joins: the user of another app's identity with
    /// the login's unionid (the mini-programs of one Open Platform account share it), with the
    /// login's identity added to it. `None` without a unionid, when no identity has it, or when
    /// the identity cannot be added (a concurrent login of the same openid added it first, or
    /// the user already has another openid in this app): the caller then goes on as for a new
    /// user, whose find-or-create settles the race.
    ///
    /// [`Dialect::LOCK_UNION_ID`] is taken first, so that concurrent first logins of one person
    /// in two apps find each other's identity instead of creating two users.
    pub async fn linked_user(
        conn: &mut Conn<D>,
        login: &NewLogin,
    ) -> Result<Option<D::Id>, StoreError> {
        let Some(union_id) = &login.union_id else {
            return Ok(None);
        };
        if let Some(lock) = D::LOCK_UNION_ID {
            sqlx::query(lock)
                .bind(union_id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(D::map_err)?;
        }
        let linked: Option<IdentityRow<D>> = sqlx::query_as(D::LINKED_IDENTITY)
            .bind(union_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(D::map_err)?;
        let Some(linked) = linked else {
            return Ok(None);
        };
        // No conflict target: whichever unique constraint the insert meets, it adds nothing.
        let inserted: Option<IdentityRow<D>> = sqlx::query_as(
            "INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING \
             RETURNING user_id, union_id",
        )
        .bind(linked.user_id)
        .bind(login.app_id.as_str())
        .bind(login.open_id.as_str())
        .bind(union_id.as_str())
        .bind(D::timestamp(login.now))
        .fetch_optional(&mut *conn)
        .await
        .map_err(D::map_err)?;
        if inserted.is_some() {
            return Ok(Some(linked.user_id));
        }
        Self::returning_user(conn, login).await
    }

    /// Inserts the login's identity for `user_id`, unless the identity of `(app_id, open_id)`
    /// exists by then: whether it was inserted. On PostgreSQL, an insert of the same identity
    /// by a concurrent transaction makes this wait until that transaction has ended.
    pub async fn insert_identity(
        conn: &mut Conn<D>,
        user_id: D::Id,
        login: &NewLogin,
    ) -> Result<bool, StoreError> {
        let inserted: Option<IdentityRow<D>> = sqlx::query_as(
            "INSERT INTO wechat_identities (user_id, app_id, open_id, union_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (app_id, open_id) DO NOTHING \
             RETURNING user_id, union_id",
        )
        .bind(user_id)
        .bind(login.app_id.as_str())
        .bind(login.open_id.as_str())
        .bind(login.union_id.as_ref().map(|u| u.as_str()))
        .bind(D::timestamp(login.now))
        .fetch_optional(conn)
        .await
        .map_err(D::map_err)?;
        Ok(inserted.is_some())
    }

    /// Logins in one query, `statements`: for the `n`-th login (from 0), the statements bind
    /// `$(9n + 1)` app id, `$(9n + 2)` openid, `$(9n + 3)` unionid (or NULL), `$(9n + 4)` the
    /// id a new user gets, `$(9n + 5)` now, `$(9n + 6)` session id, `$(9n + 7)` token digest,
    /// `$(9n + 8)` session key, `$(9n + 9)` expiry (see [`crate::login_statements`]). The
    /// rows, for each login in order: a one-column `learnt` row if the login taught an
    /// existing identity its unionid, then its user row. A new user is one whose id is the
    /// login's new user id.
    pub async fn login_in_one(
        conn: &mut Conn<D>,
        statements: &'static str,
        logins: &[&NewLogin],
    ) -> Result<Vec<(LoginRecord, bool)>, StoreError> {
        let mut query = sqlx::query(statements);
        for login in logins {
            query = query
                .bind(login.app_id.as_str())
                .bind(login.open_id.as_str())
                .bind(login.union_id.as_ref().map(|u| u.as_str()))
                .bind(D::Id::from(*login.new_user_id.as_uuid()))
                .bind(D::timestamp(login.now))
                .bind(D::Id::from(*login.session_id.as_uuid()))
                .bind(login.token_digest.as_bytes().as_slice())
                .bind(login.session_key.expose_base64())
                .bind(D::timestamp(login.expires_at));
        }
        let rows = query.fetch_all(conn).await.map_err(D::map_err)?;
        let mut done = Vec::with_capacity(logins.len());
        let mut learnt = false;
        for row in &rows {
            if row.len() == 1 {
                learnt |= matches!(row.try_get::<Option<D::Id>, _>("learnt"), Ok(Some(_)));
                continue;
            }
            let Some(login) = logins.get(done.len()) else {
                break;
            };
            let user = UserRow::<D>::from_row(row)
                .map_err(D::map_err)?
                .into_user()?;
            let is_new_user = user.id == login.new_user_id;
            done.push((
                LoginRecord { user, is_new_user },
                std::mem::take(&mut learnt),
            ));
        }
        if done.len() != logins.len() || rows.iter().filter(|r| r.len() > 1).count() != done.len() {
            return Err(StoreError::Unexpected(
                "a login's user vanished during login".into(),
            ));
        }
        Ok(done)
    }

    /// The common end of every login, once its user is known: inserts the session and the
    /// login event and reads the user back, in one round trip ([`Dialect::FINISH_LOGIN`]).
    pub async fn finish_login(
        conn: &mut Conn<D>,
        login: &NewLogin,
        user_id: D::Id,
        is_new_user: bool,
    ) -> Result<LoginRecord, StoreError> {
        let row: Option<UserRow<D>> = sqlx::query_as(D::FINISH_LOGIN)
            .bind(D::Id::from(*login.session_id.as_uuid()))
            .bind(user_id)
            .bind(login.app_id.as_str())
            .bind(login.token_digest.as_bytes().as_slice())
            .bind(login.session_key.expose_base64())
            .bind(D::timestamp(login.now))
            .bind(D::timestamp(login.expires_at))
            .fetch_optional(&mut *conn)
            .await
            .map_err(D::map_err)?;
        let user = row
            .map(UserRow::into_user)
            .transpose()?
            .ok_or_else(|| StoreError::Unexpected("the user vanished during login".into()))?;
        Ok(LoginRecord { user, is_new_user })
    }

    /// Every step of a profile change; the caller commits. `NotFound` (the caller then drops
    /// the transaction, which rolls it back) for a missing user, a user without an identity in
    /// the change's app, or a rotated key for a session that is not the user's.
    pub async fn update_profile(
        conn: &mut Conn<D>,
        change: &ProfileChange,
    ) -> Result<User, StoreError> {
        let user_id = D::Id::from(*change.user_id.as_uuid());
        let p = &change.profile.0;

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
        .bind(p.gender.map(D::gender))
        .bind(p.country.as_ref().map(ProfileText::as_str))
        .bind(p.province.as_ref().map(ProfileText::as_str))
        .bind(p.city.as_ref().map(ProfileText::as_str))
        .bind(p.language.as_ref().map(ProfileText::as_str))
        .bind(D::timestamp(change.now))
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(D::map_err)?;
        found(D::rows_affected(&updated))?;

        if let Some(union_id) = &change.union_id {
            Self::set_union_id(conn, user_id, &change.app_id, union_id.as_str()).await?;
        }

        if let Some(key) = &change.rotated_session_key {
            let rotated =
                sqlx::query("UPDATE sessions SET session_key = $1 WHERE id = $2 AND user_id = $3")
                    .bind(key.expose_base64())
                    .bind(D::Id::from(*change.session_id.as_uuid()))
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(D::map_err)?;
            found(D::rows_affected(&rotated))?;
        }

        Self::fetch_user(conn, user_id, &change.app_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The session with this token digest in `app_id`, with its user.
    pub async fn find_session<'c, E>(
        executor: E,
        app_id: &AppId,
        digest: &TokenDigest,
    ) -> Result<Option<SessionRecord>, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        // One read through the token_digest unique index; the identity join uses the
        // (user_id, app_id) unique index.
        let row: Option<SessionRow<D>> = sqlx::query_as(concat!(
            "SELECT s.id AS session_id, s.token_digest, s.session_key, \
             s.created_at AS session_created_at, s.expires_at, s.revoked_at, s.last_seen_at, ",
            user_columns!(),
            " FROM sessions s \
              JOIN users u ON u.id = s.user_id \
              JOIN wechat_identities i ON i.user_id = s.user_id AND i.app_id = s.app_id \
              WHERE s.token_digest = $1 AND s.app_id = $2"
        ))
        .bind(digest.as_bytes().as_slice())
        .bind(app_id.as_str())
        .fetch_optional(executor)
        .await
        .map_err(D::map_err)?;
        row.map(SessionRow::into_record).transpose()
    }

    /// Replaces a session's key; `NotFound` if the session does not exist.
    pub async fn rotate_session_key<'c, E>(
        executor: E,
        session_id: SessionId,
        key: &SessionKey,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        let rotated = sqlx::query("UPDATE sessions SET session_key = $1 WHERE id = $2")
            .bind(key.expose_base64())
            .bind(D::Id::from(*session_id.as_uuid()))
            .execute(executor)
            .await
            .map_err(D::map_err)?;
        found(D::rows_affected(&rotated))
    }

    /// Revokes a session; `NotFound` if it does not exist.
    pub async fn revoke_session<'c, E>(
        executor: E,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        // COALESCE keeps the first revocation time when a session is revoked twice.
        found(
            Self::stamp_session(
                executor,
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                now,
                session_id,
            )
            .await?,
        )
    }

    /// Every step of a refresh; the caller commits. `NotFound` (the caller then drops the
    /// transaction, which rolls it back) if the old session does not exist or is revoked.
    pub async fn refresh_session(
        conn: &mut Conn<D>,
        refresh: &SessionRefresh,
    ) -> Result<(), StoreError> {
        // Revokes only a live row: of two racing refreshes (or a refresh and a logout) the
        // second finds it revoked and changes nothing. On PostgreSQL the second waits for the
        // first's row lock and then re-reads the row, at READ COMMITTED too.
        found(
            Self::stamp_session(
                &mut *conn,
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                refresh.now,
                refresh.old_session_id,
            )
            .await?,
        )?;

        // The new session copies user, app and session key from the old row, so the key
        // never leaves the database.
        let inserted = sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, app_id, token_digest, session_key, created_at, expires_at, \
             last_seen_at) \
             SELECT $1, user_id, app_id, $2, session_key, $3, $4, $3 \
             FROM sessions WHERE id = $5",
        )
        .bind(D::Id::from(*refresh.new_session_id.as_uuid()))
        .bind(refresh.token_digest.as_bytes().as_slice())
        .bind(D::timestamp(refresh.now))
        .bind(D::timestamp(refresh.expires_at))
        .bind(D::Id::from(*refresh.old_session_id.as_uuid()))
        .execute(&mut *conn)
        .await
        .map_err(D::map_err)?;
        found(D::rows_affected(&inserted))
    }

    /// Moves a session's `last_seen_at` forward to `now`; a missing session, or one seen
    /// later already, is left as it is.
    pub async fn touch_session<'c, E>(
        executor: E,
        session_id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        Self::stamp_session(
            executor,
            "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
            now,
            session_id,
        )
        .await
        .map(drop)
    }

    /// Every step of recording a phone number; the caller commits. `NotFound` for a missing
    /// user or a user without an identity in the change's app (nothing to return, so the
    /// caller rolls back).
    pub async fn set_phone_number(
        conn: &mut Conn<D>,
        change: &PhoneChange,
    ) -> Result<User, StoreError> {
        let user_id = D::Id::from(*change.user_id.as_uuid());
        let updated =
            sqlx::query("UPDATE users SET phone_number = $1, updated_at = $2 WHERE id = $3")
                .bind(change.phone_number.as_str())
                .bind(D::timestamp(change.now))
                .bind(user_id)
                .execute(&mut *conn)
                .await
                .map_err(D::map_err)?;
        found(D::rows_affected(&updated))?;
        Self::fetch_user(conn, user_id, &change.app_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Every step of an avatar upload; the caller commits. `NotFound` if the user is gone
    /// (checked first, so nothing else is written for it).
    pub async fn set_avatar(conn: &mut Conn<D>, change: &AvatarChange) -> Result<User, StoreError> {
        let user_id = D::Id::from(*change.user_id.as_uuid());
        let updated =
            sqlx::query("UPDATE users SET avatar_url = $1, updated_at = $2 WHERE id = $3")
                .bind(change.url.as_str())
                .bind(D::timestamp(change.now))
                .bind(D::Id::from(*change.user_id.as_uuid()))
                .execute(&mut *conn)
                .await
                .map_err(D::map_err)?;
        found(D::rows_affected(&updated))?;
        // One avatar per user: the earlier uploads' URLs stop working.
        sqlx::query("DELETE FROM avatars WHERE user_id = $1")
            .bind(D::Id::from(*change.user_id.as_uuid()))
            .execute(&mut *conn)
            .await
            .map_err(D::map_err)?;
        sqlx::query(
            "INSERT INTO avatars (id, user_id, content_type, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(D::Id::from(*change.avatar_id.as_uuid()))
        .bind(D::Id::from(*change.user_id.as_uuid()))
        .bind(change.image.kind().content_type())
        .bind(change.image.bytes())
        .bind(D::timestamp(change.now))
        .execute(&mut *conn)
        .await
        .map_err(D::map_err)?;
        Self::fetch_user(conn, user_id, &change.app_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// An uploaded avatar by id.
    pub async fn avatar<'c, E>(
        executor: E,
        id: AvatarId,
    ) -> Result<Option<StoredAvatar>, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        use sqlx::Row as _;
        let row = sqlx::query("SELECT content_type, bytes, created_at FROM avatars WHERE id = $1")
            .bind(D::Id::from(*id.as_uuid()))
            .fetch_optional(executor)
            .await
            .map_err(D::map_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let content_type: String = row.try_get("content_type").map_err(D::map_err)?;
        let kind = ImageKind::from_content_type(&content_type)
            .ok_or_else(|| StoreError::Unexpected(format!("avatar stored as {content_type:?}")))?;
        Ok(Some(StoredAvatar {
            kind,
            bytes: row.try_get("bytes").map_err(D::map_err)?,
            created_at: row.try_get("created_at").map_err(D::map_err)?,
        }))
    }

    /// Deletes a user; its identities and sessions go with it (`ON DELETE CASCADE` in both
    /// schemas). `NotFound` if there is no such user.
    pub async fn erase_user<'c, E>(executor: E, user_id: UserId) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(D::Id::from(*user_id.as_uuid()))
            .execute(executor)
            .await
            .map_err(D::map_err)?;
        found(D::rows_affected(&deleted))
    }

    /// Deletes the sessions that have ended and returns how many.
    pub async fn purge_sessions<'c, E>(executor: E, before: PurgeBefore) -> Result<u64, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        // One term per index (sessions_revoked_at, sessions_expires_at, sessions_last_seen_at):
        // each database answers the OR from the three indexes, never by a scan.
        let purged = sqlx::query(
            "DELETE FROM sessions \
             WHERE (revoked_at IS NOT NULL AND revoked_at <= $1) \
             OR expires_at <= $1 \
             OR last_seen_at < $2",
        )
        .bind(D::timestamp(before.now))
        .bind(D::timestamp(before.last_seen))
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(D::rows_affected(&purged))
    }

    /// The app's access-token row, token and lease, if the app has one.
    pub(crate) async fn access_token_row<'c, E>(
        executor: E,
        app_id: &AppId,
    ) -> Result<Option<AccessTokenRow>, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        sqlx::query_as(
            "SELECT token, expires_at, fetched_at, lease_until FROM access_tokens \
             WHERE app_id = $1",
        )
        .bind(app_id.as_str())
        .fetch_optional(executor)
        .await
        .map_err(D::map_err)
    }

    /// Creates the app's row, empty and with its lease free, unless it exists.
    pub(crate) async fn insert_access_token_row<'c, E>(
        executor: E,
        app_id: &AppId,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        sqlx::query(
            "INSERT INTO access_tokens (app_id) VALUES ($1) ON CONFLICT (app_id) DO NOTHING",
        )
        .bind(app_id.as_str())
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(())
    }

    /// Takes the app's lease for `holder` until `until`, if at `at` it is free or has expired
    /// and the stored token still will not do for `need` (so a caller that read the row just
    /// before another stored a token does not fetch again): whether it was taken. One
    /// statement; of concurrent takers exactly one wins (on Postgres the others wait for its
    /// row lock, only for the statement, and then see the lease taken).
    pub(crate) async fn take_access_token_lease<'c, E>(
        executor: E,
        app_id: &AppId,
        holder: &str,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
        need: &AccessTokenNeed,
    ) -> Result<bool, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        // The token's test is StoredAccessToken::will_do, with NULLs (no token, or a fetch
        // time from before migration 0004) counting as "will not do".
        let taken = sqlx::query(
            "UPDATE access_tokens SET lease_holder = $1, lease_until = $2 \
             WHERE app_id = $3 \
             AND (lease_until IS NULL OR lease_until <= $4) \
             AND NOT COALESCE(expires_at > $5 OR (expires_at > $6 AND fetched_at > $7), FALSE)",
        )
        .bind(holder)
        .bind(D::timestamp(until))
        .bind(app_id.as_str())
        .bind(D::timestamp(at))
        .bind(D::timestamp(need.fresh_until))
        .bind(D::timestamp(need.now))
        .bind(D::timestamp(need.fetched_after))
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(D::rows_affected(&taken) == 1)
    }

    /// Stores the token `holder` fetched and releases its lease, if `holder` still holds it
    /// (an expired lease may have been taken over, and the new holder's token is as new):
    /// whether it was stored.
    pub(crate) async fn store_access_token<'c, E>(
        executor: E,
        app_id: &AppId,
        holder: &str,
        token: &StoredAccessToken,
    ) -> Result<bool, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        let stored = sqlx::query(
            "UPDATE access_tokens \
             SET token = $1, expires_at = $2, fetched_at = $3, \
             lease_holder = NULL, lease_until = NULL \
             WHERE app_id = $4 AND lease_holder = $5",
        )
        .bind(token.token.expose())
        .bind(D::timestamp(token.expires_at))
        .bind(D::timestamp(token.fetched_at))
        .bind(app_id.as_str())
        .bind(holder)
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(D::rows_affected(&stored) == 1)
    }

    /// Releases `holder`'s lease (its fetch failed or was abandoned), leaving the token as it is.
    pub(crate) async fn release_access_token_lease<'c, E>(
        executor: E,
        app_id: &AppId,
        holder: &str,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        sqlx::query(
            "UPDATE access_tokens SET lease_holder = NULL, lease_until = NULL \
             WHERE app_id = $1 AND lease_holder = $2",
        )
        .bind(app_id.as_str())
        .bind(holder)
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(())
    }

    /// Empties the app's row if it still holds `token`; the lease is left as it is.
    pub async fn forget_access_token<'c, E>(
        executor: E,
        app_id: &AppId,
        token: &AccessToken,
    ) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        sqlx::query(
            "UPDATE access_tokens SET token = NULL, expires_at = NULL, fetched_at = NULL \
             WHERE app_id = $1 AND token = $2",
        )
        .bind(app_id.as_str())
        .bind(token.expose())
        .execute(executor)
        .await
        .map_err(D::map_err)?;
        Ok(())
    }

    /// One round trip to the database.
    pub async fn ping<'c, E>(executor: E) -> Result<(), StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        sqlx::query("SELECT 1")
            .execute(executor)
            .await
            .map(drop)
            .map_err(D::map_err)
    }

    /// Runs `sql`, an update of one session that binds a time as `$1` and the session's id as
    /// `$2`, and returns how many rows it changed.
    async fn stamp_session<'c, E>(
        executor: E,
        sql: &'static str,
        at: DateTime<Utc>,
        session_id: SessionId,
    ) -> Result<u64, StoreError>
    where
        E: Executor<'c, Database = D::Db>,
    {
        let result = sqlx::query(sql)
            .bind(D::timestamp(at))
            .bind(D::Id::from(*session_id.as_uuid()))
            .execute(executor)
            .await
            .map_err(D::map_err)?;
        Ok(D::rows_affected(&result))
    }

    /// Records the unionid of a user's identity in `app_id`, unless one is already known (a
    /// unionid never changes, so the first one stands).
    async fn set_union_id(
        conn: &mut Conn<D>,
        user_id: D::Id,
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
        .execute(conn)
        .await
        .map_err(D::map_err)?;
        Ok(())
    }

    /// The user with its identity in `app_id`, read on the caller's connection (inside its
    /// transaction).
    async fn fetch_user(
        conn: &mut Conn<D>,
        user_id: D::Id,
        app_id: &AppId,
    ) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow<D>> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u JOIN wechat_identities i ON i.user_id = u.id AND i.app_id = $1 \
              WHERE u.id = $2"
        ))
        .bind(app_id.as_str())
        .bind(user_id)
        .fetch_optional(conn)
        .await
        .map_err(D::map_err)?;
        row.map(UserRow::into_user).transpose()
    }
}

/// `NotFound` when a statement that names one row by id changed none.
fn found(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
